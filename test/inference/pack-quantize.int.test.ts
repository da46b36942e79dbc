/**
 * `quantizePack` on the shipped pack (real onnxruntime quantization in the .venv Python, real models): the
 * INT8 variant has its own model id and a verifying manifest, is smaller, embeds close to FP32 and ranks
 * rendered Shapes World scenes the same way; misuse is refused with a message that says what to do.
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUNDLED_MODEL_PACK } from "../../src/config.ts";
import { ModelPackError } from "../../src/errors.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/model-pack.ts";
import { quantizePack } from "../../src/inference/pack-quantize.ts";
import { cosineSimilarity } from "../../src/inference/vector-math.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../../src/synth/index.ts";
import { REPO_VENV_DIR } from "../helpers/milvus-lite.ts";

const python = join(REPO_VENV_DIR, "bin", "python");

describe("quantizePack", () => {
  let scratch: string;
  let out: string;
  let fp32: ModelPack;
  let int8: ModelPack;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "loupe-quantize-"));
    out = join(scratch, "int8");
    await quantizePack({ dir: BUNDLED_MODEL_PACK, out, python });
    fp32 = await loadModelPack({ dir: BUNDLED_MODEL_PACK });
    int8 = await loadModelPack({ dir: out });
  }, 120_000);

  afterAll(async () => {
    await fp32?.close();
    await int8?.close();
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
  });

  it("writes a pack with its own model id, a quantization record, a model card section and a manifest", async () => {
    expect(int8.modelId).toBe("shapes-world-tiny@2+int8");
    expect(int8.capabilities).toEqual({ vqa: true, video: true, detection: true });
    expect(int8.info.config.loupe?.quantization).toEqual({
      method: "onnxruntime dynamic quantization (MatMul, Gemm)",
      weight_type: "qint8",
      per_channel: true,
      source_model_id: "shapes-world-tiny@2",
    });
    const card = await readFile(join(out, "MODEL_CARD.md"), "utf8");
    expect(card).toContain("## INT8 variant");
    const manifest = JSON.parse(await readFile(join(out, "manifest.json"), "utf8")) as {
      files: Record<string, string>;
    };
    expect(Object.keys(manifest.files)).toEqual(
      expect.arrayContaining(["onnx/vision_model.onnx", "onnx/meter_vqa.onnx", "onnx/video_model.onnx"]),
    );
    for (const file of int8.info.modelFiles) {
      const [before, after] = await Promise.all([
        stat(join(BUNDLED_MODEL_PACK, file)),
        stat(join(out, file)),
      ]);
      expect(after.size, file).toBeLessThan(before.size * 0.75);
    }
  });

  it("embeds close to FP32 and picks the same scene for each text", async () => {
    const images: Uint8Array[] = [];
    for (let index = 0; index < 12; index += 1) {
      const scene = sampleScene(createRng(deriveSeed(71, "scene", index)));
      const rendered = await renderScene(scene, {
        size: 128,
        format: "png",
        seed: deriveSeed(71, "render", index),
      });
      images.push(rendered.data);
    }
    const [a, b] = await Promise.all([
      fp32.imageEmbedder.embed({ images }),
      int8.imageEmbedder.embed({ images }),
    ]);
    const imageCos = a.map((vector, index) => cosineSimilarity(vector, b[index] as Float32Array));
    expect(Math.min(...imageCos)).toBeGreaterThan(0.97);

    const texts = ["a large red circle", "two small blue squares", "a green triangle left of a star"];
    const [ta, tb] = await Promise.all([
      fp32.textEmbedder.embed({ texts }),
      int8.textEmbedder.embed({ texts }),
    ]);
    const textCos = ta.map((vector, index) => cosineSimilarity(vector, tb[index] as Float32Array));
    expect(Math.min(...textCos)).toBeGreaterThan(0.97);

    const best = (texts: Float32Array[], imagesVectors: Float32Array[]) =>
      texts.map(
        (text) =>
          imagesVectors.reduce(
            (top, image, index) =>
              cosineSimilarity(text, image) > top.score
                ? { index, score: cosineSimilarity(text, image) }
                : top,
            { index: -1, score: -2 },
          ).index,
      );
    expect(best(tb, b)).toEqual(best(ta, a));
  });

  it("refuses an output directory that is not empty, unless forced", async () => {
    const taken = join(scratch, "taken");
    await mkdir(taken, { recursive: true });
    await writeFile(join(taken, "notes.txt"), "keep me");
    await expect(quantizePack({ dir: BUNDLED_MODEL_PACK, out: taken, python })).rejects.toThrow(
      /already exists and is not empty.*--force/,
    );
    expect(await readFile(join(taken, "notes.txt"), "utf8")).toBe("keep me");
  });

  it("refuses to quantize an INT8 variant again", async () => {
    await expect(quantizePack({ dir: out, out: join(scratch, "twice"), python })).rejects.toThrow(
      /already an INT8 variant \(shapes-world-tiny@2\+int8\); quantize its source pack/,
    );
  });

  it("says how to get the tools when the Python cannot run", async () => {
    const error = await quantizePack({
      dir: BUNDLED_MODEL_PACK,
      out: join(scratch, "no-python"),
      python: join(scratch, "missing", "python"),
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelPackError);
    expect((error as Error).message).toMatch(/npm run setup.*--python/);
  });
});
