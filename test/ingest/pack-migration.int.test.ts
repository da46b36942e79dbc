/**
 * Switching model packs: a corpus of images, a video and triples in two tenants, stored with the shipped
 * pack, is migrated to the plain pack derived from it and on to the shipped pack's INT8 variant over a real
 * Milvus Lite with the real ONNX models. Loupe refuses to start on the
 * other pack before the switch and after it on the old one; the migration resumes after a stop without
 * redoing rows, search answers from the old collections while it copies, and every item is there once
 * afterwards, under its new id.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { runPackMigration } from "../../src/cli/commands/models-migrate.ts";
import { BUNDLED_MODEL_PACK, parseConfig } from "../../src/config.ts";
import { readModelPackInfo } from "../../src/inference/model-pack.ts";
import { importPack } from "../../src/inference/pack-import.ts";
import { quantizePack } from "../../src/inference/pack-quantize.ts";
import type { MigratedItem } from "../../src/ingest/pack-migration.ts";
import { createLogger } from "../../src/logger.ts";
import { createLoupeServices, type OpenLoupeServices } from "../../src/services.ts";
import {
  collectionNames,
  createMilvusClient,
  ITEM_KINDS,
  type RecordKind,
  type StoredRecord,
} from "../../src/store/index.ts";
import { REPO_VENV_DIR } from "../helpers/milvus-lite.ts";
import { makePlainPack } from "../helpers/plain-pack.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { ROOT, renderShapes } from "./harness.ts";

const TENANTS = ["alpha", "beta"] as const;

let dir: string;
let dataDir: string;
let plainDir: string;
let shippedId: string;
let plainId: string;
/** Every stored row before the switch, by kind and tenant. */
const before = new Map<string, StoredRecord[]>();
let videoBytes: Buffer;

function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += (a[i] ?? 0) * (b[i] ?? 0);
    na += (a[i] ?? 0) ** 2;
    nb += (b[i] ?? 0) ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

const envFor = (pack: string): Record<string, string> => ({
  LOUPE_DATA_DIR: dataDir,
  LOUPE_MODEL_PACK: pack,
  LOUPE_LOG_LEVEL: "silent",
  LOUPE_OCR: "off",
  LOUPE_VIDEO_SAMPLE_FPS: "2",
  LOUPE_VIDEO_SEGMENT_SECONDS: "1",
});

function open(pack: string): Promise<OpenLoupeServices> {
  return createLoupeServices({
    config: parseConfig({ env: envFor(pack), cwd: ROOT }),
    logger: createLogger({ level: "silent" }),
  });
}

/** Every row of a tenant's kind, paging through the store. */
async function allRows(
  services: OpenLoupeServices,
  kind: RecordKind,
  tenant: string,
): Promise<StoredRecord[]> {
  const rows: StoredRecord[] = [];
  let after: string | undefined;
  do {
    const page = await services.store.list({
      kind,
      tenant,
      limit: 100,
      ...(after === undefined ? {} : { after }),
    });
    rows.push(...page.rows);
    after = page.nextAfter;
  } while (after !== undefined);
  return rows;
}

/**
 * The vectors a migration re-derived for tenant alpha are the ones ingesting the same media with the live
 * pack stores: the video (segment by segment, over the same spans) and the images are ingested again for
 * a tenant of their own, compared row by row in Milvus, then deleted.
 */
