/**
 * Refuses state-changing requests (POST, PUT, PATCH, DELETE) sent by a web page the caller did not
 * allow: a request with an `Origin` header is let through only when that origin is the server's own
 * (its /docs page) or one the key lists. This is what stops a cross-site page from posting into Loupe
 * (a multipart form needs no CORS preflight), with or without keys. Requests without `Origin` (curl,
 * SDKs, servers) are not affected.
 */
import type { MiddlewareHandler } from "hono";
import { normalizeOrigin } from "../../auth/origins.ts";
import type { AppEnv } from "../context.ts";
import { refuse } from "./refusal.ts";
import { isSameOrigin, requestHost } from "./request-host.ts";

const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Middleware that answers 403 `origin_not_allowed` to a state-changing request from a foreign origin. */
export function originCheck(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const origin = c.req.header("origin");
    if (origin === undefined || !STATE_CHANGING.has(c.req.method)) return next();
    if (isSameOrigin(origin, requestHost(c))) return next();
    const principal = c.get("principal");
    const normalized = normalizeOrigin(origin);
    if (principal?.keyId != null && normalized !== undefined && principal.origins?.includes(normalized)) {
      return next();
    }
    return refuse(c, {
      status: 403,
      code: "origin_not_allowed",
      message:
        principal?.keyId == null
          ? `A ${c.req.method} from the web origin ${JSON.stringify(origin.slice(0, 100))} is refused: without API keys only this server's own pages may send one. Create keys with \`loupe keys create … --origins <origin>\` to allow a web app.`
          : `A ${c.req.method} from the web origin ${JSON.stringify(origin.slice(0, 100))} is refused: the key ${principal.keyId} does not list it. Make a key with \`--origins ${normalized ?? "<origin>"}\` for a web app.`,
    });
  };
}
