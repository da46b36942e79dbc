/**
 * An in-process Loupe for an eval run: Loupe's services over a fresh embedded Milvus Lite in a temporary
 * data dir, with its app wrapped in the same HTTP client a run against a server uses.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../../app.ts";
import { createLogger } from "../../logger.ts";
import { createHttpClient, type LoupeClient } from "./client.ts";
import { openLoupeServices } from "./loupe-services.ts";

/** The pack's id, or a note that it could not be loaded (every case will then fail with `not_ready`). */
function packIdOf(models: { readonly modelId: string }): string {
  try {
    return models.modelId;
  } catch {
    return "(not loaded)";
  }
}

/** An in-process Loupe for a run: embedded Milvus Lite in a temporary data dir, removed by `close`. */
export interface InProcessLoupe {
  client: LoupeClient;
  modelPack: string;
  close(): Promise<void>;
}

/**
 * Starts Loupe's services in this process over a fresh embedded Milvus Lite in a temporary data dir (never
 * the configured `LOUPE_DATA_DIR`; `MILVUS_ADDRESS` is ignored) and wraps its app in a client.
 */
export async function openInProcessLoupe({
  env = process.env,
  cwd,
}: {
  env?: Record<string, string | undefined>;
  cwd?: string;
} = {}): Promise<InProcessLoupe> {
  const dataDir = await mkdtemp(join(tmpdir(), "loupe-eval-data-"));
  const { MILVUS_ADDRESS: _external, ...rest } = env;
  try {
    const opened = await openLoupeServices({
      env: { ...rest, LOUPE_DATA_DIR: dataDir },
      ...(cwd === undefined ? {} : { cwd }),
      logger: createLogger({ level: "error" }),
    });
    const app = createApp(opened);
    let closing: Promise<void> | undefined;
    return {
      client: createHttpClient({
        target: "in-process",
        fetch: async (path, init) => app.request(path, init),
      }),
      modelPack: packIdOf(opened.models),
      close: () => {
        closing ??= opened.close().finally(() => rm(dataDir, { recursive: true, force: true }));
        return closing;
      },
    };
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}
