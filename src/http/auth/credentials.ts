/**
 * Where a request carries its API key: `Authorization: Bearer <key>` (what OpenAI clients send) or
 * `x-api-key: <key>`. Nothing else is read: no query parameter (URLs end up in logs and histories) and
 * no cookie (a cookie would ride along on cross-site requests).
 */
import type { AppContext } from "../context.ts";

/** What the request's headers say about its key. */
export type PresentedKey = { key: string } | { problem: string } | undefined;

/** The key a request presents, a problem with how it presents one, or `undefined` when it presents none. */
export function readPresentedKey(c: AppContext): PresentedKey {
  const authorization = c.req.header("authorization")?.trim();
  const headerKey = c.req.header("x-api-key")?.trim();
  let bearer: string | undefined;
  if (authorization !== undefined && authorization !== "") {
    const match = /^bearer\s+(\S+)$/i.exec(authorization);
    if (match === null) {
      return {
        problem:
          "The Authorization header is not `Bearer <key>`; send the API key as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
      };
    }
    bearer = match[1];
  }
  if (bearer !== undefined && headerKey !== undefined && headerKey !== "" && bearer !== headerKey) {
    return { problem: "The request carries two different API keys (Authorization and x-api-key); send one." };
  }
  const key = bearer ?? (headerKey === "" ? undefined : headerKey);
  return key === undefined ? undefined : { key };
}
