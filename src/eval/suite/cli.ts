/**
 * `npm run eval -- --suite <name|path> [--url http://…] [--out DIR] [--baseline results.json] [--limit N]
 * [--composer offline|auto] [--seed N] [--format …] [--save-baseline FILE]` (also `loupe eval`): runs a
 * suite in-process (embedded Milvus Lite in a temporary data dir, removed after) or against a running
 * Loupe, with a progress bar on stderr, and writes `results.json`, `report.md` and `report.html` into the
 * output folder. With `--baseline`, it prints the deltas of the gated figures and exits with 1 when any
 * dropped by more than its tolerance.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { SingleBar } from "cli-progress";
import { Command, InvalidArgumentError, Option } from "commander";
import { AppError } from "../../errors.ts";
import { createRemoteClient } from "./client.ts";
import { RUNS_DIR } from "./data-dirs.ts";
import { compareToBaseline, formatGateReport, type GateOutcome, readResults } from "./gate.ts";
import { NAMED_SUITES, resolveSuite, SUITE_FORMATS, type SuiteFormatOption } from "./named-suites.ts";
import { makeThumbnails, renderHtmlReport } from "./report-html.ts";
import { renderMarkdownReport } from "./report-md.ts";
import type { RunProgress, RunResults } from "./results.ts";
import { runSuite } from "./run.ts";

/** Options of {@link runEval}, as the command parses them. */
export interface RunEvalOptions {
  suite: string;
  url?: string;
  out?: string;
  baseline?: string;
  saveBaseline?: string;
  limit?: number;
  composer?: "offline" | "auto";
  seed?: number;
  format?: SuiteFormatOption;
  annotations?: string;
  images?: string;
  /** Environment of an in-process run (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** Progress reports (the command draws a bar from them). */
  onProgress?: (progress: RunProgress) => void;
  /** Where lines for the operator go (default stdout). */
  print?: (line: string) => void;
}

/** What {@link runEval} did. */
export interface EvalOutcome {
  results: RunResults;
  outDir: string;
  gate?: GateOutcome;
  /** 0, or 1 when the gate failed. */
  exitCode: number;
}

/** The default output folder: `evals/runs/<suite>-<date>` in Loupe's install directory, from any working directory. */
export function defaultOutDir(suite: string, date = new Date()): string {
  const stamp = date.toISOString().replace(/[:.]/gu, "-");
  const name = suite.replace(/[^A-Za-z0-9_-]+/gu, "_").slice(-60) || "suite";
  return join(RUNS_DIR, `${name}-${stamp}`);
}

/** The figures a committed baseline keeps: the run facts and the summary, without cases or local paths. */
export function baselineOf(results: RunResults): Pick<RunResults, "format" | "meta" | "summary"> {
  const {
    source: _source,
    target: _target,
    gitCommit: _commit,
    date: _date,
    durations: _durations,
    ...meta
  } = results.meta;
  const figures = Object.fromEntries(
    Object.entries(results.summary.figures).filter(([name]) => !name.startsWith("latency.")),
  );
  const { latency: _latency, ...summary } = results.summary;
  return {
    format: results.format,
    meta: {
      ...meta,
      source: "",
      target: "",
      date: "",
      durations: { ingestSeconds: 0, casesSeconds: 0, totalSeconds: 0 },
    },
    summary: { ...summary, latency: {}, figures },
  };
}

/**
 * Runs a suite and writes its reports (see the module comment). The gate's outcome decides `exitCode`;
 * failures to start, ingest or reach the server throw.
 */
