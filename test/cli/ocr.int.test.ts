/**
 * `loupe ocr backfill` in-process (runOcrBackfill, what the command runs): on a data dir whose images were
 * stored with OCR off, it reads them with an engine of its own although LOUPE_OCR is still off, and a
 * second run finds nothing left (real Milvus Lite, pack and PP-OCRv4).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatOcrBackfillReport, parseOcrKind, runOcrBackfill } from "../../src/cli/commands/ocr.ts";
import { parseConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { createLoupeServices } from "../../src/services.ts";
import { renderTextImage } from "../helpers/text-images.ts";

const root = path.join(import.meta.dirname, "..", "..");

describe("loupe ocr backfill", () => {
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-ocr-int-"));
    env = {
      LOUPE_DATA_DIR: dir,
      LOUPE_MODEL_PACK: path.join(root, "models", "shapes-world-tiny"),
      LOUPE_VENV_DIR: path.join(root, ".venv"),
      LOUPE_LOG_LEVEL: "silent",
      LOUPE_BLOB_GC_AT_START: "off",
      LOUPE_OCR: "off",
    };
    const services = await createLoupeServices({
      config: parseConfig({ env }),
      logger: createLogger({ level: "silent" }),
    });
    try {
      const items = await Promise.all(
        ["Printer offline", "Disk full on /var"].map(async (text, index) => ({
          index,
          input: {
            source: {
              type: "bytes" as const,
              filename: `${index}.png`,
              bytes: (
                await renderTextImage({ width: 400, height: 100, lines: [{ text, size: 20, x: 10, y: 30 }] })
              ).bytes,
            },
          },
        })),
      );
      await services.images.ingest({ tenant: "default", items, report: () => undefined });
    } finally {
      await services.close();
    }
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads what was stored without text, with its own engine while LOUPE_OCR=off, then finds nothing left", async () => {
    const progress: number[] = [];
    const report = await runOcrBackfill({ env, onProgress: (counts) => progress.push(counts.done) });
    expect(report).toMatchObject({
      tenant: "default",
      kinds: ["image", "video_segment"],
      status: "done",
      counts: { total: 2, pending: 0, done: 2, skipped: 0, failed: 0 },
      failed: [],
    });
    expect(progress.at(-1)).toBe(2);
    expect(formatOcrBackfillReport(report)).toMatch(
      /^OCR backfill done for tenant default \(image, video_segment\): 2 read, 0 already had text, 0 failed of 2 in [\d.]+ s\.\n$/,
    );

    const again = await runOcrBackfill({ env, kinds: parseOcrKind("image") });
    expect(again.counts).toEqual({ total: 2, pending: 0, done: 0, skipped: 2, failed: 0 });
  }, 120_000);

  it("refuses a kind without text to read, naming the allowed ones", () => {
    expect(() => parseOcrKind("triple")).toThrow(
      /--kind "triple" is not a kind with text to read; use image or video_segment/,
    );
  });
});
