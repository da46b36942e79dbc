/**
 * The rate-limit fields of the IETF draft "RateLimit header fields for HTTP"
 * (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy` states the bucket (`q` tokens, refilled
 * completely in `w` seconds) and `RateLimit` what is left of it (`r` tokens, full again in `t` seconds).
 */
import type { RateDecision, RateLimit } from "./rate-limiter.ts";

/** Name of the policy: the configured default, or the rate the caller's key carries. */
export type RatePolicyName = "default" | "key";

/** The `RateLimit-Policy` and `RateLimit` fields of a decision. */
export function rateLimitHeaders({
  policy,
  limit,
  decision,
}: {
  policy: RatePolicyName;
  limit: RateLimit;
  decision: RateDecision;
}): Record<string, string> {
  const window = Math.max(1, Math.ceil(limit.burst / limit.perSecond));
  return {
    "RateLimit-Policy": `"${policy}";q=${limit.burst};w=${window}`,
    RateLimit: `"${policy}";r=${decision.remaining};t=${decision.resetSeconds}`,
  };
}
