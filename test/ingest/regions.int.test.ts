/**
 * Objects as records, end to end over a real Milvus Lite and the real pack with its detection head:
 * ingest stores each image's objects as `region` records under its tenant, with its metadata; region
 * search with filters and tenants; re-ingest idempotent; an item's regions deleted with it; and the region
 * backfill job after a restart for items stored while regions were off.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config.ts";
import type { JobSnapshot } from "../../src/ingest/jobs.ts";
import { REGIONS_JOB_KIND } from "../../src/ingest/region-backfill.ts";
import { createLogger } from "../../src/logger.ts";
import { createLoupeServices, type OpenLoupeServices } from "../../src/services.ts";
import type { StoredRegion } from "../../src/store/index.ts";
import { createRng, deriveSeed, renderScene, type Scene, sampleScene } from "../../src/synth/index.ts";
import { type IngestHarness, multipart, ROOT, startIngestHarness, TENANT_HEADER } from "./harness.ts";

interface ImagesBody {
  items: Array<{ index: number; id?: string; status: string }>;
}

/** Scenes with their 256 px JPEGs (the size Shapes World is drawn at). */
async function scenes(count: number, seed: number): Promise<Array<{ scene: Scene; bytes: Buffer }>> {
  const out: Array<{ scene: Scene; bytes: Buffer }> = [];
  for (let index = 0; index < count; index += 1) {
    const scene = sampleScene(createRng(deriveSeed(seed, "scene", index)));
    const rendered = await renderScene(scene, {
      size: 256,
      format: "jpeg",
      seed: deriveSeed(seed, "render", index),
    });
    out.push({ scene, bytes: rendered.data });
  }
  return out;
}

async function allRegions(
  store: { list: OpenLoupeServices["store"]["list"] },
  tenant: string,
): Promise<StoredRegion[]> {
  return (await store.list({ kind: "region", tenant, limit: 1000 })).rows;
}

/** The ground-truth object a region's box covers best (IoU), and that IoU. */
function bestMatch(
  scene: Scene,
  box: StoredRegion["box"],
): { object: Scene["objects"][number]; iou: number } {
  let best = { object: scene.objects[0] as Scene["objects"][number], iou: -1 };
  for (const object of scene.objects) {
    const truth = {
      x0: object.x - object.r,
      y0: object.y - object.r,
      x1: object.x + object.r,
      y1: object.y + object.r,
    };
    const width = Math.max(0, Math.min(box.x1, truth.x1) - Math.max(box.x0, truth.x0));
    const height = Math.max(0, Math.min(box.y1, truth.y1) - Math.max(box.y0, truth.y0));
    const inter = width * height;
    const union =
      (box.x1 - box.x0) * (box.y1 - box.y0) + (truth.x1 - truth.x0) * (truth.y1 - truth.y0) - inter;
    const iou = union > 0 ? inter / union : 0;
    if (iou > best.iou) best = { object, iou };
  }
  return best;
}

