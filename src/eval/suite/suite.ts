/**
 * An eval suite: a corpus (images, videos, triples) that a runner ingests into Loupe, and the cases it
 * then runs against the chain or `/v1/search` and scores with the metrics of `../metrics/`. Every loader in
 * `loaders/` returns a {@link Suite}; paths in it are absolute, ids are the suite's own (a runner
 * maps them to the stored `img_…`/`seg_…`/`tri_…` ids it gets back from ingestion).
 */
import type { SegmentRef } from "../metrics/retrieval-metrics.ts";

export type { SegmentRef } from "../metrics/retrieval-metrics.ts";

/** Where a suite came from. */
export type SuiteFormat = "loupe-jsonl" | "shapes-world" | "screens" | "karpathy" | "vqav2";

/** How `/v1/search` ranks: embeddings, BM25 over the items' text, or both fused. */
export type SearchMode = "dense" | "text" | "hybrid";

/** A line of text known to be on a corpus image (generated screenshots). */
export interface TruthLine {
  text: string;
  /** `[x, y, width, height]` in pixels of the image. */
  box: [number, number, number, number];
  script: "latin" | "cjk";
  fontPx: number;
}

/**
 * An image a case uses: a file, an image of the suite's corpus (by suite id), or an item already stored
 * in Loupe (by its `img_…` id).
 */
export type ImageRef =
  | { kind: "file"; path: string }
  | { kind: "corpus"; id: string }
  | { kind: "stored"; id: string };

/** An image of the corpus. */
export interface CorpusImage {
  /** Suite id, unique across the corpus. */
  id: string;
  /** Absolute path. */
  path: string;
  /** Caption to ingest with the image (absent where it would give the answers away). */
  caption?: string;
  /** Metadata to ingest with the image, and facts about it for reports. */
  metadata: Record<string, unknown>;
  /** Every line of text on the image, when known: what OCR cases score the stored reading against. */
  lines?: TruthLine[];
  /** Size of the image the lines' boxes refer to. */
  size?: { width: number; height: number };
}

/** A ground-truth span of a corpus video. */
export interface VideoSpan {
  start: number;
  end: number;
  /** What happens in it (an action, a description). */
  label?: string;
}

/** A video of the corpus. */
export interface CorpusVideo {
  id: string;
  /** Absolute path. */
  path: string;
  metadata: Record<string, unknown>;
  /** Ground-truth spans, when the source has them (for reports; cases carry their own expectations). */
  segments: VideoSpan[];
}

/** A stored image-question-answer triple of the corpus. */
export interface CorpusTriple {
  id: string;
  image: ImageRef;
  question: string;
  answer: string;
  metadata: Record<string, unknown>;
}

/** What a runner ingests before running the cases. */
export interface Corpus {
  images: CorpusImage[];
  videos: CorpusVideo[];
  triples: CorpusTriple[];
}

/** Retrieval tasks: what the query is and what is retrieved. */
export const RETRIEVAL_TASKS = ["text-to-image", "image-to-image", "text-to-video-segment"] as const;
export type RetrievalTask = (typeof RETRIEVAL_TASKS)[number];

interface CaseBase {
  /** Unique within the suite. */
  id: string;
  /** Labels to break figures down by (question type, query kind, …). */
  tags: string[];
}

/**
 * A retrieval query. Images: the corpus ids that are relevant (Recall@k, MRR, nDCG@10). Video segments:
 * the expected spans, hit with temporal IoU ≥ 0.5 (`summarizeSegmentRetrieval`).
 */
export interface RetrievalCase extends CaseBase {
  kind: "retrieval";
  task: RetrievalTask;
  query: { text?: string; image?: ImageRef };
  /** Relevant corpus ids (image tasks). */
  relevant: string[];
  /** Expected segments (video task); `videoId` is a corpus video id. */
  segments: SegmentRef[];
  /** The search mode to ask for; absent: the server's default. */
  mode?: SearchMode;
}

/** A visual question about one image, scored with the VQAv2 accuracy (`answerAccuracy`). */
export interface VqaCase extends CaseBase {
  kind: "vqa";
  image: ImageRef;
  question: string;
  /** Human answers (10 for VQAv2) or the one ground-truth answer. */
  answers: string[];
  questionType?: string;
  answerType?: string;
}

