/**
 * Triple jobs, OCR backfills and pack switches on the shared queue, end to end with real services
 * (PostgreSQL, Redis, Milvus Lite, the bundled pack and PP-OCRv4): the job is created through one API
 * process, run (and, for the last two, listed) by a worker child process (`loupe serve --role worker`),
 * and followed through another API process.
 *
 * - OCR: text images ingested with OCR off are read by the worker; two requests at once get one job; a
 *   worker with OCR off leaves the job to others; a second backfill finds every record read (all
 *   skipped, none listed).
 * - Triples: an uploaded image, a stored image's id and a refused item; sent again, found stored.
 * - Regions: the objects of images stored with regions off are found by the worker; then nothing is left.
 * - Pack switch: images of two tenants, a video and a triple are copied to the plain pack; the worker is
 *   SIGKILLed mid-copy and a second one finishes it; search answers from the old collections meanwhile;
 *   after the switch every item is there once under its new id, the old pack no longer starts and the new
 *   one does.
 */

import { readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgKeyStore } from "../../src/auth/pg-key-store.ts";
import { createDatabasePool } from "../../src/db/database.ts";
import { readModelPackInfo } from "../../src/inference/model-pack.ts";
import type { RunningLoupe } from "../../src/main.ts";
import { readOcrMetadata } from "../../src/media/ocr-lines.ts";
import { createVectorStore, ITEM_KINDS, type RecordKind, TENANT_PATTERN } from "../../src/store/index.ts";
import { makePlainPack } from "../helpers/plain-pack.ts";
import { renderErrorScreen } from "../helpers/text-images.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { multipart, renderShapes } from "./harness.ts";
import {
  getJob,
  type SharedHarness,
  type SharedJob,
  startSharedHarness,
  type WorkerProcess,
  waitForEnd,
} from "./shared-harness.ts";

const KEY_SECRET = "shared-listed-jobs-test-secret-0123456789abcdef";
const CODES = ["E2001", "E2002", "E2003", "E2004", "E2005"];
/** Images of tenant beta: enough that a switch's copy takes a few seconds. */
const BETA_IMAGES = 120;

let harness: SharedHarness;
/** OCR and regions off: ingests synchronously without reading text or finding objects. */
let plainApi: RunningLoupe;
/** OCR on: accepts OCR backfill jobs. */
let ocrApi: RunningLoupe;
let worker: WorkerProcess;

async function postJob(api: RunningLoupe, body: unknown, key?: string): Promise<Response> {
  return fetch(`${api.url}/v1/jobs`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
    },
    body: JSON.stringify(body),
  });
}

async function startedJob(response: Response): Promise<string> {
  const body = (await response.json()) as { job: { id: string } };
  expect(response.status, JSON.stringify(body)).toBe(202);
  return body.job.id;
}

async function ingestImages(
  api: RunningLoupe,
  files: Array<{ name: string; bytes: Uint8Array; type?: string }>,
) {
  const response = await fetch(`${api.url}/v1/images`, { method: "POST", body: multipart({ files }) });
  const body = (await response.json()) as { counts: { stored: number } };
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body;
}

beforeAll(async () => {
  harness = await startSharedHarness({
    name: "shared_listed_jobs",
    redisDb: 10,
    env: {
      LOUPE_KEY_SECRET: KEY_SECRET,
      LOUPE_VIDEO_SAMPLE_FPS: "2",
      LOUPE_VIDEO_SEGMENT_SECONDS: "1",
      LOUPE_WORKER_BATCH_ITEMS: "2",
    },
  });
  plainApi = await harness.startApi({ LOUPE_OCR: "off", LOUPE_REGIONS: "off" });
  ocrApi = await harness.startApi({ LOUPE_OCR: "auto" });
}, 180_000);

afterAll(async () => {
  await harness?.cleanup();
}, 60_000);

