/**
 * Jobs, scoped to the caller's tenant (another tenant's job answers 404):
 * - `POST /v1/jobs`: starts a job that is not an upload; kind `ocr` reads the text of stored images and
 *   video segments that have none (the OCR backfill); kind `migrate` (admin scope) switches the store to
 *   another model pack, re-embedding every tenant's items;
 * - `GET /v1/jobs/{id}`: the job with its counts and every item's outcome;
 * - `GET /v1/jobs/{id}/events`: server-sent events `progress`, `item`, then `done` (or `error` when
 *   the job failed as a whole); a job that has ended sends `progress` and its final event at once;
 * - `POST /v1/jobs/{id}/resume`: runs the items that are pending or failed again (409 while running).
 */
import { z } from "@hono/zod-openapi";
import type { AuditLog } from "../../audit/audit-log.ts";
import { AppError, NotFoundError, ValidationError } from "../../errors.ts";
import type { JobEvent, JobItem, JobRegistry, JobRunner, JobSnapshot } from "../../ingest/jobs.ts";
import { OCR_BACKFILL_KINDS, OCR_JOB_KIND, type OcrBackfill } from "../../ingest/ocr-backfill.ts";
import { MIGRATE_JOB_KIND, type PackMigration } from "../../ingest/pack-migration.ts";
import { REGIONS_JOB_KIND, type RegionBackfill } from "../../ingest/region-backfill.ts";
import type { SharedJobs } from "../../ingest/shared-jobs.ts";
import { auditActor, jobAudit, recordWrite } from "../batch-outcome.ts";
import type { AppContext } from "../context.ts";
import { errorEnvelope } from "../errors.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  eventStreamContent,
  invalidRequestResponse,
  jsonResponse,
} from "../openapi.ts";
import { sseResponse } from "../sse.ts";

/** Why an item or a job failed. */
export const jobErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  field: z
    .string()
    .optional()
    .describe("the input field at fault, when one is (`metadata.title`, `question`)"),
});

/** One item of a job; what describes it (`filename`, `url`, `file`) is spread into it. */
export const jobItemSchema = z.looseObject({
  index: z.number().int(),
  filename: z.string().optional().describe("name of the uploaded file"),
  url: z.string().optional().describe("URL the item was fetched from"),
  file: z.string().optional().describe("path given to the CLI"),
  kind: z
    .string()
    .optional()
    .describe(
      "an ocr or migrate job's item: the record's kind (image, video_segment, triple); a migrate job run by shared workers lists each video as one item of kind video",
    ),
  tenant: z.string().optional().describe("a migrate job's item: the record's tenant"),
  from: z
    .string()
    .optional()
    .describe(
      "a migrate job's item: the record's id before the switch (`id` is the new one); for a video, its video id",
    ),
  status: z.enum(["pending", "stored", "skipped", "failed"]),
  id: z.string().optional(),
  error: jobErrorSchema.optional(),
  detail: z.record(z.string(), z.unknown()).optional(),
});

/** Item counters of a job. */
export const jobCountsSchema = z.object({
  total: z.number().int(),
  pending: z.number().int(),
  done: z.number().int().describe("items stored by the job (an ocr job: items whose text it read and wrote)"),
  skipped: z
    .number()
    .int()
    .describe("items that were already stored (an ocr job: items that had a reading, not listed in items)"),
  failed: z.number().int(),
});

const jobStatusSchema = z.enum(["queued", "running", "done", "failed"]);

