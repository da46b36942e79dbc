/**
 * Refuses requests addressed to a `Host` this server does not answer to (DNS rebinding: a page on an
 * attacker's name that resolves to Loupe's address sends its own name). Runs on every route, probes
 * included, before anything else reads the request. Answered 421 Misdirected Request.
 */
import type { MiddlewareHandler } from "hono";
import type { HostPolicy } from "../../auth/host-policy.ts";
import type { AppEnv } from "../context.ts";
import { refuse } from "./refusal.ts";
import { requestHost } from "./request-host.ts";

/** Middleware that answers 421 `host_not_allowed` unless `policy` allows the request's host. */
export function hostCheck(policy: HostPolicy): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const host = requestHost(c);
    if (!policy.allows(host)) {
      return refuse(c, {
        status: 421,
        code: "host_not_allowed",
        message: `This server does not answer to the host ${JSON.stringify(host.slice(0, 100))}. Use an allowed host name, or add it to LOUPE_ALLOWED_HOSTS.`,
      });
    }
    return next();
  };
}
