/**
 * A lock between processes sharing a directory (a `loupe serve` and `loupe keys` on one data dir): a
 * lock file created exclusively, holding the owner's pid. A lock older than `staleMs` is taken to be
 * left by a process that died, and removed.
 */
import { open, stat, unlink } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** Options of {@link withFileLock}. */
export interface FileLockOptions {
  /** The lock file's path. */
  file: string;
  /** How long to wait for another holder before giving up. */
  timeoutMs?: number;
  /** Age after which a lock is taken to be abandoned. */
  staleMs?: number;
}

/** Thrown when the lock stayed held by another process for `timeoutMs`. */
export class LockTimeoutError extends Error {}

/** Runs `work` while holding the lock file; the lock is released whether `work` succeeds or not. */
export async function withFileLock<Result>(
  { file, timeoutMs = 10_000, staleMs = 10_000 }: FileLockOptions,
  work: () => Promise<Result>,
): Promise<Result> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt += 1) {
    try {
      const handle = await open(file, "wx", 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const age = await stat(file).then(
        (info) => Date.now() - info.mtimeMs,
        () => 0,
      );
      if (age > staleMs) {
        await unlink(file).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        throw new LockTimeoutError(`${file} has been held by another process for over ${timeoutMs} ms`);
      }
      await sleep(Math.min(100, 5 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random()));
    }
  }
  try {
    return await work();
  } finally {
    await unlink(file).catch(() => undefined);
  }
}
