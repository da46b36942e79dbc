/**
 * Scores of chat answers ({@link ChatResult}) against an eval case: normalized exact match and
 * contains-answer against reference answers, citation precision and recall against the expected evidence
 * (ids, or video segments hit with temporal IoU ≥ 0.5), groundedness from the verify step, abstention
 * precision and recall on unanswerable cases, and LLM token use.
 *
 * Ids are compared as strings: a runner that ingests a suite's corpus translates stored ids (`img_…`,
 * `seg_…`, `vid_…`) to the suite's ids (or the other way) before scoring.
 */
import type { ChatResult, CitationKind, Verification } from "../../rag/types.ts";
import { matchSegments, SEGMENT_HIT_IOU, type SegmentRef } from "./retrieval-metrics.ts";
import { normalizeVqaAnswer } from "./vqa-accuracy.ts";

/** Citation markers the answer text carries, `[img_…]` or `[att_1, seg_…]`. */
const CITATION_MARKERS = /\[[\w.:-]+(?:\s*,\s*[\w.:-]+)*\]/gu;
/** Markdown and typography that the VQA rules leave alone but that free-form answers are full of. */
const FREE_FORM_MARKS = /[*#:|~“”]/gu;

/**
 * An answer or reference normalized for comparison: citation markers removed, markdown marks and colons
 * turned into spaces, curly apostrophes made straight, then the official VQAv2 normalization (punctuation,
 * lowercase, number words to digits, no articles, contractions; see `vqa-accuracy.ts`).
 *
 * @example normalizeAnswerText("There are **three** circles [img_ab12].") // "there are 3 circles"
 */
export function normalizeAnswerText(text: string): string {
  const plain = text.replace(CITATION_MARKERS, " ").replace(FREE_FORM_MARKS, " ").replace(/[‘’]/gu, "'");
  return normalizeVqaAnswer(plain);
}

/** True when the answer equals one of the references after {@link normalizeAnswerText}. */
export function exactMatch({
  answer,
  references,
}: {
  answer: string;
  references: readonly string[];
}): boolean {
  const normalized = normalizeAnswerText(answer);
  return references.some((reference) => normalizeAnswerText(reference) === normalized);
}

/**
 * True when one of the references appears in the answer as whole words, after {@link normalizeAnswerText}
 * ("3" is in "there are 3 circles", not in "13 circles"). References that normalize to nothing (an
 * article alone) never match.
 */
export function containsAnswer({
  answer,
  references,
}: {
  answer: string;
  references: readonly string[];
}): boolean {
  const padded = ` ${normalizeAnswerText(answer)} `;
  return references.some((reference) => {
    const normalized = normalizeAnswerText(reference);
    return normalized.length > 0 && padded.includes(` ${normalized} `);
  });
}

/** One cited item of an answer, with the video a segment belongs to. */
export interface CitedItem {
  id: string;
  kind: CitationKind;
  /** Video segments: the video's id (from the evidence). */
  videoId?: string;
  start: number | null;
  end: number | null;
}

/** The items an answer cites, each once, with the video ids of cited segments taken from its evidence. */
export function citedItems(result: Pick<ChatResult, "citations" | "evidence">): CitedItem[] {
  const videoOf = new Map<string, string>();
  for (const evidence of result.evidence) {
    if (evidence.videoId !== undefined) videoOf.set(evidence.citation.id, evidence.videoId);
  }
  const seen = new Set<string>();
  const items: CitedItem[] = [];
  for (const citation of result.citations) {
    if (seen.has(citation.id)) continue;
    seen.add(citation.id);
    const videoId = videoOf.get(citation.id);
    items.push({
      id: citation.id,
      kind: citation.kind,
      ...(videoId === undefined ? {} : { videoId }),
      start: citation.start,
      end: citation.end,
    });
  }
  return items;
}

/** Citation precision and recall of one answer. */
export interface CitationScores {
  /** Correct citations / citations; null when nothing was cited. */
  precision: number | null;
  /** Expected items cited / expected items; null when nothing was expected. */
  recall: number | null;
  cited: number;
  expected: number;
  /** Citations that point at expected evidence. */
  correct: number;
}

/**
 * Citation precision and recall against the expected evidence: a citation is correct when its id is an
 * expected id, or when it is a segment that hits an expected segment (same video, temporal IoU ≥ `minIoU`,
 * one citation per expected segment, earlier citations first). Expected items count once each.
 */
export function citationScores({
  cited,
  expectedIds = [],
  expectedSegments = [],
  minIoU = SEGMENT_HIT_IOU,
}: {
  cited: readonly CitedItem[];
  expectedIds?: readonly string[];
  expectedSegments?: readonly SegmentRef[];
  minIoU?: number;
}): CitationScores {
  const expectedIdSet = new Set(expectedIds);
  const uniqueCited = [...new Map(cited.map((item) => [item.id, item])).values()];
  const byId = uniqueCited.filter((item) => expectedIdSet.has(item.id));
  const segments = uniqueCited.flatMap((item) =>
    !expectedIdSet.has(item.id) && item.videoId !== undefined && item.start !== null && item.end !== null
      ? [{ videoId: item.videoId, start: item.start, end: item.end }]
      : [],
  );
  const segmentHits = matchSegments({ predicted: segments, expected: expectedSegments, minIoU }).filter(
    (match) => match >= 0,
  ).length;
  const correct = byId.length + segmentHits;
  const expected = expectedIdSet.size + expectedSegments.length;
  return {
    precision: uniqueCited.length === 0 ? null : correct / uniqueCited.length,
    recall: expected === 0 ? null : correct / expected,
    cited: uniqueCited.length,
    expected,
    correct,
  };
}

/**
 * Share of the answer's visual claims that the VQA head confirmed on the cited images (`confirmed /
 * checked` of the verify step); null when no claim could be checked.
 */
export function groundedness(verification: Pick<Verification, "checked" | "confirmed">): number | null {
  return verification.checked === 0 ? null : verification.confirmed / verification.checked;
}

/** Groundedness over many answers, pooled: all confirmed claims / all checked claims (null when none). */
export function pooledGroundedness(verifications: readonly Pick<Verification, "checked" | "confirmed">[]): {
  rate: number | null;
  checked: number;
  confirmed: number;
} {
  let checked = 0;
  let confirmed = 0;
  for (const verification of verifications) {
    checked += verification.checked;
    confirmed += verification.confirmed;
  }
  return { rate: checked === 0 ? null : confirmed / checked, checked, confirmed };
}

/** Abstention figures over a set of cases. */
export interface AbstentionScores {
  /** Abstentions on unanswerable cases / abstentions; null when the system never abstained. */
  precision: number | null;
  /** Abstentions on unanswerable cases / unanswerable cases; null when no case is unanswerable. */
  recall: number | null;
  /** Harmonic mean of the two; null when either is null or both are 0. */
  f1: number | null;
  abstained: number;
  unanswerable: number;
  /** Unanswerable cases the system abstained on. */
  correct: number;
}

/**
 * Abstention precision and recall: the system abstains when its answer says the corpus does not answer
 * (`ChatResult.answered === false`).
 */
export function abstentionScores({
  outcomes,
}: {
  outcomes: readonly { unanswerable: boolean; abstained: boolean }[];
}): AbstentionScores {
  const abstained = outcomes.filter((outcome) => outcome.abstained).length;
  const unanswerable = outcomes.filter((outcome) => outcome.unanswerable).length;
  const correct = outcomes.filter((outcome) => outcome.abstained && outcome.unanswerable).length;
  const precision = abstained === 0 ? null : correct / abstained;
  const recall = unanswerable === 0 ? null : correct / unanswerable;
  const f1 =
    precision === null || recall === null || precision + recall === 0
      ? null
      : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1, abstained, unanswerable, correct };
}

