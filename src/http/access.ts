/**
 * What a route's caller needs and what a call costs, declared with the route (`defineRoute`'s `access`):
 * the scope a key must hold, and the tokens a call takes from the key's rate-limit bucket (heavy routes
 * cost more). The declaration is enforced by the gate `defineRoute` puts in front of the handler and
 * written into the OpenAPI document (`x-loupe-scope`, `x-loupe-cost`).
 */
import type { MiddlewareHandler } from "hono";
import { scopeGate } from "./auth/scope-gate.ts";
import type { AppEnv, Scope } from "./context.ts";
import { costGate } from "./limits/cost-gate.ts";

/**
 * A route's access rule: `public` routes (probes, the API reference) need no key and cost nothing.
 * `openWhileAuthOff`: while authentication is off (no key exists, or `LOUPE_AUTH=none`) the route is
 * open, even when its scope is one that requests lack then (`admin`); once keys exist the scope holds.
 */
export type RouteAccess = { scope: "public" } | { scope: Scope; cost: number; openWhileAuthOff?: boolean };

/** The middleware that enforces `access`: the scope first (a refused call costs nothing), then the cost. */
export function accessGate(access: RouteAccess): MiddlewareHandler<AppEnv>[] {
  if (access.scope === "public") return [];
  return [
    scopeGate(access.scope, { openWhileAuthOff: access.openWhileAuthOff === true }),
    costGate(access.cost),
  ];
}