export async function runEval({
  suite: suiteName,
  url,
  out,
  baseline: baselineFile,
  saveBaseline,
  limit,
  composer = "offline",
  seed,
  format = "auto",
  annotations,
  images,
  env = process.env,
  onProgress,
  print = (line) => process.stdout.write(`${line}\n`),
}: RunEvalOptions): Promise<EvalOutcome> {
  // Read first: a wrong baseline path should fail before minutes of work.
  const baseline =
    baselineFile === undefined ? undefined : await readResults({ file: resolve(baselineFile) });
  const resolved = await resolveSuite({
    suite: suiteName,
    format,
    ...(seed === undefined ? {} : { seed }),
    ...(annotations === undefined ? {} : { annotations }),
    ...(images === undefined ? {} : { imagesDir: images }),
  });
  try {
    // Loaded on use: `--help` and runs against a server (`--url`) do not load the server's modules.
    const local =
      url === undefined ? await (await import("./in-process.ts")).openInProcessLoupe({ env }) : undefined;
    let results: RunResults;
    try {
      const client = local?.client ?? createRemoteClient({ url: url as string });
      results = await runSuite({
        suite: resolved.suite,
        client,
        composer,
        ...(limit === undefined ? {} : { limit }),
        ...(resolved.seed === undefined ? {} : { seed: resolved.seed }),
        ...(local === undefined ? {} : { modelPack: local.modelPack }),
        ...(onProgress === undefined ? {} : { onProgress }),
      });
    } finally {
      await local?.close();
    }
    const outDir = resolve(out ?? defaultOutDir(resolved.suite.name));
    await mkdir(outDir, { recursive: true });
    const gate = baseline === undefined ? undefined : compareToBaseline({ current: results, baseline });
    const thumbnails = await makeThumbnails(results.cases.filter((record) => !record.passed).slice(0, 60));
    await writeFile(join(outDir, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(join(outDir, "report.md"), renderMarkdownReport({ results, ...(gate ? { gate } : {}) }));
    await writeFile(
      join(outDir, "report.html"),
      renderHtmlReport({ results, thumbnails, ...(gate ? { gate } : {}) }),
    );
    if (saveBaseline !== undefined) {
      await writeFile(resolve(saveBaseline), `${JSON.stringify(baselineOf(results), null, 2)}\n`);
    }
    for (const line of headlineOf(results)) print(line);
    print(`reports: ${join(outDir, "report.html")} (also report.md, results.json)`);
    if (gate !== undefined) print(formatGateReport(gate));
    return {
      results,
      outDir,
      ...(gate ? { gate } : {}),
      exitCode: gate === undefined || gate.passed ? 0 : 1,
    };
  } finally {
    await resolved.dispose();
  }
}

/** A few lines with the headline figures of a run. */
export function headlineOf(results: RunResults): string[] {
  const { summary, meta } = results;
  const f = (value: number | null | undefined) =>
    value === null || value === undefined ? "–" : value.toFixed(3);
  const lines = [
    `suite ${meta.suite}: ${summary.cases} cases (${summary.errors} errors) in ${meta.durations.totalSeconds} s (ingest ${meta.durations.ingestSeconds} s)`,
  ];
  for (const [task, figures] of Object.entries(summary.retrieval)) {
    lines.push(
      `  ${task}: R@1 ${f(figures.recallAt1)}  R@5 ${f(figures.recallAt5)}  R@10 ${f(figures.recallAt10)}  MRR ${f(figures.mrr)}  (${figures.queries} queries)`,
    );
  }
  if (summary.vqa !== null) {
    const types = Object.entries(summary.vqa.byType)
      .map(([type, figures]) => `${type} ${f(figures.accuracy)}`)
      .join(", ");
    lines.push(`  VQA accuracy ${f(summary.vqa.overall.accuracy)} (${summary.vqa.overall.count}): ${types}`);
  }
  if (summary.answers !== null) {
    const answers = summary.answers;
    lines.push(
      `  answers (${answers.count}): exact ${f(answers.exactMatch)}  contains ${f(answers.contains)}  citation P ${f(answers.citationPrecision)} R ${f(answers.citationRecall)}  groundedness ${f(answers.groundedness)}  abstention P ${f(answers.abstention.precision)} R ${f(answers.abstention.recall)}`,
    );
  }
  if (summary.triples !== null) {
    lines.push(
      `  triple reuse ${f(summary.triples.rate)} (wrong ${f(summary.triples.wrongRate)}, ${summary.triples.probes} probes)`,
    );
  }
  if (summary.ocr !== undefined && summary.ocr !== null) {
    const ocr = summary.ocr;
    lines.push(
      `  OCR CER (${ocr.images} images): English ≥12 px ${f(ocr.byBucket.latin12?.cer)}  English <12 px ${f(ocr.byBucket.latinSmall?.cer)}  Chinese ${f(ocr.byBucket.cjk?.cer)}  all ${f(ocr.cer)}  lines found ${f(ocr.lineRecall)}`,
    );
  }
  for (const [mode, figures] of Object.entries(summary.search ?? {})) {
    const types = Object.entries(figures.byType)
      .map(([type, entry]) => `${type} ${f(entry.recallAt1)}/${f(entry.recallAt5)}`)
      .join(", ");
    lines.push(
      `  search ${mode}: R@1 ${f(figures.recallAt1)}  R@5 ${f(figures.recallAt5)}  (${figures.queries} queries; R@1/R@5 by type: ${types})`,
    );
  }
  if (summary.textAnswers !== undefined && summary.textAnswers !== null) {
    const types = Object.entries(summary.textAnswers.byType)
      .map(([type, entry]) => `${type} ${f(entry.accuracy)}`)
      .join(", ");
    lines.push(
      `  screenshot answers ${f(summary.textAnswers.accuracy)} (${summary.textAnswers.count}): ${types}`,
    );
  }
  if (summary.detection !== undefined && summary.detection !== null) {
    const detection = summary.detection;
    lines.push(
      `  detection (${detection.images} images, ${detection.objects} objects): AP@0.5 ${f(detection.ap50)}  AP@[.5:.95] ${f(detection.ap5095)}  colour ${f(detection.attributes.color?.accuracy)}  size ${f(detection.attributes.size?.accuracy)}  counting ${f(detection.counting.accuracy)} (${detection.counting.count} questions)`,
    );
  }
  if (summary.regions !== undefined && summary.regions !== null) {
    const regions = summary.regions;
    lines.push(
      `  text→region: R@1 ${f(regions.recallAt1)}  R@5 ${f(regions.recallAt5)}  (${regions.queries} queries)`,
    );
  }
  const total = summary.latency.total;
  if (total !== undefined) lines.push(`  chat latency p50 ${total.p50} ms, p95 ${total.p95} ms`);
  return lines;
}

function positiveInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 1) {
      throw new InvalidArgumentError(`${name} must be a positive integer, got ${JSON.stringify(value)}.`);
    }
    return parsed;
  };
}

