/**
 * POST /v1/search — text, image or combined search over the caller's images, video segments and triples.
 * JSON `{ text?, image?, kinds?, topK?, filter? }` (image: base64, a data URL or a stored item's id), or
 * multipart with an `image` file and the other fields as form fields (`kinds` comma-separated, `filter`
 * as JSON). Answers `{ items: [...] }`, best first.
 *
 * Also home of the schemas and request readers that /v1/similar and /v1/classify share.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { MediaError, shownValue, ValidationError } from "../../errors.ts";
import {
  type ImageQuery,
  MAX_SEARCH_TOP_K,
  parseImageReference,
  SEARCH_KINDS,
  type SearchService,
} from "../../search/index.ts";
import { filterSpecSchema } from "../../store/index.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { readJsonObject } from "../json-body.ts";

/** Query routes' limits, from the configuration. */
export interface QueryLimits {
  /** Largest image, in bytes (`LOUPE_MAX_IMAGE_BYTES`). */
  maxImageBytes: number;
}

/** Largest body of a search, similar or classify request: one image inline as base64 (~4/3 its size). */
export function maxQueryBodyBytes({ maxImageBytes }: QueryLimits): number {
  return Math.ceil((maxImageBytes * 4) / 3) + 64 * 1024;
}
/** Longest text query, in characters. */
export const MAX_QUERY_TEXT_LENGTH = 1000;

const kindsText = SEARCH_KINDS.join(", ");

/** A record kind a search may cover. */
export const searchKindSchema = z.enum(SEARCH_KINDS as [string, ...string[]], {
  error: (issue) => `unknown kind ${JSON.stringify(issue.input)}; allowed kinds: ${kindsText}`,
});

/** The `image` of a JSON request. */
export const imageFieldSchema = z
  .string()
  .min(1)
  .describe(
    "The image: base64 bytes, a data URL (data:image/png;base64,…) or a stored item's id (img_…, seg_…, tri_…).",
  );

/** Options shared by search and similar. */
export const searchOptionsShape = {
  kinds: z
    .array(searchKindSchema)
    .min(1, `kinds must list at least one of ${kindsText}`)
    .optional()
    .describe(`Kinds to search; all of ${kindsText} when absent.`),
  topK: z
    .number({ error: `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}` })
    .int(`topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
    .min(1, `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
    .max(MAX_SEARCH_TOP_K, `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
    .optional()
    .describe(`Results wanted, 1–${MAX_SEARCH_TOP_K} (default 10).`),
  filter: filterSpecSchema
    .optional()
    .describe("Typed conditions { field, op, value } and { any } / { all } groups, all of which must hold."),
};

/** Body of POST /v1/search. */
export const searchRequestSchema = z
  .object({
    text: z.string().max(MAX_QUERY_TEXT_LENGTH).optional().describe("A text query."),
    image: imageFieldSchema.optional(),
    ...searchOptionsShape,
  })
  .strict();

/** One result of a search. */
export const searchResultItemSchema = z.object({
  kind: z.enum(SEARCH_KINDS as [string, ...string[]]),
  id: z.string(),
  score: z.number().describe("Similarity to the query; larger is closer. One scale across kinds."),
  mediaUrl: z.string().describe("/v1/media/{id}"),
  thumbnailUrl: z.string().describe("/v1/media/{id}/thumbnail"),
  source: z.string(),
  createdAt: z.number().int().describe("ms since the Unix epoch"),
  text: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  videoId: z.string().optional().describe("Video segments: the video's id."),
  start: z.number().optional().describe("Video segments: start, in seconds."),
  end: z.number().optional().describe("Video segments: end, in seconds."),
  question: z.string().optional().describe("Triples: the stored question."),
  answer: z.string().optional().describe("Triples: the stored answer."),
});

/** Body of a 200 from /v1/search and /v1/similar/{id}. */
export const searchResponseSchema = z.object({ items: z.array(searchResultItemSchema) });

/** A request body read from JSON or multipart: its fields and, for multipart, its files. */
export interface RequestFields {
  fields: Record<string, unknown>;
  files: Map<string, Uint8Array>;
  multipart: boolean;
}

/**
 * Reads a JSON or multipart body. Multipart fields are strings; `files` holds each uploaded file's bytes
 * by field name (the first file of a repeated field).
 *
 * @throws ValidationError for another content type or malformed JSON.
 */
export async function readRequestFields(c: AppContext): Promise<RequestFields> {
  const contentType = (c.req.header("content-type") ?? "").toLowerCase();
  if (contentType.startsWith("multipart/form-data")) {
    const form = await c.req.parseBody({ all: true });
    const fields: Record<string, unknown> = {};
    const files = new Map<string, Uint8Array>();
    for (const [name, value] of Object.entries(form)) {
      const values = Array.isArray(value) ? value : [value];
      for (const entry of values) {
        if (typeof entry === "string") {
          if (fields[name] === undefined) fields[name] = entry;
          else fields[name] = [...(Array.isArray(fields[name]) ? fields[name] : [fields[name]]), entry];
        } else if (!files.has(name)) {
          files.set(name, new Uint8Array(await entry.arrayBuffer()));
        }
      }
    }
    return { fields, files, multipart: true };
  }
  if (contentType.startsWith("application/json") || contentType === "") {
    const body = await readJsonObject(c);
    return { fields: body, files: new Map(), multipart: false };
  }
  throw new ValidationError(
    `Unsupported content type ${JSON.stringify(contentType.slice(0, 80))}; send application/json or multipart/form-data.`,
  );
}

function parseJsonField(name: string, value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw new ValidationError(`Form field ${name} must be JSON; got ${JSON.stringify(value.slice(0, 80))}.`);
  }
}

/**
 * Turns multipart string fields into the types of the JSON body: `kinds` and `labels` from repeated
 * fields, comma lists or JSON arrays; `topK` and `k` as numbers; `filter` and `autoTag` as JSON.
 */
export function coerceFormFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...fields };
  for (const name of ["kinds", "labels"]) {
    const value = out[name];
    if (typeof value === "string") {
      out[name] = value.trim().startsWith("[")
        ? parseJsonField(name, value)
        : value
            .split(",")
            .map((part) => part.trim())
            .filter((part) => part.length > 0);
    }
  }
  if (typeof out.topK === "string") out.topK = out.topK.trim() === "" ? undefined : Number(out.topK);
  for (const name of ["filter", "autoTag"]) {
    if (typeof out[name] === "string") out[name] = parseJsonField(name, out[name] as string);
  }
  return out;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const where = issue.path.map(String).join(".");
      // Top-level unknown keys get a short message; nested ones (inside filters) keep the schema's own,
      // which names the allowed shape and limits.
      if (issue.code === "unrecognized_keys" && issue.path.length === 0) {
        return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((key) => JSON.stringify(key)).join(", ")}`;
      }
      return where.length > 0
        ? `${where}: ${issue.message}${shownValue((issue as { input?: unknown }).input)}`
        : `${issue.message}${shownValue((issue as { input?: unknown }).input)}`;
    })
    .join("; ");
}

