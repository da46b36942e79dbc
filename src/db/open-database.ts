/**
 * Opens the database of `LOUPE_DATABASE_URL` for serving: a pool, checked to answer and to hold every
 * migration, so a process never serves over a schema it does not know.
 */
import type pg from "pg";
import { createDatabasePool } from "./database.ts";
import { assertMigrated } from "./migrate.ts";
import type { Migration } from "./migrations.ts";

/** Options of {@link openDatabase}. */
export interface OpenDatabaseOptions {
  url: string;
  /** The migrations that must be applied; this Loupe's own when absent. */
  migrations?: readonly Migration[];
}

/**
 * A pool over `url` whose database holds every migration; the caller ends it.
 *
 * @throws {DatabaseError} `migrations_pending` naming `loupe migrate`, `database_invalid`, or
 *   `database_unavailable`; the pool is ended first.
 */
export async function openDatabase({ url, migrations }: OpenDatabaseOptions): Promise<pg.Pool> {
  const pool = createDatabasePool({ url });
  try {
    await assertMigrated({ pool, ...(migrations === undefined ? {} : { migrations }) });
    return pool;
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
}
