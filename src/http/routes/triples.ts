/**
 * POST /v1/triples — ingests image-question-answer triples as retrievable evidence. Bodies:
 * - JSON `{ items: [{ image, question, answer, metadata? }] }`;
 * - JSONL (`application/x-ndjson` or `application/jsonl`), one item per line;
 * - multipart: an `items` field holding the JSON list or JSONL, and image files whose field names the
 *   items' `image` values name.
 * `image` is base64, a data URL, an http(s) URL (fetched with the server's URL limits) or a stored
 * image's id. Each item is answered in order with `stored`, `skipped` (already stored) or `failed` with
 * its reason; one bad item never fails the others.
 */
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { AuditLog } from "../../audit/audit-log.ts";
import { MediaError, ValidationError } from "../../errors.ts";
import type { JobRegistry } from "../../ingest/jobs.ts";
import type { SharedJobs } from "../../ingest/shared-jobs.ts";
import {
  itemError,
  MAX_ANSWER_LENGTH,
  MAX_QUESTION_LENGTH,
  type TripleIngester,
  type TripleInput,
  type TripleItemResult,
  tripleJobOutcome,
} from "../../ingest/triple-ingest.ts";
import { parseImageReference } from "../../search/index.ts";
import { answerBatch, auditActor, countOutcomes, jobAudit, recordWrite } from "../batch-outcome.ts";
import type { AppContext } from "../context.ts";
import { errorEnvelopeSchema } from "../errors.ts";
import {
  createRouter,
  defineRoute,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
  payloadTooLargeResponse,
  uploadSchema,
} from "../openapi.ts";
import { asyncQuerySchema, jobAcceptedSchema, jobCountsSchema, jobErrorSchema, wantsJob } from "./jobs.ts";
import { isMultipart, parseRequest } from "./search.ts";

/** The triples route's limits, from the configuration. */
export interface TriplesLimits {
  /** Largest request body (`LOUPE_MAX_UPLOAD_BYTES`). */
  maxUploadBytes: number;
  /** Most triples per request (`LOUPE_MAX_ITEMS_PER_REQUEST`). */
  maxItemsPerRequest: number;
  /** Largest image (`LOUPE_MAX_IMAGE_BYTES`). */
  maxImageBytes: number;
  /** Requests with more triples run as a job (`LOUPE_INGEST_SYNC_MAX_ITEMS`). */
  ingestSyncMaxItems: number;
}

/** The route as the audit trail names it. */
const ROUTE = "POST /v1/triples";

/** Triples handed to a job at a time, so its progress moves as they are stored. */
const JOB_CHUNK = 32;

/** One triple in a request. */
export const tripleItemSchema = z
  .object({
    image: z
      .string()
      .min(1)
      .describe(
        "base64, a data URL, an http(s) URL, a stored image's id (img_…), or (multipart) the field name of an uploaded file",
      ),
    question: z.string().min(1).max(MAX_QUESTION_LENGTH),
    answer: z.string().min(1).max(MAX_ANSWER_LENGTH),
    metadata: z
      .record(z.string(), z.unknown())
      .optional()
      .describe("tags (strings), title, source, and any other JSON"),
  })
  .strict()
  .meta({ id: "TripleItem" });

/** JSON body of POST /v1/triples. */
export const triplesRequestSchema = z
  .object({
    items: z
      .array(z.unknown(), { error: "items must be a list of triples { image, question, answer, metadata? }" })
      .min(1, "items must hold at least one triple")
      .describe(
        "Triples (each a TripleItem), at most LOUPE_MAX_ITEMS_PER_REQUEST; each is checked on its own, so one bad item fails alone.",
      ),
  })
  .strict()
  .meta({ id: "TriplesRequest" });

/** Multipart body of POST /v1/triples: the items, and the image files they name. */
export const triplesFormSchema = z
  .object({
    items: z
      .string({ error: "a multipart triples request needs an `items` field holding a JSON list or JSONL" })
      .describe("The items as a JSON list or JSONL."),
  })
  .catchall(
    uploadSchema("An image file, named by an item's image field.", "image fields must be uploaded files"),
  );

/**
 * JSONL: one TripleItem per line. A plain JSON Schema, not zod: the route parses the lines itself, and a
 * zod schema here would make the JSON validator check JSON bodies against it too.
 */
const jsonlSchema = { type: "string" as const, description: "One TripleItem JSON object per line." };

