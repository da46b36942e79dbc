/**
 * The run step: every case of a suite against Loupe, one at a time and in suite order, so latencies are
 * those of a lone client and a run is reproducible for a seed. Retrieval cases go through `/v1/search`;
 * VQA, answer and triple-probe cases through `/v1/chat`. Stored ids in the answers are mapped back to the
 * suite's ids, and each case gets its own metric values; a case whose request fails is recorded with its
 * error and counts as a miss. Detection cases go through `/v1/detect` (by stored id) and region cases
 * through `/v1/search` with `kinds: ["region"]`.
 */

import type { ListedItem } from "../../client/index.ts";
import { readOcrMetadata } from "../../media/ocr-lines.ts";
import type { ChatResult } from "../../rag/types.ts";
import { containsAnswer, scoreAnswer } from "../metrics/answer-metrics.ts";
import { CER_BUCKETS, containsText, scoreOcrLines } from "../metrics/ocr-metrics.ts";
import { segmentRanking } from "../metrics/retrieval-metrics.ts";
import { answerAccuracy } from "../metrics/vqa-accuracy.ts";
import type { ChatBody, LoupeClient } from "./client.ts";
import type { IdMap } from "./id-map.ts";
import { describeImage, imagePath, imageValue } from "./image-refs.ts";
import { detectionCaseMetrics, NO_DETECTION_HEAD, regionCaseMetrics } from "./object-scores.ts";
import type { CaseRecord, RunProgress } from "./results.ts";
import { retrievalCaseMetrics } from "./score.ts";
import type {
  AnswerCase,
  CorpusImage,
  DetectionCase,
  ImageRef,
  NormalizedBox,
  OcrCase,
  RegionCase,
  RetrievalCase,
  SegmentRef,
  SuiteCase,
  TripleProbeCase,
  VqaCase,
} from "./suite.ts";

/** Results wanted per search. */
const SEARCH_TOP_K = 10;

/** Regions wanted per region query: Recall@5 is the deepest figure. */
const REGION_TOP_K = 5;

/** Region queries search the regions of images only (the filter field `parent_kind`). */
const REGION_PARENT_FILTER = [{ field: "parent_kind", op: "eq", value: "image" }];

/** Options of {@link runCases}. */
export interface RunCasesOptions {
  cases: readonly SuiteCase[];
  client: LoupeClient;
  /** Stored ids ↔ the suite's ids, from the ingest step. */
  ids: IdMap;
  /** The suite's corpus images, which cases may refer to. */
  images: readonly CorpusImage[];
  composer?: "offline" | "auto";
  onProgress?: (progress: RunProgress) => void;
}

/** What {@link runCases} gives back. */
export interface RanCases {
  records: CaseRecord[];
  /** Every chat result as Loupe returned it (for token usage). */
  chatResults: ChatResult[];
  /** Wall-clock seconds, unrounded. */
  seconds: number;
}

/** What a case needs besides itself. */
interface CaseContext {
  client: LoupeClient;
  ids: IdMap;
  images: readonly CorpusImage[];
  imageValue(ref: ImageRef): Promise<string>;
  imagePath(ref: ImageRef): string | undefined;
  /** A chat turn with the run's composer; the result's ids are the suite's. */
  chat(body: ChatBody): Promise<{ result: ChatResult; wallMs: number }>;
  /** The stored images by id, listed once on first use. */
  storedImages(): Promise<Map<string, ListedItem>>;
}

const round = (value: number) => Math.round(value * 10) / 10;

/** Runs the cases (see the module comment); only a client that cannot be used at all makes it throw. */
export async function runCases({
  cases,
  client,
  ids,
  images,
  composer = "offline",
  onProgress,
}: RunCasesOptions): Promise<RanCases> {
  const started = performance.now();
  const records: CaseRecord[] = [];
  const chatResults: ChatResult[] = [];
  let stored: Promise<Map<string, ListedItem>> | undefined;
  const context: CaseContext = {
    client,
    storedImages: () => {
      stored ??= client.listImages().then((items) => new Map(items.map((item) => [item.id, item])));
      return stored;
    },
    ids,
    images,
    imageValue: (ref) => imageValue({ ref, images }),
    imagePath: (ref) => imagePath({ ref, images }),
    chat: async (body) => {
      const sent = performance.now();
      const result = await client.chat({ ...body, composer });
      chatResults.push(result);
      return { result: mapChatIds(result, ids), wallMs: round(performance.now() - sent) };
    },
  };
  onProgress?.({ phase: "cases", done: 0, total: cases.length });
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
      if (item.kind === "retrieval") await runRetrievalCase(item, record, context);
      else if (item.kind === "vqa") await runVqaCase(item, record, context);
      else if (item.kind === "answer") await runAnswerCase(item, record, context);
      else if (item.kind === "triple-probe") await runTripleProbe(item, record, context);
      else if (item.kind === "detection") await runDetectionCase(item, record, context);
      else if (item.kind === "region") await runRegionCase(item, record, context);
      else await runOcrCase(item, record, context);
    } catch (error) {
      record.error = errorOf(error);
      record.passed = false;
    }
    records.push(record);
    onProgress?.({ phase: "cases", done: records.length, total: cases.length });
  }
  return { records, chatResults, seconds: (performance.now() - started) / 1000 };
}

