/**
 * The limits every request is held to, put on the request's context by {@link requestLimits} (one
 * middleware registered in `createApp`) so that the gates `defineRoute` puts in front of each route find
 * the limiter and the settings without each route handing them in. A route mounted without that
 * middleware (route unit tests) is gated by body size only, at {@link DEFAULT_MAX_JSON_BYTES}.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { RateLimit, RateLimiter } from "./rate-limiter.ts";

/** What the gates enforce. */
export interface RequestLimits {
  /** Where buckets and leases live. */
  limiter: RateLimiter;
  /** The bucket of a caller whose key carries no rate of its own; `perSecond` 0 turns the limit off. */
  rate: RateLimit;
  /** Most heavy requests running at once per tenant; 0 for no cap. */
  maxHeavyPerTenant: number;
  /** Largest JSON body, in bytes (`LOUPE_MAX_JSON_BYTES`). */
  maxJsonBytes: number;
}

declare module "hono" {
  interface ContextVariableMap {
    /** The limits of this request, set by {@link requestLimits}. */
    limits: RequestLimits;
  }
}

/** `LOUPE_MAX_JSON_BYTES`'s default, for routes mounted without {@link requestLimits}. */
export const DEFAULT_MAX_JSON_BYTES = 32 * 1024 * 1024;

/** The settings {@link requestLimits} reads. */
export interface RequestLimitSettings {
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  maxHeavyPerTenant: number;
  maxJsonBytes: number;
}

/** Middleware that puts the limits on every request's context. */
export function requestLimits({
  limiter,
  config,
}: {
  limiter: RateLimiter;
  config: RequestLimitSettings;
}): MiddlewareHandler {
  const limits: RequestLimits = {
    limiter,
    rate: { perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst },
    maxHeavyPerTenant: config.maxHeavyPerTenant,
    maxJsonBytes: config.maxJsonBytes,
  };
  return async (c, next) => {
    c.set("limits", limits);
    await next();
  };
}

/** The limits of a request, when {@link requestLimits} runs in front of its route. */
export function limitsOf(c: Context): RequestLimits | undefined {
  return c.get("limits") as RequestLimits | undefined;
}
