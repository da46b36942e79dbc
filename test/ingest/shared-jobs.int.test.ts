/**
 * Image jobs on the shared queue, end to end with real services: PostgreSQL (a database of this file's
 * own), Redis (db 11, the queue's keys cleared first), Milvus Lite and the bundled model pack. Two API
 * processes (`startLoupe` with role api, in this process) and two workers (`loupe serve --role worker`,
 * child processes); one worker is killed with SIGKILL halfway through a job of N images, and the job still
 * ends `done` with N records in Milvus, none twice, and no blob without a record. A job created through one
 * API process is read and followed (SSE) through the other.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabasePool } from "../../src/db/database.ts";
import { migrate } from "../../src/db/migrate.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { createFsBlobStore } from "../../src/media/blob-store.ts";
import { createVectorStore, type MilvusVectorStore } from "../../src/store/index.ts";
import { createTestDatabase, type TestDatabase } from "../db/test-database.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";
import { multipart, ROOT, renderShapes } from "./harness.ts";

/** Images in the job: the 2000 (runs in well under 3 minutes here). `LOUPE_TEST_SHARED_JOB_N` overrides. */
const N = Number(process.env.LOUPE_TEST_SHARED_JOB_N ?? 2000);
const REDIS_URL = `${process.env.LOUPE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379"}/11`;
const TENANT = "default";

let database: TestDatabase;
let milvus: TestMilvusLite;
let dataDir: string;
let env: Record<string, string>;
let apiA: RunningLoupe;
let apiB: RunningLoupe;
let store: MilvusVectorStore;
const workers: ChildProcess[] = [];
let firstJobId: string | undefined;

/** Starts `loupe serve --role worker` and resolves once it runs jobs. */
function startWorker(name: string): Promise<ChildProcess> {
  // One process (no tsx wrapper), so SIGKILL kills the worker itself.
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "src", "cli", "main.ts"), "serve", "--role", "worker"],
    {
      cwd: ROOT,
      env: { ...process.env, ...env, LOUPE_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  workers.push(child);
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`worker ${name} did not start:\n${output.slice(-4000)}`)),
      60_000,
    );
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      output = (output + chunk).slice(-20_000);
      if (output.includes("loupe worker is running shared ingest jobs")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      output = (output + chunk).slice(-20_000);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`worker ${name} exited (${code ?? signal}):\n${output.slice(-4000)}`));
    });
  });
}

interface JobBody {
  job: {
    id: string;
    status: string;
    counts: { total: number; pending: number; done: number; skipped: number; failed: number };
    items: Array<{ index: number; status: string; id?: string; error?: unknown }>;
  };
}

async function getJob(api: RunningLoupe, id: string): Promise<JobBody["job"]> {
  const response = await fetch(`${api.url}/v1/jobs/${id}`);
  expect(response.status).toBe(200);
  return ((await response.json()) as JobBody).job;
}

/** Reads the job's SSE stream through `api` to its end; the names of the events, in order. */
async function followEvents(api: RunningLoupe, id: string): Promise<{ names: string[]; last: unknown }> {
  const response = await fetch(`${api.url}/v1/jobs/${id}/events`);
  expect(response.status).toBe(200);
  const text = await response.text();
  const names = [...text.matchAll(/^event: (.+)$/gm)].map((match) => match[1] as string);
  const data = [...text.matchAll(/^data: (.+)$/gm)].map((match) => match[1] as string);
  return { names, last: JSON.parse(data.at(-1) ?? "null") };
}

async function upload(api: RunningLoupe, images: readonly Buffer[], offset: number): Promise<string> {
  const response = await fetch(`${api.url}/v1/images?async=true`, {
    method: "POST",
    body: multipart({
      files: images.map((bytes, index) => ({ name: `shape-${offset + index}.jpg`, bytes })),
    }),
  });
  const body = (await response.json()) as { job: { id: string } };
  expect(response.status, JSON.stringify(body)).toBe(202);
  expect(response.headers.get("location")).toBe(`/v1/jobs/${body.job.id}`);
  return body.job.id;
}

