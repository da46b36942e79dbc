/**
 * The Redis limiter against the real Redis at 127.0.0.1:6379 (`LOUPE_TEST_REDIS_URL` overrides it), under
 * a key prefix of this file's own: the memory limiter's cases run against both adapters on the real
 * clock; two limiters with their own connections (two replicas) share one budget and one heavy cap;
 * leases of a replica that vanished lapse; keys expire; an unreachable Redis, at start and mid-run, fails
 * over to memory and back, logging each switch once; and two apps on one Redis (the gate test app, and
 * Loupe's own app over two sets of services built from `LOUPE_REDIS_URL`) answer 429 from the second
 * once the first has spent the caller's bucket.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../../src/app.ts";
import { createMemoryRateLimiter } from "../../../src/http/limits/memory-rate-limiter.ts";
import type { RateLimiter } from "../../../src/http/limits/rate-limiter.ts";
import {
  openRedisRateLimiter,
  type RedisRateLimiter,
  type RedisRateLimiterOptions,
} from "../../../src/http/limits/redis-rate-limiter.ts";
import { createLogger } from "../../../src/logger.ts";
import { openTestServices } from "../../helpers/app.ts";
import { gateApp } from "./gate-app.ts";

const REDIS_URL = process.env.LOUPE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const PREFIX = `loupe:test-${randomUUID()}:`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const quiet = createLogger({ level: "silent" });
const opened: RedisRateLimiter[] = [];
let admin: Redis;

/** A limiter on the test Redis under this file's prefix, closed after the file. */
async function replica(options: Partial<RedisRateLimiterOptions> = {}): Promise<RedisRateLimiter> {
  const limiter = await openRedisRateLimiter({
    url: REDIS_URL,
    logger: quiet,
    keyPrefix: PREFIX,
    ...options,
  });
  opened.push(limiter);
  return limiter;
}

/** A logger whose lines the test reads back. */
function capturedLogger() {
  const lines: Array<{ level: number; msg: string }> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line.trim() !== "") lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger({ level: "info", destination }), lines };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A TCP proxy to the test Redis that a test can cut (every connection dropped) and put back on the same
 * port, or make hang (commands held, as by a stalled server or network, and delivered on `resume`).
 */
async function redisProxy() {
  const target = new URL(REDIS_URL);
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  let server: Server | undefined;
  let port = 0;
  let hung = false;
  const start = async () => {
    server = createServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      const pair = { client, upstream };
      pairs.add(pair);
      const end = () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const socket of [client, upstream]) socket.on("close", end).on("error", end);
      upstream.pipe(client);
      if (hung) client.pause();
      else client.pipe(upstream);
    });
    await new Promise<void>((resolve) => server?.listen(port, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  };
  const stop = async () => {
    for (const { client } of pairs) client.destroy();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  };
  const hang = () => {
    hung = true;
    for (const { client, upstream } of pairs) {
      client.unpipe(upstream);
      client.pause();
    }
  };
  const resume = () => {
    hung = false;
    for (const { client, upstream } of pairs) client.pipe(upstream);
  };
  await start();
  return { url: () => `redis://127.0.0.1:${port}`, start, stop, hang, resume };
}

/** Calls `probe` every 50 ms until it returns true, for at most `timeoutMs`. */
async function eventually(probe: () => Promise<boolean>, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await sleep(50);
  }
  return false;
}

beforeAll(() => {
  admin = new Redis(REDIS_URL);
});

