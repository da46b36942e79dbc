/**
 * Harness of the shared-job tests (`shared-*.int.test.ts`): the services a shared job runs on, all real,
 * and the processes that run it.
 *
 * {@link startSharedHarness} makes a PostgreSQL database of the test file's own (migrated), clears the
 * queue's keys in the Redis database the file names (one number per file), under a key prefix of this
 * run's own (`LOUPE_REDIS_KEY_PREFIX`, so two runs of the suite at once never share a queue), starts
 * Milvus Lite and makes a data dir. On it a test starts API processes
 * ({@link SharedHarness.startApi}: `startLoupe` with role api, in the test's process) and workers
 * ({@link SharedHarness.startWorker}: `loupe serve --role worker`, child processes, so a test can
 * SIGKILL one), and reads jobs through any API process with {@link getJob}, {@link waitForEnd} and
 * {@link followEvents}. {@link SharedHarness.cleanup} ends whatever the harness started, in `afterAll`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { createDatabasePool } from "../../src/db/database.ts";
import { migrate } from "../../src/db/migrate.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { createFsBlobStore, type FsBlobStore } from "../../src/media/blob-store.ts";
import { createVectorStore, type MilvusVectorStore } from "../../src/store/index.ts";
import { createTestDatabase, type TestDatabase } from "../db/test-database.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";
import { ROOT } from "./harness.ts";

/** The log line a worker writes once it claims work. */
const WORKER_READY = "loupe worker is running shared ingest jobs";

/** Keys of the shared queue in Redis under a prefix, cleared before and after a file's tests. */
function queueKeys(prefix: string): string[] {
  return ["jobs:ready", "jobs:leased", "jobs:delayed"].map((key) => `${prefix}${key}`);
}

/** A job as `GET /v1/jobs/{id}` answers it (the fields the shared-job tests read). */
export interface SharedJob {
  id: string;
  kind: string;
  status: string;
  counts: { total: number; pending: number; done: number; skipped: number; failed: number };
  items: Array<{
    index: number;
    status: string;
    filename?: string;
    id?: string;
    error?: { code: string; message: string };
    detail?: { segments?: number; durationSeconds?: number };
  }>;
}

/** Something that answers HTTP for a job: a {@link RunningLoupe}, or any `{ url }`. */
export interface JobApi {
  url: string;
}