/**
 * Validates a request body with its zod schema.
 *
 * @throws ValidationError listing each problem with its field.
 */
export function parseRequest<Schema extends z.ZodType>(schema: Schema, input: unknown): z.output<Schema> {
  const result = schema.safeParse(input, { reportInput: true });
  if (!result.success) {
    throw new ValidationError(`Invalid request: ${describeIssues(result.error)}.`, {
      // Without the inputs: one may be megabytes of base64.
      context: { issues: result.error.issues.slice(0, 10).map(({ input: _input, ...issue }) => issue) },
    });
  }
  return result.data;
}

/** The query image of a request: an uploaded `image` file, or the `image` string. */
export function requestImage(
  request: RequestFields,
  value: string | undefined,
  { maxImageBytes }: QueryLimits,
): ImageQuery | undefined {
  const file = request.files.get("image");
  if (file !== undefined) {
    if (file.length === 0) throw new ValidationError("The uploaded image file is empty.");
    if (file.length > maxImageBytes) {
      throw new MediaError(
        `The uploaded image is ${file.length} bytes; the limit is ${maxImageBytes} bytes (LOUPE_MAX_IMAGE_BYTES).`,
        { status: 413, code: "payload_too_large" },
      );
    }
    return { bytes: file };
  }
  if (value === undefined) return undefined;
  const reference = parseImageReference({ value, maxBytes: maxImageBytes });
  if ("url" in reference) throw new Error("unreachable: URLs are refused when allowUrl is false");
  return reference;
}

/**
 * Reads a query request (JSON, or multipart with an optional `image` file), validates it with `schema`
 * and resolves its query image: the uploaded file wins over an `image` field.
 */
export async function readImageQuery<Schema extends z.ZodType<{ image?: string | undefined }>>(
  c: AppContext,
  schema: Schema,
  config: QueryLimits,
): Promise<{ body: z.output<Schema>; image: ImageQuery | undefined }> {
  const request = await readRequestFields(c);
  const fields = request.multipart ? coerceFormFields(request.fields) : request.fields;
  if (request.files.has("image")) delete fields.image;
  const body = parseRequest(schema, fields);
  return { body, image: requestImage(request, body.image, config) };
}

/** Body limit of the query routes, answered in the error envelope. */
export function queryBodyLimit(limits: QueryLimits) {
  const maxSize = maxQueryBodyBytes(limits);
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new MediaError(
        `The request body is over ${maxSize} bytes; send a smaller image (LOUPE_MAX_IMAGE_BYTES), or its id.`,
        { status: 413, code: "payload_too_large", context: { limit: maxSize } },
      );
    },
  });
}

/** The /v1/search route. */
export function createSearchRoute({
  search,
  config,
}: {
  search: SearchService;
  config: QueryLimits;
}): Hono<AppEnv> {
  return new Hono<AppEnv>().post("/v1/search", queryBodyLimit(config), async (c) => {
    const { body, image } = await readImageQuery(c, searchRequestSchema, config);
    const result = await search.search({
      tenant: c.get("tenant"),
      text: body.text,
      image,
      kinds: body.kinds,
      topK: body.topK,
      filter: body.filter,
    });
    return c.json(result satisfies z.infer<typeof searchResponseSchema>, 200);
  });
}
