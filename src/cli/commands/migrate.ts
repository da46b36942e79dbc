/**
 * `loupe migrate [--status] [--json]`: applies the pending database migrations to the PostgreSQL of
 * `LOUPE_DATABASE_URL` and prints what it applied; `--status` lists every migration with the time it was
 * applied (or `pending`) and changes nothing. Safe to run from several places at once (one applies, the
 * others find nothing pending) and again (nothing pending: nothing done). Opens only the database.
 */
import type { Command } from "commander";
import { parseConfig } from "../../config.ts";
import { ConfigError } from "../../errors.ts";
import { formatTable } from "../table.ts";

/** Where a command's output goes (tests collect it). */
type Write = (text: string) => void;

/** Options of {@link runMigrate}. */
export interface RunMigrateOptions {
  /** List the migrations, apply nothing. */
  status?: boolean;
  json?: boolean;
  /** The environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  write?: Write;
}

/** A migration as the command prints it. */
interface MigrationLine {
  version: number;
  name: string;
  appliedAt: string | null;
}

/** Applies (or, with `status`, lists) the migrations of the configured database, and prints the result. */
export async function runMigrate({
  status = false,
  json = false,
  env = process.env,
  write = (text) => process.stdout.write(text),
}: RunMigrateOptions = {}): Promise<MigrationLine[]> {
  const config = parseConfig({ env });
  if (config.databaseUrl === undefined) {
    throw new ConfigError(
      "`loupe migrate` needs LOUPE_DATABASE_URL (postgres://user:password@host:5432/database). Without it Loupe keeps its state in files under LOUPE_DATA_DIR, which need no migrations.",
    );
  }
  // Imported on use: only this command and a server with a database load `pg`.
  const { createDatabasePool, describeDatabaseUrl, migrate, migrationStatus } = await import(
    "../../db/index.ts"
  );
  const pool = createDatabasePool({ url: config.databaseUrl, maxConnections: 1 });
  const where = describeDatabaseUrl(config.databaseUrl);
  try {
    const lines = status ? await migrationStatus({ pool }) : await migrate({ pool });
    if (json) {
      write(
        `${JSON.stringify(status ? { database: where, migrations: lines } : { database: where, applied: lines })}\n`,
      );
    } else if (status) {
      write(
        `${formatTable([
          ["version", "name", "applied"],
          ...lines.map((line) => [String(line.version), line.name, line.appliedAt ?? "pending"]),
        ])}\n`,
      );
      const pending = lines.filter((line) => line.appliedAt === null).length;
      write(
        pending === 0
          ? `${where} is up to date.\n`
          : `${where}: ${pending} pending; \`loupe migrate\` applies them.\n`,
      );
    } else if (lines.length === 0) {
      write(`${where} is up to date; nothing applied.\n`);
    } else {
      for (const line of lines) write(`applied ${line.version} ${line.name}\n`);
      write(`${where}: ${lines.length} migration${lines.length === 1 ? "" : "s"} applied.\n`);
    }
    return lines;
  } finally {
    await pool.end();
  }
}

/** Adds `loupe migrate` to the program. */
export function registerMigrateCommand(program: Command): void {
  program
    .command("migrate")
    .description(
      "Apply pending migrations to the PostgreSQL of LOUPE_DATABASE_URL (shared state); --status lists them",
    )
    .option("--status", "list every migration and whether it is applied; change nothing")
    .option("--json", "print JSON")
    .action(async (options: { status?: boolean; json?: boolean }) => {
      await runMigrate({ status: options.status === true, json: options.json === true });
    });
}
