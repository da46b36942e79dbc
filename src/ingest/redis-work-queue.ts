/**
 * The work queue of shared ingest jobs (`LOUPE_REDIS_URL`): one message per item of a job, leased to
 * the worker that claims it for a while (a visibility timeout), acknowledged when its outcome is in
 * PostgreSQL, put back for another worker when the lease lapses, and retried after a backoff when the
 * worker could not finish it.
 *
 * Why a small queue of our own rather than BullMQ: the job's durable record (items, inputs, outcomes)
 * is in PostgreSQL already, so the queue only has to carry `<job id>:<item index>:<attempt>` and say who
 * holds it until when. That is three keys and four Lua scripts on the `ioredis` client Loupe already
 * pins; BullMQ would add a dependency that keeps a second copy of every job in Redis (payloads, states,
 * events), with its own retention and stalled-job rules to reconcile with the database's.
 *
 * Keys, under `keyPrefix`: `ready` (a list, oldest first), `leased` (a sorted set of messages scored by
 * when their lease lapses) and `delayed` (a sorted set of retries scored by when they are due). Every
 * script reads the clock of the Redis server (`TIME`), so the workers' clocks may disagree. A claim
 * first moves due retries and lapsed leases back to `ready` (a lapsed one with its attempt counted), so
 * no separate sweeper has to run: any live worker returns a dead worker's items. A worker renews the
 * leases it holds while it works ({@link RedisWorkQueue.extend}), so only a worker that stopped loses them.
 */
import { Redis } from "ioredis";
import { AppError, OverloadedError } from "../errors.ts";

/**
 * One item of a job on the queue, or one of its job-wide steps ({@link LIST_STEP}, {@link FINISH_STEP}).
 * `attempt` counts from 1; a lapsed lease or a retry adds one.
 */
export interface WorkMessage {
  jobId: string;
  /** The item's index, or a step's negative number. */
  index: number;
  attempt: number;
}

/** Options of {@link openRedisWorkQueue}. */
export interface RedisWorkQueueOptions {
  /** `redis://…` of `LOUPE_REDIS_URL`; never logged with its password. */
  url: string;
  /** Put before every key, so several deployments or tests can share one Redis. */
  keyPrefix?: string;
  /** How long a claimed item stays with its worker without a renewal, in milliseconds. */
  leaseMs: number;
  /** Most items waiting, leased or delayed at once; an enqueue past it is refused. */
  maxItems: number;
  /** Longest a command waits for Redis. */
  commandTimeoutMs?: number;
}

/**
 * Promotes due retries and lapsed leases to `ready` (a lapsed lease with its attempt plus one), then
 * leases up to ARGV[1] messages for ARGV[2] ms. KEYS: ready, leased, delayed.
 */
const CLAIM_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)
for _, message in ipairs(due) do
  redis.call('ZREM', KEYS[3], message)
  redis.call('RPUSH', KEYS[1], message)
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)
for _, message in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], message)
  local head, attempt = string.match(message, '^(.*):(%d+)$')
  if head then redis.call('LPUSH', KEYS[1], head .. ':' .. (tonumber(attempt) + 1)) end
end
local claimed = {}
for _ = 1, tonumber(ARGV[1]) do
  local message = redis.call('LPOP', KEYS[1])
  if not message then break end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), message)
  table.insert(claimed, message)
end
return claimed
`;

/** Adds ARGV[2..] to `ready` unless the queue would hold more than ARGV[1]; returns the size before. */
const ENQUEUE_SCRIPT = `
local size = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])
if size + #ARGV - 1 > tonumber(ARGV[1]) then return -1 - size end
for index = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[index]) end
return size
`;

/**
 * Moves the leased ARGV[1] to `delayed` as ARGV[2], due in ARGV[3] ms; nothing when the lease was lost.
 * KEYS: leased, delayed.
 */
const RETRY_SCRIPT = `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
return 1
`;

/** Renews the leases ARGV[2..] for ARGV[1] ms, only those still held. KEYS: leased. */
const EXTEND_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local renewed = 0
for index = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[index])
end
return renewed
`;

/** The step that lists a job's items (jobs whose items are found in the store: OCR, pack switch). */
export const LIST_STEP = -1;
/** The step that ends a job once its items are settled, for kinds with an ending of their own (a switch). */
export const FINISH_STEP = -2;

