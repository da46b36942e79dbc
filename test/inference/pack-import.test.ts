/** `importPack` and `loupe models import`: a pack without a manifest is checked, then given one. */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { registerModelsCommand } from "../../src/cli/commands/models.ts";
import { ModelPackError } from "../../src/errors.ts";
import { loadModelPack } from "../../src/inference/model-pack.ts";
import { importPack } from "../../src/inference/pack-import.ts";

const fixtures = join(import.meta.dirname, "fixtures");
let scratch: string;
let copies = 0;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "loupe-import-"));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A copy of a fixture pack with its manifest removed, as a hub folder has none. */
async function hubCopy(name: string): Promise<string> {
  copies += 1;
  const dir = join(scratch, `${name}-${copies}`);
  await cp(join(fixtures, name), dir, { recursive: true });
  await rm(join(dir, "manifest.json"));
  return dir;
}

describe("importPack", () => {
  it("the loader names the import command for a pack without a manifest", async () => {
    const dir = await hubCopy("tiny-clip-pack");
    const error = await loadModelPack({ dir }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ModelPackError);
    expect((error as Error).message).toContain(`loupe models import ${dir}`);
  });

  it("writes a manifest of the files Loupe reads, after which the pack loads verified", async () => {
    const dir = await hubCopy("tiny-clip-pack");
    await writeFile(join(dir, "onnx", "model_fp16.onnx"), "another export the pack does not use");
    const result = await importPack({ dir });
    expect(result.outcome).toBe("written");
    expect(Object.keys(result.manifest.files).sort()).toEqual([
      "config.json",
      "onnx/text_model.onnx",
      "onnx/vision_model.onnx",
      "preprocessor_config.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    const pack = await loadModelPack({ dir });
    expect(pack.capabilities).toEqual({ vqa: false, video: false, detection: false });
    await pack.close();
    // A second import keeps the manifest that verifies.
    expect((await importPack({ dir })).outcome).toBe("unchanged");
  });

  it("refuses a manifest that no longer matches the files unless forced", async () => {
    const dir = await hubCopy("tiny-clip-pack");
    await importPack({ dir });
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as { projection_dim: number };
    await writeFile(join(dir, "config.json"), JSON.stringify({ ...config, logit_scale_init_value: 2 }));
    await expect(importPack({ dir })).rejects.toThrow(/config\.json does not match manifest\.json.*--force/);
    expect((await importPack({ dir, force: true })).outcome).toBe("written");
    const pack = await loadModelPack({ dir });
    await pack.close();
  });

  it("checks the models' input and output names before writing anything", async () => {
    const dir = await hubCopy("tiny-clip-pack");
    await cp(join(fixtures, "onnx", "wrong-io-vision.onnx"), join(dir, "onnx", "vision_model.onnx"));
    await expect(importPack({ dir })).rejects.toThrow(/vision_model\.onnx/);
    await expect(readFile(join(dir, "manifest.json"))).rejects.toThrow(/ENOENT/);
  });

  it("checks the JSON files", async () => {
    const dir = await hubCopy("tiny-clip-pack");
    await writeFile(join(dir, "preprocessor_config.json"), "{ not json");
    await expect(importPack({ dir })).rejects.toThrow(/preprocessor_config\.json is not valid JSON/);
  });

  it("imports a Loupe pack with heads too, listing its head files", async () => {
    const dir = await hubCopy("tiny-pack");
    const { manifest } = await importPack({ dir });
    expect(Object.keys(manifest.files)).toEqual(
      expect.arrayContaining(["onnx/meter_vqa.onnx", "onnx/video_model.onnx", "answers.json"]),
    );
  });
});

describe("loupe models import", () => {
  it("prints what it wrote and how to use the pack", async () => {
    const dir = await hubCopy("tiny-clip-pack");
    const output: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      output.push(String(chunk));
      return true;
    });
    const program = new Command("loupe").exitOverride();
    registerModelsCommand(program);
    await program.parseAsync(["node", "loupe", "models", "import", dir]);
    const text = output.join("");
    expect(text).toContain(`Wrote ${dir}/manifest.json (6 files)`);
    expect(text).toContain("no heads (plain CLIP");
    expect(text).toContain(`LOUPE_MODEL_PACK=${dir}`);
  });
});
