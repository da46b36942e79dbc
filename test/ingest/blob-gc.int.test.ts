/**
 * Blobs and records agree, over a real Milvus Lite, the bundled model pack and the filesystem blob
 * store: a batch the store fails leaves no blob behind (and keeps what another tenant uses), a blob two
 * records share outlives one of them, and the orphan sweep removes exactly what nothing uses (records
 * checked in the store, per tenant), dry or not, sparing blobs younger than its grace period.
 */
import { readdir, rm, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StoreError } from "../../src/errors.ts";
import { sweepOrphanBlobs, sweepOrphanBlobsAtStart } from "../../src/ingest/blob-gc.ts";
import { ImageIngester } from "../../src/ingest/image-ingest.ts";
import { findMedia } from "../../src/ingest/items.ts";
import type { JobItemOutcome } from "../../src/ingest/jobs.ts";
import { createLogger } from "../../src/logger.ts";
import { parseBlobRef } from "../../src/media/blob-store.ts";
import { recordId, type VectorStore } from "../../src/store/index.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness, TENANT_HEADER } from "./harness.ts";

interface ImagesBody {
  items: Array<{ index: number; id?: string; status: string; error?: { code: string } }>;
}

/** Sets every file under `dir` (sidecars included) to have last changed `ageSeconds` ago. */
async function age(dir: string, ageSeconds: number): Promise<void> {
  const when = new Date(Date.now() - ageSeconds * 1000);
  const walk = async (folder: string): Promise<void> => {
    for (const entry of await readdir(folder, { withFileTypes: true }).catch(() => [])) {
      const file = path.join(folder, entry.name);
      if (entry.isDirectory()) await walk(file);
      else await utimes(file, when, when);
    }
  };
  await walk(dir);
}

