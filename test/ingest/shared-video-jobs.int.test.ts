/**
 * Video jobs on the shared queue, end to end with real services: PostgreSQL (a database of this file's
 * own), Redis (db 13, the queue's keys cleared first), Milvus Lite and the bundled model pack. A video job
 * is created through one API process (`startLoupe` with role api, in this process) while no worker runs,
 * read there through the other, then run by a worker child process (`loupe serve --role worker`) and
 * followed to its end through the other API process: done, its segments stored, the upload's wait in the
 * blob store released. The same video sent again is found stored (`skipped`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabasePool } from "../../src/db/database.ts";
import { migrate } from "../../src/db/migrate.ts";
import { stagedVideoOwner } from "../../src/ingest/shared-video-jobs.ts";
import { videoSegmentsOf } from "../../src/ingest/video-ingest.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { createFsBlobStore, sha256Hex } from "../../src/media/blob-store.ts";
import { createVectorStore, type MilvusVectorStore } from "../../src/store/index.ts";
import { createTestDatabase, type TestDatabase } from "../db/test-database.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../helpers/milvus-lite.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { ROOT } from "./harness.ts";

const REDIS_URL = `${process.env.LOUPE_TEST_REDIS_URL ?? "redis://127.0.0.1:6379"}/13`;
const TENANT = "default";

let database: TestDatabase;
let milvus: TestMilvusLite;
let dataDir: string;
let env: Record<string, string>;
let apiA: RunningLoupe;
let apiB: RunningLoupe;
let store: MilvusVectorStore;
let video: Buffer;
let worker: ChildProcess | undefined;

/** Starts `loupe serve --role worker` and resolves once it runs jobs. */
function startWorker(): Promise<ChildProcess> {
  // One process (no tsx wrapper), so killing it kills the worker itself.
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "src", "cli", "main.ts"), "serve", "--role", "worker"],
    {
      cwd: ROOT,
      env: { ...process.env, ...env, LOUPE_LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  worker = child;
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the worker did not start:\n${output.slice(-4000)}`)),
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
      reject(new Error(`the worker exited (${code ?? signal}):\n${output.slice(-4000)}`));
    });
  });
}

interface JobBody {
  job: {
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
  };
}

async function getJob(api: RunningLoupe, id: string): Promise<JobBody["job"]> {
  const response = await fetch(`${api.url}/v1/jobs/${id}`);
  expect(response.status).toBe(200);
  return ((await response.json()) as JobBody).job;
}

async function waitForEnd(api: RunningLoupe, id: string, timeoutMs: number): Promise<JobBody["job"]> {
  const deadline = Date.now() + timeoutMs;
  let job = await getJob(api, id);
  while (job.status !== "done" && job.status !== "failed" && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    job = await getJob(api, id);
  }
  return job;
}

/** Reads the job's SSE stream through `api` to its end; the names of the events, and the last data. */
async function followEvents(api: RunningLoupe, id: string): Promise<{ names: string[]; last: unknown }> {
  const response = await fetch(`${api.url}/v1/jobs/${id}/events`);
  expect(response.status).toBe(200);
  const text = await response.text();
  const names = [...text.matchAll(/^event: (.+)$/gm)].map((match) => match[1] as string);
  const data = [...text.matchAll(/^data: (.+)$/gm)].map((match) => match[1] as string);
  return { names, last: JSON.parse(data.at(-1) ?? "null") };
}

async function uploadVideos(
  api: RunningLoupe,
  files: Array<{ name: string; bytes: Uint8Array }>,
): Promise<string> {
  const form = new FormData();
  for (const file of files) {
    form.append("file", new File([new Uint8Array(file.bytes)], file.name, { type: "video/mp4" }));
  }
  form.append("metadata", JSON.stringify({ title: "colour bars", tags: ["queued"] }));
  const response = await fetch(`${api.url}/v1/videos?async=true`, { method: "POST", body: form });
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
  dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-shared-video-jobs-"));
  video = await readFile(
    await makeTestVideo({
      outPath: path.join(dataDir, "bars.mp4"),
      source: "testsrc=size=160x120:rate=8:duration=3",
    }),
  );
  const collectionPrefix = uniquePrefix("shared_video_jobs");
  env = {
    PORT: "0",
    LOUPE_DATA_DIR: dataDir,
    LOUPE_DATABASE_URL: database.url,
    LOUPE_REDIS_URL: REDIS_URL,
    MILVUS_ADDRESS: milvus.address,
    LOUPE_COLLECTION_PREFIX: collectionPrefix,
    LOUPE_VENV_DIR: path.join(ROOT, ".venv"),
    LOUPE_JOB_LEASE_MS: "3000",
    LOUPE_RATE_LIMIT_PER_SECOND: "0",
    LOUPE_BLOB_GC_AT_START: "off",
  };
  const quiet = createLogger({ level: "silent" });
  apiA = await startLoupe({ env, cwd: ROOT, logger: quiet, role: "api" });
  apiB = await startLoupe({ env, cwd: ROOT, logger: quiet, role: "api" });
  store = await createVectorStore({ address: milvus.address, collectionPrefix, dimension: 256 });
}, 180_000);

afterAll(async () => {
  if (worker !== undefined && worker.exitCode === null && worker.signalCode === null) worker.kill("SIGKILL");
  await store?.close().catch(() => undefined);
  await apiA?.stop();
  await apiB?.stop();
  await milvus?.dispose();
  await database?.drop();
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

describe("video jobs on the shared queue", () => {
  it("a video job created through one API process is run by a worker process and followed through the other", async () => {
    const id = await uploadVideos(apiA, [
      { name: "bars.mp4", bytes: video },
      { name: "broken.mp4", bytes: Buffer.from("this is not a video") },
    ]);
    // No worker runs yet: the job waits, readable through the other API process.
    const queued = await getJob(apiB, id);
    expect(queued).toMatchObject({
      id,
      kind: "videos",
      status: "queued",
      counts: { total: 2, pending: 1, failed: 1 },
    });
    expect(queued.items[1]).toMatchObject({ status: "failed", filename: "broken.mp4" });
    // The upload waits in the blob store, held by its item.
    const blobs = createFsBlobStore({ dir: path.join(dataDir, "blobs") });
    const sha256 = sha256Hex(video);
    expect(await blobs.references(sha256)).toEqual([
      stagedVideoOwner({ tenant: TENANT, jobId: id, index: 0 }),
    ]);

    await startWorker();
    const followed = followEvents(apiB, id);
    const job = await waitForEnd(apiB, id, 120_000);
    expect(job.status).toBe("done");
    expect(job.counts).toMatchObject({ total: 2, pending: 0, done: 1, skipped: 0, failed: 1 });
    const [item] = job.items;
    expect(item?.status).toBe("stored");
    expect(item?.id).toMatch(/^vid_[0-9a-f]{32}$/);
    expect(item?.detail?.durationSeconds).toBeCloseTo(3, 0);

    const segments = await videoSegmentsOf({ store, tenant: TENANT, videoId: item?.id as string });
    expect(segments.length).toBeGreaterThan(0);
    expect(segments.length).toBe(item?.detail?.segments);
    expect(segments.every((segment) => segment.metadata.title === "colour bars")).toBe(true);
    // The original is now the video's; the item's hold on the upload is released.
    expect(await blobs.references(sha256)).toEqual([`${TENANT}/${item?.id}`]);

    // The worker records the stored video in the audit trail as the job's creator did it.
    const pool = createDatabasePool({ url: database.url });
    try {
      const { rows } = await pool.query<{ route: string; detail: { jobId: string; kind: string } }>(
        "select route, detail from loupe_audit_log where action = 'ingest' and $1 = any(item_ids)",
        [item?.id],
      );
      expect(rows).toEqual([{ route: "POST /v1/videos", detail: { jobId: id, kind: "videos", stored: 1 } }]);
    } finally {
      await pool.end();
    }

    const events = await followed;
    expect(events.names[0]).toBe("progress");
    expect(events.names).toContain("item");
    expect(events.names.at(-1)).toBe("done");
    expect(events.last).toMatchObject({ id, status: "done", counts: { total: 2, pending: 0 } });

    // The same video again: its id comes from its bytes, so the worker finds it stored.
    const again = await waitForEnd(
      apiA,
      await uploadVideos(apiB, [{ name: "bars-again.mp4", bytes: video }]),
      60_000,
    );
    expect(again).toMatchObject({ status: "done", counts: { total: 1, skipped: 1 } });
    expect(again.items[0]?.id).toBe(item?.id);
    expect(await videoSegmentsOf({ store, tenant: TENANT, videoId: item?.id as string })).toHaveLength(
      segments.length,
    );
    expect(await blobs.references(sha256)).toEqual([`${TENANT}/${item?.id}`]);
  }, 240_000);
});
