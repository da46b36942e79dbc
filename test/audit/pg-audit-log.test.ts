/**
 * The audit log contract, run against both adapters: the file log on a temporary directory and the
 * PostgreSQL log on a database of this file's own (migrated with `migrate`). Entries are kept whole, in
 * the order recorded, with each tenant's own; two logs on one backing store (two replicas, or a server
 * and `loupe keys`) write one trail that loses nothing under concurrency, and a new log (a restart)
 * appends to it. Then what only the database log does.
 */
import path from "node:path";
import { expect, it } from "vitest";
import { type AuditEntry, type AuditLog, createFileAuditLog } from "../../src/audit/audit-log.ts";
import { createPgAuditLog } from "../../src/audit/pg-audit-log.ts";
import { ValidationError } from "../../src/errors.ts";
import { type ContractAdapter, describeContract, onDatabase, onDirectory } from "../db/contract-adapters.ts";

function entry(tenant: string, index: number, extra: Partial<AuditEntry> = {}): AuditEntry {
  return {
    time: `2026-03-01T10:00:${String(index % 60).padStart(2, "0")}.000Z`,
    action: "ingest",
    keyId: "key_0123456789abcdef",
    tenant,
    route: "POST /v1/images",
    requestId: `req_${index}`,
    itemIds: [`img_${index}`, `img_${index + 1}`],
    ...extra,
  };
}

/** One adapter under the contract. */
interface Adapter extends ContractAdapter {
  open(): AuditLog;
  /** Every entry, in the order recorded. */
  entries(): Promise<AuditEntry[]>;
}

interface AuditRow {
  time: Date;
  action: AuditEntry["action"];
  key_id: string | null;
  tenant: string;
  route: string;
  request_id: string | null;
  item_ids: string[];
  detail: Record<string, unknown> | null;
}

const fileAdapter: Adapter = onDirectory("loupe-audit-", (directory) => ({
  open: () => createFileAuditLog({ file: path.join(directory.path, "audit.log") }),
  entries: () => directory.readJsonLines<AuditEntry>("audit.log"),
}));

const pgAdapter = onDatabase<Adapter>({ empty: "truncate loupe_audit_log" }, (database) => ({
  // Each log gets a pool of its own, as two processes would.
  open: () => createPgAuditLog({ pool: database.ownPool() }),
  async entries() {
    const rows = await database.pool.query<AuditRow>(
      "select time, action, key_id, tenant, route, request_id, item_ids, detail from loupe_audit_log order by seq",
    );
    return rows.rows.map((row) => ({
      time: row.time.toISOString(),
      action: row.action,
      keyId: row.key_id,
      tenant: row.tenant,
      route: row.route,
      requestId: row.request_id,
      itemIds: row.item_ids,
      ...(row.detail === null ? {} : { detail: row.detail }),
    }));
  },
}));

describeContract("the audit log contract: $name adapter", [fileAdapter, pgAdapter], (adapter) => {
  it("keeps every entry whole, in the order recorded, each with its tenant", async () => {
    const log = adapter.open();
    const recorded = [
      entry("acme", 1),
      entry("other", 2, { action: "key.revoke", keyId: null, requestId: null, route: "cli keys revoke" }),
      entry("acme", 3, {
        action: "proposal.approve",
        detail: { tripleId: "tri_1", count: 2, nested: { ok: true } },
      }),
    ];
    for (const item of recorded) await log.record(item);
    await log.close();
    const stored = await adapter.entries();
    expect(stored).toEqual(recorded);
    expect(stored.filter((item) => item.tenant === "acme").map((item) => item.requestId)).toEqual([
      "req_1",
      "req_3",
    ]);
  });

  it("stamps an entry without a time with the time it was recorded", async () => {
    const log = adapter.open();
    const before = Date.now();
    const { time: _time, ...untimed } = entry("acme", 1);
    await log.record(untimed);
    await log.close();
    const [stored] = await adapter.entries();
    expect(Date.parse(stored?.time as string)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(stored?.time as string)).toBeLessThanOrEqual(Date.now() + 1);
  });

  it("writes one trail from two logs (two replicas) under concurrency, and a restarted log appends to it", async () => {
    const first = adapter.open();
    const second = adapter.open();
    await Promise.all(
      Array.from({ length: 30 }, (_value, index) =>
        (index % 2 === 0 ? first : second).record(entry("acme", index)),
      ),
    );
    await first.close();
    await second.close();
    const restarted = adapter.open();
    await restarted.record(entry("acme", 99));
    await restarted.close();
    const stored = await adapter.entries();
    expect(stored).toHaveLength(31);
    expect(stored.at(-1)?.requestId).toBe("req_99");
    expect(new Set(stored.map((item) => item.requestId)).size).toBe(31);
  });
});

describeContract("the PostgreSQL audit log", [pgAdapter], (adapter) => {
  it("refuses a malformed time or tenant with a ValidationError naming it, and writes nothing", async () => {
    const log = adapter.open();
    await expect(log.record(entry("acme", 1, { time: "yesterday" }))).rejects.toThrow(
      /"yesterday" is not an ISO 8601 time/,
    );
    const error = await log.record(entry("no/slash", 1)).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toContain("tenant no/slash");
    expect(await adapter.entries()).toEqual([]);
  });

  it("waits for writes under way when closed", async () => {
    const log = adapter.open();
    const writes = Array.from({ length: 10 }, (_value, index) => log.record(entry("acme", index)));
    await log.close();
    expect(await adapter.entries()).toHaveLength(10);
    await Promise.all(writes);
  });
});