describe("blobs and records agree (real Milvus Lite, real pack)", () => {
  let harness: IngestHarness;
  let images: Buffer[];
  let blobDir: string;

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "blob_gc" });
    images = await renderShapes({ count: 24, seed: 77, size: 96 });
    blobDir = harness.blobs.dir;
  }, 120_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const post = async (tenant: string, files: Buffer[], offset = 0): Promise<ImagesBody> => {
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      headers: { [TENANT_HEADER]: tenant },
      body: multipart({ files: files.map((bytes, index) => ({ name: `img-${offset + index}.jpg`, bytes })) }),
    });
    expect(response.status).toBe(200);
    return (await response.json()) as ImagesBody;
  };
  const remove = (tenant: string, id: string) =>
    harness.app.request(`/v1/items/${id}`, { method: "DELETE", headers: { [TENANT_HEADER]: tenant } });

  /**
   * An ingester over the harness's store, but whose upserts fail as a Milvus that went away does (after
   * `before` settles, when given).
   */
  const failingIngester = (before?: Promise<unknown>, checked?: () => void) => {
    const store = harness.store;
    const failing = {
      get: (async (request) => {
        const records = await store.get(request);
        checked?.();
        return records;
      }) as VectorStore["get"],
      query: store.query.bind(store),
      async upsert() {
        await before;
        throw new StoreError("Milvus is unavailable (test).", { code: "store_unavailable", status: 503 });
      },
    } as Pick<VectorStore, "get" | "query" | "upsert"> as VectorStore;
    return ingesterOver(failing);
  };
  const ingesterOver = (store: VectorStore) =>
    new ImageIngester({
      store,
      models: harness.models,
      blobs: harness.blobs,
      maxImageBytes: harness.config.maxImageBytes,
      fetch: { maxBytes: 1, timeoutMs: 1000 },
    });
  const itemsOf = (files: Buffer[]) =>
    files.map((bytes, index) => ({
      index,
      input: { source: { type: "bytes" as const, bytes, filename: `img-${index}.jpg` } },
    }));

  it("a batch of 16 that fails at the store write leaves no blob, and keeps the one another tenant uses", async () => {
    // Image 0 is stored by another tenant first: its original and thumbnail must survive the failure.
    const [shared] = (await post("other", [images[0] as Buffer])).items;
    expect(shared?.status).toBe("stored");
    const before = await harness.blobs.inventory();
    expect(before.blobs).toHaveLength(2);

    const outcomes = new Map<number, JobItemOutcome>();
    await expect(
      failingIngester().ingest({
        tenant: "failing",
        items: images.slice(0, 16).map((bytes, index) => ({
          index,
          input: { source: { type: "bytes" as const, bytes, filename: `img-${index}.jpg` } },
        })),
        report: (index, outcome) => outcomes.set(index, outcome),
      }),
    ).rejects.toBeInstanceOf(StoreError);

    const after = await harness.blobs.inventory();
    expect(after).toEqual(before);
    expect(after.unreferenced).toEqual([]);
    for (const blob of after.blobs) expect(blob.refs).toEqual([`other/${shared?.id}`]);
    // Nothing for the sweep to find either: the failure left no orphan.
    const report = await sweepOrphanBlobs({ blobs: harness.blobs, store: harness.store, graceSeconds: 0 });
    expect(report.removed).toEqual([]);
    expect(report.released).toEqual([]);
    await remove("other", shared?.id as string);
    expect((await harness.blobs.inventory()).blobs).toEqual([]);
  }, 120_000);

  it("two ingests of the same image for the same tenant at once: the one that fails takes nothing from the one that stored", async () => {
    const bytes = [images[5] as Buffer, images[6] as Buffer];
    const outcomes: JobItemOutcome[] = [];
    // Both pass the "already stored?" check and write their blobs; the second fails at the store only
    // after the first has stored its records.
    let storedFirst: () => void = () => undefined;
    const first = new Promise<void>((resolve) => {
      storedFirst = resolve;
    });
    let checkedSecond: () => void = () => undefined;
    const second = new Promise<void>((resolve) => {
      checkedSecond = resolve;
    });
    const store = harness.store;
    const afterSecondCheck = {
      get: (async (request) => {
        await second;
        return store.get(request);
      }) as VectorStore["get"],
      query: store.query.bind(store),
      upsert: store.upsert.bind(store),
    } as Pick<VectorStore, "get" | "query" | "upsert"> as VectorStore;
    const [stored, failed] = await Promise.allSettled([
      (async () => {
        await ingesterOver(afterSecondCheck).ingest({
          tenant: "retry",
          items: itemsOf(bytes),
          report: (_index, outcome) => outcomes.push(outcome),
        });
        storedFirst();
      })(),
      failingIngester(first, checkedSecond).ingest({
        tenant: "retry",
        items: itemsOf(bytes),
        report: () => undefined,
      }),
    ]);
    expect(stored.status).toBe("fulfilled");
    expect(failed.status).toBe("rejected");
    expect(outcomes.map((outcome) => outcome.status)).toEqual(["stored", "stored"]);
    for (const outcome of outcomes) {
      const id = (outcome as { id: string }).id;
      for (const variant of ["original", "thumbnail"] as const) {
        const blob = await findMedia({
          store: harness.store,
          blobs: harness.blobs,
          tenant: "retry",
          id,
          variant,
        });
        expect(await harness.blobs.references(blob.sha256)).toEqual([`retry/${id}`]);
        expect((await blob.bytes()).length).toBe(blob.size);
      }
    }
    expect((await harness.blobs.inventory()).blobs).toHaveLength(4);
    // Deleting the records removes every claim, and the blobs with them.
    for (const outcome of outcomes) {
      expect((await remove("retry", (outcome as { id: string }).id)).status).toBe(200);
    }
    expect((await harness.blobs.inventory()).blobs).toEqual([]);
  }, 120_000);

  it("a blob two records share survives deleting one, and goes with the second", async () => {
    const bytes = images[1] as Buffer;
    const [a] = (await post("tenant-a", [bytes])).items;
    const [b] = (await post("tenant-b", [bytes])).items;
    const media = await findMedia({
      store: harness.store,
      blobs: harness.blobs,
      tenant: "tenant-a",
      id: a?.id as string,
      variant: "original",
    });
    expect(await harness.blobs.references(media.sha256)).toEqual([`tenant-a/${a?.id}`, `tenant-b/${b?.id}`]);

    expect((await remove("tenant-a", a?.id as string)).status).toBe(200);
    expect(await harness.blobs.references(media.sha256)).toEqual([`tenant-b/${b?.id}`]);
    const stillThere = await findMedia({
      store: harness.store,
      blobs: harness.blobs,
      tenant: "tenant-b",
      id: b?.id as string,
      variant: "thumbnail",
    });
    expect(stillThere.size).toBeGreaterThan(0);
    const sweep = await sweepOrphanBlobs({ blobs: harness.blobs, store: harness.store, graceSeconds: 0 });
    expect(sweep.removed).toEqual([]);

    expect((await remove("tenant-b", b?.id as string)).status).toBe(200);
    expect(await harness.blobs.has(media.sha256)).toBe(false);
    expect((await harness.blobs.inventory()).blobs).toEqual([]);
  }, 120_000);

  it("the sweep removes exactly the orphans (checked per tenant in the store); a dry run reports the same and removes nothing", async () => {
    const modelId = harness.models.modelId;
    // Live: three images of tenant "live", one of them also used by tenant "gone" whose record is not stored.
    const live = (await post("live", images.slice(2, 5), 2)).items.map((item) => item.id as string);
    const liveRecords = await harness.store.get({ kind: "image", tenant: "live", ids: live });
    const liveKeys = liveRecords.flatMap((record) => [
      parseBlobRef(record.mediaRef) as string,
      parseBlobRef(String(record.metadata.thumbnailRef)) as string,
    ]);
    const put = (text: string, owner?: string) =>
      harness.blobs.put({ bytes: Buffer.from(text), contentType: "application/octet-stream", owner });
    const ghost = (tenant: string, text: string) =>
      recordId({ kind: "image", tenant, contentSha256: "f".repeat(64), modelId: `${modelId}-${text}` });

    // Orphans of every kind: no reference; references whose records are gone (an image, a segment, a
    // triple and a video of tenants that exist or not); and one dead reference on a live blob.
    const unreferenced = await put("no reference");
    const deadImage = await put("dead image", `live/${ghost("live", "a")}`);
    const deadMany = await put("dead in two tenants", `ghost/${ghost("ghost", "b")}`);
    await harness.blobs.addReference({ sha256: deadMany.sha256, owner: `live/${ghost("live", "c")}` });
    const deadSegment = await put("dead segment", `live/seg_${"1".repeat(32)}`);
    const deadTriple = await put("dead triple", `live/tri_${"2".repeat(32)}`);
    const deadVideo = await put("dead video", `live/vid_${"3".repeat(32)}`);
    const liveKey = liveKeys[0] as string;
    await harness.blobs.addReference({ sha256: liveKey, owner: `gone/${ghost("gone", "d")}` });
    // Owners of another shape are not Loupe's: kept.
    const foreign = await put("foreign owner", "maintenance:pinned");
    // Leftovers: bytes whose sidecar is gone, and a temporary file of an interrupted write.
    const unindexed = await put("unindexed");
    const folderOf = (sha256: string) => path.join(blobDir, sha256.slice(0, 2), sha256.slice(2, 4));
    await rm(path.join(folderOf(unindexed.sha256), `${unindexed.sha256}.json`));
    await writeFile(path.join(folderOf(liveKey), ".tmp-0123456789abcdef"), "partial");

    // Everything is young: the sweep removes nothing.
    const everything = await harness.blobs.inventory();
    const young = await sweepOrphanBlobs({ blobs: harness.blobs, store: harness.store, graceSeconds: 600 });
    expect(young.removed).toEqual([]);
    expect(young.released).toEqual([]);
    expect(young.leftovers).toEqual([]);
    expect(young.young).toBe(everything.blobs.length + 2);
    expect(await harness.blobs.inventory()).toEqual(everything);

    await age(blobDir, 3600);
    const inventoryBefore = await harness.blobs.inventory();
    const dry = await sweepOrphanBlobs({
      blobs: harness.blobs,
      store: harness.store,
      dryRun: true,
      graceSeconds: 600,
    });
    expect(await harness.blobs.inventory()).toEqual(inventoryBefore);

    const orphans = [unreferenced, deadImage, deadMany, deadSegment, deadTriple, deadVideo]
      .map((blob) => blob.sha256)
      .sort();
    expect(dry.removed.map((blob) => blob.sha256)).toEqual(orphans);
    expect(dry.removed.find((blob) => blob.sha256 === unreferenced.sha256)?.reason).toBe("unreferenced");
    expect(dry.removed.find((blob) => blob.sha256 === deadMany.sha256)).toMatchObject({
      reason: "records_gone",
      owners: [`ghost/${ghost("ghost", "b")}`, `live/${ghost("live", "c")}`].sort(),
    });
    expect(dry.released).toEqual([{ sha256: liveKey, owners: [`gone/${ghost("gone", "d")}`] }]);
    expect(dry.leftovers.map((leftover) => leftover.kind).sort()).toEqual(["temporary", "unindexed"]);
    expect(dry.removedBytes).toBe(dry.removed.reduce((sum, blob) => sum + blob.size, 0));

    const wet = await sweepOrphanBlobs({ blobs: harness.blobs, store: harness.store, graceSeconds: 600 });
    expect(wet.dryRun).toBe(false);
    expect(wet.removed).toEqual(dry.removed);
    expect(wet.released).toEqual(dry.released);
    expect(wet.leftovers).toEqual(dry.leftovers);
    expect(wet.removedBytes).toBe(dry.removedBytes);

    const inventory = await harness.blobs.inventory();
    expect(inventory.blobs.map((blob) => blob.sha256).sort()).toEqual(
      [...new Set([...liveKeys, foreign.sha256])].sort(),
    );
    expect(inventory.stray).toEqual([]);
    expect(inventory.missingSidecar).toEqual([]);
    expect(await harness.blobs.references(liveKey)).toEqual(
      liveRecords
        .filter((record) => record.mediaRef === `blob:${liveKey}`)
        .map((record) => `live/${record.id}`),
    );
    for (const id of live) {
      for (const variant of ["original", "thumbnail"] as const) {
        const blob = await findMedia({
          store: harness.store,
          blobs: harness.blobs,
          tenant: "live",
          id,
          variant,
        });
        expect((await blob.bytes()).length).toBe(blob.size);
      }
    }
    // Nothing is left to find.
    const again = await sweepOrphanBlobs({ blobs: harness.blobs, store: harness.store, graceSeconds: 600 });
    expect(again.removed).toEqual([]);
    expect(again.released).toEqual([]);
    expect(again.leftovers).toEqual([]);
    await harness.blobs.delete(foreign.sha256);
  }, 120_000);

  it("without the store only unreferenced blobs go, and a write during the grace period keeps a blob", async () => {
    const stale = await harness.blobs.put({
      bytes: Buffer.from("an ingest in flight re-writes me"),
      contentType: "image/jpeg",
      owner: `late/${recordId({ kind: "image", tenant: "late", contentSha256: "e".repeat(64), modelId: "m" })}`,
    });
    const bare = await harness.blobs.put({ bytes: Buffer.from("bare"), contentType: "image/jpeg" });
    await age(blobDir, 3600);

    const refsOnly = await sweepOrphanBlobs({ blobs: harness.blobs, graceSeconds: 600, dryRun: true });
    expect(refsOnly.checkedRecords).toBe(false);
    expect(refsOnly.removed.map((blob) => blob.sha256)).toEqual([bare.sha256]);

    // An ingest writes the same bytes for the same record again (its record not stored yet): the
    // reference was already there, yet the write makes the blob young, and the sweep leaves it.
    await harness.blobs.put({
      bytes: Buffer.from("an ingest in flight re-writes me"),
      contentType: "image/jpeg",
      owner: (await harness.blobs.references(stale.sha256))[0],
    });
    const report = await sweepOrphanBlobs({ blobs: harness.blobs, store: harness.store, graceSeconds: 600 });
    expect(report.removed.map((blob) => blob.sha256)).toEqual([bare.sha256]);
    expect(report.young).toBe(1);
    expect(await harness.blobs.has(stale.sha256)).toBe(true);

    // A write between the scan and the removal wins: collect checks again under the key's lock.
    await age(blobDir, 3600);
    const untouchedSince = Date.now() - 600_000;
    await harness.blobs.addReference({ sha256: stale.sha256, owner: `late/img_${"9".repeat(32)}` });
    const collected = await harness.blobs.collect({
      sha256: stale.sha256,
      staleOwners: await harness.blobs.references(stale.sha256),
      untouchedSince,
    });
    expect(collected).toMatchObject({ removed: false, skipped: "touched" });
    expect(await harness.blobs.has(stale.sha256)).toBe(true);
    await harness.blobs.delete(stale.sha256);
  }, 60_000);

  it("the start-up sweep follows LOUPE_BLOB_GC_AT_START, and a store that fails leaves everything in place", async () => {
    const orphan = await harness.blobs.put({
      bytes: Buffer.from("left by a crash"),
      contentType: "image/png",
    });
    const dead = await harness.blobs.put({
      bytes: Buffer.from("its record never came"),
      contentType: "image/png",
      owner: `crash/${recordId({ kind: "image", tenant: "crash", contentSha256: "d".repeat(64), modelId: "m" })}`,
    });
    await age(blobDir, 3600);
    const logger = createLogger({ level: "silent" });
    const sweep = (blobGcAtStart: "on" | "dry-run" | "off", store: Pick<VectorStore, "get" | "query">) =>
      sweepOrphanBlobsAtStart({
        blobs: harness.blobs,
        store,
        config: { blobGcAtStart, blobGcGraceS: 600 },
        logger,
      });

    expect(await sweep("off", harness.store)).toBeUndefined();
    const unreachable = {
      get: async () => {
        throw new StoreError("Milvus is unavailable (test).", { code: "store_unavailable", status: 503 });
      },
      query: harness.store.query.bind(harness.store),
    } as Pick<VectorStore, "get" | "query">;
    expect(await sweep("on", unreachable)).toBeUndefined();
    expect(await harness.blobs.has(orphan.sha256)).toBe(true);
    expect(await harness.blobs.has(dead.sha256)).toBe(true);

    const dry = await sweep("dry-run", harness.store);
    expect(dry?.removed.map((blob) => blob.sha256).sort()).toEqual([orphan.sha256, dead.sha256].sort());
    expect(await harness.blobs.has(orphan.sha256)).toBe(true);
    const wet = await sweep("on", harness.store);
    expect(wet?.removed).toEqual(dry?.removed);
    expect(await harness.blobs.has(orphan.sha256)).toBe(false);
    expect(await harness.blobs.has(dead.sha256)).toBe(false);
  }, 60_000);
});