/** One item's outcome. */
export const tripleItemResultSchema = z.object({
  index: z.number().int(),
  status: z.enum(["stored", "skipped", "failed"]),
  id: z.string().optional(),
  error: jobErrorSchema.optional(),
});

/** Body of a 200 from /v1/triples (the counters are those of jobs: `done` counts stored triples). */
export const triplesResponseSchema = z
  .object({ items: z.array(tripleItemResultSchema), counts: jobCountsSchema })
  .meta({ id: "TriplesResponse" });

/** Body of a 422 from /v1/triples: every item failed (the error envelope, with each item's reason). */
export const triplesAllFailedSchema = errorEnvelopeSchema.extend({
  items: z.array(tripleItemResultSchema),
  counts: jobCountsSchema,
});

function parseJsonl(text: string): unknown[] {
  const items: unknown[] = [];
  for (const [lineIndex, line] of text.split(/\r?\n/).entries()) {
    if (line.trim().length === 0) continue;
    try {
      items.push(JSON.parse(line));
    } catch {
      throw new ValidationError(`Line ${lineIndex + 1} of the JSONL body is not valid JSON.`);
    }
  }
  return items;
}

function parseJsonList(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError("The `items` field starts with [ but is not a valid JSON list.");
  }
}

/** JSONL content types: `application/x-ndjson` and the other names it goes by. */
const JSONL_TYPES = [
  "application/x-ndjson",
  "application/jsonl",
  "application/x-jsonlines",
  "application/jsonlines",
];

async function readItems(
  c: AppContext,
  { json, form }: { json: unknown; form: unknown },
): Promise<{ items: unknown[]; files: Map<string, Uint8Array> }> {
  const contentType = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (JSONL_TYPES.includes(contentType)) return { items: parseJsonl(await c.req.text()), files: new Map() };
  if (isMultipart(c)) {
    // The declaration types each body target as either content type; the content type tells which.
    const { items: raw, ...uploads } = form as z.output<typeof triplesFormSchema>;
    const items = raw.trim().startsWith("[") ? parseJsonList(raw) : parseJsonl(raw);
    if (!Array.isArray(items)) throw new ValidationError("The `items` field must be a JSON list or JSONL.");
    const files = new Map<string, Uint8Array>();
    for (const [name, file] of Object.entries(uploads))
      files.set(name, new Uint8Array(await file.arrayBuffer()));
    return { items, files };
  }
  return { items: (json as z.output<typeof triplesRequestSchema>).items, files: new Map() };
}

function failure(index: number, error: unknown): TripleItemResult {
  return { index, status: "failed", error: itemError(error) };
}

