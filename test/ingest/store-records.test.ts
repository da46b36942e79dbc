/**
 * storeRecords' logic over a store that refuses on cue and the real filesystem blob store: a refused
 * batch is retried record by record so the bad one fails alone, a store failure comes back as `failure`,
 * and the references of every record not stored are released (their blobs removed once unused).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type AppError, StoreError, ValidationError } from "../../src/errors.ts";
import { type AddedReference, storeRecords } from "../../src/ingest/store-records.ts";
import { createFsBlobStore, type FsBlobStore } from "../../src/media/blob-store.ts";
import type { ImageRecord, UpsertRequest, VectorStore } from "../../src/store/index.ts";

const TENANT = "t";

/** An upsert that refuses any batch holding a record `refuse` picks, with `error`. */
function refusingStore(refuse: (record: ImageRecord) => boolean, error: () => Error) {
  const upserted: string[][] = [];
  const store: Pick<VectorStore, "upsert"> = {
    async upsert(request) {
      const records = (request as UpsertRequest<"image">).records;
      upserted.push(records.map((record) => record.id));
      if (records.some(refuse)) throw error();
      return { upserted: records.length };
    },
  };
  return { store, upserted };
}

describe("storeRecords", () => {
  let dir: string;
  let blobs: FsBlobStore;
  let records: ImageRecord[];
  let added: AddedReference[];
  const release = ({ ref, owner }: AddedReference) => blobs.release({ sha256: ref, owner });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-store-records-"));
    blobs = createFsBlobStore({ dir });
    records = [];
    added = [];
    for (const name of ["a", "b", "c"]) {
      const id = `img_${name.repeat(32)}`;
      const owner = `${TENANT}/${id}`;
      const { sha256 } = await blobs.put({
        bytes: Buffer.from(`bytes of ${name}`),
        contentType: "image/jpeg",
        owner,
      });
      added.push({ recordId: id, ref: sha256, owner });
      records.push({
        id,
        modelId: "m",
        mediaRef: `blob:${sha256}`,
        source: "test",
        text: "",
        metadata: {},
        vector: new Float32Array([1, 0]),
      });
    }
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores a batch in one upsert and releases nothing", async () => {
    const { store, upserted } = refusingStore(
      () => false,
      () => new Error("unused"),
    );
    const outcome = await storeRecords({ store, kind: "image", tenant: TENANT, records, added, release });
    expect(outcome).toEqual({ stored: records.map((record) => record.id), rejected: new Map() });
    expect(upserted).toHaveLength(1);
    expect((await blobs.inventory()).blobs).toHaveLength(3);
  });

  it("retries a refused batch one by one: the bad record fails alone and its blob goes", async () => {
    const bad = records[1] as ImageRecord;
    const { store } = refusingStore(
      (record) => record.id === bad.id,
      () =>
        new ValidationError("record 1: metadata.title holds a lone UTF-16 surrogate", {
          context: { field: "metadata.title" },
        }),
    );
    const outcome = await storeRecords({ store, kind: "image", tenant: TENANT, records, added, release });
    expect(outcome.failure).toBeUndefined();
    expect(outcome.stored).toEqual([records[0]?.id, records[2]?.id]);
    expect(outcome.rejected.get(bad.id)).toBeInstanceOf(ValidationError);
    expect(await blobs.has(added[1]?.ref ?? "")).toBe(false);
    const inventory = await blobs.inventory();
    expect(inventory.blobs).toHaveLength(2);
    expect(inventory.unreferenced).toEqual([]);
  });

  it("turns a store refusal of one record into an item error of its own", async () => {
    const bad = records[0] as ImageRecord;
    const { store } = refusingStore(
      (record) => record.id === bad.id,
      () =>
        new StoreError("Milvus refused upsert into t_images: bad value.", {
          code: "store_rejected",
          status: 500,
        }),
    );
    const outcome = await storeRecords({ store, kind: "image", tenant: TENANT, records, added, release });
    const rejection = outcome.rejected.get(bad.id) as AppError;
    expect(rejection).toMatchObject({ code: "item_rejected", status: 422 });
    expect(rejection.message).toContain("bad value");
  });

  it("reports a store failure as such and releases every reference", async () => {
    const { store, upserted } = refusingStore(
      () => true,
      () => new StoreError("Milvus is unreachable (upsert into t_images).", { code: "store_unavailable" }),
    );
    const outcome = await storeRecords({ store, kind: "image", tenant: TENANT, records, added, release });
    expect(outcome.stored).toEqual([]);
    expect(outcome.rejected.size).toBe(0);
    expect((outcome.failure as StoreError).code).toBe("store_unavailable");
    expect(upserted).toHaveLength(1);
    expect((await blobs.inventory()).blobs).toEqual([]);
  });

  it("treats every record refused alike as the store failing, not as bad items", async () => {
    const { store } = refusingStore(
      () => true,
      () =>
        new StoreError("Milvus refused upsert: collection not loaded.", {
          code: "store_rejected",
          status: 500,
        }),
    );
    const outcome = await storeRecords({ store, kind: "image", tenant: TENANT, records, added, release });
    expect(outcome.rejected.size).toBe(0);
    expect((outcome.failure as StoreError).code).toBe("store_rejected");
    expect((await blobs.inventory()).blobs).toEqual([]);
  });

  it("keeps a blob another owner still uses", async () => {
    const shared = await blobs.put({
      bytes: Buffer.from("bytes of a"),
      contentType: "image/jpeg",
      owner: "other/img_x",
    });
    const { store } = refusingStore(
      () => true,
      () => new StoreError("Milvus is unreachable.", { code: "store_unavailable" }),
    );
    await storeRecords({ store, kind: "image", tenant: TENANT, records, added, release });
    expect(await blobs.references(shared.sha256)).toEqual(["other/img_x"]);
  });
});