afterAll(async () => {
  await Promise.all(opened.splice(0).map((limiter) => limiter.close()));
  const keys = await admin.keys(`${PREFIX}*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

const tenPerSecond = { perSecond: 10, burst: 10 };

// The memory limiter's cases, on the real clock: each test has keys of its own.
describe.each([
  { name: "memory", open: async (): Promise<RateLimiter> => createMemoryRateLimiter() },
  { name: "redis", open: (): Promise<RateLimiter> => replica() },
])("$name limiter", ({ open }) => {
  let limiter: RateLimiter;
  beforeAll(async () => {
    limiter = await open();
  });
  const fresh = () => `case-${randomUUID()}`;

  it("starts full, refuses the call past the burst, and says when to retry", async () => {
    const key = fresh();
    // 2 a second (not the memory test's 10 on a stopped clock): a stall of up to 0.5 s changes nothing.
    const limit = { perSecond: 2, burst: 10 };
    const decisions = [];
    for (let index = 0; index < 11; index += 1) decisions.push(await limiter.take({ key, cost: 1, limit }));
    expect(decisions.slice(0, 10).every((decision) => decision.allowed)).toBe(true);
    expect(decisions[9]).toMatchObject({ remaining: 0, resetSeconds: 5, retryAfterSeconds: 0 });
    expect(decisions[10]).toEqual({ allowed: false, remaining: 0, resetSeconds: 5, retryAfterSeconds: 1 });
    await sleep(550);
    expect(await limiter.take({ key, cost: 1, limit })).toMatchObject({ allowed: true });
  });

  it("charges heavy calls more and refills at the configured rate", async () => {
    const key = fresh();
    const limit = { perSecond: 2, burst: 10 };
    expect(await limiter.take({ key, cost: 5, limit })).toMatchObject({ allowed: true, remaining: 5 });
    expect(await limiter.take({ key, cost: 5, limit })).toMatchObject({ allowed: true, remaining: 0 });
    expect(await limiter.take({ key, cost: 5, limit })).toMatchObject({
      allowed: false,
      retryAfterSeconds: 3,
      resetSeconds: 5,
    });
    await sleep(2_550);
    expect(await limiter.take({ key, cost: 5, limit })).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("a refused call takes nothing", async () => {
    const key = fresh();
    const limit = { perSecond: 0.01, burst: 5 };
    await limiter.take({ key, cost: 4, limit });
    expect(await limiter.take({ key, cost: 5, limit })).toMatchObject({ allowed: false, remaining: 1 });
    expect(await limiter.take({ key, cost: 1, limit })).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("a cost above the burst is charged as the whole bucket", async () => {
    const key = fresh();
    const limit = { perSecond: 1, burst: 3 };
    expect(await limiter.take({ key, cost: 5, limit })).toMatchObject({ allowed: true, remaining: 0 });
    expect(await limiter.take({ key, cost: 5, limit })).toMatchObject({
      allowed: false,
      retryAfterSeconds: 3,
    });
  });

  it("keeps buckets apart and follows a changed limit", async () => {
    const [a, b] = [fresh(), fresh()];
    for (let index = 0; index < 10; index += 1) await limiter.take({ key: a, cost: 1, limit: tenPerSecond });
    expect(await limiter.take({ key: b, cost: 1, limit: tenPerSecond })).toMatchObject({ allowed: true });
    // A smaller bucket for the same key holds at most its own burst.
    await sleep(1_050);
    expect(await limiter.take({ key: a, cost: 1, limit: { perSecond: 5, burst: 2 } })).toMatchObject({
      allowed: true,
      remaining: 1,
    });
  });

  it("holds at most max leases per key; a release frees one, twice frees one", async () => {
    const [key, other] = [fresh(), fresh()];
    const first = await limiter.acquire({ key, max: 2, ttlMs: 60_000 });
    const second = await limiter.acquire({ key, max: 2, ttlMs: 60_000 });
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(await limiter.acquire({ key, max: 2, ttlMs: 60_000 })).toBeUndefined();
    expect(await limiter.acquire({ key: other, max: 2, ttlMs: 60_000 })).toBeDefined();
    await first?.release();
    await first?.release();
    expect(await limiter.acquire({ key, max: 2, ttlMs: 60_000 })).toBeDefined();
    expect(await limiter.acquire({ key, max: 2, ttlMs: 60_000 })).toBeUndefined();
  });

  it("a lease never released lapses after its TTL", async () => {
    const key = fresh();
    await limiter.acquire({ key, max: 1, ttlMs: 500 });
    expect(await limiter.acquire({ key, max: 1, ttlMs: 500 })).toBeUndefined();
    await sleep(550);
    expect(await limiter.acquire({ key, max: 1, ttlMs: 500 })).toBeDefined();
  });
});

describe("two replicas on one Redis", () => {
  it("share one 10/s budget: over 2 s they admit about 10 × 2 + the burst in total, not twice that", async () => {
    const [first, second] = [await replica(), await replica()];
    const key = `shared-${randomUUID()}`;
    const admitted = [0, 0];
    const until = performance.now() + 2_000;
    // Each replica asks every 10 ms, far more than the budget, as two busy API processes would.
    await Promise.all(
      [first, second].map(async (limiter, index) => {
        while (performance.now() < until) {
          if ((await limiter.take({ key, cost: 1, limit: tenPerSecond })).allowed) {
            admitted[index] = (admitted[index] ?? 0) + 1;
          }
          await sleep(10);
        }
      }),
    );
    const total = (admitted[0] ?? 0) + (admitted[1] ?? 0);
    // 10 at once, then 10 a second for 2 s: 30; two replicas each with their own budget would admit 60.
    expect(total).toBeGreaterThanOrEqual(27);
    expect(total).toBeLessThanOrEqual(32);
    expect(admitted[0]).toBeGreaterThan(0);
    expect(admitted[1]).toBeGreaterThan(0);
  });

  it("are atomic: 100 calls racing from both admit exactly the burst", async () => {
    const [first, second] = [await replica(), await replica()];
    const key = `race-${randomUUID()}`;
    const limit = { perSecond: 0.001, burst: 10 };
    const decisions = await Promise.all(
      Array.from({ length: 100 }, (_, index) =>
        (index % 2 === 0 ? first : second).take({ key, cost: 1, limit }),
      ),
    );
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(10);
  });

  it("share the heavy cap, and the leases of a replica that vanished lapse after their TTL", async () => {
    const [first, second] = [await replica(), await replica()];
    const key = `tenant:${randomUUID()}`;
    const lease = await first.acquire({ key, max: 2, ttlMs: 60_000 });
    expect(await second.acquire({ key, max: 2, ttlMs: 400 })).toBeDefined();
    expect(await first.acquire({ key, max: 2, ttlMs: 60_000 })).toBeUndefined();
    await lease?.release();
    expect(await first.acquire({ key, max: 2, ttlMs: 60_000 })).toBeDefined();
    // The second replica goes away without releasing: its slot frees itself after 400 ms.
    await second.close();
    expect(await first.acquire({ key, max: 2, ttlMs: 60_000 })).toBeUndefined();
    await sleep(450);
    expect(await first.acquire({ key, max: 2, ttlMs: 60_000 })).toBeDefined();
  });
});

describe("keys", () => {
  it("are prefixed, and expire once a bucket would be full again or its last lease lapses", async () => {
    const limiter = await replica();
    const key = `expiring-${randomUUID()}`;
    await limiter.take({ key, cost: 1, limit: { perSecond: 5, burst: 10 } });
    const ttl = await admin.pttl(`${PREFIX}rate:${key}`);
    // One token at 5 a second: 200 ms.
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(200);
    await limiter.acquire({ key, max: 1, ttlMs: 300 });
    const leaseTtl = await admin.pttl(`${PREFIX}lease:${key}`);
    expect(leaseTtl).toBeGreaterThan(0);
    expect(leaseTtl).toBeLessThanOrEqual(300);
    await sleep(350);
    expect(await admin.exists(`${PREFIX}rate:${key}`, `${PREFIX}lease:${key}`)).toBe(0);
    // A full bucket holds nothing worth keeping.
    await limiter.take({ key, cost: 0, limit: { perSecond: 5, burst: 10 } });
    expect(await admin.exists(`${PREFIX}rate:${key}`)).toBe(0);
  });
});

describe("Redis that cannot be reached", () => {
  it("at start: the limits answer from memory, still enforced, and the switch is logged once", async () => {
    const { logger, lines } = capturedLogger();
    const started = performance.now();
    const limiter = await replica({
      url: `redis://127.0.0.1:${await closedPort()}`,
      logger,
      connectTimeoutMs: 300,
    });
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(limiter.shared).toBe(false);
    const key = randomUUID();
    const decisions = [];
    for (let index = 0; index < 11; index += 1) {
      decisions.push(await limiter.take({ key, cost: 1, limit: tenPerSecond }));
    }
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(10);
    expect(await limiter.acquire({ key, max: 1, ttlMs: 60_000 })).toBeDefined();
    expect(await limiter.acquire({ key, max: 1, ttlMs: 60_000 })).toBeUndefined();
    const warnings = lines.filter((line) => line.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/fall back to this process's memory/);
  });

  it("mid-run: calls fail over to memory within the command timeout, then go back to Redis and retry lost releases", async () => {
    const proxy = await redisProxy();
    const { logger, lines } = capturedLogger();
    const limiter = await replica({ url: proxy.url(), logger, commandTimeoutMs: 300 });
    const other = await replica();
    expect(limiter.shared).toBe(true);
    const key = `outage-${randomUUID()}`;
    const lease = await limiter.acquire({ key, max: 1, ttlMs: 60_000 });
    expect(await other.acquire({ key, max: 1, ttlMs: 60_000 })).toBeUndefined();

    await proxy.stop();
    const started = performance.now();
    expect(await limiter.take({ key, cost: 1, limit: tenPerSecond })).toMatchObject({ allowed: true });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(limiter.shared).toBe(false);
    // The release cannot reach Redis now; it is kept and sent when Redis answers again.
    await lease?.release();

    await proxy.start();
    expect(
      await eventually(async () => {
        await limiter.take({ key, cost: 1, limit: tenPerSecond });
        return limiter.shared;
      }),
    ).toBe(true);
    expect(
      await eventually(async () => (await other.acquire({ key, max: 1, ttlMs: 60_000 })) !== undefined),
    ).toBe(true);
    expect(lines.filter((line) => line.level === 40).map((line) => line.msg)).toEqual([
      expect.stringMatching(/Redis cannot be reached/),
    ]);
    expect(lines.some((line) => /Redis answers again/.test(line.msg))).toBe(true);
    await limiter.close();
    await proxy.stop();
  });

  it("stalled: a call fails over after the command timeout, and the late answers do not confuse the next calls", async () => {
    const proxy = await redisProxy();
    const { logger, lines } = capturedLogger();
    const limiter = await replica({ url: proxy.url(), logger, commandTimeoutMs: 200 });
    const key = `stall-${randomUUID()}`;
    const limit = { perSecond: 0.001, burst: 10 };
    expect(await limiter.take({ key, cost: 1, limit })).toMatchObject({ allowed: true, remaining: 9 });

    proxy.hang();
    const started = performance.now();
    // The memory fallback has its own full bucket.
    expect(await limiter.take({ key, cost: 1, limit })).toMatchObject({ allowed: true, remaining: 9 });
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(190);
    expect(waited).toBeLessThan(1_000);
    expect(limiter.shared).toBe(false);

    // The held take reaches Redis now and is charged there; the next answers are matched to their calls.
    proxy.resume();
    expect(
      await eventually(async () => {
        await limiter.take({ key, cost: 0, limit });
        return limiter.shared;
      }),
    ).toBe(true);
    expect(await limiter.take({ key, cost: 1, limit })).toMatchObject({ allowed: true, remaining: 7 });
    expect(lines.filter((line) => line.level === 40)).toHaveLength(1);
    await limiter.close();
    await proxy.stop();
  });
});

