/**
 * POST /v1/images — ingest images, from an upload or from URLs.
 *
 * - `multipart/form-data`: repeatable file field `files` (many per request) and optional `metadata`
 *   fields (JSON objects): one applies to every file, or one per file in order.
 * - `application/json`: `{ "urls": [...], "metadata"? }`; an entry of `urls` may also be
 *   `{ "url", "metadata"? }` to give that URL its own metadata.
 *
 * Answers, one item per file or URL in request order (`index`, `filename` or `url`, `id`, `status`
 * `stored` | `skipped` | `failed`, `error` when failed):
 * - 200 when at least one item was stored or skipped (failed items carry their `error`);
 * - 422 when every item failed: the error envelope (code `all_items_failed`) plus the same `items`;
 * - 202 with `{ job: { id, status } }` and a `Location` header when the request runs as a job
 *   (`?async=true`, or more items than `LOUPE_INGEST_SYNC_MAX_ITEMS`); follow it at `/v1/jobs/{id}`.
 * A body over `LOUPE_MAX_UPLOAD_BYTES` gets 413 before any of it is processed.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import type { Config } from "../../config.ts";
import { AppError, MediaError, ValidationError } from "../../errors.ts";
import {
  describeImageItem,
  type ImageIngester,
  type ImageIngestItem,
  type ImageMetadata,
  parseImageMetadata,
} from "../../ingest/image-ingest.ts";
import type { JobItemOutcome, JobRegistry } from "../../ingest/jobs.ts";
import { answerBatch } from "../batch-outcome.ts";
import type { AppEnv } from "../context.ts";
import { errorEnvelopeSchema } from "../errors.ts";
import { jobAcceptedSchema, jobCountsSchema, jobErrorSchema } from "./jobs.ts";

/** Longest URL accepted. */
export const MAX_URL_LENGTH = 2048;

const metadataObject = z.record(z.string(), z.unknown());

/** JSON body of `POST /v1/images`. */
export const imagesJsonRequestSchema = z.strictObject({
  urls: z
    .array(
      z.union([
        z.string().min(1).max(MAX_URL_LENGTH),
        z.strictObject({ url: z.string().min(1).max(MAX_URL_LENGTH), metadata: metadataObject.optional() }),
      ]),
    )
    .min(1),
  metadata: metadataObject.optional().describe("applies to every URL without its own metadata"),
});

/** One item of the answer. */
export const imageIngestItemSchema = z.object({
  index: z.number().int(),
  filename: z.string().optional(),
  url: z.string().optional(),
  id: z.string().optional(),
  status: z.enum(["stored", "skipped", "failed"]),
  error: jobErrorSchema.optional(),
});

/** Body of a 200 from `POST /v1/images`. */
export const imagesResponseSchema = z.object({
  items: z.array(imageIngestItemSchema),
  counts: jobCountsSchema,
});

/** Body of a 422 from `POST /v1/images`: every item failed. */
export const imagesAllFailedSchema = errorEnvelopeSchema.extend({
  items: z.array(imageIngestItemSchema),
  counts: jobCountsSchema,
});

/** Body of a 202 from `POST /v1/images`. */
export const imagesAcceptedSchema = jobAcceptedSchema;

/** What the route uses. */
export interface ImagesRouteOptions {
  images: ImageIngester;
  jobs: JobRegistry;
  config: Pick<Config, "maxUploadBytes" | "maxItemsPerRequest" | "maxMetadataBytes" | "ingestSyncMaxItems">;
}

/** A file name fit to echo and store: its last path part, without control characters, at most 255 characters. */
export function cleanFilename(name: string, index: number): string {
  const base = (name.split(/[\\/]/).pop() ?? "")
    .replace(/\p{Cc}/gu, "")
    .trim()
    .slice(0, 255);
  return base === "" ? `file-${index}` : base;
}

function parseAsyncFlag(value: string | undefined): boolean {
  if (value === undefined || value === "" || value === "false" || value === "0") return false;
  if (value === "true" || value === "1") return true;
  throw new ValidationError(`async must be true or false; got ${JSON.stringify(value.slice(0, 40))}.`);
}

function zodMessage(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "body"}: ${issue.message}`)
    .join("; ");
}

async function readMultipart(
  request: { parseBody(options: { all: true }): Promise<Record<string, unknown>> },
  maxMetadataBytes: number,
): Promise<ImageIngestItem[]> {
  let body: Record<string, unknown>;
  try {
    body = await request.parseBody({ all: true });
  } catch (error) {
    throw new ValidationError(
      `The multipart body could not be read: ${error instanceof Error ? error.message : String(error)}. Send multipart/form-data with file fields named "files".`,
      { cause: error },
    );
  }
  const unknown = Object.keys(body).filter((key) => key !== "files" && key !== "metadata");
  if (unknown.length > 0) {
    throw new ValidationError(
      `Unknown multipart field ${JSON.stringify(unknown[0]?.slice(0, 80))}; allowed fields are "files" (repeatable) and "metadata".`,
    );
  }
  const asList = (value: unknown): unknown[] =>
    value === undefined ? [] : Array.isArray(value) ? value : [value];
  const files = asList(body.files);
  if (files.length === 0) {
    throw new ValidationError('No files in the request: add one or more file fields named "files".');
  }
  const notFile = files.findIndex((file) => !(file instanceof File));
  if (notFile !== -1) {
    throw new ValidationError(`Field "files" #${notFile} is not a file; send each image as a file part.`);
  }
  const metadataFields = asList(body.metadata);
  if (metadataFields.length > 1 && metadataFields.length !== files.length) {
    throw new ValidationError(
      `Got ${metadataFields.length} "metadata" fields for ${files.length} files; send one for every file, or one for all.`,
    );
  }
  const metadata = metadataFields.map((field, index) => {
    if (typeof field !== "string") throw new ValidationError(`Field "metadata" #${index} must be JSON text.`);
    let value: unknown;
    try {
      value = JSON.parse(field);
    } catch {
      throw new ValidationError(`Field "metadata" #${index} is not valid JSON; send a JSON object.`);
    }
    return parseImageMetadata({ value, maxBytes: maxMetadataBytes });
  });
  return Promise.all(
    (files as File[]).map(async (file, index) => ({
      source: {
        type: "bytes" as const,
        bytes: new Uint8Array(await file.arrayBuffer()),
        filename: cleanFilename(file.name, index),
      },
      metadata: metadata.length === 1 ? metadata[0] : metadata[index],
    })),
  );
}

