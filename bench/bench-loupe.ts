/**
 * What the benchmarks that measure Loupe's services share: a temporary work directory with an embedded
 * Milvus Lite and the model pack, and Loupe's services wired over them by `assembleServices` (the same
 * search, ingesters and chain `loupe serve` builds), each set over a store with its own collection prefix
 * so a bench can hold corpora of several sizes, or fresh collections per round, side by side.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Config, parseConfig } from "../src/config.ts";
import { loadModelPack, type ModelPack } from "../src/inference/model-pack.ts";
import { createJobRegistry, type JobRegistry } from "../src/ingest/jobs.ts";
import { createLogger } from "../src/logger.ts";
import { type BlobStore, createFsBlobStore } from "../src/media/blob-store.ts";
import { assembleServices, type LoupeServices } from "../src/services.ts";
import {
  collectionName,
  createMilvusClient,
  createVectorStore,
  type IndexType,
  type MilvusVectorStore,
  type RecordKind,
} from "../src/store/index.ts";
import { startMilvusLite } from "../src/store/milvus-lite.ts";

/** The repository root, for the bundled pack and the Milvus Lite venv. */
export const ROOT = resolve(import.meta.dirname, "..");

/** Loupe's services over a store with a bench-specific collection prefix. */
export type BenchServices = LoupeServices & { store: MilvusVectorStore };

/** A bench's Loupe: see the module comment. */
export interface BenchLoupe {
  /** The temporary work directory, removed by `close`. */
  work: string;
  /** The configuration the services are wired with (data dir in `work`, the bench's pack). */
  config: Config;
  models: ModelPack;
  /** Process id of the bench's Milvus Lite (for its memory, in `/proc/<pid>/status`). */
  milvusPid: number;
  /** Services over a fresh store `prefix`_…, with the blob store given or one of their own under `work`. */
  servicesFor(options: { prefix: string; indexType?: IndexType; blobs?: BlobStore }): Promise<BenchServices>;
  /** Flushes the prefix's collections, so Milvus Lite searches them as sealed segments. */
  flush(options: { prefix: string; kinds: readonly RecordKind[] }): Promise<void>;
  /** Closes the stores, the pack and Milvus Lite, and removes `work`. */
  close(): Promise<void>;
}

/**
 * Starts Milvus Lite in a temporary directory named after the bench, loads the pack (`threads` intra-op
 * threads, 0: onnxruntime's choice) and parses the configuration from `env` over those.
 */
export async function openBenchLoupe({
  name,
  packDir,
  threads = 0,
  env = {},
}: {
  name: string;
  packDir: string;
  threads?: number;
  env?: Record<string, string>;
}): Promise<BenchLoupe> {
  const work = await mkdtemp(join(tmpdir(), `loupe-bench-${name}-`));
  const milvus = await startMilvusLite({ dataDir: join(work, "milvus"), venvDir: join(ROOT, ".venv") });
  const models = await loadModelPack({ dir: packDir, sessionOptions: { intraOpNumThreads: threads } });
  const config = parseConfig({
    env: { LOUPE_DATA_DIR: join(work, "data"), LOUPE_MODEL_PACK: packDir, ...env },
    cwd: ROOT,
  });
  const logger = createLogger({ level: "silent" });
  const stores: MilvusVectorStore[] = [];
  const registries: JobRegistry[] = [];
  return {
    work,
    config,
    models,
    milvusPid: milvus.pid,
    async servicesFor({ prefix, indexType, blobs }) {
      const store = await createVectorStore({
        address: milvus.address,
        dimension: models.dimension,
        collectionPrefix: prefix,
        timeoutMs: config.milvusTimeoutMs,
        longTimeoutMs: config.milvusLongTimeoutMs,
        ...(indexType === undefined ? {} : { indexType }),
      });
      stores.push(store);
      const jobs = createJobRegistry();
      registries.push(jobs);
      const services = assembleServices({
        config,
        logger,
        store,
        models,
        blobs: blobs ?? createFsBlobStore({ dir: join(work, `blobs-${prefix}`) }),
        jobs,
      });
      return { ...services, store };
    },
    async flush({ prefix, kinds }) {
      const client = createMilvusClient({ address: milvus.address });
      try {
        await client.flushSync({ collection_names: kinds.map((kind) => collectionName({ prefix, kind })) });
      } finally {
        await client.closeConnection();
      }
    },
    async close() {
      for (const jobs of registries) await jobs.close();
      for (const store of stores) await store.close();
      await models.close();
      await milvus.stop();
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** A unit vector near `base`: Gaussian noise of σ = `sigma` per dimension (Box–Muller), then normalized. */
export function jittered({
  base,
  sigma,
  random,
}: {
  base: Float32Array;
  sigma: number;
  random: () => number;
}): Float32Array {
  const out = new Float32Array(base.length);
  let norm = 0;
  for (let index = 0; index < base.length; index += 1) {
    const gaussian = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    const value = (base[index] ?? 0) + sigma * gaussian;
    out[index] = value;
    norm += value * value;
  }
  const scale = 1 / Math.sqrt(norm);
  for (let index = 0; index < out.length; index += 1) out[index] = (out[index] ?? 0) * scale;
  return out;
}
