/**
 * The durable records shared through PostgreSQL: `LOUPE_DATABASE_URL` puts the services' audit trail,
 * feedback and proposals, classifiers and users' events in the database, over the key store's one pool
 * (ended by `close()`), and writes none of them under the data dir; leaving it unset keeps the files.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgAuditLog } from "../../src/audit/pg-audit-log.ts";
import { encodeVector, type StoredClassifier } from "../../src/classifiers/classifier.ts";
import { createPgClassifierStore } from "../../src/classifiers/pg-classifier-store.ts";
import { listProposalsCommand, rejectProposalCommand } from "../../src/cli/commands/feedback.ts";
import { createKeyCommand } from "../../src/cli/commands/keys.ts";
import { createDatabasePool, DatabaseError, migrate } from "../../src/db/index.ts";
import { createPgFeedbackStore } from "../../src/feedback/pg-feedback-store.ts";
import { createPgEventStore } from "../../src/recommend/pg-event-store.ts";
import type { OpenLoupeServices } from "../../src/services.ts";
import { openTestServices } from "../helpers/app.ts";
import { createTestDatabase, type TestDatabase } from "./test-database.ts";

let database: TestDatabase;
let pool: pg.Pool;
let scratch: string;

beforeAll(async () => {
  database = await createTestDatabase();
  pool = createDatabasePool({ url: database.url });
  await migrate({ pool });
  scratch = await mkdtemp(path.join(os.tmpdir(), "loupe-shared-stores-"));
});

afterAll(async () => {
  await pool?.end();
  await database?.drop();
  await rm(scratch, { recursive: true, force: true });
});

/** Services as `loupe serve` builds them, without a vector store, a model pack or OCR (none is needed). */
function openServices(env: Record<string, string>) {
  return openTestServices({
    env: { LOUPE_MODEL_PACK: path.join(scratch, "no-pack"), LOUPE_OCR: "off", LOUPE_METRICS: "off", ...env },
  });
}

const classifier: StoredClassifier = {
  version: 1,
  name: "cats",
  tenant: "acme",
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:00.000Z",
  modelId: "pack@1",
  dimension: 2,
  labels: [
    { label: "cat", examples: [{ mediaRef: "blob:aa", vector: encodeVector(Float32Array.from([1, 0])) }] },
  ],
  kinds: ["image"],
  applyOnIngest: false,
  fitted: {
    model: { method: "nearest-mean", weights: [], bias: [0], temperature: 1 },
    looAccuracy: 1,
    validation: "leave-one-out",
    scores: [],
    threshold: 0.5,
  },
};

/** Writes one record of each kind through the services' stores. */
async function writeEach(services: OpenLoupeServices): Promise<void> {
  await services.audit.record({
    action: "ingest",
    keyId: null,
    tenant: "acme",
    route: "POST /v1/images",
    requestId: "req_1",
    itemIds: ["img_1"],
  });
  await services.feedbackStore.record({
    id: `fb_${"1".repeat(32)}`,
    time: "2026-01-01T00:00:00.000Z",
    tenant: "acme",
    keyId: null,
    requestId: null,
    rating: "up",
    question: "q",
    answer: "a",
    citations: [],
  });
  await services.classifierStore?.put(classifier);
  await services.eventStore.append({
    tenant: "acme",
    event: { user: "ann", item: "img_1", type: "like", at: 1_700_000_000_000 },
  });
}

/** Connections of Loupe pools to the test database other than this test's own query. */
async function otherConnections(): Promise<number> {
  const held = await pool.query<{ count: string }>(
    "select count(*) as count from pg_stat_activity where datname = $1 and application_name = 'loupe' and pid <> pg_backend_pid()",
    [database.name],
  );
  return Number(held.rows[0]?.count);
}

async function rowCounts(): Promise<Record<string, number>> {
  const result = await pool.query<Record<string, string>>(
    `select (select count(*) from loupe_audit_log) as audit, (select count(*) from loupe_feedback) as feedback,
            (select count(*) from loupe_classifiers) as classifiers, (select count(*) from loupe_user_events) as events`,
  );
  return Object.fromEntries(
    Object.entries(result.rows[0] ?? {}).map(([name, count]) => [name, Number(count)]),
  );
}

