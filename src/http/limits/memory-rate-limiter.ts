/**
 * The in-memory adapter of the {@link RateLimiter} port: token buckets and lease counts in maps of this
 * process. Buckets that have refilled completely hold no information and are swept, so the maps stay
 * as small as the set of callers active in the last few seconds.
 */
import { bucketDecision } from "./bucket-decision.ts";
import type { ConcurrencyLease, RateDecision, RateLimit, RateLimiter } from "./rate-limiter.ts";

/** Options of {@link createMemoryRateLimiter}. */
export interface MemoryRateLimiterOptions {
  /** Clock in milliseconds; tests pass their own. */
  now?: () => number;
  /** Most buckets kept; past it the least recently used are dropped (they restart full). */
  maxBuckets?: number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
  limit: RateLimit;
}

const SWEEP_INTERVAL_MS = 10_000;

/** A {@link RateLimiter} whose state lives in this process. */
export function createMemoryRateLimiter({
  now = () => performance.now(),
  maxBuckets = 100_000,
}: MemoryRateLimiterOptions = {}): RateLimiter {
  const buckets = new Map<string, Bucket>();
  const leases = new Map<string, Map<number, number>>();
  let nextLeaseId = 0;
  let lastSweep = now();

  const refilled = (bucket: Bucket, at: number): number =>
    Math.min(
      bucket.limit.burst,
      bucket.tokens + (Math.max(0, at - bucket.updatedAt) / 1000) * bucket.limit.perSecond,
    );

  const sweep = (at: number) => {
    lastSweep = at;
    for (const [key, bucket] of buckets) {
      if (refilled(bucket, at) >= bucket.limit.burst) buckets.delete(key);
    }
    for (const [key, held] of leases) {
      for (const [id, expiresAt] of held) if (expiresAt <= at) held.delete(id);
      if (held.size === 0) leases.delete(key);
    }
  };

  return {
    async take({ key, cost, limit }): Promise<RateDecision> {
      const at = now();
      if (at - lastSweep >= SWEEP_INTERVAL_MS || buckets.size >= maxBuckets) sweep(at);
      const bucket = buckets.get(key);
      // Re-inserting keeps the map in least-recently-used order for the eviction below.
      if (bucket !== undefined) buckets.delete(key);
      const current: Bucket = bucket ?? { tokens: limit.burst, updatedAt: at, limit };
      const tokens = Math.min(limit.burst, refilled({ ...current, limit }, at));
      const { left, decision } = bucketDecision({ tokens, cost, limit });
      buckets.set(key, { tokens: left, updatedAt: at, limit });
      while (buckets.size > maxBuckets) {
        const oldest = buckets.keys().next().value;
        if (oldest === undefined) break;
        buckets.delete(oldest);
      }
      return decision;
    },

    async acquire({ key, max, ttlMs }): Promise<ConcurrencyLease | undefined> {
      const at = now();
      const held = leases.get(key) ?? new Map<number, number>();
      for (const [id, expiresAt] of held) if (expiresAt <= at) held.delete(id);
      if (held.size >= max) return undefined;
      const id = nextLeaseId++;
      held.set(id, at + ttlMs);
      leases.set(key, held);
      return {
        async release() {
          const current = leases.get(key);
          if (current === undefined) return;
          current.delete(id);
          if (current.size === 0) leases.delete(key);
        },
      };
    },
  };
}
