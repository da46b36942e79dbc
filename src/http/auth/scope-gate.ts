/**
 * Refuses a call whose principal lacks the route's scope (403), or whose key is publishable and the
 * route is not one a publishable key may call (chat, media, models, feedback). A request that reached a gated
 * route without a principal is refused 401: the gate fails closed.
 */
import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import type { AppEnv, Scope } from "../context.ts";
import { refuse } from "./refusal.ts";

/** The routes a publishable key may call (`METHOD /path` as Hono registers it). */
export const PUBLISHABLE_ROUTES: ReadonlySet<string> = new Set([
  "POST /v1/chat",
  "POST /v1/chat/completions",
  "POST /v1/responses",
  "GET /v1/media/:id",
  "GET /v1/media/:id/thumbnail",
  "GET /v1/models",
  "GET /v1/models/:model",
  // Ratings from the embedded assistant; the triples they propose wait for an `ingest` key's approval.
  "POST /v1/feedback",
]);

/**
 * Middleware that lets the call through only when the caller's principal holds `scope`; with
 * `openWhileAuthOff`, also every call while authentication is off (the principal then has no key).
 */
export function scopeGate(
  scope: Scope,
  { openWhileAuthOff = false }: { openWhileAuthOff?: boolean } = {},
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = c.get("principal");
    const route = `${c.req.method} ${c.req.path}`;
    if (principal === undefined) {
      return refuse(c, { status: 401, code: "unauthorized", message: `${route} needs an API key.` });
    }
    if (openWhileAuthOff && principal.keyId === null) return next();
    if (principal.publishable && !PUBLISHABLE_ROUTES.has(`${c.req.method} ${routePath(c)}`)) {
      return refuse(c, {
        status: 403,
        code: "forbidden",
        message: `A publishable key may only chat, read media, list models and send feedback; ${route} needs a secret key with the \`${scope}\` scope.`,
      });
    }
    if (!principal.scopes.has(scope)) {
      const held = [...principal.scopes].join(", ") || "none";
      return refuse(c, {
        status: 403,
        code: "forbidden",
        message:
          principal.keyId === null
            ? `${route} needs an API key with the \`${scope}\` scope, and authentication is off (no key exists). Create one with \`loupe keys create --tenant <tenant> --scopes ${scope}\`.`
            : `The key ${principal.keyId} lacks the \`${scope}\` scope that ${route} needs (it has: ${held}). Use a key made with \`--scopes ${scope}\`.`,
      });
    }
    return next();
  };
}
