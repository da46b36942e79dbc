/**
 * How ingest and the backfill hand images to the OCR engine, with a stand-in engine that records what it
 * is given (real Milvus Lite, pack, ffmpeg and blob store): one reading per video segment, of the keyframe
 * stored for it; none again for the same bytes; a reading that fails leaves the image stored without text;
 * the backfill reads stored segments from their keyframes.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaError } from "../../src/errors.ts";
import type { OcrEngine } from "../../src/inference/ocr/ocr-engine.ts";
import { ImageIngester } from "../../src/ingest/image-ingest.ts";
import { OcrBackfill } from "../../src/ingest/ocr-backfill.ts";
import { createVideoIngester, videoSegmentsOf } from "../../src/ingest/video-ingest.ts";
import { readOcrMetadata } from "../../src/media/ocr-lines.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { type IngestHarness, renderShapes, startIngestHarness } from "./harness.ts";

/** Reads "text <n>" (and a line under the minimum confidence) and keeps every image it was given. */
function recordingEngine(): OcrEngine & { images: Uint8Array[] } {
  const images: Uint8Array[] = [];
  return {
    id: "fake-ocr",
    images,
    async read({ image }) {
      if (!(image instanceof Uint8Array)) throw new Error("expected encoded bytes");
      images.push(image);
      return {
        engine: "fake-ocr",
        width: 128,
        height: 128,
        lines: [
          { text: `text ${images.length}`, confidence: 0.9, box: [1, 2, 30, 10] },
          { text: "noise", confidence: 0.1, box: [5, 50, 10, 10] },
        ],
      };
    },
    close: async () => undefined,
  };
}

describe("OCR wiring of ingest and backfill (stand-in engine, real Lite)", () => {
  let harness: IngestHarness;
  let engine: ReturnType<typeof recordingEngine>;
  let video: Buffer;

  beforeAll(async () => {
    engine = recordingEngine();
    harness = await startIngestHarness({ name: "ocr_wiring", ocr: engine });
    const file = await makeTestVideo({
      outPath: path.join(harness.dataDir, "clip.mp4"),
      source: "testsrc=size=160x120:rate=8:duration=5",
    });
    video = await readFile(file);
  }, 120_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  it("reads each segment's stored keyframe once, and nothing when the same video comes again", async () => {
    const ingested = await harness.services.videos.ingest({
      tenant: "wiring",
      bytes: video,
      source: "upload",
    });
    expect(ingested.status).toBe("stored");
    expect(ingested.segments.length).toBeGreaterThanOrEqual(2);
    expect(engine.images).toHaveLength(ingested.segments.length);

    const segments = await videoSegmentsOf({ store: harness.store, tenant: "wiring", videoId: ingested.id });
    for (const [index, segment] of segments.entries()) {
      const keyframe = await harness.services.media.read({ ref: segment.keyframeRef });
      expect(Buffer.from(engine.images[index] as Uint8Array).equals(Buffer.from(keyframe))).toBe(true);
      expect(segment.ocrText).toBe(`text ${index + 1}`);
      const reading = readOcrMetadata(segment.metadata);
      expect(reading?.lines.map((line) => line.text)).toEqual([`text ${index + 1}`]);
      expect(reading?.minConfidence).toBe(0.5);
      // The video's facts stay beside the reading.
      expect((segment.metadata.video as { segmentIndex: number }).segmentIndex).toBe(index);
    }

    const again = await harness.services.videos.ingest({ tenant: "wiring", bytes: video, source: "upload" });
    expect(again.status).toBe("skipped");
    expect(engine.images).toHaveLength(ingested.segments.length);
  });

  it("stores an image without text when the engine fails on it", async () => {
    const failing: OcrEngine = {
      id: "fake-ocr",
      read: async () => {
        throw new MediaError("the engine refused this image");
      },
      close: async () => undefined,
    };
    const ingester = new ImageIngester({
      store: harness.store,
      models: harness.models,
      blobs: harness.blobs,
      maxImageBytes: 1_000_000,
      fetch: { maxBytes: 1_000_000, timeoutMs: 1000 },
      ocr: { engine: failing, minConfidence: 0.5 },
    });
    const [image] = await renderShapes({ count: 1, seed: 99 });
    const outcomes: Array<{ status: string; id?: string }> = [];
    await ingester.ingest({
      tenant: "wiring",
      items: [{ index: 0, input: { source: { type: "bytes", bytes: image as Buffer, filename: "a.jpg" } } }],
      report: (_index, outcome) => outcomes.push(outcome),
    });
    expect(outcomes[0]?.status).toBe("stored");
    const [record] = await harness.store.get({
      kind: "image",
      tenant: "wiring",
      ids: [outcomes[0]?.id as string],
    });
    expect(record?.ocrText).toBe("");
    expect(readOcrMetadata(record?.metadata)).toBeUndefined();
  });

  it("the backfill reads segments stored without text from their keyframes", async () => {
    const plain = createVideoIngester({
      store: harness.store,
      models: harness.models,
      blobs: harness.blobs,
      config: harness.config,
    });
    const ingested = await plain.ingest({ tenant: "later", bytes: video, source: "upload" });
    const before = await videoSegmentsOf({ store: harness.store, tenant: "later", videoId: ingested.id });
    expect(before.every((segment) => segment.ocrText === "")).toBe(true);

    const backfillEngine = recordingEngine();
    const backfill = new OcrBackfill({
      store: harness.store,
      media: harness.services.media,
      ocr: { engine: backfillEngine, minConfidence: 0.5 },
      pageSize: 1,
    });
    const job = harness.jobs.create({
      tenant: "later",
      kind: "ocr",
      items: [],
      run: backfill.runner({ tenant: "later", kinds: ["video_segment"] }),
    });
    const done = await harness.jobs.wait({ id: job.id, tenant: "later" });
    expect(done.counts).toEqual({
      total: before.length,
      pending: 0,
      done: before.length,
      skipped: 0,
      failed: 0,
    });
    const after = await videoSegmentsOf({ store: harness.store, tenant: "later", videoId: ingested.id });
    expect(after.map((segment) => segment.id)).toEqual(before.map((segment) => segment.id));
    const keyframes = await Promise.all(
      after.map((segment) => harness.services.media.read({ ref: segment.keyframeRef })),
    );
    for (const image of backfillEngine.images) {
      expect(keyframes.some((keyframe) => Buffer.from(keyframe).equals(Buffer.from(image)))).toBe(true);
    }
    for (const segment of after) {
      expect(segment.ocrText).toMatch(/^text \d$/);
      expect(segment.metadata.video).toEqual(before.find((other) => other.id === segment.id)?.metadata.video);
    }
  });
});
