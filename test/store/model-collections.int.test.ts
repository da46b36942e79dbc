/**
 * Collections per model against a real Milvus Lite: collections record the model they hold, those from
 * before that are given one at start-up (from their rows, or the current model when empty), another
 * model's collections stop start-up, the pointer a switch commits decides which collections open (with
 * the live aliases following it and repaired from it), and every tenant of a collection is found.
 */
import type { MilvusClient } from "@zilliz/milvus2-sdk-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectionName,
  collectionNames,
  createMilvusClient,
  createVectorStore,
  type ImageRecord,
  liveAliasName,
  MODEL_ID_PROPERTY,
  ModelCatalog,
  modelSlug,
  RECORD_KINDS,
  RETIRED_PROPERTY,
} from "../../src/store/index.ts";

import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";

const DIM = 8;

let milvus: TestMilvusLite;
let client: MilvusClient;

function image(id: string, modelId: string): ImageRecord {
  return {
    id,
    modelId,
    mediaRef: "blob:x",
    source: "upload",
    vector: Array.from({ length: DIM }, (_, i) => i + 1),
  };
}

async function modelProperty(name: string): Promise<unknown> {
  const described = await client.describeCollection({ collection_name: name });
  return (described.properties ?? []).find((pair) => pair.key === MODEL_ID_PROPERTY)?.value;
}

beforeAll(async () => {
  milvus = await startTestMilvusLite();
  client = createMilvusClient({ address: milvus.address });
}, 60_000);

afterAll(async () => {
  await client?.closeConnection();
  await milvus?.dispose();
});

describe("collections per model", () => {
  it("records the model in new collections and refuses a store of another model, naming the migrate command", async () => {
    const prefix = uniquePrefix("model_new");
    const store = await createVectorStore({
      address: milvus.address,
      collectionPrefix: prefix,
      dimension: DIM,
      modelId: "a@1",
    });
    await store.close();
    for (const kind of RECORD_KINDS)
      expect(await modelProperty(collectionName({ prefix, kind }))).toBe("a@1");
    const refused = createVectorStore({
      address: milvus.address,
      collectionPrefix: prefix,
      dimension: DIM,
      modelId: "b@2",
      modelPack: "/packs/b",
    });
    await expect(refused).rejects.toMatchObject({ code: "store_model_mismatch" });
    await expect(refused).rejects.toThrow(
      /holds embeddings of model "a@1", but the model pack at \/packs\/b is model "b@2".*loupe models migrate --to \/packs\/b/,
    );
  }, 60_000);

  it("adopts the model of collections from before model ids, from their rows, or the current model when empty", async () => {
    const prefix = uniquePrefix("model_legacy");
    const legacy = await createVectorStore({
      address: milvus.address,
      collectionPrefix: prefix,
      dimension: DIM,
    });
    await legacy.upsert({ kind: "image", tenant: "t", records: [image("img_1", "old@1")] });
    await legacy.close();
    expect(await modelProperty(collectionName({ prefix, kind: "image" }))).toBeUndefined();

    await expect(
      createVectorStore({
        address: milvus.address,
        collectionPrefix: prefix,
        dimension: DIM,
        modelId: "new@1",
      }),
    ).rejects.toMatchObject({ code: "store_model_mismatch" });
    expect(await modelProperty(collectionName({ prefix, kind: "image" }))).toBe("old@1");

    const adopted = await createVectorStore({
      address: milvus.address,
      collectionPrefix: prefix,
      dimension: DIM,
      modelId: "old@1",
    });
    await adopted.close();
    // The empty ones are given the model of the pack they are opened with.
    for (const kind of RECORD_KINDS)
      expect(await modelProperty(collectionName({ prefix, kind }))).toBe("old@1");
  }, 60_000);

  it("opens the collections the committed pointer names, with live aliases repaired from it", async () => {
    const prefix = uniquePrefix("model_pointer");
    const first = await createVectorStore({
      address: milvus.address,
      collectionPrefix: prefix,
      dimension: DIM,
      modelId: "a@1",
    });
    await first.upsert({ kind: "image", tenant: "t", records: [image("img_1", "a@1")] });
    await first.close();

    const catalog = new ModelCatalog({ client, prefix });
    const target = catalog.collectionsOf("b@2");
    expect(target).toEqual(collectionNames({ prefix, model: "b@2" }));
    const store = await catalog.open({ collections: target, dimension: DIM, modelId: "b@2" });
    await store.upsert({ kind: "image", tenant: "t", records: [image("img_2", "b@2")] });
    expect((await catalog.live()).modelId).toBe("a@1");
    await catalog.commit({ modelId: "b@2", collections: target });
    expect(await catalog.pointer()).toMatchObject({ modelId: "b@2", collections: target });
    const alias = liveAliasName({ prefix, kind: "image" });
    expect((await client.describeAlias({ alias, collection_name: target.image })).collection).toBe(
      target.image,
    );

    await client.dropAlias({ alias });
    await expect(
      createVectorStore({
        address: milvus.address,
        collectionPrefix: prefix,
        dimension: DIM,
        modelId: "a@1",
      }),
    ).rejects.toMatchObject({ code: "store_model_mismatch" });
    const reopened = await createVectorStore({
      address: milvus.address,
      collectionPrefix: prefix,
      dimension: DIM,
      modelId: "b@2",
    });
    expect(reopened.collections).toEqual(target);
    expect(
      (await reopened.get({ kind: "image", tenant: "t", ids: ["img_2", "img_1"] })).map((row) => row.id),
    ).toEqual(["img_2"]);
    await reopened.close();
    expect((await client.describeAlias({ alias, collection_name: target.image })).collection).toBe(
      target.image,
    );

    // The collections left behind are retired: a switch back to their model does not take them as a copy.
    const oldNames = collectionNames({ prefix });
    const described = await client.describeCollection({ collection_name: oldNames.image });
    expect((described.properties ?? []).map((pair) => pair.key)).toContain(RETIRED_PROPERTY);
    expect(await catalog.clearRetired({ collections: target })).toEqual([]);

    await expect(catalog.drop({ modelId: "b@2" })).rejects.toMatchObject({ code: "store_conflict" });
    expect(await catalog.drop({ modelId: "a@1" })).toEqual(Object.values(collectionNames({ prefix })));
  }, 60_000);

  it("lists every tenant of a collection, however their names sort against the key separator", async () => {
    const prefix = uniquePrefix("model_tenants");
    const store = await createVectorStore({
      address: milvus.address,
      collectionPrefix: prefix,
      dimension: DIM,
      modelId: "a@1",
    });
    const tenants = ["a", "a.b", "a0", "a_z", "b"];
    for (const tenant of tenants) {
      await store.upsert({ kind: "image", tenant, records: [image("img_1", "a@1"), image("img_2", "a@1")] });
    }
    // In key order: `<tenant>/` sorts "a.b/" before "a/".
    expect(await store.tenants("image")).toEqual(["a.b", "a", "a0", "a_z", "b"]);
    expect(await store.tenants("triple")).toEqual([]);
    await store.close();
  }, 60_000);

  it("makes model slugs that are valid in names and tell similar ids apart", () => {
    expect(modelSlug("shapes-world-tiny@1+int8")).toMatch(/^shapes_world_tiny_1_int8_[0-9a-f]{8}$/);
    expect(modelSlug("a+b")).not.toBe(modelSlug("a-b"));
    expect(modelSlug("@@")).toMatch(/^[0-9a-f]{8}$/);
  });
});
