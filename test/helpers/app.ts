/**
 * The app for route tests that run in-process without Milvus or a model pack: every service is wired
 * by `assembleServices` as in production, over a store and a pack that fail if a route reaches them
 * (unless the test hands in its own). Tests that need the real store and pack use
 * `test/ingest/harness.ts` or `startLoupe`.
 */
import os from "node:os";
import path from "node:path";
import { createApp } from "../../src/app.ts";
import { createFileKeyStore } from "../../src/auth/file-key-store.ts";
import { parseConfig } from "../../src/config.ts";
import { unavailableModelPack } from "../../src/inference/unavailable-model-pack.ts";
import { createJobRegistry } from "../../src/ingest/jobs.ts";
import { createLogger, type Logger } from "../../src/logger.ts";
import { createFsBlobStore } from "../../src/media/blob-store.ts";
import {
  assembleServices,
  createLoupeServices,
  type LoupeServices,
  type OpenLoupeServices,
  type ServiceParts,
} from "../../src/services.ts";
import { TENANT_PATTERN, type VectorStore } from "../../src/store/index.ts";

/** A store whose every use fails: routes under test must not reach it. */
export const unusedStore = new Proxy({} as VectorStore, {
  get() {
    throw new Error("the store is not used by these tests");
  },
});

/** Options of {@link makeTestServices}: configuration from `env`, any part replaced. */
export interface TestServicesOptions extends Partial<Omit<ServiceParts, "config">> {
  env?: Record<string, string>;
  logger?: Logger;
}

/**
 * Services wired as in production over test parts; blobs go to a temporary directory never written. Without
 * `LOUPE_DATA_DIR` the key store is an empty one in a temporary directory, not `./data`'s (where a
 * developer's `loupe keys create` would turn authentication on for these tests).
 */
export function makeTestServices({ env = {}, ...parts }: TestServicesOptions = {}): LoupeServices {
  const config = parseConfig({ env });
  return assembleServices({
    config,
    logger: createLogger({ level: "silent" }),
    store: unusedStore,
    models: unavailableModelPack("not used by these tests"),
    blobs: createFsBlobStore({ dir: path.join(os.tmpdir(), "loupe-route-test-blobs") }),
    jobs: createJobRegistry(),
    keys:
      env.LOUPE_DATA_DIR === undefined
        ? createFileKeyStore({
            dir: path.join(os.tmpdir(), `loupe-route-test-keys-${process.pid}`),
            tenantPattern: TENANT_PATTERN,
          })
        : undefined,
    ...parts,
  });
}

/** The app over {@link makeTestServices}. */
export function makeTestApp(options: TestServicesOptions = {}) {
  return createApp(makeTestServices(options));
}

/** Loupe's services as `loupe serve` builds them, configured by `env` (for in-process tests). */
export function openTestServices({
  env,
  cwd,
  logger = createLogger({ level: "silent" }),
}: {
  env: Record<string, string | undefined>;
  cwd?: string;
  logger?: Logger;
}): Promise<OpenLoupeServices> {
  return createLoupeServices({ config: parseConfig({ env, cwd }), logger });
}
