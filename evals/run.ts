/**
 * The eval runner: ingests a suite's corpus into Loupe through its HTTP API, runs every case (retrieval
 * through `/v1/search`, VQA, answer and triple-probe cases through `/v1/chat`), maps the stored ids Loupe
 * gives back to the suite's ids, and scores each case with the metrics of `src/eval/`. The result is one
 * {@link RunResults} object: every case with its input, answer, evidence and metric values, a summary,
 * and a flat table of figures (`summary.figures`) that reports and the baseline gate read.
 *
 * Cases run one at a time, in suite order, so latencies are those of a lone client and a run is
 * reproducible for a seed.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createApp } from "../src/app.ts";
import {
  abstentionScores,
  containsAnswer,
  meanOfDefined,
  pooledGroundedness,
  scoreAnswer,
  summarizeTokenUsage,
  type TokenUsageSummary,
} from "../src/eval/answer-metrics.ts";
import { type LatencyFigures, summarizeLatency } from "../src/eval/latency.ts";
import { accuracyByType, recallAtK } from "../src/eval/metrics.ts";
import {
  type RetrievalSummary,
  segmentRanking,
  summarizeRetrieval,
  summarizeSegmentRetrieval,
  type TripleReuse,
  tripleReuseRate,
} from "../src/eval/retrieval-metrics.ts";
import { answerAccuracy } from "../src/eval/vqa-accuracy.ts";
import { createLogger } from "../src/logger.ts";
import { openServices } from "../src/main.ts";
import type { ChatResult } from "../src/rag/types.ts";
import { createHttpClient, dataUrlOf, type LoupeClient } from "./client.ts";
import type { ImageRef, RetrievalTask, SegmentRef, Suite, SuiteCase } from "./suite.ts";

/** The version tag of `results.json`. */
export const RESULTS_FORMAT = "loupe-eval-results/v1";

/** Ranks of the recall@k curves. */
export const CURVE_KS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as const;

/** Results wanted per search. */
const SEARCH_TOP_K = 10;

/** Progress of a run, for a progress bar. */
export interface RunProgress {
  phase: "ingest" | "cases";
  done: number;
  total: number;
}

/** A metric value of one case: a number, a yes/no, or null where the case gives nothing to compare. */
export type CaseMetric = number | boolean | null;

/** One case as it ran. */
export interface CaseRecord {
  id: string;
  kind: SuiteCase["kind"];
  task?: RetrievalTask;
  tags: string[];
  /** What was asked. Images are named (`file:…`, `corpus:…`, `stored:…`), never inlined. */
  input: { question?: string; text?: string; images?: string[]; history?: number };
  /** What the case expects (suite ids). */
  expected: {
    answers?: string[];
    relevant?: string[];
    segments?: SegmentRef[];
    evidence?: string[];
    unanswerable?: boolean;
    tripleId?: string;
  };
  /** What Loupe gave back, ids mapped to the suite's. */
  output: {
    answer?: string;
    /** VQA: the head's short answer on the attached image. */
    shortAnswer?: string;
    answered?: boolean;
    /** Retrieval: ranked ids (images) or `videoId@start-end` (segments), best first. */
    ranked?: string[];
    citations?: string[];
    evidence?: Array<{ id: string; kind: string; score: number; text?: string }>;
    reusedTriples?: string[];
    composer?: string;
    fallback?: string;
  };
  metrics: Record<string, CaseMetric>;
  /** False when the case missed (shown in the report's failures). */
  passed: boolean;
  /** Milliseconds: chain steps for chat cases, `search` for retrieval. */
  timings: Record<string, number>;
  usage?: { promptTokens: number; completionTokens: number };
  /** The image the case is about (absolute path), for thumbnails. */
  imagePath?: string;
  error?: { code: string; message: string };
}

/** Retrieval figures of one task, with its recall@k curve. */
export interface TaskSummary extends RetrievalSummary {
  curve: Array<{ k: number; recall: number }>;
}

