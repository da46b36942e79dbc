/**
 * The shipped pack (models/shapes-world-tiny) through the TypeScript runtime against the parity fixtures that
 * the training scripts write from the PyTorch reference (fixtures/parity.json): preprocessing, image and text
 * embeddings (cosine ≥ 0.999), VQA (same argmax) and the video head.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModelPack, type ModelPack } from "../../src/inference/model-pack.ts";
import { cosineSimilarity } from "../../src/inference/vector-math.ts";

const packDir = resolve(import.meta.dirname, "..", "..", "models", "shapes-world-tiny");
const fixturesDir = join(packDir, "fixtures");
const parityPath = join(fixturesDir, "parity.json");

interface Parity {
  images: { file: string; pixel_values_sum: number; pixel_values_head: number[]; image_embeds: number[] }[];
  texts: { text: string; input_ids: number[]; text_embeds: number[] }[];
  vqa: { image: string; question: string; logits: number[]; argmax: string }[];
  video: { frames?: string[]; frame_features?: number[][]; video_embeds: number[] }[];
  preprocessing?: { file: string; pixel_values_sum: number; pixel_values_mean_abs: number }[];
}

const parity: Parity | undefined = existsSync(parityPath)
  ? (JSON.parse(readFileSync(parityPath, "utf8")) as Parity)
  : undefined;

const fixture = (file: string): Buffer => readFileSync(join(fixturesDir, file));

/** Reads a little-endian float32 `.npy` file (the layout numpy.save writes). */
function readNpyFloat32(buffer: Buffer): { data: Float32Array; shape: number[] } {
  const headerLength = buffer.readUInt16LE(8);
  const header = buffer.subarray(10, 10 + headerLength).toString("latin1");
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True")) {
    throw new Error(`unsupported .npy header ${header}`);
  }
  const shape = (header.match(/'shape': \(([^)]*)\)/)?.[1] ?? "")
    .split(",")
    .map((value) => value.trim())
    .filter((value) => value !== "")
    .map(Number);
  const body = buffer.subarray(10 + headerLength);
  const data = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  return { data, shape };
}

const sum = (values: ArrayLike<number>): number => {
  let total = 0;
  for (let index = 0; index < values.length; index += 1) total += values[index] ?? 0;
  return total;
};

describe.skipIf(parity === undefined)("shipped pack vs the PyTorch reference (fixtures/parity.json)", () => {
  const reference = parity as Parity;
  let pack: ModelPack;

  beforeAll(async () => {
    pack = await loadModelPack({ dir: packDir, verifyHashes: true });
  });

  afterAll(async () => {
    await pack?.close();
  });

  it("loads with its declared id, size and capabilities", () => {
    expect(pack.modelId).toMatch(/^shapes-world-tiny@/);
    expect(pack.dimension).toBe(256);
    expect(pack.imageSize).toBe(128);
    expect(pack.capabilities).toEqual({ vqa: true, video: true, detection: true });
    expect(pack.answers).toHaveLength(22);
  });

  it("preprocesses model-size images like the reference", async () => {
    for (const item of reference.images) {
      const pixels = await pack.imageProcessor.preprocess({ image: fixture(item.file) });
      expect(sum(pixels)).toBeCloseTo(item.pixel_values_sum, 0);
      item.pixel_values_head.forEach((value, index) => {
        expect(pixels[index]).toBeCloseTo(value, 5);
      });
    }
  });

  it("preprocesses a resized image within the measured libvips/Pillow tolerance", async () => {
    for (const item of reference.preprocessing ?? []) {
      const pixels = await pack.imageProcessor.preprocess({ image: fixture(item.file) });
      const npyPath = join(fixturesDir, item.file.replace(/\.png$/, ".npy"));
      if (existsSync(npyPath)) {
        const expected = readNpyFloat32(readFileSync(npyPath));
        expect(expected.data.length).toBe(pixels.length);
        let absolute = 0;
        for (let index = 0; index < pixels.length; index += 1) {
          absolute += Math.abs((pixels[index] ?? 0) - (expected.data[index] ?? 0));
        }
        // Measured on the smoke pack: 2e-5 on average, at most one level of 255 (0.015 in normalized units).
        expect(absolute / pixels.length).toBeLessThan(0.002);
      }
      let meanAbs = 0;
      for (const value of pixels) meanAbs += Math.abs(value);
      expect(meanAbs / pixels.length).toBeCloseTo(item.pixel_values_mean_abs, 2);
    }
  });

  it("embeds images with cosine ≥ 0.999 to the reference", async () => {
    const embeddings = await pack.imageEmbedder.embed({
      images: reference.images.map((item) => fixture(item.file)),
    });
    embeddings.forEach((embedding, index) => {
      expect(cosineSimilarity(embedding, reference.images[index]?.image_embeds ?? [])).toBeGreaterThanOrEqual(
        0.999,
      );
    });
  });

  it("tokenizes and embeds texts with cosine ≥ 0.999 to the reference", async () => {
    for (const item of reference.texts)
      expect(pack.tokenizer.encode({ text: item.text })).toEqual(item.input_ids);
    const embeddings = await pack.textEmbedder.embed({ texts: reference.texts.map((item) => item.text) });
    embeddings.forEach((embedding, index) => {
      expect(cosineSimilarity(embedding, reference.texts[index]?.text_embeds ?? [])).toBeGreaterThanOrEqual(
        0.999,
      );
    });
  });

  it("gives the reference's VQA argmax and logits", async () => {
    const head = pack.vqaHead;
    if (head === undefined) throw new Error("the shipped pack has a VQA head");
    const byImage = new Map<string, Parity["vqa"]>();
    for (const item of reference.vqa) byImage.set(item.image, [...(byImage.get(item.image) ?? []), item]);
    for (const [imageFile, items] of byImage) {
      const logits = await head.logits({
        image: fixture(imageFile),
        questions: items.map((item) => item.question),
      });
      logits.forEach((row, index) => {
        const item = items[index];
        if (item === undefined) return;
        const argmax = row.indexOf(Math.max(...row));
        expect(pack.answers?.[argmax]).toBe(item.argmax);
        expect(cosineSimilarity(row, item.logits)).toBeGreaterThanOrEqual(0.999);
      });
    }
  });

  // The clip's frames are at the model's size (no resizing), so both runtimes compute the same function; the
  // spec's 0.999 once let through a reference computed with the video head's dropout on (cosine 0.9995).
  it("embeds videos with cosine ≥ 0.9999 to the reference", async () => {
    for (const item of reference.video) {
      const embedding =
        item.frames !== undefined
          ? await pack.videoEmbedder.embed({ frames: item.frames.map(fixture) })
          : (
              await pack.videoEmbedder.embedFrameFeatures({
                videos: [(item.frame_features ?? []).map((row) => Float32Array.from(row))],
              })
            )[0];
      const cosine = cosineSimilarity(embedding ?? [], item.video_embeds);
      console.log(`video parity: cosine ${cosine.toFixed(6)}`);
      expect(cosine).toBeGreaterThanOrEqual(0.9999);
    }
  });
});
