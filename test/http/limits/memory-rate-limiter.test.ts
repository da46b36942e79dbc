/** The in-memory limiter: token-bucket arithmetic on a fake clock, eviction, and leases with their TTL. */
import { describe, expect, it } from "vitest";
import { createMemoryRateLimiter } from "../../../src/http/limits/memory-rate-limiter.ts";

function clock(start = 1_000_000) {
  let now = start;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

const tenPerSecond = { perSecond: 10, burst: 10 };

describe("createMemoryRateLimiter take", () => {
  it("starts full, refuses the call past the burst, and says when to retry", async () => {
    const time = clock();
    const limiter = createMemoryRateLimiter({ now: time.now });
    const decisions = [];
    for (let index = 0; index < 11; index += 1) {
      decisions.push(await limiter.take({ key: "k", cost: 1, limit: tenPerSecond }));
    }
    expect(decisions.slice(0, 10).every((decision) => decision.allowed)).toBe(true);
    expect(decisions[9]).toMatchObject({ remaining: 0, resetSeconds: 1, retryAfterSeconds: 0 });
    expect(decisions[10]).toEqual({ allowed: false, remaining: 0, resetSeconds: 1, retryAfterSeconds: 1 });
    time.advance(100);
    expect(await limiter.take({ key: "k", cost: 1, limit: tenPerSecond })).toMatchObject({ allowed: true });
  });

  it("charges heavy calls more and refills at the configured rate", async () => {
    const time = clock();
    const limiter = createMemoryRateLimiter({ now: time.now });
    const limit = { perSecond: 2, burst: 10 };
    expect(await limiter.take({ key: "k", cost: 5, limit })).toMatchObject({ allowed: true, remaining: 5 });
    expect(await limiter.take({ key: "k", cost: 5, limit })).toMatchObject({ allowed: true, remaining: 0 });
    // 5 tokens at 2 per second: 2.5 s, said as 3.
    expect(await limiter.take({ key: "k", cost: 5, limit })).toMatchObject({
      allowed: false,
      retryAfterSeconds: 3,
      resetSeconds: 5,
    });
    time.advance(2_500);
    expect(await limiter.take({ key: "k", cost: 5, limit })).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("a refused call takes nothing", async () => {
    const time = clock();
    const limiter = createMemoryRateLimiter({ now: time.now });
    const limit = { perSecond: 1, burst: 5 };
    await limiter.take({ key: "k", cost: 4, limit });
    expect(await limiter.take({ key: "k", cost: 5, limit })).toMatchObject({ allowed: false, remaining: 1 });
    expect(await limiter.take({ key: "k", cost: 1, limit })).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("a cost above the burst is charged as the whole bucket", async () => {
    const limiter = createMemoryRateLimiter({ now: clock().now });
    const limit = { perSecond: 1, burst: 3 };
    expect(await limiter.take({ key: "k", cost: 5, limit })).toMatchObject({ allowed: true, remaining: 0 });
    expect(await limiter.take({ key: "k", cost: 5, limit })).toMatchObject({
      allowed: false,
      retryAfterSeconds: 3,
    });
  });

  it("keeps buckets apart and follows a changed limit", async () => {
    const time = clock();
    const limiter = createMemoryRateLimiter({ now: time.now });
    for (let index = 0; index < 10; index += 1)
      await limiter.take({ key: "a", cost: 1, limit: tenPerSecond });
    expect(await limiter.take({ key: "b", cost: 1, limit: tenPerSecond })).toMatchObject({ allowed: true });
    // A smaller bucket for the same key holds at most its own burst.
    time.advance(10_000);
    expect(await limiter.take({ key: "a", cost: 1, limit: { perSecond: 1, burst: 2 } })).toMatchObject({
      allowed: true,
      remaining: 1,
    });
  });

  it("drops the least recently used bucket past maxBuckets (it starts full again)", async () => {
    const limiter = createMemoryRateLimiter({ now: clock().now, maxBuckets: 2 });
    const limit = { perSecond: 0.001, burst: 1 };
    await limiter.take({ key: "a", cost: 1, limit });
    await limiter.take({ key: "b", cost: 1, limit });
    await limiter.take({ key: "c", cost: 1, limit });
    expect(await limiter.take({ key: "c", cost: 1, limit })).toMatchObject({ allowed: false });
    expect(await limiter.take({ key: "a", cost: 1, limit })).toMatchObject({ allowed: true });
  });
});

describe("createMemoryRateLimiter acquire", () => {
  it("holds at most max leases per key; a release frees one, twice frees one", async () => {
    const limiter = createMemoryRateLimiter({ now: clock().now });
    const first = await limiter.acquire({ key: "t", max: 2, ttlMs: 60_000 });
    const second = await limiter.acquire({ key: "t", max: 2, ttlMs: 60_000 });
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(await limiter.acquire({ key: "t", max: 2, ttlMs: 60_000 })).toBeUndefined();
    expect(await limiter.acquire({ key: "other", max: 2, ttlMs: 60_000 })).toBeDefined();
    await first?.release();
    await first?.release();
    expect(await limiter.acquire({ key: "t", max: 2, ttlMs: 60_000 })).toBeDefined();
    expect(await limiter.acquire({ key: "t", max: 2, ttlMs: 60_000 })).toBeUndefined();
  });

  it("a lease never released lapses after its TTL", async () => {
    const time = clock();
    const limiter = createMemoryRateLimiter({ now: time.now });
    await limiter.acquire({ key: "t", max: 1, ttlMs: 1000 });
    expect(await limiter.acquire({ key: "t", max: 1, ttlMs: 1000 })).toBeUndefined();
    time.advance(1000);
    expect(await limiter.acquire({ key: "t", max: 1, ttlMs: 1000 })).toBeDefined();
  });
});
