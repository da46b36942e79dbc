/**
 * A JSON Lines file written as a stream, waiting for the disk when its buffer is full so that memory
 * stays bounded however many lines are written.
 */

import { once } from "node:events";
import { createWriteStream } from "node:fs";

/** An open JSON Lines file. */
export interface JsonlWriter {
  /** Lines written so far. */
  readonly count: number;
  /** Appends one value as a line. */
  write(value: unknown): Promise<void>;
  /** Flushes and closes the file. */
  close(): Promise<void>;
}

/** Opens (and truncates) a JSON Lines file for writing. */
export function openJsonlWriter(path: string): JsonlWriter {
  const stream = createWriteStream(path, { encoding: "utf8" });
  let failure: unknown;
  stream.on("error", (error) => {
    failure = error;
  });
  let count = 0;
  return {
    get count() {
      return count;
    },
    async write(value) {
      if (failure !== undefined) throw failure;
      count++;
      if (!stream.write(`${JSON.stringify(value)}\n`)) await once(stream, "drain");
    },
    close() {
      return new Promise((resolve, reject) => {
        if (failure !== undefined) {
          reject(failure);
          return;
        }
        stream.end((error?: Error | null) => (error ? reject(error) : resolve()));
      });
    },
  };
}