/** A progress bar on stderr for a run's phases. */
function progressBar(): { update(progress: RunProgress): void; stop(): void } {
  const bar = new SingleBar({
    stream: process.stderr,
    format: "{phase} [{bar}] {value}/{total} | ETA {eta_formatted}",
    hideCursor: true,
    etaBuffer: 30,
  });
  let phase: string | undefined;
  return {
    update(progress) {
      if (progress.phase !== phase) {
        if (phase !== undefined) bar.stop();
        phase = progress.phase;
        bar.start(progress.total, progress.done, { phase: progress.phase.padEnd(6) });
      } else bar.update(progress.done);
    },
    stop() {
      if (phase !== undefined) bar.stop();
    },
  };
}

/** Adds the eval options and action to `command` (the `eval` entry point and `loupe eval` share it). */
export function configureEvalCommand(command: Command): Command {
  return command
    .description(
      "run an eval suite in-process or against a running Loupe and write results.json, report.md, report.html",
    )
    .requiredOption(
      "--suite <name|path>",
      `a named suite (${NAMED_SUITES.join(", ")}) or a suite file or folder`,
    )
    .option("--url <url>", "a running Loupe to evaluate (ingests the corpus through its HTTP API)")
    .option("--out <dir>", "output folder (default evals/runs/<suite>-<date>)")
    .option(
      "--baseline <results.json>",
      "compare with a baseline; exit 1 when a gated metric drops beyond its tolerance",
    )
    .option("--save-baseline <file>", "also write this run's figures as a baseline file")
    .option("--limit <n>", "at most n cases of each kind", positiveInteger("--limit"))
    .addOption(
      new Option("--composer <composer>", "offline: the offline composer; auto: the LLM when configured")
        .choices(["offline", "auto"])
        .default("offline"),
    )
    .option("--seed <n>", "seed of a named suite's split", positiveInteger("--seed"))
    .addOption(
      new Option("--format <format>", "format of a suite path").choices([...SUITE_FORMATS]).default("auto"),
    )
    .option("--annotations <file>", "VQAv2: the annotations file")
    .option("--images <dir>", "Karpathy and VQAv2: the images folder")
    .action(async (options: Omit<RunEvalOptions, "onProgress" | "print" | "env">) => {
      const bar = progressBar();
      let outcome: EvalOutcome;
      try {
        outcome = await runEval({ ...options, onProgress: (progress) => bar.update(progress) });
      } finally {
        bar.stop();
      }
      process.exitCode = outcome.exitCode;
    });
}

async function main(): Promise<void> {
  const command = configureEvalCommand(new Command("eval")).showHelpAfterError();
  try {
    await command.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof AppError) process.stderr.write(`eval: ${error.message}\n`);
    else {
      process.stderr.write(
        `eval: unexpected error\n${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
    }
    process.exitCode = 1;
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  await main();
}
