/**
 * `loupe regions backfill [--kind image|video_segment] [--tenant T] [--json]`: finds the objects in stored
 * images and video keyframes that have no regions (ingested while `LOUPE_REGIONS=off`, before the pack had
 * a detection head, or whose regions could not be written) and stores them as `region` records (see
 * `ingest/region-backfill.ts`). It works in-process on the configured data dir (not while a `loupe serve`
 * holds it; a server runs the same job as `POST /v1/jobs` kind `regions`), and finds objects even when
 * `LOUPE_REGIONS=off`, since that is what it is asked for. Stopped part-way, it continues where it stopped
 * when run again: items with regions are skipped.
 */
import type { Command } from "commander";
import { AppError } from "../../errors.ts";
import type { JobCounts } from "../../ingest/jobs.ts";
import {
  REGION_BACKFILL_KINDS,
  REGIONS_JOB_KIND,
  type RegionBackfillKind,
} from "../../ingest/region-backfill.ts";
import {
  type BackfillReport,
  formatBackfillReport,
  parseBackfillKind,
  registerBackfillCommand,
  runBackfillJob,
} from "./backfill.ts";

/** Options of {@link runRegionBackfill}. */
export interface RunRegionBackfillOptions {
  /** Kinds to read; both when absent. */
  kinds?: readonly RegionBackfillKind[];
  /** The tenant whose items are read; `LOUPE_DEFAULT_TENANT` when absent. */
  tenant?: string;
  /** The environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** Called with the counts as they change. */
  onProgress?: (counts: JobCounts) => void;
}

/** What {@link runRegionBackfill} reports. */
export type RegionBackfillReport = BackfillReport<RegionBackfillKind>;

const WORDING = { title: "Region backfill", done: "read", skipped: "already had regions" };

/** @throws ValidationError for a kind the backfill does not read. */
export function parseRegionKind(value: string | undefined): RegionBackfillKind[] {
  return parseBackfillKind(value, REGION_BACKFILL_KINDS, "with objects to find");
}

/**
 * Opens the configured services in this process, runs the region backfill as a job of their registry,
 * waits for it, and closes them.
 * @throws AppError `regions_unavailable` (409) when the model pack has no detection head.
 */
export function runRegionBackfill({
  kinds = REGION_BACKFILL_KINDS,
  ...options
}: RunRegionBackfillOptions = {}): Promise<RegionBackfillReport> {
  return runBackfillJob({
    jobKind: REGIONS_JOB_KIND,
    kinds,
    ...options,
    runner: ({ regionBackfill }, request) => {
      if (regionBackfill === undefined) {
        throw new AppError(
          "regions_unavailable",
          409,
          "The model pack has no detection head (onnx/detection_model.onnx, loupe.detection in config.json), so no objects can be found. Use a pack that has one (LOUPE_MODEL_PACK).",
        );
      }
      return { run: regionBackfill.runner(request) };
    },
  });
}

/** The report as text: failures, then one summary line. */
export function formatRegionBackfillReport(report: RegionBackfillReport): string {
  return formatBackfillReport(report, WORDING);
}

/** Registers `loupe regions`. */
export function registerRegionsCommand(program: Command): void {
  const regions = program.command("regions").description("objects found in images and video keyframes");
  registerBackfillCommand(regions, {
    description:
      "find the objects in stored images and video keyframes that have no regions, and store them (continues where a stopped run left off)",
    kinds: REGION_BACKFILL_KINDS,
    parseKind: parseRegionKind,
    run: runRegionBackfill,
    wording: WORDING,
  });
}
