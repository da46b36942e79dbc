/**
 * Takes a route's cost from the caller's token bucket before anything of the request is read: an empty
 * bucket answers 429 with `Retry-After`, and every limited answer carries the `RateLimit-Policy` and
 * `RateLimit` fields.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context.ts";
import { callerOf } from "./caller.ts";
import { rateLimitHeaders } from "./rate-limit-headers.ts";
import { limitsOf } from "./request-limits.ts";
import { TooManyRequestsError } from "./too-many-requests-error.ts";

/** Middleware that charges `cost` tokens to the caller's bucket before the handler runs. */
export function costGate(cost: number): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const limits = limitsOf(c);
    if (limits === undefined) return next();
    const { bucket, rate, policy } = callerOf(c, limits.rate);
    if (bucket === undefined || rate.perSecond <= 0) return next();
    const decision = await limits.limiter.take({ key: bucket, cost, limit: rate });
    const headers = rateLimitHeaders({ policy, limit: rate, decision });
    // Set before the handler so that the error envelope carries them too, and again after it, since a
    // handler may answer with a Response of its own.
    for (const [name, value] of Object.entries(headers)) c.header(name, value);
    if (!decision.allowed) {
      c.header("Retry-After", String(decision.retryAfterSeconds));
      const source = policy === "key" ? "this API key's rate" : "LOUPE_RATE_LIMIT_PER_SECOND";
      throw new TooManyRequestsError(
        `Rate limit reached: this call costs ${cost} of a bucket of ${rate.burst} refilled at ${rate.perSecond} per second (${source}), and ${decision.remaining} ${decision.remaining === 1 ? "is" : "are"} left. Retry after ${decision.retryAfterSeconds} s.`,
        {
          code: "rate_limited",
          retryAfterSeconds: decision.retryAfterSeconds,
          context: { bucket, cost, limit: rate },
        },
      );
    }
    await next();
    for (const [name, value] of Object.entries(headers)) {
      if (!c.res.headers.has(name)) c.header(name, value);
    }
  };
}
