/**
 * `npm run bench:search [-- options]`: search latency (p50 / p95) at 1k and 10k indexed items, in one
 * run, on an embedded Milvus Lite started for the bench in a temporary directory.
 *
 * The corpus is made of real embeddings: `--real` Shapes World scenes (128 px) are rendered and embedded
 * once with the pack, and the rest of each corpus is those vectors with small Gaussian jitter
 * (σ = `--jitter` per dimension, then re-normalized), so 10k items do not cost 10k image embeddings.
 * Each corpus lives in its own collections (its own prefix) so the sizes do not mix.
 *
 * Latencies per size, over `--queries` text queries (full Shapes World descriptions):
 * - `store`: one vector search of the image collection (topK 10), query vector precomputed;
 * - `service`: the search service of Loupe's services (`assembleServices` over the size's store) as
 *   `POST /v1/search` runs it — text embedding, then the three kinds searched in parallel and merged
 *   (topK 10).
 * Both are measured after a flush. Milvus Lite searches rows that are not flushed yet (its growing
 * segment) by brute force, which is far slower; `unflushed` is the store search measured right after the
 * insert, before the flush, over the first 20 queries.
 *
 * Options: --pack <dir>, --real <n> (default 500), --jitter <σ> (default 0.02), --queries <n> (default 200),
 * --index AUTOINDEX|HNSW (default AUTOINDEX).
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { percentile } from "../src/eval/metrics/latency.ts";
import type { ImageRecord, IndexType, TripleRecord } from "../src/store/index.ts";
import { createRng, describeScene, renderScene, sampleScene } from "../src/synth/index.ts";
import { type BenchServices, jittered, openBenchLoupe } from "./bench-loupe.ts";

const { values: args } = parseArgs({
  options: {
    pack: { type: "string" },
    real: { type: "string", default: "500" },
    jitter: { type: "string", default: "0.02" },
    queries: { type: "string", default: "200" },
    index: { type: "string", default: "AUTOINDEX" },
  },
});

const packDir = resolve(args.pack ?? "models/shapes-world-tiny");
const realCount = Number.parseInt(args.real ?? "500", 10);
const jitter = Number.parseFloat(args.jitter ?? "0.02");
const queryCount = Number.parseInt(args.queries ?? "200", 10);
const indexType = (args.index ?? "AUTOINDEX") as IndexType;
if (!(realCount >= 1) || !(jitter >= 0) || !(queryCount >= 1) || !["AUTOINDEX", "HNSW"].includes(indexType)) {
  throw new Error("--real ≥ 1, --jitter ≥ 0, --queries ≥ 1, --index AUTOINDEX or HNSW.");
}
const SIZES = [1000, 10_000];
const TENANT = "bench";

function summarize(samples: number[]): { p50: number; p95: number } {
  return { p50: percentile({ values: samples, p: 50 }), p95: percentile({ values: samples, p: 95 }) };
}

const bench = await openBenchLoupe({ name: "search", packDir });
const pack = bench.models;
try {
  const rng = createRng(2024);
  const scenes = Array.from({ length: realCount }, () => sampleScene(rng));
  let started = performance.now();
  const images = await Promise.all(
    scenes.map((scene, index) => renderScene(scene, { size: 128, format: "png", seed: index })),
  );
  const renderSeconds = (performance.now() - started) / 1000;
  started = performance.now();
  const vectors = await pack.imageEmbedder.embed({ images: images.map((image) => image.data) });
  const embedSeconds = (performance.now() - started) / 1000;
  const queryTexts = Array.from(
    { length: queryCount },
    (_, index) => describeScene(scenes[index % scenes.length] ?? sampleScene(rng), rng).text,
  );
  const questionVectors = await pack.textEmbedder.embed({ texts: queryTexts.slice(0, realCount) });
  const queryVectors = await pack.textEmbedder.embed({ texts: queryTexts });

  console.log(
    `corpus: ${realCount} Shapes World images rendered (${renderSeconds.toFixed(1)} s) and embedded ` +
      `(${embedSeconds.toFixed(1)} s, ${(realCount / embedSeconds).toFixed(0)} img/s); larger corpora reuse them ` +
      `with jitter σ=${jitter}. Index ${indexType}, metric COSINE, dimension ${pack.dimension}, Milvus Lite.`,
  );
  console.log(`queries: ${queryCount} full descriptions; topK 10; latencies in ms.\n`);
  console.log("items   | unflushed p50 | store p50 | store p95 | service p50 | service p95 | insert s");
  console.log("------- | ------------- | --------- | --------- | ----------- | ----------- | --------");

  for (const size of SIZES) {
    const prefix = `bench_${size}`;
    const services: BenchServices = await bench.servicesFor({ prefix, indexType });
    const { store } = services;
    const jitterRng = createRng(size);
    const random = () => jitterRng.next();
    const vectorAt = (index: number) => {
      const base = vectors[index % vectors.length] as Float32Array;
      return index < vectors.length ? base : jittered({ base, sigma: jitter, random });
    };
    const records: ImageRecord[] = Array.from({ length: size }, (_, index) => ({
      id: `img_${index.toString(16).padStart(32, "0")}`,
      modelId: pack.modelId,
      mediaRef: "bench",
      source: "bench",
      metadata: { tags: [index % 2 === 0 ? "even" : "odd"] },
      vector: vectorAt(index),
    }));
    // A tenth as many triples, so the service's three-kind search has something in each collection.
    const triples: TripleRecord[] = Array.from({ length: size / 10 }, (_, index) => ({
      id: `tri_${index.toString(16).padStart(32, "0")}`,
      modelId: pack.modelId,
      mediaRef: "bench",
      source: "bench",
      question: queryTexts[index % queryTexts.length] ?? "",
      answer: "yes",
      imageVector: vectorAt(index),
      questionVector: questionVectors[index % questionVectors.length] as Float32Array,
    }));
    started = performance.now();
    await store.upsert({ kind: "image", tenant: TENANT, records });
    await store.upsert({ kind: "triple", tenant: TENANT, records: triples });
    const insertSeconds = (performance.now() - started) / 1000;
    const counted = await store.count({ kind: "image", tenant: TENANT });
    if (counted !== size) throw new Error(`expected ${size} images in the store, counted ${counted}`);

    const unflushedSamples: number[] = [];
    for (const vector of queryVectors.slice(0, 20)) {
      const start = performance.now();
      await store.search({ kind: "image", tenant: TENANT, vector: vector as Float32Array, topK: 10 });
      unflushedSamples.push(performance.now() - start);
    }
    await bench.flush({ prefix, kinds: ["image", "triple"] });
    // Warm-up: the first searches after the flush load the sealed segments.
    for (const vector of queryVectors.slice(0, 5)) {
      await store.search({ kind: "image", tenant: TENANT, vector: vector as Float32Array, topK: 10 });
    }
    const storeSamples: number[] = [];
    for (const vector of queryVectors) {
      const start = performance.now();
      await store.search({ kind: "image", tenant: TENANT, vector: vector as Float32Array, topK: 10 });
      storeSamples.push(performance.now() - start);
    }
    const serviceSamples: number[] = [];
    for (const text of queryTexts) {
      const start = performance.now();
      await services.search.search({ tenant: TENANT, text, topK: 10 });
      serviceSamples.push(performance.now() - start);
    }
    const unflushed = summarize(unflushedSamples);
    const storeStats = summarize(storeSamples);
    const serviceStats = summarize(serviceSamples);
    console.log(
      `${String(size).padEnd(7)} | ${unflushed.p50.toFixed(2).padStart(13)} | ${storeStats.p50.toFixed(2).padStart(9)} | ${storeStats.p95.toFixed(2).padStart(9)} | ` +
        `${serviceStats.p50.toFixed(2).padStart(11)} | ${serviceStats.p95.toFixed(2).padStart(11)} | ${insertSeconds.toFixed(1).padStart(8)}`,
    );
  }
} finally {
  await bench.close();
}