describe("two apps on one Redis", () => {
  const from = (remoteAddress: string) => ({ incoming: { socket: { remoteAddress } } });

  it("the second answers 429 once the first has spent the caller's bucket", async () => {
    const prefix = `${PREFIX}apps-${randomUUID()}:`;
    const first = gateApp({ limiter: await replica({ keyPrefix: prefix }), perSecond: 0.01, burst: 3 });
    const second = gateApp({ limiter: await replica({ keyPrefix: prefix }), perSecond: 0.01, burst: 3 });
    for (let index = 0; index < 3; index += 1) {
      expect((await first.request("/read", {}, from("192.0.2.7"))).status).toBe(200);
    }
    const refused = await second.request("/read", {}, from("192.0.2.7"));
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("100");
    expect(refused.headers.get("ratelimit")).toBe('"default";r=0;t=300');
    // Another client's bucket is its own.
    expect((await second.request("/read", {}, from("192.0.2.8"))).status).toBe(200);
  });
});

describe("two Loupe service sets on one LOUPE_REDIS_URL", () => {
  const from = (remoteAddress: string) => ({ incoming: { socket: { remoteAddress } } });

  it("share the caller's bucket: after 3 calls on the first, the second answers 429", async () => {
    const scratch = await mkdtemp(path.join(tmpdir(), "loupe-redis-limits-"));
    // A tenant of its own keeps this test's buckets (under the default `loupe:` prefix) apart from any other.
    const tenant = `redis-test-${randomUUID()}`;
    const open = (name: string) =>
      openTestServices({
        env: {
          LOUPE_DATA_DIR: path.join(scratch, name),
          LOUPE_MODEL_PACK: path.join(scratch, "no-pack"),
          LOUPE_OCR: "off",
          LOUPE_METRICS: "off",
          LOUPE_DEFAULT_TENANT: tenant,
          LOUPE_RATE_LIMIT_PER_SECOND: "0.01",
          LOUPE_RATE_LIMIT_BURST: "3",
          LOUPE_REDIS_URL: REDIS_URL,
        },
      });
    const [first, second] = [await open("first"), await open("second")];
    try {
      expect((first.limiter as RedisRateLimiter).shared).toBe(true);
      const [firstApp, secondApp] = [createApp(first), createApp(second)];
      for (let index = 0; index < 3; index += 1) {
        expect((await firstApp.request("/v1/classifiers", {}, from("192.0.2.9"))).status).toBe(200);
      }
      const refused = await secondApp.request("/v1/classifiers", {}, from("192.0.2.9"));
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("100");
      const body = (await refused.json()) as { error: { code: string } };
      expect(body.error.code).toBe("rate_limited");
      expect(await admin.exists(`loupe:rate:address:${tenant}:192.0.2.9`)).toBe(1);
    } finally {
      await Promise.all([first.close(), second.close()]);
      await admin.del(`loupe:rate:address:${tenant}:192.0.2.9`);
      await rm(scratch, { recursive: true, force: true });
    }
  });
});

