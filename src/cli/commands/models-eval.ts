/**
 * `loupe models eval`: measures a model pack's quality on a held-out Shapes World set generated in-process
 * (text→image recall, partial-query precision, VQA accuracy per type, video clip retrieval, and optionally the
 * same image figures on other formats and sizes), prints a report and can write it as JSON.
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { type Command, Option } from "commander";
import { BUNDLED_MODEL_PACK } from "../../config.ts";
import {
  BASELINE_VARIANT,
  DEFAULT_EVAL_SEED,
  DEFAULT_VARIANTS,
  evaluatePack,
  type ImageFigures,
  PARTIAL_MIN_RELEVANT,
  type PackEvalProgress,
  type PackEvalReport,
  type VariantFigures,
  type VideoDecode,
} from "../../eval/pack/pack-eval.ts";
import { loadModelPack } from "../../inference/model-pack.ts";
import { QUESTION_TYPES } from "../../synth/questions.ts";
import { IMAGE_FORMATS, type ImageFormat } from "../../synth/render.ts";
import { wholeNumber } from "../command-inputs.ts";
import { formatTable as table } from "../table.ts";

/** Flags of `loupe models eval`. */
interface EvalFlags {
  pack: string;
  seed: number;
  images: number;
  size: number;
  format: ImageFormat;
  quality: number;
  variants: boolean;
  questions: number;
  clips: number;
  videoSize: number;
  videoDecode: VideoDecode;
  threads: number;
  batch: number;
  json?: string;
}

const fixed = (value: number, digits = 3): string => value.toFixed(digits);
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const signed = (value: number): string => `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(3)}`;

function imageRow(figures: ImageFigures | VariantFigures): string[] {
  const delta = "delta" in figures ? figures.delta : undefined;
  const cell = (value: number, change: number | undefined): string =>
    change === undefined ? fixed(value) : `${fixed(value)} (${signed(change)})`;
  return [
    figures.label,
    cell(figures.textToImage.recallAt1, delta?.recallAt1),
    cell(figures.textToImage.recallAt5, delta?.recallAt5),
    cell(figures.textToImage.recallAt10, delta?.recallAt10),
    cell(figures.partial.precisionAt10, delta?.partialPrecisionAt10),
    figures.vqa === undefined ? "-" : cell(figures.vqa.overall.accuracy, delta?.vqa),
    `${seconds(figures.timings.totalMs)} (${figures.timings.imagesPerSecond.toFixed(1)} img/s)`,
  ];
}

