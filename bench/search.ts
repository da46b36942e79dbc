/**
 * `npm run bench:search [-- options]`: insert time, search latency (p50 / p95) and Milvus Lite's memory at
 * each corpus size (`--sizes`, default 1000,10000), in one run, on an embedded Milvus Lite started for the
 * bench in a temporary directory.
 *
 * The corpus is made of real embeddings: `--real` Shapes World scenes (128 px) are rendered and embedded
 * once with the pack, and the rest of each corpus is those vectors with small Gaussian jitter
 * (σ = `--jitter` per dimension, then re-normalized), so 100k items do not cost 100k image embeddings.
 * Each corpus lives in its own collections (its own prefix) so the sizes do not mix; records are made and
 * written in chunks of `--chunk`, so a million of them never sit in memory at once.
 *
 * Per size:
 * - `insert s`: the upserts (images, then a tenth as many triples), flushes included;
 * - `count ms`: one count of the tenant's images; `flush s`: the final flush;
 * - `unflushed`: the store search right after the insert, over the first 20 queries (rows Lite has not
 *   indexed yet are scanned by brute force);
 * - `store`: one vector search of the image collection (topK 10), query vector precomputed;
 * - `1% filter`, `50% filter`: the same under a metadata filter matching 1 % / 50 % of the images, over
 *   the first `--filtered-queries` queries (Milvus Lite evaluates a JSON filter row by row, so these take
 *   long at 100k);
 * - `service`: the search service of Loupe's services (`assembleServices` over the size's store) as
 *   `POST /v1/search` runs it — text embedding, then the three kinds searched in parallel and merged
 *   (topK 10);
 * - `Lite MiB`: the resident memory (VmRSS) of the Milvus Lite process after the size's searches.
 * The first size is the baseline of the last lines, which give each later size's latencies as a multiple
 * of its (the machine's load moves absolute figures; the ratios within one run hold better).
 *
 * Options: --sizes <n,n,…>, --pack <dir>, --real <n> (default 500), --jitter <σ> (default 0.02),
 * --queries <n> (default 200), --filtered-queries <n> (default 40), --chunk <n> (default 10000),
 * --index AUTOINDEX|HNSW (default AUTOINDEX).
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { percentile } from "../src/eval/metrics/latency.ts";
import type { FilterSpec, ImageRecord, IndexType, TripleRecord } from "../src/store/index.ts";
import { createRng, describeScene, renderScene, sampleScene } from "../src/synth/index.ts";
import { type BenchServices, jittered, openBenchLoupe } from "./bench-loupe.ts";

const { values: args } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,10000" },
    pack: { type: "string" },
    real: { type: "string", default: "500" },
    jitter: { type: "string", default: "0.02" },
    queries: { type: "string", default: "200" },
    "filtered-queries": { type: "string", default: "40" },
    chunk: { type: "string", default: "10000" },
    index: { type: "string", default: "AUTOINDEX" },
  },
});

const packDir = resolve(args.pack ?? "models/shapes-world-tiny");
const realCount = Number.parseInt(args.real ?? "500", 10);
const jitter = Number.parseFloat(args.jitter ?? "0.02");
const queryCount = Number.parseInt(args.queries ?? "200", 10);
const chunkSize = Number.parseInt(args.chunk ?? "10000", 10);
const filteredQueryCount = Number.parseInt(args["filtered-queries"] ?? "40", 10);
const indexType = (args.index ?? "AUTOINDEX") as IndexType;
const SIZES = (args.sizes ?? "").split(",").map((size) => Number(size.trim()));
if (
  !(realCount >= 1) ||
  !(jitter >= 0) ||
  !(queryCount >= 1) ||
  !(chunkSize >= 1) ||
  !(filteredQueryCount >= 1) ||
  !["AUTOINDEX", "HNSW"].includes(indexType) ||
  SIZES.length === 0 ||
  !SIZES.every((size) => Number.isInteger(size) && size >= 10 && size <= 10_000_000)
) {
  throw new Error(
    "--sizes n,n,… (integers 10–10000000), --real ≥ 1, --jitter ≥ 0, --queries ≥ 1, --filtered-queries ≥ 1, --chunk ≥ 1, --index AUTOINDEX or HNSW.",
  );
}
const TENANT = "bench";
/** Matches 1 % of the images (metadata.bucket is the index mod 100). */
const ONE_PERCENT: FilterSpec = [{ field: "metadata.bucket", op: "eq", value: 7 }];
/** Matches half of the images. */
const HALF: FilterSpec = [{ field: "metadata.tags", op: "contains", value: "even" }];

function summarize(samples: number[]): { p50: number; p95: number } {
  return { p50: percentile({ values: samples, p: 50 }), p95: percentile({ values: samples, p: 95 }) };
}

/** Resident memory of a process in MiB, from `/proc/<pid>/status` (NaN where there is no /proc). */
async function residentMiB(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kib = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
    return kib / 1024;
  } catch {
    return Number.NaN;
  }
}

async function timed(samples: number[], run: () => Promise<unknown>): Promise<void> {
  const start = performance.now();
  await run();
  samples.push(performance.now() - start);
}

