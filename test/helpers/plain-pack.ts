/**
 * A plain CLIP pack derived from the shipped one: its two towers and the Hugging Face JSON files only (no
 * `loupe` block, no VQA or video head, no vocabulary, no manifest), as a pack copied from the hub looks,
 * then given its manifest by `importPack` (what `loupe models import` runs).
 */
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BUNDLED_MODEL_PACK } from "../../src/config.ts";
import { importPack } from "../../src/inference/pack-import.ts";

const COPIED = [
  "preprocessor_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "onnx/vision_model.onnx",
  "onnx/text_model.onnx",
] as const;

/** Writes the plain pack into `dir` (its name becomes the model id); `manifest: false` leaves it unimported. */
export async function makePlainPack({
  dir,
  manifest = true,
}: {
  dir: string;
  manifest?: boolean;
}): Promise<string> {
  await mkdir(join(dir, "onnx"), { recursive: true });
  for (const file of COPIED) await copyFile(join(BUNDLED_MODEL_PACK, file), join(dir, file));
  const config = JSON.parse(await readFile(join(BUNDLED_MODEL_PACK, "config.json"), "utf8")) as Record<
    string,
    unknown
  >;
  delete config.loupe;
  await writeFile(join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  if (manifest) await importPack({ dir });
  return dir;
}
