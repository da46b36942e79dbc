/**
 * `loupe synth`: writes a seeded Shapes World dataset (images, videos, scenes, queries, VQA, triples)
 * to a folder; `loupe synth screens` writes a Screens World dataset (screenshots with every line's text
 * and box, queries and chat cases). Option values are checked by the dataset writers' schemas; this file
 * maps them to flags.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { ValidationError } from "../../errors.ts";
import {
  type DatasetOptions,
  type DatasetProgress,
  generateDataset,
  IMAGE_FORMATS,
  SCREEN_KINDS,
  SCREEN_LANGUAGES,
  type ScreensDatasetOptions,
  writeScreensDataset,
} from "../../synth/index.ts";
import { listOption, wholeNumber } from "../command-inputs.ts";

/** Flags as commander parses them. */
interface SynthFlags {
  out: string;
  seed: number;
  images: number;
  size: number;
  format: DatasetOptions["format"];
  quality: number;
  videos: number;
  clipsPerVideo?: number;
  videoSize?: number;
  webm: boolean;
  descriptionsPerImage: number;
  questionsPerType: number;
  partialQueries?: number;
  descriptionQueries?: number;
  triples?: number;
  concurrency: number;
  overwrite: boolean;
  quiet: boolean;
}

function flagName(field: string): string {
  return `--${field.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

/** Rewrites the dataset writer's field names (`clipsPerVideo`) as the flags that set them. */
function asFlagError(error: ValidationError, flags: SynthFlags): ValidationError {
  const issues = error.context.issues;
  if (!Array.isArray(issues)) return error;
  const lines = issues.map((issue: { path?: PropertyKey[]; message?: string }) => {
    const field = String(issue.path?.[0] ?? "");
    const flag = field === "outDir" ? "out" : field;
    const given: unknown = Reflect.get(flags, flag);
    return `${flagName(flag)}: ${issue.message ?? "invalid"} (got ${JSON.stringify(given)})`;
  });
  return new ValidationError(`Invalid options for loupe synth: ${lines.join("; ")}.`, {
    cause: error,
    context: error.context,
  });
}

function progressReporter(
  quiet: boolean,
): (progress: Pick<DatasetProgress, "done" | "total"> & { phase: string }) => void {
  let lastTenth = -1;
  let lastPhase = "";
  return ({ phase, done, total }) => {
    if (quiet) return;
    const tenth = Math.floor((done * 10) / total);
    if (phase === lastPhase && tenth === lastTenth && done !== total) return;
    lastPhase = phase;
    lastTenth = tenth;
    process.stderr.write(`${phase}: ${done}/${total}\n`);
  };
}

/** Flags of `loupe synth screens` as commander parses them. */
interface ScreensFlags {
  out: string;
  seed: number;
  count: number;
  languages: string[];
  kinds: string[];
  concurrency: number;
  overwrite: boolean;
  quiet: boolean;
}

/** A comma-separated list whose every entry is one of `allowed`. */
function choiceList(flag: string, allowed: readonly string[]) {
  return (value: string): string[] => {
    const entries = listOption(value) ?? [];
    const wrong = entries.filter((entry) => !allowed.includes(entry));
    if (wrong.length > 0 || entries.length === 0) {
      throw new InvalidArgumentError(
        `${flag} takes a comma-separated list of ${allowed.join(", ")}; got ${JSON.stringify(value)}.`,
      );
    }
    return [...new Set(entries)];
  };
}

/** Adds `synth screens` under the `synth` command. */
function registerScreensCommand(synth: Command): void {
  synth
    .command("screens")
    .description(
      "generate a Screens World dataset: UI-like screenshots with every line's text and box, queries and chat cases",
    )
    .requiredOption("--out <dir>", "output folder (created; must be empty unless --overwrite)")
    .option("--seed <n>", "random seed; equal seeds give identical datasets", wholeNumber("--seed"), 0)
    .option("--count <n>", "screens to render, 1-100000", wholeNumber("--count"), 50)
    .option(
      "--languages <list>",
      `languages, comma-separated (${SCREEN_LANGUAGES.join(", ")})`,
      choiceList("--languages", SCREEN_LANGUAGES),
      [...SCREEN_LANGUAGES],
    )
    .option(
      "--kinds <list>",
      `kinds of screens, comma-separated (${SCREEN_KINDS.join(", ")})`,
      choiceList("--kinds", SCREEN_KINDS),
      [...SCREEN_KINDS],
    )
    .option("--concurrency <n>", "screens rendered at once, 1-16", wholeNumber("--concurrency"), 2)
    .option("--overwrite", "replace a previous dataset in --out", false)
    .option("--quiet", "no progress lines on stderr", false)
    .action(async (flags: ScreensFlags) => {
      const { out, quiet, overwrite, seed, count, concurrency } = flags;
      const report = progressReporter(quiet);
      let manifest: Awaited<ReturnType<typeof writeScreensDataset>>;
      try {
        manifest = await writeScreensDataset({
          outDir: out,
          overwrite,
          seed,
          count,
          concurrency,
          languages: flags.languages as ScreensDatasetOptions["languages"],
          kinds: flags.kinds as ScreensDatasetOptions["kinds"],
          onProgress: report,
        });
      } catch (error) {
        throw error instanceof ValidationError ? asFlagError(error, flags as unknown as SynthFlags) : error;
      }
      const { counts } = manifest;
      process.stdout.write(
        [
          `Wrote a Screens World dataset to ${out} (seed ${seed}) in ${manifest.seconds.toFixed(1)} s:`,
          `  screens ${counts.screens} (${counts.lines} lines of text)`,
          `  queries ${counts.queries}, chat cases ${counts.chat}`,
          "",
        ].join("\n"),
      );
    });
}

/** Adds `synth` (and `synth screens`) to the `loupe` program. */
export function registerSynthCommand(program: Command): void {
  const synth = program
    .command("synth")
    .description(
      "generate a Shapes World dataset: images, videos, scenes, queries, VQA and triples (synth screens: screenshots)",
    )
    // Not a required option: commander would then ask `synth screens` for it too.
    .option("--out <dir>", "output folder (created; must be empty unless --overwrite)")
    .option("--seed <n>", "random seed; equal seeds give identical datasets", wholeNumber("--seed"), 0)
    .option("--images <n>", "images to render", wholeNumber("--images"), 100)
    .option("--size <px>", "image side in pixels, 64-1024", wholeNumber("--size"), 256)
    .addOption(new Option("--format <format>", "image format").choices(IMAGE_FORMATS).default("jpeg"))
    .option("--quality <q>", "JPEG/WebP quality, 1-100", wholeNumber("--quality"), 90)
    .option("--videos <n>", "long videos to render (MP4, H.264)", wholeNumber("--videos"), 0)
    .option(
      "--clips-per-video <n>",
      "clips per video, 3-6 (random when unset)",
      wholeNumber("--clips-per-video"),
    )
    .option(
      "--video-size <px>",
      "video side in pixels, even, 64-1024 (default: --size)",
      wholeNumber("--video-size"),
    )
    .option("--webm", "also write a WebM (VP9) beside each MP4", false)
    .option(
      "--descriptions-per-image <n>",
      "full descriptions per image, 1-10",
      wholeNumber("--descriptions-per-image"),
      2,
    )
    .option(
      "--questions-per-type <n>",
      "VQA questions per type and image, 0-5",
      wholeNumber("--questions-per-type"),
      1,
    )
    .option(
      "--partial-queries <n>",
      "partial queries (default: min(images, 100))",
      wholeNumber("--partial-queries"),
    )
    .option(
      "--description-queries <n>",
      "full-description queries (default: min(images, 100))",
      wholeNumber("--description-queries"),
    )
    .option(
      "--triples <n>",
      "image-question-answer triples (default: a quarter of the images)",
      wholeNumber("--triples"),
    )
    .option("--concurrency <n>", "images rendered at once, 1-16", wholeNumber("--concurrency"), 4)
    .option("--overwrite", "replace a previous dataset in --out", false)
    .option("--quiet", "no progress lines on stderr", false)
    .action(async function (this: Command, flags: SynthFlags) {
      if (flags.out === undefined) {
        this.error("error: required option '--out <dir>' not specified", {
          code: "commander.missingMandatoryOptionValue",
        });
      }
      const { out, quiet, ...rest } = flags;
      let summary: Awaited<ReturnType<typeof generateDataset>>;
      try {
        summary = await generateDataset({ ...rest, outDir: out, onProgress: progressReporter(quiet) });
      } catch (error) {
        throw error instanceof ValidationError ? asFlagError(error, flags) : error;
      }
      const { counts } = summary.manifest;
      const imagesPerSecond =
        counts.images === 0 ? 0 : (counts.images + counts.twins) / (summary.imageMs / 1000);
      process.stdout.write(
        [
          `Wrote a Shapes World dataset to ${out} (seed ${flags.seed}) in ${(summary.totalMs / 1000).toFixed(1)} s:`,
          `  images ${counts.images} (+${counts.twins} twins), ${imagesPerSecond.toFixed(1)} images/s`,
          `  queries ${counts.partialQueries} partial + ${counts.descriptionQueries} description`,
          `  vqa ${counts.vqa}, triples ${counts.triples}`,
          `  videos ${counts.videos} (${counts.clips} clips) in ${(summary.videoMs / 1000).toFixed(1)} s`,
          "",
        ].join("\n"),
      );
    });
  registerScreensCommand(synth);
}