/** Figures of a run. */
export interface RunSummary {
  cases: number;
  errors: number;
  retrieval: Partial<Record<RetrievalTask, TaskSummary>>;
  vqa: {
    overall: { accuracy: number; count: number };
    byType: Record<string, { accuracy: number; count: number }>;
    /** Share of answers whose text states a reference answer. */
    answerContains: number | null;
  } | null;
  answers: {
    count: number;
    exactMatch: number | null;
    contains: number | null;
    citationPrecision: number | null;
    citationRecall: number | null;
    groundedness: number | null;
    abstention: { precision: number | null; recall: number | null; f1: number | null };
    byTag: Record<string, { count: number; passed: number }>;
  } | null;
  triples: TripleReuse | null;
  latency: Record<string, LatencyFigures>;
  tokens: TokenUsageSummary;
  /** Every headline figure under one flat name (`vqa.accuracy`, `retrieval.text-to-image.recallAt10`, …). */
  figures: Record<string, number | null>;
}

/** Facts about a run. */
export interface RunMeta {
  suite: string;
  format: Suite["format"];
  source: string;
  seed?: number;
  target: string;
  composer: "offline" | "auto";
  modelPack?: string;
  gitCommit?: string;
  date: string;
  limit?: number;
  corpus: { images: number; videos: number; triples: number };
  ingestFailures: Array<{ kind: string; id: string; message: string }>;
  durations: { ingestSeconds: number; casesSeconds: number; totalSeconds: number };
}

/** What `results.json` holds. */
export interface RunResults {
  format: typeof RESULTS_FORMAT;
  meta: RunMeta;
  summary: RunSummary;
  cases: CaseRecord[];
}

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

/** Stored ids (`img_…`, `vid_…`, `tri_…`) ↔ the suite's ids. */
class IdMap {
  readonly #suiteOf = new Map<string, string>();
  readonly #storedOf = new Map<string, string>();

