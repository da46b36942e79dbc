/**
 * The Redis adapter of the {@link RateLimiter} port (`LOUPE_REDIS_URL`): token buckets and concurrency
 * leases that every replica on one Redis shares, so a key limited to 10 calls a second gets 10 in total,
 * not 10 per replica, and a tenant's heavy-request cap counts the requests of all replicas.
 *
 * Each decision is one Lua script (`EVALSHA`, `EVAL` when Redis lacks it), so it is atomic however many
 * replicas race, and reads the clock of the Redis server (`TIME`), so replicas' clocks may disagree. A
 * bucket is a hash `<prefix>rate:<key>` (`tokens`, `at`) that expires when it would have refilled (a full
 * bucket holds no information); a cap is a sorted set `<prefix>lease:<key>` of lease ids scored by when
 * they lapse, pruned on every acquire and expiring with its last lease, so a crashed replica's leases
 * free their slots after their TTL.
 *
 * When Redis cannot be reached (refused, reset, no answer within `commandTimeoutMs`), the limits fail
 * over to this process's memory rather than open or closed: each replica then enforces the configured
 * limits on its own (so N replicas admit up to N times the rate), which keeps abusive callers in check
 * without refusing every request while Redis is down. The switch is logged once each way; calls go back to
 * Redis as soon as it answers. Releases that fail are retried when Redis answers again, and any still
 * lost lapse with their lease's TTL.
 *
 * The client is `ioredis` (pinned): it reconnects by itself with a backoff we choose, can refuse commands
 * at once while disconnected (`enableOfflineQueue: false`) instead of queueing them, which is what lets a
 * request fail over within milliseconds, and has per-command timeouts; node-redis needs more code for the
 * same (its offline queue and reconnect are configured apart, and a command on a closed client throws
 * synchronously). It is imported only when `LOUPE_REDIS_URL` is set.
 */
import { createHash, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import type { Logger } from "../../logger.ts";
import { bucketDecision } from "./bucket-decision.ts";
import { createMemoryRateLimiter } from "./memory-rate-limiter.ts";
import type { ConcurrencyLease, RateDecision, RateLimiter } from "./rate-limiter.ts";

/** Options of {@link openRedisRateLimiter}. */
export interface RedisRateLimiterOptions {
  /** `redis://[:password@]host:port[/db]` (`rediss://` for TLS); never logged with its password. */
  url: string;
  logger: Logger;
  /** Put before every key, so several deployments or tests can share one Redis. */
  keyPrefix?: string;
  /** Longest a call waits for Redis before it fails over to memory. */
  commandTimeoutMs?: number;
  /** Longest opening waits for the first connection; past it Loupe starts with the memory limits. */
  connectTimeoutMs?: number;
  /** Where the limits live while Redis cannot be reached; this process's memory by default. */
  fallback?: RateLimiter;
}

/** A {@link RateLimiter} on Redis that owns its connection. */
export interface RedisRateLimiter extends RateLimiter {
  /** False while the last call could not reach Redis and the memory fallback answered. */
  readonly shared: boolean;
  /** Closes the connection; calls made afterwards use the fallback. */
  close(): Promise<void>;
}

/** Longest a bucket or cap is kept: a bucket refilling slower than this restarts full (30 days). */
const MAX_KEY_TTL_MS = 30 * 24 * 3600 * 1000;

/** Failed releases kept for a retry; past it the oldest are left to lapse with their TTL. */
const MAX_PENDING_RELEASES = 10_000;

/**
 * Refills the bucket `KEYS[1]` to the server's now, charges `min(cost, burst)` when it holds that much,
 * stores what is left (or deletes the bucket when it is full), and returns the tokens before the charge
 * as a string that round-trips exactly, so the caller recomputes the same decision.
 * ARGV: perSecond, burst, cost.
 */
const TAKE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local perSecond = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) / 1000 * perSecond)
local charge = math.min(cost, burst)
local left = tokens
if tokens >= charge then left = tokens - charge end
local ttl = math.ceil((burst - left) / perSecond * 1000)
if ttl ~= ttl or ttl > ${MAX_KEY_TTL_MS} then ttl = ${MAX_KEY_TTL_MS} end
if ttl > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', left), 'at', string.format('%.17g', now))
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
else
  redis.call('DEL', KEYS[1])
end
return string.format('%.17g', tokens)
`;

/**
 * Drops the lapsed leases of `KEYS[1]`, then adds lease `ARGV[3]` lapsing `ARGV[2]` ms from the server's
 * now unless `ARGV[1]` are held; the set expires with its last lease. Returns 1 when added, else 0.
 */
const ACQUIRE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local max = tonumber(ARGV[1])
local ttl = math.min(tonumber(ARGV[2]), ${MAX_KEY_TTL_MS})
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) >= max then return 0 end
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(last[2])))
return 1
`;

