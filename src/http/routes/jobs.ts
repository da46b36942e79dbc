/**
 * Ingest jobs, scoped to the caller's tenant (another tenant's job answers 404):
 * - `GET /v1/jobs/{id}`: the job with its counts and every item's outcome;
 * - `GET /v1/jobs/{id}/events`: server-sent events `progress`, `item`, then `done` (or `error` when
 *   the job failed as a whole); a job that has ended sends `progress` and its final event at once;
 * - `POST /v1/jobs/{id}/resume`: runs the items that are pending or failed again (409 while running).
 */
import { Hono } from "hono";
import { z } from "zod";
import type { JobItem, JobRegistry, JobSnapshot } from "../../ingest/jobs.ts";
import type { AppEnv } from "../context.ts";
import { sseResponse } from "../sse.ts";

/** Why an item or a job failed. */
export const jobErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
});

/** One item of a job; what describes it (`filename`, `url`, `file`) is spread into it. */
export const jobItemSchema = z.looseObject({
  index: z.number().int(),
  filename: z.string().optional().describe("name of the uploaded file"),
  url: z.string().optional().describe("URL the item was fetched from"),
  file: z.string().optional().describe("path given to the CLI"),
  status: z.enum(["pending", "stored", "skipped", "failed"]),
  id: z.string().optional(),
  error: jobErrorSchema.optional(),
  detail: z.record(z.string(), z.unknown()).optional(),
});

/** Item counters of a job. */
export const jobCountsSchema = z.object({
  total: z.number().int(),
  pending: z.number().int(),
  done: z.number().int().describe("items stored by the job"),
  skipped: z.number().int().describe("items that were already stored"),
  failed: z.number().int(),
});

/** A job as `GET /v1/jobs/{id}` returns it. */
export const jobSchema = z.object({
  id: z.string(),
  kind: z.string(),
  status: z.enum(["queued", "running", "done", "failed"]),
  createdAt: z.string(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  counts: jobCountsSchema,
  items: z.array(jobItemSchema),
  error: jobErrorSchema.optional(),
});

/** Body of `GET /v1/jobs/{id}` and `POST /v1/jobs/{id}/resume`. */
export const jobResponseSchema = z.object({ job: jobSchema });

/** Body of a 202 from an ingest endpoint that started a job. */
export const jobAcceptedSchema = z.object({
  job: z.object({ id: z.string(), status: z.enum(["queued", "running", "done", "failed"]) }),
});

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
}

/** The /v1/jobs routes. */
export function createJobsRoute({ jobs }: JobsRouteOptions): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .get("/v1/jobs/:id", (c) => {
      const job = jobs.get({ id: c.req.param("id"), tenant: c.get("tenant") });
      c.header("cache-control", "no-store");
      return c.json({ job: jobToJson(job) } satisfies z.infer<typeof jobResponseSchema>, 200);
    })
    .get("/v1/jobs/:id/events", (c) => {
      const id = c.req.param("id");
      const tenant = c.get("tenant");
      // Looked up now, so an unknown job answers 404 rather than an empty stream.
      jobs.get({ id, tenant });
      return sseResponse({
        events: async function* (signal) {
          for await (const event of jobs.events({ id, tenant, signal })) {
            const data =
              event.type === "item" ? { ...event.data, item: jobItemToJson(event.data.item) } : event.data;
            yield { event: event.type, data };
          }
        },
      });
    })
    .post("/v1/jobs/:id/resume", (c) => {
      const job = jobs.resume({ id: c.req.param("id"), tenant: c.get("tenant") });
      return c.json({ job: jobToJson(job) } satisfies z.infer<typeof jobResponseSchema>, 202);
    });
}
