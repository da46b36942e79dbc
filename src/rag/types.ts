/**
 * The types the retrieval chain speaks: what a chat turn asks ({@link ChatRequest}), the evidence it
 * gathers ({@link Evidence}), the events it streams ({@link ChatEvent}) and the answer it ends with
 * ({@link ChatResult}). The HTTP routes, the composers and library users all meet here.
 */
import type { OcrReading } from "../media/ocr-lines.ts";
import type { ImageQuery } from "../search/index.ts";

/** Kinds of evidence a citation can point at. */
export type CitationKind = "image" | "video_segment" | "triple" | "region";

/**
 * One cited piece of evidence, the same shape for every kind. Fields that do not apply to a kind are
 * `null` (an image has no `start`; an attached image has no stored media, so no URLs).
 */
export interface Citation {
  /** Stored item id (`img_…`, `seg_…`, `tri_…`, `reg_…`) or `att_<n>` for the n-th image attached to the conversation. */
  id: string;
  kind: CitationKind;
  mediaUrl: string | null;
  thumbnailUrl: string | null;
  /** Video segments: start, in seconds. */
  start: number | null;
  /** Video segments: end, in seconds. */
  end: number | null;
  /** Triples: the stored question. */
  question: string | null;
  /** Triples: the stored answer. */
  answer: string | null;
  /** Relevance to the question, 0–1 (fused retrieval score; 1 for attached images). */
  score: number;
  /**
   * For a question about text in images: the lines of text read in this image (or video keyframe) that
   * answer it, each with its box `[x, y, width, height]` in the image's pixels, so a client can
   * highlight them. Absent when the question is not about text or no line answers it.
   */
  lines?: CitedLine[];
  /**
   * The objects the answer is about, as the detection head found them in this image (a segment's
   * keyframe), so a client can draw them: the objects counted, the one whose side, colour, shape or size
   * was asked, those in the part of the image asked about. A box is given only where the detection head
   * agrees with the answer. For a `region` citation: the region's own box. Absent when no detection backs
   * the answer (or the pack has no detection head).
   */
  boxes?: CitedBox[];
  /** Regions: the image or video segment the object is part of (its box is normalized to that image). */
  parentId?: string;
}

/** An object an answer is about, where the detection head found it. */
export interface CitedBox {
  /**
   * Normalized to [0, 1] of the original (EXIF-oriented) image: `x` rightwards, `y` downwards,
   * `x0 ≤ x1`, `y0 ≤ y1`. Multiply by the image's width and height for pixels.
   */
  box: { x0: number; y0: number; x1: number; y1: number };
  /** The detector's class, e.g. `circle`. */
  label: string;
  /** Attribute name → value, e.g. `{ color: "red", size: "large" }`. */
  attributes: Record<string, string>;
  /** Detection score, 0–1. */
  score: number;
}

/** A line of text read in an image that an answer rests on. */
export interface CitedLine {
  /** Position of the line in the image's reading (`metadata.ocr.lines` of a stored item). */
  line: number;
  text: string;
  /** The recognizer's mean character confidence, 0–1. */
  confidence: number;
  /** `[x, y, width, height]` in pixels of the image the reading refers to (its `width` × `height`). */
  box: [number, number, number, number];
}

/** Text read in an evidence image: its OCR reading, and where the reading came from. */
export interface EvidenceText extends OcrReading {
  /** `stored`: read at ingest (`metadata.ocr`); `read`: read during this turn (an attached image). */
  source: "stored" | "read";
}

