/**
 * The audit trail: one JSON line per write, delete and key change, saying who (key id, never the key),
 * for which tenant, through which route, on which items, in which request. {@link AuditLog} is the port;
 * {@link createFileAuditLog} appends to a file under the data dir, readable by its owner only; with
 * `LOUPE_DATABASE_URL` the trail is the database's (`pg-audit-log.ts`).
 */
import { mkdir, open } from "node:fs/promises";
import path from "node:path";

/** What was done. */
export type AuditAction =
  | "ingest"
  | "delete"
  | "job.resume"
  | "key.create"
  | "key.revoke"
  | "proposal.approve"
  | "proposal.reject";

/** One audited action. */
export interface AuditEntry {
  /** When it was done (ISO 8601); set by the log when absent. */
  time?: string;
  action: AuditAction;
  /** Id of the API key that did it; `null` when authentication is off or the CLI acted locally. */
  keyId: string | null;
  tenant: string;
  /** `METHOD /path` of the route, or `cli <command>` for a local command. */
  route: string;
  /** Request id, when it came over HTTP. */
  requestId: string | null;
  /** Ids of the items (or keys) written, deleted or changed. */
  itemIds: readonly string[];
  /** Anything else worth keeping (counts, a job id); never secrets. */
  detail?: Record<string, unknown>;
}

/** Where audited actions go. */
export interface AuditLog {
  record(entry: AuditEntry): Promise<void>;
  close(): Promise<void>;
}

/**
 * Appends each entry as one JSON line to `file` (created with mode 0600). Lines are written whole, one
 * `write` each in append mode, so concurrent writers (a server and a CLI command) do not interleave them.
 */
export function createFileAuditLog({ file }: { file: string }): AuditLog {
  let handle: ReturnType<typeof open> | undefined;
  const opened = () => {
    handle ??= mkdir(path.dirname(file), { recursive: true, mode: 0o700 }).then(() => open(file, "a", 0o600));
    return handle;
  };
  return {
    async record(entry) {
      const line = `${JSON.stringify({ time: new Date().toISOString(), ...entry })}\n`;
      await (await opened()).write(line);
    },
    async close() {
      if (handle !== undefined) await (await handle).close();
      handle = undefined;
    },
  };
}