describe("OCR backfill jobs on the shared queue", () => {
  it("lists and reads the records without text in a worker, one job per tenant, followed through another API process", async () => {
    const files = await Promise.all(
      CODES.map(async (code, index) => ({
        name: `${code}.png`,
        type: "image/png",
        bytes: await renderErrorScreen({ code, service: index + 1 }),
      })),
    );
    await ingestImages(plainApi, files);
    const unread = (await harness.store.list({ kind: "image", tenant: "default", limit: 100 })).rows;
    expect(unread).toHaveLength(CODES.length);
    expect(unread.every((image) => readOcrMetadata(image.metadata) === undefined)).toBe(true);

    // The API process with OCR off refuses; two requests at once to the other get one job.
    expect((await postJob(plainApi, { kind: "ocr" })).status).toBe(409);
    const [first, second] = await Promise.all([
      postJob(ocrApi, { kind: "ocr", kinds: ["image"] }),
      postJob(ocrApi, { kind: "ocr", kinds: ["image"] }),
    ]);
    const id = await startedJob(first);
    expect(await startedJob(second)).toBe(id);

    // The only worker has OCR off: it gives the job back for others, and it waits, queued.
    const noOcr = await harness.startWorker({ LOUPE_OCR: "off" }, { name: "no-ocr" });
    await noOcr.waitForOutput(
      new RegExp(`"jobId":"${id}","kind":"ocr".*cannot run jobs of this kind`),
      30_000,
    );
    expect((await getJob(plainApi, id)).status).toBe("queued");
    worker = await harness.startWorker({ LOUPE_OCR: "auto" });
    const job = await waitForEnd(plainApi, id, 120_000);
    await noOcr.kill("SIGTERM");
    expect(job).toMatchObject({
      kind: "ocr",
      status: "done",
      counts: { total: CODES.length, pending: 0, done: CODES.length, skipped: 0, failed: 0 },
    });
    expect(job.items.map((item) => item.id).sort()).toEqual(unread.map((image) => image.id).sort());
    expect(job.items.every((item) => (item as { kind?: string }).kind === "image")).toBe(true);
    const read = (await harness.store.list({ kind: "image", tenant: "default", limit: 100 })).rows;
    for (const code of CODES) {
      expect(read.some((image) => image.ocrText.includes(code))).toBe(true);
    }
    // Same ids: the text was written into the records, not stored again.
    expect(read.map((image) => image.id).sort()).toEqual(unread.map((image) => image.id).sort());
    expect(worker.output()).toContain(id);

    // A second backfill finds every record read: counted skipped, none listed.
    const again = await waitForEnd(
      plainApi,
      await startedJob(await postJob(ocrApi, { kind: "ocr" })),
      60_000,
    );
    expect(again).toMatchObject({
      status: "done",
      counts: { total: CODES.length, pending: 0, done: 0, skipped: CODES.length, failed: 0 },
      items: [],
    });
  }, 240_000);
});

describe("triple jobs on the shared queue", () => {
  it("runs a triple job in a worker: uploaded images and stored ones by id, a refused item failed at once", async () => {
    const [shape] = await renderShapes({ count: 1, seed: 77 });
    const stored = await ingestImages(plainApi, [{ name: "for-triples.jpg", bytes: shape as Buffer }]);
    const imageId = (stored as unknown as { items: Array<{ id: string }> }).items[0]?.id as string;
    expect(imageId).toMatch(/^img_/);
    const send = async (api: RunningLoupe) => {
      const response = await fetch(`${api.url}/v1/triples?async=true`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          items: [
            { image: (shape as Buffer).toString("base64"), question: "how many shapes?", answer: "some" },
            {
              image: imageId,
              question: "what colour is it?",
              answer: "a colour",
              metadata: { tags: ["qa"] },
            },
            { image: "ftp://example.com/shape.png", question: "q", answer: "a" },
          ],
        }),
      });
      return startedJob(response);
    };
    const job = await waitForEnd(ocrApi, await send(plainApi), 120_000);
    expect(job).toMatchObject({
      kind: "triples",
      status: "done",
      counts: { total: 3, pending: 0, done: 2, skipped: 0, failed: 1 },
    });
    // Refused by the API process: failed, and never queued.
    expect(job.items[2]?.error?.message).toMatch(/ftp/);
    expect(
      await harness.query<{ attempts: number }>(
        "select attempts from loupe_job_items where job_id = $1 order by item_index",
        [job.id],
      ),
    ).toEqual([{ attempts: 1 }, { attempts: 1 }, { attempts: 0 }]);
    const ids = job.items.slice(0, 2).map((item) => item.id as string);
    expect(ids.every((id) => id.startsWith("tri_"))).toBe(true);
    const records = await harness.store.get({ kind: "triple", tenant: "default", ids });
    expect(records.map((record) => record.question).sort()).toEqual([
      "how many shapes?",
      "what colour is it?",
    ]);
    // Sent again through the other API process: both found stored, nothing written twice.
    const again = await waitForEnd(plainApi, await send(ocrApi), 120_000);
    expect(again.counts).toMatchObject({ total: 3, done: 0, skipped: 2, failed: 1 });
    expect(again.items.slice(0, 2).map((item) => item.id)).toEqual(ids);
  }, 240_000);
});