/** LLM token use over a run. */
export interface TokenUsageSummary {
  /** Answers scored. */
  turns: number;
  /** Answers that reported token counts (written by an LLM). */
  llmTurns: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Mean prompt + completion tokens per LLM turn; 0 when none. */
  meanTokensPerLlmTurn: number;
}

/** Sums the token counts the answers report. */
export function summarizeTokenUsage({
  results,
}: {
  results: readonly Pick<ChatResult, "usage">[];
}): TokenUsageSummary {
  let llmTurns = 0;
  let promptTokens = 0;
  let completionTokens = 0;
  for (const result of results) {
    if (result.usage === undefined) continue;
    llmTurns += 1;
    promptTokens += result.usage.promptTokens;
    completionTokens += result.usage.completionTokens;
  }
  const totalTokens = promptTokens + completionTokens;
  return {
    turns: results.length,
    llmTurns,
    promptTokens,
    completionTokens,
    totalTokens,
    meanTokensPerLlmTurn: llmTurns === 0 ? 0 : totalTokens / llmTurns,
  };
}

/** What an answer case expects. */
export interface AnswerExpectation {
  /** Reference answers; empty when only evidence is checked or the case is unanswerable. */
  references: readonly string[];
  expectedIds?: readonly string[];
  expectedSegments?: readonly SegmentRef[];
  unanswerable: boolean;
}

/** Every per-answer score of one case; null where the case gives nothing to compare with. */
export interface AnswerCaseScores {
  exactMatch: boolean | null;
  containsAnswer: boolean | null;
  citations: CitationScores;
  groundedness: number | null;
  abstained: boolean;
  /** Abstained on an unanswerable case, or answered an answerable one. */
  abstentionCorrect: boolean;
}

/**
 * Scores one chat answer against its case. Answers are compared only on answerable cases with
 * references; a runner averages the non-null values and feeds `abstained` to {@link abstentionScores}.
 */
export function scoreAnswer({
  result,
  expectation,
  minIoU = SEGMENT_HIT_IOU,
}: {
  result: Pick<ChatResult, "answer" | "answered" | "citations" | "evidence" | "verification">;
  expectation: AnswerExpectation;
  minIoU?: number;
}): AnswerCaseScores {
  const compare = !expectation.unanswerable && expectation.references.length > 0;
  const references = expectation.references;
  const abstained = !result.answered;
  return {
    exactMatch: compare ? exactMatch({ answer: result.answer, references }) : null,
    containsAnswer: compare ? containsAnswer({ answer: result.answer, references }) : null,
    citations: citationScores({
      cited: citedItems(result),
      ...(expectation.expectedIds === undefined ? {} : { expectedIds: expectation.expectedIds }),
      ...(expectation.expectedSegments === undefined
        ? {}
        : { expectedSegments: expectation.expectedSegments }),
      minIoU,
    }),
    groundedness: groundedness(result.verification),
    abstained,
    abstentionCorrect: abstained === expectation.unanswerable,
  };
}

/** Mean of the values that are not null, with how many there were; null mean when there are none. */
export function meanOfDefined(values: readonly (number | boolean | null)[]): {
  mean: number | null;
  count: number;
} {
  const defined = values.filter((value): value is number | boolean => value !== null);
  if (defined.length === 0) return { mean: null, count: 0 };
  return {
    mean: defined.reduce((sum: number, value) => sum + Number(value), 0) / defined.length,
    count: defined.length,
  };
}