interface Script {
  source: string;
  sha: string;
}

const script = (source: string): Script => ({
  source,
  sha: createHash("sha1").update(source).digest("hex"),
});

const take = script(TAKE_SCRIPT);
const acquire = script(ACQUIRE_SCRIPT);

/** The address of a Redis URL without its credentials, for logs: `host:port/db`. */
export function describeRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname.length > 1 ? parsed.pathname : "/0"}`;
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * Connects to the Redis of `url` and returns the limiter over it. Waits for the first connection at
 * most `connectTimeoutMs`; a Redis that is down then does not stop start-up: the limiter answers from
 * memory (and says so in the log) until Redis answers.
 */
export async function openRedisRateLimiter({
  url,
  logger,
  keyPrefix = "loupe:",
  commandTimeoutMs = 500,
  connectTimeoutMs = 2_000,
  fallback = createMemoryRateLimiter(),
}: RedisRateLimiterOptions): Promise<RedisRateLimiter> {
  const where = describeRedisUrl(url);
  const client = new Redis(url, {
    // A call while disconnected fails at once (and fails over) instead of waiting in a queue, and one in
    // flight when the connection drops is not sent again: a replayed take would charge twice.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: commandTimeoutMs,
    connectTimeout: connectTimeoutMs,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    connectionName: "loupe-rate-limits",
  });
  // Connection errors reach the callers as failed commands, which log the switch to memory once.
  client.on("error", (error: unknown) =>
    logger.debug({ err: error, redis: where }, "Redis connection error"),
  );

  let shared = true;
  let closed = false;
  // Lease ids whose release did not reach Redis, with their set's key.
  const pendingReleases = new Map<string, string>();

  const remember = (key: string, id: string) => {
    if (pendingReleases.size >= MAX_PENDING_RELEASES) {
      const oldest = pendingReleases.keys().next().value;
      if (oldest !== undefined) pendingReleases.delete(oldest);
    }
    pendingReleases.set(id, key);
  };
  const retryReleases = () => {
    for (const [id, key] of pendingReleases) {
      pendingReleases.delete(id);
      client.zrem(key, id).catch(() => remember(key, id));
    }
  };

  const failedOver = (error: unknown) => {
    if (!shared) return;
    shared = false;
    logger.warn(
      { err: error, redis: where },
      "Redis cannot be reached: rate limits and heavy-request caps fall back to this process's memory (per replica) until it answers",
    );
  };
  const answered = () => {
    if (shared) return;
    shared = true;
    logger.info({ redis: where }, "Redis answers again: rate limits and heavy-request caps are shared");
    retryReleases();
  };

  const run = async (code: Script, key: string, args: Array<string | number>): Promise<unknown> => {
    try {
      return await client.evalsha(code.sha, 1, key, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return await client.eval(code.source, 1, key, ...args);
    }
  };

  const limiter: RedisRateLimiter = {
    get shared() {
      return shared;
    },

    async take(request): Promise<RateDecision> {
      const { key, cost, limit } = request;
      if (closed) return fallback.take(request);
      let tokens: number;
      try {
        tokens = Number(await run(take, `${keyPrefix}rate:${key}`, [limit.perSecond, limit.burst, cost]));
        if (!Number.isFinite(tokens)) throw new Error(`the take script answered ${tokens}, not a number`);
      } catch (error) {
        failedOver(error);
        return fallback.take(request);
      }
      answered();
      return bucketDecision({ tokens, cost, limit }).decision;
    },

    async acquire(request): Promise<ConcurrencyLease | undefined> {
      if (closed) return fallback.acquire(request);
      const redisKey = `${keyPrefix}lease:${request.key}`;
      const id = randomUUID();
      let reply: unknown;
      try {
        reply = await run(acquire, redisKey, [request.max, Math.ceil(request.ttlMs), id]);
      } catch (error) {
        failedOver(error);
        return fallback.acquire(request);
      }
      answered();
      if (Number(reply) !== 1) return undefined;
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          try {
            await client.zrem(redisKey, id);
          } catch (error) {
            failedOver(error);
            remember(redisKey, id);
          }
        },
      };
    },

    async close() {
      if (closed) return;
      closed = true;
      await client.quit().catch(() => client.disconnect());
    },
  };

  await waitForReady(client, connectTimeoutMs);
  if (client.status === "ready") {
    logger.info({ redis: where }, "rate limits and heavy-request caps on Redis");
  } else {
    failedOver(new Error(`no connection to Redis at ${where} within ${connectTimeoutMs} ms`));
  }
  return limiter;
}

/** Resolves once `client` is ready or after `timeoutMs`, whichever comes first. */
function waitForReady(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off("ready", done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    client.once("ready", done);
  });
}
