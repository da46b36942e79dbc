/**
 * GET /metrics — Loupe's metrics in the Prometheus text format (`text/plain; version=0.0.4`), for a
 * Prometheus server to scrape. On the API's port it is guarded like the admin routes: once API keys
 * exist it needs a key with the `admin` scope, since the series describe the whole server (every
 * tenant's traffic together); while authentication is off it is open, like every route then. It costs
 * nothing from the caller's rate limit, so scrapes go on while the traffic they watch spends the bucket.
 * With `LOUPE_METRICS_PORT` it is served on that port instead, without a key ({@link createMetricsApp}),
 * and not on the API's port.
 */

import type { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import type { HostPolicy } from "../../auth/host-policy.ts";
import type { Logger } from "../../logger.ts";
import type { MetricsExposition } from "../../metrics/metrics.ts";
import { hostCheck } from "../auth/host-check.ts";
import type { AppContext, AppEnv } from "../context.ts";
import { handleError, handleNotFound } from "../errors.ts";
import { createRouter, defineRoute } from "../openapi.ts";

/** The exposition, described for the OpenAPI document. */
const expositionSchema = z
  .string()
  .describe("Every series in the Prometheus text exposition format 0.0.4; docs/metrics.md lists them.");

function metricsRouteOf(access: "admin" | "public") {
  return defineRoute(
    {
      method: "get",
      path: "/metrics",
      operationId: "getMetrics",
      tags: ["metrics"],
      summary: "Prometheus metrics",
      description:
        "Requests by route and status, latency per route and per chat step, model runs, Milvus calls, ingested items, LLM calls and tokens, queues, Milvus Lite restarts and the process, in the Prometheus text format. Needs a key with the admin scope once API keys exist (open while authentication is off); served on LOUPE_METRICS_PORT instead, without a key, when that is set.",
      responses: {
        200: { description: "The metrics.", content: { "text/plain": { schema: expositionSchema } } },
      },
    },
    {
      access: access === "public" ? { scope: "public" } : { scope: "admin", cost: 0, openWhileAuthOff: true },
    },
  );
}

/** GET /metrics on the API's port. */
export const metricsRoute = metricsRouteOf("admin");

async function answer(c: AppContext, metrics: MetricsExposition) {
  const text = await metrics.render();
  c.header("cache-control", "no-store");
  return c.text(text, 200, { "Content-Type": metrics.contentType });
}

/** The /metrics route of the API's app. */
export function createMetricsRoute({ metrics }: { metrics: MetricsExposition }) {
  return createRouter().openapi(metricsRoute, (c) => answer(c, metrics));
}

/**
 * The app of the metrics port (`LOUPE_METRICS_PORT`): `GET /metrics` without a key, behind the same
 * `Host` check as the API (a page on a foreign name that resolves to this address cannot read it), every
 * other path 404 in the error envelope.
 */
export function createMetricsApp({
  metrics,
  hostPolicy,
  logger,
}: {
  metrics: MetricsExposition;
  hostPolicy: HostPolicy;
  /** Where refusals and failures are logged. */
  logger: Logger;
}): OpenAPIHono<AppEnv> {
  const app = createRouter();
  app.use(requestId({ limitLength: 128 }));
  app.use(async (c, next) => {
    c.set("logger", logger.child({ requestId: c.get("requestId") }));
    await next();
  });
  app.use(hostCheck(hostPolicy));
  app.openapi(metricsRouteOf("public"), (c) => answer(c, metrics));
  app.onError(handleError);
  app.notFound(handleNotFound);
  return app;
}
