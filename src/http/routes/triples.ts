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
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { MediaError, ValidationError } from "../../errors.ts";
import type { JobItemOutcome, JobRegistry } from "../../ingest/jobs.ts";
import {
  itemError,
  MAX_ANSWER_LENGTH,
  MAX_QUESTION_LENGTH,
  type TripleIngester,
  type TripleInput,
  type TripleItemResult,
} from "../../ingest/triple-ingest.ts";
import { parseImageReference } from "../../search/index.ts";
import { answerBatch } from "../batch-outcome.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { errorEnvelopeSchema } from "../errors.ts";
import { type jobAcceptedSchema, jobCountsSchema } from "./jobs.ts";
import { parseRequest, readRequestFields } from "./search.ts";

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

/** Triples handed to a job at a time, so its progress moves as they are stored. */
const JOB_CHUNK = 32;

function parseAsyncFlag(value: string | undefined): boolean {
  if (value === undefined || value === "" || value === "false" || value === "0") return false;
  if (value === "true" || value === "1") return true;
  throw new ValidationError(`async must be true or false; got ${JSON.stringify(value.slice(0, 40))}.`);
}

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
  .strict();

/** JSON body of POST /v1/triples. */
export const triplesRequestSchema = z
  .object({
    items: z
      .array(z.unknown())
      .min(1)
      .describe("Triples (each a TripleItem), at most LOUPE_MAX_ITEMS_PER_REQUEST."),
  })
  .strict();

/** One item's outcome. */
export const tripleItemResultSchema = z.object({
  index: z.number().int(),
  status: z.enum(["stored", "skipped", "failed"]),
  id: z.string().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});

/** Body of a 200 from /v1/triples (the counters are those of jobs: `done` counts stored triples). */
export const triplesResponseSchema = z.object({
  items: z.array(tripleItemResultSchema),
  counts: jobCountsSchema,
});

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

async function readItems(c: AppContext): Promise<{ items: unknown[]; files: Map<string, Uint8Array> }> {
  const contentType = (c.req.header("content-type") ?? "").toLowerCase();
  if (/^application\/(x-ndjson|jsonl|x-jsonlines|jsonlines)/.test(contentType)) {
    return { items: parseJsonl(await c.req.text()), files: new Map() };
  }
  const request = await readRequestFields(c);
  if (request.multipart) {
    const raw = request.fields.items;
    if (typeof raw !== "string") {
      throw new ValidationError(
        "A multipart triples request needs an `items` field holding a JSON list or JSONL.",
      );
    }
    const items = raw.trim().startsWith("[") ? (JSON.parse(raw) as unknown) : parseJsonl(raw);
    if (!Array.isArray(items)) throw new ValidationError("The `items` field must be a JSON list or JSONL.");
    return { items, files: request.files };
  }
  return { items: parseRequest(triplesRequestSchema, request.fields).items, files: new Map() };
}

function failure(index: number, error: unknown): TripleItemResult {
  return { index, status: "failed", error: itemError(error) };
}

function toOutcome(result: TripleItemResult): JobItemOutcome {
  if (result.status === "failed") {
    const { code, message } = result.error ?? { code: "internal_error", message: "The item failed." };
    return {
      status: "failed",
      error: { code, message },
      ...(result.id === undefined ? {} : { id: result.id }),
    };
  }
  return { status: result.status, id: result.id ?? "" };
}

/** The /v1/triples route. */
export function createTriplesRoute({
  triples,
  config,
  jobs,
}: {
  triples: TripleIngester;
  config: TriplesLimits;
  jobs: JobRegistry;
}): Hono<AppEnv> {
  return new Hono<AppEnv>().post(
    "/v1/triples",
    bodyLimit({
      maxSize: config.maxUploadBytes,
      onError: () => {
        throw new MediaError(
          `The request body is over ${config.maxUploadBytes} bytes; split the triples over several requests, or raise LOUPE_MAX_UPLOAD_BYTES.`,
          { status: 413, code: "payload_too_large", context: { limit: config.maxUploadBytes } },
        );
      },
    }),
    async (c) => {
      const runAsync = parseAsyncFlag(c.req.query("async"));
      const tenant = c.get("tenant");
      const { items, files } = await readItems(c);
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
              else report(index, toOutcome(input));
            }
            for (let start = 0; start < pending.length && !signal.aborted; start += JOB_CHUNK) {
              const chunk = pending.slice(start, start + JOB_CHUNK);
              const outcome = await triples.ingest({ tenant, items: chunk.map((entry) => entry.input) });
              for (const [position, result] of outcome.items.entries()) {
                report(chunk[position]?.index ?? position, toOutcome(result));
              }
            }
          },
        });
        c.header("location", `/v1/jobs/${job.id}`);
        return c.json(
          { job: { id: job.id, status: job.status } } satisfies z.infer<typeof jobAcceptedSchema>,
          202,
        );
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
      return answerBatch(c, { items: results, noun: "triple" });
    },
  );
}