async function runRetrievalCase(
  item: RetrievalCase,
  record: CaseRecord,
  context: CaseContext,
): Promise<void> {
  const { client, ids } = context;
  record.task = item.task;
  if (item.mode !== undefined) record.mode = item.mode;
  record.input = {
    ...(item.query.text === undefined ? {} : { text: item.query.text }),
    ...(item.query.image === undefined ? {} : { images: [describeImage(item.query.image)] }),
  };
  const image = item.query.image;
  if (image !== undefined) {
    const path = context.imagePath(image);
    if (path !== undefined) record.imagePath = path;
  }
  const isVideo = item.task === "text-to-video-segment";
  const sent = performance.now();
  const hits = await client.search({
    ...(item.query.text === undefined ? {} : { text: item.query.text }),
    ...(image === undefined ? {} : { image: await context.imageValue(image) }),
    kinds: [isVideo ? "video_segment" : "image"],
    topK: SEARCH_TOP_K,
    ...(item.mode === undefined ? {} : { mode: item.mode }),
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
}

async function runVqaCase(item: VqaCase, record: CaseRecord, context: CaseContext): Promise<void> {
  record.input = { question: item.question, images: [describeImage(item.image)] };
  const path = context.imagePath(item.image);
  if (path !== undefined) record.imagePath = path;
  record.expected = { answers: item.answers };
  const { result, wallMs } = await context.chat({
    question: item.question,
    images: [await context.imageValue(item.image)],
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
}

async function runAnswerCase(item: AnswerCase, record: CaseRecord, context: CaseContext): Promise<void> {
  const { ids, images } = context;
  const attachedImages = [...item.history.flatMap((turn) => turn.images), ...item.images];
  record.input = {
    question: item.question,
    ...(item.images.length > 0 ? { images: item.images.map(describeImage) } : {}),
    ...(item.history.length > 0 ? { history: item.history.length } : {}),
  };
  const first = attachedImages[0];
  if (first !== undefined) {
    const path = context.imagePath(first);
    if (path !== undefined) record.imagePath = path;
  } else {
    const firstEvidence = item.evidence.map((id) => images.find((image) => image.id === id)).find(Boolean);
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
    ({ result, wallMs } = await context.chat({
      question: item.question,
      ...(item.images.length > 0 ? { images: await Promise.all(item.images.map(context.imageValue)) } : {}),
      ...(item.history.length > 0
        ? {
            history: await Promise.all(
              item.history.map(async (turn) => ({
                role: turn.role,
                content: turn.content,
                ...(turn.images.length > 0
                  ? { images: await Promise.all(turn.images.map(context.imageValue)) }
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
  const contains =
    item.match === "text" && item.answers.length > 0
      ? item.answers.some((expected) => containsText({ answer: result.answer, expected }))
      : scores.containsAnswer;
  record.metrics = {
    exactMatch: scores.exactMatch,
    contains,
    citationPrecision: scores.citations.precision,
    citationRecall: scores.citations.recall,
    groundedness: scores.groundedness,
    checkedClaims: result.verification.checked,
    confirmedClaims: result.verification.confirmed,
    abstained: scores.abstained,
    abstentionCorrect: scores.abstentionCorrect,
  };
  if (item.match === "text") {
    // Read off a screenshot: the text is in the answer and every expected piece of evidence is cited.
    record.metrics.textCorrect =
      record.error === undefined && contains === true && (scores.citations.recall ?? 1) === 1;
  }
  record.passed =
    record.error === undefined &&
    scores.abstentionCorrect &&
    contains !== false &&
    (scores.citations.recall === null || scores.citations.recall > 0) &&
    record.metrics.textCorrect !== false;
}

async function runOcrCase(item: OcrCase, record: CaseRecord, context: CaseContext): Promise<void> {
  const image = context.images.find((entry) => entry.id === item.image);
  record.input = { images: [`corpus:${item.image}`] };
  if (image !== undefined) record.imagePath = image.path;
  const truth = image?.lines ?? [];
  record.expected = { answers: truth.map((line) => line.text) };
  const storedId = context.ids.stored(item.image);
  const sent = performance.now();
  const listed = storedId === undefined ? undefined : (await context.storedImages()).get(storedId);
  record.timings = { list: round(performance.now() - sent) };
  const reading = readOcrMetadata(listed?.metadata);
  const size = image?.size;
  const scale: [number, number] =
    reading === undefined || size === undefined || reading.width <= 0 || reading.height <= 0
      ? [1, 1]
      : [size.width / reading.width, size.height / reading.height];
  const score = scoreOcrLines({ truth, read: reading?.lines ?? [], scale });
  record.output = { ocr: { lines: reading?.lines.length ?? 0, misses: score.misses.slice(0, 5) } };
  const metrics: CaseRecord["metrics"] = {
    read: reading !== undefined,
    edits: score.overall.edits,
    chars: score.overall.chars,
    cer: score.overall.chars === 0 ? null : score.overall.edits / score.overall.chars,
    lines: score.lines,
    linesFound: score.linesFound,
    spuriousChars: score.spuriousChars,
  };
  for (const bucket of CER_BUCKETS) {
    metrics[`edits.${bucket}`] = score.byBucket[bucket].edits;
    metrics[`chars.${bucket}`] = score.byBucket[bucket].chars;
  }
  record.metrics = metrics;
  if (listed === undefined) {
    record.error = {
      code: "not_stored",
      message: `corpus image ${item.image} is not among the stored images`,
    };
  }
  record.passed = reading !== undefined && (metrics.cer === null || Number(metrics.cer) <= 0.05);
}

/** A box to 4 decimals (a tenth of a pixel of a 1,000 px image), so records stay small. */
function roundBox(box: NormalizedBox): NormalizedBox {
  const four = (value: number) => Math.round(value * 10_000) / 10_000;
  return { x0: four(box.x0), y0: four(box.y0), x1: four(box.x1), y1: four(box.y1) };
}

async function runDetectionCase(
  item: DetectionCase,
  record: CaseRecord,
  context: CaseContext,
): Promise<void> {
  const image = context.images.find((entry) => entry.id === item.image);
  record.input = { images: [`corpus:${item.image}`] };
  if (image !== undefined) record.imagePath = image.path;
  record.expected = { objects: item.objects, counts: item.counts };
  record.output = { detections: [] };
  const storedId = context.ids.stored(item.image);
  if (storedId === undefined) {
    record.error = {
      code: "not_stored",
      message: `corpus image ${item.image} is not among the stored images`,
    };
    return;
  }
  const sent = performance.now();
  let answer: Awaited<ReturnType<LoupeClient["detect"]>>;
  try {
    answer = await context.client.detect({ image: storedId });
  } catch (error) {
    const failure = errorOf(error);
    // A pack without a detection head: nothing to score, and no figures rather than figures of 0.
    record.error =
      failure.code === "not_ready" && /detection head/u.test(failure.message)
        ? { code: NO_DETECTION_HEAD, message: failure.message }
        : failure;
    return;
  }
  record.timings = { detect: round(performance.now() - sent) };
  const detections = answer.detections.map((detection) => ({
    label: detection.label,
    attributes: detection.attributes,
    score: Math.round(detection.score * 10_000) / 10_000,
    box: roundBox(detection.box),
  }));
  record.output = { detections };
  const scored = detectionCaseMetrics({ objects: item.objects, counts: item.counts, detections });
  record.metrics = scored.metrics;
  record.passed = scored.passed;
}

async function runRegionCase(item: RegionCase, record: CaseRecord, context: CaseContext): Promise<void> {
  const { client, ids } = context;
  record.input = { text: item.text };
  const targets = item.targets.map((target) => ({ image: ids.canonical(target.image), box: target.box }));
  record.expected = { targets };
  const sent = performance.now();
  // Only the images' regions: the videos' keyframes have objects too, but no ground truth to judge them by.
  const hits = await client.search({
    text: item.text,
    kinds: ["region"],
    topK: REGION_TOP_K,
    filter: REGION_PARENT_FILTER,
  });
  record.timings = { search: round(performance.now() - sent) };
  const regions = hits.flatMap((hit) =>
    hit.region === undefined
      ? []
      : [
          {
            image: ids.canonical(ids.suite(hit.region.parentId)),
            box: roundBox(hit.region.box),
            label: hit.region.label,
          },
        ],
  );
  record.output = { regions };
  const first = regions[0];
  if (first !== undefined) {
    const path = context.images.find((entry) => entry.id === first.image)?.path;
    if (path !== undefined) record.imagePath = path;
  }
  record.metrics = regionCaseMetrics({ regions, targets });
  record.passed = record.metrics.hitAt1 === true;
}

async function runTripleProbe(
  item: TripleProbeCase,
  record: CaseRecord,
  context: CaseContext,
): Promise<void> {
  record.input = { question: item.question, images: [describeImage(item.image)] };
  const path = context.imagePath(item.image);
  if (path !== undefined) record.imagePath = path;
  record.expected = { tripleId: item.tripleId, answers: [item.answer] };
  const { result, wallMs } = await context.chat({
    question: item.question,
    images: [await context.imageValue(item.image)],
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

function timingsOf(result: ChatResult, wallMs: number): Record<string, number> {
  return { ...result.timings, request: wallMs };
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
