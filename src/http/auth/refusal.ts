/**
 * How the trust-boundary middleware answers a request it refuses: the one error envelope, logged like
 * any other refused request, with the headers the status calls for (`WWW-Authenticate` on a 401).
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppContext } from "../context.ts";
import { errorEnvelope } from "../errors.ts";

/** What a refusal says. */
export interface Refusal {
  status: 401 | 403 | 421;
  code: string;
  message: string;
}

/** The challenge sent with every 401: a bearer key, as OpenAI clients send it. */
export const WWW_AUTHENTICATE = 'Bearer realm="loupe"';

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
