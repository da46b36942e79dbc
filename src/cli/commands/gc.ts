/**
 * `loupe gc [--dry-run] [--grace-seconds N] [--json]`: removes stored files that no record of any tenant
 * uses (see `ingest/blob-gc.ts`), and prints what it removed or, with `--dry-run`, would remove. It works
 * in-process on the configured data dir (the embedded Milvus Lite under `LOUPE_DATA_DIR`, so not while a
 * `loupe serve` holds that directory; the server sweeps at start-up itself, see `LOUPE_BLOB_GC_AT_START`).
 */
import type { Command } from "commander";
import type { BlobSweepReport } from "../../ingest/blob-gc.ts";
import { wholeNumber } from "../command-inputs.ts";
import { formatTable } from "../table.ts";

/** Options of {@link runGc}. */
export interface RunGcOptions {
  /** Report, remove nothing. */
  dryRun?: boolean;
  /** Leave blobs whose references changed within this many seconds; default `LOUPE_BLOB_GC_GRACE_S`. */
  graceSeconds?: number;
  /** The environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
}

/** Opens the configured services in this process, sweeps orphan blobs, and closes them. */
export async function runGc({
  dryRun = false,
  graceSeconds,
  env = process.env,
}: RunGcOptions = {}): Promise<BlobSweepReport> {
  // Imported on use, like `serve` and `ingest`: the store pulls in the Milvus SDK.
  const { withLocalServices } = await import("../local-services.ts");
  const { sweepOrphanBlobs } = await import("../../ingest/blob-gc.ts");
  return withLocalServices({ env }, ({ blobs, store, config, logger }) =>
    sweepOrphanBlobs({ blobs, store, dryRun, graceSeconds: graceSeconds ?? config.blobGcGraceS, logger }),
  );
}

/** Bytes as B, kB, MB or GB (decimal units). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = "B";
  for (const next of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = next;
  }
  return `${value.toFixed(1)} ${unit}`;
}

/** The sweep's report as text: one line per file removed (or that would be), then a summary. */
export function formatGcReport(report: BlobSweepReport): string {
  const lines: string[] = [];
  if (report.removed.length > 0 || report.leftovers.length > 0) {
    const rows = [
      ["blob", "bytes", "why"],
      ...report.removed.map((blob) => [
        blob.sha256,
        String(blob.size),
        blob.reason === "unreferenced" ? "no reference" : `records gone: ${blob.owners.join(", ")}`,
      ]),
      ...report.leftovers.map((leftover) => [
        leftover.path,
        String(leftover.size),
        leftover.kind === "temporary" ? "interrupted write" : "bytes without index entry",
      ]),
    ];
    lines.push(formatTable(rows));
  }
  for (const { sha256, owners } of report.released) {
    lines.push(
      `${report.dryRun ? "would drop" : "dropped"} dead references ${owners.join(", ")} of ${sha256}`,
    );
  }
  const files = report.removed.length + report.leftovers.length;
  lines.push(
    `${report.dryRun ? "Dry run: would remove" : "Removed"} ${report.removed.length} orphan blob${report.removed.length === 1 ? "" : "s"} ` +
      `(${formatBytes(report.removedBytes)}) and ${report.leftovers.length} leftover file${report.leftovers.length === 1 ? "" : "s"} ` +
      `(${formatBytes(report.leftoverBytes)}) of ${report.scanned.blobs} blobs (${formatBytes(report.scanned.bytes)}); ` +
      `${report.young} younger than ${report.graceSeconds} s kept${report.raced > 0 ? `, ${report.raced} changed during the sweep kept` : ""}` +
      `${report.checkedRecords ? "" : "; records were not checked"}.`,
  );
  if (report.unreadable.length > 0) {
    lines.push(
      `${report.unreadable.length} blob${report.unreadable.length === 1 ? "'s" : "s'"} reference index could not be read and ${report.unreadable.length === 1 ? "was" : "were"} kept: ${report.unreadable.slice(0, 5).join(", ")}${report.unreadable.length > 5 ? ", …" : ""}.`,
    );
  }
  if (files === 0 && report.released.length === 0) lines.unshift("No orphan blobs.");
  return `${lines.join("\n")}\n`;
}

/** Registers `loupe gc`. */
export function registerGcCommand(program: Command): void {
  program
    .command("gc")
    .description("remove stored files (originals, thumbnails, keyframes) that no record of any tenant uses")
    .option("--dry-run", "print what would be removed, and remove nothing", false)
    .option(
      "--grace-seconds <n>",
      "keep blobs whose references changed within this many seconds (default: LOUPE_BLOB_GC_GRACE_S, 600)",
      wholeNumber("--grace-seconds", { max: 2_592_000 }),
    )
    .option("--json", "print the report as JSON", false)
    .action(async (flags: { dryRun: boolean; graceSeconds?: number; json: boolean }) => {
      const report = await runGc({ dryRun: flags.dryRun, graceSeconds: flags.graceSeconds });
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatGcReport(report));
    });
}
