/**
 * `loupe ocr backfill [--kind image|video_segment] [--tenant T] [--json]`: reads the text of stored images
 * and video segments that have none (ingested while `LOUPE_OCR=off`, or before Loupe read text) and
 * writes it into their records (see `ingest/ocr-backfill.ts`). It works in-process on the configured
 * data dir (not while a `loupe serve` holds it; a server runs the same job as `POST /v1/jobs` kind `ocr`),
 * and reads text even when `LOUPE_OCR=off`, since reading is what it is asked for. Stopped part-way, it
 * continues where it stopped when run again: records with a reading are skipped.
 */
import type { Command } from "commander";
import type { JobCounts } from "../../ingest/jobs.ts";
import { OCR_BACKFILL_KINDS, OCR_JOB_KIND, type OcrBackfillKind } from "../../ingest/ocr-backfill.ts";
import {
  type BackfillReport,
  formatBackfillReport,
  parseBackfillKind,
  registerBackfillCommand,
  runBackfillJob,
} from "./backfill.ts";

/** Options of {@link runOcrBackfill}. */
export interface RunOcrBackfillOptions {
  /** Kinds to read; both when absent. */
  kinds?: readonly OcrBackfillKind[];
  /** The tenant whose items are read; `LOUPE_DEFAULT_TENANT` when absent. */
  tenant?: string;
  /** The environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** Called with the counts as they change. */
  onProgress?: (counts: JobCounts) => void;
}

/** What {@link runOcrBackfill} reports. */
export type OcrBackfillReport = BackfillReport<OcrBackfillKind>;

const WORDING = { title: "OCR backfill", done: "read", skipped: "already had text" };

/** @throws ValidationError for a kind the backfill does not read. */
export function parseOcrKind(value: string | undefined): OcrBackfillKind[] {
  return parseBackfillKind(value, OCR_BACKFILL_KINDS, "with text to read");
}

/**
 * Opens the configured services in this process, runs the OCR backfill as a job of their registry (the
 * engine of the services, or one built for this run when `LOUPE_OCR=off`), waits for it, and closes them.
 */
export async function runOcrBackfill({
  kinds = OCR_BACKFILL_KINDS,
  ...options
}: RunOcrBackfillOptions = {}): Promise<OcrBackfillReport> {
  const { buildOcrEngine } = await import("../../services.ts");
  const { OcrBackfill } = await import("../../ingest/ocr-backfill.ts");
  return runBackfillJob({
    jobKind: OCR_JOB_KIND,
    kinds,
    ...options,
    runner: ({ config, store, media, ocrBackfill, logger }, request) => {
      if (ocrBackfill !== undefined) return { run: ocrBackfill.runner(request) };
      const engine = buildOcrEngine({ config });
      const backfill = new OcrBackfill({
        store,
        media,
        ocr: { engine, minConfidence: config.ocrMinConfidence },
        logger,
      });
      return { run: backfill.runner(request), close: () => engine.close() };
    },
  });
}

/** The report as text: failures, then one summary line. */
export function formatOcrBackfillReport(report: OcrBackfillReport): string {
  return formatBackfillReport(report, WORDING);
}

/** Registers `loupe ocr`. */
export function registerOcrCommand(program: Command): void {
  const ocr = program.command("ocr").description("text read in images and video keyframes");
  registerBackfillCommand(ocr, {
    description:
      "read the text of stored images and video segments that have none, and store it (continues where a stopped run left off)",
    kinds: OCR_BACKFILL_KINDS,
    parseKind: parseOcrKind,
    run: runOcrBackfill,
    wording: WORDING,
  });
}