/** A worker child process started by {@link SharedHarness.startWorker}. */
export interface WorkerProcess {
  name: string;
  child: ChildProcess;
  /** Its stdout and stderr so far (the last 200,000 characters). */
  output(): string;
  /**
   * Resolves once its output contains `text` (a string, or a pattern it matches); rejects after
   * `timeoutMs`, or if the process exits first.
   */
  waitForOutput(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Sends `signal` (SIGKILL unless given) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Whether it has exited. */
  readonly exited: boolean;
}

/** The services of a test file, and what runs on them. */
export interface SharedHarness {
  /**
   * Settings every process started here gets (each start may add its own): the services above, a job
   * lease of 3 s (`LOUPE_JOB_LEASE_MS`, so a killed worker's items come back soon), no rate limit and no
   * blob sweep at start, then the file's own `env`.
   */
  env: Record<string, string>;
  /** The data dir every process shares (blobs under `blobs/`, uploads being read under `tmp/`). */
  dataDir: string;
  database: TestDatabase;
  milvus: TestMilvusLite;
  /** The vector store the processes write to, to read records directly. */
  store: MilvusVectorStore;
  /** The blob store the processes share, to read blobs and their references directly. */
  blobs: FsBlobStore;
  /** Starts an API process (`startLoupe`, role api, silent) with {@link SharedHarness.env} and `env`. */
  startApi(env?: Record<string, string>): Promise<RunningLoupe>;
  /**
   * Starts a worker (`loupe serve --role worker`, logging at info) with {@link SharedHarness.env} and
   * `env`; resolves once it runs jobs. One process, no `tsx` wrapper, so a kill reaches the worker itself.
   */
  startWorker(env?: Record<string, string>, options?: { name?: string }): Promise<WorkerProcess>;
  /** Runs one SQL statement on the file's database, returning its rows. */
  query<Row extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<Row[]>;
  /** Kills the workers still running, stops the API processes, the store and Milvus, drops the database. */
  cleanup(): Promise<void>;
}

/**
 * Starts the services of a shared-job test file. `name` prefixes the collections and the data dir;
 * `redisDb` is the file's own Redis database number; `env` adds settings for every process.
 */
export async function startSharedHarness({
  name,
  redisDb,
  env = {},
}: {
  name: string;
  redisDb: number;
  env?: Record<string, string>;
}): Promise<SharedHarness> {
  const redisUrl = `${process.env.LOUPE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379"}/${redisDb}`;
  const keyPrefix = `loupe-test-${name}-${randomUUID().slice(0, 8)}:`;
  const clearQueue = async () => {
    const redis = new Redis(redisUrl);
    try {
      await redis.del(...queueKeys(keyPrefix));
    } finally {
      redis.disconnect();
    }
  };
  const apis: RunningLoupe[] = [];
  const workers: WorkerProcess[] = [];
  let database: TestDatabase | undefined;
  let milvus: TestMilvusLite | undefined;
  let store: MilvusVectorStore | undefined;
  let dataDir: string | undefined;

  const cleanup = async () => {
    await Promise.all(workers.filter((worker) => !worker.exited).map((worker) => worker.kill("SIGKILL")));
    await store?.close().catch(() => undefined);
    for (const api of apis) await api.stop();
    await milvus?.dispose();
    await database?.drop();
    await clearQueue().catch(() => undefined);
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  };

  try {
    database = await createTestDatabase();
    const pool = createDatabasePool({ url: database.url });
    try {
      await migrate({ pool });
    } finally {
      await pool.end();
    }
    await clearQueue();
    milvus = await startTestMilvusLite();
    dataDir = await mkdtemp(path.join(os.tmpdir(), `loupe-${name}-`));
    const collectionPrefix = uniquePrefix(name);
    const baseEnv: Record<string, string> = {
      PORT: "0",
      LOUPE_DATA_DIR: dataDir,
      LOUPE_DATABASE_URL: database.url,
      LOUPE_REDIS_URL: redisUrl,
      LOUPE_REDIS_KEY_PREFIX: keyPrefix,
      MILVUS_ADDRESS: milvus.address,
      LOUPE_COLLECTION_PREFIX: collectionPrefix,
      LOUPE_VENV_DIR: path.join(ROOT, ".venv"),
      LOUPE_JOB_LEASE_MS: "3000",
      LOUPE_RATE_LIMIT_PER_SECOND: "0",
      LOUPE_BLOB_GC_AT_START: "off",
      ...env,
    };
    store = await createVectorStore({ address: milvus.address, collectionPrefix, dimension: 256 });
    const databaseUrl = database.url;
    return {
      env: baseEnv,
      dataDir,
      database,
      milvus,
      store,
      blobs: createFsBlobStore({ dir: path.join(dataDir, "blobs") }),
      async startApi(extra = {}) {
        const api = await startLoupe({
          env: { ...baseEnv, ...extra },
          cwd: ROOT,
          logger: createLogger({ level: "silent" }),
          role: "api",
        });
        apis.push(api);
        return api;
      },
      async startWorker(extra = {}, { name: workerName = `worker-${workers.length + 1}` } = {}) {
        const worker = spawnWorker({ name: workerName, env: { ...baseEnv, ...extra } });
        workers.push(worker);
        await worker.waitForOutput(WORKER_READY, 60_000);
        return worker;
      },
      async query<Row extends Record<string, unknown>>(text: string, values: unknown[] = []) {
        const queryPool = createDatabasePool({ url: databaseUrl });
        try {
          return (await queryPool.query<Row>(text, values)).rows;
        } finally {
          await queryPool.end();
        }
      },
      cleanup,
    };
  } catch (error) {
    await cleanup().catch(() => undefined);
    throw error;
  }
}

/** Spawns `loupe serve --role worker` and follows its output. */
function spawnWorker({ name, env }: { name: string; env: Record<string, string> }): WorkerProcess {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "src", "cli", "main.ts"), "serve", "--role", "worker"],
    {
      cwd: ROOT,
      env: { ...process.env, ...env, LOUPE_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  const listeners = new Set<() => void>();
  const append = (chunk: string) => {
    output = (output + chunk).slice(-200_000);
    for (const listener of listeners) listener();
  };
  child.stdout?.setEncoding("utf8").on("data", append);
  child.stderr?.setEncoding("utf8").on("data", append);
  const exit = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(String(code ?? signal))),
  );
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  return {
    name,
    child,
    output: () => output,
    get exited() {
      return exited();
    },
    waitForOutput(text, timeoutMs = 60_000) {
      const found = () => (typeof text === "string" ? output.includes(text) : text.test(output));
      return new Promise<void>((resolve, reject) => {
        const finish = (error?: Error) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (error === undefined) resolve();
          else reject(error);
        };
        const check = () => {
          if (found()) finish();
        };
        const timer = setTimeout(
          () =>
            finish(new Error(`worker ${name} wrote no ${text} in ${timeoutMs} ms:\n${output.slice(-4000)}`)),
          timeoutMs,
        );
        listeners.add(check);
        void exit.then((how) => {
          if (!found())
            finish(new Error(`worker ${name} exited (${how}) before ${text}:\n${output.slice(-4000)}`));
        });
        check();
      });
    },
    async kill(signal = "SIGKILL") {
      if (!exited()) child.kill(signal);
      await exit;
    },
  };
}

/** The job through `api`; throws unless it answers 200. */
export async function getJob(api: JobApi, id: string): Promise<SharedJob> {
  const response = await fetch(`${api.url}/v1/jobs/${id}`);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /v1/jobs/${id} answered ${response.status}: ${text}`);
  return (JSON.parse(text) as { job: SharedJob }).job;
}

/**
 * Reads the job through `api` every 250 ms until it is `done` or `failed`, or `timeoutMs` has passed;
 * the last snapshot read (the test asserts its status).
 */
export async function waitForEnd(api: JobApi, id: string, timeoutMs: number): Promise<SharedJob> {
  const deadline = Date.now() + timeoutMs;
  let job = await getJob(api, id);
  while (job.status !== "done" && job.status !== "failed" && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    job = await getJob(api, id);
  }
  return job;
}

/** Reads the job's SSE stream through `api` to its end: the names of its events in order, and the last data. */
export async function followEvents(api: JobApi, id: string): Promise<{ names: string[]; last: unknown }> {
  const response = await fetch(`${api.url}/v1/jobs/${id}/events`);
  if (response.status !== 200) {
    throw new Error(`GET /v1/jobs/${id}/events answered ${response.status}: ${await response.text()}`);
  }
  const text = await response.text();
  const names = [...text.matchAll(/^event: (.+)$/gm)].map((match) => match[1] as string);
  const data = [...text.matchAll(/^data: (.+)$/gm)].map((match) => match[1] as string);
  return { names, last: JSON.parse(data.at(-1) ?? "null") };
}

/** Resolves once `check` holds, asking every 100 ms; throws naming `what` after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  { timeoutMs, what }: { timeoutMs: number; what: string },
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not so after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