async function readJson(
  request: { json(): Promise<unknown> },
  maxMetadataBytes: number,
): Promise<ImageIngestItem[]> {
  let raw: unknown;
  try {
    raw = await request.json();
  } catch {
    throw new ValidationError('The body is not valid JSON; send {"urls": ["https://…"], "metadata": {…}}.');
  }
  const parsed = imagesJsonRequestSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ValidationError(
      `Invalid request: ${zodMessage(parsed.error)}. Send {"urls": ["https://…" or {"url", "metadata"}], "metadata"?: {…}}.`,
    );
  }
  const shared: ImageMetadata | undefined =
    parsed.data.metadata === undefined
      ? undefined
      : parseImageMetadata({ value: parsed.data.metadata, maxBytes: maxMetadataBytes });
  return parsed.data.urls.map((entry) =>
    typeof entry === "string"
      ? { source: { type: "url", url: entry }, metadata: shared }
      : {
          source: { type: "url", url: entry.url },
          metadata:
            entry.metadata === undefined
              ? shared
              : parseImageMetadata({ value: entry.metadata, maxBytes: maxMetadataBytes }),
        },
  );
}

/** The /v1/images route. */
export function createImagesRoute({ images: ingester, jobs, config }: ImagesRouteOptions): Hono<AppEnv> {
  const limit = bodyLimit({
    maxSize: config.maxUploadBytes,
    onError: () => {
      throw new MediaError(
        `The request body is larger than ${config.maxUploadBytes} bytes. Send fewer or smaller files per request, or raise LOUPE_MAX_UPLOAD_BYTES.`,
        { code: "payload_too_large", status: 413, context: { limit: config.maxUploadBytes } },
      );
    },
  });

  return new Hono<AppEnv>().post("/v1/images", limit, async (c) => {
    const tenant = c.get("tenant");
    const runAsync = parseAsyncFlag(c.req.query("async"));
    const contentType = (c.req.header("content-type") ?? "").toLowerCase();
    let items: ImageIngestItem[];
    let defaultSource: string;
    if (contentType.startsWith("multipart/form-data")) {
      items = await readMultipart(c.req, config.maxMetadataBytes);
      defaultSource = "upload";
    } else if (contentType.startsWith("application/json")) {
      items = await readJson(c.req, config.maxMetadataBytes);
      defaultSource = "url";
    } else {
      throw new AppError(
        "unsupported_media_type",
        415,
        `Content type ${JSON.stringify(contentType.slice(0, 80) || "(none)")} is not accepted; send multipart/form-data (files) or application/json (urls).`,
      );
    }
    if (items.length > config.maxItemsPerRequest) {
      throw new ValidationError(
        `The request has ${items.length} items; the limit is ${config.maxItemsPerRequest}. Split it, or raise LOUPE_MAX_ITEMS_PER_REQUEST.`,
        { context: { count: items.length, limit: config.maxItemsPerRequest } },
      );
    }
    c.get("logger").info({ items: items.length, source: defaultSource }, "ingesting images");

    if (runAsync || items.length > config.ingestSyncMaxItems) {
      const job = jobs.create({
        tenant,
        kind: "images",
        items: items.map((item) => ({ describe: describeImageItem(item), input: item })),
        run: ({ items: work, signal, report }) =>
          ingester.ingest({ tenant, items: work, defaultSource, signal, report }),
      });
      c.header("location", `/v1/jobs/${job.id}`);
      return c.json(
        { job: { id: job.id, status: job.status } } satisfies z.infer<typeof imagesAcceptedSchema>,
        202,
      );
    }

    const outcomes: JobItemOutcome[] = [];
    await ingester.ingest({
      tenant,
      items: items.map((input, index) => ({ index, input })),
      defaultSource,
      signal: c.req.raw.signal,
      report: (index, outcome) => {
        outcomes[index] = outcome;
      },
    });
    const answer = items.map((item, index): z.infer<typeof imageIngestItemSchema> => {
      const outcome = outcomes[index] ?? {
        status: "failed" as const,
        error: { code: "aborted", message: "The request was cancelled before this item was processed." },
      };
      return {
        index,
        ...describeImageItem(item),
        ...(outcome.id === undefined ? {} : { id: outcome.id }),
        status: outcome.status,
        ...(outcome.status === "failed" ? { error: outcome.error } : {}),
      };
    });
    return answerBatch(c, { items: answer, noun: "image" });
  });
}
