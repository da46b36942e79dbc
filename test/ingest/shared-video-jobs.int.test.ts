/**
 * Video jobs on the shared queue, end to end with real services: PostgreSQL (a database of this file's
 * own), Redis (db 13, the queue's keys cleared first), Milvus Lite and the bundled model pack. A video job
 * is created through one API process (`startLoupe` with role api, in this process) while no worker runs,
 * read there through the other, then run by a worker child process (`loupe serve --role worker`) and
 * followed to its end through the other API process: done, its segments stored, the upload's wait in the
 * blob store released. The same video sent again is found stored (`skipped`). Then a worker is killed
 * (SIGKILL) while its ffmpeg decodes a 40 s video; another takes the item once the lease lapses: the job
 * ends `done`, each segment is stored once with the spans a clean ingest of the same bytes gives, the
 * upload's label is released, no blob is left without a record, and the killed ingest's temp copy of the
 * upload is removed by a later ingest once it is stale. Last, a job of two videos with two workers
 * running: each worker runs one. The services and processes come from `shared-harness.ts`.
 */
import { readdir, readFile, utimes } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sweepOrphanBlobs } from "../../src/ingest/blob-gc.ts";
import { stagedVideoOwner } from "../../src/ingest/shared-video-jobs.ts";
import { STALE_TEMP_UPLOAD_MS, videoSegmentsOf } from "../../src/ingest/video-ingest.ts";
import type { RunningLoupe } from "../../src/main.ts";
import { parseBlobRef, sha256Hex } from "../../src/media/blob-store.ts";
import { mediaBinaries } from "../../src/media/ffmpeg.ts";
import type { StoredVideoSegment } from "../../src/store/index.ts";
import { processesMentioning } from "../helpers/processes.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import {
  followEvents,
  getJob,
  type SharedHarness,
  startSharedHarness,
  type WorkerProcess,
  waitForEnd,
  waitUntil,
} from "./shared-harness.ts";

const TENANT = "default";

let harness: SharedHarness;
let apiA: RunningLoupe;
let apiB: RunningLoupe;
let video: Buffer;
/** The worker of the first test, killed by the second. */
let worker: WorkerProcess | undefined;

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
  harness = await startSharedHarness({ name: "shared_video_jobs", redisDb: 13 });
  video = await readFile(
    await makeTestVideo({
      outPath: path.join(harness.dataDir, "bars.mp4"),
      source: "testsrc=size=160x120:rate=8:duration=3",
    }),
  );
  apiA = await harness.startApi();
  apiB = await harness.startApi();
}, 180_000);

