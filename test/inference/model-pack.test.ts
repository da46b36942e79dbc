import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, ModelPackError } from "../../src/errors.ts";
import { writeManifest } from "../../src/inference/manifest.ts";
import { loadModelPack, readModelPackInfo } from "../../src/inference/model-pack.ts";
import { createSession } from "../../src/inference/session.ts";

const fixtures = join(import.meta.dirname, "fixtures");
const tinyPack = join(fixtures, "tiny-pack");
const tinyClipPack = join(fixtures, "tiny-clip-pack");

let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "loupe-pack-test-"));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A writable copy of a fixture pack. */
async function copyPack(source: string, name: string): Promise<string> {
  const target = join(scratch, name);
  await cp(source, target, { recursive: true });
  return target;
}

async function loadError(options: Parameters<typeof loadModelPack>[0]): Promise<ModelPackError> {
  const error = await loadModelPack(options).then(
    async (pack) => {
      await pack.close();
      return undefined;
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ModelPackError);
  return error as ModelPackError;
}

describe("loadModelPack on a Loupe-layout pack", () => {
  it("exposes id, dimension, image size and capabilities", async () => {
    const pack = await loadModelPack({ dir: tinyPack });
    try {
      expect(pack.modelId).toBe("tiny-test@1");
      expect(pack.dimension).toBe(16);
      expect(pack.imageSize).toBe(32);
      expect(pack.capabilities).toEqual({ vqa: true, video: true, detection: false });
      expect(pack.answers).toHaveLength(22);
      expect(pack.vqaHead).toBeDefined();
      expect(pack.videoEmbedder.numFrames).toBe(4);
      expect(pack.tokenizer.maxLength).toBe(16);
    } finally {
      await pack.close();
    }
  });

  it("refuses to run after close", async () => {
    const pack = await loadModelPack({ dir: tinyPack, sessions: "lazy" });
    await pack.close();
    await expect(pack.textEmbedder.embed({ texts: ["a red circle"] })).rejects.toThrow(/is closed/);
  });
});

describe("loadModelPack on a public-CLIP-layout pack", () => {
  it("uses the directory name as id and has no VQA or video head", async () => {
    const pack = await loadModelPack({ dir: tinyClipPack });
    try {
      expect(pack.modelId).toBe("tiny-clip-pack");
      expect(pack.capabilities).toEqual({ vqa: false, video: false, detection: false });
      expect(pack.vqaHead).toBeUndefined();
      expect(pack.videoEmbedder.hasHead).toBe(false);
      // crop_size and size given as plain numbers
      expect(pack.imageSize).toBe(32);
    } finally {
      await pack.close();
    }
  });
});

describe("pack validation errors", () => {
  it("names a missing file and says to re-fetch", async () => {
    const dir = await copyPack(tinyPack, "missing-file");
    await rm(join(dir, "onnx", "text_model.onnx"));
    const error = await loadError({ dir });
    expect(error.message).toContain("onnx/text_model.onnx is missing");
    expect(error.message).toMatch(/Re-fetch or reinstall the pack/);
  });

  it("names a file whose hash differs, with expected and actual hashes", async () => {
    const dir = await copyPack(tinyPack, "wrong-hash");
    const path = join(dir, "answers.json");
    const answers = JSON.parse(await readFile(path, "utf8")) as string[];
    await writeFile(path, JSON.stringify(answers.reverse()));
    const manifest = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8")) as {
      files: Record<string, string>;
    };
    const error = await loadError({ dir });
    expect(error.message).toContain("answers.json does not match manifest.json");
    expect(error.message).toContain(`expected sha256 ${manifest.files["answers.json"]}`);
    expect(error.context).toMatchObject({ file: "answers.json" });
    expect(error.context.actual).toMatch(/^[0-9a-f]{64}$/);
  });

  it("fails without a manifest unless hash verification is off", async () => {
    const dir = await copyPack(tinyPack, "no-manifest");
    await rm(join(dir, "manifest.json"));
    const error = await loadError({ dir });
    expect(error.message).toMatch(/has no manifest\.json/);
    const pack = await loadModelPack({ dir, verifyHashes: false });
    await pack.close();
  });

  it("refuses manifest paths that leave the pack", async () => {
    const dir = await copyPack(tinyPack, "escaping-manifest");
    const manifestPath = join(dir, "manifest.json");
    const manifest = JSON.parse(await readFile(manifestPath, "utf8")) as { files: Record<string, string> };
    manifest.files["../outside.txt"] = "0".repeat(64);
    await writeFile(manifestPath, JSON.stringify(manifest));
    const error = await loadError({ dir });
    expect(error.message).toMatch(/"\.\.\/outside\.txt", which points outside the pack/);
  });

  it("names the model file whose input names are wrong, with expected and found names", async () => {
    const dir = await copyPack(tinyPack, "wrong-io");
    await cp(join(fixtures, "onnx", "wrong-io-vision.onnx"), join(dir, "onnx", "vision_model.onnx"));
    await writeManifest({ dir });
    const error = await loadError({ dir });
    expect(error.message).toContain("onnx/vision_model.onnx does not have the expected inputs/outputs");
    expect(error.message).toContain("missing input(s) pixel_values");
    expect(error.message).toContain("found inputs [pixels] and outputs [embeds, last_hidden_state]");
  });

  it("names an invalid config field", async () => {
    const dir = await copyPack(tinyPack, "bad-config");
    const path = join(dir, "config.json");
    const config = JSON.parse(await readFile(path, "utf8")) as { projection_dim: unknown };
    config.projection_dim = "sixteen";
    await writeFile(path, JSON.stringify(config));
    const error = await loadError({ dir, verifyHashes: false });
    expect(error.message).toMatch(/config\.json has invalid fields: projection_dim/);
  });

  it("says when the declared VQA model is missing", async () => {
    const dir = await copyPack(tinyPack, "no-vqa-model");
    await rm(join(dir, "onnx", "meter_vqa.onnx"));
    const error = await loadError({ dir, verifyHashes: false });
    expect(error.message).toMatch(/declares a VQA head but onnx\/meter_vqa\.onnx is missing/);
  });

  it("says when the image size of the preprocessor and the model disagree", async () => {
    const dir = await copyPack(tinyPack, "size-mismatch");
    const path = join(dir, "preprocessor_config.json");
    const config = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    config.crop_size = 48;
    await writeFile(path, JSON.stringify(config));
    await expect(readModelPackInfo({ dir })).rejects.toThrow(/makes 48x48 images but config\.json's/);
  });

  it("says when the directory does not exist", async () => {
    const error = await loadError({ dir: join(scratch, "nope") });
    expect(error.message).toMatch(/has no manifest\.json|does not exist/);
    await expect(readModelPackInfo({ dir: join(scratch, "nope") })).rejects.toThrow(/does not exist/);
  });

  it("reports an unreadable ONNX file as a pack error naming it", async () => {
    const dir = await copyPack(tinyPack, "corrupt-onnx");
    await writeFile(join(dir, "onnx", "video_model.onnx"), "not a protobuf");
    const error = await loadError({ dir, verifyHashes: false });
    expect(error.message).toMatch(/Could not load the ONNX model onnx\/video_model\.onnx/);
  });
});

describe("createSession", () => {
  it("reports an unavailable execution provider as a configuration error", async () => {
    const error = await createSession({
      path: join(tinyPack, "onnx", "video_model.onnx"),
      contract: { requiredInputs: ["frame_features"], requiredOutputs: ["video_embeds"] },
      settings: { executionProviders: ["no-such-provider"] },
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(
      /Could not open video_model\.onnx with execution providers \[no-such-provider\].*use the bundled cpu provider/,
    );
  });

  it("lets runs in progress finish before releasing", async () => {
    const pack = await loadModelPack({ dir: tinyPack });
    const running = pack.textEmbedder.embed({ texts: ["a red circle", "two blue stars"] });
    await pack.close();
    expect(await running).toHaveLength(2);
  });

  it("feeds only the inputs a model declares", async () => {
    const session = await createSession({
      path: join(tinyClipPack, "onnx", "text_model.onnx"),
      contract: {
        requiredInputs: ["input_ids"],
        optionalInputs: ["attention_mask"],
        requiredOutputs: ["text_embeds"],
      },
    });
    try {
      expect(session.inputNames).toEqual(["input_ids"]);
      expect(session.hasInput("attention_mask")).toBe(false);
    } finally {
      await session.release();
      await session.release();
    }
  });
});
