/**
 * What a run of the eval runner produces: one record per case (input, output with suite ids, metric
 * values, timings), a summary of the whole run, and the facts of the run. `results.json` holds one
 * {@link RunResults}; reports and the baseline gate read it.
 */
import type { TokenUsageSummary } from "../metrics/answer-metrics.ts";
import type { LatencyFigures } from "../metrics/latency.ts";
import type { RetrievalSummary, TripleReuse } from "../metrics/retrieval-metrics.ts";
import type {
  CountQuestion,
  NormalizedBox,
  RegionTarget,
  RetrievalTask,
  SearchMode,
  SegmentRef,
  Suite,
  SuiteCase,
  TruthObject,
} from "./suite.ts";

/** The version tag of `results.json`. */
export const RESULTS_FORMAT = "loupe-eval-results/v1";

/** Ranks of the recall@k curves. */
export const CURVE_KS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as const;

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
  /** Retrieval: the search mode asked for. */
  mode?: SearchMode;
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
    /** Detection: the objects in the image and the counting questions. */
    objects?: TruthObject[];
    counts?: CountQuestion[];
    /** Region: the objects the description fits (suite image ids). */
    targets?: RegionTarget[];
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
    /** OCR: lines read, and the groups read worst (ground truth, what was read, edits). */
    ocr?: { lines: number; misses: Array<{ truth: string; read: string; edits: number }> };
    /** Detection: what `/v1/detect` found, highest score first (boxes normalized, to 4 decimals). */
    detections?: Array<{
      label: string;
      attributes: Record<string, string>;
      score: number;
      box: NormalizedBox;
    }>;
    /** Region: the regions found, best first, with their parent's suite id. */
    regions?: Array<{ image: string; box: NormalizedBox; label: string }>;
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
  /** OCR cases: CER overall and by bucket (`latin12`, `latinSmall`, `cjk`), with the characters behind each. */
  ocr?: {
    images: number;
    cer: number | null;
    chars: number;
    byBucket: Record<string, { cer: number | null; chars: number }>;
    lineRecall: number | null;
    spuriousChars: number;
  } | null;
  /** Retrieval cases run in a given search mode: figures per mode, and per mode and query type (first tag). */
  search?: Record<
    string,
    {
      queries: number;
      recallAt1: number;
      recallAt5: number;
      mrr: number;
      byType: Record<string, { queries: number; recallAt1: number; recallAt5: number }>;
    }
  >;
  /** Answer cases scored on text read off screenshots: answer contained and evidence cited, per question type. */
  textAnswers?: {
    count: number;
    accuracy: number;
    byType: Record<string, { count: number; accuracy: number }>;
  } | null;
  /**
   * Detection cases: AP pooled over the images (COCO style, per class and mean), attribute accuracy over
   * true positives, and counting questions answered from the detections. Absent when no case reached a
   * detection head (a pack without one).
   */
  detection?: {
    images: number;
    objects: number;
    detections: number;
    ap50: number;
    ap5095: number;
    perClass: Record<
      string,
      { ap50: number | null; ap5095: number | null; objects: number; detections: number }
    >;
    attributes: Record<string, { accuracy: number; count: number }>;
    counting: { accuracy: number; count: number };
  } | null;
  /** Region cases: text→region Recall@1/5 (IoU ≥ 0.5). Absent when no query found any region. */
  regions?: { queries: number; recallAt1: number; recallAt5: number } | null;
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