describe("regions: objects as records (real Lite, pack with a detection head)", () => {
  let harness: IngestHarness;
  let corpus: Array<{ scene: Scene; bytes: Buffer }>;
  const ids: string[] = [];

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "regions" });
    corpus = await scenes(12, 7);
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const ingest = async (tenant: string, items: Array<{ bytes: Buffer }>, metadata: unknown[] = []) => {
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      headers: { [TENANT_HEADER]: tenant },
      body: multipart({
        files: items.map((item, index) => ({ name: `s${index}.jpg`, bytes: item.bytes })),
        metadata,
      }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as ImagesBody).items;
  };

  const search = async (tenant: string, body: Record<string, unknown>) => {
    const response = await harness.app.request("/v1/search", {
      method: "POST",
      headers: { [TENANT_HEADER]: tenant, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { items: Array<Record<string, unknown>> }).items;
  };

  it("stores each image's objects as regions of its tenant, boxes on the objects, with its metadata", async () => {
    expect(harness.models.detector).toBeDefined();
    const metadata = corpus.map((_, index) => ({ team: index % 2 === 0 ? "red" : "blue" }));
    const items = await ingest("acme", corpus, metadata);
    expect(items.every((item) => item.status === "stored")).toBe(true);
    ids.push(...items.map((item) => item.id as string));
    await ingest("other", corpus.slice(0, 2));

    const regions = await allRegions(harness.store, "acme");
    const objects = corpus.reduce((sum, { scene }) => sum + scene.objects.length, 0);
    // A trained head finds nearly every object, and nothing else.
    expect(regions.length).toBeGreaterThanOrEqual(Math.floor(objects * 0.9));
    expect(regions.length).toBeLessThanOrEqual(objects + 2);
    for (const region of regions) {
      const index = ids.indexOf(region.parentId);
      expect(index).toBeGreaterThanOrEqual(0);
      expect(region.parentKind).toBe("image");
      expect(region.metadata.team).toBe(index % 2 === 0 ? "red" : "blue");
      expect(region.metadata.regions).toBeUndefined();
      const { object, iou } = bestMatch((corpus[index] as { scene: Scene }).scene, region.box);
      expect(iou).toBeGreaterThan(0.5);
      expect(region.attributes.color).toBe(object.color);
      expect(region.attributes.size).toBe(object.size);
      expect(region.score).toBeGreaterThanOrEqual(0.5);
    }
    // Each image is marked with how many regions it has.
    const images = await harness.store.get({ kind: "image", tenant: "acme", ids });
    for (const image of images) {
      const count = regions.filter((region) => region.parentId === image.id).length;
      expect(image.metadata.regions).toEqual({ count });
    }
    // The other tenant has its own regions, never acme's.
    const others = await allRegions(harness.store, "other");
    expect(others.length).toBeGreaterThan(0);
    expect(others.every((region) => !ids.includes(region.parentId))).toBe(true);
  });

  it("finds regions by text, with filters and tenants; whole-item search leaves them out", async () => {
    const target = corpus
      .flatMap(({ scene }) => scene.objects)
      .find((object) => object.size === "large") as Scene["objects"][number];
    const query = `a ${target.size} ${target.color} ${target.shape}`;
    const hits = await search("acme", { text: query, kinds: ["region"], topK: 5, mode: "dense" });
    expect(hits.length).toBeGreaterThan(0);
    const top = hits[0] as {
      kind: string;
      region: { label: string; attributes: Record<string, string>; parentId: string; box: unknown };
    };
    expect(top.kind).toBe("region");
    expect(top.region.attributes.color).toBe(target.color);
    // A hit's score is its match with the query, best first, never the region's own detection score.
    const scored = hits as Array<{ score: number; region: { score: number } }>;
    const scores = scored.map((hit) => hit.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    expect(scored.every((hit) => hit.score !== hit.region.score)).toBe(true);
    for (const hit of scored) expect(hit.region.score).toBeGreaterThanOrEqual(0.5);
    expect(ids).toContain(top.region.parentId);

    const filtered = await search("acme", {
      text: query,
      kinds: ["region"],
      topK: 20,
      filter: [{ field: "metadata.team", op: "eq", value: "blue" }],
    });
    expect(filtered.length).toBeGreaterThan(0);
    for (const hit of filtered) {
      const parent = (hit.region as { parentId: string }).parentId;
      expect(ids.indexOf(parent) % 2).toBe(1);
    }
    const byLabel = await search("acme", {
      text: query,
      kinds: ["region"],
      topK: 20,
      filter: [{ field: "label", op: "eq", value: target.shape }],
    });
    expect(byLabel.every((hit) => (hit.region as { label: string }).label === target.shape)).toBe(true);

    const whole = await search("acme", { text: query, topK: 20 });
    expect(whole.every((hit) => hit.kind !== "region")).toBe(true);
    const foreign = await search("nobody", { text: query, kinds: ["region"], topK: 5 });
    expect(foreign).toEqual([]);
  });

  it("re-ingesting the same images adds no regions; deleting an image deletes its regions", async () => {
    const before = await allRegions(harness.store, "acme");
    const again = await ingest("acme", corpus);
    expect(again.every((item) => item.status === "skipped")).toBe(true);
    expect((await allRegions(harness.store, "acme")).map((region) => region.id).sort()).toEqual(
      before.map((region) => region.id).sort(),
    );

    const victim = ids[3] as string;
    const ofVictim = before.filter((region) => region.parentId === victim);
    expect(ofVictim.length).toBeGreaterThan(0);
    const response = await harness.app.request(`/v1/items/${victim}`, {
      method: "DELETE",
      headers: { [TENANT_HEADER]: "acme" },
    });
    expect(response.status).toBe(200);
    const after = await allRegions(harness.store, "acme");
    expect(after.some((region) => region.parentId === victim)).toBe(false);
    expect(after).toHaveLength(before.length - ofVictim.length);
    // A region's media is its parent's image, served under the region's id.
    const region = after[0] as StoredRegion;
    const media = await harness.app.request(`/v1/media/${region.id}`, {
      headers: { [TENANT_HEADER]: "acme" },
    });
    expect(media.status).toBe(200);
    const parentIndex = ids.indexOf(region.parentId);
    expect(Buffer.from(await media.arrayBuffer()).equals(corpus[parentIndex]?.bytes as Buffer)).toBe(true);
  });
});

describe("region backfill job after a restart (real Lite, pack with a detection head)", () => {
  let dataDir: string;
  let services: OpenLoupeServices | undefined;
  const logger = createLogger({ level: "silent" });
  const TENANT = "backfill";

  const open = (regions: "on" | "off") =>
    createLoupeServices({
      config: parseConfig({
        env: {
          LOUPE_DATA_DIR: dataDir,
          LOUPE_REGIONS: regions,
          LOUPE_OCR: "off",
          LOUPE_BLOB_GC_AT_START: "off",
        },
        cwd: ROOT,
      }),
      logger,
    });

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-region-backfill-"));
  });

  afterAll(async () => {
    await services?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("stores the regions of items ingested with regions off, once; a second run skips them all", async () => {
    services = await open("off");
    const items = await scenes(6, 11);
    const outcomes: string[] = [];
    await services.images.ingest({
      tenant: TENANT,
      items: items.map(({ bytes }, index) => ({
        index,
        input: { source: { type: "bytes" as const, filename: `b${index}.jpg`, bytes } },
      })),
      report: (_index, outcome) => outcomes.push(outcome.status),
    });
    expect(outcomes).toEqual(Array(6).fill("stored"));
    expect(await allRegions(services.store, TENANT)).toEqual([]);
    await services.close();

    services = await open("on");
    const backfill = services.regionBackfill;
    expect(backfill).toBeDefined();
    const run = async (): Promise<JobSnapshot> => {
      const job = (services as OpenLoupeServices).jobs.create({
        tenant: TENANT,
        kind: REGIONS_JOB_KIND,
        items: [],
        run: backfill?.runner({ tenant: TENANT }) as never,
      });
      for (;;) {
        const snapshot = (services as OpenLoupeServices).jobs.get({ id: job.id, tenant: TENANT });
        if (snapshot.status === "done" || snapshot.status === "failed") return snapshot;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const first = await run();
    expect(first.status).toBe("done");
    expect(first.counts.done).toBe(6);
    const regions = await allRegions(services.store, TENANT);
    const objects = items.reduce((sum, { scene }) => sum + scene.objects.length, 0);
    expect(regions.length).toBeGreaterThanOrEqual(Math.floor(objects * 0.9));
    const images = (await services.store.list({ kind: "image", tenant: TENANT, limit: 100 })).rows;
    expect(images.every((image) => typeof image.metadata.regions === "object")).toBe(true);

    const second = await run();
    expect(second.status).toBe("done");
    expect(second.counts.done).toBe(0);
    expect((await allRegions(services.store, TENANT)).length).toBe(regions.length);
  });
});
