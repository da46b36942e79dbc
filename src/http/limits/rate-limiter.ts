/**
 * The limiter port: where the state of rate limits and concurrency caps lives. The in-memory adapter
 * (`memory-rate-limiter.ts`) serves one process; an adapter over a shared store serves several replicas
 * with the same port, which is why every call is async.
 */

/** A token bucket: `burst` tokens at most, refilled at `perSecond` tokens a second. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

/** What {@link RateLimiter.take} decided. */
export interface RateDecision {
  /** True when the tokens were taken; false when the bucket holds too few (nothing is taken then). */
  allowed: boolean;
  /** Whole tokens left in the bucket after this call. */
  remaining: number;
  /** Seconds until the bucket is full again (0 when it is full). */
  resetSeconds: number;
  /** Seconds to wait before this call would be allowed (0 when allowed); at least 1 when refused. */
  retryAfterSeconds: number;
}

/** One held slot of a concurrency cap; release it exactly when the work ends (later calls do nothing). */
export interface ConcurrencyLease {
  release(): Promise<void>;
}

/** State of rate limits and concurrency caps, keyed by strings the caller chooses. */
export interface RateLimiter {
  /**
   * Takes `cost` tokens from the bucket `key` (made full on first use). A cost above `limit.burst` is
   * charged as `limit.burst`, so a small bucket still admits an expensive call when it is full.
   */
  take(request: { key: string; cost: number; limit: RateLimit }): Promise<RateDecision>;
  /**
   * Holds one of `max` slots of `key`, or resolves `undefined` when all are held. A lease not released
   * within `ttlMs` lapses, so a lost release (a crashed replica, a stream never read) frees its slot.
   */
  acquire(request: { key: string; max: number; ttlMs: number }): Promise<ConcurrencyLease | undefined>;
}
