/**
 * The audit log contract, run against both adapters: the file log on a temporary directory and the
 * PostgreSQL log on a database of this file's own (migrated with `migrate`). Entries are kept whole, in
 * the order recorded, with each tenant's own; two logs on one backing store (two replicas, or a server
 * and `loupe keys`) write one trail that loses nothing under concurrency, and a new log (a restart)
 * appends to it. Then what only the database log does.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { type AuditEntry, type AuditLog, createFileAuditLog } from "../../src/audit/audit-log.ts";
import { createPgAuditLog } from "../../src/audit/pg-audit-log.ts";
import { createDatabasePool, migrate } from "../../src/db/index.ts";
import { ValidationError } from "../../src/errors.ts";
import { createTestDatabase, type TestDatabase } from "../db/test-database.ts";

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
interface Adapter {
  name: string;
  reset(): Promise<void>;
  /** A log on the current backing store (another call: another replica, or the same after a restart). */
  open(): AuditLog;
  /** Every entry, in the order recorded. */
  entries(): Promise<AuditEntry[]>;
  cleanup(): Promise<void>;
}

let dir: string;
let database: TestDatabase | undefined;
let pool: pg.Pool | undefined;
const ownPools: pg.Pool[] = [];

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

const fileAdapter: Adapter = {
  name: "file",
  async reset() {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-audit-"));
  },
  open: () => createFileAuditLog({ file: path.join(dir, "audit.log") }),
  async entries() {
    const text = await readFile(path.join(dir, "audit.log"), "utf8");
    return text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as AuditEntry);
  },
  async cleanup() {
    await rm(dir, { recursive: true, force: true });
  },
};

const pgAdapter: Adapter = {
  name: "postgres",
  async reset() {
    database ??= await createTestDatabase();
    if (pool === undefined) {
      pool = createDatabasePool({ url: database.url });
      await migrate({ pool });
    }
    await pool.query("truncate loupe_audit_log");
  },
  // Each log gets a pool of its own, as two processes would.
  open() {
    const own = createDatabasePool({ url: (database as TestDatabase).url, maxConnections: 4 });
    ownPools.push(own);
    return createPgAuditLog({ pool: own });
  },
  async entries() {
    const rows = await (pool as pg.Pool).query<AuditRow>(
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
  async cleanup() {
    for (const own of ownPools.splice(0)) await own.end();
  },
};

afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

describe.each([fileAdapter, pgAdapter])("the audit log contract: $name adapter", (adapter) => {
  const logs: AuditLog[] = [];
  const openLog = () => {
    const log = adapter.open();
    logs.push(log);
    return log;
  };
  beforeEach(() => adapter.reset());
  afterEach(async () => {
    for (const log of logs.splice(0)) await log.close();
    await adapter.cleanup();
  });

  it("keeps every entry whole, in the order recorded, each with its tenant", async () => {
    const log = openLog();
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
    const log = openLog();
    const before = Date.now();
    const { time: _time, ...untimed } = entry("acme", 1);
    await log.record(untimed);
    await log.close();
    const [stored] = await adapter.entries();
    expect(Date.parse(stored?.time as string)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(stored?.time as string)).toBeLessThanOrEqual(Date.now() + 1);
  });

  it("writes one trail from two logs (two replicas) under concurrency, and a restarted log appends to it", async () => {
    const first = openLog();
    const second = openLog();
    await Promise.all(
      Array.from({ length: 30 }, (_value, index) =>
        (index % 2 === 0 ? first : second).record(entry("acme", index)),
      ),
    );
    await first.close();
    await second.close();
    await openLog().record(entry("acme", 99));
    for (const log of logs) await log.close();
    const stored = await adapter.entries();
    expect(stored).toHaveLength(31);
    expect(stored.at(-1)?.requestId).toBe("req_99");
    expect(new Set(stored.map((item) => item.requestId)).size).toBe(31);
  });
});

describe("the PostgreSQL audit log", () => {
  beforeEach(() => pgAdapter.reset());
  afterEach(() => pgAdapter.cleanup());

  it("refuses a malformed time or tenant with a ValidationError naming it, and writes nothing", async () => {
    const log = pgAdapter.open();
    await expect(log.record(entry("acme", 1, { time: "yesterday" }))).rejects.toThrow(
      /"yesterday" is not an ISO 8601 time/,
    );
    const error = await log.record(entry("no/slash", 1)).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toContain("tenant no/slash");
    expect(await pgAdapter.entries()).toEqual([]);
  });

  it("waits for writes under way when closed", async () => {
    const log = pgAdapter.open();
    const writes = Array.from({ length: 10 }, (_value, index) => log.record(entry("acme", index)));
    await log.close();
    expect(await pgAdapter.entries()).toHaveLength(10);
    await Promise.all(writes);
  });
});
