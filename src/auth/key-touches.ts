/**
 * When keys were last used, written in batches by both key store adapters: a use is noted in memory
 * (unless the known `lastUsedAt` is more recent than `resolutionMs`), and `flushMs` after the first
 * noted use every noted use is written at once, so serving requests does not mean a write for each.
 */

/** Options of {@link createTouchBatch}. */
export interface TouchBatchOptions {
  /** How long uses are gathered before they are written. */
  flushMs: number;
  /** A use within this long of the known `lastUsedAt` is not written again. */
  resolutionMs: number;
  /** The key's `lastUsedAt` as this process knows it; undefined for a key it has not read. */
  lastUsedAt(id: string): string | null | undefined;
  /** Writes the latest use of each key id (milliseconds since the epoch). */
  write(touches: Map<string, number>): Promise<void>;
}

/** Uses gathered and written in batches. */
export interface TouchBatch {
  /** Notes a use of the key `id` at `at`. */
  touch(id: string, at: Date): void;
  /** Waits for a write under way, then writes what is gathered; a failed write is let go. */
  close(): Promise<void>;
}

/** A {@link TouchBatch}. */
export function createTouchBatch({
  flushMs,
  resolutionMs,
  lastUsedAt,
  write,
}: TouchBatchOptions): TouchBatch {
  const pending = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();

  const flush = async (): Promise<void> => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending.size === 0) return;
    const touches = new Map(pending);
    pending.clear();
    await write(touches);
  };

  return {
    touch(id, at) {
      const known = lastUsedAt(id);
      const last = known === null || known === undefined ? 0 : Date.parse(known);
      if (at.getTime() - last < resolutionMs) return;
      pending.set(id, Math.max(pending.get(id) ?? 0, at.getTime()));
      if (timer === undefined) {
        timer = setTimeout(() => {
          // lastUsedAt is informational: a failed write is retried by the next use.
          flushing = flush().catch(() => undefined);
        }, flushMs);
        timer.unref();
      }
    },
    async close() {
      await flushing;
      await flush().catch(() => undefined);
    },
  };
}
