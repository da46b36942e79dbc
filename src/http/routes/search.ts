/**
 * POST /v1/search — text, image or combined search over the caller's images, video segments and triples.
 * JSON `{ text?, image?, mode?, kinds?, topK?, filter? }` (image: base64, a data URL or a stored item's
 * id; mode: `dense`, `text` or `hybrid`), or multipart with an `image` file and the other fields as form
 * fields (`kinds` comma-separated, `filter` as JSON). Answers `{ items: [...] }`, best first, each with the
 * OCR lines that match the text query (`textMatches`).
 *
 * Also home of the schemas and request readers that /v1/similar, /v1/classify and /v1/vqa share.
 */
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { invalidInput, MediaError, ValidationError } from "../../errors.ts";
import {
  DEFAULT_SEARCH_KINDS,
  type ImageQuery,
  MAX_SEARCH_TOP_K,
  parseImageReference,
  SEARCH_KINDS,
  SEARCH_MODES,
  type SearchService,
} from "../../search/index.ts";
import {
  MAX_FILTER_GROUP_DEPTH,
  MAX_FILTER_GROUP_ITEMS,
  MAX_FILTER_LIST_LENGTH,
  MAX_FILTER_NUMBER,
  MAX_FILTER_STRING_LENGTH,
} from "../../store/filter.ts";
import { FILTER_OPS, FILTERABLE_FIELDS, filterSpecSchema } from "../../store/index.ts";
import type { AppContext } from "../context.ts";
import {
  createRouter,
  defineRoute,
  imageInputResponses,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
  payloadTooLargeResponse,
  repeatable,
  uploadSchema,
} from "../openapi.ts";

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

const filterString = { type: "string", maxLength: MAX_FILTER_STRING_LENGTH };
const filterNumber = { type: "number", minimum: -MAX_FILTER_NUMBER, maximum: MAX_FILTER_NUMBER };
const filterList = (items: object) => ({
  type: "array",
  items,
  minItems: 1,
  maxItems: MAX_FILTER_LIST_LENGTH,
});

/** A condition `{ field, op, value }` in JSON Schema: a field that exists, an operator, a typed value. */
const filterConditionJsonSchema = {
  type: "object",
  properties: {
    field: {
      type: "string",
      pattern: `^(${FILTERABLE_FIELDS.join("|")}|metadata\\.[A-Za-z_][A-Za-z0-9_]{0,63})$`,
    },
    op: { enum: [...FILTER_OPS] },
    value: {
      anyOf: [
        filterString,
        filterNumber,
        { type: "boolean" },
        filterList(filterString),
        filterList(filterNumber),
      ],
    },
  },
  required: ["field", "op"],
  additionalProperties: false,
};

/**
 * One filter item in JSON Schema, as the validator reads it: a condition, or a group with exactly one of
 * `any` and `all`, groups nested at most `depth` deep. Zod describes the item as one object whose keys are
 * all optional (its refinement, which the document cannot carry, picks the form), which let any object,
 * `{}` included, pass for a filter item in the document.
 */
function filterItemJsonSchema(depth: number): object {
  if (depth === 0) return filterConditionJsonSchema;
  const items = {
    type: "array",
    items: filterItemJsonSchema(depth - 1),
    minItems: 1,
    maxItems: MAX_FILTER_GROUP_ITEMS,
  };
  return {
    oneOf: [
      filterConditionJsonSchema,
      { type: "object", properties: { any: items }, required: ["any"], additionalProperties: false },
      { type: "object", properties: { all: items }, required: ["all"], additionalProperties: false },
    ],
  };
}

/** The filter language, one component of the document (so uses add no description of their own). */
export const filterSchema = filterSpecSchema.meta({
  id: "Filter",
  description: `Typed conditions { field, op, value } and { any } / { all } groups, all of which must hold. Fields: ${FILTERABLE_FIELDS.join(", ")}, or metadata.<key>.`,
  items: filterItemJsonSchema(MAX_FILTER_GROUP_DEPTH),
});

