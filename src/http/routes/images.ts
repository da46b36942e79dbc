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
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { AuditLog } from "../../audit/audit-log.ts";
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
import type { SharedJobs } from "../../ingest/shared-jobs.ts";
import { toStorableText } from "../../ingest/storable-text.ts";
import { answerBatch, auditActor, countOutcomes, jobAudit, recordWrite } from "../batch-outcome.ts";
import { errorEnvelopeSchema } from "../errors.ts";
import {
  asList,
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
  payloadTooLargeResponse,
  repeatable,
  uploadSchema,
} from "../openapi.ts";
import { asyncQuerySchema, jobAcceptedSchema, jobCountsSchema, jobErrorSchema, wantsJob } from "./jobs.ts";

/** The route as the audit trail names it. */
const ROUTE = "POST /v1/images";

/** Longest URL accepted. */
export const MAX_URL_LENGTH = 2048;

const metadataObject = z.record(z.string(), z.unknown());

/** JSON body of `POST /v1/images`. */
export const imagesJsonRequestSchema = z
  .strictObject({
    urls: z
      .array(
        z.union(
          [
            z.string().min(1).max(MAX_URL_LENGTH),
            z.strictObject({
              url: z.string().min(1).max(MAX_URL_LENGTH),
              metadata: metadataObject.optional(),
            }),
          ],
          {
            error: `each entry of urls is an http(s) URL of 1 to ${MAX_URL_LENGTH} characters, or { url, metadata? }`,
          },
        ),
        { error: "urls must be a list of image URLs (or { url, metadata? } objects)" },
      )
      .min(1, "urls must hold at least one URL"),
    metadata: metadataObject.optional().describe("applies to every URL without its own metadata"),
  })
  .meta({ id: "ImagesRequest" });

/** Multipart body of `POST /v1/images`. */
export const imagesFormSchema = z.strictObject(
  {
    files: repeatable(
      uploadSchema("An image file; repeat the field for more."),
      'add one or more image files under the field "files"',
    ),
    metadata: repeatable(z.string())
      .optional()
      .describe("Caller metadata as a JSON object: one for every file, or one per file in order."),
  },
  {
    error: (issue) =>
      issue.code === "unrecognized_keys"
        ? `Unknown multipart field ${JSON.stringify(issue.keys[0]?.slice(0, 80))}; allowed fields are "files" (repeatable) and "metadata"`
        : undefined,
  },
);

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
export const imagesResponseSchema = z
  .object({ items: z.array(imageIngestItemSchema), counts: jobCountsSchema })
  .meta({ id: "ImagesResponse" });

/** Body of a 422 from `POST /v1/images`: every item failed. */
export const imagesAllFailedSchema = errorEnvelopeSchema.extend({
  items: z.array(imageIngestItemSchema),
  counts: jobCountsSchema,
});

/** What the route uses. */
export interface ImagesRouteOptions {
  images: ImageIngester;
  jobs: JobRegistry;
  /** Where jobs go when they run on the shared queue (workers of any replica); `jobs` when absent. */
  sharedJobs?: SharedJobs;
  config: Pick<Config, "maxUploadBytes" | "maxItemsPerRequest" | "maxMetadataBytes" | "ingestSyncMaxItems">;
  /** The audit trail: stored images are recorded as `ingest` lines. */
  audit?: AuditLog;
}

/**
 * A file name fit to echo and store: its last path part, without control characters or lone surrogates
 * (which UTF-8 cannot encode), at most 255 characters.
 */
export function cleanFilename(name: string, index: number): string {
  const base = toStorableText(name.split(/[\\/]/).pop() ?? "")
    .replace(/\p{Cc}/gu, "")
    .trim()
    .slice(0, 255);
  return base === "" ? `file-${index}` : base;
}

/**
 * An item's metadata, parsed; a problem with it fails that item alone (`rejected`), like any other
 * item the pipeline refuses.
 */
function itemMetadata(
  parse: () => ImageMetadata | undefined,
): Pick<ImageIngestItem, "metadata" | "rejected"> {
  try {
    const metadata = parse();
    return metadata === undefined ? {} : { metadata };
  } catch (error) {
    if (error instanceof AppError && error.status < 500) return { rejected: error };
    throw error;
  }
}

/** The items of a multipart request, its metadata checked. */
async function fromForm(
  form: z.output<typeof imagesFormSchema>,
  maxMetadataBytes: number,
): Promise<ImageIngestItem[]> {
  const files = asList(form.files);
  const metadataFields = asList(form.metadata);
  if (metadataFields.length > 1 && metadataFields.length !== files.length) {
    throw new ValidationError(
      `Got ${metadataFields.length} "metadata" fields for ${files.length} files; send one for every file, or one for all.`,
    );
  }
  const metadata = metadataFields.map((field, index) =>
    itemMetadata(() => {
      let value: unknown;
      try {
        value = JSON.parse(field);
      } catch {
        throw new ValidationError(`Field "metadata" #${index} is not valid JSON; send a JSON object.`, {
          context: { field: "metadata" },
        });
      }
      return parseImageMetadata({ value, maxBytes: maxMetadataBytes });
    }),
  );
  return Promise.all(
    files.map(async (file, index) => ({
      source: {
        type: "bytes" as const,
        bytes: new Uint8Array(await file.arrayBuffer()),
        filename: cleanFilename(file.name, index),
      },
      ...(metadata.length === 1 ? metadata[0] : metadata[index]),
    })),
  );
}

