/**
 * `loupe models migrate --to <pack> [--drop-old] [--limit N] [--json]`: switches the store to another
 * model pack, re-embedding every item of every tenant from its stored media into collections of the new
 * model, then making them live in one step (see `ingest/pack-migration.ts`). Stopped part-way, it
 * continues where it stopped when run again. `loupe models migrate --drop <model id>` drops the
 * collections of a model that is no longer live. It works in-process on the configured data dir (not
 * while a `loupe serve` holds it; a server runs the same as `POST /v1/jobs` kind `migrate`).
 */
import { type Command, Option } from "commander";
import { ValidationError } from "../../errors.ts";
import type { KindProgress, PackMigrationReport } from "../../ingest/pack-migration.ts";
import type { RecordKind } from "../../store/record-id.ts";
import { wholeNumber } from "../command-inputs.ts";

/** Options of {@link runPackMigration}. */
export interface RunPackMigrationOptions {
  /** The pack to switch to: a directory, or a pack name under `LOUPE_MODELS_DIR`. */
  to?: string;
  /** Drop the collections of a model that is not live, instead of migrating. */
  drop?: string;
  dropOld?: boolean;
  /** Stop (without switching) after this many rows were re-embedded. */
  limit?: number;
  /** The environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** Called with the progress per kind as it changes. */
  onProgress?: (progress: Record<RecordKind, KindProgress>) => void;
  /** Called with each record's old and new id. */
  onItem?: (item: { kind: RecordKind; tenant: string; from: string; to?: string; status: string }) => void;
  signal?: AbortSignal;
}

/** What {@link runPackMigration} reports: the migration's report, or the collections a drop removed. */
export type PackMigrationCliReport =
  | (PackMigrationReport & { seconds: number })
  | { dropped: string[]; modelId: string; seconds: number };

/**
 * Opens Milvus for the migration (without the start-up check that refuses another model's
 * collections), runs it or the drop, and closes everything.
 *
 * @throws ValidationError unless exactly one of `to` and `drop` is given.
 */
export async function runPackMigration({
  to,
  drop,
  dropOld = false,
  limit,
  env = process.env,
  onProgress,
  onItem,
  signal,
}: RunPackMigrationOptions): Promise<PackMigrationCliReport> {
  if ((to === undefined) === (drop === undefined)) {
    throw new ValidationError(
      "Give either --to <pack> (switch to that pack) or --drop <model id> (drop its collections).",
    );
  }
  // Imported on use, like `serve` and `ingest`: the store pulls in the Milvus SDK.
  const { pino } = await import("pino");
  const { parseConfig } = await import("../../config.ts");
  const { createLogger } = await import("../../logger.ts");
  const { createLoupeServices } = await import("../../services.ts");
  const started = performance.now();
  const seconds = () => Math.round((performance.now() - started) / 100) / 10;
  const logger = createLogger({ level: "warn", destination: pino.destination(2) });
  const services = await createLoupeServices({ config: parseConfig({ env }), logger, forMigration: true });
  try {
    if (services.openCatalog === undefined || services.packMigration === undefined) {
      throw new ValidationError(
        "There is no Milvus to migrate: install a model pack or set LOUPE_EMBEDDING_DIM, and ingest something first.",
      );
    }
    if (drop !== undefined) {
      const catalog = services.openCatalog();
      try {
        return { dropped: await catalog.drop({ modelId: drop }), modelId: drop, seconds: seconds() };
      } finally {
        await catalog.close();
      }
    }
    const report = await services.packMigration.run({
      to: to as string,
      dropOld,
      ...(limit === undefined ? {} : { limit }),
      ...(signal === undefined ? {} : { signal }),
      ...(onProgress === undefined ? {} : { onProgress }),
      ...(onItem === undefined
        ? {}
        : {
            onItem: (item) =>
              onItem({
                kind: item.kind,
                tenant: item.tenant,
                from: item.from,
                ...(item.to === undefined ? {} : { to: item.to }),
                status: item.outcome.status,
              }),
          }),
    });
    return { ...report, seconds: seconds() };
  } finally {
    await services.close();
  }
}

