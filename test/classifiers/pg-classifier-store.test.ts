/**
 * The classifier store contract, run against both adapters: the file store on a temporary directory and
 * the PostgreSQL store on a database of this file's own (migrated with `migrate`). Round trips, tenants
 * kept apart, names listed in the same order, replace and delete, two stores on one backing store (two
 * replicas) seeing each other's writes, a new store (a restart) finding everything, and concurrent saves
 * of one name leaving one whole classifier. Then what only the database store does.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeVector, type StoredClassifier } from "../../src/classifiers/classifier.ts";
import { type ClassifierStore, createFileClassifierStore } from "../../src/classifiers/classifier-store.ts";
import { createPgClassifierStore } from "../../src/classifiers/pg-classifier-store.ts";
import { createDatabasePool, migrate } from "../../src/db/index.ts";
import { ValidationError } from "../../src/errors.ts";
import { createTestDatabase, type TestDatabase } from "../db/test-database.ts";

function classifier(tenant: string, name: string, label = "a"): StoredClassifier {
  return {
    version: 1,
    name,
    tenant,
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-02T00:00:00.000Z",
    modelId: "pack@1",
    dimension: 2,
    labels: [
      {
        label,
        examples: [{ itemId: "img_1", mediaRef: "blob:aa", vector: encodeVector(Float32Array.from([1, 0])) }],
      },
      { label: "b", examples: [{ mediaRef: "blob:bb", vector: encodeVector(Float32Array.from([0, 1])) }] },
    ],
    kinds: ["image"],
    applyOnIngest: true,
    threshold: 0.125,
    fitted: {
      model: {
        method: "nearest-mean",
        weights: ["AAAAAA=="],
        bias: [0.1, -0.30000000000000004],
        temperature: 1,
      },
      looAccuracy: 0.8333333333333334,
      validation: "leave-one-out",
      scores: [],
      threshold: 0.75,
    },
  };
}

/** One adapter under the contract. */
interface Adapter {
  name: string;
  /** Makes a fresh, empty backing store. */
  reset(): Promise<void>;
  /** A store on the current backing store (another call: another replica, or the same after a restart). */
  open(): ClassifierStore;
  cleanup(): Promise<void>;
}

let dir: string;
let database: TestDatabase | undefined;
let pool: pg.Pool | undefined;

const fileAdapter: Adapter = {
  name: "file",
  async reset() {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-classifiers-"));
  },
  open: () => createFileClassifierStore({ dir }),
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
    await pool.query("truncate loupe_classifiers");
  },
  // Each store gets a pool of its own, as two processes would.
  open() {
    const own = createDatabasePool({ url: (database as TestDatabase).url, maxConnections: 4 });
    ownPools.push(own);
    return createPgClassifierStore({ pool: own });
  },
  async cleanup() {
    for (const own of ownPools.splice(0)) await own.end();
  },
};
const ownPools: pg.Pool[] = [];

afterAll(async () => {
  await pool?.end();
  await database?.drop();
});

