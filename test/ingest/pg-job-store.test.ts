/**
 * The job records of listed jobs (OCR backfills, pack switches) in a real PostgreSQL, through two stores
 * on two pools as two replicas would hold them: one active job per tenant and kind (a switch: one at
 * all) whoever asks; listed items added once per key, in order, however often or concurrently listed;
 * a job that ends only once listed, with the records its listing skipped counted; a resume that lists
 * again.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabasePool } from "../../src/db/database.ts";
import { migrate } from "../../src/db/migrate.ts";
import { type ListedJobItem, PgJobStore } from "../../src/ingest/pg-job-store.ts";
import { createTestDatabase, type TestDatabase } from "../db/test-database.ts";

let database: TestDatabase;
let pools: pg.Pool[];
let a: PgJobStore;
let b: PgJobStore;
let sequence = 0;

function newId(): string {
  sequence += 1;
  return `job_${sequence.toString(16).padStart(24, "0")}`;
}

function listed(keys: readonly string[]): ListedJobItem[] {
  return keys.map((key) => ({
    key,
    describe: { kind: "image" },
    input: { kind: "image", id: key },
    id: key,
  }));
}

beforeAll(async () => {
  database = await createTestDatabase();
  pools = [createDatabasePool({ url: database.url }), createDatabasePool({ url: database.url })];
  await migrate({ pool: pools[0] as pg.Pool });
  a = new PgJobStore({ pool: pools[0] as pg.Pool });
  b = new PgJobStore({ pool: pools[1] as pg.Pool });
});

afterAll(async () => {
  for (const pool of pools ?? []) await pool.end();
  await database?.drop();
});

describe("PgJobStore, listed jobs", () => {
  it("keeps one active OCR job per tenant and one switch at all, whichever replica is asked", async () => {
    const spec = { defaultSource: "ocr", params: {} };
    const asked = await Promise.all(
      Array.from({ length: 6 }, (_, index) =>
        (index % 2 === 0 ? a : b).createListed({ id: newId(), tenant: "acme", kind: "ocr", spec }),
      ),
    );
    expect(asked.filter((result) => result.created)).toHaveLength(1);
    expect(new Set(asked.map((result) => result.id)).size).toBe(1);
    const other = await b.createListed({ id: newId(), tenant: "globex", kind: "ocr", spec });
    expect(other.created).toBe(true);
    expect(other.id).not.toBe(asked[0]?.id);

    const switches = await Promise.all([
      a.createListed({ id: newId(), tenant: "acme", kind: "migrate", spec }),
      b.createListed({ id: newId(), tenant: "globex", kind: "migrate", spec }),
    ]);
    expect(switches.filter((result) => result.created)).toHaveLength(1);
    expect(switches[0]?.id).toBe(switches[1]?.id);

    // Once it has ended, the next request starts a new one.
    const ended = asked[0]?.id as string;
    await a.markListed({ id: ended, total: 0 });
    expect(await a.finishIfComplete(ended)).toBe(true);
    const next = await b.createListed({ id: newId(), tenant: "acme", kind: "ocr", spec });
    expect(next).toMatchObject({ created: true });
    expect(next.id).not.toBe(ended);
  });

  it("adds each listed item once, with contiguous indexes, under concurrent and repeated listings", async () => {
    const { id } = await a.createListed({
      id: newId(),
      tenant: "initech",
      kind: "ocr",
      spec: { defaultSource: "ocr" },
    });
    expect(await a.appendItems({ id, items: listed(["r1", "r2", "r2", "r3"]) })).toEqual([0, 1, 2]);
    const [first, second] = await Promise.all([
      a.appendItems({ id, items: listed(["r3", "r4", "r5", "r6"]) }),
      b.appendItems({ id, items: listed(["r5", "r6", "r7"]) }),
    ]);
    const added = [...(first ?? []), ...(second ?? [])].sort((x, y) => x - y);
    expect(added).toEqual([3, 4, 5, 6]);
    expect(await b.appendItems({ id, items: listed(["r1", "r7"]) })).toEqual([]);
    const snapshot = await b.snapshot({ id, tenant: "initech" });
    expect(snapshot?.job.items.map((item) => item.id).sort()).toEqual([
      "r1",
      "r2",
      "r3",
      "r4",
      "r5",
      "r6",
      "r7",
    ]);
    expect(snapshot?.job.items.every((item) => item.status === "pending")).toBe(true);
    expect(await a.pendingIndexes(id)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("ends a job only once it is listed and settled, counting the records its listing skipped", async () => {
    const { id } = await a.createListed({
      id: newId(),
      tenant: "umbrella",
      kind: "ocr",
      spec: { defaultSource: "ocr" },
    });
    await a.appendItems({ id, items: listed(["x1", "x2"]) });
    for (const index of [0, 1]) {
      await b.settle({ id, index, outcome: { status: "stored", id: `x${index + 1}` } });
    }
    // Every item settled, but the listing has not ended: the job goes on.
    expect(await a.settled(id)).toBe(false);
    expect(await a.finishIfComplete(id)).toBe(false);
    await b.markListed({ id, total: 5 });
    expect(await a.settled(id)).toBe(true);
    // Of workers settling the last items at once, one queues the ending (a kind with one); undone, again one.
    expect(
      (await Promise.all([a.claimEnding(id), b.claimEnding(id), a.claimEnding(id)])).filter(Boolean),
    ).toHaveLength(1);
    expect(await b.claimEnding(id, { undo: true })).toBe(true);
    expect((await Promise.all([a.claimEnding(id), b.claimEnding(id)])).filter(Boolean)).toHaveLength(1);
    expect(await a.finishIfComplete(id)).toBe(true);
    expect(await a.claimEnding(id, { undo: true })).toBe(true);
    expect(await a.claimEnding(id)).toBe(false);
    const done = await a.snapshot({ id, tenant: "umbrella" });
    expect(done?.job).toMatchObject({
      status: "done",
      counts: { total: 5, pending: 0, done: 2, skipped: 3, failed: 0 },
    });
    expect(await b.counts(id)).toEqual(done?.job.counts);

    // A listing that found nothing to do ends done, not failed.
    const empty = await b.createListed({
      id: newId(),
      tenant: "umbrella",
      kind: "ocr",
      spec: { defaultSource: "ocr" },
    });
    await b.markListed({ id: empty.id, total: 4 });
    expect(await b.finishIfComplete(empty.id)).toBe(true);
    expect((await a.snapshot({ id: empty.id, tenant: "umbrella" }))?.job).toMatchObject({
      status: "done",
      counts: { total: 4, skipped: 4, done: 0 },
      items: [],
    });
  });

  it("resumes a listed job by listing it again, its failed items pending once more", async () => {
    const { id } = await a.createListed({
      id: newId(),
      tenant: "hooli",
      kind: "ocr",
      spec: { defaultSource: "ocr" },
    });
    await a.appendItems({ id, items: listed(["h1", "h2"]) });
    await a.settle({ id, index: 0, outcome: { status: "stored", id: "h1" } });
    await a.settle({
      id,
      index: 1,
      outcome: { status: "failed", id: "h2", error: { code: "media_invalid", message: "unreadable" } },
    });
    await a.markListed({ id });
    expect(await a.finishIfComplete(id)).toBe(true);
    expect(await b.reopen({ id, relist: true })).toEqual([1]);
    const head = await b.head(id);
    expect(head).toMatchObject({ status: "queued", listed: false });
    // Not listed: settling the retried item does not end it.
    await b.settle({ id, index: 1, outcome: { status: "stored", id: "h2" } });
    expect(await b.finishIfComplete(id)).toBe(false);
    await b.markListed({ id });
    expect(await b.finishIfComplete(id)).toBe(true);
    // A job with nothing failed is resumed too when it is listed again (records added since).
    expect(await a.reopen({ id })).toBeUndefined();
    expect(await a.reopen({ id, relist: true })).toEqual([]);
  });
});
