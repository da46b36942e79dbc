/**
 * The whole TypeScript runtime (sharp preprocessing, JS tokenizer, onnxruntime-node, heads) against the Python
 * stack (transformers' CLIPImageProcessor, `tokenizers`, `onnxruntime`) on the tiny fixture packs. See
 * fixtures/make_tiny_packs.py. The trained pack's own parity fixtures are checked in shipped-pack.int.test.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/model-pack.ts";
import { cosineSimilarity } from "../../src/inference/vector-math.ts";
import { resampleIndices } from "../../src/inference/video-embedder.ts";

const fixtures = join(import.meta.dirname, "fixtures");

interface PackReference {
  images: { file: string; embedding: number[] }[];
  texts: { text: string; input_ids: number[]; embedding: number[] }[];
  vqa?: { image: string; question: string; logits: number[]; argmax: string }[];
  video: { frames: string[]; indices?: number[]; embedding: number[] };
}

const reference = JSON.parse(readFileSync(join(fixtures, "tiny-reference.json"), "utf8")) as Record<
  string,
  PackReference
>;

const image = (file: string): Buffer => readFileSync(join(fixtures, "images", file));

describe.each(["tiny-pack", "tiny-clip-pack"])("%s: TypeScript runtime vs Python", (packName) => {
  const expected = reference[packName] as PackReference;
  let pack: ModelPack;

  beforeAll(async () => {
    pack = await loadModelPack({ dir: join(fixtures, packName), batchSizes: { image: 2, text: 2 } });
  });

  afterAll(async () => {
    await pack?.close();
  });

  it("embeds images like the Python stack (cosine ≥ 0.999), across batches", async () => {
    const embeddings = await pack.imageEmbedder.embed({
      images: expected.images.map((item) => image(item.file)),
    });
    expect(embeddings).toHaveLength(expected.images.length);
    embeddings.forEach((embedding, index) => {
      expect(embedding).toHaveLength(pack.dimension);
      const norm = Math.hypot(...embedding);
      expect(norm).toBeCloseTo(1, 5);
      expect(cosineSimilarity(embedding, expected.images[index]?.embedding ?? [])).toBeGreaterThanOrEqual(
        0.999,
      );
    });
  });

  it("tokenizes and embeds texts like the Python stack", async () => {
    const texts = expected.texts.map((item) => item.text);
    expected.texts.forEach((item) => {
      expect(pack.tokenizer.encode({ text: item.text })).toEqual(item.input_ids);
    });
    const embeddings = await pack.textEmbedder.embed({ texts });
    embeddings.forEach((embedding, index) => {
      expect(cosineSimilarity(embedding, expected.texts[index]?.embedding ?? [])).toBeGreaterThanOrEqual(
        0.9999,
      );
    });
  });

  it("embeds a video like the Python stack", async () => {
    const embedding = await pack.videoEmbedder.embed({ frames: expected.video.frames.map(image) });
    expect(Math.hypot(...embedding)).toBeCloseTo(1, 5);
    expect(cosineSimilarity(embedding, expected.video.embedding)).toBeGreaterThanOrEqual(0.999);
    if (expected.video.indices !== undefined) {
      expect(resampleIndices({ count: expected.video.frames.length, frames: 4 })).toEqual(
        expected.video.indices,
      );
    }
  });

  it("returns no vectors for no inputs and rejects a video without frames", async () => {
    expect(await pack.imageEmbedder.embed({ images: [] })).toEqual([]);
    expect(await pack.textEmbedder.embed({ texts: [] })).toEqual([]);
    await expect(pack.videoEmbedder.embed({ frames: [] })).rejects.toBeInstanceOf(ValidationError);
  });
});

describe("tiny-pack VQA head vs Python", () => {
  const expected = (reference["tiny-pack"] as PackReference).vqa ?? [];
  let pack: ModelPack;

  beforeAll(async () => {
    pack = await loadModelPack({ dir: join(fixtures, "tiny-pack"), batchSizes: { vqa: 2 } });
  });

  afterAll(async () => {
    await pack?.close();
  });

  it("gives the same logits and argmax for several questions about one image", async () => {
    const head = pack.vqaHead;
    if (head === undefined) throw new Error("tiny-pack has a VQA head");
    const firstImage = image(expected[0]?.image ?? "");
    const logits = await head.logits({ image: firstImage, questions: expected.map((item) => item.question) });
    logits.forEach((row, index) => {
      const reference = expected[index]?.logits ?? [];
      row.forEach((value, answer) => {
        expect(value).toBeCloseTo(reference[answer] ?? Number.NaN, 4);
      });
    });
    const answers = await head.answerMany({
      image: firstImage,
      questions: expected.map((item) => item.question),
      topK: 3,
    });
    answers.forEach((top, index) => {
      expect(top).toHaveLength(3);
      expect(top[0]?.answer).toBe(expected[index]?.argmax);
      expect(top[0]?.probability ?? 0).toBeGreaterThanOrEqual(top[1]?.probability ?? 1);
    });
  });

  it("reuses encoded image tokens", async () => {
    const head = pack.vqaHead;
    if (head === undefined) throw new Error("tiny-pack has a VQA head");
    const item = expected[1];
    if (item === undefined) throw new Error("fixture has VQA cases");
    const tokens = await head.encodeImage({ image: image(item.image) });
    expect(tokens.length).toBe(17);
    const [top] = await head.answer({ image: tokens, question: item.question, topK: 1 });
    expect(top?.answer).toBe(item.argmax);
    const all = await head.answer({ image: tokens, question: item.question, topK: 22 });
    expect(all.reduce((sum, answer) => sum + answer.probability, 0)).toBeCloseTo(1, 6);
  });
});

describe("resampleIndices", () => {
  it("spreads frames evenly, keeping the first and last", () => {
    expect(resampleIndices({ count: 16, frames: 16 })).toEqual(
      Array.from({ length: 16 }, (_, index) => index),
    );
    expect(resampleIndices({ count: 32, frames: 4 })).toEqual([0, 10, 21, 31]);
    expect(resampleIndices({ count: 2, frames: 4 })).toEqual([0, 0, 1, 1]);
    expect(resampleIndices({ count: 7, frames: 1 })).toEqual([3]);
  });
});