describe("the embedded default", () => {
  it("never loads a Redis client: only LOUPE_REDIS_URL imports ioredis", async () => {
    const scratch = await mkdtemp(path.join(tmpdir(), "loupe-redis-imports-"));
    try {
      // A module hook that reports every import of the adapter or the client, in a process of its own.
      await writeFile(
        path.join(scratch, "hook.mjs"),
        [
          "export async function resolve(specifier, context, next) {",
          '  if (/ioredis|redis-rate-limiter/.test(specifier)) process.stderr.write("IMPORTED " + specifier + "\\n");',
          "  return next(specifier, context);",
          "}",
        ].join("\n"),
      );
      await writeFile(
        path.join(scratch, "register.mjs"),
        'import { register } from "node:module";\nregister("./hook.mjs", import.meta.url);\n',
      );
      const helpers = pathToFileURL(path.join(import.meta.dirname, "../../helpers/app.ts")).href;
      const script = (env: Record<string, string>) =>
        `const { openTestServices } = await import(${JSON.stringify(helpers)});\n` +
        `const services = await openTestServices({ env: ${JSON.stringify(env)} });\n` +
        "await services.close();\n";
      const imports = async (extra: Record<string, string>) => {
        const file = path.join(scratch, `run-${randomUUID()}.mts`);
        await writeFile(
          file,
          script({
            LOUPE_DATA_DIR: path.join(scratch, "data"),
            LOUPE_MODEL_PACK: path.join(scratch, "no-pack"),
            LOUPE_OCR: "off",
            LOUPE_METRICS: "off",
            LOUPE_LOG_LEVEL: "silent",
            ...extra,
          }),
        );
        const { stderr } = await promisify(execFile)(
          process.execPath,
          ["--import", pathToFileURL(path.join(scratch, "register.mjs")).href, "--import", "tsx", file],
          { timeout: 60_000 },
        );
        return stderr.split("\n").filter((line) => line.startsWith("IMPORTED"));
      };
      expect(await imports({})).toEqual([]);
      expect(await imports({ LOUPE_REDIS_URL: REDIS_URL })).toEqual(
        expect.arrayContaining(["IMPORTED ioredis"]),
      );
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }, 120_000);
});
