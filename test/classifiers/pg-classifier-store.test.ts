/**
 * The classifier store contract, run against both adapters: the file store on a temporary directory and
 * the PostgreSQL store on a database of this file's own (migrated with `migrate`). Round trips, tenants
 * kept apart, names listed in the same order, replace and delete, two stores on one backing store (two
 * replicas) seeing each other's writes, a new store (a restart) finding everything, and concurrent saves
 * of one name leaving one whole classifier. Then what only the database store does.
 */
import { expect, it } from "vitest";
import { encodeVector, type StoredClassifier } from "../../src/classifiers/classifier.ts";
import { type ClassifierStore, createFileClassifierStore } from "../../src/classifiers/classifier-store.ts";
import { createPgClassifierStore } from "../../src/classifiers/pg-classifier-store.ts";
import { ConflictError, ValidationError } from "../../src/errors.ts";
import { type ContractAdapter, describeContract, onDatabase, onDirectory } from "../db/contract-adapters.ts";

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
interface Adapter extends ContractAdapter {
  open(): ClassifierStore;
}

const fileAdapter: Adapter = onDirectory("loupe-classifiers-", (directory) => ({
  open: () => createFileClassifierStore({ dir: directory.path }),
}));

const pgAdapter = onDatabase<Adapter>({ empty: "truncate loupe_classifiers" }, (database) => ({
  // Each store gets a pool of its own, as two processes would.
  open: () => createPgClassifierStore({ pool: database.ownPool() }),
}));

describeContract("the classifier store contract: $name adapter", [fileAdapter, pgAdapter], (adapter) => {
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
  it("creates at most maxPerTenant classifiers per tenant when two replicas create at once", async () => {
    const replicas = [adapter.open(), adapter.open()];
    await replicas[0]?.put(classifier("other", "theirs"));
    await replicas[0]?.put(classifier("acme", "first"), { maxPerTenant: 5 });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 16 }, (_value, index) =>
        (replicas[index % 2] as ClassifierStore).put(classifier("acme", `c${index}`), { maxPerTenant: 5 }),
      ),
    );
    expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(4);
    const refused = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason] : []));
    expect(refused).toHaveLength(12);
    for (const error of refused) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).message).toBe(
        "The tenant has 5 classifiers, the most allowed (5); delete one first.",
      );
    }
    expect(await adapter.open().list({ tenant: "acme" })).toHaveLength(5);

    // At the cap: replacing one is no creation; after a delete, one more fits; other tenants count apart.
    await replicas[1]?.put(classifier("acme", "first", "replaced"), { maxPerTenant: 5 });
    expect((await replicas[0]?.get({ tenant: "acme", name: "first" }))?.labels[0]?.label).toBe("replaced");
    await expect(replicas[0]?.put(classifier("acme", "late"), { maxPerTenant: 5 })).rejects.toThrow(
      /the most allowed \(5\)/,
    );
    expect(await replicas[1]?.delete({ tenant: "acme", name: "first" })).toBe(true);
    await replicas[0]?.put(classifier("acme", "late"), { maxPerTenant: 5 });
    await replicas[1]?.put(classifier("other", "second"), { maxPerTenant: 2 });
    expect(await adapter.open().list({ tenant: "acme" })).toHaveLength(5);
  });

  it("creates a name once when replicas create it at once (ifAbsent): the others are told it exists", async () => {
    const replicas = [adapter.open(), adapter.open()];
    const versions = Array.from({ length: 8 }, (_value, index) =>
      classifier("acme", "dogs", `label-${index}`),
    );
    const outcomes = await Promise.allSettled(
      versions.map((version, index) =>
        (replicas[index % 2] as ClassifierStore).put(version, { maxPerTenant: 5, ifAbsent: true }),
      ),
    );
    const created = outcomes.flatMap((outcome, index) =>
      outcome.status === "fulfilled" ? [versions[index]] : [],
    );
    expect(created).toHaveLength(1);
    for (const outcome of outcomes) {
      if (outcome.status === "fulfilled") continue;
      expect(outcome.reason).toBeInstanceOf(ConflictError);
      expect((outcome.reason as ConflictError).message).toContain('A classifier named "dogs" exists already');
    }
    // The one created is the one stored, whole.
    expect(await adapter.open().get({ tenant: "acme", name: "dogs" })).toEqual(created[0]);
  });
});

describeContract("the PostgreSQL classifier store", [pgAdapter], (adapter) => {
  it("keeps typed columns beside the document, and refuses a tenant outside the pattern with a ValidationError", async () => {
    const store = adapter.open();
    await store.put(classifier("acme", "cats"));
    const rows = await adapter.database.pool.query<{
      tenant: string;
      name: string;
      model_id: string;
      updated_at: Date;
    }>("select tenant, name, model_id, updated_at from loupe_classifiers");
    expect(rows.rows).toEqual([
      {
        tenant: "acme",
        name: "cats",
        model_id: "pack@1",
        updated_at: new Date("2026-01-02T00:00:00.000Z"),
      },
    ]);
    const error = await store.put(classifier("no/slash", "cats")).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(/Saving classifier cats was refused by the database/);
  });
});