beforeAll(async () => {
  database = await createTestDatabase();
  const pool = createDatabasePool({ url: database.url });
  await migrate({ pool });
  await pool.end();
  const redis = new Redis(REDIS_URL);
  await redis.del("loupe:jobs:ready", "loupe:jobs:leased", "loupe:jobs:delayed");
  redis.disconnect();
  milvus = await startTestMilvusLite();
  dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-shared-jobs-"));
  const collectionPrefix = uniquePrefix("shared_jobs");
  env = {
    PORT: "0",
    LOUPE_DATA_DIR: dataDir,
    LOUPE_DATABASE_URL: database.url,
    LOUPE_REDIS_URL: REDIS_URL,
    MILVUS_ADDRESS: milvus.address,
    LOUPE_COLLECTION_PREFIX: collectionPrefix,
    LOUPE_VENV_DIR: path.join(ROOT, ".venv"),
    LOUPE_JOB_LEASE_MS: "3000",
    LOUPE_WORKER_BATCH_ITEMS: "32",
    LOUPE_MAX_ITEMS_PER_REQUEST: "10000",
    LOUPE_MAX_UPLOAD_BYTES: String(512 * 1024 * 1024),
    LOUPE_RATE_LIMIT_PER_SECOND: "0",
    LOUPE_BLOB_GC_AT_START: "off",
  };
  const quiet = createLogger({ level: "silent" });
  apiA = await startLoupe({ env, cwd: ROOT, logger: quiet, role: "api" });
  apiB = await startLoupe({ env, cwd: ROOT, logger: quiet, role: "api" });
  store = await createVectorStore({ address: milvus.address, collectionPrefix, dimension: 256 });
}, 180_000);