  add(suiteId: string, storedId: string): void {
    this.#storedOf.set(suiteId, storedId);
    // Identical media get one stored id; the first suite id names it.
    if (!this.#suiteOf.has(storedId)) this.#suiteOf.set(storedId, suiteId);
  }
  stored(suiteId: string): string | undefined {
    return this.#storedOf.get(suiteId);
  }
  /** The suite id of a stored id, or the id itself (attachments, segments, unknown items). */
  suite(id: string): string {
    return this.#suiteOf.get(id) ?? id;
  }
  /**
   * One name per item: a suite id whose media was stored under the same id as an earlier one names
   * that earlier one, and a stored id of a corpus item names the corpus id.
   */
  canonical(id: string): string {
    const stored = this.#storedOf.get(id) ?? id;
    return this.#suiteOf.get(stored) ?? id;
  }
}

function describeImage(ref: ImageRef): string {
  return ref.kind === "file" ? `file:${ref.path}` : `${ref.kind}:${ref.id}`;
}

function errorOf(error: unknown): { code: string; message: string } {
  const code = (error as { code?: unknown }).code;
  return {
    code: typeof code === "string" ? code : "error",
    message: error instanceof Error ? error.message : String(error),
  };
}

/** A chat result that stands for a turn that failed: no answer, nothing cited, not an abstention. */
function emptyChatResult(): ChatResult {
  return {
    answer: "",
    answered: true,
    confidence: 0,
    citations: [],
    evidence: [],
    standaloneQuestion: "",
    composer: "offline",
    model: "none",
    verification: { checked: 0, confirmed: 0, contradictions: [], corrected: false },
    timings: { embed: 0, retrieve: 0, ground: 0, compose: 0, verify: 0, total: 0 },
  };
}

/** The chat result with every stored id it carries replaced by the suite's id. */
function mapChatIds(result: ChatResult, ids: IdMap): ChatResult {
  const mapCitation = <Citation extends { id: string }>(citation: Citation): Citation => ({
    ...citation,
    id: ids.suite(citation.id),
  });
  return {
    ...result,
    citations: result.citations.map(mapCitation),
    evidence: result.evidence.map((evidence) => ({
      ...evidence,
      citation: mapCitation(evidence.citation),
      ...(evidence.videoId === undefined ? {} : { videoId: ids.suite(evidence.videoId) }),
      findings: evidence.findings.map((finding) => ({
        ...finding,
        ...(finding.tripleId === undefined ? {} : { tripleId: ids.suite(finding.tripleId) }),
      })),
    })),
  };
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
  const ids = new IdMap();
  const ingestFailures: RunMeta["ingestFailures"] = [];
  const { images, videos, triples } = suite.corpus;
  const ingestTotal = images.length + videos.length + triples.length;
  let ingested = 0;
  const ingestStep = (count: number) => {
    ingested += count;
    onProgress?.({ phase: "ingest", done: ingested, total: ingestTotal });
  };
  onProgress?.({ phase: "ingest", done: 0, total: ingestTotal });

  const keepMetadata = suite.format === "loupe-jsonl";
  const imageItems = images.map((image) => ({
    path: image.path,
    metadata: {
      ...(keepMetadata ? image.metadata : {}),
      ...(image.caption === undefined ? {} : { title: image.caption.slice(0, 512) }),
    },
  }));
  const IMAGE_CHUNK = 32;
  for (let start = 0; start < imageItems.length; start += IMAGE_CHUNK) {
    const chunk = imageItems.slice(start, start + IMAGE_CHUNK);
    const outcomes = await client.ingestImages(chunk);
    for (const outcome of outcomes) {
      const image = images[start + outcome.index];
      if (image === undefined) continue;
      if (outcome.id !== undefined && outcome.status !== "failed") ids.add(image.id, outcome.id);
      else ingestFailures.push({ kind: "image", id: image.id, message: outcome.error?.message ?? "failed" });
    }
    ingestStep(chunk.length);
  }
  for (const video of videos) {
    const [outcome] = await client.ingestVideos([{ path: video.path }]);
    if (outcome?.id !== undefined && outcome.status !== "failed") ids.add(video.id, outcome.id);
    else ingestFailures.push({ kind: "video", id: video.id, message: outcome?.error?.message ?? "failed" });
    ingestStep(1);
  }
  const imageValue = async (ref: ImageRef): Promise<string> => {
    if (ref.kind === "file") return dataUrlOf(ref.path);
    if (ref.kind === "stored") return ref.id;
    const image = images.find((item) => item.id === ref.id);
    if (image === undefined) throw new Error(`Corpus image ${ref.id} is not in the suite.`);
    return dataUrlOf(image.path);
  };
  const imagePathOf = (ref: ImageRef): string | undefined =>
    ref.kind === "file"
      ? ref.path
      : ref.kind === "corpus"
        ? images.find((item) => item.id === ref.id)?.path
        : undefined;
  if (triples.length > 0) {
    const items = [];
    for (const triple of triples) {
      const stored = triple.image.kind === "corpus" ? ids.stored(triple.image.id) : undefined;
      items.push({
        image: stored ?? (await imageValue(triple.image)),
        question: triple.question,
        answer: triple.answer,
        ...(keepMetadata ? { metadata: triple.metadata } : {}),
      });
    }
    const outcomes = await client.ingestTriples(items);
    for (const outcome of outcomes) {
      const triple = triples[outcome.index];
      if (triple === undefined) continue;
      if (outcome.id !== undefined && outcome.status !== "failed") ids.add(triple.id, outcome.id);
      else
        ingestFailures.push({ kind: "triple", id: triple.id, message: outcome.error?.message ?? "failed" });
    }
    ingestStep(triples.length);
  }
  const ingestSeconds = (performance.now() - started) / 1000;

  const casesStarted = performance.now();
  const records: CaseRecord[] = [];
  const chatResults: ChatResult[] = [];
  onProgress?.({ phase: "cases", done: 0, total: cases.length });
  const chat = async (body: Parameters<LoupeClient["chat"]>[0]) => {
    const sent = performance.now();
    const result = await client.chat({ ...body, composer });
    chatResults.push(result);
    return { result: mapChatIds(result, ids), wallMs: round(performance.now() - sent) };
  };
  const timingsOf = (result: ChatResult, wallMs: number): Record<string, number> => ({
    ...result.timings,
    request: wallMs,
  });

  for (const item of cases) {
    const record: CaseRecord = {
      id: item.id,
      kind: item.kind,
      tags: item.tags,
      input: {},
      expected: {},
      output: {},
      metrics: {},
      passed: false,
      timings: {},
    };
    try {
      if (item.kind === "retrieval") {
        record.task = item.task;
        record.input = {
          ...(item.query.text === undefined ? {} : { text: item.query.text }),
          ...(item.query.image === undefined ? {} : { images: [describeImage(item.query.image)] }),
        };
        const image = item.query.image;
        if (image !== undefined) {
          const path = imagePathOf(image);
          if (path !== undefined) record.imagePath = path;
        }
        const isVideo = item.task === "text-to-video-segment";
        const sent = performance.now();
        const hits = await client.search({
          ...(item.query.text === undefined ? {} : { text: item.query.text }),
          ...(image === undefined ? {} : { image: await imageValue(image) }),
          kinds: [isVideo ? "video_segment" : "image"],
          topK: SEARCH_TOP_K,
        });
        record.timings = { search: round(performance.now() - sent) };
        if (isVideo) {
          const ranked: SegmentRef[] = hits.map((hit) => ({
            videoId: ids.suite(hit.videoId ?? ""),
            start: hit.start ?? 0,
            end: hit.end ?? 0,
          }));
          record.expected = { segments: item.segments };
          record.output = {
            ranked: ranked.map((segment) => `${segment.videoId}@${segment.start}-${segment.end}`),
          };
          const ranking = segmentRanking({ ranked, expected: item.segments });
          Object.assign(record.metrics, retrievalCaseMetrics(ranking.ranked, ranking.relevant));
        } else {
          const ranked = hits.map((hit) => ids.canonical(ids.suite(hit.id)));
          const relevant = new Set(item.relevant.map((id) => ids.canonical(id)));
          record.expected = { relevant: item.relevant };
          record.output = { ranked };
          Object.assign(record.metrics, retrievalCaseMetrics(ranked, relevant));
        }
        record.passed = record.metrics.hitAt10 === true;
      } else if (item.kind === "vqa") {
        record.input = { question: item.question, images: [describeImage(item.image)] };
        const path = imagePathOf(item.image);
        if (path !== undefined) record.imagePath = path;
        record.expected = { answers: item.answers };
        const { result, wallMs } = await chat({
          question: item.question,
          images: [await imageValue(item.image)],
        });
        const attached = result.evidence.find((evidence) => evidence.citation.id === "att_1");
        const shortAnswer = attached?.findings[0]?.answer ?? "";
        record.output = chatOutput(result, { shortAnswer });
        record.timings = timingsOf(result, wallMs);
        if (result.usage !== undefined) record.usage = result.usage;
        const accuracy = answerAccuracy({ prediction: shortAnswer, references: item.answers });
        record.metrics = {
          accuracy,
          answerContains: containsAnswer({ answer: result.answer, references: item.answers }),
        };
        record.passed = accuracy >= 0.5;
      } else if (item.kind === "answer") {
        const attachedImages = [...item.history.flatMap((turn) => turn.images), ...item.images];
        record.input = {
          question: item.question,
          ...(item.images.length > 0 ? { images: item.images.map(describeImage) } : {}),
          ...(item.history.length > 0 ? { history: item.history.length } : {}),
        };
        const first = attachedImages[0];
        if (first !== undefined) {
          const path = imagePathOf(first);
          if (path !== undefined) record.imagePath = path;
        } else {
          const firstEvidence = item.evidence
            .map((id) => images.find((image) => image.id === id))
            .find(Boolean);
          if (firstEvidence !== undefined) record.imagePath = firstEvidence.path;
        }
        record.expected = {
          ...(item.answers.length > 0 ? { answers: item.answers } : {}),
          ...(item.evidence.length > 0 ? { evidence: item.evidence } : {}),
          ...(item.segments.length > 0 ? { segments: item.segments } : {}),
          unanswerable: item.unanswerable,
        };
        let result: ChatResult;
        let wallMs = 0;
        try {
          ({ result, wallMs } = await chat({
            question: item.question,
            ...(item.images.length > 0 ? { images: await Promise.all(item.images.map(imageValue)) } : {}),
            ...(item.history.length > 0
              ? {
                  history: await Promise.all(
                    item.history.map(async (turn) => ({
                      role: turn.role,
                      content: turn.content,
                      ...(turn.images.length > 0
                        ? { images: await Promise.all(turn.images.map(imageValue)) }
                        : {}),
                    })),
                  ),
                }
              : {}),
          }));
        } catch (error) {
          record.error = errorOf(error);
          result = emptyChatResult();
        }
        const scores = scoreAnswer({
          result,
          expectation: {
            references: item.answers,
            expectedIds: item.evidence.map((id) => ids.canonical(id)),
            expectedSegments: item.segments.map((segment) => ({
              ...segment,
              videoId: ids.canonical(segment.videoId),
            })),
            unanswerable: item.unanswerable,
          },
        });
        record.output = chatOutput(result, {});
        record.timings = record.error === undefined ? timingsOf(result, wallMs) : {};
        if (result.usage !== undefined) record.usage = result.usage;
        record.metrics = {
          exactMatch: scores.exactMatch,
          contains: scores.containsAnswer,
          citationPrecision: scores.citations.precision,
          citationRecall: scores.citations.recall,
          groundedness: scores.groundedness,
          checkedClaims: result.verification.checked,
          confirmedClaims: result.verification.confirmed,
          abstained: scores.abstained,
          abstentionCorrect: scores.abstentionCorrect,
        };
        record.passed =
          record.error === undefined &&
          scores.abstentionCorrect &&
          scores.containsAnswer !== false &&
          (scores.citations.recall === null || scores.citations.recall > 0);
      } else {
        record.input = { question: item.question, images: [describeImage(item.image)] };
        const path = imagePathOf(item.image);
        if (path !== undefined) record.imagePath = path;
        record.expected = { tripleId: item.tripleId, answers: [item.answer] };
        const { result, wallMs } = await chat({
          question: item.question,
          images: [await imageValue(item.image)],
        });
        const reused = [
          ...new Set(
            result.evidence.flatMap((evidence) =>
              evidence.findings
                .filter((finding) => finding.source === "triple" && finding.tripleId !== undefined)
                .map((finding) => finding.tripleId as string),
            ),
          ),
        ];
        record.output = chatOutput(result, { reusedTriples: reused });
        record.timings = timingsOf(result, wallMs);
        if (result.usage !== undefined) record.usage = result.usage;
        record.metrics = {
          reused: reused.includes(item.tripleId),
          contains: containsAnswer({ answer: result.answer, references: [item.answer] }),
        };
        record.passed = record.metrics.reused === true;
      }
    } catch (error) {
      record.error = errorOf(error);
      record.passed = false;
    }
    records.push(record);
    onProgress?.({ phase: "cases", done: records.length, total: cases.length });
  }
  const casesSeconds = (performance.now() - casesStarted) / 1000;

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
      ...(await gitCommit().then((commit) => (commit === undefined ? {} : { gitCommit: commit }))),
      date,
      ...(limit === undefined ? {} : { limit }),
      corpus: { images: images.length, videos: videos.length, triples: triples.length },
      ingestFailures,
      durations: {
        ingestSeconds: round(ingestSeconds),
        casesSeconds: round(casesSeconds),
        totalSeconds: round((performance.now() - started) / 1000),
      },
    },
    summary: summarizeRun({ records, chatResults }),
    cases: records,
  };
}

