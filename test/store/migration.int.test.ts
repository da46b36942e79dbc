/**
 * Migration of collections made by schema version 1 (no ocr_text, search_text or search_sparse) against a
 * real Milvus Lite: rows of all three kinds keep their ids, vectors, text and metadata and become
 * searchable by BM25; a migration cut short by a crash is finished or done again at the next start-up.
 */
import { DataType, type FieldType, type MilvusClient, type RowData } from "@zilliz/milvus2-sdk-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectionName,
  createMilvusClient,
  createVectorStore,
  ensureCollections,
  type MilvusVectorStore,
  type RecordKind,
  SCHEMA_VERSION_PROPERTY,
} from "../../src/store/index.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";

const DIM = 8;
const TIMEOUT_MS = 15_000;

/** The field list of schema version 1, as Loupe made it before version 2 (the v1 fixture). */
function v1Fields(kind: RecordKind): FieldType[] {
  const varchar = (name: string, max_length: number, extra: Partial<FieldType> = {}): FieldType => ({
    name,
    data_type: DataType.VarChar,
    max_length,
    ...extra,
  });
  const common: FieldType[] = [
    varchar("pk", 256, { is_primary_key: true, autoID: false }),
    varchar("id", 64),
    varchar("tenant", 128, { is_partition_key: true }),
    varchar("model_id", 256),
    varchar("media_ref", 2048),
    varchar("source", 256),
    { name: "created_at", data_type: DataType.Int64 },
    varchar("text", 8192),
    { name: "metadata", data_type: DataType.JSON },
  ];
  const vector = (name: string): FieldType => ({ name, data_type: DataType.FloatVector, dim: DIM });
  if (kind === "video_segment") {
    return [
      ...common,
      varchar("video_id", 128),
      { name: "start_s", data_type: DataType.Float },
      { name: "end_s", data_type: DataType.Float },
      varchar("keyframe_ref", 2048),
      vector("vector"),
    ];
  }
  if (kind === "triple") {
    return [
      ...common,
      varchar("question", 2048),
      varchar("answer", 8192),
      vector("image_vector"),
      vector("question_vector"),
    ];
  }
  return [...common, vector("vector")];
}

/** The kinds schema v1 had (regions came later: their collection is made new). */
const V1_KINDS = ["image", "video_segment", "triple"] as const satisfies readonly RecordKind[];

const V1_VECTOR_FIELDS: Record<(typeof V1_KINDS)[number], string[]> = {
  image: ["vector"],
  video_segment: ["vector"],
  triple: ["image_vector", "question_vector"],
};

function axisVector(axis: number): number[] {
  const vector = Array.from({ length: DIM }, () => 0.01);
  vector[axis % DIM] = 1;
  return vector;
}

/** Rows of schema v1 for `kind`: five of tenant acme, one of tenant other. */
function v1Rows(kind: RecordKind): Record<string, unknown>[] {
  const rows = ["acme", "acme", "acme", "acme", "acme", "other"].map((tenant, index) => {
    const id = `${kind.slice(0, 3)}_${index}`;
    const row: Record<string, unknown> = {
      pk: `${tenant}/${id}`,
      id,
      tenant,
      model_id: "clip-test",
      media_ref: `blob/${id}`,
      source: "upload",
      created_at: 1_700_000_000_000 + index,
      text: index === 0 ? "invoice overdue reminder" : `plain caption ${index}`,
      metadata: { n: index, tag: kind },
    };
    if (kind === "triple") {
      row.question = `What is shown in picture ${index}?`;
      row.answer = index === 1 ? "A router with a blinking amber light" : `Item ${index}`;
      row.image_vector = axisVector(index);
      row.question_vector = axisVector(index + 1);
    } else {
      row.vector = axisVector(index);
    }
    if (kind === "video_segment") {
      row.video_id = "vid_1";
      row.start_s = index * 2;
      row.end_s = index * 2 + 1.5;
      row.keyframe_ref = `blob/${id}.jpg`;
    }
    return row;
  });
  return rows;
}