// Milvus Lite's searches slow down with the corpus and while it compacts and indexes in the background;
// the bench waits for them (MILVUS_TIMEOUT_MS of 10 s would fail a 100k run) and reports how long they took.
const bench = await openBenchLoupe({
  name: "search",
  packDir,
  env: { MILVUS_TIMEOUT_MS: "300000", MILVUS_LONG_TIMEOUT_MS: "600000" },
});
/** Progress on stderr, so a slow or failed size shows where it stands. */
const progress = (message: string) => process.stderr.write(`[${new Date().toISOString()}] ${message}\n`);
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
  console.log(`queries: ${queryCount} full descriptions; topK 10; latencies in ms (p50 / p95).\n`);
  console.log(
    "items     | insert s | count ms | flush s | unflushed | store         | 1% filter     | 50% filter    | service       | Lite MiB",
  );
  console.log(
    "--------- | -------- | -------- | ------- | --------- | ------------- | ------------- | ------------- | ------------- | --------",
  );
  const rows: Array<{ size: number; stats: Record<string, { p50: number; p95: number }> }> = [];
  const pair = ({ p50, p95 }: { p50: number; p95: number }) =>
    `${p50.toFixed(1).padStart(6)} / ${p95.toFixed(1).padEnd(6)}`;

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
    started = performance.now();
    for (let start = 0; start < size; start += chunkSize) {
      const records: ImageRecord[] = Array.from(
        { length: Math.min(chunkSize, size - start) },
        (_, offset) => {
          const index = start + offset;
          return {
            id: `img_${index.toString(16).padStart(32, "0")}`,
            modelId: pack.modelId,
            mediaRef: "bench",
            source: "bench",
            metadata: { tags: [index % 2 === 0 ? "even" : "odd"], bucket: index % 100 },
            vector: vectorAt(index),
          };
        },
      );
      await store.upsert({ kind: "image", tenant: TENANT, records });
    }
    // A tenth as many triples, so the service's three-kind search has something in each collection.
    const tripleCount = Math.max(1, Math.floor(size / 10));
    for (let start = 0; start < tripleCount; start += chunkSize) {
      const triples: TripleRecord[] = Array.from(
        { length: Math.min(chunkSize, tripleCount - start) },
        (_, offset) => {
          const index = start + offset;
          return {
            id: `tri_${index.toString(16).padStart(32, "0")}`,
            modelId: pack.modelId,
            mediaRef: "bench",
            source: "bench",
            question: queryTexts[index % queryTexts.length] ?? "",
            answer: "yes",
            imageVector: vectorAt(index),
            questionVector: questionVectors[index % questionVectors.length] as Float32Array,
          };
        },
      );
      await store.upsert({ kind: "triple", tenant: TENANT, records: triples });
    }
    const insertSeconds = (performance.now() - started) / 1000;
    progress(
      `${size}: inserted in ${insertSeconds.toFixed(1)} s; Lite ${(await residentMiB(bench.milvusPid)).toFixed(0)} MiB`,
    );
    started = performance.now();
    const counted = await store.count({ kind: "image", tenant: TENANT });
    const countMs = performance.now() - started;
    if (counted !== size) throw new Error(`expected ${size} images in the store, counted ${counted}`);

    const unflushedSamples: number[] = [];
    for (const vector of queryVectors.slice(0, 20)) {
      await timed(unflushedSamples, () =>
        store.search({ kind: "image", tenant: TENANT, vector: vector as Float32Array, topK: 10 }),
      );
    }
    progress(`${size}: counted in ${countMs.toFixed(0)} ms; unflushed searches done`);
    started = performance.now();
    await bench.flush({ prefix, kinds: ["image", "triple"] });
    const flushSeconds = (performance.now() - started) / 1000;
    // Warm-up: the first searches after the flush load the sealed segments.
    for (const vector of queryVectors.slice(0, 5)) {
      await store.search({ kind: "image", tenant: TENANT, vector: vector as Float32Array, topK: 10 });
    }
    const samples: Record<string, number[]> = { store: [], one: [], half: [], service: [] };
    for (const [index, vector] of queryVectors.entries()) {
      const query = { kind: "image" as const, tenant: TENANT, vector: vector as Float32Array, topK: 10 };
      await timed(samples.store as number[], () => store.search(query));
      if (index >= filteredQueryCount) continue;
      await timed(samples.one as number[], () => store.search({ ...query, filter: ONE_PERCENT }));
      await timed(samples.half as number[], () => store.search({ ...query, filter: HALF }));
    }
    progress(`${size}: store searches done`);
    for (const text of queryTexts) {
      await timed(samples.service as number[], () =>
        services.search.search({ tenant: TENANT, text, topK: 10 }),
      );
    }
    const rssMiB = await residentMiB(bench.milvusPid);
    const stats = Object.fromEntries(
      Object.entries(samples).map(([name, values]) => [name, summarize(values)]),
    );
    rows.push({ size, stats });
    const unflushed = summarize(unflushedSamples);
    console.log(
      `${String(size).padEnd(9)} | ${insertSeconds.toFixed(1).padStart(8)} | ${countMs.toFixed(0).padStart(8)} | ` +
        `${flushSeconds.toFixed(1).padStart(7)} | ${unflushed.p50.toFixed(1).padStart(9)} | ` +
        `${["store", "one", "half", "service"].map((name) => pair(stats[name] ?? { p50: Number.NaN, p95: Number.NaN })).join(" | ")} | ` +
        `${rssMiB.toFixed(0).padStart(8)}`,
    );
  }
  const [baseline, ...later] = rows;
  if (baseline !== undefined && later.length > 0) {
    console.log(`\np50 as a multiple of the ${baseline.size}-item baseline of this run:`);
    for (const { size, stats } of later) {
      const ratio = (name: string) =>
        ((stats[name]?.p50 ?? Number.NaN) / (baseline.stats[name]?.p50 ?? Number.NaN)).toFixed(2);
      console.log(
        `${size}: store ×${ratio("store")}, 1% filter ×${ratio("one")}, 50% filter ×${ratio("half")}, service ×${ratio("service")}`,
      );
    }
  }
} finally {
  await bench.close();
}
