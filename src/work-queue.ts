/**
 * A bounded work queue: at most `concurrency` tasks run at once, at most `maxWaiting` wait behind them
 * (first in, first out), and one that has waited past its deadline is dropped without running. A full
 * queue or a missed deadline answers {@link OverloadedError} (503 `overloaded` with `Retry-After`), so a
 * heavy step sheds load instead of queueing without limit, and no work runs for a client that has given up.
 */
import { OverloadedError } from "./errors.ts";

/** Settings of a {@link WorkQueue}. */
export interface WorkQueueSettings {
  /** Named in error messages and logs, e.g. `chat` or `text embedding`. */
  name: string;
  /** Most tasks running at once; at least 1. */
  concurrency: number;
  /** Most tasks waiting for a slot; 0 refuses every task that cannot start at once. */
  maxWaiting: number;
  /** Longest a task may wait for a slot, in ms, unless its call gives a deadline of its own; 0: no limit. */
  deadlineMs: number;
  /** The `Retry-After` sent with a refusal, in seconds (at least 1). */
  retryAfterSeconds?: number;
  /** The environment variables that raise the limits, named in refusals. */
  settingsHint?: string;
}

/** Options of one {@link WorkQueue.run}. */
export interface RunOptions {
  /**
   * When the task must have started, as a `performance.now()` time; later, it is dropped. Defaults to
   * the queue's deadline after the call.
   */
  startBy?: number;
  /** Abort: a waiting task is removed and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Figures of a queue, for logs and `/readyz`-style reports. */
export interface WorkQueueStats {
  running: number;
  waiting: number;
  /** Tasks refused because the queue was full, since it was made. */
  rejectedFull: number;
  /** Tasks dropped because they waited past their deadline, since it was made. */
  rejectedDeadline: number;
}

interface Waiter {
  start: () => void;
  fail: (error: unknown) => void;
  timer?: NodeJS.Timeout;
}

/** See the module comment. */
export class WorkQueue {
  readonly name: string;
  readonly concurrency: number;
  readonly maxWaiting: number;
  readonly deadlineMs: number;
  readonly #retryAfterSeconds: number;
  readonly #hint: string;
  #running = 0;
  readonly #waiting: Waiter[] = [];
  #rejectedFull = 0;
  #rejectedDeadline = 0;

  constructor({
    name,
    concurrency,
    maxWaiting,
    deadlineMs,
    retryAfterSeconds = 1,
    settingsHint = "LOUPE_QUEUE_MAX_WAITING",
  }: WorkQueueSettings) {
    this.name = name;
    this.concurrency = Math.max(1, Math.floor(concurrency) || 1);
    this.maxWaiting = Math.max(0, Math.floor(maxWaiting) || 0);
    this.deadlineMs = Math.max(0, deadlineMs || 0);
    this.#retryAfterSeconds = Math.max(1, Math.ceil(retryAfterSeconds));
    this.#hint = settingsHint;
  }

  /** Current figures. */
  stats(): WorkQueueStats {
    return {
      running: this.#running,
      waiting: this.#waiting.length,
      rejectedFull: this.#rejectedFull,
      rejectedDeadline: this.#rejectedDeadline,
    };
  }

  /**
   * Runs `task` once a slot is free.
   *
   * @throws OverloadedError when `maxWaiting` tasks are already waiting, or when no slot freed up before
   *   the deadline (the task then never runs); the signal's reason when it aborts while waiting; else
   *   whatever the task throws.
   */
  async run<Result>(task: () => Promise<Result>, { startBy, signal }: RunOptions = {}): Promise<Result> {
    if (signal?.aborted === true) throw signal.reason;
    if (this.#running < this.concurrency && this.#waiting.length === 0) {
      this.#running += 1;
      return this.#execute(task);
    }
    if (this.#waiting.length >= this.maxWaiting) {
      this.#rejectedFull += 1;
      throw new OverloadedError(
        `The ${this.name} queue is full: ${this.#running} running and ${this.#waiting.length} waiting, the most allowed (${this.#hint}). Retry after ${this.#retryAfterSeconds} s.`,
        {
          retryAfterSeconds: this.#retryAfterSeconds,
          context: { queue: this.name, running: this.#running, waiting: this.#waiting.length },
        },
      );
    }
    const deadline = startBy ?? (this.deadlineMs > 0 ? performance.now() + this.deadlineMs : undefined);
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          cleanup();
          resolve();
        },
        fail: (error) => {
          cleanup();
          reject(error);
        },
      };
      const remove = () => {
        const index = this.#waiting.indexOf(waiter);
        if (index >= 0) this.#waiting.splice(index, 1);
      };
      const onAbort = () => {
        remove();
        waiter.fail(signal?.reason);
      };
      const cleanup = () => {
        if (waiter.timer !== undefined) clearTimeout(waiter.timer);
        signal?.removeEventListener("abort", onAbort);
      };
      if (deadline !== undefined) {
        waiter.timer = setTimeout(
          () => {
            remove();
            this.#rejectedDeadline += 1;
            waiter.fail(this.#deadlineError(deadline));
          },
          Math.max(0, deadline - performance.now()),
        );
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
    // #next took the slot for this task when it started it.
    return this.#execute(task);
  }

  #deadlineError(deadline: number): OverloadedError {
    return new OverloadedError(
      `The ${this.name} queue could not start this request before its deadline (${this.deadlineMs > 0 ? `${this.deadlineMs} ms, ` : ""}LOUPE_REQUEST_DEADLINE_MS): ${this.#running} running, ${this.#waiting.length} waiting. Retry after ${this.#retryAfterSeconds} s.`,
      {
        retryAfterSeconds: this.#retryAfterSeconds,
        context: { queue: this.name, late: Math.round(performance.now() - deadline) },
      },
    );
  }

  /** Runs a task whose slot is already counted in `#running`. */
  async #execute<Result>(task: () => Promise<Result>): Promise<Result> {
    try {
      return await task();
    } finally {
      this.#running -= 1;
      this.#next();
    }
  }

  #next(): void {
    while (this.#running < this.concurrency) {
      const waiter = this.#waiting.shift();
      if (waiter === undefined) return;
      // The slot is taken now, synchronously, so no newcomer overtakes the waiter that was first.
      this.#running += 1;
      waiter.start();
    }
  }
}
