/**
 * The eval runner: a suite run against Loupe through its HTTP API in three steps, each in its own module:
 * ingest the corpus (`ingest.ts`), run every case (`run-cases.ts`), and score the records (`score.ts`).
 * The result is one {@link RunResults} object: every case with its input, answer, evidence and metric
 * values, a summary, and a flat table of figures (`summary.figures`) that reports and the baseline gate
 * read.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { LoupeClient } from "./client.ts";
import { ingestCorpus } from "./ingest.ts";
import { RESULTS_FORMAT, type RunProgress, type RunResults } from "./results.ts";
import { runCases } from "./run-cases.ts";
import { summarizeRun } from "./score.ts";
import type { Suite, SuiteCase } from "./suite.ts";

/** Options of {@link runSuite}. */
export interface RunSuiteOptions {
  suite: Suite;
  client: LoupeClient;
  composer?: "offline" | "auto";
  /** At most this many cases of each kind (and retrieval task). */
  limit?: number;
  seed?: number;
  modelPack?: string;
  onProgress?: (progress: RunProgress) => void;
}

/** The first `limit` cases of each kind and retrieval task, in suite order. */
export function limitCases(cases: readonly SuiteCase[], limit: number | undefined): SuiteCase[] {
  if (limit === undefined) return [...cases];
  const taken = new Map<string, number>();
  return cases.filter((item) => {
    const key = item.kind === "retrieval" ? `${item.kind}:${item.task}` : item.kind;
    const count = taken.get(key) ?? 0;
    taken.set(key, count + 1);
    return count < limit;
  });
}

async function gitCommit(): Promise<string | undefined> {
  try {
    const run = promisify(execFile);
    const { stdout } = await run("git", ["rev-parse", "HEAD"], { cwd: import.meta.dirname, timeout: 5000 });
    const commit = stdout.trim();
    const { stdout: status } = await run("git", ["status", "--porcelain", "--untracked-files=no"], {
      cwd: import.meta.dirname,
      timeout: 5000,
    });
    return status.trim() === "" ? commit : `${commit}+dirty`;
  } catch {
    return undefined;
  }
}

const round = (value: number) => Math.round(value * 10) / 10;

/**
 * Runs a suite against Loupe through `client` and scores it (see the module comment). Ingest failures
 * are recorded in `meta.ingestFailures`; a case whose request fails is recorded with its error and scored
 * as a miss.
 */
export async function runSuite({
  suite,
  client,
  composer = "offline",
  limit,
  seed,
  modelPack,
  onProgress,
}: RunSuiteOptions): Promise<RunResults> {
  const started = performance.now();
  const date = new Date().toISOString();
  const cases = limitCases(suite.cases, limit);
  const ingested = await ingestCorpus({ suite, client, ...(onProgress ? { onProgress } : {}) });
  const ran = await runCases({
    cases,
    client,
    ids: ingested.ids,
    images: suite.corpus.images,
    composer,
    ...(onProgress ? { onProgress } : {}),
  });
  const commit = await gitCommit();
  const { images, videos, triples } = suite.corpus;
  return {
    format: RESULTS_FORMAT,
    meta: {
      suite: suite.name,
      format: suite.format,
      source: suite.source,
      ...(seed === undefined ? {} : { seed }),
      target: client.target,
      composer,
      ...(modelPack === undefined ? {} : { modelPack }),
      ...(commit === undefined ? {} : { gitCommit: commit }),
      date,
      ...(limit === undefined ? {} : { limit }),
      corpus: { images: images.length, videos: videos.length, triples: triples.length },
      ingestFailures: ingested.failures,
      durations: {
        ingestSeconds: round(ingested.seconds),
        casesSeconds: round(ran.seconds),
        totalSeconds: round((performance.now() - started) / 1000),
      },
    },
    summary: summarizeRun({ records: ran.records, chatResults: ran.chatResults }),
    cases: ran.records,
  };
}
