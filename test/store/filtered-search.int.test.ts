/**
 * Filtered search against a real Milvus Lite: 2,000 random unit vectors in one sealed, HNSW-indexed
 * segment, with metadata that filters match exactly 1, 10, 111 and 1,500 rows, and a second tenant of 50
 * rows in the same segment. Milvus Lite's own filtered search comes back short here; the store's must
 * return `min(topK, matches)` hits that agree with a brute-force cosine scan of the same vectors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectionName,
  createMilvusClient,
  createVectorStore,
  type FilterSpec,
  type ImageRecord,
  type MilvusVectorStore,
} from "../../src/store/index.ts";
import { createRng } from "../../src/synth/index.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";

const DIM = 64;
const ITEMS = 2000;
const SET_SIZES = [1, 10, 111, 1500] as const;
const TOP_KS = [1, 10, 100, 1024] as const;
const QUERIES = 4;
const TENANT = "acme";
const SMALL_TENANT = "small";
/** Cosine scores agree to float32 precision: Milvus Lite scores in float32, this test in float64. */
const SCORE_TOLERANCE = 1e-5;

const rng = createRng(7);

function unitVector(): number[] {
  const values = Array.from({ length: DIM }, () => {
    const u = 1 - rng.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  });
  const norm = Math.hypot(...values);
  return values.map((value) => value / norm);
}

function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let index = 0; index < a.length; index += 1) {
    const x = a[index] ?? 0;
    const y = b[index] ?? 0;
    dot += x * y;
    normA += x * x;
    normB += y * y;
  }
  return dot / Math.sqrt(normA * normB);
}

/** Members of each set: disjoint slices of a shuffled index list (the 1,500 overlap none of the others). */
function shuffledIndexes(): number[] {
  const indexes = Array.from({ length: ITEMS }, (_, index) => index);
  for (let index = indexes.length - 1; index > 0; index -= 1) {
    const other = Math.floor(rng.next() * (index + 1));
    [indexes[index], indexes[other]] = [indexes[other] ?? 0, indexes[index] ?? 0];
  }
  return indexes;
}

let lite: TestMilvusLite;
let store: MilvusVectorStore;
const prefix = uniquePrefix("filtered");
const vectors = Array.from({ length: ITEMS }, unitVector);
const order = shuffledIndexes();
const members: Record<number, Set<number>> = {
  1: new Set(order.slice(0, 1)),
  10: new Set(order.slice(1, 11)),
  111: new Set(order.slice(11, 122)),
  1500: new Set(order.slice(500)),
};
const filterFor = (size: number): FilterSpec => [{ field: `metadata.in${size}`, op: "eq", value: 1 }];
const idOf = (index: number) => `img_${String(index).padStart(4, "0")}`;
const smallVectors = Array.from({ length: 50 }, unitVector);

