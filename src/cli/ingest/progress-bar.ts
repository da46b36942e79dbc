/**
 * The progress bar of `loupe ingest` on stderr (cli-progress): items done of all, rate, ETA and the
 * counts so far. Only on a terminal: piped or with `--no-progress`, nothing is drawn.
 */
import { SingleBar } from "cli-progress";

/** Progress after each item. */
export interface IngestProgress {
  done: number;
  total: number;
  stored: number;
  skipped: number;
  failed: number;
}

/** A progress display: `update` after each item, `stop` once at the end (safe when nothing was drawn). */
export interface IngestProgressBar {
  update(progress: IngestProgress): void;
  stop(): void;
}

/** The bar, drawn on `stream` when `enabled` and `stream` is a terminal; otherwise one that draws nothing. */
export function createIngestProgressBar({
  enabled,
  stream = process.stderr,
}: {
  enabled: boolean;
  stream?: NodeJS.WriteStream;
}): IngestProgressBar {
  if (!enabled || stream.isTTY !== true) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    stream,
    format:
      "ingest [{bar}] {value}/{total} | {rate} items/s | ETA {eta_formatted} | stored {stored} skipped {skipped} failed {failed}",
    hideCursor: true,
    etaBuffer: 50,
  });
  const started = performance.now();
  let running = false;
  return {
    update(progress) {
      const payload = {
        rate: (progress.done / Math.max(0.001, (performance.now() - started) / 1000)).toFixed(1),
        stored: progress.stored,
        skipped: progress.skipped,
        failed: progress.failed,
      };
      if (!running) {
        bar.start(progress.total, progress.done, payload);
        running = true;
      } else {
        bar.update(progress.done, payload);
      }
    },
    stop() {
      if (running) bar.stop();
    },
  };
}
