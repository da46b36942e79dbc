/**
 * Applies the versioned {@link MIGRATIONS} to a database and reports where it stands. Every run takes a
 * transaction-scoped advisory lock first, so two processes migrating at once (two replicas, two
 * `loupe migrate`) apply each migration once: the second waits, then finds nothing pending. All pending
 * migrations go in one transaction, so a failing one leaves the database at the version it had.
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { databaseFailure, withTransaction } from "./database.ts";
import { DatabaseError } from "./database-error.ts";
import { MIGRATIONS, type Migration } from "./migrations.ts";

/** The table that records applied migrations. */
export const MIGRATIONS_TABLE = "loupe_migrations";

/** The advisory lock migrations run under (any 64-bit number other Loupe locks do not use). */
const MIGRATION_LOCK = 0x6c6f7570656d6967n;

/** A migration and whether it was applied. */
export interface MigrationState {
  version: number;
  name: string;
  /** ISO 8601 time it was applied; `null`: pending. */
  appliedAt: string | null;
}

/** Options shared by {@link migrate}, {@link migrationStatus} and {@link assertMigrated}. */
export interface MigrateOptions {
  pool: pg.Pool;
  /** The migrations to apply; this Loupe's own when absent (tests pass a prefix to build older databases). */
  migrations?: readonly Migration[];
}

/** The SHA-256 of a migration's statements, recorded when it is applied. */
export function migrationChecksum(migration: Migration): string {
  return createHash("sha256").update(migration.sql).digest("hex");
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
  applied_at: Date;
}

/** Checks the applied rows against `migrations`: none unknown, none changed. */
function checkApplied(rows: readonly AppliedRow[], migrations: readonly Migration[]): void {
  const known = new Map(migrations.map((migration) => [migration.version, migration]));
  for (const row of rows) {
    const migration = known.get(row.version);
    if (migration === undefined) {
      throw new DatabaseError(
        "database_invalid",
        `The database has migration ${row.version} (${row.name}), which this Loupe does not know (it knows up to ${migrations.at(-1)?.version ?? 0}): it was migrated by a newer Loupe. Run that version, or restore a backup from before the upgrade.`,
        { context: { version: row.version } },
      );
    }
    if (migrationChecksum(migration) !== row.checksum) {
      throw new DatabaseError(
        "database_invalid",
        `Migration ${row.version} (${row.name}) was applied with other statements than this Loupe's; migrations are never edited once released. Restore the database, or run the Loupe version that applied it.`,
        { context: { version: row.version } },
      );
    }
  }
}

function stateOf(migrations: readonly Migration[], rows: readonly AppliedRow[]): MigrationState[] {
  const applied = new Map(rows.map((row) => [row.version, row]));
  return migrations.map((migration) => ({
    version: migration.version,
    name: migration.name,
    appliedAt: applied.get(migration.version)?.applied_at.toISOString() ?? null,
  }));
}

async function appliedRows(client: pg.Pool | pg.PoolClient): Promise<AppliedRow[]> {
  const exists = await client.query<{ table: string | null }>("select to_regclass($1) as table", [
    MIGRATIONS_TABLE,
  ]);
  if (exists.rows[0]?.table === null) return [];
  const result = await client.query<AppliedRow>(
    `select version, name, checksum, applied_at from ${MIGRATIONS_TABLE} order by version`,
  );
  return result.rows;
}

/**
 * Applies the pending migrations, in order, in one transaction under the migration lock.
 *
 * @returns the migrations it applied; empty when the database was up to date.
 * @throws {DatabaseError} `database_invalid` when the database holds migrations this Loupe does not know
 *   or that were changed; `database_unavailable` when it cannot be reached.
 */
export async function migrate({ pool, migrations = MIGRATIONS }: MigrateOptions): Promise<MigrationState[]> {
  return withTransaction(pool, async (client) => {
    await client.query("select pg_advisory_xact_lock($1)", [MIGRATION_LOCK.toString()]);
    await client.query(
      `create table if not exists ${MIGRATIONS_TABLE} (
        version integer primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`,
    );
    const rows = await appliedRows(client);
    checkApplied(rows, migrations);
    const done = new Set(rows.map((row) => row.version));
    const applied: MigrationState[] = [];
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      try {
        await client.query(migration.sql);
      } catch (error) {
        throw new DatabaseError(
          "database_invalid",
          `Migration ${migration.version} (${migration.name}) failed: ${error instanceof Error ? error.message : String(error)}. Nothing was applied.`,
          { cause: error, context: { version: migration.version } },
        );
      }
      const inserted = await client.query<{ applied_at: Date }>(
        `insert into ${MIGRATIONS_TABLE} (version, name, checksum) values ($1, $2, $3) returning applied_at`,
        [migration.version, migration.name, migrationChecksum(migration)],
      );
      applied.push({
        version: migration.version,
        name: migration.name,
        appliedAt: (inserted.rows[0]?.applied_at ?? new Date()).toISOString(),
      });
    }
    return applied;
  });
}

/** Every migration this Loupe knows, with the time each was applied (`null`: pending). */
export async function migrationStatus({
  pool,
  migrations = MIGRATIONS,
}: MigrateOptions): Promise<MigrationState[]> {
  let rows: AppliedRow[];
  try {
    rows = await appliedRows(pool);
  } catch (error) {
    throw databaseFailure(error, pool);
  }
  checkApplied(rows, migrations);
  return stateOf(migrations, rows);
}

/**
 * Resolves when every migration is applied.
 *
 * @throws {DatabaseError} `migrations_pending` naming them and `loupe migrate`; `database_invalid` as
 *   {@link migrate}; `database_unavailable` when the database cannot be reached.
 */
export async function assertMigrated(options: MigrateOptions): Promise<void> {
  const pending = (await migrationStatus(options)).filter((state) => state.appliedAt === null);
  if (pending.length === 0) return;
  throw new DatabaseError(
    "migrations_pending",
    `The database lacks ${pending.length} migration${pending.length === 1 ? "" : "s"} (${pending
      .map((state) => `${state.version} ${state.name}`)
      .join(", ")}). Run \`loupe migrate\` with the same LOUPE_DATABASE_URL first.`,
    { context: { pending: pending.map((state) => state.version) } },
  );
}
