/**
 * Test harness for ingestion: Loupe's app in-process over a real Milvus Lite and the real model pack,
 * with the services at hand so tests can look at the store and the blob store directly.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Hono } from "hono";
import { createApp } from "../../src/app.ts";
import { type Config, parseConfig } from "../../src/config.ts";
import type { AppEnv } from "../../src/http/context.ts";
import type { TenantResolver } from "../../src/http/tenant.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/index.ts";
import type { OcrEngine } from "../../src/inference/ocr/ocr-engine.ts";
import { createJobRegistry, type JobRegistry } from "../../src/ingest/jobs.ts";
import { createLogger } from "../../src/logger.ts";
import { createFsBlobStore, type FsBlobStore } from "../../src/media/blob-store.ts";
import { assembleServices, type LoupeServices } from "../../src/services.ts";
import { createVectorStore, type MilvusVectorStore } from "../../src/store/index.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../../src/synth/index.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";

export const ROOT = path.join(import.meta.dirname, "..", "..");

/** Header the harness reads the tenant from (the app's resolver decides it; tests pick one). */
export const TENANT_HEADER = "x-test-tenant";

/** A running harness. */
export interface IngestHarness {
  app: Hono<AppEnv>;
  config: Config;
  store: MilvusVectorStore;
  models: ModelPack;
  blobs: FsBlobStore;
  jobs: JobRegistry;
  services: LoupeServices;
  milvus: TestMilvusLite;
  dataDir: string;
  dispose(): Promise<void>;
}

/** Starts Milvus Lite, loads the pack and builds the app. `env` overrides settings. */
export async function startIngestHarness({
  name,
  env = {},
  ocr,
}: {
  name: string;
  env?: Record<string, string>;
  /** The OCR engine ingest and the backfill read text with; none when absent. */
  ocr?: OcrEngine;
}): Promise<IngestHarness> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-ingest-test-"));
  const milvus = await startTestMilvusLite();
  const config = parseConfig({
    env: { LOUPE_DATA_DIR: dataDir, LOUPE_LOG_LEVEL: "silent", ...env },
    cwd: ROOT,
  });
  const logger = createLogger({ level: "silent" });
  const models = await loadModelPack({
    dir: config.modelPack,
    imageLimits: {
      maxInputBytes: config.maxImageBytes,
      maxInputPixels: config.maxImagePixels,
      maxFrames: config.maxImageFrames,
    },
  });
  const store = await createVectorStore({
    address: milvus.address,
    collectionPrefix: uniquePrefix(name),
    dimension: models.dimension,
  });
  const blobs = createFsBlobStore({ dir: path.join(dataDir, "blobs") });
  const jobs = createJobRegistry();
  const resolveTenant: TenantResolver = (c) => c.req.header(TENANT_HEADER) ?? config.defaultTenant;
  const services = assembleServices({
    config,
    logger,
    store,
    models,
    blobs,
    jobs,
    resolveTenant,
    ...(ocr === undefined ? {} : { ocr }),
  });
  const app = createApp(services);
  return {
    app,
    config,
    store,
    models,
    blobs,
    jobs,
    services,
    milvus,
    dataDir,
    async dispose() {
      await jobs.close();
      await store.close();
      await models.close();
      await milvus.dispose();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Renders `count` distinct Shapes World images (seeded). */
export async function renderShapes({
  count,
  seed = 1,
  size = 128,
  format = "jpeg",
}: {
  count: number;
  seed?: number;
  size?: number;
  format?: "jpeg" | "png" | "webp";
}): Promise<Buffer[]> {
  const images: Buffer[] = [];
  for (let index = 0; index < count; index += 1) {
    const scene = sampleScene(createRng(deriveSeed(seed, "scene", index)));
    const rendered = await renderScene(scene, { size, format, seed: deriveSeed(seed, "render", index) });
    images.push(rendered.data);
  }
  return images;
}

/** A multipart body with the images as `files` (and optional `metadata` fields). */
export function multipart({
  files,
  metadata = [],
}: {
  files: Array<{ name: string; bytes: Uint8Array; type?: string }>;
  metadata?: unknown[];
}): FormData {
  const form = new FormData();
  for (const file of files) {
    form.append(
      "files",
      new File([new Uint8Array(file.bytes)], file.name, { type: file.type ?? "image/jpeg" }),
    );
  }
  for (const value of metadata) form.append("metadata", JSON.stringify(value));
  return form;
}
