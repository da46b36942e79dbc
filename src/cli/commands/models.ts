/**
 * `loupe models`: list installed model packs, verify one (hashes and model input/output names), fetch a
 * public CLIP ONNX pack from the Hugging Face hub (or a mirror with the same URL layout), and evaluate one
 * (`eval`, in models-eval.ts).
 */
import { readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import cliProgress from "cli-progress";
import { type Command, Option } from "commander";
import { BUNDLED_MODEL_PACK } from "../../config.ts";
import { verifyManifest } from "../../inference/manifest.ts";
import {
  loadModelPack,
  type ModelPackInfo,
  packFiles,
  readModelPackInfo,
} from "../../inference/model-pack.ts";
import { manifestSchema, readPackJson } from "../../inference/pack-config.ts";
import { type FetchProgress, fetchPack, knownPacks } from "../../inference/pack-fetch.ts";
import { wholeNumber } from "../command-inputs.ts";
import { formatTable } from "../table.ts";
import { registerModelsEvalCommand } from "./models-eval.ts";
import { registerModelsImportCommand } from "./models-import.ts";
import { registerModelsMigrateCommand } from "./models-migrate.ts";
import { registerModelsQuantizeCommand } from "./models-quantize.ts";

const DEFAULT_MODELS_DIR = "models";

function capabilityList(info: ModelPackInfo): string {
  const parts = ["image", "text"];
  if (info.capabilities.vqa) parts.push("vqa");
  parts.push(info.capabilities.video ? `video(${info.videoFrames} frames)` : "video(mean)");
  if (info.capabilities.detection) parts.push("detection");
  return parts.join(",");
}

function formatMegabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function listPacks({ modelsDir, json }: { modelsDir: string; json: boolean }): Promise<void> {
  const root = resolve(modelsDir);
  let entries: string[];
  try {
    entries = (await readdir(root, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory() && !entry.name.startsWith("."))
      .map((entry) => entry.name)
      .sort();
  } catch {
    process.stdout.write(json ? "[]\n" : `No models directory at ${root}.\n`);
    return;
  }
  const results: { dir: string; info?: ModelPackInfo; error?: string }[] = [];
  for (const name of entries) {
    const dir = join(root, name);
    try {
      results.push({ dir: name, info: await readModelPackInfo({ dir }) });
    } catch (error) {
      // Directories without a config.json (e.g. training scripts) are not packs.
      const message = error instanceof Error ? error.message : String(error);
      if (!message.includes(`${packFiles.config} is missing`)) results.push({ dir: name, error: message });
    }
  }
  if (json) {
    const payload = results.map(({ dir, info, error }) =>
      info === undefined
        ? { dir, error }
        : {
            dir,
            modelId: info.modelId,
            dimension: info.dimension,
            imageSize: info.imageSize,
            capabilities: info.capabilities,
            videoFrames: info.videoFrames ?? null,
          },
    );
    process.stdout.write(`${JSON.stringify(payload, null, 2)}\n`);
    return;
  }
  if (results.length === 0) {
    process.stdout.write(
      `No model packs in ${root}. Fetch one with: loupe models fetch clip-vit-base-patch32\n`,
    );
    return;
  }
  const rows = [["DIR", "MODEL ID", "DIM", "IMAGE", "CAPABILITIES"]];
  for (const { dir, info, error } of results) {
    rows.push(
      info === undefined
        ? [dir, "(invalid)", "-", "-", error ?? ""]
        : [dir, info.modelId, String(info.dimension), `${info.imageSize}px`, capabilityList(info)],
    );
  }
  process.stdout.write(`${formatTable(rows)}\n`);
}

async function verifyPack({ dir, threads }: { dir: string; threads: number }): Promise<void> {
  const absolute = resolve(dir);
  const out = process.stdout;
  const manifest = await readPackJson({ dir: absolute, file: packFiles.manifest, schema: manifestSchema });
  await verifyManifest({
    dir: absolute,
    manifest,
    onFile: (file) => out.write(`  sha256 ok  ${file}\n`),
  });
  const pack = await loadModelPack({
    dir: absolute,
    // Hashes were just checked file by file above.
    verifyHashes: false,
    sessions: "eager",
    sessionOptions: { intraOpNumThreads: threads },
  });
  try {
    for (const file of pack.info.modelFiles) out.write(`  io ok      ${file}\n`);
    out.write(
      `${pack.modelId}: ${Object.keys(manifest.files).length} files verified; dimension ${pack.dimension}, ` +
        `${pack.imageSize}px images, capabilities ${capabilityList(pack.info)}.\n`,
    );
  } finally {
    await pack.close();
  }
}

function progressReporter(): { onProgress: (event: FetchProgress) => void; stop: () => void } {
  const interactive = process.stderr.isTTY === true;
  let bar: cliProgress.SingleBar | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
  };
  const onProgress = (event: FetchProgress): void => {
    if (event.type === "file-start") {
      stop();
      if (interactive) {
        bar = new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: `[${event.index + 1}/${event.count}] {file} [{bar}] {percentage}% {received}`,
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(event.totalBytes ?? 0, 0, { file: event.file, received: formatMegabytes(0) });
      } else {
        process.stderr.write(`[${event.index + 1}/${event.count}] ${event.file} ...\n`);
      }
    } else if (event.type === "file-progress") {
      if (bar !== undefined) {
        if (event.totalBytes === undefined) bar.setTotal(event.receivedBytes);
        bar.update(event.receivedBytes, { received: formatMegabytes(event.receivedBytes) });
      }
    } else {
      stop();
      process.stderr.write(
        `  ${event.file}: ${formatMegabytes(event.bytes)}, sha256 ${event.sha256.slice(0, 16)}…` +
          `${event.verified ? " (matches the hub's)" : ""}\n`,
      );
    }
  };
  return { onProgress, stop };
}

/** Adds `models list|verify|fetch|eval` to the `loupe` program. */
export function registerModelsCommand(program: Command): void {
  const models = program.command("models").description("list, verify, fetch and evaluate model packs");
  const modelsDirOption = (): Option =>
    new Option("--models-dir <dir>", "directory holding model packs")
      .env("LOUPE_MODELS_DIR")
      .default(DEFAULT_MODELS_DIR);

  models
    .command("list")
    .description("list the model packs in the models directory, with id, dimension and capabilities")
    .addOption(modelsDirOption())
    .option("--json", "print JSON", false)
    .action(async (flags: { modelsDir: string; json: boolean }) => {
      await listPacks(flags);
    });

  models
    .command("verify")
    .description("check a pack's files against its manifest and its models' input/output names")
    .argument("[dir]", "pack directory (default: $LOUPE_MODEL_PACK or models/shapes-world-tiny)")
    .addOption(
      new Option("--threads <n>", "ONNX Runtime intra-op threads")
        .argParser(wholeNumber("--threads", { min: 1 }))
        .default(1),
    )
    // Carries the default of [dir]: commander reads LOUPE_MODEL_PACK for it.
    .addOption(
      new Option("--pack <dir>")
        .env("LOUPE_MODEL_PACK")
        .default(BUNDLED_MODEL_PACK, "the bundled shapes-world-tiny")
        .hideHelp(),
    )
    .action(async (dir: string | undefined, flags: { threads: number; pack: string }) => {
      await verifyPack({ dir: dir ?? flags.pack, threads: flags.threads });
    });

  models
    .command("fetch")
    .description("download a public CLIP ONNX pack from the Hugging Face hub (or a mirror)")
    .addHelpText(
      "after",
      `\nKnown packs:\n${Object.entries(knownPacks)
        .map(([name, pack]) => `  ${name.padEnd(34)}${pack.description}`)
        .join("\n")}\nAny hub repository owner/name in the same layout works too.`,
    )
    .argument("<name>", "pack name or hub repository")
    .addOption(modelsDirOption())
    .addOption(
      new Option("--base-url <url>", "hub base URL (a mirror with the same URL layout works)")
        .env("HF_ENDPOINT")
        .default("https://huggingface.co"),
    )
    .option("--revision <rev>", "branch, tag or commit", "main")
    .addOption(
      new Option("--connect-timeout-ms <ms>", "time allowed to connect and get response headers")
        .argParser(wholeNumber("--connect-timeout-ms", { min: 1 }))
        .default(5000),
    )
    .option("--force", "replace an installed pack of the same name", false)
    .action(
      async (
        name: string,
        flags: {
          modelsDir: string;
          baseUrl: string;
          revision: string;
          connectTimeoutMs: number;
          force: boolean;
        },
      ) => {
        const reporter = progressReporter();
        try {
          const result = await fetchPack({
            name,
            modelsDir: flags.modelsDir,
            baseUrl: flags.baseUrl,
            revision: flags.revision,
            connectTimeoutMs: flags.connectTimeoutMs,
            overwrite: flags.force,
            onProgress: reporter.onProgress,
          });
          reporter.stop();
          const info = await readModelPackInfo({ dir: result.dir });
          process.stdout.write(
            `Installed ${info.modelId} in ${result.dir} (${result.files.length} files, manifest written). ` +
              `Use it with LOUPE_MODEL_PACK=${result.dir}; check it with: loupe models verify ${result.dir}\n`,
          );
        } finally {
          reporter.stop();
        }
      },
    );

  registerModelsImportCommand(models);
  registerModelsQuantizeCommand(models);
  registerModelsMigrateCommand(models);
  registerModelsEvalCommand(models);
}
