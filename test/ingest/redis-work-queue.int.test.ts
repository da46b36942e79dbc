/**
 * The shared jobs' work queue against the real Redis at 127.0.0.1:6379 (`LOUPE_TEST_REDIS_URL` overrides
 * it), under a key prefix of its own, deleted after: leases, their lapse, retries with a delay, renewals
 * and the size limit.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { OverloadedError } from "../../src/errors.ts";
import {
  decodeMessage,
  encodeMessage,
  FINISH_STEP,
  LIST_STEP,
  openRedisWorkQueue,
  type RedisWorkQueue,
} from "../../src/ingest/redis-work-queue.ts";

const REDIS_URL = process.env.LOUPE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const JOB = `job_${"ab".repeat(12)}`;
const queues: RedisWorkQueue[] = [];
const prefixes: string[] = [];

async function open({ leaseMs = 10_000, maxItems = 100 } = {}): Promise<RedisWorkQueue> {
  const keyPrefix = `loupe-test:${randomUUID()}:`;
  prefixes.push(keyPrefix);
  const queue = await openRedisWorkQueue({ url: REDIS_URL, keyPrefix, leaseMs, maxItems });
  queues.push(queue);
  return queue;
}

const item = (index: number, attempt = 1) => ({ jobId: JOB, index, attempt });

afterEach(async () => {
  for (const queue of queues.splice(0)) await queue.close();
});

afterAll(async () => {
  const redis = new Redis(REDIS_URL);
  for (const prefix of prefixes) {
    await redis.del(`${prefix}jobs:ready`, `${prefix}jobs:leased`, `${prefix}jobs:delayed`);
  }
  redis.disconnect();
});

describe("RedisWorkQueue", () => {
  it("encodes messages and refuses text that is not one", () => {
    expect(decodeMessage(encodeMessage(item(7, 2)))).toEqual(item(7, 2));
    expect(decodeMessage("job_1:2:3")).toBeUndefined();
    expect(decodeMessage(`${JOB}:1`)).toBeUndefined();
    expect(decodeMessage(`${JOB}:1:2:3`)).toBeUndefined();
    // A job's steps are the only negative indexes.
    expect(decodeMessage(encodeMessage(item(LIST_STEP)))).toEqual(item(LIST_STEP));
    expect(decodeMessage(encodeMessage(item(FINISH_STEP)))).toEqual(item(FINISH_STEP));
    expect(decodeMessage(`${JOB}:-3:1`)).toBeUndefined();
  });

  it("puts off a deferred item, its attempt not counted", async () => {
    const queue = await open();
    await queue.enqueue([item(0, 1)]);
    const [claimed] = await queue.claim(1);
    expect(await queue.defer(claimed as ReturnType<typeof item>, 300)).toBe(true);
    expect(await queue.defer(claimed as ReturnType<typeof item>, 300)).toBe(false);
    expect(await queue.claim(1)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await queue.claim(1)).toEqual([item(0, 1)]);
  });

  it("takes back released items untried, first in line; an item no longer held is not released", async () => {
    const queue = await open();
    await queue.enqueue([item(0), item(1), item(2), item(3)]);
    const claimed = await queue.claim(3);
    expect(claimed.map((message) => message.index)).toEqual([0, 1, 2]);
    expect(await queue.release(claimed.slice(1))).toBe(2);
    expect(await queue.release(claimed.slice(1))).toBe(0);
    // Before the item that waited all along, their attempts unchanged, in their order.
    expect(await queue.claim(3)).toEqual([item(1), item(2), item(3)]);
    expect(await queue.depth()).toEqual({ ready: 0, leased: 4, delayed: 0 });
  });

  it("hands each item to one claimant, first in first out; an acknowledged item is gone", async () => {
    const queue = await open();
    await queue.enqueue([item(0), item(1), item(2)]);
    const [a, b] = await Promise.all([queue.claim(2), queue.claim(2)]);
    const claimed = [...(a ?? []), ...(b ?? [])].map((message) => message.index).sort();
    expect(claimed).toEqual([0, 1, 2]);
    expect(await queue.depth()).toEqual({ ready: 0, leased: 3, delayed: 0 });
    for (const message of [...(a ?? []), ...(b ?? [])]) expect(await queue.ack(message)).toBe(true);
    expect(await queue.depth()).toEqual({ ready: 0, leased: 0, delayed: 0 });
    expect(await queue.claim(5)).toEqual([]);
  });

  it("gives a lapsed lease's item to the next claimant, its attempt counted; the old holder's ack is void", async () => {
    const queue = await open({ leaseMs: 200 });
    await queue.enqueue([item(0)]);
    const [first] = await queue.claim(1);
    expect(first).toEqual(item(0, 1));
    expect(await queue.claim(1)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await queue.claim(1)).toEqual([item(0, 2)]);
    expect(await queue.ack(item(0, 1))).toBe(false);
  });

  it("keeps a renewed lease", async () => {
    const queue = await open({ leaseMs: 300 });
    await queue.enqueue([item(0)]);
    const claimed = await queue.claim(1);
    for (let round = 0; round < 4; round += 1) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      expect(await queue.extend(claimed)).toBe(1);
    }
    expect(await queue.claim(1)).toEqual([]);
  });

  it("runs a retried item again after its delay, as the next attempt", async () => {
    const queue = await open();
    await queue.enqueue([item(3)]);
    const [message] = await queue.claim(1);
    expect(await queue.retry(message ?? item(3), 250)).toBe(true);
    expect(await queue.depth()).toEqual({ ready: 0, leased: 0, delayed: 1 });
    expect(await queue.claim(1)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await queue.claim(1)).toEqual([item(3, 2)]);
  });

  it("refuses items past its limit with overloaded, naming the setting", async () => {
    const queue = await open({ maxItems: 3 });
    await queue.enqueue([item(0), item(1)]);
    const refusal = await queue.enqueue([item(2), item(3)]).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(OverloadedError);
    expect((refusal as Error).message).toContain("LOUPE_JOB_QUEUE_MAX_ITEMS");
    expect(await queue.depth()).toEqual({ ready: 2, leased: 0, delayed: 0 });
  });
});
