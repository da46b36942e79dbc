/**
 * `loupe ocr backfill [--kind image|video_segment] [--tenant T] [--json]`: reads the text of stored images
 * and video segments that have none (ingested while `LOUPE_OCR=off`, or before Loupe read text) and
 * writes it into their records (see `ingest/ocr-backfill.ts`). It works in-process on the configured
 * data dir (not while a `loupe serve` holds it; a server runs the same job as `POST /v1/jobs` kind `ocr`),
 * and reads text even when `LOUPE_OCR=off`, since reading is what it is asked for. Stopped part-way, it
 * continues where it stopped when run again: records with a reading are skipped.
 */
import type { Command } from "commander";
import { ValidationError } from "../../errors.ts";
import type { JobCounts, JobSnapshot } from "../../ingest/jobs.ts";
import { OCR_BACKFILL_KINDS, OCR_JOB_KIND, type OcrBackfillKind } from "../../ingest/ocr-backfill.ts";

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
export interface OcrBackfillReport {
  tenant: string;
  kinds: OcrBackfillKind[];
  status: JobSnapshot["status"];
  counts: JobCounts;
  /** Items that failed, with why. */
  failed: Array<{ id?: string; kind?: string; code: string; message: string }>;
  error?: JobSnapshot["error"];
  seconds: number;
}

/** @throws ValidationError for a kind the backfill does not read. */
export function parseOcrKind(value: string | undefined): OcrBackfillKind[] {
  if (value === undefined) return [...OCR_BACKFILL_KINDS];
  if (!OCR_BACKFILL_KINDS.includes(value as OcrBackfillKind)) {
    throw new ValidationError(
      `--kind ${JSON.stringify(value.slice(0, 40))} is not a kind with text to read; use ${OCR_BACKFILL_KINDS.join(" or ")}.`,
    );
  }
  return [value as OcrBackfillKind];
}

/**
 * Opens the configured services in this process, runs the OCR backfill as a job of their registry (the
 * engine of the services, or one built for this run when `LOUPE_OCR=off`), waits for it, and closes them.
 */
export async function runOcrBackfill({
  kinds = OCR_BACKFILL_KINDS,
  tenant: givenTenant,
  env = process.env,
  onProgress,
}: RunOcrBackfillOptions = {}): Promise<OcrBackfillReport> {
  // Imported on use, like `serve` and `ingest`: the store pulls in the Milvus SDK.
  const { withLocalServices } = await import("../local-services.ts");
  const { buildOcrEngine } = await import("../../services.ts");
  const { OcrBackfill } = await import("../../ingest/ocr-backfill.ts");
  const store = await import("../../store/index.ts");
  const assertValidTenant: (tenant: string) => void = store.assertValidTenant;
  const started = performance.now();
  return withLocalServices(
    { env },
    async ({ config, store: vectorStore, media, jobs, ocrBackfill, logger }) => {
      const tenant = givenTenant ?? config.defaultTenant;
      assertValidTenant(tenant);
      const ownEngine = ocrBackfill === undefined ? buildOcrEngine({ config }) : undefined;
      const backfill =
        ocrBackfill ??
        new OcrBackfill({
          store: vectorStore,
          media,
          ocr: { engine: ownEngine as NonNullable<typeof ownEngine>, minConfidence: config.ocrMinConfidence },
          logger,
        });
      try {
        const { id } = jobs.create({
          tenant,
          kind: OCR_JOB_KIND,
          items: [],
          run: backfill.runner({ tenant, kinds }),
        });
        if (onProgress !== undefined) {
          void (async () => {
            for await (const event of jobs.events({ id, tenant })) {
              if (event.type === "progress") onProgress(event.data.counts);
            }
          })();
        }
        const job = await jobs.wait({ id, tenant });
        return {
          tenant,
          kinds: [...kinds],
          status: job.status,
          counts: job.counts,
          failed: job.items.flatMap((item) =>
            item.status === "failed" && item.error !== undefined
              ? [
                  {
                    ...(item.id === undefined ? {} : { id: item.id }),
                    ...(item.describe.kind === undefined ? {} : { kind: item.describe.kind }),
                    code: item.error.code,
                    message: item.error.message,
                  },
                ]
              : [],
          ),
          ...(job.error === undefined ? {} : { error: job.error }),
          seconds: Math.round((performance.now() - started) / 100) / 10,
        };
      } finally {
        await ownEngine?.close();
      }
    },
  );
}

/** The report as text: failures, then one summary line. */
export function formatOcrBackfillReport(report: OcrBackfillReport): string {
  const lines = report.failed.map((item) => `failed ${item.kind ?? ""} ${item.id ?? ""}: ${item.message}`);
  const { total, done, skipped, failed, pending } = report.counts;
  lines.push(
    `OCR backfill ${report.status} for tenant ${report.tenant} (${report.kinds.join(", ")}): ` +
      `${done} read, ${skipped} already had text, ${failed} failed${pending > 0 ? `, ${pending} left` : ""} of ${total} in ${report.seconds} s.`,
  );
  if (report.error !== undefined)
    lines.push(`The run stopped: ${report.error.message} Run it again to continue.`);
  return `${lines.join("\n")}\n`;
}

/** Registers `loupe ocr`. */
export function registerOcrCommand(program: Command): void {
  const ocr = program.command("ocr").description("text read in images and video keyframes");
  ocr
    .command("backfill")
    .description(
      "read the text of stored images and video segments that have none, and store it (continues where a stopped run left off)",
    )
    .option("--kind <kind>", `read only this kind: ${OCR_BACKFILL_KINDS.join(" or ")} (default: both)`)
    .option("--tenant <tenant>", "tenant whose items are read (default: LOUPE_DEFAULT_TENANT)")
    .option("--json", "print the report as JSON", false)
    .action(async (flags: { kind?: string; tenant?: string; json: boolean }) => {
      const kinds = parseOcrKind(flags.kind);
      const interactive = !flags.json && process.stderr.isTTY === true;
      const report = await runOcrBackfill({
        kinds,
        ...(flags.tenant === undefined ? {} : { tenant: flags.tenant }),
        ...(interactive
          ? {
              onProgress: (counts: JobCounts) =>
                process.stderr.write(
                  `\r${counts.done} read, ${counts.skipped} skipped, ${counts.failed} failed of ${counts.total} so far`,
                ),
            }
          : {}),
      });
      if (interactive) process.stderr.write("\n");
      process.stdout.write(
        flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatOcrBackfillReport(report),
      );
      if (report.status === "failed") process.exitCode = 1;
    });
}
