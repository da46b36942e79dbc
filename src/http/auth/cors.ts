/**
 * CORS for the web origins that keys list (publishable keys for an embedded assistant, or keys made
 * with `--origins`), and for no other: a preflight from a listed origin is answered 204 with what it
 * may send; one from any other origin 403 in the error envelope; actual responses to a listed origin
 * carry `Access-Control-Allow-Origin` when the key used lists the origin, and so do refusals before a
 * key was accepted (so the page can read why). Credentials (cookies) are never allowed: keys travel in
 * headers. Whether the key used may be used from that origin is checked per key (`authenticate`,
 * `originCheck`).
 */
import type { MiddlewareHandler } from "hono";
import type { KeyStore } from "../../auth/key-store.ts";
import { normalizeOrigin } from "../../auth/origins.ts";
import type { AppEnv } from "../context.ts";
import type { AuthSetting } from "./auth-mode.ts";
import { keyStoreUnavailable, refuse } from "./refusal.ts";

const ALLOW_METHODS = "GET, POST, DELETE";
const ALLOW_HEADERS =
  "authorization, x-api-key, content-type, x-request-id, last-event-id, if-none-match, range, if-range";
const EXPOSE_HEADERS =
  "x-request-id, location, retry-after, ratelimit, ratelimit-policy, etag, accept-ranges, content-range, content-length";

/** Options of {@link cors}. */
export interface CorsOptions {
  keys: KeyStore;
  auth: AuthSetting;
}

/** The CORS middleware. */
export function cors({ keys, auth }: CorsOptions): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const origin = c.req.header("origin");
    if (origin === undefined) return next();
    const normalized = normalizeOrigin(origin);
    let allowed = false;
    if (auth === "keys" && normalized !== undefined) {
      try {
        allowed = (await keys.corsOrigins()).has(normalized);
      } catch (error) {
        return keyStoreUnavailable(c, error);
      }
    }
    const preflight =
      c.req.method === "OPTIONS" && c.req.header("access-control-request-method") !== undefined;
    if (preflight) {
      if (!allowed) {
        const response = refuse(c, {
          status: 403,
          code: "origin_not_allowed",
          message: `Cross-origin requests from ${JSON.stringify(origin.slice(0, 100))} are not allowed: no API key lists that origin.`,
        });
        response.headers.set("vary", "Origin");
        return response;
      }
      return c.body(null, 204, {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": ALLOW_METHODS,
        "access-control-allow-headers": ALLOW_HEADERS,
        "access-control-max-age": "600",
        vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
      });
    }
    await next();
    c.res.headers.append("vary", "Origin");
    // A key that does not list this origin gets no CORS answer for its results; refusals (no principal
    // yet, or none with a key) still get one, so the page can read why.
    const principal = c.get("principal");
    const keyAllows =
      principal?.keyId == null ||
      (normalized !== undefined && principal.origins?.includes(normalized) === true);
    if (allowed && keyAllows) {
      c.res.headers.set("access-control-allow-origin", origin);
      c.res.headers.set("access-control-expose-headers", EXPOSE_HEADERS);
    }
  };
}