describe("region backfill jobs on the shared queue", () => {
  it("finds the objects of the images stored without them in a worker, then finds nothing left", async () => {
    const images = (await harness.store.list({ kind: "image", tenant: "default", limit: 100 })).rows;
    expect(images.length).toBeGreaterThan(0);
    expect(images.every((image) => image.metadata.regions === undefined)).toBe(true);
    expect(await harness.store.count({ kind: "region", tenant: "default" })).toBe(0);

    // Asked through both API processes at once: one job for the tenant.
    const [first, second] = await Promise.all([
      postJob(plainApi, { kind: "regions", kinds: ["image"] }),
      postJob(ocrApi, { kind: "regions", kinds: ["image"] }),
    ]);
    const id = await startedJob(first);
    expect(await startedJob(second)).toBe(id);
    const job = await waitForEnd(plainApi, id, 120_000);
    expect(job).toMatchObject({
      kind: "regions",
      status: "done",
      counts: { total: images.length, pending: 0, done: images.length, skipped: 0, failed: 0 },
    });
    const found = job.items.reduce(
      (sum, item) => sum + Number((item.detail as { regions?: number } | undefined)?.regions ?? 0),
      0,
    );
    // The shapes image has objects to find (the text screens may have none).
    expect(found).toBeGreaterThan(0);
    expect(await harness.store.count({ kind: "region", tenant: "default" })).toBe(found);
    const marked = (await harness.store.list({ kind: "image", tenant: "default", limit: 100 })).rows;
    expect(marked.every((image) => image.metadata.regions !== undefined)).toBe(true);

    const again = await waitForEnd(
      plainApi,
      await startedJob(await postJob(ocrApi, { kind: "regions" })),
      60_000,
    );
    expect(again.counts).toMatchObject({ done: 0, skipped: again.counts.total, failed: 0 });
    expect(again.items).toEqual([]);
  }, 240_000);
});

