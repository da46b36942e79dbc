/**
 * The supervised embedded Milvus Lite, over the real Lite and the real model pack: Lite SIGKILLed in the
 * middle of an in-process `loupe ingest` is restarted without restarting Loupe; meanwhile the store's
 * routes answer 503 `not_ready` with `Retry-After`, the ingest rides over it, and afterwards the store
 * holds each image once and the blob store exactly the blobs those records use. When restarts run out,
 * the store stays not ready with the reason.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { runIngest } from "../../src/cli/commands/ingest.ts";
import type { RetryNotice } from "../../src/cli/ingest/retry.ts";
import { NotReadyError } from "../../src/errors.ts";
import { ImageIngester } from "../../src/ingest/image-ingest.ts";
import type { OpenLoupeServices } from "../../src/services.ts";
import { startMilvusLite } from "../../src/store/milvus-lite.ts";
import { createVectorStore } from "../../src/store/milvus-vector-store.ts";
import { SupervisedVectorStore } from "../../src/store/supervised-vector-store.ts";
import { openTestServices } from "../helpers/app.ts";
import { REPO_VENV_DIR } from "../helpers/milvus-lite.ts";
import { isAlive } from "../helpers/processes.ts";
import { ROOT, renderShapes } from "../ingest/harness.ts";

const IMAGES = 24;
const TENANT = "supervision";

/** Keys of the blob files under `dir` (sidecars and temporary files aside). */
async function blobKeys(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries
    .map((entry) => path.basename(entry))
    .filter((name) => /^[0-9a-f]{64}$/.test(name))
    .sort();
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("the embedded Milvus Lite under supervision", () => {
  let dataDir: string;
  let inputDir: string;
  let services: OpenLoupeServices;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-supervision-"));
    inputDir = path.join(dataDir, "inputs");
    services = await openTestServices({
      env: { LOUPE_DATA_DIR: dataDir, LOUPE_MILVUS_RESTART_ATTEMPTS: "5" },
      cwd: ROOT,
    });
    const images = await renderShapes({ count: IMAGES, seed: 77, format: "png" });
    await mkdir(inputDir, { recursive: true });
    for (const [index, image] of images.entries()) {
      await writeFile(path.join(inputDir, `shape-${String(index).padStart(2, "0")}.png`), image);
    }
  }, 120_000);

  afterAll(async () => {
    await services?.close();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  it("restarts Lite killed mid-ingest: 503 with Retry-After meanwhile, ready again, each image stored once and no stray blob", async () => {
    const app = createApp(services);
    // Small chunks, so the ingest is between two writes when Lite is killed.
    const ingester = new ImageIngester({
      store: services.store,
      models: services.models,
      blobs: services.blobs,
      maxImageBytes: services.config.maxImageBytes,
      fetch: { maxBytes: services.config.urlMaxBytes, timeoutMs: services.config.urlTimeoutMs },
      chunkSize: 4,
    });
    const firstPid = services.milvusLitePid ?? -1;
    expect(isAlive(firstPid)).toBe(true);

    const retries: RetryNotice[] = [];
    let killedAt = 0;
    let duringRestart: Promise<Response> | undefined;
    const summary = await runIngest({
      inputs: [inputDir],
      target: { kind: "local", ingester, tenant: TENANT },
      retry: { attempts: 10, baseDelayMs: 250, maxDelayMs: 3000 },
      onRetry: (notice) => retries.push(notice),
      onProgress: (progress) => {
        if (killedAt === 0 && progress.done >= 4) {
          process.kill(firstPid, "SIGKILL");
          killedAt = Date.now();
          duringRestart = Promise.resolve(
            app.request("/v1/search", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ text: "a red circle", topK: 3 }),
            }),
          );
        }
      },
    });
    expect(killedAt).toBeGreaterThan(0);

    // The search sent right after the kill failed at once with the restart's reason and Retry-After.
    const refused = await (duringRestart as Promise<Response>);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await refused.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("not_ready");
    expect(body.error.message).toMatch(/Milvus Lite exited \(signal SIGKILL\); restarting/);

    // The ingest rode over the restart: every image has an outcome, none failed.
    expect(summary).toMatchObject({ total: IMAGES, failed: 0 });
    expect(summary.stored + summary.skipped).toBe(IMAGES);
    expect(retries.length).toBeGreaterThan(0);
    expect(retries[0]?.code).toBe("not_ready");

    const ready = await until("/readyz 200", 30_000, async () => {
      const response = await app.request("/readyz");
      return response.status === 200 ? response : undefined;
    });
    expect(await ready.json()).toEqual({ status: "ready" });
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    const secondPid = services.milvusLitePid ?? -1;
    expect(secondPid).not.toBe(firstPid);
    expect(isAlive(secondPid)).toBe(true);
    expect(isAlive(firstPid)).toBe(false);

    // Running the same ingest again stores nothing new.
    const again = await runIngest({
      inputs: [inputDir],
      target: { kind: "local", ingester, tenant: TENANT },
    });
    expect(again).toMatchObject({ total: IMAGES, stored: 0, skipped: IMAGES, failed: 0 });

    expect(await services.store.count({ kind: "image", tenant: TENANT })).toBe(IMAGES);
    const ids = again.ids.map(({ id }) => id);
    expect(new Set(ids).size).toBe(IMAGES);
    const records = await services.store.get({ kind: "image", tenant: TENANT, ids });
    expect(records).toHaveLength(IMAGES);
    const referenced = new Set<string>();
    for (const record of records) {
      referenced.add(record.mediaRef.replace(/^blob:/, ""));
      referenced.add(String(record.metadata.thumbnailRef).replace(/^blob:/, ""));
    }
    expect(await blobKeys(path.join(dataDir, "blobs"))).toEqual([...referenced].sort());
  }, 180_000);

  it("answers /readyz 503 with the reason while Lite restarts", async () => {
    const app = createApp(services);
    const pid = services.milvusLitePid ?? -1;
    process.kill(pid, "SIGKILL");
    const notReady = await until("/readyz 503", 5000, async () => {
      const response = await app.request("/readyz");
      return response.status === 503 ? response : undefined;
    });
    const body = (await notReady.json()) as { error: { code: string; message: string } };
    expect(body.error).toMatchObject({ code: "not_ready" });
    expect(body.error.message).toMatch(/Milvus Lite exited \(signal SIGKILL\); restarting/);
    // An HTTP ingest meanwhile is refused whole, with the reason and when to retry.
    const form = new FormData();
    form.append(
      "files",
      new File([new Uint8Array(await readFile(path.join(inputDir, "shape-00.png")))], "a.png", {
        type: "image/png",
      }),
    );
    const ingest = await app.request("/v1/images", { method: "POST", body: form });
    expect(ingest.status).toBe(503);
    expect(Number(ingest.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(((await ingest.json()) as { error: { code: string } }).error.code).toBe("not_ready");
    await until("/readyz 200", 30_000, async () =>
      (await app.request("/readyz")).status === 200 ? true : undefined,
    );
    expect(await services.store.count({ kind: "image", tenant: TENANT })).toBe(IMAGES);
  }, 60_000);
});