afterAll(async () => {
  await harness?.cleanup();
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
    const { blobs, store } = harness;
    const sha256 = sha256Hex(video);
    expect(await blobs.references(sha256)).toEqual([
      stagedVideoOwner({ tenant: TENANT, jobId: id, index: 0 }),
    ]);

    worker = await harness.startWorker();
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
    const rows = await harness.query<{ route: string; detail: { jobId: string; kind: string } }>(
      "select route, detail from loupe_audit_log where action = 'ingest' and $1 = any(item_ids)",
      [item?.id],
    );
    expect(rows).toEqual([{ route: "POST /v1/videos", detail: { jobId: id, kind: "videos", stored: 1 } }]);

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

  it("a worker killed in the middle of a video: another runs it once the lease lapses, storing each segment once and leaving nothing behind", async () => {
    const { blobs, store } = harness;
    const first = worker as WorkerProcess;
    expect(first.exited, "the first test's worker still runs").toBe(false);
    // 40 s sampled at 2 frames a second: long enough to be killed during, short enough to run twice.
    const long = await readFile(
      await makeTestVideo({
        outPath: path.join(harness.dataDir, "long.mp4"),
        source: "testsrc=size=160x120:rate=8:duration=40",
      }),
    );
    const sha256 = sha256Hex(long);
    const segmentsBefore = await store.count({ kind: "video_segment", tenant: TENANT });
    const id = await uploadVideos(apiA, [{ name: "long.mp4", bytes: long }]);
    const label = stagedVideoOwner({ tenant: TENANT, jobId: id, index: 0 });

    // The worker names the video it starts; once its ffmpeg decodes that upload, the worker is killed.
    const starting = new RegExp(`^(?=.*"jobId":"${id}")(?=.*ingesting a video of a job).*$`, "m");
    await first.waitForOutput(starting, 60_000);
    const tmpDir = path.join(harness.dataDir, "tmp");
    await waitUntil(async () => (await ffmpegReading(tmpDir)).length > 0, {
      timeoutMs: 30_000,
      what: "the worker's ffmpeg decodes the upload",
    });
    await first.kill("SIGKILL");
    // Killed mid-video: nothing of it stored, its item pending, its upload still held by the item.
    expect(await store.count({ kind: "video_segment", tenant: TENANT })).toBe(segmentsBefore);
    expect((await getJob(apiB, id)).items[0]?.status).toBe("pending");
    expect(await blobs.references(sha256)).toEqual([label]);
    // Its ffmpeg ends with it (its output has no reader any more).
    await waitUntil(async () => (await ffmpegReading(tmpDir)).length === 0, {
      timeoutMs: 15_000,
      what: "the killed worker's ffmpeg has exited",
    });

    // The killed ingest's temp copy of the upload stays; dated past STALE_TEMP_UPLOAD_MS, as if the next
    // ingest came later, it is removed by that ingest.
    const leftovers = await readdir(tmpDir);
    expect(leftovers).toHaveLength(1);
    const longAgo = new Date(Date.now() - STALE_TEMP_UPLOAD_MS - 60_000);
    await utimes(path.join(tmpDir, leftovers[0] as string), longAgo, longAgo);

    // Another worker takes the item once the lease (LOUPE_JOB_LEASE_MS, 3 s here) lapses.
    const killedAt = Date.now();
    const second = await harness.startWorker({}, { name: "second" });
    worker = second;
    const followed = followEvents(apiB, id);
    const job = await waitForEnd(apiB, id, 180_000);
    expect(job.status).toBe("done");
    expect(job.counts).toMatchObject({ total: 1, pending: 0, done: 1, skipped: 0, failed: 0 });
    const [item] = job.items;
    expect(item?.status).toBe("stored");
    expect(second.output()).toMatch(starting);
    const events = await followed;
    expect(events.names.at(-1)).toBe("done");
    // The retry is the item's second attempt (the API does not show attempts; the job record does).
    expect(
      await harness.query<{ attempts: number }>(
        "select attempts from loupe_job_items where job_id = $1 and item_index = 0",
        [id],
      ),
    ).toEqual([{ attempts: 2 }]);

    // Each segment stored once: ids and spans distinct, as many as the video's own count says.
    const videoId = item?.id as string;
    const segments = await videoSegmentsOf({ store, tenant: TENANT, videoId });
    expect(segments.length).toBeGreaterThan(10);
    expect(segments.length).toBe(item?.detail?.segments);
    expect(new Set(segments.map((segment) => segment.id)).size).toBe(segments.length);
    expect(new Set(segments.map(spanOf)).size).toBe(segments.length);
    expect(
      segments.every(
        (segment) => (segment.metadata.video as { segmentCount?: number }).segmentCount === segments.length,
      ),
    ).toBe(true);
    expect(await store.count({ kind: "video_segment", tenant: TENANT })).toBe(
      segmentsBefore + segments.length,
    );
    // The item's hold on the upload is released: the original is the video's alone.
    expect(await blobs.references(sha256)).toEqual([`${TENANT}/${videoId}`]);

    expect(await readdir(tmpDir)).toEqual([]);
    expect(second.output()).toContain("removed the uploads left by interrupted video ingests");
    expect(second.output()).toContain(leftovers[0]);

    // A clean ingest of the same bytes (another tenant, one attempt) gives the same spans.
    const clean = await harness.startApi({ LOUPE_DEFAULT_TENANT: "clean" });
    const cleanJob = await waitForEnd(
      clean,
      await uploadVideos(clean, [{ name: "long.mp4", bytes: long }]),
      180_000,
    );
    expect(cleanJob).toMatchObject({ status: "done", counts: { total: 1, done: 1 } });
    const cleanSegments = await videoSegmentsOf({
      store,
      tenant: "clean",
      videoId: cleanJob.items[0]?.id as string,
    });
    expect(segments.map(spanOf)).toEqual(cleanSegments.map(spanOf));
    expect(
      await harness.query<{ attempts: number }>(
        "select attempts from loupe_job_items where job_id = $1 and item_index = 0",
        [cleanJob.id],
      ),
    ).toEqual([{ attempts: 1 }]);

    // No orphan blob: each blob is a stored video's original or a stored segment's keyframe, and the sweep
    // (as `loupe gc --dry-run`, with no grace period) finds nothing to collect.
    const used = new Set<string>();
    for (const tenant of [TENANT, "clean"]) {
      for (const segment of await allSegments(tenant)) {
        used.add(parseBlobRef(segment.mediaRef) as string);
        used.add(parseBlobRef(segment.keyframeRef) as string);
      }
    }
    for (const segment of segments) {
      expect(await blobs.references(parseBlobRef(segment.keyframeRef) as string)).toContain(
        `${TENANT}/${segment.id}`,
      );
    }
    const scan = await blobs.scan();
    expect(scan.blobs.map((blob) => blob.sha256).filter((key) => !used.has(key))).toEqual([]);
    const sweep = await sweepOrphanBlobs({ blobs, store, dryRun: true, graceSeconds: 0 });
    expect({ removed: sweep.removed, released: sweep.released, leftovers: sweep.leftovers }).toEqual({
      removed: [],
      released: [],
      leftovers: [],
    });
    console.info(
      `shared-video-jobs: ${segments.length} segments; the second worker ended the job ${Math.round((Date.now() - killedAt) / 1000)} s after the kill`,
    );
  }, 420_000);

  it("spreads one job's videos over the free workers: a claim keeps one video and gives the others back", async () => {
    const second = worker as WorkerProcess;
    expect(second.exited, "the second test's worker still runs").toBe(false);
    const third = await harness.startWorker({}, { name: "third" });
    const videos = await Promise.all(
      ["testsrc2", "smptebars"].map(async (source) =>
        readFile(
          await makeTestVideo({
            outPath: path.join(harness.dataDir, `${source}.mp4`),
            source: `${source}=size=160x120:rate=8:duration=6`,
          }),
        ),
      ),
    );
    const id = await uploadVideos(
      apiA,
      videos.map((bytes, index) => ({ name: `spread-${index}.mp4`, bytes })),
    );
    const job = await waitForEnd(apiB, id, 180_000);
    expect(job).toMatchObject({ status: "done", counts: { total: 2, done: 2, failed: 0 } });
    // Each worker claims up to LOUPE_WORKER_BATCH_ITEMS (16) items, so without the give-back the first
    // claim would have taken both videos to one worker, one after the other.
    const ranBy = (index: number) =>
      [second, third]
        .filter((each) => new RegExp(`"jobId":"${id}","index":${index},`).test(each.output()))
        .map((each) => each.name);
    const [first, other] = [ranBy(0), ranBy(1)];
    expect(first).toHaveLength(1);
    expect(other).toHaveLength(1);
    expect(first[0]).not.toBe(other[0]);
  }, 240_000);
});

/** A segment's span, `start-end` in seconds. */
function spanOf(segment: StoredVideoSegment): string {
  return `${segment.startS}-${segment.endS}`;
}

/** Every video segment of the tenant. */
async function allSegments(tenant: string): Promise<StoredVideoSegment[]> {
  const segments: StoredVideoSegment[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await harness.store.list({
      kind: "video_segment",
      tenant,
      limit: 500,
      ...(after === undefined ? {} : { after }),
    });
    segments.push(...page.rows);
    if (page.nextAfter === undefined) return segments;
    after = page.nextAfter;
  }
}

/** Pids of the ffmpeg processes reading a file under `dir`. */
async function ffmpegReading(dir: string): Promise<number[]> {
  const ffmpeg = mediaBinaries().ffmpeg;
  const pids: number[] = [];
  for (const pid of await processesMentioning(dir)) {
    const command = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (command.split("\0")[0] === ffmpeg) pids.push(pid);
  }
  return pids;
}
