/**
 * How `loupe ingest` rides over failures that pass: a store restarting (503 `not_ready`), a full work
 * queue (503 `overloaded`), a rate limit (429). The items such a failure left undone are sent again after
 * a wait (the server's `Retry-After` when it gave one, else backoff), a bounded number of times in a row
 * without progress; then they are reported failed with the last reason, and the summary still comes.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { AppError } from "../../errors.ts";

/** How many times, and how long apart, items are retried. */
export interface RetryPolicy {
  /** Retries in a row without any item done before giving up. */
  attempts: number;
  /** Wait before the first retry when the server names none; doubled for each next one. */
  baseDelayMs: number;
  /** Longest wait, whatever the server asks. */
  maxDelayMs: number;
}

/** The policy of `loupe ingest`: about two minutes of trying before giving up. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 8, baseDelayMs: 1000, maxDelayMs: 30_000 };

/** What a retry is about, for the log line each retry gets. */
export interface RetryNotice {
  attempt: number;
  of: number;
  delayMs: number;
  /** Items sent again. */
  items: number;
  code: string;
  message: string;
}

/** Error codes that say "the same request may succeed in a moment". */
const TRANSIENT_CODES = new Set([
  "not_ready",
  "overloaded",
  "store_unavailable",
  "store_timeout",
  "rate_limited",
  "too_many_concurrent_requests",
]);

/** Whether `error` is a failure that passes (see the module comment); an unreachable server is not one. */
export function isTransient(error: unknown): error is AppError {
  return error instanceof AppError && TRANSIENT_CODES.has(error.code);
}

/** The code and message an item that could not be done gets in the summary. */
export function failureOf(error: unknown): { code: string; message: string } {
  if (error instanceof AppError) return { code: error.code, message: error.message };
  return { code: "internal_error", message: error instanceof Error ? error.message : String(error) };
}

/**
 * Keeps count of retries across one ingest: {@link Retrier.wait} says whether to try again and waits,
 * {@link Retrier.progressed} starts the count afresh once items get done again.
 */
export class Retrier {
  readonly #policy: RetryPolicy;
  readonly #onRetry: ((notice: RetryNotice) => void) | undefined;
  readonly #signal: AbortSignal | undefined;
  #attempt = 0;
  /** Set once the attempts ran out: what the rest of the items fail with, without more waiting. */
  gaveUp: { code: string; message: string } | undefined;

  constructor({
    policy = DEFAULT_RETRY_POLICY,
    onRetry,
    signal,
  }: {
    policy?: RetryPolicy;
    onRetry?: (notice: RetryNotice) => void;
    signal?: AbortSignal;
  }) {
    this.#policy = policy;
    this.#onRetry = onRetry;
    this.#signal = signal;
  }

  /** Items were done: the next failure starts a new count. */
  progressed(): void {
    this.#attempt = 0;
  }

  /**
   * After a transient failure of `items` items: waits and returns true when they should be sent again;
   * returns false (and sets {@link Retrier.gaveUp}) when the attempts have run out or the ingest is interrupted.
   */
  async wait(error: AppError, items: number): Promise<boolean> {
    if (this.#signal?.aborted === true) return false;
    this.#attempt += 1;
    const { attempts, baseDelayMs, maxDelayMs } = this.#policy;
    if (this.#attempt > attempts) {
      this.gaveUp = {
        code: error.code,
        message: `${error.message.replace(/\.$/, "")} (still after ${attempts} retries; run the command again to ingest what is missing).`,
      };
      return false;
    }
    const asked = error.retryAfterSeconds === undefined ? undefined : error.retryAfterSeconds * 1000;
    const delayMs = Math.min(asked ?? baseDelayMs * 2 ** (this.#attempt - 1), maxDelayMs);
    this.#onRetry?.({
      attempt: this.#attempt,
      of: attempts,
      delayMs,
      items,
      code: error.code,
      message: error.message,
    });
    try {
      await sleep(delayMs, undefined, this.#signal === undefined ? {} : { signal: this.#signal });
    } catch {
      return false;
    }
    return true;
  }
}
