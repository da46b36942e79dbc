/**
 * GET /healthz — liveness: the process is up and serving. It checks no dependency, so an orchestrator
 * does not restart Loupe because Milvus is down (that is what /readyz reports).
 */
import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../context.ts";

/** Body of a 200 from /healthz. */
export const healthzResponseSchema = z.object({ status: z.literal("ok") });

/** The /healthz route. */
export function createHealthzRoute(): Hono<AppEnv> {
  return new Hono<AppEnv>().get("/healthz", (c) => {
    c.header("cache-control", "no-store");
    return c.json({ status: "ok" } satisfies z.infer<typeof healthzResponseSchema>, 200);
  });
}
