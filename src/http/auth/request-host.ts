/** The host a request was addressed to, and whether an `Origin` is that same host. */
import { normalizeOrigin } from "../../auth/origins.ts";
import type { AppContext } from "../context.ts";

/** The request's `Host` header; for in-process requests without one, the host of the request URL. */
export function requestHost(c: AppContext): string {
  return c.req.header("host") ?? new URL(c.req.url).host;
}

/** Whether `origin` is the origin the request was sent to (the page Loupe itself serves, e.g. /docs). */
export function isSameOrigin(origin: string, host: string): boolean {
  const normalized = normalizeOrigin(origin);
  if (normalized === undefined) return false;
  const url = new URL(normalized);
  try {
    return new URL(`${url.protocol}//${host}`).host === url.host;
  } catch {
    return false;
  }
}
