/**
 * The PostgreSQL database that shared state lives in when `LOUPE_DATABASE_URL` is set: the pool, the
 * transaction helper and the versioned migrations.
 */

export {
  createDatabasePool,
  type DatabasePoolOptions,
  describeDatabaseUrl,
  withTransaction,
} from "./database.ts";
export { DatabaseError, type DatabaseErrorCode } from "./database-error.ts";
export {
  assertMigrated,
  MIGRATIONS_TABLE,
  type MigrateOptions,
  type MigrationState,
  migrate,
  migrationChecksum,
  migrationStatus,
} from "./migrate.ts";
export { MIGRATIONS, type Migration } from "./migrations.ts";
export { type OpenDatabaseOptions, openDatabase } from "./open-database.ts";
