/**
 * GET /healthz — liveness: the process is up and serving. It checks no dependency, so an orchestrator
 * does not restart Loupe because Milvus is down (that is what /readyz reports).
 */
import { z } from "@hono/zod-openapi";
import { createRouter, defineRoute, jsonResponse } from "../openapi.ts";

/** Body of a 200 from /healthz. */
export const healthzResponseSchema = z.object({ status: z.literal("ok") });

/** GET /healthz. */
export const healthzRoute = defineRoute(
  {
    method: "get",
    path: "/healthz",
    operationId: "getHealthz",
    tags: ["probes"],
    summary: "Liveness",
    description: "200 while the process serves requests; checks no dependency.",
    responses: { 200: jsonResponse("Alive.", healthzResponseSchema) },
  },
  { access: { scope: "public" } },
);

/** The /healthz route. */
export function createHealthzRoute() {
  return createRouter().openapi(healthzRoute, (c) => {
    c.header("cache-control", "no-store");
    return c.json({ status: "ok" as const }, 200);
  });
}