/** Makes the three collections as schema v1 made them, with rows. */
async function createV1Collections(client: MilvusClient, prefix: string): Promise<void> {
  for (const kind of V1_KINDS) {
    const name = collectionName({ prefix, kind });
    expect(
      (
        await client.createCollection({
          collection_name: name,
          fields: v1Fields(kind),
          properties: { [SCHEMA_VERSION_PROPERTY]: "1", "loupe.kind": kind },
          consistency_level: "Strong",
        })
      ).error_code,
    ).toBe("Success");
    for (const field of V1_VECTOR_FIELDS[kind]) {
      await client.createIndex({
        collection_name: name,
        field_name: field,
        index_name: field,
        index_type: "AUTOINDEX",
        metric_type: "COSINE",
      });
    }
    const inserted = await client.insert({ collection_name: name, data: v1Rows(kind) as RowData[] });
    expect(inserted.status.error_code).toBe("Success");
  }
}

let lite: TestMilvusLite;
let client: MilvusClient;
const stores: MilvusVectorStore[] = [];

async function openStore(prefix: string): Promise<MilvusVectorStore> {
  const store = await createVectorStore({
    address: lite.address,
    collectionPrefix: prefix,
    dimension: DIM,
    timeoutMs: TIMEOUT_MS,
  });
  stores.push(store);
  return store;
}

async function expectMigrated(store: MilvusVectorStore): Promise<void> {
  expect(await store.count({ kind: "region", tenant: "acme" })).toBe(0);
  for (const kind of V1_KINDS) {
    expect(await store.count({ kind, tenant: "acme" })).toBe(5);
    expect(await store.count({ kind, tenant: "other" })).toBe(1);
    const rows = (await store.list({ kind, tenant: "acme", limit: 10 })).rows;
    const expected = v1Rows(kind).filter((row) => row.tenant === "acme");
    expect(rows.map((row) => row.id)).toEqual(expected.map((row) => row.id));
    for (const [index, row] of rows.entries()) {
      const before = expected[index] ?? {};
      expect(row).toMatchObject({
        text: before.text,
        metadata: before.metadata,
        createdAt: before.created_at,
        mediaRef: before.media_ref,
        ocrText: "",
      });
    }
  }
  const segment = (await store.get({ kind: "video_segment", tenant: "acme", ids: ["vid_2"] }))[0];
  expect(segment).toMatchObject({ videoId: "vid_1", startS: 4, endS: 5.5, keyframeRef: "blob/vid_2.jpg" });

  // Same vectors: each row is still its own nearest neighbour with cosine 1.
  for (const index of [0, 3]) {
    const hits = await store.search({ kind: "image", tenant: "acme", vector: axisVector(index), topK: 1 });
    expect(hits[0]?.id).toBe(`ima_${index}`);
    expect(hits[0]?.score).toBeCloseTo(1, 5);
  }
  const byQuestion = await store.search({
    kind: "triple",
    tenant: "acme",
    vector: axisVector(3),
    vectorField: "question_vector",
    topK: 1,
  });
  expect(byQuestion[0]?.id).toBe("tri_2");

  // The migrated text is searchable by BM25, within the tenant.
  const invoices = await store.textSearch({
    kind: "image",
    tenant: "acme",
    text: "overdue invoice",
    topK: 3,
  });
  expect(invoices.map((hit) => hit.id)).toEqual(["ima_0"]);
  const routers = await store.textSearch({ kind: "triple", tenant: "acme", text: "amber router", topK: 3 });
  expect(routers.map((hit) => hit.id)).toEqual(["tri_1"]);
  expect(
    await store.textSearch({ kind: "image", tenant: "other", text: "overdue invoice", topK: 3 }),
  ).toEqual([]);
}

async function collectionNames(): Promise<string[]> {
  const shown = await client.showCollections();
  return shown.data.map((collection) => collection.name);
}

