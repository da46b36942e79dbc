/**
 * A lock within one process, per key: work under one key runs one at a time, in the order it was
 * asked for; work under other keys runs alongside. The file adapters use it where a check and a write
 * must be one step (a per-tenant cap), as the PostgreSQL adapters use a transaction-scoped lock.
 */

/** Runs `work` once every earlier work under `key` has settled, and gives back its result. */
export type KeyedLock = <Result>(key: string, work: () => Promise<Result>) => Promise<Result>;

/** A {@link KeyedLock}; a key is forgotten once nothing waits under it. */
export function createKeyedLock(): KeyedLock {
  const tails = new Map<string, Promise<unknown>>();
  return <Result>(key: string, work: () => Promise<Result>): Promise<Result> => {
    const previous = tails.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => undefined);
    tails.set(key, settled);
    void settled.then(() => {
      if (tails.get(key) === settled) tails.delete(key);
    });
    return next;
  };
}