/** An earlier turn of a conversation case. */
export interface SuiteTurn {
  role: "user" | "assistant";
  content: string;
  images: ImageRef[];
}

/** A chat question, scored on its answer, citations, groundedness and abstention (`scoreAnswer`). */
export interface AnswerCase extends CaseBase {
  kind: "answer";
  question: string;
  /** Images attached to the question. */
  images: ImageRef[];
  history: SuiteTurn[];
  /** Accepted answers; empty when only the evidence is checked or the case is unanswerable. */
  answers: string[];
  /** Evidence the answer should cite: corpus ids, stored ids or `att_<n>`. */
  evidence: string[];
  /** Video spans the answer should cite; `videoId` is a corpus video id or a stored `vid_…` id. */
  segments: SegmentRef[];
  /** The corpus and images do not answer the question: the system should say so. */
  unanswerable: boolean;
  /**
   * How the answers are looked for in the answer text: `words` (default) with the VQA normalization,
   * or `text` with `containsText` of `metrics/ocr-metrics.ts` (text read off screenshots: codes, paths,
   * Chinese).
   */
  match?: "words" | "text";
}

/**
 * The text Loupe read in a corpus image at ingest (`metadata.ocr` of the stored item, from
 * `GET /v1/items`) against the image's known lines: CER by script and size (`scoreOcrLines`).
 */
export interface OcrCase extends CaseBase {
  kind: "ocr";
  /** The corpus image; its `lines` are the ground truth. */
  image: string;
}

/**
 * A probe of a stored triple: a near-identical image and a paraphrased question that the triple should
 * answer (`tripleReuseRate`).
 */
export interface TripleProbeCase extends CaseBase {
  kind: "triple-probe";
  image: ImageRef;
  question: string;
  /** The corpus triple that should be reused. */
  tripleId: string;
  answer: string;
}

/** A box normalized to [0, 1] of its image's width and height: x rightwards, y downwards. */
export interface NormalizedBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * An object known to be in a corpus image: its class, attribute values (`color`, `size`) and box. Shapes
 * World's box is the square `[x − r, y − r, x + r, y + r]` of the object's bounding circle.
 */
export interface TruthObject {
  label: string;
  attributes: Record<string, string>;
  box: NormalizedBox;
}

/** A counting question about one image, answered by counting the detections that match it. */
export interface CountQuestion {
  /** The class counted; every class when absent. */
  label?: string;
  /** The colour counted; every colour when absent. */
  color?: string;
  expected: number;
}

/**
 * `POST /v1/detect` on a stored corpus image against the objects known to be in it: AP@0.5 and
 * AP@[.5:.95] pooled over the run, attribute accuracy over true positives, and counts read off the
 * detections (`detectionCaseMetrics`, `summarizeDetection`).
 */
export interface DetectionCase extends CaseBase {
  kind: "detection";
  /** The corpus image, sent by its stored id. */
  image: string;
  objects: TruthObject[];
  counts: CountQuestion[];
}

/** An object a region query should find: a corpus image and the object's box in it. */
export interface RegionTarget {
  image: string;
  box: NormalizedBox;
}

/**
 * A single-object description searched with `kinds: ["region"]`: a hit is a region whose parent is a
 * target's image and whose box has IoU ≥ 0.5 with the target's (Recall@1 and Recall@5).
 */
export interface RegionCase extends CaseBase {
  kind: "region";
  text: string;
  /** Every object of the corpus the description fits. */
  targets: RegionTarget[];
}

/** Any case of a suite. */
export type SuiteCase =
  | RetrievalCase
  | VqaCase
  | AnswerCase
  | TripleProbeCase
  | OcrCase
  | DetectionCase
  | RegionCase;

/** A corpus and the cases run against it. */
export interface Suite {
  name: string;
  format: SuiteFormat;
  /** The file or folder the suite was loaded from (absolute). */
  source: string;
  corpus: Corpus;
  cases: SuiteCase[];
}

/** How many cases of each kind (and retrieval task) a suite holds, for logs and reports. */
export function countCases(suite: Pick<Suite, "cases">): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of suite.cases) {
    const key = item.kind === "retrieval" ? `retrieval:${item.task}` : item.kind;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