/** Per-case retrieval figures: hits at 1/5/10 and the reciprocal rank. */
function retrievalCaseMetrics(
  ranked: readonly string[],
  relevant: ReadonlySet<string>,
): Record<string, CaseMetric> {
  const position = ranked.findIndex((id) => relevant.has(id));
  return {
    hitAt1: position === 0,
    hitAt5: position >= 0 && position < 5,
    hitAt10: position >= 0 && position < 10,
    reciprocalRank: position < 0 ? 0 : 1 / (position + 1),
  };
}

function chatOutput(result: ChatResult, extra: Partial<CaseRecord["output"]>): CaseRecord["output"] {
  return {
    answer: result.answer,
    answered: result.answered,
    citations: result.citations.map((citation) => citation.id),
    evidence: result.evidence.slice(0, 10).map((evidence) => ({
      id: evidence.citation.id,
      kind: evidence.citation.kind,
      score: Math.round(evidence.citation.score * 1000) / 1000,
      ...(evidence.text === "" ? {} : { text: evidence.text.slice(0, 300) }),
    })),
    composer: result.composer,
    ...(result.fallback === undefined ? {} : { fallback: result.fallback.code }),
    ...extra,
  };
}

function rankingOf(record: CaseRecord): { ranked: string[]; relevant: Set<string> } {
  if (record.task === "text-to-video-segment") {
    const expected = record.expected.segments ?? [];
    const ranked = (record.output.ranked ?? []).map((text) => {
      const match = /^(.*)@([\d.e+-]+)-([\d.e+-]+)$/u.exec(text);
      return { videoId: match?.[1] ?? "", start: Number(match?.[2] ?? 0), end: Number(match?.[3] ?? 0) };
    });
    return segmentRanking({ ranked, expected });
  }
  return { ranked: record.output.ranked ?? [], relevant: new Set(record.expected.relevant ?? []) };
}

