/**
 * Reports every answered request to the metrics: method, the pattern of the route that answered
 * (`/v1/media/:id`, never the raw path, so unknown paths and ids add no series) and status, with the
 * time until the answer's headers; and each request refused to protect the server (`overloaded`,
 * `rate_limited`, `too_many_concurrent_requests`), read from the error the app answered with.
 */
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { AppError } from "../errors.ts";
import type { LoupeMetrics } from "../metrics/metrics.ts";
import type { AppContext, AppEnv } from "./context.ts";

/** The route label of a request that no route matched. */
export const UNMATCHED_ROUTE = "unmatched";

/** Error codes of the requests the limits shed. */
const SHED_CODES = new Set(["overloaded", "rate_limited", "too_many_concurrent_requests"]);

/**
 * The pattern of the route that handles the request: the last matched handler registered for a method
 * (middleware is registered for every method, `ALL`), or {@link UNMATCHED_ROUTE}.
 */
export function routePatternOf(c: AppContext): string {
  const routes = matchedRoutes(c);
  for (let index = routes.length - 1; index >= 0; index--) {
    const route = routes[index];
    if (route !== undefined && route.method !== "ALL") return route.path;
  }
  return UNMATCHED_ROUTE;
}

/** Middleware that reports each request to `metrics`; registered first, so it sees every answer. */
export function requestMetrics({
  metrics,
}: {
  metrics: Pick<LoupeMetrics, "observeRequest" | "countShed">;
}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      metrics.observeRequest({
        method: c.req.method,
        route: routePatternOf(c),
        status: c.res.status,
        seconds: (performance.now() - started) / 1000,
      });
      const error = c.error;
      if (error instanceof AppError && SHED_CODES.has(error.code)) metrics.countShed(error.code);
    }
  };
}