describe("pack switch jobs on the shared queue", () => {
  it("copies every item in workers, survives a worker killed mid-copy, then switches once", async () => {
    const betaApi = await harness.startApi({ LOUPE_OCR: "off", LOUPE_DEFAULT_TENANT: "beta" });
    // Enough images that the copy is still under way when its worker is killed.
    const shapes = await renderShapes({ count: BETA_IMAGES, seed: 31 });
    for (let start = 0; start < shapes.length; start += 60) {
      await ingestImages(
        betaApi,
        shapes
          .slice(start, start + 60)
          .map((bytes, index) => ({ name: `shape-${start + index}.jpg`, bytes })),
      );
    }
    const video = await readFile(
      await makeTestVideo({
        outPath: path.join(harness.dataDir, "switch.mp4"),
        source: "testsrc=size=160x120:rate=8:duration=4",
      }),
    );
    const form = new FormData();
    form.append("file", new File([new Uint8Array(video)], "switch.mp4", { type: "video/mp4" }));
    const videoResponse = await fetch(`${plainApi.url}/v1/videos`, { method: "POST", body: form });
    expect(videoResponse.status, await videoResponse.clone().text()).toBe(200);
    const tripleResponse = await fetch(`${plainApi.url}/v1/triples`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        items: [{ image: shapes[0]?.toString("base64"), question: "what shape is it?", answer: "a shape" }],
      }),
    });
    expect(tripleResponse.status, await tripleResponse.clone().text()).toBe(200);

    const counts = async (store: typeof harness.store) => {
      const result: Record<string, number> = {};
      for (const tenant of ["default", "beta"]) {
        for (const kind of ITEM_KINDS) result[`${kind}/${tenant}`] = await store.count({ kind, tenant });
      }
      return result;
    };
    const before = await counts(harness.store);
    expect(before).toMatchObject({ "image/beta": BETA_IMAGES });
    expect(before["triple/default"]).toBeGreaterThan(0);
    expect(before["video_segment/default"]).toBeGreaterThan(2);

    // An admin key (authentication is on from here, in every process within a second or so).
    const pool = createDatabasePool({ url: harness.database.url });
    const keys = createPgKeyStore({
      pool,
      secret: KEY_SECRET,
      secretDir: path.join(harness.dataDir, "auth"),
      tenantPattern: TENANT_PATTERN,
    });
    const { key } = await keys.create({ tenant: "default", scopes: ["admin", "ingest", "read"] });
    await keys.close();
    await pool.end();
    // Each process notices the first key at its next refresh: from then on, a request without one is refused.
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(200)) {
      if ((await fetch(`${plainApi.url}/v1/jobs/job_000000000000000000000000`)).status === 401) break;
    }
    const plainDir = await makePlainPack({ dir: path.join(harness.dataDir, "plain-clip") });
    const plainId = (await readModelPackInfo({ dir: plainDir })).modelId;

    const id = await startedJob(await postJob(plainApi, { kind: "migrate", to: plainDir }, key));
    const job = async (): Promise<SharedJob> => {
      const response = await fetch(`${plainApi.url}/v1/jobs/${id}`, {
        headers: { authorization: `Bearer ${key}` },
      });
      return ((await response.json()) as { job: SharedJob }).job;
    };
    // Search answers from the old collections while the copy runs.
    let searched = 0;
    let copied = 0;
    for (const deadline = Date.now() + 120_000; Date.now() < deadline; ) {
      const search = await fetch(`${plainApi.url}/v1/search`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: JSON.stringify({ text: "error", topK: 3 }),
      });
      expect(search.status).toBe(200);
      searched += 1;
      copied = (await job()).counts.done;
      if (copied >= 10) break;
      await sleep(50);
    }
    expect(copied).toBeGreaterThanOrEqual(10);
    await worker.kill("SIGKILL");
    const atKill = await job();
    expect(atKill.status).toBe("running");
    expect(atKill.counts.pending).toBeGreaterThan(0);
    expect(searched).toBeGreaterThan(0);

    worker = await harness.startWorker({ LOUPE_OCR: "auto" }, { name: "second" });
    const deadline = Date.now() + 360_000;
    let ended = await job();
    while (ended.status !== "done" && ended.status !== "failed" && Date.now() < deadline) {
      await sleep(300);
      ended = await job();
    }
    expect(ended.status, JSON.stringify(ended.items.filter((item) => item.status === "failed"))).toBe("done");
    // Items: each image and triple, and the video as one item (kind video).
    const videos = 1;
    const items =
      (before["image/default"] ?? 0) + (before["image/beta"] ?? 0) + (before["triple/default"] ?? 0) + videos;
    expect(ended.counts).toMatchObject({ total: items, pending: 0, failed: 0 });
    expect(ended.counts.done + ended.counts.skipped).toBe(items);
    const videoItem = ended.items.find((item) => (item as { kind?: string }).kind === "video");
    expect(videoItem?.id).toMatch(/^vid_/);

    // The new collections hold every item once, under new ids, and are live.
    // A store opened now follows the pointer the switch wrote.
    const target = await createVectorStore({
      address: harness.milvus.address,
      collectionPrefix: harness.env.LOUPE_COLLECTION_PREFIX as string,
      dimension: 256,
    });
    try {
      expect(await counts(target)).toEqual(before);
      for (const tenant of ["default", "beta"]) {
        for (const kind of ITEM_KINDS as readonly RecordKind[]) {
          const rows = (await target.list({ kind, tenant, limit: 1000 })).rows;
          expect(new Set(rows.map((row) => row.id)).size).toBe(rows.length);
          expect(rows.every((row) => row.modelId === plainId)).toBe(true);
        }
      }
    } finally {
      await target.close();
    }
    // The old pack is refused on these collections (with an external Milvus, by /readyz), the new one serves.
    const stale = await harness.startApi({ LOUPE_OCR: "off" });
    let ready = { status: 0, text: "" };
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(250)) {
      const response = await fetch(`${stale.url}/readyz`);
      ready = { status: response.status, text: await response.text() };
      if (ready.text.includes("loupe models migrate")) break;
    }
    expect(ready.status).toBe(503);
    expect(ready.text).toContain("loupe models migrate");
    const switched = await harness.startApi({ LOUPE_OCR: "off", LOUPE_MODEL_PACK: plainDir });
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(250)) {
      if ((await fetch(`${switched.url}/readyz`)).status === 200) break;
    }
    const search = await fetch(`${switched.url}/v1/search`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ text: "a shape", topK: 3 }),
    });
    expect(search.status).toBe(200);
  }, 600_000);
});
