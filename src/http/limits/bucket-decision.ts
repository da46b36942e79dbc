/**
 * The token-bucket arithmetic every `RateLimiter` adapter answers with, so that the memory and the
 * Redis adapters give the same decisions and the same `RateLimit` headers for the same bucket state.
 */
import type { RateDecision, RateLimit } from "./rate-limiter.ts";

/**
 * The decision for a bucket that held `tokens` (already refilled to now) when `cost` was asked of it:
 * the charge is the cost capped at the burst, taken only when the bucket holds that many. `left` is
 * what the bucket holds afterwards, unrounded, for the adapter to store.
 */
export function bucketDecision({ tokens, cost, limit }: { tokens: number; cost: number; limit: RateLimit }): {
  decision: RateDecision;
  left: number;
} {
  const charge = Math.min(cost, limit.burst);
  const allowed = tokens >= charge;
  const left = allowed ? tokens - charge : tokens;
  return {
    left,
    decision: {
      allowed,
      remaining: Math.floor(left),
      resetSeconds: Math.ceil((limit.burst - left) / limit.perSecond),
      retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((charge - left) / limit.perSecond)),
    },
  };
}
