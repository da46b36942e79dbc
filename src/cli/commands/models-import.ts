/**
 * `loupe models import <dir>`: checks a pack that has no Loupe manifest (a folder as the Hugging Face hub serves
 * it, or an export of one's own) and writes its `manifest.json` in place, so the server loads it.
 */
import { type Command, Option } from "commander";
import { importPack } from "../../inference/pack-import.ts";
import { wholeNumber } from "../command-inputs.ts";

/** Adds `models import` to `loupe models`. */
export function registerModelsImportCommand(models: Command): void {
  models
    .command("import")
    .description(
      "check a pack without a manifest (JSON files, tokenizer, models' input/output names) and write its manifest.json",
    )
    .argument("<dir>", "pack directory in the Hugging Face CLIP ONNX layout")
    .option("--force", "replace a manifest.json that no longer matches the pack's files", false)
    .addOption(
      new Option("--threads <n>", "ONNX Runtime intra-op threads while the models are checked")
        .argParser(wholeNumber("--threads", { min: 1 }))
        .default(1),
    )
    .action(async (dir: string, flags: { force: boolean; threads: number }) => {
      const { info, manifest, outcome } = await importPack({
        dir,
        force: flags.force,
        sessionOptions: { intraOpNumThreads: flags.threads },
      });
      const heads = [info.capabilities.vqa ? "a VQA head" : "", info.capabilities.video ? "a video head" : ""]
        .filter((head) => head !== "")
        .join(" and ");
      const listed = Object.keys(manifest.files).length;
      process.stdout.write(
        `${outcome === "written" ? "Wrote" : "Kept"} ${info.dir}/manifest.json (${listed} files) for ${info.modelId}: ` +
          `dimension ${info.dimension}, ${info.imageSize}px images, ${heads === "" ? "no heads (plain CLIP: VQA unavailable, videos by averaged frames)" : heads}.\n` +
          `Use it with LOUPE_MODEL_PACK=${info.dir}\n`,
      );
    });
}