describe("the services' durable records", () => {
  it("are the database's when LOUPE_DATABASE_URL is set, over one pool that close() ends", async () => {
    const dataDir = path.join(scratch, "shared");
    const services = await openServices({ LOUPE_DATABASE_URL: database.url, LOUPE_DATA_DIR: dataDir });
    try {
      // /readyz checks the database: it answers now, and stops answering once the pool has ended.
      const [postgres] = services.dependencies;
      expect(postgres?.name).toBe("PostgreSQL");
      expect(postgres?.required).toBe(true);
      expect(await postgres?.check()).toEqual({ ok: true });
      await writeEach(services);
      expect(await rowCounts()).toEqual({ audit: 1, feedback: 1, classifiers: 1, events: 1 });
      // One pool for the key store and the four others: its connections, never more than its limit of 10.
      expect(await otherConnections()).toBeLessThanOrEqual(10);
    } finally {
      await services.close();
    }
    for (const name of ["audit.log", "feedback", "classifiers", "events"]) {
      expect(existsSync(path.join(dataDir, name))).toBe(false);
    }
    await expect(services.dependencies[0]?.check()).rejects.toThrow();
    // A closed connection leaves pg_stat_activity a moment after the client ends it.
    const deadline = Date.now() + 5_000;
    while ((await otherConnections()) > 0 && Date.now() < deadline) await sleep(50);
    expect(await otherConnections()).toBe(0);

    // A restart finds them.
    const restarted = await openServices({ LOUPE_DATABASE_URL: database.url, LOUPE_DATA_DIR: dataDir });
    try {
      expect(await restarted.classifierStore?.get({ tenant: "acme", name: "cats" })).toEqual(classifier);
      expect(await restarted.eventStore.list({ tenant: "acme", user: "ann" })).toHaveLength(1);
    } finally {
      await restarted.close();
    }
  });

  it("are files under the data dir when it is not set", async () => {
    const dataDir = path.join(scratch, "embedded");
    const before = await rowCounts();
    const services = await openServices({ LOUPE_DATA_DIR: dataDir });
    try {
      await writeEach(services);
    } finally {
      await services.close();
    }
    for (const name of ["audit.log", "feedback", "classifiers", "events"]) {
      expect(existsSync(path.join(dataDir, name))).toBe(true);
    }
    expect(services.dependencies).toEqual([]);
    expect(await rowCounts()).toEqual(before);
  });
});

describe("the operator's commands with LOUPE_DATABASE_URL", () => {
  it("`loupe keys` and `loupe feedback` read and write the database's proposals and audit trail, not files", async () => {
    const dataDir = path.join(scratch, "cli");
    const env = {
      LOUPE_DATABASE_URL: database.url,
      LOUPE_DATA_DIR: dataDir,
      LOUPE_KEY_SECRET: "k".repeat(40),
    };
    await pool.query("truncate loupe_audit_log, loupe_feedback_proposals");
    const id = `fbp_${"2".repeat(32)}`;
    await createPgFeedbackStore({ pool }).saveProposal({
      id,
      tenant: "acme",
      status: "pending",
      createdAt: "2026-01-01T00:00:00.000Z",
      feedbackId: `fb_${"2".repeat(32)}`,
      proposedBy: null,
      rating: "down",
      corrected: true,
      question: "q",
      answer: "a",
      image: { sha256: "b".repeat(64), contentType: "image/png", size: 1 },
    });
    const write = () => undefined;

    const listed = await listProposalsCommand({ options: { tenant: "acme" }, env, write });
    expect(listed.map((proposal) => proposal.id)).toEqual([id]);
    expect((await rejectProposalCommand({ id, options: { tenant: "acme" }, env, write })).status).toBe(
      "rejected",
    );
    await createKeyCommand({ options: { tenant: "acme", scopes: "read" }, env, write });

    const stored = await pool.query<{ status: string }>("select status from loupe_feedback_proposals");
    expect(stored.rows).toEqual([{ status: "rejected" }]);
    const audited = await pool.query<{ action: string; route: string }>(
      "select action, route from loupe_audit_log order by seq",
    );
    expect(audited.rows).toEqual([
      { action: "proposal.reject", route: "cli feedback reject" },
      { action: "key.create", route: expect.stringMatching(/^cli keys/) },
    ]);
    expect(existsSync(path.join(dataDir, "audit.log"))).toBe(false);
    expect(existsSync(path.join(dataDir, "feedback"))).toBe(false);
  });
});

describe("the PostgreSQL adapters' failures", () => {
  /** One call of each adapter over `target`, each expected to fail with `code`. */
  async function expectEachFails(target: pg.Pool, code: string): Promise<void> {
    const calls: Array<() => Promise<unknown>> = [
      () =>
        createPgAuditLog({ pool: target }).record({
          action: "ingest",
          keyId: null,
          tenant: "acme",
          route: "POST /v1/images",
          requestId: null,
          itemIds: [],
        }),
      () => createPgFeedbackStore({ pool: target }).listProposals({ tenant: "acme" }),
      () => createPgClassifierStore({ pool: target }).put(classifier),
      () => createPgEventStore({ pool: target }).list({ tenant: "acme", user: "ann" }),
    ];
    for (const call of calls) {
      const error = await call().then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(error).toBeInstanceOf(DatabaseError);
      expect((error as DatabaseError).code).toBe(code);
    }
  }

  it("report a database that cannot be reached as database_unavailable, naming it without credentials", async () => {
    const down = createDatabasePool({
      url: "postgres://loupe:hunter2@127.0.0.1:1/loupe",
      connectTimeoutMs: 1_000,
    });
    try {
      await expectEachFails(down, "database_unavailable");
      const error = await createPgEventStore({ pool: down })
        .deleteUser({ tenant: "acme", user: "ann" })
        .catch((failure: unknown) => failure as Error);
      expect((error as Error).message).toContain("127.0.0.1:1/loupe");
      expect((error as Error).message).not.toContain("hunter2");
    } finally {
      await down.end();
    }
  });

  it("report a database without their tables as migrations_pending, naming `loupe migrate`", async () => {
    const bare = await createTestDatabase();
    const barePool = createDatabasePool({ url: bare.url });
    try {
      await expectEachFails(barePool, "migrations_pending");
    } finally {
      await barePool.end();
      await bare.drop();
    }
  });
});