/** The /v1/triples route. */
export function createTriplesRoute({
  triples,
  config,
  jobs,
  sharedJobs,
  audit,
}: {
  triples: TripleIngester;
  config: TriplesLimits;
  jobs: JobRegistry;
  /** Jobs on the shared queue (`LOUPE_DATABASE_URL` and `LOUPE_REDIS_URL`): a job runs there when set. */
  sharedJobs?: SharedJobs;
  /** The audit trail: stored triples are recorded as `ingest` lines. */
  audit?: AuditLog;
}) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/triples",
      operationId: "ingestTriples",
      tags: ["ingest"],
      summary: "Ingest image-question-answer triples",
      description:
        "Each image and question is embedded and the triple stored with a deterministic id (re-ingest adds nothing). Items are answered in order; one bad item fails alone, and when every item fails the answer is 422. More items than LOUPE_INGEST_SYNC_MAX_ITEMS, or `async=true`, run as a job.",
      middleware: [
        bodyLimit({
          maxSize: config.maxUploadBytes,
          onError: () => {
            throw new MediaError(
              `The request body is over ${config.maxUploadBytes} bytes; split the triples over several requests, or raise LOUPE_MAX_UPLOAD_BYTES.`,
              { status: 413, code: "payload_too_large", context: { limit: config.maxUploadBytes } },
            );
          },
        }),
      ],
      request: {
        query: asyncQuerySchema,
        body: {
          description: "JSON, JSONL, or multipart with the items and the image files they name.",
          content: {
            "application/json": { schema: triplesRequestSchema },
            ...Object.fromEntries(JSONL_TYPES.map((type) => [type, { schema: jsonlSchema }])),
            "multipart/form-data": { schema: triplesFormSchema },
          },
        },
      },
      responses: {
        200: jsonResponse("Per-item outcomes and counts.", triplesResponseSchema),
        202: jsonResponse("Started as a job; the Location header names it.", jobAcceptedSchema),
        400: invalidRequestResponse,
        413: payloadTooLargeResponse("LOUPE_MAX_UPLOAD_BYTES"),
        422: jsonResponse(
          "Every item failed (code all_items_failed); each says why.",
          triplesAllFailedSchema,
        ),
        503: notReadyResponse,
      },
    },
    { access: { scope: "ingest", cost: 5 } },
  );
  return createRouter().openapi(route, async (c) => {
    const runAsync = wantsJob(c.req.valid("query"));
    const tenant = c.get("tenant");
    const { items, files } = await readItems(c, { json: c.req.valid("json"), form: c.req.valid("form") });
    if (items.length === 0) throw new ValidationError("The request holds no triples.");
    if (items.length > config.maxItemsPerRequest) {
      throw new ValidationError(
        `A request takes at most ${config.maxItemsPerRequest} triples (LOUPE_MAX_ITEMS_PER_REQUEST); got ${items.length}. Split it.`,
      );
    }
    const results: TripleItemResult[] = [];
    const valid: { index: number; input: TripleInput }[] = [];
    for (const [index, raw] of items.entries()) {
      try {
        const item = parseRequest(tripleItemSchema, raw);
        const file = files.get(item.image);
        const image =
          file !== undefined
            ? { bytes: file }
            : parseImageReference({
                value: item.image,
                field: `items[${index}].image`,
                allowUrl: true,
                maxBytes: config.maxImageBytes,
              });
        valid.push({
          index,
          input: { image, question: item.question, answer: item.answer, metadata: item.metadata },
        });
      } catch (error) {
        results[index] = failure(index, error);
      }
    }
    if ((runAsync || items.length > config.ingestSyncMaxItems) && sharedJobs !== undefined) {
      // Recorded in PostgreSQL and queued on Redis; the workers record the audit lines as this caller.
      const inputs = new Map(valid.map((entry) => [entry.index, entry.input]));
      const job = await sharedJobs.createTriples({
        tenant,
        items: items.map((_, index) => {
          const input = inputs.get(index);
          return input === undefined
            ? {
                rejected: (results[index] as TripleItemResult).error ?? {
                  code: "invalid_request",
                  message: "The triple is invalid.",
                },
              }
            : { input };
        }),
        ...(audit === undefined ? {} : { actor: auditActor(c, ROUTE) }),
      });
      c.header("location", `/v1/jobs/${job.id}`);
      return c.json({ job: { id: job.id, status: job.status } }, 202);
    }
    if (runAsync || items.length > config.ingestSyncMaxItems) {
      const inputs = new Map(valid.map((entry) => [entry.index, entry.input]));
      const job = jobs.create<TripleInput | TripleItemResult>({
        tenant,
        kind: "triples",
        items: items.map((_, index) => ({
          describe: { item: String(index) },
          input: inputs.get(index) ?? (results[index] as TripleItemResult),
        })),
        run: async ({ items: work, signal, report }) => {
          const pending: { index: number; input: TripleInput }[] = [];
          for (const { index, input } of work) {
            if ("question" in input) pending.push({ index, input });
            else report(index, tripleJobOutcome(input));
          }
          for (let start = 0; start < pending.length && !signal.aborted; start += JOB_CHUNK) {
            const chunk = pending.slice(start, start + JOB_CHUNK);
            const outcome = await triples.ingest({ tenant, items: chunk.map((entry) => entry.input) });
            for (const [position, result] of outcome.items.entries()) {
              report(chunk[position]?.index ?? position, tripleJobOutcome(result));
            }
          }
        },
        audit: jobAudit(c, ROUTE, audit),
      });
      c.header("location", `/v1/jobs/${job.id}`);
      return c.json({ job: { id: job.id, status: job.status } }, 202);
    }
    const outcome = await triples.ingest({
      tenant,
      items: valid.map((entry) => entry.input),
      source: "upload",
    });
    outcome.items.forEach((result, position) => {
      const index = valid[position]?.index ?? position;
      results[index] = { ...result, index };
    });
    await recordWrite({
      c,
      log: audit,
      action: "ingest",
      route: ROUTE,
      itemIds: results.flatMap((result) =>
        result.status === "stored" && result.id !== undefined ? [result.id] : [],
      ),
      detail: { kind: "triples", counts: countOutcomes(results) },
    });
    const batch = answerBatch({ items: results, noun: "triple", requestId: c.get("requestId") });
    return batch.status === 200 ? c.json(batch.body, 200) : c.json(batch.body, 422);
  });
}