/** The report as text. */
export function formatPackMigrationReport(report: PackMigrationCliReport): string {
  if ("dropped" in report && !("progress" in report)) {
    return report.dropped.length === 0
      ? `No collection of model ${report.modelId} was found to drop.\n`
      : `Dropped ${report.dropped.join(", ")} (model ${report.modelId}) in ${report.seconds} s.\n`;
  }
  const lines = Object.entries(report.progress).map(
    ([kind, { total, copied, skipped, failed }]) =>
      `${kind}: ${copied + skipped} of ${total} in the new collections (${copied} re-embedded now, ${skipped} before${failed > 0 ? `, ${failed} failed` : ""})`,
  );
  const what = {
    switched: `Switched from ${report.from ?? "(unknown)"} to ${report.to}: ${Object.values(report.collections).join(", ")} are live. Restart Loupe with LOUPE_MODEL_PACK on the new pack. Item ids changed with the model (--ids prints old → new).`,
    already: `The live collections already hold ${report.to}; nothing to do.`,
    partial: `Stopped before the end; nothing was switched. Run the same command again to continue.`,
    incomplete: `Some items could not be re-embedded (above); nothing was switched. Fix or delete them and run again.`,
  }[report.status];
  lines.push(`${what} (${report.seconds} s)`);
  if (report.dropped.length > 0) lines.push(`Dropped the old collections: ${report.dropped.join(", ")}.`);
  return `${lines.join("\n")}\n`;
}

/** Adds `models migrate` to `loupe models`. */
export function registerModelsMigrateCommand(models: Command): void {
  models
    .command("migrate")
    .description(
      "switch to another model pack: re-embed every stored item into collections of its model, then make them live (continues where a stopped run left off)",
    )
    .option("--to <pack>", "the pack to switch to: a directory, or a pack name under LOUPE_MODELS_DIR")
    .option("--drop <model id>", "drop the collections of this model (not the live one) instead of migrating")
    .option("--drop-old", "drop the old model's collections once the switch is made", false)
    .addOption(
      new Option("--limit <n>", "stop after re-embedding this many rows, without switching").argParser(
        wholeNumber("--limit", { min: 1 }),
      ),
    )
    .option("--ids", "print each item's old id and new id, tab-separated, on stdout", false)
    .option("--json", "print the report as JSON", false)
    .action(
      async (flags: {
        to?: string;
        drop?: string;
        dropOld: boolean;
        limit?: number;
        ids: boolean;
        json: boolean;
      }) => {
        const interactive = !flags.json && process.stderr.isTTY === true;
        const report = await runPackMigration({
          ...(flags.to === undefined ? {} : { to: flags.to }),
          ...(flags.drop === undefined ? {} : { drop: flags.drop }),
          dropOld: flags.dropOld,
          ...(flags.limit === undefined ? {} : { limit: flags.limit }),
          ...(flags.ids
            ? {
                onItem: (item) => {
                  if (item.to !== undefined && item.status !== "failed") {
                    process.stdout.write(`${item.kind}\t${item.tenant}\t${item.from}\t${item.to}\n`);
                  }
                },
              }
            : {}),
          ...(interactive
            ? {
                onProgress: (progress) =>
                  process.stderr.write(
                    `\r${Object.entries(progress)
                      .map(([kind, p]) => `${kind} ${p.copied + p.skipped}/${p.total}`)
                      .join("  ")}`,
                  ),
              }
            : {}),
        });
        if (interactive) process.stderr.write("\n");
        process.stdout.write(
          flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatPackMigrationReport(report),
        );
        if ("status" in report && report.status !== "switched" && report.status !== "already")
          process.exitCode = 1;
      },
    );
}
