/**
 * The Milvus vector store against a real Milvus Lite: schema set-up, upsert, search, query, get,
 * delete, count, and tenant isolation under hostile filters.
 */
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StoreError, ValidationError } from "../../src/errors.ts";
import {
  callMilvus,
  collectionName,
  createMilvusClient,
  createVectorStore,
  ensureCollections,
  type ImageRecord,
  type MilvusVectorStore,
  SCHEMA_VERSION_PROPERTY,
  type StoredImage,
  type VideoSegmentRecord,
} from "../../src/store/index.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";

const DIM = 8;
const TIMEOUT_MS = 15_000;

/** Unit vector along axis `axis`, optionally tilted towards axis `towards`. */
function axisVector(axis: number, towards?: number, tilt = 0.3): number[] {
  const vector = Array.from({ length: DIM }, () => 0);
  vector[axis] = 1;
  if (towards !== undefined) vector[towards] = tilt;
  return vector;
}

function image(id: string, vector: number[], extra: Partial<ImageRecord> = {}): ImageRecord {
  return { id, modelId: "clip-test", mediaRef: `blob/${id}.png`, source: "upload", vector, ...extra };
}

let lite: TestMilvusLite;
const stores: MilvusVectorStore[] = [];

async function openStore(prefix: string, options: { dimension?: number; metric?: "COSINE" | "IP" } = {}) {
  const store = await createVectorStore({
    address: lite.address,
    collectionPrefix: prefix,
    dimension: options.dimension ?? DIM,
    metric: options.metric ?? "COSINE",
    indexType: "AUTOINDEX",
    timeoutMs: TIMEOUT_MS,
  });
  stores.push(store);
  return store;
}

beforeAll(async () => {
  lite = await startTestMilvusLite();
});

afterAll(async () => {
  await Promise.all(stores.map((store) => store.close()));
  await lite?.dispose();
});

describe("collections", () => {
  it("creates the collection of every kind once; a second ensureCollections changes nothing", async () => {
    const prefix = uniquePrefix("schema");
    const store = await openStore(prefix);
    await store.upsert({ kind: "image", tenant: "acme", records: [image("img_a", axisVector(0))] });

    const client = createMilvusClient({ address: lite.address, timeoutMs: TIMEOUT_MS });
    try {
      const describeAll = () =>
        Promise.all(
          (["image", "video_segment", "triple", "region"] as const).map(async (kind) => {
            const name = collectionName({ prefix, kind });
            const described = await client.describeCollection({ collection_name: name });
            const index = await client.describeIndex({ collection_name: name });
            return {
              name,
              id: described.collectionID,
              created: described.created_timestamp,
              properties: described.properties,
              fields: described.schema.fields.map((field) => `${field.name}:${field.data_type}`),
              indexes: index.index_descriptions.map((d) => `${d.field_name}:${JSON.stringify(d.params)}`),
            };
          }),
        );
      const before = await describeAll();
      expect(before.map((c) => c.name)).toEqual([
        `${prefix}_images`,
        `${prefix}_video_segments`,
        `${prefix}_triples`,
        `${prefix}_regions`,
      ]);
      expect(before[0]?.properties).toContainEqual({ key: SCHEMA_VERSION_PROPERTY, value: "2" });
      // Triples: the image and question vectors, and the BM25 sparse field.
      expect(before[2]?.indexes).toHaveLength(3);
      expect(before[2]?.indexes.some((index) => index.startsWith("search_sparse:"))).toBe(true);
      // Regions: their box, label, attributes and score, and the parent they name.
      expect(before[3]?.fields).toEqual(
        expect.arrayContaining([
          "parent_id:VarChar",
          "label:VarChar",
          "attributes:JSON",
          "score:Float",
          "box_x0:Float",
        ]),
      );

      const again = await ensureCollections({ client, prefix, dimension: DIM, timeoutMs: TIMEOUT_MS });
      expect(again).toEqual({
        created: [],
        existing: before.map((c) => c.name),
        indexesCreated: [],
        migrated: [],
      });
      expect(await describeAll()).toEqual(before);
      expect(await store.count({ kind: "image", tenant: "acme" })).toBe(1);
    } finally {
      await client.closeConnection();
    }
  });

  it("refuses collections of another dimension, metric or schema version", async () => {
    const prefix = uniquePrefix("mismatch");
    await openStore(prefix);
    await expect(openStore(prefix, { dimension: 16 })).rejects.toMatchObject({
      code: "store_schema_mismatch",
      message: expect.stringMatching(
        /stores 8-dimensional vectors in vector, but the model pack produces 16/,
      ),
    });
    await expect(openStore(prefix, { metric: "IP" })).rejects.toMatchObject({
      code: "store_schema_mismatch",
      message: expect.stringMatching(/indexed with metric COSINE, but Loupe is configured for IP/),
    });

    const client = createMilvusClient({ address: lite.address, timeoutMs: TIMEOUT_MS });
    try {
      const status = await client.alterCollectionProperties({
        collection_name: collectionName({ prefix, kind: "triple" }),
        properties: { [SCHEMA_VERSION_PROPERTY]: "999" },
      });
      expect(status.error_code).toBe("Success");
    } finally {
      await client.closeConnection();
    }
    const error = await openStore(prefix).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).message).toMatch(/has schema version 999; this Loupe uses version 2/);
  });
});