async function expectLikeFreshIngest(services: OpenLoupeServices, modelId: string): Promise<void> {
  const fresh = await services.videos.ingest({ tenant: "gamma", bytes: videoBytes, source: "upload" });
  const images = await renderShapes({ count: 4, seed: 10 });
  await services.images.ingest({
    tenant: "gamma",
    items: images.map((bytes, index) => ({
      index,
      input: { source: { type: "bytes" as const, filename: `${index}.jpg`, bytes } },
    })),
    report: () => undefined,
  });
  const catalog = services.openCatalog?.();
  const client = createMilvusClient({ address: catalog?.address ?? "" });
  await catalog?.close();
  const collections = collectionNames({ model: modelId });
  try {
    const read = async (collection: string, key: (row: Record<string, unknown>) => string) => {
      const { data } = await client.query({
        collection_name: collection,
        filter: 'tenant in ["alpha", "gamma"]',
        output_fields: ["tenant", "media_ref", "start_s", "end_s", "vector"],
        limit: 100,
      });
      const ingested = new Map(
        data.filter((row) => row.tenant === "gamma").map((row) => [key(row), row.vector]),
      );
      return { migrated: data.filter((row) => row.tenant === "alpha"), ingested };
    };
    const spanOf = (row: Record<string, unknown>) =>
      `${Number(row.start_s).toFixed(3)}-${Number(row.end_s).toFixed(3)}`;
    const segments = await read(collections.video_segment, spanOf);
    expect(segments.migrated).toHaveLength(fresh.segments.length);
    for (const row of segments.migrated) {
      const want = segments.ingested.get(spanOf(row)) as number[] | undefined;
      expect(want, spanOf(row)).toBeDefined();
      expect(cosine(row.vector as number[], want as number[])).toBeGreaterThan(0.9999);
    }
    const stills = await read(collections.image, (row) => String(row.media_ref));
    expect(stills.migrated.length).toBeGreaterThanOrEqual(3);
    for (const row of stills.migrated) {
      const want = stills.ingested.get(String(row.media_ref)) as number[];
      expect(cosine(row.vector as number[], want)).toBeGreaterThan(0.9999);
    }
  } finally {
    await client.closeConnection();
  }
  await services.store.delete({
    kind: "video_segment",
    tenant: "gamma",
    ids: fresh.segments.map((segment) => segment.id),
  });
  const gammaImages = await allRows(services, "image", "gamma");
  await services.store.delete({ kind: "image", tenant: "gamma", ids: gammaImages.map((row) => row.id) });
}

