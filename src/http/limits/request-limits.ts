/**
 * The limits every request is held to, put on the request's context by {@link requestLimits} (one
 * middleware registered in `createApp`) so that the gates `defineRoute` puts in front of each route find
 * the limiter and the settings without each route handing them in. A route mounted without that
 * middleware (route unit tests) is gated by body size only, at {@link DEFAULT_MAX_JSON_BYTES}.
 */
import { availableParallelism } from "node:os";
import type { Context, MiddlewareHandler } from "hono";
import type { LoupeMetrics } from "../../metrics/metrics.ts";
import { WorkQueue } from "../../work-queue.ts";
import type { RateLimit, RateLimiter } from "./rate-limiter.ts";

/** What the gates enforce. */
export interface RequestLimits {
  /** Where buckets and leases live. */
  limiter: RateLimiter;
  /** The bucket of a caller whose key carries no rate of its own; `perSecond` 0 turns the limit off. */
  rate: RateLimit;
  /** Most heavy requests running at once per tenant; 0 for no cap. */
  maxHeavyPerTenant: number;
  /** Largest JSON body, in bytes (`LOUPE_MAX_JSON_BYTES`). */
  maxJsonBytes: number;
  /**
   * The process-wide queue of one kind of heavy request (`chat`, `images`, `videos`, …: the path's
   * segment after `/v1/`), made on first use; absent: heavy requests are not queued.
   */
  queueFor?: (kind: string) => WorkQueue;
}

declare module "hono" {
  interface ContextVariableMap {
    /** The limits of this request, set by {@link requestLimits}. */
    limits: RequestLimits;
  }
}

/** `LOUPE_MAX_JSON_BYTES`'s default, for routes mounted without {@link requestLimits}. */
export const DEFAULT_MAX_JSON_BYTES = 32 * 1024 * 1024;

/** The settings {@link requestLimits} reads. */
export interface RequestLimitSettings {
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  maxHeavyPerTenant: number;
  maxJsonBytes: number;
  /** Heavy requests of one kind running at once (`LOUPE_QUEUE_CONCURRENCY`, 0: four per core); absent: no queue. */
  queueConcurrency?: number;
  /** Most heavy requests of one kind waiting (`LOUPE_QUEUE_MAX_WAITING`). */
  queueMaxWaiting?: number;
  /** Longest a heavy request waits to start, in ms (`LOUPE_REQUEST_DEADLINE_MS`, 0: no limit). */
  requestDeadlineMs?: number;
}

/**
 * Heavy requests of one kind running at once per CPU core by default. The models run in worker threads,
 * one batch at a time each, and a chat turn spends much of its time waiting on Milvus, so one per core
 * left the cores idle while chats queued: at 32 clients on 2 cores chat p95 was 6.0 s with 2 running
 * and 2.4 s with 8 (`npm run bench:load`).
 */
export const HEAVY_PER_CORE = 4;

/** `LOUPE_QUEUE_MAX_WAITING`'s and `LOUPE_REQUEST_DEADLINE_MS`'s defaults, for settings objects without them. */
export const DEFAULT_QUEUE_MAX_WAITING = 16;
export const DEFAULT_REQUEST_DEADLINE_MS = 5000;

/**
 * One {@link WorkQueue} per kind of heavy request, made on first use, from the settings; each new queue is
 * handed to `onQueue` (metrics watch its depth).
 */
export function heavyQueues(
  config: RequestLimitSettings,
  { onQueue }: { onQueue?: (queue: WorkQueue) => void } = {},
): ((kind: string) => WorkQueue) | undefined {
  if (config.queueConcurrency === undefined) return undefined;
  const concurrency =
    config.queueConcurrency > 0 ? config.queueConcurrency : HEAVY_PER_CORE * availableParallelism();
  const queues = new Map<string, WorkQueue>();
  return (kind) => {
    let queue = queues.get(kind);
    if (queue === undefined) {
      queue = new WorkQueue({
        name: kind,
        concurrency,
        maxWaiting: config.queueMaxWaiting ?? DEFAULT_QUEUE_MAX_WAITING,
        deadlineMs: config.requestDeadlineMs ?? DEFAULT_REQUEST_DEADLINE_MS,
        retryAfterSeconds: 1,
        settingsHint: "LOUPE_QUEUE_CONCURRENCY, LOUPE_QUEUE_MAX_WAITING",
      });
      queues.set(kind, queue);
      onQueue?.(queue);
    }
    return queue;
  };
}

/** Middleware that puts the limits on every request's context. */
export function requestLimits({
  limiter,
  config,
  metrics,
}: {
  limiter: RateLimiter;
  config: RequestLimitSettings;
  /** Where the queues' depths are reported; nowhere when absent. */
  metrics?: Pick<LoupeMetrics, "watchQueue">;
}): MiddlewareHandler {
  const limits: RequestLimits = {
    limiter,
    rate: { perSecond: config.rateLimitPerSecond, burst: config.rateLimitBurst },
    maxHeavyPerTenant: config.maxHeavyPerTenant,
    maxJsonBytes: config.maxJsonBytes,
  };
  const queueFor = heavyQueues(
    config,
    metrics === undefined ? {} : { onQueue: (queue) => metrics.watchQueue(queue) },
  );
  if (queueFor !== undefined) limits.queueFor = queueFor;
  return async (c, next) => {
    c.set("limits", limits);
    await next();
  };
}

/** The limits of a request, when {@link requestLimits} runs in front of its route. */
export function limitsOf(c: Context): RequestLimits | undefined {
  return c.get("limits") as RequestLimits | undefined;
}