describe("response checks", () => {
  it("treats Lite's empty reply to an unimplemented call as a failure", async () => {
    const prefix = uniquePrefix("unimplemented");
    await openStore(prefix);
    const client = createMilvusClient({ address: lite.address, timeoutMs: TIMEOUT_MS });
    try {
      const name = collectionName({ prefix, kind: "image" });
      const reply = await client.getIndexState({ collection_name: name, field_name: "vector" } as never);
      expect(reply).toEqual({});
      await expect(
        callMilvus({ what: `getIndexState ${name}`, timeoutMs: TIMEOUT_MS, call: async () => reply }),
      ).rejects.toMatchObject({ code: "store_unsupported" });
    } finally {
      await client.closeConnection();
    }
  });
});

describe("upsert, search, query, get, delete", () => {
  let store: MilvusVectorStore;
  beforeAll(async () => {
    store = await openStore(uniquePrefix("crud"));
  });

  it("keeps one row when the same record is upserted twice", async () => {
    const record = image("img_same", axisVector(0), { text: "first" });
    await store.upsert({ kind: "image", tenant: "dup", records: [record] });
    await store.upsert({ kind: "image", tenant: "dup", records: [{ ...record, text: "second" }] });
    await store.upsert({ kind: "image", tenant: "dup", records: [record, { ...record, text: "third" }] });
    expect(await store.count({ kind: "image", tenant: "dup" })).toBe(1);
    const [row] = await store.get({ kind: "image", tenant: "dup", ids: ["img_same"] });
    expect(row?.text).toBe("third");
  });

  it("returns the top-k nearest with ids, scores and fields, best first", async () => {
    const records = [
      image("img_x", axisVector(0), {
        text: "red circle",
        metadata: { color: "red", n: 1 },
        createdAt: 1000,
      }),
      image("img_x_near", axisVector(0, 1, 0.3), { metadata: { color: "red", n: 2 } }),
      image("img_x_far", axisVector(0, 1, 1.5), { metadata: { color: "blue", n: 3 } }),
      image("img_y", axisVector(1)),
      image("img_z", axisVector(2)),
      ...Array.from({ length: 5 }, (_, i) => image(`img_other_${i}`, axisVector(3 + i))),
    ];
    await store.upsert({ kind: "image", tenant: "search", records });

    const hits = await store.search({ kind: "image", tenant: "search", vector: axisVector(0), topK: 3 });
    expect(hits.map((hit) => hit.id)).toEqual(["img_x", "img_x_near", "img_x_far"]);
    expect(hits[0]?.score).toBeCloseTo(1, 5);
    expect(hits[1]?.score).toBeCloseTo(1 / Math.hypot(1, 0.3), 5);
    expect(hits[2]?.score).toBeCloseTo(1 / Math.hypot(1, 1.5), 5);
    expect(hits[0]?.fields).toEqual<StoredImage>({
      kind: "image",
      id: "img_x",
      tenant: "search",
      modelId: "clip-test",
      mediaRef: "blob/img_x.png",
      source: "upload",
      createdAt: 1000,
      text: "red circle",
      metadata: { color: "red", n: 1 },
      ocrText: "",
    });

    const filtered = await store.search({
      kind: "image",
      tenant: "search",
      vector: axisVector(0),
      topK: 5,
      filter: [{ field: "metadata.color", op: "eq", value: "blue" }],
    });
    expect(filtered.map((hit) => hit.id)).toEqual(["img_x_far"]);

    const all = await store.search({ kind: "image", tenant: "search", vector: axisVector(1), topK: 100 });
    expect(all).toHaveLength(records.length);
    expect(all[0]?.id).toBe("img_y");
  });

  it("searches triples by image or by question vector", async () => {
    await store.upsert({
      kind: "triple",
      tenant: "qa",
      records: [
        {
          id: "tri_1",
          modelId: "clip-test",
          mediaRef: "blob/1.png",
          source: "jsonl",
          imageVector: axisVector(0),
          questionVector: axisVector(5),
          question: "What color is the circle?",
          answer: "red",
        },
        {
          id: "tri_2",
          modelId: "clip-test",
          mediaRef: "blob/2.png",
          source: "jsonl",
          imageVector: axisVector(5),
          questionVector: axisVector(0),
          question: "How many squares?",
          answer: "two",
        },
      ],
    });
    const byImage = await store.search({ kind: "triple", tenant: "qa", vector: axisVector(0), topK: 1 });
    expect(byImage[0]?.fields).toMatchObject({ kind: "triple", id: "tri_1", answer: "red" });
    const byQuestion = await store.search({
      kind: "triple",
      tenant: "qa",
      vector: axisVector(0),
      topK: 1,
      vectorField: "question_vector",
    });
    expect(byQuestion[0]?.fields).toMatchObject({ id: "tri_2", question: "How many squares?" });
    await expect(
      store.search({
        kind: "image",
        tenant: "qa",
        vector: axisVector(0),
        topK: 1,
        vectorField: "question_vector" as never,
      }),
    ).rejects.toThrow(ValidationError);
  });

  it("filters video segments by video and time span", async () => {
    const segment = (id: string, startS: number, endS: number, videoId = "vid_1"): VideoSegmentRecord => ({
      id,
      modelId: "clip-test",
      mediaRef: `blob/${videoId}.mp4`,
      source: "upload",
      vector: axisVector(startS % DIM),
      videoId,
      startS,
      endS,
      keyframeRef: `blob/${id}.jpg`,
    });
    await store.upsert({
      kind: "video_segment",
      tenant: "video",
      records: [
        segment("seg_0", 0, 2),
        segment("seg_2", 2, 4),
        segment("seg_4", 4, 6.5),
        segment("seg_b", 0, 2, "vid_2"),
      ],
    });
    const rows = await store.query({
      kind: "video_segment",
      tenant: "video",
      limit: 10,
      filter: [
        { field: "video_id", op: "eq", value: "vid_1" },
        { field: "start_s", op: "gte", value: 2 },
      ],
    });
    expect(rows.map((row) => row.id).sort()).toEqual(["seg_2", "seg_4"]);
    expect(rows.find((row) => row.id === "seg_4")).toMatchObject({
      startS: 4,
      endS: 6.5,
      keyframeRef: "blob/seg_4.jpg",
    });
  });

  it("applies metadata, text and group filters", async () => {
    await store.upsert({
      kind: "image",
      tenant: "filters",
      records: [
        image("img_f1", axisVector(0), {
          text: "red circle on grass",
          metadata: { tags: ["red", "circle"], size: 3 },
        }),
        image("img_f2", axisVector(1), {
          text: "blue square",
          metadata: { tags: ["blue"], size: 7, camera: "x100" },
        }),
        image("img_f3", axisVector(2), { text: "猫 ☃ é", metadata: { size: 12 }, source: "url" }),
      ],
    });
    const ids = async (filter: Parameters<MilvusVectorStore["query"]>[0]["filter"]) =>
      (await store.query({ kind: "image", tenant: "filters", limit: 10, filter }))
        .map((row) => row.id)
        .sort();

    expect(await ids([{ field: "text", op: "contains", value: "circle" }])).toEqual(["img_f1"]);
    expect(await ids([{ field: "metadata.tags", op: "contains", value: "blue" }])).toEqual(["img_f2"]);
    expect(await ids([{ field: "metadata.size", op: "in", value: [3, 12] }])).toEqual(["img_f1", "img_f3"]);
    expect(await ids([{ field: "metadata.size", op: "nin", value: [3, 12] }])).toEqual(["img_f2"]);
    expect(await ids([{ field: "metadata.camera", op: "exists" }])).toEqual(["img_f2"]);
    expect(await ids([{ field: "text", op: "eq", value: "猫 ☃ é" }])).toEqual(["img_f3"]);
    expect(await ids([{ field: "text", op: "contains", value: "☃" }])).toEqual(["img_f3"]);
    expect(
      await ids([
        {
          any: [
            { field: "source", op: "eq", value: "url" },
            { field: "metadata.size", op: "lt", value: 5 },
          ],
        },
      ]),
    ).toEqual(["img_f1", "img_f3"]);
    expect(
      await ids([
        { field: "text", op: "contains", value: "circle" },
        { field: "metadata.size", op: "gt", value: 1 },
      ]),
    ).toEqual(["img_f1"]);
  });

  it("deletes by id and by filter", async () => {
    await store.upsert({
      kind: "image",
      tenant: "del",
      records: [
        image("img_d1", axisVector(0)),
        image("img_d2", axisVector(1)),
        image("img_d3", axisVector(2), { source: "url" }),
      ],
    });
    expect(await store.delete({ kind: "image", tenant: "del", ids: ["img_d1"] })).toEqual({ deleted: 1 });
    expect(
      await store.delete({
        kind: "image",
        tenant: "del",
        filter: [{ field: "source", op: "eq", value: "url" }],
      }),
    ).toEqual({
      deleted: 1,
    });
    expect((await store.query({ kind: "image", tenant: "del", limit: 10 })).map((row) => row.id)).toEqual([
      "img_d2",
    ]);
    await expect(store.delete({ kind: "image", tenant: "del" })).rejects.toThrow(
      /needs ids, a filter or both/,
    );
  });

  it("validates records before writing any", async () => {
    const bad = async (records: ImageRecord[], pattern: RegExp) => {
      await expect(store.upsert({ kind: "image", tenant: "valid", records })).rejects.toThrow(pattern);
    };
    const good = image("img_ok", axisVector(0));
    await bad(
      [good, image("img_short", [1, 2, 3])],
      /Record 1 .*vector has 3 values; the collections hold 8-dimensional/,
    );
    await bad([image("img_nan", [Number.NaN, ...axisVector(0).slice(1)])], /not a finite number/);
    await bad(
      [image("img_inf", [Number.POSITIVE_INFINITY, ...axisVector(0).slice(1)])],
      /not a finite number/,
    );
    await bad(
      [
        image(
          "img_zero",
          Array.from({ length: DIM }, () => 0),
        ),
      ],
      /all zeros/,
    );
    await bad([image('bad" or "1', axisVector(0))], /the id must match/);
    await bad(
      [image("img_long", axisVector(0), { text: "é".repeat(5000) })],
      /text is 10000 bytes of UTF-8; the limit is 8192/,
    );
    await bad(
      [image("img_meta", axisVector(0), { metadata: [] as never })],
      /metadata must be a JSON object/,
    );
    await bad([image("img_empty", axisVector(0), { modelId: "" })], /modelId must be a non-empty string/);
    expect(await store.count({ kind: "image", tenant: "valid" })).toBe(0);
    await expect(
      store.search({ kind: "image", tenant: "valid", vector: axisVector(0), topK: 0 }),
    ).rejects.toThrow(ValidationError);
    await expect(store.query({ kind: "image", tenant: "valid", limit: 100_000 })).rejects.toThrow(
      ValidationError,
    );
  });

  it("writes batches of many records", async () => {
    const records = Array.from({ length: 600 }, (_, i) =>
      image(`img_bulk_${i}`, axisVector(i % DIM, (i + 1) % DIM, (i % 7) / 10)),
    );
    expect(await store.upsert({ kind: "image", tenant: "bulk", records })).toEqual({ upserted: 600 });
    expect(await store.count({ kind: "image", tenant: "bulk" })).toBe(600);
  });

  it("serializes concurrent writers to one collection", async () => {
    await Promise.all(
      Array.from({ length: 8 }, (_, batch) =>
        store.upsert({
          kind: "image",
          tenant: "concurrent",
          records: Array.from({ length: 20 }, (_, i) =>
            image(`img_c_${batch}_${i}`, axisVector((batch + i) % DIM)),
          ),
        }),
      ),
    );
    expect(await store.count({ kind: "image", tenant: "concurrent" })).toBe(160);
  });

  it("searches an HNSW index as well", async () => {
    const hnsw = await createVectorStore({
      address: lite.address,
      collectionPrefix: uniquePrefix("hnsw"),
      dimension: DIM,
      metric: "IP",
      indexType: "HNSW",
      timeoutMs: TIMEOUT_MS,
    });
    stores.push(hnsw);
    await hnsw.upsert({
      kind: "image",
      tenant: "acme",
      records: [
        image("img_h0", axisVector(0)),
        image("img_h1", axisVector(0, 1, 0.5)),
        image("img_h2", axisVector(2)),
      ],
    });
    const hits = await hnsw.search({ kind: "image", tenant: "acme", vector: axisVector(0, 1, 0.5), topK: 2 });
    expect(hits.map((hit) => hit.id)).toEqual(["img_h1", "img_h0"]);
    // Inner product of the unnormalized vectors: 1 + 0.25.
    expect(hits[0]?.score).toBeCloseTo(1.25, 5);
  });

  it("flushes a collection once enough rows have been written, and its rows stay searchable", async () => {
    const logged: string[] = [];
    const logger = pino({ level: "debug" }, { write: (line: string) => logged.push(JSON.parse(line).msg) });
    const flushing = await createVectorStore({
      address: lite.address,
      collectionPrefix: uniquePrefix("flush"),
      dimension: DIM,
      timeoutMs: TIMEOUT_MS,
      flushEveryRows: 10,
      logger,
    });
    stores.push(flushing);
    const write = (from: number, count: number) =>
      flushing.upsert({
        kind: "image",
        tenant: "acme",
        records: Array.from({ length: count }, (_, i) =>
          image(`img_f${from + i}`, axisVector((from + i) % DIM)),
        ),
      });
    await write(0, 6);
    expect(logged.filter((msg) => msg === "flushed collection")).toHaveLength(0);
    await write(6, 6);
    expect(logged.filter((msg) => msg === "flushed collection")).toHaveLength(1);
    expect(logged).not.toContain("flush after upserts failed; searches stay slower until the next one");
    expect(await flushing.count({ kind: "image", tenant: "acme" })).toBe(12);
    const hits = await flushing.search({ kind: "image", tenant: "acme", vector: axisVector(3), topK: 1 });
    expect(hits[0]?.score).toBeCloseTo(1, 5);
  });

  it("reports healthy while its collections are loaded", async () => {
    expect(await store.health()).toEqual({ ok: true });
  });
});