/** The items of a JSON request, its metadata checked (a URL's own metadata fails that URL alone). */
function fromJson(
  body: z.output<typeof imagesJsonRequestSchema>,
  maxMetadataBytes: number,
): ImageIngestItem[] {
  const shared = itemMetadata(() =>
    body.metadata === undefined
      ? undefined
      : parseImageMetadata({ value: body.metadata, maxBytes: maxMetadataBytes }),
  );
  return body.urls.map((entry) =>
    typeof entry === "string"
      ? { source: { type: "url", url: entry }, ...shared }
      : {
          source: { type: "url", url: entry.url },
          ...(entry.metadata === undefined
            ? shared
            : itemMetadata(() => parseImageMetadata({ value: entry.metadata, maxBytes: maxMetadataBytes }))),
        },
  );
}

/** The /v1/images route. */
export function createImagesRoute({ images: ingester, jobs, sharedJobs, config, audit }: ImagesRouteOptions) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/images",
      operationId: "ingestImages",
      tags: ["ingest"],
      summary: "Ingest images",
      description:
        "Multipart uploads (repeatable field `files`) or JSON `urls`. Each image is validated, embedded and stored with its deterministic id: the same image twice is one record. More items than LOUPE_INGEST_SYNC_MAX_ITEMS, or `async=true`, run as a job.",
      middleware: [
        bodyLimit({
          maxSize: config.maxUploadBytes,
          onError: () => {
            throw new MediaError(
              `The request body is larger than ${config.maxUploadBytes} bytes. Send fewer or smaller files per request, or raise LOUPE_MAX_UPLOAD_BYTES.`,
              { code: "payload_too_large", status: 413, context: { limit: config.maxUploadBytes } },
            );
          },
        }),
      ],
      request: {
        query: asyncQuerySchema,
        body: {
          description: "Files to upload, or URLs to fetch.",
          content: {
            "application/json": { schema: imagesJsonRequestSchema },
            "multipart/form-data": { schema: imagesFormSchema },
          },
        },
      },
      responses: {
        200: jsonResponse("One item per file or URL, in order.", imagesResponseSchema),
        202: jsonResponse("Started as a job; the Location header names it.", jobAcceptedSchema),
        400: invalidRequestResponse,
        413: payloadTooLargeResponse("LOUPE_MAX_UPLOAD_BYTES"),
        415: errorResponse("The body is neither multipart/form-data nor application/json."),
        422: jsonResponse("Every item failed (code all_items_failed); each says why.", imagesAllFailedSchema),
        503: notReadyResponse,
      },
    },
    { access: { scope: "ingest", cost: 5 }, unsupportedStatus: 415 },
  );

  return createRouter().openapi(route, async (c) => {
    const tenant = c.get("tenant");
    const runAsync = wantsJob(c.req.valid("query"));
    const multipart = (c.req.header("content-type") ?? "").toLowerCase().startsWith("multipart/form-data");
    // The declaration types each body target as either content type; the content type tells which.
    const items = multipart
      ? await fromForm(c.req.valid("form") as z.output<typeof imagesFormSchema>, config.maxMetadataBytes)
      : fromJson(c.req.valid("json") as z.output<typeof imagesJsonRequestSchema>, config.maxMetadataBytes);
    const defaultSource = multipart ? "upload" : "url";
    if (items.length > config.maxItemsPerRequest) {
      throw new ValidationError(
        `The request has ${items.length} items; the limit is ${config.maxItemsPerRequest}. Split it, or raise LOUPE_MAX_ITEMS_PER_REQUEST.`,
        { context: { count: items.length, limit: config.maxItemsPerRequest } },
      );
    }
    c.get("logger").info({ items: items.length, source: defaultSource }, "ingesting images");

    if ((runAsync || items.length > config.ingestSyncMaxItems) && sharedJobs !== undefined) {
      // Recorded in PostgreSQL and queued on Redis; the workers record the audit lines as this caller.
      const job = await sharedJobs.createImages({
        tenant,
        items,
        defaultSource,
        ...(audit === undefined ? {} : { actor: auditActor(c, ROUTE) }),
      });
      c.header("location", `/v1/jobs/${job.id}`);
      return c.json({ job: { id: job.id, status: job.status } }, 202);
    }
    if (runAsync || items.length > config.ingestSyncMaxItems) {
      const job = jobs.create({
        tenant,
        kind: "images",
        items: items.map((item) => ({ describe: describeImageItem(item), input: item })),
        run: ({ items: work, signal, report }) =>
          ingester.ingest({ tenant, items: work, defaultSource, signal, report }),
        audit: jobAudit(c, ROUTE, audit),
      });
      c.header("location", `/v1/jobs/${job.id}`);
      return c.json({ job: { id: job.id, status: job.status } }, 202);
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
    await recordWrite({
      c,
      log: audit,
      action: "ingest",
      route: ROUTE,
      itemIds: outcomes.flatMap((outcome) => (outcome?.status === "stored" ? [outcome.id] : [])),
      detail: { kind: "images", counts: countOutcomes(answer) },
    });
    const batch = answerBatch({ items: answer, noun: "image", requestId: c.get("requestId") });
    return batch.status === 200 ? c.json(batch.body, 200) : c.json(batch.body, 422);
  });
}