afterAll(async () => {
  for (const worker of workers)
    if (worker.exitCode === null && worker.signalCode === null) worker.kill("SIGKILL");
  await store?.close().catch(() => undefined);
  await apiA?.stop();
  await apiB?.stop();
  await milvus?.dispose();
  await database?.drop();
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

describe("image jobs on the shared queue", () => {
  it("a job created through one API process is read and followed through the other, with no worker running it yet", async () => {
    const images = await renderShapes({ count: 3, seed: 99 });
    const id = await upload(apiA, images, 0);
    firstJobId = id;
    const job = await getJob(apiB, id);
    expect(job).toMatchObject({ id, status: "queued", counts: { total: 3, pending: 3 } });
    expect(job.items.map((item) => item.status)).toEqual(["pending", "pending", "pending"]);
    const missing = await fetch(`${apiB.url}/v1/jobs/job_${"0".repeat(24)}`);
    expect(missing.status).toBe(404);
  });

  it(`runs a job of ${N} images on two workers, one killed halfway: done, ${N} records, no duplicate, no orphan blob`, async () => {
    const started = performance.now();
    const images = await renderShapes({ count: N, seed: 7, size: 64 });
    const rendered = performance.now();
    const [first] = await Promise.all([startWorker("one"), startWorker("two")]);
    const uploadedAt = performance.now();
    const id = await upload(apiA, images, 0);
    const followed = followEvents(apiB, id);

    let killedAt: number | undefined;
    let job = await getJob(apiB, id);
    const deadline = Date.now() + 240_000;
    while (job.status !== "done" && job.status !== "failed" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      job = await getJob(killedAt === undefined ? apiA : apiB, id);
      if (killedAt === undefined && job.counts.done + job.counts.skipped >= N / 2) {
        first.kill("SIGKILL");
        killedAt = job.counts.done + job.counts.skipped;
      }
    }
    const ranFor = performance.now() - uploadedAt;
    expect(killedAt, "the worker was killed halfway").toBeDefined();
    expect(job.status).toBe("done");
    expect(job.counts).toMatchObject({ total: N, pending: 0, failed: 0 });
    // An item the killed worker stored but had not recorded is found stored by the next run: skipped.
    expect(job.counts.done + job.counts.skipped).toBe(N);

    const events = await followed;
    expect(events.names[0]).toBe("progress");
    expect(events.names.at(-1)).toBe("done");
    expect(events.names.filter((name) => name === "item").length).toBeGreaterThan(0);
    expect(events.last).toMatchObject({ id, status: "done", counts: { total: N, pending: 0 } });

    // Records: exactly N, each item's id once (plus the 3 of the first test's job, which ran too by now).
    await waitForJobsToEnd();
    expect(await store.count({ kind: "image", tenant: TENANT })).toBe(N + 3);
    const ids: string[] = [];
    const refs = new Set<string>();
    let after: string | undefined;
    for (;;) {
      const page = await store.list({
        kind: "image",
        tenant: TENANT,
        limit: 500,
        ...(after === undefined ? {} : { after }),
      });
      for (const record of page.rows) {
        ids.push(record.id);
        refs.add(String(record.mediaRef).replace(/^blob:/, ""));
        refs.add(String(record.metadata?.thumbnailRef).replace(/^blob:/, ""));
      }
      if (page.nextAfter === undefined) break;
      after = page.nextAfter;
    }
    expect(ids.length).toBe(new Set(ids).size);
    const jobIds = new Set(job.items.map((item) => item.id));
    expect(jobIds.size).toBe(N);
    for (const itemId of jobIds) expect(ids).toContain(itemId);

    // Blobs: every one belongs to a record.
    const blobs = createFsBlobStore({ dir: path.join(dataDir, "blobs") });
    const scan = await blobs.scan();
    const orphans = scan.blobs.filter((blob) => !refs.has(blob.sha256));
    expect(orphans).toEqual([]);
    console.info(
      `shared-jobs: ${N} images rendered in ${Math.round((rendered - started) / 1000)} s; job (upload to done) ${Math.round(ranFor / 1000)} s; worker killed at ${killedAt} settled; stored ${job.counts.done}, skipped ${job.counts.skipped}`,
    );
  }, 300_000);

  it("a job resumed through the other API process runs its failed items again, recorded in the audit trail", async () => {
    const [good] = await renderShapes({ count: 1, seed: 123 });
    const response = await fetch(`${apiA.url}/v1/images?async=true`, {
      method: "POST",
      body: multipart({
        files: [
          { name: "good.jpg", bytes: good as Buffer },
          { name: "broken.jpg", bytes: Buffer.from("this is not an image") },
        ],
      }),
    });
    expect(response.status).toBe(202);
    const { id } = ((await response.json()) as { job: { id: string } }).job;
    const settled = async () => {
      const deadline = Date.now() + 60_000;
      let job = await getJob(apiB, id);
      while (job.status !== "done" && job.status !== "failed" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        job = await getJob(apiB, id);
      }
      return job;
    };
    const first = await settled();
    expect(first.counts).toMatchObject({ total: 2, failed: 1 });

    const resumed = await fetch(`${apiB.url}/v1/jobs/${id}/resume`, { method: "POST" });
    expect(resumed.status).toBe(202);
    const body = ((await resumed.json()) as JobBody).job;
    expect(["queued", "running"]).toContain(body.status);
    const pool = createDatabasePool({ url: database.url });
    try {
      const { rows } = await pool.query<{ route: string; detail: { jobId: string; items: number } }>(
        "select route, detail from loupe_audit_log where action = 'job.resume' and $1 = any(item_ids)",
        [id],
      );
      expect(rows).toEqual([
        { route: "POST /v1/jobs/{id}/resume", detail: { jobId: id, kind: "images", items: 1 } },
      ]);
    } finally {
      await pool.end();
    }
    // The broken file fails again; the good one stays stored.
    const again = await settled();
    expect(again.counts).toMatchObject({ total: 2, failed: 1 });
  }, 120_000);
});

/** Waits for the first test's job (queued while no worker ran) to end as well. */
async function waitForJobsToEnd(): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (firstJobId !== undefined && Date.now() < deadline) {
    const job = await getJob(apiA, firstJobId);
    if (job.status === "done") return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the first job did not end: ${firstJobId}`);
}
