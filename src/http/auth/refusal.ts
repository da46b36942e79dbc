/**
 * How the trust-boundary middleware answers a request it refuses: the one error envelope, logged like
 * any other refused request, with the headers the status calls for (`WWW-Authenticate` on a 401).
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppContext } from "../context.ts";
import { errorEnvelope } from "../errors.ts";

/** What a refusal says. */
export interface Refusal {
  status: 401 | 403 | 421 | 503;
  code: string;
  message: string;
}

/** The challenge sent with every 401: a bearer key, as OpenAI clients send it. */
export const WWW_AUTHENTICATE = 'Bearer realm="loupe"';

/**
 * The answer when the key store cannot be read (a corrupt file, a missing or changed secret): every
 * request that needs it is refused, and the caller is not told the store's paths, which the log has.
 */
export function keyStoreUnavailable(c: AppContext, error: unknown): Response {
  c.get("logger")?.error({ err: error }, "the API key store cannot be read; refusing requests");
  return refuse(c, {
    status: 503,
    code: "auth_unavailable",
    message:
      "Authentication is unavailable: the server cannot read its API keys. The server log has the details.",
  });
}

/** Answers `refusal` in the error envelope. Never echoes a credential. */
export function refuse(c: AppContext, { status, code, message }: Refusal): Response {
  c.get("logger")?.info({ err: { code, status, message } }, "request refused");
  const headers: Record<string, string> = { "cache-control": "no-store" };
  if (status === 401) headers["www-authenticate"] = WWW_AUTHENTICATE;
  return c.json(
    errorEnvelope({ code, message, requestId: c.get("requestId") ?? "unknown" }),
    status as ContentfulStatusCode,
    headers,
  );
}