beforeAll(async () => {
  lite = await startTestMilvusLite();
  client = createMilvusClient({ address: lite.address, timeoutMs: TIMEOUT_MS });
});

afterAll(async () => {
  await Promise.all(stores.map((store) => store.close()));
  await client?.closeConnection();
  await lite?.dispose();
});

describe("migration from schema v1", () => {
  it("rebuilds v1 collections at start-up: same ids, vectors, text and metadata, BM25 on their text", async () => {
    const prefix = uniquePrefix("v1");
    await createV1Collections(client, prefix);

    const logged: Array<Record<string, unknown>> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => logged.push(JSON.parse(line)) });
    const result = await ensureCollections({
      client,
      prefix,
      dimension: DIM,
      timeoutMs: TIMEOUT_MS,
      migrationPageRows: 4,
      logger,
    });
    expect(result.migrated).toEqual(V1_KINDS.map((kind) => collectionName({ prefix, kind })));
    expect(result.created).toEqual([collectionName({ prefix, kind: "region" })]);
    const progress = logged.filter((line) => line.msg === "migrating collection: rows copied");
    expect(progress.filter((line) => line.collection === `${prefix}_images`).at(-1)).toMatchObject({
      copied: 6,
      total: 6,
    });
    expect((await collectionNames()).filter((name) => name.includes("migrating"))).toEqual([]);

    const store = await openStore(prefix);
    await expectMigrated(store);

    // Migrated once: a second start-up finds current collections.
    const again = await ensureCollections({ client, prefix, dimension: DIM, timeoutMs: TIMEOUT_MS });
    expect(again.migrated).toEqual([]);
    expect(again.existing).toHaveLength(4);
  });

  it("drops an unfinished copy left by a crash and copies again", async () => {
    const prefix = uniquePrefix("v1_crash_copy");
    await createV1Collections(client, prefix);
    // A crash while copying: the copy exists with some rows, the original is intact.
    const leftover = `${collectionName({ prefix, kind: "image" })}__v2_migrating`;
    await client.createCollection({ collection_name: leftover, fields: v1Fields("image") });
    await client.insert({ collection_name: leftover, data: v1Rows("image").slice(0, 2) as RowData[] });

    const store = await openStore(prefix);
    await expectMigrated(store);
    expect(await collectionNames()).not.toContain(leftover);
  });

  it("finishes a migration whose original was dropped before the copy was renamed", async () => {
    const prefix = uniquePrefix("v1_crash_rename");
    await createV1Collections(client, prefix);
    await ensureCollections({ client, prefix, dimension: DIM, timeoutMs: TIMEOUT_MS });
    // A crash between dropping the original and renaming the copy: only the complete copy is left.
    const name = collectionName({ prefix, kind: "triple" });
    await client.releaseCollection({ collection_name: name });
    await client.renameCollection({ collection_name: name, new_collection_name: `${name}__v2_migrating` });

    const logged: Array<Record<string, unknown>> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => logged.push(JSON.parse(line)) });
    const result = await ensureCollections({ client, prefix, dimension: DIM, timeoutMs: TIMEOUT_MS, logger });
    expect(result.migrated).toEqual([name]);
    expect(result.created).toEqual([]);
    expect(logged.map((line) => line.msg)).toContain("finishing a migration: renaming the copy");

    const store = await openStore(prefix);
    await expectMigrated(store);
  });

  it("still refuses a collection of a newer schema version", async () => {
    const prefix = uniquePrefix("v9");
    await createV1Collections(client, prefix);
    await client.alterCollectionProperties({
      collection_name: collectionName({ prefix, kind: "image" }),
      properties: { [SCHEMA_VERSION_PROPERTY]: "9" },
    });
    await expect(openStore(prefix)).rejects.toMatchObject({
      code: "store_schema_mismatch",
      message: expect.stringMatching(/has schema version 9; this Loupe uses version 2/),
    });
  });
});