describe("a supervised Lite that cannot be restarted", () => {
  it("stays not ready with the reason once the attempts run out, and fails calls at once", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-supervision-"));
    let starts = 0;
    const store = await SupervisedVectorStore.start({
      startLite: ({ avoidPort }) => {
        starts += 1;
        // Restarts find no Python environment: a real start failure, each one counted.
        return startMilvusLite({
          dataDir,
          venvDir: starts === 1 ? REPO_VENV_DIR : path.join(dataDir, "no-venv"),
          avoidPort,
        });
      },
      connect: (address) => createVectorStore({ address, dimension: 8, collectionPrefix: "gone" }),
      restartAttempts: 2,
      restartDelayMs: 100,
    });
    try {
      expect(await store.health()).toEqual({ ok: true });
      const pid = store.pid ?? -1;
      process.kill(pid, "SIGKILL");
      const reason = await until("giving up", 10_000, async () => {
        const health = await store.health();
        return health.reason?.includes("did not come back") ? health.reason : undefined;
      });
      expect(reason).toMatch(
        /^Milvus Lite exited \(signal SIGKILL\) and did not come back after 2 restart attempts \(last: Milvus Lite is not installed: .*\)\. Restart Loupe, or raise LOUPE_MILVUS_RESTART_ATTEMPTS/,
      );
      expect(starts).toBe(3);
      expect(store.pid).toBeUndefined();
      const started = Date.now();
      const error = await store.count({ kind: "image", tenant: "t" }).catch((caught: unknown) => caught);
      expect(Date.now() - started).toBeLessThan(100);
      expect(error).toBeInstanceOf(NotReadyError);
      expect((error as NotReadyError).retryAfterSeconds).toBeUndefined();
      expect((error as Error).message).toContain("did not come back after 2 restart attempts");
    } finally {
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("an upsert cut short by Lite's death", () => {
  it("fails at once with not_ready, and leaves none of its rows once Lite is back", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-supervision-"));
    const store = await SupervisedVectorStore.start({
      startLite: ({ avoidPort }) => startMilvusLite({ dataDir, venvDir: REPO_VENV_DIR, avoidPort }),
      // Small batches: the upsert is many calls long, and Lite confirms the first ones before it dies.
      connect: (address) =>
        createVectorStore({ address, dimension: 8, collectionPrefix: "cut", batchSize: 100 }),
      restartAttempts: 3,
    });
    try {
      const records = Array.from({ length: 20_000 }, (_, index) => ({
        id: `img_${String(index).padStart(6, "0")}`,
        modelId: "m",
        mediaRef: `blob:${index}`,
        source: "test",
        vector: [1, index % 7, 0, 0, 0, 0, 0, 1],
      }));
      // The same item sent twice at once: this upsert of its row is confirmed while the big one, which
      // writes it too, is still in flight; the roll-back must not take the confirmed row.
      const twice = records.at(-1);
      if (twice === undefined) throw new Error("no records");
      const confirmed = store.upsert({ kind: "image", tenant: "cut", records: [twice] });
      const upsert = store.upsert({ kind: "image", tenant: "cut", records });
      await confirmed;
      // Kill once some of the big upsert's rows are in, while it still runs.
      await until("rows written", 20_000, async () =>
        (await store.count({ kind: "image", tenant: "cut" })) > 1 ? true : undefined,
      );
      const killedAt = Date.now();
      process.kill(store.pid ?? -1, "SIGKILL");
      const error = await upsert.catch((caught: unknown) => caught);
      expect(Date.now() - killedAt).toBeLessThan(2000);
      expect(error).toBeInstanceOf(NotReadyError);
      expect((error as NotReadyError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
      await until("ready again", 30_000, async () => ((await store.health()).ok ? true : undefined));
      expect(await store.count({ kind: "image", tenant: "cut" })).toBe(1);
      expect(
        (await store.get({ kind: "image", tenant: "cut", ids: [twice.id] })).map((row) => row.id),
      ).toEqual([twice.id]);
    } finally {
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});
