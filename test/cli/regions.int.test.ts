/**
 * `loupe regions backfill` in-process (runRegionBackfill, what the command runs): on a data dir whose images
 * were stored with LOUPE_REGIONS=off, it stores their objects as regions while the setting is still off, and
 * a second run finds nothing left; a pack without a detection head is refused by name (real Milvus Lite and
 * the bundled pack).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  formatRegionBackfillReport,
  parseRegionKind,
  runRegionBackfill,
} from "../../src/cli/commands/regions.ts";
import { parseConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { createLoupeServices } from "../../src/services.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../../src/synth/index.ts";
import { makePlainPack } from "../helpers/plain-pack.ts";

const root = path.join(import.meta.dirname, "..", "..");

describe("loupe regions backfill", () => {
  let dir: string;
  let env: Record<string, string>;
  let objects: number;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-regions-int-"));
    env = {
      LOUPE_DATA_DIR: path.join(dir, "data"),
      LOUPE_MODEL_PACK: path.join(root, "models", "shapes-world-tiny"),
      LOUPE_VENV_DIR: path.join(root, ".venv"),
      LOUPE_LOG_LEVEL: "silent",
      LOUPE_BLOB_GC_AT_START: "off",
      LOUPE_OCR: "off",
      LOUPE_REGIONS: "off",
    };
    const scenes = [0, 1, 2].map((index) => sampleScene(createRng(deriveSeed(4242, "scene", index))));
    objects = scenes.reduce((sum, scene) => sum + scene.objects.length, 0);
    const services = await createLoupeServices({
      config: parseConfig({ env }),
      logger: createLogger({ level: "silent" }),
    });
    try {
      const items = await Promise.all(
        scenes.map(async (scene, index) => ({
          index,
          input: {
            source: {
              type: "bytes" as const,
              filename: `${index}.jpg`,
              bytes: (await renderScene(scene, { size: 256, format: "jpeg", seed: index })).data,
            },
          },
        })),
      );
      await services.images.ingest({ tenant: "default", items, report: () => undefined });
      expect(await services.store.count({ kind: "region", tenant: "default" })).toBe(0);
    } finally {
      await services.close();
    }
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores the objects of images stored without regions while LOUPE_REGIONS=off, then finds nothing left", async () => {
    const progress: number[] = [];
    const report = await runRegionBackfill({ env, onProgress: (counts) => progress.push(counts.done) });
    expect(report).toMatchObject({
      tenant: "default",
      kinds: ["image", "video_segment"],
      status: "done",
      counts: { total: 3, pending: 0, done: 3, skipped: 0, failed: 0 },
      failed: [],
    });
    expect(progress.at(-1)).toBe(3);
    expect(formatRegionBackfillReport(report)).toMatch(
      /^Region backfill done for tenant default \(image, video_segment\): 3 read, 0 already had regions, 0 failed of 3 in [\d.]+ s\.\n$/,
    );

    const services = await createLoupeServices({
      config: parseConfig({ env }),
      logger: createLogger({ level: "silent" }),
    });
    try {
      // One region per object of the three scenes (the head finds every one of them at this size).
      expect(await services.store.count({ kind: "region", tenant: "default" })).toBe(objects);
    } finally {
      await services.close();
    }

    const again = await runRegionBackfill({ env, kinds: parseRegionKind("image") });
    expect(again.counts).toEqual({ total: 3, pending: 0, done: 0, skipped: 3, failed: 0 });
  }, 180_000);

  it("refuses a kind without objects and a pack without a detection head, naming what is allowed", async () => {
    expect(() => parseRegionKind("triple")).toThrow(
      /--kind "triple" is not a kind with objects to find; use image or video_segment/,
    );
    const plain = await makePlainPack({ dir: path.join(dir, "plain-pack") });
    await expect(
      runRegionBackfill({
        env: { ...env, LOUPE_MODEL_PACK: plain, LOUPE_DATA_DIR: path.join(dir, "plain-data") },
      }),
    ).rejects.toMatchObject({
      code: "regions_unavailable",
      message: expect.stringMatching(/no detection head/),
    });
  }, 120_000);
});
