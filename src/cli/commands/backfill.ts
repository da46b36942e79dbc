/**
 * What the backfill commands share (`loupe ocr backfill`, `loupe regions backfill`): each opens the configured
 * services in this process (not while a `loupe serve` holds the data dir; a server runs the same jobs through
 * `POST /v1/jobs`), runs one backfill as a job of their registry, waits for it, reports it and closes them. A
 * backfill stopped part-way continues where it stopped when run again: items already done are skipped.
 */
import type { Command } from "commander";
import { ValidationError } from "../../errors.ts";
import type { JobCounts, JobRunner, JobSnapshot } from "../../ingest/jobs.ts";
import type { LoupeServices } from "../../services.ts";

/** What a backfill run reports. */
export interface BackfillReport<Kind extends string = string> {
  tenant: string;
  kinds: Kind[];
  status: JobSnapshot["status"];
  counts: JobCounts;
  /** Items that failed, with why. */
  failed: Array<{ id?: string; kind?: string; code: string; message: string }>;
  error?: JobSnapshot["error"];
  seconds: number;
}

/** Options of {@link runBackfillJob}. */
export interface RunBackfillOptions<Kind extends string, Input> {
  /** The job's kind in the registry (`ocr`, `regions`). */
  jobKind: string;
  kinds: readonly Kind[];
  /** The tenant whose items are read; `LOUPE_DEFAULT_TENANT` when absent. */
  tenant?: string;
  /** The environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** Called with the counts as they change. */
  onProgress?: (counts: JobCounts) => void;
  /**
   * The job's runner from the opened services, and what to close after it (an engine built for this run).
   * @throws an AppError when the services cannot run this backfill.
   */
  runner: (
    services: LoupeServices,
    request: { tenant: string; kinds: readonly Kind[] },
  ) => { run: JobRunner<Input>; close?: () => Promise<void> };
}

/** Runs one backfill job in-process on the configured services and waits for it. */
export async function runBackfillJob<Kind extends string, Input>({
  jobKind,
  kinds,
  tenant: givenTenant,
  env = process.env,
  onProgress,
  runner,
}: RunBackfillOptions<Kind, Input>): Promise<BackfillReport<Kind>> {
  // Imported on use, like `serve` and `ingest`: the store pulls in the Milvus SDK.
  const { withLocalServices } = await import("../local-services.ts");
  const store = await import("../../store/index.ts");
  const assertValidTenant: (tenant: string) => void = store.assertValidTenant;
  const started = performance.now();
  return withLocalServices({ env }, async (services) => {
    const tenant = givenTenant ?? services.config.defaultTenant;
    assertValidTenant(tenant);
    const { run, close } = runner(services, { tenant, kinds });
    try {
      const { jobs } = services;
      const { id } = jobs.create<Input>({ tenant, kind: jobKind, items: [], run });
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
      await close?.();
    }
  });
}

/**
 * The kinds a `--kind` flag names: all of `allowed` when absent.
 * @throws ValidationError for a kind the backfill does not read, naming the allowed ones.
 */
export function parseBackfillKind<Kind extends string>(
  value: string | undefined,
  allowed: readonly Kind[],
  what: string,
): Kind[] {
  if (value === undefined) return [...allowed];
  if (!allowed.includes(value as Kind)) {
    throw new ValidationError(
      `--kind ${JSON.stringify(value.slice(0, 40))} is not a kind ${what}; use ${allowed.join(" or ")}.`,
    );
  }
  return [value as Kind];
}

/** How a report speaks of its backfill: `OCR backfill … 2 read, 0 already had text`. */
export interface BackfillWording {
  title: string;
  done: string;
  skipped: string;
}

/** The report as text: failures, then one summary line. */
export function formatBackfillReport(report: BackfillReport, wording: BackfillWording): string {
  const lines = report.failed.map((item) => `failed ${item.kind ?? ""} ${item.id ?? ""}: ${item.message}`);
  const { total, done, skipped, failed, pending } = report.counts;
  lines.push(
    `${wording.title} ${report.status} for tenant ${report.tenant} (${report.kinds.join(", ")}): ` +
      `${done} ${wording.done}, ${skipped} ${wording.skipped}, ${failed} failed${pending > 0 ? `, ${pending} left` : ""} of ${total} in ${report.seconds} s.`,
  );
  if (report.error !== undefined)
    lines.push(`The run stopped: ${report.error.message} Run it again to continue.`);
  return `${lines.join("\n")}\n`;
}

/** Registers `<parent> backfill` with `--kind`, `--tenant` and `--json`. */
export function registerBackfillCommand<Kind extends string>(
  parent: Command,
  {
    description,
    kinds,
    parseKind,
    run,
    wording,
  }: {
    description: string;
    kinds: readonly Kind[];
    parseKind: (value: string | undefined) => Kind[];
    run: (options: {
      kinds: Kind[];
      tenant?: string;
      onProgress?: (counts: JobCounts) => void;
    }) => Promise<BackfillReport<Kind>>;
    wording: BackfillWording;
  },
): void {
  parent
    .command("backfill")
    .description(description)
    .option("--kind <kind>", `read only this kind: ${kinds.join(" or ")} (default: all)`)
    .option("--tenant <tenant>", "tenant whose items are read (default: LOUPE_DEFAULT_TENANT)")
    .option("--json", "print the report as JSON", false)
    .action(async (flags: { kind?: string; tenant?: string; json: boolean }) => {
      const chosen = parseKind(flags.kind);
      const interactive = !flags.json && process.stderr.isTTY === true;
      const report = await run({
        kinds: chosen,
        ...(flags.tenant === undefined ? {} : { tenant: flags.tenant }),
        ...(interactive
          ? {
              onProgress: (counts: JobCounts) =>
                process.stderr.write(
                  `\r${counts.done} ${wording.done}, ${counts.skipped} skipped, ${counts.failed} failed of ${counts.total} so far`,
                ),
            }
          : {}),
      });
      if (interactive) process.stderr.write("\n");
      process.stdout.write(
        flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatBackfillReport(report, wording),
      );
      if (report.status === "failed") process.exitCode = 1;
    });
}