/** The report as text: figures, chance levels, targets and timings. */
export function formatPackEvalReport(report: PackEvalReport): string {
  const { baseline } = report;
  const lines: string[] = [];
  lines.push(
    `${report.modelId} on a held-out Shapes World set: seed ${report.seed}, generated in-process by the TypeScript ` +
      "generator (training drew its data from Python random streams, so no item of this set was seen in training).",
    `${report.images} images; one full description per image as a query (sizes named on every other one; a hit is an ` +
      `image whose description means the same); ${baseline.partial.generated} distinct partial queries, ` +
      `${baseline.partial.queries} of them with ≥ ${PARTIAL_MIN_RELEVANT} relevant images scored; ` +
      `${report.questionsPerImage} VQA questions per image of different types.`,
    "",
  );
  lines.push(
    table([
      ["images", "R@1", "R@5", "R@10", "partial P@10", "VQA", "time"],
      imageRow(baseline),
      ...report.variants.map(imageRow),
    ]),
  );
  lines.push(
    `chance (random ranking / most frequent answer): R@1 ${fixed(baseline.textToImage.chance.recallAt1)}, ` +
      `R@10 ${fixed(baseline.textToImage.chance.recallAt10)}, partial P@10 ${fixed(baseline.partial.chance)}` +
      (baseline.vqa === undefined ? "" : `, VQA ${fixed(baseline.vqa.chance.overall)}`),
    "",
  );
  if (baseline.vqa !== undefined) {
    const vqa = baseline.vqa;
    lines.push(`VQA by question type (${baseline.label}):`);
    lines.push(
      table([
        ["type", "accuracy", "questions", "chance"],
        ...QUESTION_TYPES.map((type) => [
          type,
          fixed(vqa.byType[type].accuracy),
          String(vqa.byType[type].count),
          fixed(vqa.chance.byType[type]),
        ]),
        ["overall", fixed(vqa.overall.accuracy), String(vqa.overall.count), fixed(vqa.chance.overall)],
      ]),
    );
    lines.push("");
  }
  if (baseline.detection !== undefined) {
    const detection = baseline.detection;
    const optional = (value: number | undefined): string => (value === undefined ? "-" : fixed(value));
    const vqa = detection.vqaHead;
    lines.push(
      `Detection (${baseline.label}): ${detection.objects} objects, ${detection.detections} detections at the ` +
        `pack's threshold ${detection.threshold}; AP@0.5 ${fixed(detection.ap50)}, AP@[.5:.95] ${fixed(detection.ap5095)}`,
    );
    lines.push(
      table([
        ["class", "AP@0.5", "AP@[.5:.95]", "objects", "detections"],
        ...Object.entries(detection.perClass).map(([label, figures]) => [
          label,
          optional(figures.ap50),
          optional(figures.ap5095),
          String(figures.objects),
          String(figures.detections),
        ]),
      ]),
    );
    lines.push(
      `  over true positives: ${Object.entries(detection.attributes)
        .map(([name, accuracy]) => `${name} ${fixed(accuracy.accuracy)} (${accuracy.count})`)
        .join(", ")}`,
      `  counting from detections ${fixed(detection.counting.overall.accuracy)} (${detection.counting.overall.count} questions` +
        (vqa === undefined ? ")" : `; the VQA head ${fixed(vqa.counting.accuracy)} on the same)`),
      `  left/right from detections ${fixed(detection.position.accuracy)} (${detection.position.count} questions` +
        (vqa === undefined ? ")" : `; the VQA head ${fixed(vqa.position.accuracy)} on the same)`),
    );
    const chain = detection.chain;
    if (chain !== undefined) {
      lines.push(
        `  through chat's grounding (question parsed, both heads, the detection head when confident): ` +
          `counting ${fixed(chain.counting.accuracy)}, left/right ${fixed(chain.position.accuracy)} ` +
          `(${Math.round(chain.fromDetector * 100)}% answered by the detection head)`,
      );
    }
    const retrieval = detection.regionRetrieval;
    if (retrieval !== undefined) {
      lines.push(
        `  text→region R@1 ${fixed(retrieval.recallAt1)}  R@5 ${fixed(retrieval.recallAt5)} ` +
          `(${retrieval.queries} single-object descriptions over ${retrieval.regions} regions)`,
      );
    }
    lines.push("");
  }
  if (report.video !== undefined) {
    const video = report.video;
    const path =
      video.decode === "ffmpeg"
        ? "rendered, encoded to H.264 MP4 and decoded back with ffmpeg"
        : "rendered frames fed directly";
    lines.push(
      `Video: ${video.clips} clips at ${video.size} px (${path}; ${video.videoHead ? "the pack's video head" : "mean of frame embeddings"}), ` +
        "queries = the clips' action descriptions, a hit = same acting object and action:",
      `  R@1 ${fixed(video.recallAt1)}  R@5 ${fixed(video.recallAt5)}  (chance R@1 ${fixed(video.chance.recallAt1)})`,
      "",
    );
  }
  lines.push("Targets:");
  lines.push(
    table(
      report.targets.map((check) => [
        `  ${check.name}`,
        check.name.includes("largest drop") ? signed(check.value) : fixed(check.value),
        check.target,
        check.met ? "met" : "NOT MET",
      ]),
    ),
  );
  const met = report.targets.filter((check) => check.met).length;
  lines.push(`${met} of ${report.targets.length} targets met.`, "");
  const parts = [`text queries ${seconds(report.timings.textEmbedMs)}`];
  for (const figures of [baseline, ...report.variants]) {
    const timing = figures.timings;
    parts.push(
      `${figures.label} ${seconds(timing.totalMs)} (render ${seconds(timing.renderMs)}, vision ${seconds(timing.embedMs)}, VQA ${seconds(timing.vqaMs)}` +
        (figures.detection === undefined
          ? ")"
          : `, detection ${seconds(figures.detection.timings.detectMs)}` +
            (figures.detection.timings.chainMs === undefined
              ? ")"
              : `, chat's grounding ${seconds(figures.detection.timings.chainMs)})`)),
    );
  }
  if (report.video !== undefined) {
    const timing = report.video.timings;
    parts.push(
      `video ${seconds(timing.totalMs)} (render ${seconds(timing.renderMs)}, ffmpeg ${seconds(timing.codecMs)}, models ${seconds(timing.embedMs)})`,
    );
  }
  lines.push(`Timings: ${parts.join("; ")}; total ${seconds(report.timings.totalMs)}.`);
  return `${lines.join("\n")}\n`;
}