/** The summary of a run's case records (also used to re-summarize a `results.json`). */
export function summarizeRun({
  records,
  chatResults = [],
}: {
  records: readonly CaseRecord[];
  chatResults?: readonly Pick<ChatResult, "usage">[];
}): RunSummary {
  const figures: Record<string, number | null> = {};
  const retrieval: RunSummary["retrieval"] = {};
  const tasks: RetrievalTask[] = ["text-to-image", "image-to-image", "text-to-video-segment"];
  for (const task of tasks) {
    const taskRecords = records.filter((record) => record.kind === "retrieval" && record.task === task);
    if (taskRecords.length === 0) continue;
    let summary: RetrievalSummary;
    let rankings: Array<{ ranked: string[]; relevant: Set<string> }>;
    if (task === "text-to-video-segment") {
      const ranked = taskRecords.map((record) => rankingOf(record));
      rankings = ranked;
      summary = summarizeSegmentRetrieval({
        ranked: taskRecords.map((record) =>
          (record.output.ranked ?? []).map((text) => {
            const match = /^(.*)@([\d.e+-]+)-([\d.e+-]+)$/u.exec(text);
            return {
              videoId: match?.[1] ?? "",
              start: Number(match?.[2] ?? 0),
              end: Number(match?.[3] ?? 0),
            };
          }),
        ),
        expected: taskRecords.map((record) => record.expected.segments ?? []),
      });
    } else {
      rankings = taskRecords.map((record) => rankingOf(record));
      summary = summarizeRetrieval({
        ranked: rankings.map((ranking) => ranking.ranked),
        relevant: rankings.map((ranking) => ranking.relevant),
      });
    }
    const curve = CURVE_KS.map((k) => ({
      k,
      recall: recallAtK({
        ranked: rankings.map((ranking) => ranking.ranked),
        relevant: rankings.map((ranking) => ranking.relevant),
        k,
      }),
    }));
    retrieval[task] = { ...summary, curve };
    for (const name of ["recallAt1", "recallAt5", "recallAt10", "mrr", "ndcgAt10"] as const) {
      figures[`retrieval.${task}.${name}`] = summary[name];
    }
  }

  const vqaRecords = records.filter((record) => record.kind === "vqa");
  let vqa: RunSummary["vqa"] = null;
  if (vqaRecords.length > 0) {
    const byType = accuracyByType({
      results: vqaRecords.map((record) => ({
        type: record.tags[0] ?? "all",
        correct: Number(record.metrics.accuracy ?? 0) >= 0.5,
      })),
    });
    // Accuracy is the mean of the (possibly fractional) VQAv2 scores, per type and overall.
    const mean = (list: readonly CaseRecord[]) =>
      list.reduce((sum, record) => sum + Number(record.metrics.accuracy ?? 0), 0) / Math.max(1, list.length);
    const types: Record<string, { accuracy: number; count: number }> = {};
    for (const type of Object.keys(byType.byType)) {
      const list = vqaRecords.filter((record) => (record.tags[0] ?? "all") === type);
      types[type] = { accuracy: mean(list), count: list.length };
      figures[`vqa.accuracy.${type}`] = types[type].accuracy;
    }
    const contains = meanOfDefined(vqaRecords.map((record) => record.metrics.answerContains ?? null));
    vqa = {
      overall: { accuracy: mean(vqaRecords), count: vqaRecords.length },
      byType: types,
      answerContains: contains.mean,
    };
    figures["vqa.accuracy"] = vqa.overall.accuracy;
    figures["vqa.answerContains"] = contains.mean;
  }

  const answerRecords = records.filter((record) => record.kind === "answer");
  let answers: RunSummary["answers"] = null;
  if (answerRecords.length > 0) {
    const metric = (name: string) =>
      meanOfDefined(answerRecords.map((record) => record.metrics[name] ?? null)).mean;
    const abstention = abstentionScores({
      outcomes: answerRecords.map((record) => ({
        unanswerable: record.expected.unanswerable === true,
        abstained: record.metrics.abstained === true,
      })),
    });
    const grounded = pooledGroundedness(
      answerRecords.map((record) => ({
        checked: Number(record.metrics.checkedClaims ?? 0),
        confirmed: Number(record.metrics.confirmedClaims ?? 0),
      })),
    );
    const byTag: Record<string, { count: number; passed: number }> = {};
    for (const record of answerRecords) {
      const tag = record.tags[0] ?? "untagged";
      const entry = byTag[tag] ?? { count: 0, passed: 0 };
      entry.count += 1;
      if (record.passed) entry.passed += 1;
      byTag[tag] = entry;
    }
    answers = {
      count: answerRecords.length,
      exactMatch: metric("exactMatch"),
      contains: metric("contains"),
      citationPrecision: metric("citationPrecision"),
      citationRecall: metric("citationRecall"),
      groundedness: grounded.rate,
      abstention: { precision: abstention.precision, recall: abstention.recall, f1: abstention.f1 },
      byTag,
    };
    figures["answers.exactMatch"] = answers.exactMatch;
    figures["answers.contains"] = answers.contains;
    figures["answers.citationPrecision"] = answers.citationPrecision;
    figures["answers.citationRecall"] = answers.citationRecall;
    figures["answers.groundedness"] = answers.groundedness;
    figures["abstention.precision"] = abstention.precision;
    figures["abstention.recall"] = abstention.recall;
    figures["abstention.f1"] = abstention.f1;
  }

  const probeRecords = records.filter((record) => record.kind === "triple-probe");
  let triples: TripleReuse | null = null;
  if (probeRecords.length > 0) {
    triples = tripleReuseRate({
      probes: probeRecords.map((record) => ({
        expectedTripleId: record.expected.tripleId ?? "",
        reusedTripleIds: record.output.reusedTriples ?? [],
      })),
    });
    figures["triples.reuse"] = triples.rate;
    figures["triples.wrongReuse"] = triples.wrongRate;
  }

  const chatSteps = records.filter((record) => record.kind !== "retrieval" && record.error === undefined);
  const latency = {
    ...summarizeLatency({ samples: chatSteps.map((record) => record.timings) }),
    ...summarizeLatency({
      samples: records.filter((record) => record.kind === "retrieval").map((record) => record.timings),
    }),
  };
  for (const [step, value] of Object.entries(latency)) {
    figures[`latency.${step}.p50`] = value.p50;
    figures[`latency.${step}.p95`] = value.p95;
  }
  const errors = records.filter((record) => record.error !== undefined).length;
  figures.errors = errors;
  return {
    cases: records.length,
    errors,
    retrieval,
    vqa,
    answers,
    triples,
    latency,
    tokens: summarizeTokenUsage({
      results: chatResults.length > 0 ? chatResults : records.map((record) => ({ usage: record.usage })),
    }),
    figures,
  };
}