/** Options shared by search and similar. */
export const searchOptionsShape = {
  kinds: z
    .array(searchKindSchema)
    .min(1, `kinds must list at least one of ${kindsText}`)
    .optional()
    .describe(
      `Kinds to search (${kindsText}); ${DEFAULT_SEARCH_KINDS.join(", ")} when absent (regions, the objects found in images, only when listed).`,
    ),
  topK: z
    .number({ error: `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}` })
    .int(`topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
    .min(1, `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
    .max(MAX_SEARCH_TOP_K, `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
    .optional()
    .describe(`Results wanted, 1–${MAX_SEARCH_TOP_K} (default 10).`),
  filter: filterSchema.optional(),
};

const modesText = SEARCH_MODES.join(", ");

/** How a search ranks. */
export const searchModeSchema = z
  .enum(SEARCH_MODES, {
    error: (issue) => `unknown mode ${JSON.stringify(issue.input)}; allowed: ${modesText}`,
  })
  .describe(
    "`dense`: embeddings only. `text`: BM25 over each item's text (OCR text, title and tags, a triple's question and answer); needs `text` and no image. `hybrid`: both, fused by the server's ranker (LOUPE_SEARCH_RANKER); needs `text`. Default: `hybrid` when `text` is given, `dense` for an image alone. In `text` and `hybrid`, quoted phrases (\"license expired\", also “…”) must occur in every hit.",
  );

/** Body of POST /v1/search. */
export const searchRequestSchema = z
  .object({
    text: z
      .string()
      .max(MAX_QUERY_TEXT_LENGTH)
      .optional()
      .describe(
        'A text query; quoted phrases ("license expired") must match as written in text and hybrid modes.',
      ),
    image: imageFieldSchema.optional(),
    mode: searchModeSchema.optional(),
    ...searchOptionsShape,
  })
  .strict()
  .meta({ id: "SearchRequest" });

/** An OCR line of a result that contains a phrase or a term of the text query. */
export const textMatchSchema = z
  .object({
    line: z.number().int().describe("Position of the line in metadata.ocr.lines."),
    text: z.string(),
    box: z
      .tuple([z.number(), z.number(), z.number(), z.number()])
      .describe(
        "[x, y, width, height] in pixels of the image metadata.ocr was read from (metadata.ocr.width × height).",
      ),
    confidence: z.number().describe("The recognizer's mean character confidence, 0–1."),
    matched: z.array(z.string()).describe("The query's phrases and terms (lower-cased) found in the line."),
  })
  .meta({ id: "TextMatch" });

/** One result of a search. */
export const searchResultItemSchema = z.object({
  kind: z.enum(SEARCH_KINDS as [string, ...string[]]),
  id: z.string(),
  score: z
    .number()
    .describe(
      "Larger is closer. dense: the embedding similarity; text: the BM25 score; hybrid: the ranker's fused score. One scale across kinds within a mode.",
    ),
  mediaUrl: z.string().describe("/v1/media/{id}"),
  thumbnailUrl: z.string().describe("/v1/media/{id}/thumbnail"),
  source: z.string(),
  createdAt: z.number().int().describe("ms since the Unix epoch"),
  text: z.string().describe("Title and tags."),
  ocrText: z
    .string()
    .describe('Text read in the image (a segment\'s keyframe) by OCR, one line per line; "" when none.'),
  metadata: z
    .record(z.string(), z.unknown())
    .describe(
      "Caller and Loupe metadata; `ocr` holds what OCR read: { engine, width, height, lines: [{ text, confidence, box }], minConfidence, truncated? }.",
    ),
  textMatches: z
    .array(textMatchSchema)
    .optional()
    .describe(
      "With a text query: the item's OCR lines containing a quoted phrase or a query term (at most 20), for highlighting.",
    ),
  videoId: z.string().optional().describe("Video segments: the video's id."),
  start: z.number().optional().describe("Video segments: start, in seconds."),
  end: z.number().optional().describe("Video segments: end, in seconds."),
  question: z.string().optional().describe("Triples: the stored question."),
  answer: z.string().optional().describe("Triples: the stored answer."),
  region: z
    .object({
      parentId: z.string().describe("The image or video segment the object is in."),
      parentKind: z.enum(["image", "video_segment"]),
      box: z
        .object({ x0: z.number(), y0: z.number(), x1: z.number(), y1: z.number() })
        .describe("Normalized to [0, 1] of the parent's image (a segment's keyframe): x right, y down."),
      label: z.string().describe("The detector's class, e.g. circle."),
      attributes: z.record(z.string(), z.string()).describe("Attribute name → value, e.g. color: red."),
      score: z.number().describe("The detector's score, 0–1."),
    })
    .optional()
    .describe("Regions (objects found in an image or a keyframe): what and where the object is."),
});

/** Body of a 200 from /v1/search and /v1/similar/{id}. */
export const searchResponseSchema = z
  .object({ items: z.array(searchResultItemSchema) })
  .meta({ id: "SearchResponse" });

/**
 * Turns multipart string fields into the types of the JSON body: `kinds` and `labels` from repeated
 * fields, comma lists or JSON arrays; `topK` as a number; `filter` and `autoTag` as JSON.
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

function parseJsonField(name: string, value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw new ValidationError(`Form field ${name} must be JSON; got ${JSON.stringify(value.slice(0, 80))}.`);
  }
}

/**
 * Validates a value with its zod schema (the JSON shape a multipart form was turned into).
 *
 * @throws ValidationError listing each problem with its field.
 */
export function parseRequest<Schema extends z.ZodType>(schema: Schema, input: unknown): z.output<Schema> {
  const result = schema.safeParse(input, { reportInput: true });
  if (!result.success) throw invalidInput(result.error, { input });
  return result.data;
}

/** Whether the request's body is multipart (else it is JSON, validated by the route's declaration). */
export function isMultipart(c: AppContext): boolean {
  return (c.req.header("content-type") ?? "").toLowerCase().startsWith("multipart/form-data");
}

/** The query image of a request: an uploaded `image` file, or the `image` string. */
export async function requestImage(
  { upload, value }: { upload: File | undefined; value: string | undefined },
  { maxImageBytes }: QueryLimits,
): Promise<ImageQuery | undefined> {
  if (upload !== undefined) {
    if (upload.size === 0) throw new ValidationError("The uploaded image file is empty.");
    if (upload.size > maxImageBytes) {
      throw new MediaError(
        `The uploaded image is ${upload.size} bytes; the limit is ${maxImageBytes} bytes (LOUPE_MAX_IMAGE_BYTES).`,
        { status: 413, code: "payload_too_large" },
      );
    }
    return { bytes: new Uint8Array(await upload.arrayBuffer()) };
  }
  if (value === undefined) return undefined;
  const reference = parseImageReference({ value, maxBytes: maxImageBytes });
  if ("url" in reference) throw new Error("unreachable: URLs are refused when allowUrl is false");
  return reference;
}

/**
 * A query request (search, classify, vqa) as its JSON shape and its query image. A multipart form,
 * validated by the declaration as form fields, is turned into the JSON shape and validated with
 * `schema`; its uploaded `image` file wins over an `image` field.
 */
export async function readImageQuery<Schema extends z.ZodType<{ image?: string | undefined }>>({
  multipart,
  json,
  form,
  schema,
  limits,
}: {
  multipart: boolean;
  /** The JSON body, validated with `schema` by the route's declaration (ignored for multipart). */
  json: unknown;
  /** The form fields, validated by the route's declaration (ignored for JSON). */
  form: object;
  schema: Schema;
  limits: QueryLimits;
}): Promise<{ body: z.output<Schema>; image: ImageQuery | undefined }> {
  if (!multipart) {
    const body = json as z.output<Schema>;
    return { body, image: await requestImage({ upload: undefined, value: body.image }, limits) };
  }
  const { image: upload, ...fields } = form as { image?: File } & Record<string, unknown>;
  const body = parseRequest(schema, coerceFormFields(fields));
  return { body, image: await requestImage({ upload, value: body.image }, limits) };
}

/** Multipart fields of the query routes, besides their own. */
export const queryFormShape = {
  image: uploadSchema("The query image.").optional(),
  kinds: repeatable(z.string())
    .optional()
    .describe(`Kinds to search: comma-separated, a JSON list, or the field repeated (${kindsText}).`),
  topK: z.string().optional().describe(`Results wanted, an integer 1–${MAX_SEARCH_TOP_K}.`),
  filter: z.string().optional().describe("The filter as JSON (see SearchRequest.filter)."),
};

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
export function createSearchRoute({ search, config }: { search: SearchService; config: QueryLimits }) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/search",
      operationId: "search",
      tags: ["search"],
      summary: "Search by text, image or both",
      description:
        "Searches the caller's images, video segments and triples. `mode` picks the ranking: `dense` (embeddings; with text and image, the query is the normalized sum of both), `text` (BM25 over the items' OCR text, titles, tags and triples' questions and answers) or `hybrid` (both fused; the default with text). Quoted phrases must match as phrases in text and hybrid modes. Each item carries `textMatches`: its OCR lines that contain the query's phrases or terms, with boxes. JSON, or multipart with an `image` file and the other fields as form fields.",
      middleware: [queryBodyLimit(config)],
      request: {
        body: {
          description: "A text, an image, or both.",
          content: {
            "application/json": { schema: searchRequestSchema },
            "multipart/form-data": {
              schema: z.strictObject({
                text: z.string().optional().describe("A text query."),
                mode: z.string().optional().describe(`How to rank: ${modesText}.`),
                ...queryFormShape,
              }),
            },
          },
        },
      },
      responses: {
        200: jsonResponse("Results, best first.", searchResponseSchema),
        400: invalidRequestResponse,
        413: payloadTooLargeResponse("about 4/3 of LOUPE_MAX_IMAGE_BYTES"),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    { access: { scope: "read", cost: 1 } },
  );
  return createRouter().openapi(route, async (c) => {
    const { body, image } = await readImageQuery({
      multipart: isMultipart(c),
      json: c.req.valid("json"),
      form: c.req.valid("form"),
      schema: searchRequestSchema,
      limits: config,
    });
    const result = await search.search({
      tenant: c.get("tenant"),
      text: body.text,
      image,
      ...(body.mode === undefined ? {} : { mode: body.mode }),
      kinds: body.kinds,
      topK: body.topK,
      filter: body.filter,
    });
    return c.json(result, 200);
  });
}
