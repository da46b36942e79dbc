import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { loadModelPack, readModelPackInfo } from "../../src/inference/model-pack.ts";
import { poolTokenGrid } from "../../src/inference/video-embedder.ts";

const tinyPack = join(import.meta.dirname, "fixtures", "tiny-pack");

describe("poolTokenGrid", () => {
  // A class token and a 4 × 4 patch grid of width 2: patch (row, col) holds [row * 4 + col, -1].
  const width = 2;
  const data = new Float32Array(17 * width);
  data.set([100, 200], 0);
  for (let patch = 0; patch < 16; patch += 1) data.set([patch, -1], (1 + patch) * width);

  it("keeps the class token and averages each grid cell's patches in row-major order", () => {
    const pooled = poolTokenGrid({ tokens: { data, length: 17, width }, grid: 2 });
    // Cell (0,0) holds patches 0, 1, 4, 5; (0,1) 2, 3, 6, 7; (1,0) 8, 9, 12, 13; (1,1) 10, 11, 14, 15.
    expect(Array.from(pooled)).toEqual([100, 200, 2.5, -1, 4.5, -1, 10.5, -1, 12.5, -1]);
  });

  it("is the identity on the patches for a grid as fine as the patches", () => {
    const pooled = poolTokenGrid({ tokens: { data, length: 17, width }, grid: 4 });
    expect(Array.from(pooled)).toEqual(Array.from(data));
  });

  it("refuses tokens that are not a class token and a square grid the given grid divides", () => {
    expect(() => poolTokenGrid({ tokens: { data, length: 17, width }, grid: 3 })).toThrow(ValidationError);
    expect(() =>
      poolTokenGrid({ tokens: { data: data.subarray(0, 16 * width), length: 16, width }, grid: 2 }),
    ).toThrow(/not a class token and a square patch grid divisible by 2/);
  });
});

describe("token-grid video heads in config.json", () => {
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "loupe-video-head-"));
  });

  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  /** A copy of the tiny pack whose `loupe.video` reads token grids, with `video` laid over that. */
  async function packWithVideo(name: string, video: Record<string, unknown>): Promise<string> {
    const dir = join(scratch, name);
    await cp(tinyPack, dir, { recursive: true });
    const path = join(dir, "config.json");
    const config = JSON.parse(await readFile(path, "utf8")) as { loupe: { video: unknown } };
    config.loupe.video = { num_frames: 4, fps: 8, frame_features: "token_grid", ...video };
    await writeFile(path, JSON.stringify(config));
    return dir;
  }

  it("reads the grid and sizes the frame features from it and the tower width", async () => {
    const dir = await packWithVideo("grid-2", { token_grid: 2 });
    expect((await readModelPackInfo({ dir })).videoTokenGrid).toBe(2);
    // Lazily: the fixture's video model reads embeddings, which the next test shows is refused at opening.
    const pack = await loadModelPack({ dir, verifyHashes: false, sessions: "lazy" });
    try {
      // 1 class token + 2 × 2 cells, each of the tower's width (8).
      expect(pack.videoEmbedder.frameFeatureLength).toBe(40);
      await expect(
        pack.videoEmbedder.embedFrameFeatures({
          videos: [Array.from({ length: 4 }, () => new Float32Array(16))],
        }),
      ).rejects.toThrow(/frame feature of length 16; the pack's video features have length 40/);
    } finally {
      await pack.close();
    }
  });

  it("refuses a video model whose input shape is not what the config says it reads", async () => {
    const dir = await packWithVideo("grid-vs-onnx", { token_grid: 2 });
    await expect(loadModelPack({ dir, verifyHashes: false })).rejects.toThrow(
      /onnx\/video_model\.onnx does not have the expected inputs\/outputs: input frame_features has shape \[\w+, \w+, 16\] where \[any, any, 5, 8\] is fed/,
    );
  });

  it("says when token_grid is missing", async () => {
    const dir = await packWithVideo("no-grid", {});
    await expect(readModelPackInfo({ dir })).rejects.toThrow(/frame_features "token_grid" needs token_grid/);
  });

  it("says when the grid does not divide the patch grid", async () => {
    const dir = await packWithVideo("grid-3", { token_grid: 3 });
    await expect(readModelPackInfo({ dir })).rejects.toThrow(
      /token_grid is 3, which does not divide the vision tower's 32\/8 patch grid; it must be a divisor of 4/,
    );
  });

  it("refuses frame features it does not know, naming the allowed ones", async () => {
    const dir = await packWithVideo("unknown", { frame_features: "optical_flow" });
    await expect(readModelPackInfo({ dir })).rejects.toThrow(
      /loupe\.video\.frame_features: Invalid option: expected one of "image_embeds"\|"token_grid"/,
    );
  });
});
