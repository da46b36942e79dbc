/**
 * Image jobs on the shared queue, end to end with real services: PostgreSQL (a database of this file's
 * own), Redis (db 11, the queue's keys cleared first), Milvus Lite and the bundled model pack. Two API
 * processes (`startLoupe` with role api, in this process) and two workers (`loupe serve --role worker`,
 * child processes); one worker is killed with SIGKILL halfway through a job of N images, and the job still
 * ends `done` with N records in Milvus, none twice, and no blob without a record. A job created through one
 * API process is read and followed (SSE) through the other. The services and processes come from
 * `shared-harness.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningLoupe } from "../../src/main.ts";
import { multipart, renderShapes } from "./harness.ts";
import {
  followEvents,
  getJob,
  type SharedHarness,
  startSharedHarness,
  waitForEnd,
} from "./shared-harness.ts";

/** Images in the job: the 2000 (runs in well under 3 minutes here). `LOUPE_TEST_SHARED_JOB_N` overrides. */
const N = Number(process.env.LOUPE_TEST_SHARED_JOB_N ?? 2000);
const TENANT = "default";

let harness: SharedHarness;
let apiA: RunningLoupe;
let apiB: RunningLoupe;
let firstJobId: string | undefined;

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
  harness = await startSharedHarness({
    name: "shared_jobs",
    redisDb: 11,
    env: {
      LOUPE_WORKER_BATCH_ITEMS: "32",
      LOUPE_MAX_ITEMS_PER_REQUEST: "10000",
      LOUPE_MAX_UPLOAD_BYTES: String(512 * 1024 * 1024),
    },
  });
  apiA = await harness.startApi();
  apiB = await harness.startApi();
}, 180_000);

afterAll(async () => {
  await harness?.cleanup();
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
    const [first] = await Promise.all([
      harness.startWorker({}, { name: "one" }),
      harness.startWorker({}, { name: "two" }),
    ]);
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
        await first.kill("SIGKILL");
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
    expect(firstJobId).toBeDefined();
    expect((await waitForEnd(apiA, firstJobId as string, 30_000)).status).toBe("done");
    const { store } = harness;
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
    const scan = await harness.blobs.scan();
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
    const settled = () => waitForEnd(apiB, id, 60_000);
    const first = await settled();
    expect(first.counts).toMatchObject({ total: 2, failed: 1 });

    const resumed = await fetch(`${apiB.url}/v1/jobs/${id}/resume`, { method: "POST" });
    expect(resumed.status).toBe(202);
    const body = ((await resumed.json()) as { job: { status: string } }).job;
    expect(["queued", "running"]).toContain(body.status);
    const rows = await harness.query<{ route: string; detail: { jobId: string; items: number } }>(
      "select route, detail from loupe_audit_log where action = 'job.resume' and $1 = any(item_ids)",
      [id],
    );
    expect(rows).toEqual([
      { route: "POST /v1/jobs/{id}/resume", detail: { jobId: id, kind: "images", items: 1 } },
    ]);
    // The broken file fails again; the good one stays stored.
    const again = await settled();
    expect(again.counts).toMatchObject({ total: 2, failed: 1 });
  }, 120_000);
});