function progressPrinter(): (progress: PackEvalProgress) => void {
  let lastPrinted = "";
  return (progress) => {
    // One line per quarter of each phase keeps logs short and still shows that a long run is moving.
    const quarter = Math.floor((4 * progress.done) / Math.max(progress.total, 1));
    const key = `${progress.label}:${quarter}`;
    if (key === lastPrinted || progress.done === 0) return;
    lastPrinted = key;
    process.stderr.write(`  ${progress.label}: ${progress.done}/${progress.total}\n`);
  };
}

async function runEval(flags: EvalFlags): Promise<void> {
  const pack = await loadModelPack({
    dir: resolve(flags.pack),
    sessionOptions: { intraOpNumThreads: flags.threads },
    batchSizes: { image: flags.batch, text: 64, vqa: 16 },
  });
  try {
    process.stderr.write(`Evaluating ${pack.modelId} (seed ${flags.seed}) ...\n`);
    const report = await evaluatePack({
      pack,
      seed: flags.seed,
      images: flags.images,
      baseline: { format: flags.format, size: flags.size, quality: flags.quality },
      variants: flags.variants ? DEFAULT_VARIANTS : [],
      questionsPerImage: flags.questions,
      clips: flags.clips,
      videoSize: flags.videoSize,
      videoDecode: flags.videoDecode,
      batchSize: flags.batch,
      onProgress: progressPrinter(),
    });
    process.stdout.write(formatPackEvalReport(report));
    if (flags.json !== undefined) {
      await writeFile(resolve(flags.json), `${JSON.stringify({ pack: flags.pack, ...report }, null, 2)}\n`);
      process.stderr.write(`Report written to ${flags.json}\n`);
    }
  } finally {
    await pack.close();
  }
}

/** Adds `eval` to the `loupe models` command. */
export function registerModelsEvalCommand(models: Command): void {
  models
    .command("eval")
    .description("measure a pack's retrieval, VQA and video quality on a held-out generated Shapes World set")
    .addOption(
      new Option("--pack <dir>", "pack directory")
        .env("LOUPE_MODEL_PACK")
        .default(BUNDLED_MODEL_PACK, "the bundled shapes-world-tiny"),
    )
    .addOption(
      new Option("--seed <n>", "seed of the held-out set")
        .argParser(wholeNumber("--seed", { min: 0, max: 999_999_999 }))
        .default(DEFAULT_EVAL_SEED),
    )
    .addOption(
      new Option("--images <n>", "gallery size")
        .argParser(wholeNumber("--images", { min: 10, max: 100_000 }))
        .default(1000),
    )
    .addOption(
      new Option("--size <px>", "baseline image side")
        .argParser(wholeNumber("--size", { min: 64, max: 1024 }))
        .default(BASELINE_VARIANT.size),
    )
    .addOption(
      new Option("--format <format>", "baseline image format")
        .choices(IMAGE_FORMATS)
        .default(BASELINE_VARIANT.format),
    )
    .addOption(
      new Option("--quality <q>", "JPEG/WebP quality")
        .argParser(wholeNumber("--quality", { min: 1, max: 100 }))
        .default(BASELINE_VARIANT.quality),
    )
    .option("--variants", "also evaluate PNG and WebP at 128 and 512 px against the baseline", false)
    .addOption(
      new Option("--questions <n>", "VQA questions per image, of different types")
        .argParser(wholeNumber("--questions", { min: 0, max: QUESTION_TYPES.length }))
        .default(3),
    )
    .addOption(
      new Option("--clips <n>", "video clips (0 skips the video eval)")
        .argParser(wholeNumber("--clips", { min: 0, max: 100_000 }))
        .default(200),
    )
    .addOption(
      new Option("--video-size <px>", "video frame side (even)")
        .argParser(wholeNumber("--video-size", { min: 64, max: 1024 }))
        .default(128),
    )
    .addOption(
      new Option("--video-decode <how>", "ffmpeg: H.264 MP4 round trip; frames: rendered frames directly")
        .choices(["ffmpeg", "frames"])
        .default("ffmpeg"),
    )
    .addOption(
      new Option("--threads <n>", "ONNX Runtime intra-op threads")
        .argParser(wholeNumber("--threads", { min: 1, max: 64 }))
        .default(1),
    )
    .addOption(
      new Option("--batch <n>", "images per vision run")
        .argParser(wholeNumber("--batch", { min: 1, max: 1024 }))
        .default(32),
    )
    .option("--json <file>", "also write the report as JSON")
    .action(async (flags: EvalFlags) => {
      await runEval(flags);
    });
}
