/**
 * The PostgreSQL adapter of the {@link AuditLog} port, for several Loupe processes writing one trail
 * (`LOUPE_DATABASE_URL`): one row per entry in `loupe_audit_log` (migration 2), appended only, in the
 * order `seq` gives. Who, for which tenant, through which route and when are columns; `detail` is jsonb.
 */
import type pg from "pg";
import { runQuery } from "../db/query-failure.ts";
import { ValidationError } from "../errors.ts";
import type { AuditLog } from "./audit-log.ts";

/** Options of {@link createPgAuditLog}. */
export interface PgAuditLogOptions {
  /** The pool of `LOUPE_DATABASE_URL`, migrated; the log does not close it. */
  pool: pg.Pool;
  /** The clock of entries without a time (tests move it). */
  now?: () => Date;
}

/** The audit log over the `loupe_audit_log` table of a migrated database. */
export function createPgAuditLog({ pool, now = () => new Date() }: PgAuditLogOptions): AuditLog {
  const writing = new Set<Promise<unknown>>();
  return {
    async record(entry) {
      const time = entry.time === undefined ? now() : new Date(entry.time);
      if (Number.isNaN(time.getTime())) {
        throw new ValidationError(
          `The audit entry's time ${JSON.stringify(String(entry.time).slice(0, 60))} is not an ISO 8601 time; leave it out for now.`,
        );
      }
      const write = runQuery(pool, {
        what: `Recording the audit entry ${entry.action} of tenant ${entry.tenant}`,
        text: `insert into loupe_audit_log (time, action, key_id, tenant, route, request_id, item_ids, detail)
               values ($1, $2, $3, $4, $5, $6, $7, $8)`,
        values: [
          time,
          entry.action,
          entry.keyId,
          entry.tenant,
          entry.route,
          entry.requestId,
          [...entry.itemIds],
          entry.detail === undefined ? null : JSON.stringify(entry.detail),
        ],
      });
      writing.add(write);
      try {
        await write;
      } finally {
        writing.delete(write);
      }
    },
    async close() {
      await Promise.allSettled([...writing]);
    },
  };
}