/** An answer the VQA head gave about one piece of evidence, or a stored triple's answer reused for it. */
export interface Finding {
  /** The question put to the head (the user's, or one derived from a claim). */
  question: string;
  answer: string;
  /** Softmax probability of `answer` (a reused triple answer counts as its triple's match score). */
  probability: number;
  /** The next most probable answers. */
  alternatives: Array<{ answer: string; probability: number }>;
  /**
   * `vqa`: the VQA head's own answer; `detector`: read off the detection head's boxes (a count or a side it
   * is confident of, what is in a part of the image); `triple`: a stored triple's answer for a
   * near-identical image.
   */
  source: "vqa" | "triple" | "detector";
  /** For `source: "triple"`: the triple that supplied the answer. */
  tripleId?: string;
  /** Set when the detection head and the VQA head answered a count or a side differently. */
  disagreement?: HeadOpinions;
}

/** What the detection head and the VQA head each answered to one question, and which answer was used. */
export interface HeadOpinions {
  /** The detection head's answer, with how sure it is. */
  detector: { answer: string; probability: number };
  /** The VQA head's answer, with its probability. */
  vqa: { answer: string; probability: number };
  /**
   * Whose answer stands: the detection head's when it is confident (at least even odds), else the VQA
   * head's.
   */
  followed: "detector" | "vqa";
}

/** A count or a side on which the two heads disagreed about one image. */
export interface Disagreement extends HeadOpinions {
  /** The canonical question both heads answered. */
  question: string;
  evidenceId: string;
}

/** One piece of evidence gathered for a question, with what grounding found about it. */
export interface Evidence {
  citation: Citation;
  /** True for images attached to the conversation (never stored). */
  attachment: boolean;
  /** The stored caption or description (untrusted: it comes from whoever ingested the item). */
  text: string;
  /** Text read in the image by OCR (untrusted like `text`: an image can say anything). */
  ocr?: EvidenceText;
  /** Video segments: the video's id. */
  videoId?: string;
  /** Grounding results on this evidence, most relevant first. */
  findings: Finding[];
  /**
   * For questions that look for objects in the corpus: the VQA head's probability that this image shows
   * every object the question names.
   */
  match?: number;
  /** Ids of lower-ranked candidates dropped as near-duplicates of this one. */
  duplicates?: string[];
  /**
   * A retrieved image grounding would have checked with the VQA head but did not, because the turn's
   * grounding budget (time or number of images) was spent; it is evidence as retrieved, unverified.
   */
  unchecked?: boolean;
}

/** One earlier turn of the conversation. */
export interface ChatTurn {
  role: "user" | "assistant";
  content: string;
  /** Images the user attached to that turn. */
  images?: ImageQuery[];
  /** Ids the assistant cited in that turn (from an earlier {@link ChatResult}). */
  citations?: string[];
}

/** What one chat turn asks. */
export interface ChatRequest {
  /** The caller's tenant: retrieval never leaves it. */
  tenant: string;
  /** The user's message of this turn. */
  question: string;
  /** Images attached to this turn (bytes, or ids of stored items). */
  images?: ImageQuery[];
  /** Earlier turns, oldest first. */
  history?: ChatTurn[];
  /** Metadata filter applied to every retrieval (same language as `/v1/search`). */
  filter?: unknown;
  /** Kinds to retrieve (default: all). */
  kinds?: readonly string[];
  /** Retrieved items per kind before fusion. */
  topK?: number;
  /** `offline` forces the offline composer even when an LLM is configured. */
  composer?: "auto" | "offline";
  temperature?: number;
  maxTokens?: number;
  /** Aborts the turn (the client went away). */
  signal?: AbortSignal;
}

/** What the verify step found. */
export interface Verification {
  /** Visual claims of the answer the VQA head could judge. */
  checked: number;
  confirmed: number;
  /** Claims the head confidently contradicted. */
  contradictions: Array<{
    claim: string;
    evidenceId: string;
    /** What the answer said. */
    stated: string;
    /** What the head sees, with its probability. */
    observed: string;
    probability: number;
  }>;
  /** True when a correction note was appended to the answer. */
  corrected: boolean;
  /**
   * Counts and sides the answer states (or grounding answered) on which the detection head and the VQA head
   * disagreed, each with both answers and the one that stands. Absent when they agreed or only one head
   * could answer.
   */
  disagreements?: Disagreement[];
}