describe("switching model packs", () => {
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-pack-migration-"));
    dataDir = path.join(dir, "data");
    plainDir = await makePlainPack({ dir: path.join(dir, "plain-clip") });
    shippedId = (await readModelPackInfo({ dir: BUNDLED_MODEL_PACK })).modelId;
    plainId = (await readModelPackInfo({ dir: plainDir })).modelId;
    const video = await makeTestVideo({
      outPath: path.join(dir, "clip.mp4"),
      source: "testsrc=size=160x120:rate=8:duration=3",
    });
    videoBytes = await readFile(video);
    const services = await open(BUNDLED_MODEL_PACK);
    try {
      for (const [position, tenant] of TENANTS.entries()) {
        const images = await renderShapes({ count: 4, seed: 10 + position });
        await services.images.ingest({
          tenant,
          items: images.map((bytes, index) => ({
            index,
            input: {
              source: { type: "bytes" as const, filename: `${index}.jpg`, bytes },
              metadata: { n: index },
            },
          })),
          report: () => undefined,
        });
        await services.triples.ingest({
          tenant,
          items: images.slice(0, 2).flatMap((bytes) => [
            { image: { bytes }, question: "how many shapes are there?", answer: "two" },
            { image: { bytes }, question: "what color is the large shape?", answer: "red" },
          ]),
        });
        await services.videos.ingest({ tenant, bytes: videoBytes, source: "upload", metadata: { tenant } });
        for (const kind of ITEM_KINDS) before.set(`${kind}/${tenant}`, await allRows(services, kind, tenant));
      }
    } finally {
      await services.close();
    }
    expect(before.get("image/alpha")).toHaveLength(4);
    expect(before.get("image/beta")).toHaveLength(4);
    expect(before.get("triple/beta")).toHaveLength(4);
    expect(before.get("video_segment/alpha")?.length).toBeGreaterThan(1);
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses to start on another pack's model, naming the migrate command and both models", async () => {
    const refused = await open(plainDir).then(
      async (services) => {
        await services.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({ code: "store_model_mismatch" });
    const message = (refused as Error).message;
    expect(message).toContain(`loupe models migrate --to ${plainDir}`);
    expect(message).toContain(JSON.stringify(shippedId));
    expect(message).toContain(JSON.stringify(plainId));
  }, 60_000);

  const mapping = new Map<string, string>();

  it("migrates while search answers from the old collections, and resumes after a stop without redoing rows", async () => {
    const services = await open(BUNDLED_MODEL_PACK);
    try {
      const migration = services.packMigration;
      if (migration === undefined) throw new Error("no pack migration");
      const copiedBeforeStop: MigratedItem[] = [];
      const stopped = await migration.run({
        to: plainDir,
        limit: 3,
        onItem: (item) => copiedBeforeStop.push(item),
      });
      expect(stopped.status).toBe("partial");
      const copiedFirst = ITEM_KINDS.reduce((sum, kind) => sum + stopped.progress[kind].copied, 0);
      expect(copiedFirst).toBeGreaterThanOrEqual(3);
      expect(copiedBeforeStop).toHaveLength(copiedFirst);

      // An item copied before the stop is deleted before the next run: its copy must not survive the switch.
      const gone = copiedBeforeStop.find((item) => item.kind === "image") as MigratedItem;
      await services.store.delete({ kind: "image", tenant: gone.tenant, ids: [gone.from] });
      const key = `image/${gone.tenant}`;
      before.set(
        key,
        (before.get(key) ?? []).filter((row) => row.id !== gone.from),
      );

      let migrating = true;
      const answers: number[] = [];
      const searching = (async () => {
        while (migrating) {
          const found = await services.search.search({ tenant: "alpha", text: "a red circle", topK: 3 });
          answers.push(found.items.length);
        }
      })();
      const report = await migration
        .run({
          to: plainDir,
          onItem: (item: MigratedItem) => {
            if (item.to !== undefined) mapping.set(item.from, item.to);
          },
        })
        .finally(() => {
          migrating = false;
        });
      await searching;

      expect(report.status).toBe("switched");
      expect(report).toMatchObject({ from: shippedId, to: plainId });
      expect(report.collections).toEqual(collectionNames({ model: plainId }));
      const skipped = ITEM_KINDS.reduce((sum, kind) => sum + report.progress[kind].skipped, 0);
      expect(skipped).toBe(copiedFirst - 1);
      for (const kind of ITEM_KINDS) {
        const total = TENANTS.reduce(
          (sum, tenant) => sum + (before.get(`${kind}/${tenant}`)?.length ?? 0),
          0,
        );
        expect(report.progress[kind]).toMatchObject({ total, failed: 0 });
        expect(report.progress[kind].copied + report.progress[kind].skipped).toBe(total);
      }
      expect(answers.length).toBeGreaterThan(0);
      expect(answers.every((count) => count > 0)).toBe(true);
      // This server keeps its pack and the old collections until it is restarted.
      expect(
        (await services.search.search({ tenant: "beta", text: "a red circle", topK: 3 })).items.length,
      ).toBe(3);
    } finally {
      await services.close();
    }
  }, 120_000);

  it("starts only on the new pack, with every item once under its new id", async () => {
    await expect(open(BUNDLED_MODEL_PACK)).rejects.toMatchObject({ code: "store_model_mismatch" });
    const services = await open(plainDir);
    try {
      for (const tenant of TENANTS) {
        // Regions are not copied: the new pack finds its own objects (the region backfill job).
        expect(await services.store.count({ kind: "region", tenant })).toBe(0);
        for (const kind of ITEM_KINDS) {
          const old = before.get(`${kind}/${tenant}`) ?? [];
          const rows = await allRows(services, kind, tenant);
          expect(await services.store.count({ kind, tenant })).toBe(old.length);
          expect(new Set(rows.map((row) => row.id)).size).toBe(old.length);
          expect(rows.map((row) => row.id).sort()).toEqual(old.map((row) => mapping.get(row.id)).sort());
          for (const row of old) {
            const {
              id: _old,
              modelId: _model,
              metadata,
              ...rest
            } = row as StoredRecord & { videoId?: string };
            // The copy is not marked as having regions, so the region backfill finds it.
            const { regions: _marker, ...copiedMetadata } = metadata;
            const kept = { ...rest, metadata: copiedMetadata };
            const copy = rows.find((candidate) => candidate.id === mapping.get(row.id));
            expect(copy?.metadata).toEqual(copiedMetadata);
            expect(copy?.modelId).toBe(plainId);
            if (kind === "video_segment") {
              const { videoId: oldVideo, ...rest } = kept as typeof kept & { videoId: string };
              expect(copy).toMatchObject(rest);
              expect((copy as { videoId: string }).videoId).not.toBe(oldVideo);
            } else {
              expect(copy).toMatchObject(kept);
            }
          }
        }
      }
      await expectLikeFreshIngest(services, plainId);

      const found = await services.search.search({ tenant: "alpha", text: "a red circle", topK: 3 });
      expect(found.items).toHaveLength(3);
      expect(found.items.every((item) => [...mapping.values()].includes(item.id))).toBe(true);
    } finally {
      await services.close();
    }
  }, 120_000);

  it("drops the old model's collections only when asked, never the live ones", async () => {
    await expect(runPackMigration({ env: envFor(plainDir), drop: plainId })).rejects.toMatchObject({
      code: "store_conflict",
    });
    const dropped = await runPackMigration({ env: envFor(plainDir), drop: shippedId });
    expect(dropped).toMatchObject({ dropped: Object.values(collectionNames({})) });
    const again = await runPackMigration({ env: envFor(plainDir), to: plainDir });
    expect(again).toMatchObject({ status: "already" });
  }, 120_000);

  it("switches back over HTTP as an admin job, one item per record with its old and new id", async () => {
    const services = await open(plainDir);
    try {
      const app = createApp(services);
      const post = (body: unknown, key?: string) =>
        app.request("/v1/jobs", {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
          },
          body: JSON.stringify(body),
        });
      const refused = await post({ kind: "migrate", to: BUNDLED_MODEL_PACK });
      expect(refused.status).toBe(403);
      const { key } = await services.keys.create({ tenant: "default", scopes: ["admin", "ingest", "read"] });
      const missing = await post({ kind: "migrate", to: path.join(dir, "no-such-pack") }, key);
      expect(missing.status).toBe(400);
      expect(await missing.text()).toContain("Cannot switch to the pack");
      const started = await post({ kind: "migrate", to: BUNDLED_MODEL_PACK }, key);
      expect(started.status).toBe(202);
      const { job } = (await started.json()) as { job: { id: string } };
      const done = await services.jobs.wait({ id: job.id, tenant: "default" });
      const total = [...before.values()].reduce((sum, rows) => sum + rows.length, 0);
      expect(done).toMatchObject({ status: "done", counts: { total, done: total, failed: 0 } });
      const images = TENANTS.reduce((sum, tenant) => sum + (before.get(`image/${tenant}`)?.length ?? 0), 0);
      expect(done.progress?.image).toEqual({ done: images, total: images });
      const image = done.items.find((item) => item.describe.kind === "image");
      expect([...mapping.values()]).toContain(image?.describe.from);
      expect(image?.id).toMatch(/^img_/);
      expect(image?.id).not.toBe(image?.describe.from);
    } finally {
      await services.close();
    }
    const back = await open(BUNDLED_MODEL_PACK);
    try {
      expect(await back.store.count({ kind: "image", tenant: "alpha" })).toBe(
        before.get("image/alpha")?.length,
      );
      const catalog = back.openCatalog?.();
      expect((await catalog?.pointer())?.collections).toEqual(collectionNames({ model: shippedId }));
      await catalog?.close();
    } finally {
      await back.close();
    }
  }, 120_000);

  it("migrates to a pack with a video head (the shipped weights under another model id), re-deriving segments with the head", async () => {
    const relabelled = path.join(dir, "shapes-world-tiny-relabelled");
    await cp(BUNDLED_MODEL_PACK, relabelled, { recursive: true });
    const config = JSON.parse(await readFile(path.join(relabelled, "config.json"), "utf8")) as {
      loupe: { model_id: string };
    };
    config.loupe.model_id = `${shippedId}+relabelled`;
    await writeFile(path.join(relabelled, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
    await importPack({ dir: relabelled, force: true });
    const report = await runPackMigration({ env: envFor(BUNDLED_MODEL_PACK), to: relabelled });
    expect(report).toMatchObject({ status: "switched", from: shippedId, to: config.loupe.model_id });
    const services = await open(relabelled);
    try {
      expect(services.models.capabilities.video).toBe(true);
      for (const tenant of TENANTS) {
        for (const kind of ITEM_KINDS) {
          expect(await services.store.count({ kind, tenant })).toBe(before.get(`${kind}/${tenant}`)?.length);
        }
      }
      await expectLikeFreshIngest(services, config.loupe.model_id);
    } finally {
      await services.close();
    }
  }, 120_000);

  it("migrates on to the shipped pack's INT8 variant", async () => {
    const int8Dir = path.join(dir, "shapes-world-tiny-int8");
    await quantizePack({
      dir: BUNDLED_MODEL_PACK,
      out: int8Dir,
      python: path.join(REPO_VENV_DIR, "bin", "python"),
    });
    const int8Id = (await readModelPackInfo({ dir: int8Dir })).modelId;
    const report = await runPackMigration({ env: envFor(BUNDLED_MODEL_PACK), to: int8Dir, dropOld: true });
    expect(report).toMatchObject({ status: "switched", from: `${shippedId}+relabelled`, to: int8Id });
    const services = await open(int8Dir);
    try {
      for (const tenant of TENANTS) {
        for (const kind of ITEM_KINDS) {
          expect(await services.store.count({ kind, tenant })).toBe(before.get(`${kind}/${tenant}`)?.length);
        }
      }
    } finally {
      await services.close();
    }
  }, 120_000);
});
