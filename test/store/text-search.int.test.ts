/**
 * BM25 text search, hybrid search, phrases and update of the Milvus vector store against a real Milvus
 * Lite: the searchable text (text, OCR text, a triple's question and answer), the jieba analyzer on a
 * Chinese query, both rankers, tenant isolation, filters, phrases Lite cannot match by itself, and
 * updates that keep ids and vectors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  createVectorStore,
  type ImageRecord,
  type MilvusVectorStore,
  type TripleRecord,
} from "../../src/store/index.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";

const DIM = 8;
const TIMEOUT_MS = 15_000;

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
let store: MilvusVectorStore;

beforeAll(async () => {
  lite = await startTestMilvusLite();
  store = await createVectorStore({
    address: lite.address,
    collectionPrefix: uniquePrefix("text"),
    dimension: DIM,
    timeoutMs: TIMEOUT_MS,
  });
  await store.upsert({
    kind: "image",
    tenant: "acme",
    records: [
      image("img_db_en", axisVector(0), {
        ocrText: "Error: database connection failed on port 5432",
        metadata: { app: "billing" },
      }),
      image("img_db_zh", axisVector(1), {
        ocrText: "错误：数据库连接失败，请检查网络设置",
        metadata: { app: "billing" },
      }),
      image("img_license", axisVector(2), { text: "license dialog", ocrText: "E1234: license expired" }),
      image("img_caption", axisVector(3), { text: "a cat sleeping on a keyboard" }),
      image("img_scattered", axisVector(4), {
        ocrText: "Port 5432 failed on retry? Connection failed, port 5432 connection",
        metadata: { app: "shop" },
      }),
      image("img_phrase", axisVector(5), {
        ocrText: "The service says: connection refused",
        metadata: { app: "shop" },
      }),
    ],
  });
  await store.upsert({
    kind: "image",
    tenant: "other",
    records: [image("img_db_en", axisVector(0), { ocrText: "database connection failed" })],
  });
});

afterAll(async () => {
  await store?.close();
  await lite?.dispose();
});

describe("textSearch", () => {
  it("finds records by their OCR text and by their text, with BM25 scores larger-is-better", async () => {
    const hits = await store.textSearch({ kind: "image", tenant: "acme", text: "E1234 license", topK: 3 });
    expect(hits[0]?.id).toBe("img_license");
    expect(hits[0]?.fields.ocrText).toBe("E1234: license expired");
    expect(hits[0]?.fields).not.toHaveProperty("searchText");
    for (const hit of hits) expect(hit.score).toBeGreaterThan(0);
    for (let i = 1; i < hits.length; i += 1) {
      expect(hits[i - 1]?.score).toBeGreaterThanOrEqual(hits[i]?.score ?? 0);
    }

    const byCaption = await store.textSearch({
      kind: "image",
      tenant: "acme",
      text: "KEYBOARD cat",
      topK: 5,
    });
    expect(byCaption.map((hit) => hit.id)).toEqual(["img_caption"]);
  });

  it("finds the Chinese screenshot with a Chinese query among English ones", async () => {
    const hits = await store.textSearch({ kind: "image", tenant: "acme", text: "数据库连接失败", topK: 5 });
    expect(hits.map((hit) => hit.id)).toEqual(["img_db_zh"]);
  });

  it("never returns another tenant's rows, and combines the filter with the text", async () => {
    const hits = await store.textSearch({
      kind: "image",
      tenant: "other",
      text: "database connection",
      topK: 10,
    });
    expect(hits.map((hit) => [hit.id, hit.fields.tenant])).toEqual([["img_db_en", "other"]]);

    const filtered = await store.textSearch({
      kind: "image",
      tenant: "acme",
      text: "database connection failed port",
      topK: 10,
      filter: [{ field: "metadata.app", op: "eq", value: "shop" }],
    });
    expect(new Set(filtered.map((hit) => hit.id))).toEqual(new Set(["img_scattered", "img_phrase"]));
  });

  it("drops hits lacking a phrase that BM25 alone ranks first", async () => {
    const text = "connection failed port 5432";
    const plain = await store.textSearch({ kind: "image", tenant: "acme", text, topK: 3 });
    // Every word occurs in the scattered row, twice: BM25 puts it first, though the phrase is not there
    // (and every word of the phrase is, so the text_match prefilter alone keeps it too).
    expect(plain[0]?.id).toBe("img_scattered");

    const phrased = await store.textSearch({
      kind: "image",
      tenant: "acme",
      text,
      phrases: ["Connection   FAILED on port"],
      topK: 3,
    });
    expect(phrased.map((hit) => hit.id)).toEqual(["img_db_en"]);
  });

  it("looks further than topK for hits that have the phrase", async () => {
    // topK 1: the first BM25 hit passes the word prefilter but lacks the phrase, so the search widens.
    const hits = await store.textSearch({
      kind: "image",
      tenant: "acme",
      text: "connection failed port 5432",
      phrases: ["connection failed on port 5432"],
      topK: 1,
    });
    expect(hits.map((hit) => hit.id)).toEqual(["img_db_en"]);
  });

  it("matches Chinese and full-width phrases, and hostile phrase text finds nothing and breaks nothing", async () => {
    const zh = await store.textSearch({
      kind: "image",
      tenant: "acme",
      text: "数据库",
      phrases: ["数据库连接失败"],
      topK: 3,
    });
    expect(zh.map((hit) => hit.id)).toEqual(["img_db_zh"]);

    const wide = await store.textSearch({
      kind: "image",
      tenant: "acme",
      text: "license",
      phrases: ["Ｅ１２３４"],
      topK: 3,
    });
    expect(wide.map((hit) => hit.id)).toEqual(["img_license"]);

    // Punctuation does not count: OCR drops or changes it.
    const punctuated = await store.textSearch({
      kind: "image",
      tenant: "acme",
      text: "license",
      phrases: ["E-1234 license, expired"],
      topK: 3,
    });
    expect(punctuated.map((hit) => hit.id)).toEqual(["img_license"]);

    for (const hostile of ['") or tenant != "', 'a\\" or true or text_match(search_text, "', "\u0000\n\t"]) {
      const hits = await store.textSearch({
        kind: "image",
        tenant: "other",
        text: "database",
        phrases: [hostile],
        topK: 5,
      });
      for (const hit of hits) expect(hit.fields.tenant).toBe("other");
    }
  });

  it("finds a code written against Chinese text, and phrases OCR read with digits for letters", async () => {
    await store.upsert({
      kind: "image",
      tenant: "misread",
      records: [
        image("img_glued", axisVector(0), { ocrText: "02:58:16错误0x800776C3：网络不可达" }),
        image("img_digits", axisVector(1), { ocrText: "I0-45051: Limit of 75 requests per minute reached" }),
        image("img_other", axisVector(2), { ocrText: "0x800776C4 Limit of 76 requests" }),
      ],
    });
    const ids = async (text: string, phrases?: string[]) =>
      (
        await store.textSearch({
          kind: "image",
          tenant: "misread",
          text,
          topK: 3,
          ...(phrases === undefined ? {} : { phrases }),
        })
      ).map((hit) => hit.id);
    // jieba keeps "错误0x800776C3" as one token unless a space separates the scripts.
    expect(await ids("0x800776C3", ["0x800776C3"])).toEqual(["img_glued"]);
    expect((await ids("错误0x800776C3"))[0]).toBe("img_glued");
    // "IO" read as "I0" (or "10") is still the phrase; "75" against "76" is not.
    expect(await ids("IO-45051 limit of 75 requests", ["IO-45051: Limit of 75 requests"])).toEqual([
      "img_digits",
    ]);
    expect(await ids("10-45051 limit", ["10-45051"])).toEqual(["img_digits"]);
  });

  it("refuses an empty query text, too many phrases and an unknown ranker with a clear error", async () => {
    await expect(store.textSearch({ kind: "image", tenant: "acme", text: "   ", topK: 3 })).rejects.toThrow(
      /query text is empty/,
    );
    await expect(
      store.textSearch({ kind: "image", tenant: "acme", text: "x", phrases: Array(17).fill("a"), topK: 3 }),
    ).rejects.toBeInstanceOf(ValidationError);
    await expect(
      store.hybridSearch({
        kind: "image",
        tenant: "acme",
        text: "x",
        vector: axisVector(0),
        topK: 3,
        ranker: { type: "weighted", dense: 2, text: 0.5 },
      }),
    ).rejects.toThrow(/weights from 0 to 1/);
  });
});

describe("hybridSearch", () => {
  it("fuses the dense and the BM25 ranking with RRF: found by both beats found by one", async () => {
    const hits = await store.hybridSearch({
      kind: "image",
      tenant: "acme",
      vector: axisVector(0),
      text: "database connection failed",
      topK: 4,
      ranker: { type: "rrf", k: 60 },
    });
    expect(hits[0]?.id).toBe("img_db_en");
    expect(hits[0]?.score).toBeCloseTo(2 / 61, 5);
    // The dense side alone ranks the caption-only rows; RRF scores never exceed 2 / (k + 1).
    for (const hit of hits) expect(hit.score).toBeLessThanOrEqual(2 / 61 + 1e-6);
  });

  it("fuses normalized scores with weights: text weight 1 ranks as BM25, dense weight 1 as the vector", async () => {
    const textOnly = await store.hybridSearch({
      kind: "image",
      tenant: "acme",
      vector: axisVector(3),
      text: "license E1234",
      topK: 2,
      ranker: { type: "weighted", dense: 0, text: 1 },
    });
    expect(textOnly[0]?.id).toBe("img_license");
    const bm25 = await store.textSearch({ kind: "image", tenant: "acme", text: "license E1234", topK: 1 });
    expect(textOnly[0]?.score).toBeCloseTo((2 / Math.PI) * Math.atan(bm25[0]?.score ?? 0), 4);

    const denseOnly = await store.hybridSearch({
      kind: "image",
      tenant: "acme",
      vector: axisVector(3),
      text: "license E1234",
      topK: 2,
      ranker: { type: "weighted", dense: 1, text: 0 },
    });
    expect(denseOnly[0]?.id).toBe("img_caption");
    expect(denseOnly[0]?.score).toBeCloseTo(1, 4);
  });

  it("stays within the tenant and the filter, and honours phrases", async () => {
    const other = await store.hybridSearch({
      kind: "image",
      tenant: "other",
      vector: axisVector(1),
      text: "数据库连接失败 database",
      topK: 10,
      ranker: { type: "rrf", k: 60 },
    });
    expect(other.map((hit) => `${hit.fields.tenant}/${hit.id}`)).toEqual(["other/img_db_en"]);

    const filtered = await store.hybridSearch({
      kind: "image",
      tenant: "acme",
      vector: axisVector(0),
      text: "connection",
      topK: 10,
      filter: [{ field: "metadata.app", op: "eq", value: "shop" }],
      ranker: { type: "rrf", k: 60 },
    });
    expect(new Set(filtered.map((hit) => hit.id))).toEqual(new Set(["img_scattered", "img_phrase"]));

    const phrased = await store.hybridSearch({
      kind: "image",
      tenant: "acme",
      vector: axisVector(4),
      text: "connection refused",
      phrases: ["connection refused"],
      topK: 5,
      ranker: { type: "rrf", k: 60 },
    });
    expect(phrased.map((hit) => hit.id)).toEqual(["img_phrase"]);
  });
});

describe("triples", () => {
  it("searches a triple's question and answer", async () => {
    const triple: TripleRecord = {
      id: "tri_port",
      modelId: "clip-test",
      mediaRef: "blob/tri.png",
      source: "jsonl",
      imageVector: axisVector(0),
      questionVector: axisVector(1),
      question: "Which port does the service listen on?",
      answer: "It listens on 8443.",
    };
    await store.upsert({ kind: "triple", tenant: "acme", records: [triple] });
    const byAnswer = await store.textSearch({ kind: "triple", tenant: "acme", text: "8443", topK: 3 });
    expect(byAnswer.map((hit) => hit.id)).toEqual(["tri_port"]);
    const byQuestion = await store.hybridSearch({
      kind: "triple",
      tenant: "acme",
      vector: axisVector(1),
      vectorField: "question_vector",
      text: "listen port",
      topK: 1,
      ranker: { type: "rrf", k: 60 },
    });
    expect(byQuestion[0]?.fields.question).toBe(triple.question);
  });
});

describe("update", () => {
  it("rewrites OCR text and metadata, keeping ids and vectors; other tenants' and unknown ids are skipped", async () => {
    await store.upsert({
      kind: "image",
      tenant: "upd",
      records: [
        image("img_u1", axisVector(6), { text: "screenshot", createdAt: 1234, metadata: { a: 1 } }),
        image("img_u2", axisVector(7), { text: "photo" }),
      ],
    });
    await store.upsert({ kind: "image", tenant: "upd_other", records: [image("img_u1", axisVector(6))] });

    const result = await store.update({
      kind: "image",
      tenant: "upd",
      patches: [
        { id: "img_u1", ocrText: "Disk full: quota exceeded", metadata: { ocr: { lines: 1 } } },
        { id: "img_missing", ocrText: "nothing" },
      ],
    });
    expect(result).toEqual({ updated: 1 });
    expect(await store.count({ kind: "image", tenant: "upd" })).toBe(2);

    const [row] = await store.get({ kind: "image", tenant: "upd", ids: ["img_u1"] });
    expect(row).toMatchObject({
      id: "img_u1",
      text: "screenshot",
      createdAt: 1234,
      ocrText: "Disk full: quota exceeded",
      metadata: { ocr: { lines: 1 } },
    });
    const near = await store.search({ kind: "image", tenant: "upd", vector: axisVector(6), topK: 1 });
    expect(near[0]?.id).toBe("img_u1");
    expect(near[0]?.score).toBeCloseTo(1, 5);
    const found = await store.textSearch({ kind: "image", tenant: "upd", text: "quota", topK: 3 });
    expect(found.map((hit) => hit.id)).toEqual(["img_u1"]);

    // The other tenant's row with the same id is untouched, and an update cannot reach it.
    expect(
      await store.update({ kind: "image", tenant: "upd", patches: [{ id: "img_u2", ocrText: "x" }] }),
    ).toEqual({
      updated: 1,
    });
    const [untouched] = await store.get({ kind: "image", tenant: "upd_other", ids: ["img_u1"] });
    expect(untouched?.ocrText).toBe("");
    expect(await store.textSearch({ kind: "image", tenant: "upd_other", text: "quota", topK: 3 })).toEqual(
      [],
    );
  });

  it("refuses OCR text over its limit before writing anything", async () => {
    await expect(
      store.update({
        kind: "image",
        tenant: "upd",
        patches: [{ id: "img_u1", ocrText: "x".repeat(16_385) }],
      }),
    ).rejects.toThrow(/ocrText is 16385 bytes of UTF-8; the limit is 16384/);
  });
});
