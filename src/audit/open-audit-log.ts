/**
 * Opens the audit trail the settings name, for what opens it alone (`loupe keys`, `loupe feedback`):
 * on the database of `LOUPE_DATABASE_URL` when it is set, else `<LOUPE_DATA_DIR>/audit.log`. The server
 * builds its own over the services' pool (`services.ts`).
 */
import path from "node:path";
import { type AuditLog, createFileAuditLog } from "./audit-log.ts";

/** Options of {@link openAuditLog}. */
export interface OpenAuditLogOptions {
  /** `LOUPE_DATABASE_URL`; absent: the file under `dataDir`. */
  databaseUrl?: string;
  /** `LOUPE_DATA_DIR`. */
  dataDir: string;
}

/**
 * The audit log of the settings; its `close()` releases what it opened (the database's pool). Closing it
 * twice closes it once.
 *
 * @throws {DatabaseError} with a database URL: `migrations_pending` (naming `loupe migrate`),
 *   `database_invalid` or `database_unavailable`.
 */
export async function openAuditLog({ databaseUrl, dataDir }: OpenAuditLogOptions): Promise<AuditLog> {
  if (databaseUrl === undefined) return createFileAuditLog({ file: path.join(dataDir, "audit.log") });
  // Imported on use: without a database URL `pg` is never loaded.
  const [{ openDatabase }, { createPgAuditLog }] = await Promise.all([
    import("../db/open-database.ts"),
    import("./pg-audit-log.ts"),
  ]);
  const pool = await openDatabase({ url: databaseUrl });
  const log = createPgAuditLog({ pool });
  let closing: Promise<void> | undefined;
  return {
    record: (entry) => log.record(entry),
    close() {
      closing ??= log.close().finally(() => pool.end());
      return closing;
    },
  };
}