/** Time spent in each step of a turn, in milliseconds. */
export interface ChatTimings {
  embed: number;
  retrieve: number;
  ground: number;
  compose: number;
  verify: number;
  total: number;
}

/** The answer to one chat turn. */
export interface ChatResult {
  /** The final answer text, with citations written as `[id]`. */
  answer: string;
  /** False when the corpus and the images do not answer the question and the answer says so. */
  answered: boolean;
  /** 0–1: how far the evidence supports the answer (lowered by contradictions). */
  confidence: number;
  /** Evidence the answer cites, in order of first citation. */
  citations: Citation[];
  /** Every piece of evidence considered, cited or not, with its grounding. */
  evidence: Evidence[];
  /** The question as retrieval understood it (follow-ups rewritten to stand alone). */
  standaloneQuestion: string;
  /** Which composer wrote the answer. */
  composer: "llm" | "offline";
  /** The model name the answer came from (`loupe-offline` for the offline composer). */
  model: string;
  /** Set when the LLM failed and the offline composer answered instead. */
  fallback?: { reason: string; code: string };
  verification: Verification;
  timings: ChatTimings;
  /** LLM token counts, when an LLM wrote the answer and reported them. */
  usage?: { promptTokens: number; completionTokens: number };
}

/** Events of a streamed turn, in this order: retrieval, grounding, citation…, answer-delta…, done. */
export type ChatEvent =
  | { type: "retrieval"; data: { standaloneQuestion: string; items: Citation[]; ms: number } }
  | { type: "grounding"; data: { findings: Array<{ evidenceId: string } & Finding>; ms: number } }
  | { type: "citation"; data: Citation }
  | { type: "answer-delta"; data: { text: string } }
  /**
   * The LLM failed after it had streamed part of its answer: discard the deltas so far; the offline
   * composer's answer follows as new deltas (and `done` carries `fallback`).
   */
  | { type: "answer-reset"; data: { reason: string } }
  | { type: "done"; data: ChatResult };

/** What Loupe's routes and commands need of the chain: one turn in, the answer or its events out. */
export interface LoupeChain {
  invoke(request: ChatRequest): Promise<ChatResult>;
  /**
   * The turn's events as they happen (`retrieval`, `grounding`, `citation`, `answer-delta`,
   * `answer-reset`), then `done` with the result; a failure is thrown from the iterator.
   */
  events(request: ChatRequest): AsyncIterable<ChatEvent>;
  /** Model names the chain answers to (`loupe`, `loupe-offline`). */
  readonly modelNames: readonly string[];
}

/** What a composer gets to write an answer from. */
export interface ComposeInput {
  /** The user's message of this turn, as written. */
  question: string;
  /** The question with follow-up references resolved. */
  standaloneQuestion: string;
  history: readonly ChatTurn[];
  /** Evidence, most relevant first, with grounding findings. */
  evidence: readonly Evidence[];
  /** Encoded images for vision-capable models, keyed by evidence id (attachments and top retrieved images). */
  images: ReadonlyArray<{ evidenceId: string; bytes: Uint8Array; contentType: string }>;
  temperature?: number;
  maxTokens?: number;
  signal?: AbortSignal;
}

/** What a composer returns. */
export interface ComposeOutput {
  text: string;
  model: string;
  usage?: { promptTokens: number; completionTokens: number };
}

/**
 * Writes the answer text from the evidence. The LLM composer streams its text through `onDelta` as it
 * arrives; it throws `LlmError` when the endpoint fails, and the chain then falls back to the offline one.
 */
export interface AnswerComposer {
  readonly kind: "llm" | "offline";
  readonly model: string;
  /** Whether the model accepts image parts. */
  readonly vision: boolean;
  compose(input: ComposeInput, onDelta: (text: string) => void): Promise<ComposeOutput>;
}
