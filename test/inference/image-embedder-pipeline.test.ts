/**
 * `ImageEmbedder.encode` preprocesses batch k + 1 while batch k runs the model: results keep the input order
 * whatever the batching, a bad image in a later batch fails the call with its own error (and no unhandled
 * rejection), and the embedder keeps working afterwards, also for concurrent callers.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaError } from "../../src/errors.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/model-pack.ts";
import { cosineSimilarity } from "../../src/inference/vector-math.ts";

const fixtures = join(import.meta.dirname, "fixtures");
const images = readdirSync(join(fixtures, "images"))
  .filter((file) => /\.(png|jpg|gif|webp)$/.test(file) && !file.includes(".crop."))
  .map((file) => readFileSync(join(fixtures, "images", file)));

describe("ImageEmbedder.encode pipelining", () => {
  let pack: ModelPack;
  let oneByOne: Float32Array[];

  beforeAll(async () => {
    pack = await loadModelPack({ dir: join(fixtures, "tiny-pack"), batchSizes: { image: 2 } });
    oneByOne = [];
    for (const image of images) {
      const [embedding] = (await pack.imageEmbedder.encode({ images: [image] })).embeddings;
      if (embedding === undefined) throw new Error("no embedding");
      oneByOne.push(embedding);
    }
  });

  afterAll(async () => {
    await pack?.close();
  });

  it("keeps the input order across pipelined batches", async () => {
    expect(images.length).toBeGreaterThanOrEqual(5);
    const { embeddings, tokens } = await pack.imageEmbedder.encode({ images, withTokens: true });
    expect(embeddings).toHaveLength(images.length);
    expect(tokens).toHaveLength(images.length);
    embeddings.forEach((embedding, index) => {
      expect(cosineSimilarity(embedding, oneByOne[index] as Float32Array)).toBeGreaterThan(0.9999);
    });
  });

  it("fails with the bad image's error when a later batch cannot be decoded, then works on", async () => {
    const broken = [...images.slice(0, 4), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), ...images.slice(0, 2)];
    await expect(pack.imageEmbedder.encode({ images: broken })).rejects.toBeInstanceOf(MediaError);
    const again = await pack.imageEmbedder.encode({ images: images.slice(0, 3) });
    expect(again.embeddings).toHaveLength(3);
  });

  it("serves concurrent callers, each its own images in order", async () => {
    const [a, b, c] = await Promise.all([
      pack.imageEmbedder.encode({ images }),
      pack.imageEmbedder.encode({ images: [...images].reverse() }),
      pack.imageEmbedder.embed({ images: images.slice(1, 4) }),
    ]);
    a.embeddings.forEach((embedding, index) => {
      expect(cosineSimilarity(embedding, oneByOne[index] as Float32Array)).toBeGreaterThan(0.9999);
    });
    b.embeddings.forEach((embedding, index) => {
      expect(
        cosineSimilarity(embedding, oneByOne[images.length - 1 - index] as Float32Array),
      ).toBeGreaterThan(0.9999);
    });
    c.forEach((embedding, index) => {
      expect(cosineSimilarity(embedding, oneByOne[index + 1] as Float32Array)).toBeGreaterThan(0.9999);
    });
  });
});

describe("the vision tower in several copies (visionReplicas)", () => {
  it("embeds concurrent images across the copies with the same results as one copy, and releases them all", async () => {
    const single = await loadModelPack({ dir: join(fixtures, "tiny-pack"), batchSizes: { image: 1 } });
    const copies = await loadModelPack({
      dir: join(fixtures, "tiny-pack"),
      batchSizes: { image: 1 },
      visionReplicas: 3,
    });
    try {
      const expected = await single.imageEmbedder.embed({ images });
      // Every image submitted at once: up to three runs of one image each are in flight.
      const [all, reversed] = await Promise.all([
        copies.imageEmbedder.embed({ images }),
        copies.imageEmbedder.embed({ images: [...images].reverse() }),
      ]);
      all.forEach((embedding, index) => {
        expect(cosineSimilarity(embedding, expected[index] as Float32Array)).toBeGreaterThan(0.9999);
      });
      reversed.reverse().forEach((embedding, index) => {
        expect(cosineSimilarity(embedding, expected[index] as Float32Array)).toBeGreaterThan(0.9999);
      });
    } finally {
      await single.close();
      await copies.close();
    }
    await expect(copies.imageEmbedder.embed({ images: images.slice(0, 1) })).rejects.toThrow(
      /closed|released/,
    );
  });
});
