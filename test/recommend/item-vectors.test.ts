/**
 * The item-embedding cache: each item embedded once per model and media, least recently used evicted.
 */
import { describe, expect, it } from "vitest";
import type { ItemEmbeddingModels } from "../../src/recommend/index.ts";
import { ItemVectors } from "../../src/recommend/index.ts";
import type { StoredImage, StoredRecord, StoredVideoSegment } from "../../src/store/index.ts";

const image = (id: string, mediaRef = `ref-${id}`): StoredImage => ({
  kind: "image",
  id,
  tenant: "acme",
  modelId: "m",
  mediaRef,
  source: "upload",
  createdAt: 0,
  text: "",
  metadata: {},
  ocrText: "",
});

/** Embeds each image as [its first byte, 1], counting the images embedded. */
function countingModels(): ItemEmbeddingModels & { embedded: number } {
  const models = {
    modelId: "m",
    embedded: 0,
    imageEmbedder: {
      embed: async ({ images }: { images: readonly Uint8Array[] }) => {
        models.embedded += images.length;
        return images.map((bytes) => Float32Array.from([bytes[0] ?? 0, 1]));
      },
    },
  };
  return models as unknown as ItemEmbeddingModels & { embedded: number };
}

const media = { read: async ({ ref }: { ref: string }) => Uint8Array.from([ref.length]) };

describe("ItemVectors", () => {
  it("embeds an item once, again when its media changes", async () => {
    const models = countingModels();
    const vectors = new ItemVectors({ models, media });
    const records: StoredRecord[] = [image("img_a"), image("img_b", "r")];
    const first = await vectors.vectorsOf({ tenant: "acme", records });
    expect(first.map((vector) => Array.from(vector))).toEqual([
      [9, 1],
      [1, 1],
    ]);
    await vectors.vectorsOf({ tenant: "acme", records });
    expect(models.embedded).toBe(2);
    await vectors.vectorsOf({ tenant: "acme", records: [image("img_a", "another")] });
    expect(models.embedded).toBe(3);
    // The same id in another tenant is another item.
    await vectors.vectorsOf({ tenant: "other", records: [image("img_a")] });
    expect(models.embedded).toBe(4);
  });

  it("keeps at most its capacity, dropping the least recently used", async () => {
    const models = countingModels();
    const vectors = new ItemVectors({ models, media, capacity: 2 });
    await vectors.vectorsOf({ tenant: "acme", records: [image("img_a"), image("img_b"), image("img_c")] });
    expect(vectors.size).toBe(2);
    await vectors.vectorsOf({ tenant: "acme", records: [image("img_c")] });
    expect(models.embedded).toBe(3);
    await vectors.vectorsOf({ tenant: "acme", records: [image("img_a")] });
    expect(models.embedded).toBe(4);
  });

  it("refuses a segment without a keyframe, and a server without media", async () => {
    const segment: StoredVideoSegment = {
      ...image("seg_a"),
      kind: "video_segment",
      videoId: "vid_a",
      startS: 0,
      endS: 1,
      keyframeRef: "",
    };
    const vectors = new ItemVectors({ models: countingModels(), media });
    await expect(vectors.vectorsOf({ tenant: "acme", records: [segment] })).rejects.toThrow(/no image/);
    const blind = new ItemVectors({ models: countingModels(), media: undefined });
    await expect(blind.vectorsOf({ tenant: "acme", records: [image("img_a")] })).rejects.toThrow(
      /blob store/,
    );
  });
});