describe.each([fileAdapter, pgAdapter])("the classifier store contract: $name adapter", (adapter) => {
  beforeEach(() => adapter.reset());
  afterEach(() => adapter.cleanup());

  it("gives back what was saved, whole, and nothing for a name never saved", async () => {
    const store = adapter.open();
    await store.put(classifier("acme", "cats"));
    expect(await store.get({ tenant: "acme", name: "cats" })).toEqual(classifier("acme", "cats"));
    expect(await store.get({ tenant: "acme", name: "dogs" })).toBeUndefined();
    expect(await store.get({ tenant: "acme", name: "../cats" })).toBeUndefined();
  });

  it("keeps tenants apart", async () => {
    const store = adapter.open();
    await store.put(classifier("acme", "cats"));
    await store.put(classifier("other", "cats", "other-label"));
    expect(await store.get({ tenant: "other", name: "cats" })).toEqual(
      classifier("other", "cats", "other-label"),
    );
    expect((await store.list({ tenant: "acme" })).map((found) => found.tenant)).toEqual(["acme"]);
    expect(await store.list({ tenant: "nobody" })).toEqual([]);
    expect(await store.delete({ tenant: "other", name: "cats" })).toBe(true);
    expect(await store.get({ tenant: "acme", name: "cats" })).toEqual(classifier("acme", "cats"));
  });

  it("lists by name, bytewise, as both adapters order them", async () => {
    const store = adapter.open();
    const names = ["b", "a_b", "B", "a0", "a", "Zeta", "ab"];
    for (const name of names) await store.put(classifier("acme", name));
    expect((await store.list({ tenant: "acme" })).map((found) => found.name)).toEqual(
      [...names].sort((left, right) => (left < right ? -1 : 1)),
    );
  });

  it("replaces a classifier whole, and deletes it once", async () => {
    const store = adapter.open();
    await store.put(classifier("acme", "cats"));
    const replaced = { ...classifier("acme", "cats", "tabby"), applyOnIngest: false, threshold: undefined };
    delete replaced.threshold;
    await store.put(replaced);
    expect(await store.get({ tenant: "acme", name: "cats" })).toEqual(replaced);
    expect(await store.list({ tenant: "acme" })).toHaveLength(1);
    expect(await store.delete({ tenant: "acme", name: "cats" })).toBe(true);
    expect(await store.delete({ tenant: "acme", name: "cats" })).toBe(false);
    expect(await store.delete({ tenant: "acme", name: "not a name" })).toBe(false);
    expect(await store.get({ tenant: "acme", name: "cats" })).toBeUndefined();
  });

  it("refuses a name outside the pattern", async () => {
    const store = adapter.open();
    await expect(store.put(classifier("acme", "../escape"))).rejects.toThrow(/Invalid classifier name/);
  });

  it("shows one replica's writes to another, and everything to a store opened after (a restart)", async () => {
    const first = adapter.open();
    const second = adapter.open();
    await first.put(classifier("acme", "cats"));
    expect(await second.get({ tenant: "acme", name: "cats" })).toEqual(classifier("acme", "cats"));
    await second.put(classifier("acme", "dogs"));
    await second.delete({ tenant: "acme", name: "cats" });
    expect((await first.list({ tenant: "acme" })).map((found) => found.name)).toEqual(["dogs"]);
    const restarted = adapter.open();
    expect(await restarted.list({ tenant: "acme" })).toEqual([classifier("acme", "dogs")]);
  });

  it("leaves one whole classifier when replicas save one name at once (the last write wins)", async () => {
    const replicas = [adapter.open(), adapter.open(), adapter.open()];
    const versions = Array.from({ length: 12 }, (_value, index) =>
      classifier("acme", "cats", `label-${index}`),
    );
    await Promise.all(
      versions.map((version, index) => (replicas[index % 3] as ClassifierStore).put(version)),
    );
    const found = await adapter.open().get({ tenant: "acme", name: "cats" });
    expect(versions).toContainEqual(found);
  });
});

describe("the PostgreSQL classifier store", () => {
  beforeEach(() => pgAdapter.reset());
  afterEach(() => pgAdapter.cleanup());

  it("keeps typed columns beside the document, and refuses a tenant outside the pattern with a ValidationError", async () => {
    const store = pgAdapter.open();
    await store.put(classifier("acme", "cats"));
    const rows = await (pool as pg.Pool).query<{
      tenant: string;
      name: string;
      model_id: string;
      updated_at: Date;
    }>("select tenant, name, model_id, updated_at from loupe_classifiers");
    expect(rows.rows).toEqual([
      { tenant: "acme", name: "cats", model_id: "pack@1", updated_at: new Date("2026-01-02T00:00:00.000Z") },
    ]);
    const error = await store.put(classifier("no/slash", "cats")).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(/Saving classifier cats was refused by the database/);
  });
});
