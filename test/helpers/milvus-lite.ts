/**
 * Test helper: a real Milvus Lite on a free loopback port, with its data in a temporary directory.
 * Start one per test file in `beforeAll` and dispose of it in `afterAll`; use a distinct collection
 * prefix per test (see {@link uniquePrefix}) when tests in one file must not see each other's rows.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { findFreePort } from "../../src/store/free-port.ts";
import { startMilvusLite } from "../../src/store/milvus-lite.ts";

/** The project's Python environment, where `npm run setup` installs milvus-lite. */
export const REPO_VENV_DIR = fileURLToPath(new URL("../../.venv", import.meta.url));

/** A Milvus Lite started for tests. */
export interface TestMilvusLite {
  /** `127.0.0.1:<port>`; changes after {@link TestMilvusLite.restart}. */
  readonly address: string;
  /** Process id of the current server. */
  readonly pid: number;
  /** The data directory (a temporary one unless given). */
  readonly dataDir: string;
  /** Stops the server; its data stays. */
  stop(): Promise<void>;
  /** Stops the server if running and starts a new one on the same data dir. */
  restart(): Promise<void>;
  /** Stops the server and removes the data dir if this helper created it. */
  dispose(): Promise<void>;
}

/** Options of {@link startTestMilvusLite}. */
export interface StartTestMilvusLiteOptions {
  /** Use this data dir instead of a new temporary one (it is then left in place by dispose()). */
  dataDir?: string;
  startTimeoutMs?: number;
}

/** Starts Milvus Lite for a test file. */
export async function startTestMilvusLite({
  dataDir,
  startTimeoutMs = 60_000,
}: StartTestMilvusLiteOptions = {}): Promise<TestMilvusLite> {
  const ownsDataDir = dataDir === undefined;
  const dir = dataDir ?? (await mkdtemp(path.join(os.tmpdir(), "loupe-milvus-test-")));
  const start = () => startMilvusLite({ dataDir: dir, venvDir: REPO_VENV_DIR, startTimeoutMs });
  let current: Awaited<ReturnType<typeof startMilvusLite>> | undefined;
  try {
    current = await start();
  } catch (error) {
    if (ownsDataDir) await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const running = () => {
    if (current === undefined) throw new Error("Milvus Lite is stopped; call restart() first.");
    return current;
  };
  return {
    get address() {
      return running().address;
    },
    get pid() {
      return running().pid;
    },
    dataDir: dir,
    async stop() {
      await current?.stop();
      current = undefined;
    },
    async restart() {
      await current?.stop();
      current = undefined;
      current = await start();
    },
    async dispose() {
      await current?.stop();
      current = undefined;
      if (ownsDataDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** An address where nothing listens: a port that was free a moment ago, on loopback. */
export async function unreachableAddress(): Promise<string> {
  return `127.0.0.1:${await findFreePort()}`;
}

let prefixCounter = 0;

/** A collection prefix unique within this process, e.g. `t_search_1`. */
export function uniquePrefix(name: string): string {
  prefixCounter += 1;
  return `t_${name.replace(/[^A-Za-z0-9_]/g, "_")}_${prefixCounter}`;
}