describe("tenant isolation", () => {
  let store: MilvusVectorStore;
  const mine = "tenant_a";
  const theirs = "tenant_b";
  const secretIds = ["img_secret_0", "img_secret_1", "img_secret_2"];
  const hostileValue = '") or true or ("';

  beforeAll(async () => {
    store = await openStore(uniquePrefix("tenants"));
    await seedMine();
    await store.upsert({
      kind: "image",
      tenant: theirs,
      records: secretIds.map((id, i) =>
        image(id, axisVector(i), { text: "secret", source: "upload", metadata: { note: "secret" } }),
      ),
    });
  });

  const mineRecords = [
    image("img_mine_0", axisVector(0), { text: "mine" }),
    image("img_mine_1", axisVector(1), { text: "mine" }),
    // Matches hostile strings literally, to show that they are data, not syntax.
    image("img_literal", axisVector(2), { source: hostileValue, metadata: { note: 'x" || tenant != "y' } }),
    // Same record id as one of theirs: keys are per tenant, so neither replaces the other.
    image("img_secret_0", axisVector(3), { text: "mine too" }),
  ];
  const mineIds = mineRecords.map((record) => record.id);
  const seedMine = () => store.upsert({ kind: "image", tenant: mine, records: mineRecords });
  const theirCount = () => store.count({ kind: "image", tenant: theirs });

  it("keeps the same record id apart per tenant", async () => {
    const [mineRow] = await store.get({ kind: "image", tenant: mine, ids: ["img_secret_0"] });
    const [theirRow] = await store.get({ kind: "image", tenant: theirs, ids: ["img_secret_0"] });
    expect(mineRow).toMatchObject({ tenant: mine, text: "mine too" });
    expect(theirRow).toMatchObject({ tenant: theirs, text: "secret" });
  });

  it("never returns another tenant's rows from search, query or get", async () => {
    const hits = await store.search({ kind: "image", tenant: mine, vector: axisVector(0), topK: 50 });
    expect(hits.length).toBe(4);
    expect(hits.every((hit) => hit.fields.tenant === mine)).toBe(true);

    const rows = await store.query({ kind: "image", tenant: mine, limit: 100 });
    expect(rows.map((row) => row.tenant)).toEqual([mine, mine, mine, mine]);

    const fetched = await store.get({ kind: "image", tenant: mine, ids: ["img_secret_1", "img_secret_2"] });
    expect(fetched).toEqual([]);
    expect(await store.count({ kind: "image", tenant: mine })).toBe(4);
  });

  it("never deletes another tenant's rows", async () => {
    expect(
      await store.delete({ kind: "image", tenant: mine, ids: ["img_secret_1", "img_secret_2"] }),
    ).toEqual({ deleted: 0 });
    expect(
      await store.delete({
        kind: "image",
        tenant: mine,
        filter: [{ field: "text", op: "eq", value: "secret" }],
      }),
    ).toEqual({
      deleted: 0,
    });
    expect(await theirCount()).toBe(3);
  });

  // [name, filter, ids of mine that literally match (default: at most the literal row)]
  const injections: Array<[string, unknown, string[]?]> = [
    ["quote breakout", [{ field: "source", op: "eq", value: '") or true or ("' }]],
    ["or-tenant breakout", [{ field: "source", op: "eq", value: 'x" || tenant != "y' }]],
    ["escaped-quote breakout", [{ field: "source", op: "eq", value: '\\" or 1==1 or \\"' }]],
    ["single-quote breakout", [{ field: "source", op: "eq", value: "') or true or ('" }]],
    ["backslash at the end", [{ field: "source", op: "eq", value: "upload\\" }]],
    ["breakout in an in list", [{ field: "source", op: "in", value: ['a"]) or true or (source in ["b'] }]],
    ["breakout in contains", [{ field: "text", op: "contains", value: '" or true or "' }]],
    [
      "breakout in metadata contains",
      [{ field: "metadata.note", op: "contains", value: '") or true or ("' }],
    ],
    ["breakout in metadata eq", [{ field: "metadata.note", op: "eq", value: 'x" || tenant != "y' }]],
    ["breakout in metadata in", [{ field: "metadata.note", op: "in", value: ['") or true or ("', "z"] }]],
    // Literally true for every row of mine: all of them, and only them, may come back.
    ["breakout in ne", [{ field: "source", op: "ne", value: '") or tenant != ("' }], mineIds],
    ["unicode lookalike quotes", [{ field: "source", op: "eq", value: "\u201d) or true or (\u201c" }]],
    ["fullwidth quote", [{ field: "source", op: "eq", value: "\uff02 or true or \uff02" }]],
    ["tenant field", [{ field: "tenant", op: "eq", value: theirs }]],
    ["tenant field negated", [{ field: "tenant", op: "ne", value: mine }]],
    ["tenant in a group", [{ any: [{ field: "tenant", op: "eq", value: theirs }] }]],
    ["unknown field", [{ field: "secret", op: "eq", value: "x" }]],
    ["pk field", [{ field: "pk", op: "eq", value: `${theirs}/img_secret_1` }]],
    ["unknown operator", [{ field: "source", op: "or", value: "x" }]],
    ["metadata key breakout", [{ field: 'metadata.a"] or true or metadata["b', op: "eq", value: 1 }]],
    ["metadata key expression", [{ field: 'metadata["a"] or true', op: "eq", value: 1 }]],
    ["10k-character string", [{ field: "text", op: "eq", value: "x".repeat(10_000) }]],
    ["NaN", [{ field: "created_at", op: "gt", value: Number.NaN }]],
    ["Infinity", [{ field: "created_at", op: "lt", value: Number.POSITIVE_INFINITY }]],
    ["depth bomb", Array.from({ length: 1 }, () => deepAny(5000))],
    ["raw expression", "true"],
    ["raw expression with tenant", 'tenant != "tenant_a"'],
    ["newline breakout", [{ field: "source", op: "eq", value: '"\n or true or "' }]],
  ];

  function deepAny(depth: number): unknown {
    let item: unknown = { field: "source", op: "eq", value: "x" };
    for (let level = 0; level < depth; level += 1) item = { any: [item] };
    return item;
  }

  it.each(injections)(
    "%s is rejected or matched literally, never widening",
    async (_name, filter, literal) => {
      const allowed = new Set(literal ?? ["img_literal"]);
      const attempts = [
        () =>
          store.search({
            kind: "image",
            tenant: mine,
            vector: axisVector(0),
            topK: 50,
            filter: filter as never,
          }),
        () => store.query({ kind: "image", tenant: mine, limit: 100, filter: filter as never }),
        () => store.delete({ kind: "image", tenant: mine, filter: filter as never }),
      ];
      for (const attempt of attempts) {
        const outcome = await attempt().then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        );
        if ("error" in outcome) {
          expect(outcome.error).toBeInstanceOf(ValidationError);
          continue;
        }
        const value = outcome.value;
        if (Array.isArray(value)) {
          const tenants = value.map((entry) => ("fields" in entry ? entry.fields.tenant : entry.tenant));
          expect(tenants.every((tenant) => tenant === mine)).toBe(true);
          // Literal matching: only rows whose values literally satisfy the condition may come back.
          expect(value.map((entry) => entry.id).filter((id) => !allowed.has(id))).toEqual([]);
        } else {
          expect(value.deleted).toBeLessThanOrEqual(allowed.size);
        }
      }
      expect(await theirCount()).toBe(3);
      // Deletes may have removed literal matches of mine; put them back for the next payload.
      await seedMine();
    },
  );

  it("matches a hostile string literally when it is the stored value", async () => {
    const bySource = await store.query({
      kind: "image",
      tenant: mine,
      limit: 10,
      filter: [{ field: "source", op: "eq", value: hostileValue }],
    });
    expect(bySource.map((row) => row.id)).toEqual(["img_literal"]);
    const byNote = await store.query({
      kind: "image",
      tenant: mine,
      limit: 10,
      filter: [{ field: "metadata.note", op: "eq", value: 'x" || tenant != "y' }],
    });
    expect(byNote.map((row) => row.id)).toEqual(["img_literal"]);
    expect(
      await store.query({
        kind: "image",
        tenant: theirs,
        limit: 10,
        filter: [{ field: "source", op: "eq", value: hostileValue }],
      }),
    ).toEqual([]);
  });

  it("rejects hostile ids in get and delete", async () => {
    for (const id of [
      'img_secret_1" or true or "',
      "img_secret_1\\",
      `${theirs}/img_secret_1`,
      "x".repeat(10_000),
    ]) {
      await expect(store.get({ kind: "image", tenant: mine, ids: [id] })).rejects.toThrow(ValidationError);
      await expect(store.delete({ kind: "image", tenant: mine, ids: [id] })).rejects.toThrow(ValidationError);
    }
    expect(await theirCount()).toBe(3);
  });

  it("rejects a hostile tenant", async () => {
    for (const tenant of ['tenant_a" or tenant != "', "", "a/b", "x".repeat(200)]) {
      await expect(store.query({ kind: "image", tenant, limit: 10 })).rejects.toThrow(ValidationError);
      await expect(
        store.upsert({ kind: "image", tenant, records: [image("img_t", axisVector(0))] }),
      ).rejects.toThrow(ValidationError);
    }
  });
});