/** The pack's id, or a note that it could not be loaded (every case will then fail with `not_ready`). */
function packIdOf(models: { readonly modelId: string }): string {
  try {
    return models.modelId;
  } catch {
    return "(not loaded)";
  }
}

/** An in-process Loupe for a run: embedded Milvus Lite in a temporary data dir, removed by `close`. */
export interface InProcessLoupe {
  client: LoupeClient;
  modelPack: string;
  close(): Promise<void>;
}

/**
 * Starts Loupe's services in this process over a fresh embedded Milvus Lite in a temporary data dir (never
 * the configured `LOUPE_DATA_DIR`; `MILVUS_ADDRESS` is ignored) and wraps its app in a client.
 */
export async function openInProcessLoupe({
  env = process.env,
  cwd,
}: {
  env?: Record<string, string | undefined>;
  cwd?: string;
} = {}): Promise<InProcessLoupe> {
  const dataDir = await mkdtemp(join(tmpdir(), "loupe-eval-data-"));
  const { MILVUS_ADDRESS: _external, ...rest } = env;
  try {
    const opened = await openServices({
      env: { ...rest, LOUPE_DATA_DIR: dataDir },
      ...(cwd === undefined ? {} : { cwd }),
      logger: createLogger({ level: "error" }),
    });
    const app = createApp(opened.services);
    let closing: Promise<void> | undefined;
    return {
      client: createHttpClient({
        target: "in-process",
        fetch: async (path, init) => app.request(path, init),
      }),
      modelPack: packIdOf(opened.services.models),
      close: () => {
        closing ??= opened.close().finally(() => rm(dataDir, { recursive: true, force: true }));
        return closing;
      },
    };
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}