beforeAll(async () => {
  lite = await startTestMilvusLite();
  // No flush while writing: the test flushes once, so every row lands in one sealed segment.
  store = await createVectorStore({
    address: lite.address,
    collectionPrefix: prefix,
    dimension: DIM,
    timeoutMs: 30_000,
    flushEveryRows: 1_000_000,
  });
  const records: ImageRecord[] = vectors.map((vector, index) => ({
    id: idOf(index),
    modelId: "test",
    mediaRef: "none",
    source: "test",
    vector,
    metadata: Object.fromEntries(SET_SIZES.map((size) => [`in${size}`, members[size]?.has(index) ? 1 : 0])),
  }));
  await store.upsert({ kind: "image", tenant: TENANT, records });
  await store.upsert({
    kind: "image",
    tenant: SMALL_TENANT,
    records: smallVectors.map((vector, index) => ({
      id: idOf(index),
      modelId: "test",
      mediaRef: "none",
      source: "test",
      vector,
    })),
  });
  const client = createMilvusClient({ address: lite.address, timeoutMs: 60_000 });
  const collection = collectionName({ prefix, kind: "image" });
  try {
    await client.flushSync({ collection_names: [collection] });
    // Milvus Lite builds the segment's HNSW index in the background after a flush; until then it scans
    // the segment exactly. Wait for the index: Lite's own search of the 111-row set comes back short.
    const deadline = Date.now() + 40_000;
    for (;;) {
      const raw = await client.search({
        collection_name: collection,
        data: vectors[0] ?? [],
        anns_field: "vector",
        limit: 100,
        metric_type: "COSINE",
        filter: `tenant == "${TENANT}" and (metadata["in111"] == 1)`,
        output_fields: ["id"],
      });
      if ((raw.results ?? []).length < 100) break;
      if (Date.now() > deadline) throw new Error("Milvus Lite did not index the sealed segment within 40 s");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    await client.closeConnection();
  }
}, 90_000);

afterAll(async () => {
  await store?.close();
  await lite?.dispose();
});

/** Checks hits against the exact ranking of `candidates` (indexes into `pool`) for `query`. */
function expectExact({
  hits,
  query,
  candidates,
  pool,
  topK,
}: {
  hits: Array<{ id: string; score: number }>;
  query: readonly number[];
  candidates: readonly number[];
  pool: readonly number[][];
  topK: number;
}): void {
  const exact = candidates
    .map((index) => ({ id: idOf(index), score: cosine(query, pool[index] ?? []) }))
    .sort((a, b) => b.score - a.score);
  const want = exact.slice(0, topK);
  expect(hits.length).toBe(want.length);
  if (hits.length !== want.length) return;
  const byId = new Map(exact.map((entry) => [entry.id, entry.score]));
  expect(new Set(hits.map((hit) => hit.id)).size).toBe(hits.length);
  hits.forEach((hit, rank) => {
    const trueScore = byId.get(hit.id);
    // Every hit passes the filter, its score is its cosine, and it sits where the exact ranking puts
    // that score (an id may differ from the exact one only on a tie).
    expect(trueScore).toBeDefined();
    expect(Math.abs(hit.score - (trueScore ?? 0))).toBeLessThan(SCORE_TOLERANCE);
    expect(Math.abs((trueScore ?? 0) - (want[rank]?.score ?? 0))).toBeLessThan(SCORE_TOLERANCE);
  });
}

describe("filtered search on Milvus Lite", () => {
  it("returns min(topK, matches) hits, agreeing with a brute-force scan, for every set size and topK", async () => {
    const queries = Array.from({ length: QUERIES }, unitVector);
    for (const size of SET_SIZES) {
      const candidates = [...(members[size] ?? [])];
      expect(candidates).toHaveLength(size);
      for (const topK of TOP_KS) {
        for (const query of queries) {
          const hits = await store.search({
            kind: "image",
            tenant: TENANT,
            vector: query,
            topK,
            filter: filterFor(size),
          });
          expect(hits.length, `set ${size}, topK ${topK}`).toBe(Math.min(topK, size));
          expectExact({ hits, query, candidates, pool: vectors, topK });
        }
      }
    }
  }, 60_000);

  it("beyond the exact-scan size, completes the index's short answers: min(topK, matches) hits, best first", async () => {
    // A store over the same collections whose filtered searches start narrow (ef 64, short under these
    // filters) and that scans no set above 50 rows at once: it must widen the search until full.
    const indexed = await createVectorStore({
      address: lite.address,
      collectionPrefix: prefix,
      dimension: DIM,
      timeoutMs: 30_000,
      exactScanMaxRows: 50,
      filteredSearchBreadth: 64,
    });
    try {
      const query = unitVector();
      for (const size of [111, 1500]) {
        for (const topK of [10, 100, 1024]) {
          const hits = await indexed.search({
            kind: "image",
            tenant: TENANT,
            vector: query,
            topK,
            filter: filterFor(size),
          });
          expect(hits.length, `set ${size}, topK ${topK}`).toBe(Math.min(topK, size));
          expect(new Set(hits.map((hit) => hit.id)).size).toBe(hits.length);
          const allowed = new Set([...(members[size] ?? [])].map(idOf));
          for (const [rank, hit] of hits.entries()) {
            expect(allowed.has(hit.id)).toBe(true);
            expect(hit.fields.metadata[`in${size}`]).toBe(1);
            if (rank > 0)
              expect(hit.score).toBeLessThanOrEqual((hits[rank - 1]?.score ?? 1) + SCORE_TOLERANCE);
          }
        }
      }
    } finally {
      await indexed.close();
    }
  }, 30_000);

  it("finds every row of a small tenant sharing the segment with a large one", async () => {
    const query = unitVector();
    for (const topK of [10, 100]) {
      const hits = await store.search({ kind: "image", tenant: SMALL_TENANT, vector: query, topK });
      expectExact({
        hits,
        query,
        candidates: smallVectors.map((_, index) => index),
        pool: smallVectors,
        topK,
      });
    }
  });

  it("counts each tenant's rows, alone in a collection or sharing it", async () => {
    expect(await store.count({ kind: "image", tenant: TENANT })).toBe(ITEMS);
    expect(await store.count({ kind: "image", tenant: SMALL_TENANT })).toBe(50);
    expect(await store.count({ kind: "video_segment", tenant: TENANT })).toBe(0);
  });
});
