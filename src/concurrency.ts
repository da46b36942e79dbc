/**
 * Bounded concurrency over a list: the one helper for "run at most N of these at a time" (decoding
 * images, fetching URLs, writing blobs), so each stage states its limit instead of rebuilding a worker pool.
 */

/** Options of {@link mapWithConcurrency}. */
export interface MapWithConcurrencyOptions<Item, Result> {
  items: readonly Item[];
  /** Most tasks in flight at once; fractions are rounded down, and values below 1 (or NaN) count as 1. */
  limit: number;
  /** Maps one item; receives its index in `items`. */
  task: (item: Item, index: number) => Promise<Result>;
  /** Stops starting tasks and rejects with the signal's reason once aborted. */
  signal?: AbortSignal;
}

/**
 * Maps `items` with `task`, at most `limit` at a time, starting them in list order.
 *
 * @returns the results in the order of `items`, whatever order the tasks finish in.
 * @throws the first error a task throws, or the signal's reason on abort; no task starts after either.
 *   Tasks already running are not cancelled (pass them the signal for that) and their outcomes are dropped.
 */
export function mapWithConcurrency<Item, Result>({
  items,
  limit,
  task,
  signal,
}: MapWithConcurrencyOptions<Item, Result>): Promise<Result[]> {
  if (signal?.aborted === true) return Promise.reject(signal.reason);
  if (items.length === 0) return Promise.resolve([]);
  const width = Math.max(1, Math.floor(limit) || 1);
  return new Promise<Result[]>((resolve, reject) => {
    const results = new Array<Result>(items.length);
    let next = 0;
    let running = 0;
    let settled = false;
    const settle = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      outcome();
    };
    const onAbort = (): void => settle(() => reject(signal?.reason));
    signal?.addEventListener("abort", onAbort, { once: true });
    const startTasks = (): void => {
      while (!settled && running < width && next < items.length) {
        const index = next;
        next += 1;
        running += 1;
        // Through a promise, so a task that throws synchronously fails like one that rejects.
        Promise.resolve()
          .then(() => task(items[index] as Item, index))
          .then(
            (result) => {
              running -= 1;
              results[index] = result;
              if (next === items.length && running === 0) settle(() => resolve(results));
              else startTasks();
            },
            (error: unknown) => {
              running -= 1;
              settle(() => reject(error));
            },
          );
      }
    };
    startTasks();
  });
}