/** A job as `GET /v1/jobs/{id}` returns it. */
export const jobSchema = z.object({
  id: z.string(),
  kind: z.string(),
  status: jobStatusSchema,
  createdAt: z.string(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  counts: jobCountsSchema,
  items: z.array(jobItemSchema),
  error: jobErrorSchema.optional(),
  progress: z
    .record(z.string(), z.object({ done: z.number().int(), total: z.number().int() }))
    .optional()
    .describe(
      "a migrate job: rows of each kind (image, video_segment, triple) in the new collections, of the total",
    ),
});

/** Body of `GET /v1/jobs/{id}` and `POST /v1/jobs/{id}/resume`. */
export const jobResponseSchema = z.object({ job: jobSchema }).meta({ id: "JobResponse" });

/** Body of a 202 from an ingest endpoint that started a job (its `Location` header names the job). */
export const jobAcceptedSchema = z
  .object({ job: z.object({ id: z.string(), status: jobStatusSchema }) })
  .meta({ id: "JobAccepted" });

/** The `async` query parameter of the ingest routes. */
export const asyncQuerySchema = z.object({
  async: z
    .enum(["true", "false", "1", "0", ""], { error: "async must be true or false" })
    .optional()
    .describe("true: answer 202 with a job at once and ingest in the background (follow /v1/jobs/{id})."),
});

/** Whether the `async` query parameter asks for a job. */
export function wantsJob(query: z.infer<typeof asyncQuerySchema>): boolean {
  return query.async === "true" || query.async === "1";
}

/** The path parameter of the jobs routes. */
const jobParamsSchema = z.object({
  id: z
    .string()
    .min(1, "id must not be empty")
    .max(200, "id must be at most 200 characters")
    .describe("The job id from a 202."),
});

const noSuchJob = errorResponse("No such job for the caller.");

/** Body of `POST /v1/jobs`. */
export const createJobRequestSchema = z
  .object({
    kind: z
      .enum([OCR_JOB_KIND, REGIONS_JOB_KIND, MIGRATE_JOB_KIND], {
        error: (issue) => `unknown job kind ${JSON.stringify(issue.input)}; allowed: ocr, regions, migrate`,
      })
      .describe(
        "`regions`: find the objects in the caller's stored images and video segments stored without regions (ingested while LOUPE_REGIONS=off, or before the pack had a detection head) and store them as region records; items with metadata.regions are skipped, so a job started again continues. `ocr`: read the text of the caller's stored images and video segments that have none (ingested while LOUPE_OCR=off, or before OCR), writing ocrText and metadata.ocr. Items with metadata.ocr are skipped, so a job started again after a restart continues where the last one stopped. `migrate` (admin scope): switch the store to the model pack `to`, re-embedding every item of every tenant into collections of its model, then making them live at once (restart Loupe on that pack after); rows already copied are skipped, so a job started again continues.",
      ),
    to: z
      .string()
      .min(1, "to must not be empty")
      .max(1024, "to must be at most 1024 characters")
      .optional()
      .describe(
        "kind migrate: the pack to switch to, a directory on the server or a pack name under LOUPE_MODELS_DIR",
      ),
    dropOld: z
      .boolean()
      .optional()
      .describe("kind migrate: drop the old model's collections once the switch is made (default false)"),
    kinds: z
      .array(z.enum(OCR_BACKFILL_KINDS, { error: () => `kinds are ${OCR_BACKFILL_KINDS.join(", ")}` }))
      .min(1)
      .optional()
      .describe(`kinds ocr and regions: kinds to read; all of ${OCR_BACKFILL_KINDS.join(", ")} when absent.`),
  })
  .strict()
  .meta({ id: "CreateJobRequest" });

/** POST /v1/jobs. */
export const createJobRoute = defineRoute(
  {
    method: "post",
    path: "/v1/jobs",
    operationId: "createJob",
    tags: ["jobs"],
    summary:
      "Start a job (kind ocr: read the text of stored items; kind regions: find their objects; kind migrate: switch model packs)",
    description:
      "Starts a background job and answers 202 with its id (the Location header names it); follow it at /v1/jobs/{id} or its events. A tenant has one job of a kind under way at a time: while one is queued or running, it is the answer. Kind `ocr` lists the caller's images and video segments without metadata.ocr, reads each one's text (an image's original, a segment's keyframe) and writes it; its items are the records it read, its skipped count the records that had a reading.",
    request: { body: { content: { "application/json": { schema: createJobRequestSchema } } } },
    responses: {
      202: jsonResponse("Started; follow it at /v1/jobs/{id}.", jobAcceptedSchema),
      400: invalidRequestResponse,
      403: errorResponse("Kind migrate needs a key with the admin scope (code forbidden)."),
      409: errorResponse(
        "OCR is off on this server (code ocr_off): LOUPE_OCR=off; kind regions, the model pack has no detection head (code regions_unavailable); or, kind migrate, this server has no Milvus to migrate (code migration_unavailable).",
      ),
    },
  },
  { access: { scope: "ingest", cost: 5 } },
);

/** GET /v1/jobs/{id}. */
export const getJobRoute = defineRoute(
  {
    method: "get",
    path: "/v1/jobs/{id}",
    operationId: "getJob",
    tags: ["jobs"],
    summary: "A job's status, counts and items",
    request: { params: jobParamsSchema },
    responses: {
      200: jsonResponse("The job.", jobResponseSchema),
      400: invalidRequestResponse,
      404: noSuchJob,
    },
  },
  { access: { scope: "read", cost: 1 } },
);

/** GET /v1/jobs/{id}/events. */
export const jobEventsRoute = defineRoute(
  {
    method: "get",
    path: "/v1/jobs/{id}/events",
    operationId: "getJobEvents",
    tags: ["jobs"],
    summary: "A job's progress as server-sent events",
    description:
      "Named events: `progress` with the job's status and counts, `item` with each item's outcome, then `done`, or `error` (the counts and the error envelope) when the job failed as a whole.",
    request: { params: jobParamsSchema },
    responses: {
      200: {
        description: "An event stream, ending when the job is done or failed.",
        content: eventStreamContent,
      },
      400: invalidRequestResponse,
      404: noSuchJob,
    },
  },
  { access: { scope: "read", cost: 1 } },
);

/** POST /v1/jobs/{id}/resume. */
export const resumeJobRoute = defineRoute(
  {
    method: "post",
    path: "/v1/jobs/{id}/resume",
    operationId: "resumeJob",
    tags: ["jobs"],
    summary: "Resume a job",
    description: "Runs the items that are pending or failed again; stored items are skipped.",
    request: { params: jobParamsSchema },
    responses: {
      202: jsonResponse("Resumed; follow it at /v1/jobs/{id}.", jobResponseSchema),
      400: invalidRequestResponse,
      404: noSuchJob,
      409: errorResponse("The job is still running (code conflict)."),
    },
  },
  { access: { scope: "ingest", cost: 5 } },
);

/** An item in the API's shape: its description (`filename`, `url`…) flattened into it. */
export function jobItemToJson({ describe, ...item }: JobItem): z.infer<typeof jobItemSchema> {
  return { ...describe, ...item };
}

/** A job in the API's shape. */
export function jobToJson(job: JobSnapshot): z.infer<typeof jobSchema> {
  return { ...job, items: job.items.map(jobItemToJson) };
}

/** Options of {@link createJobsRoute}. */
export interface JobsRouteOptions {
  jobs: JobRegistry;
  /** The OCR backfill jobs of kind `ocr` run; absent when OCR is off. */
  ocrBackfill?: OcrBackfill;
  /** The region backfill jobs of kind `regions` run; absent without a detection head. */
  regionBackfill?: RegionBackfill;
  /** Where the items jobs write are recorded. */
  audit?: AuditLog;
  /** The pack switch jobs of kind `migrate` run; absent where there is no Milvus. */
  packMigration?: PackMigration;
  /** Jobs on the shared queue, read from PostgreSQL; looked up when `jobs` has no such job. */
  sharedJobs?: SharedJobs;
}

/** The /v1/jobs routes. */
export function createJobsRoute({
  jobs,
  ocrBackfill,
  regionBackfill,
  audit,
  packMigration,
  sharedJobs,
}: JobsRouteOptions) {
  /** This process's job, else the shared one; the registry's NotFoundError when neither has it. */
  const findJob = async (id: string, tenant: string): Promise<JobSnapshot> => {
    try {
      return jobs.get({ id, tenant });
    } catch (error) {
      const shared = error instanceof NotFoundError ? await sharedJobs?.get({ id, tenant }) : undefined;
      if (shared === undefined) throw error;
      return shared;
    }
  };
  const jobEvents = async (
    id: string,
    tenant: string,
    signal: AbortSignal,
  ): Promise<AsyncIterable<JobEvent>> => {
    try {
      jobs.get({ id, tenant });
      return jobs.events({ id, tenant, signal });
    } catch (error) {
      const shared =
        error instanceof NotFoundError ? await sharedJobs?.events({ id, tenant, signal }) : undefined;
      if (shared === undefined) throw error;
      return shared;
    }
  };
  /**
   * Starts a job whose items are found as it runs (a backfill, a switch): on the shared queue when there
   * is one (`params` are what its workers need), else in this process (`run`). One job of a kind per
   * tenant at a time (a switch on the shared queue: one at all): a second request gets the one under way.
   */
  const startJob = async (
    c: AppContext,
    { kind, params, run }: { kind: string; params: Record<string, unknown>; run: () => JobRunner<unknown> },
  ) => {
    const tenant = c.get("tenant");
    const job =
      sharedJobs !== undefined
        ? await sharedJobs.createListed({ tenant, kind, params, actor: auditActor(c, "POST /v1/jobs") })
        : (jobs.active({ tenant, kind }) ??
          jobs.create<unknown>({
            tenant,
            kind,
            items: [],
            run: run(),
            audit: jobAudit(c, "POST /v1/jobs", audit),
          }));
    c.header("location", `/v1/jobs/${job.id}`);
    return c.json({ job: { id: job.id, status: job.status } }, 202);
  };
  return createRouter()
    .openapi(createJobRoute, async (c) => {
      const body = c.req.valid("json");
      if (body.kind === MIGRATE_JOB_KIND) {
        if (!c.get("principal").scopes.has("admin")) {
          throw new AppError(
            "forbidden",
            403,
            "A job of kind migrate switches every tenant's items to another model pack; it needs a key with the `admin` scope (`loupe keys create --tenant <tenant> --scopes admin`), or run `loupe models migrate --to <pack>` where the data directory is.",
          );
        }
        if (body.to === undefined) {
          throw new ValidationError("A job of kind migrate needs `to`: the pack to switch to.", {
            context: { field: "to" },
          });
        }
        if (packMigration === undefined) {
          throw new AppError(
            "migration_unavailable",
            409,
            "This server has no Milvus to migrate (no model pack and no LOUPE_EMBEDDING_DIM); set one up first.",
          );
        }
        const pack = await packMigration.check(body.to);
        const dropOld = body.dropOld === true;
        return startJob(c, {
          kind: body.kind,
          // On the shared queue, workers copy and one of them switches.
          params: { dir: pack.dir, modelId: pack.modelId, dropOld },
          run: () => packMigration.runner({ to: body.to as string, dropOld }) as JobRunner<unknown>,
        });
      }
      if (body.to !== undefined || body.dropOld !== undefined) {
        throw new ValidationError("`to` and `dropOld` belong to jobs of kind migrate.", {
          context: { field: "to" },
        });
      }
      const tenant = c.get("tenant");
      const kinds = body.kinds === undefined ? {} : { kinds: body.kinds };
      if (body.kind === REGIONS_JOB_KIND) {
        if (regionBackfill === undefined) {
          throw new AppError(
            "regions_unavailable",
            409,
            "The model pack has no detection head (onnx/detection_model.onnx, loupe.detection in config.json), so no objects can be found. Serve a pack that has one.",
          );
        }
        // Workers on the shared queue need the detection head too.
        return startJob(c, {
          kind: body.kind,
          params: kinds,
          run: () => regionBackfill.runner({ tenant, ...kinds }) as JobRunner<unknown>,
        });
      }
      if (ocrBackfill === undefined) {
        throw new AppError(
          "ocr_off",
          409,
          "OCR is off on this server (LOUPE_OCR=off), so no text can be read. Set LOUPE_OCR=auto and restart, or run `loupe ocr backfill` where the data directory is.",
        );
      }
      // Workers on the shared queue need LOUPE_OCR=auto too.
      return startJob(c, {
        kind: body.kind,
        params: kinds,
        run: () => ocrBackfill.runner({ tenant, ...kinds }) as JobRunner<unknown>,
      });
    })
    .openapi(getJobRoute, async (c) => {
      const job = await findJob(c.req.valid("param").id, c.get("tenant"));
      c.header("cache-control", "no-store");
      return c.json({ job: jobToJson(job) }, 200);
    })
    .openapi(jobEventsRoute, async (c) => {
      const { id } = c.req.valid("param");
      const tenant = c.get("tenant");
      const requestId = c.get("requestId");
      // Looked up now, so an unknown job answers 404 rather than an empty stream.
      await findJob(id, tenant);
      return sseResponse({
        requestId,
        logger: c.get("logger"),
        events: async function* (signal) {
          for await (const event of await jobEvents(id, tenant, signal)) {
            if (event.type === "item") {
              yield { event: event.type, data: { ...event.data, item: jobItemToJson(event.data.item) } };
            } else if (event.type === "error") {
              const { error, ...rest } = event.data;
              yield { event: event.type, data: { ...rest, ...errorEnvelope({ ...error, requestId }) } };
            } else {
              yield { event: event.type, data: event.data };
            }
          }
        },
      });
    })
    .openapi(resumeJobRoute, async (c) => {
      const { id } = c.req.valid("param");
      const tenant = c.get("tenant");
      let job: JobSnapshot;
      try {
        job = await jobs.resume({
          id,
          tenant,
          // Recorded in the job's audit trail; the items the new run stores are this caller's doing.
          actor: auditActor(c, "POST /v1/jobs/{id}/resume"),
        });
      } catch (error) {
        const shared = error instanceof NotFoundError ? await sharedJobs?.resume({ id, tenant }) : undefined;
        if (shared === undefined) throw error;
        job = shared;
        // Reopened (queued again) rather than answered as it was: the new run is this caller's doing.
        if (shared.status === "queued" || shared.status === "running") {
          await recordWrite({
            c,
            log: audit,
            action: "job.resume",
            route: "POST /v1/jobs/{id}/resume",
            itemIds: [id],
            detail: { jobId: id, kind: shared.kind, items: shared.counts.pending },
          });
        }
      }
      return c.json({ job: jobToJson(job) }, 202);
    });
}