/** Puts leased messages back at the head of `ready`, their attempts uncounted. KEYS: leased, ready. */
const RELEASE_SCRIPT = `
local released = 0
for index = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[index]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[index])
    released = released + 1
  end
end
return released
`;

const MESSAGE_PATTERN = /^(job_[0-9a-f]{24}):(\d{1,9}|-1|-2):(\d{1,9})$/;

/** The queue's form of a message. */
export function encodeMessage({ jobId, index, attempt }: WorkMessage): string {
  return `${jobId}:${index}:${attempt}`;
}

/** A message read back from Redis; `undefined` for anything that is not one (never trusted blindly). */
export function decodeMessage(text: string): WorkMessage | undefined {
  const match = MESSAGE_PATTERN.exec(text);
  if (match === null) return undefined;
  return { jobId: match[1] as string, index: Number(match[2]), attempt: Number(match[3]) };
}

/** Figures of the queue. */
export interface WorkQueueDepth {
  ready: number;
  leased: number;
  delayed: number;
}

/** See the module comment. Owns its Redis connection. */
export class RedisWorkQueue {
  readonly #redis: Redis;
  readonly #keys: { ready: string; leased: string; delayed: string };
  readonly #leaseMs: number;
  readonly #maxItems: number;

  constructor({
    url,
    keyPrefix = "loupe:",
    leaseMs,
    maxItems,
    commandTimeoutMs = 5_000,
  }: RedisWorkQueueOptions) {
    this.#redis = new Redis(url, {
      lazyConnect: true,
      commandTimeout: commandTimeoutMs,
      maxRetriesPerRequest: 2,
      retryStrategy: (times) => Math.min(times * 200, 2_000),
    });
    // Connection errors surface on the commands that fail; the client reconnects by itself.
    this.#redis.on("error", () => undefined);
    this.#keys = {
      ready: `${keyPrefix}jobs:ready`,
      leased: `${keyPrefix}jobs:leased`,
      delayed: `${keyPrefix}jobs:delayed`,
    };
    this.#leaseMs = Math.max(1, Math.floor(leaseMs));
    this.#maxItems = Math.max(1, Math.floor(maxItems));
  }

  /** How long a lease lasts, in milliseconds. */
  get leaseMs(): number {
    return this.#leaseMs;
  }

  /** Connects (once); a Redis that does not answer fails here with a message naming the setting. */
  async connect(): Promise<void> {
    if (this.#redis.status !== "wait") return;
    try {
      await this.#redis.connect();
    } catch (error) {
      throw unreachable(error);
    }
  }

  /**
   * Queues the items as attempt 1.
   *
   * @throws {OverloadedError} when the queue would hold more than `maxItems` (LOUPE_JOB_QUEUE_MAX_ITEMS).
   */
  async enqueue(messages: readonly WorkMessage[]): Promise<void> {
    // One script call per slice keeps each call's argument list small; the limit is checked per slice.
    for (let start = 0; start < messages.length; start += 1000) {
      const slice = messages.slice(start, start + 1000).map(encodeMessage);
      const before = Number(
        await this.#call(() =>
          this.#redis.eval(
            ENQUEUE_SCRIPT,
            3,
            this.#keys.ready,
            this.#keys.leased,
            this.#keys.delayed,
            this.#maxItems,
            ...slice,
          ),
        ),
      );
      if (before < 0) {
        const size = -1 - before;
        throw new OverloadedError(
          `The job queue holds ${size} items; ${messages.length - start} more would pass its limit of ${this.#maxItems} (LOUPE_JOB_QUEUE_MAX_ITEMS). Retry once workers have caught up, or raise the limit.`,
          { retryAfterSeconds: 30, context: { queued: size, limit: this.#maxItems } },
        );
      }
    }
  }

  /** Leases up to `count` items to the caller (returning lapsed leases and due retries first). */
  async claim(count: number): Promise<WorkMessage[]> {
    const claimed = (await this.#call(() =>
      this.#redis.eval(
        CLAIM_SCRIPT,
        3,
        this.#keys.ready,
        this.#keys.leased,
        this.#keys.delayed,
        Math.max(1, Math.floor(count)),
        this.#leaseMs,
      ),
    )) as unknown;
    const messages: WorkMessage[] = [];
    for (const text of Array.isArray(claimed) ? claimed : []) {
      const message = typeof text === "string" ? decodeMessage(text) : undefined;
      if (message !== undefined) messages.push(message);
      // Anything else on the list is not ours to run; dropped with its lease.
      else if (typeof text === "string") await this.ack({ jobId: text, index: 0, attempt: 0 }, text);
    }
    return messages;
  }

  /** Drops the item's lease: its outcome is stored. Returns whether the caller still held it. */
  async ack(message: WorkMessage, raw = encodeMessage(message)): Promise<boolean> {
    return Number(await this.#call(() => this.#redis.zrem(this.#keys.leased, raw))) > 0;
  }

  /** Gives the item back to run again as the next attempt in `delayMs`; nothing if its lease was lost. */
  async retry(message: WorkMessage, delayMs: number): Promise<boolean> {
    const next = encodeMessage({ ...message, attempt: message.attempt + 1 });
    const moved = await this.#call(() =>
      this.#redis.eval(
        RETRY_SCRIPT,
        2,
        this.#keys.leased,
        this.#keys.delayed,
        encodeMessage(message),
        next,
        Math.max(0, Math.floor(delayMs)),
      ),
    );
    return Number(moved) > 0;
  }

  /**
   * Gives the item back to run in `delayMs`, its attempt not counted: work this worker will not run
   * (another worker can), put off so that it is not claimed again at once. Nothing if its lease was lost.
   */
  async defer(message: WorkMessage, delayMs: number): Promise<boolean> {
    const same = encodeMessage(message);
    const moved = await this.#call(() =>
      this.#redis.eval(
        RETRY_SCRIPT,
        2,
        this.#keys.leased,
        this.#keys.delayed,
        same,
        same,
        Math.max(0, Math.floor(delayMs)),
      ),
    );
    return Number(moved) > 0;
  }

  /**
   * Gives leased items back untried, first in line for the next claim (their attempts are not counted):
   * what a worker claimed but will not run itself. Returns how many it still held.
   */
  async release(messages: readonly WorkMessage[]): Promise<number> {
    if (messages.length === 0) return 0;
    const released = await this.#call(() =>
      this.#redis.eval(
        RELEASE_SCRIPT,
        2,
        this.#keys.leased,
        this.#keys.ready,
        ...[...messages].reverse().map(encodeMessage),
      ),
    );
    return Number(released);
  }

  /** Renews the leases the caller still holds; returns how many were renewed. */
  async extend(messages: readonly WorkMessage[]): Promise<number> {
    if (messages.length === 0) return 0;
    const renewed = await this.#call(() =>
      this.#redis.eval(EXTEND_SCRIPT, 1, this.#keys.leased, this.#leaseMs, ...messages.map(encodeMessage)),
    );
    return Number(renewed);
  }

  /** How many items wait, are leased and are delayed. */
  async depth(): Promise<WorkQueueDepth> {
    const [ready, leased, delayed] = await this.#call(() =>
      Promise.all([
        this.#redis.llen(this.#keys.ready),
        this.#redis.zcard(this.#keys.leased),
        this.#redis.zcard(this.#keys.delayed),
      ]),
    );
    return { ready, leased, delayed };
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    if (this.#redis.status === "end" || this.#redis.status === "wait") {
      this.#redis.disconnect();
      return;
    }
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  async #call<Result>(command: () => Promise<Result>): Promise<Result> {
    await this.connect();
    try {
      return await command();
    } catch (error) {
      throw unreachable(error);
    }
  }
}

function unreachable(error: unknown): AppError {
  return new AppError(
    "queue_unavailable",
    503,
    `The job queue's Redis cannot be reached (${error instanceof Error ? error.message : String(error)}). Check that it runs and that LOUPE_REDIS_URL names it; queued items wait there until it is back.`,
    { cause: error, retryAfterSeconds: 5 },
  );
}

/** Opens the queue on `LOUPE_REDIS_URL` and checks that Redis answers. */
export async function openRedisWorkQueue(options: RedisWorkQueueOptions): Promise<RedisWorkQueue> {
  const queue = new RedisWorkQueue(options);
  try {
    await queue.connect();
  } catch (error) {
    await queue.close();
    throw error;
  }
  return queue;
}
