/**
 * Retrieval figures of eval suites on top of {@link recallAtK}, {@link meanReciprocalRank} and
 * {@link ndcgAtK}: one summary per task (Recall@1/5/10, MRR, nDCG@10), temporal IoU and segment hits for
 * text→video-segment retrieval, and the triple reuse rate.
 */
import { ValidationError } from "../../errors.ts";
import { binaryRelevance, type GradedRelevance, meanReciprocalRank, ndcgAtK, recallAtK } from "./metrics.ts";

/** A span of time in seconds, `start` ≤ `end`. */
export interface TimeSpan {
  start: number;
  end: number;
}

/** A span of one video. */
export interface SegmentRef extends TimeSpan {
  videoId: string;
}

/** The IoU a predicted segment needs with an expected one to count as a hit. */
export const SEGMENT_HIT_IOU = 0.5;

/**
 * Slack on the IoU threshold: times in seconds come through float arithmetic (frame counts / fps), and
 * 0.49999999999999994 must not miss where the exact value is 0.5.
 */
const IOU_TOLERANCE = 1e-9;

function checkSpan(span: TimeSpan, name: string): void {
  if (!Number.isFinite(span.start) || !Number.isFinite(span.end) || span.end < span.start) {
    throw new ValidationError(
      `${name} span [${span.start}, ${span.end}] is not valid; give finite seconds with start ≤ end.`,
      { context: { span } },
    );
  }
}

/**
 * Temporal IoU of two spans: overlap / union, in [0, 1]. Spans that only touch overlap by 0. A zero-length
 * span has IoU 0 with everything, itself included: it covers no time to agree on.
 *
 * @throws ValidationError for a span with `end` < `start` or non-finite times.
 */
export function temporalIoU(left: TimeSpan, right: TimeSpan): number {
  checkSpan(left, "First");
  checkSpan(right, "Second");
  const overlap = Math.max(0, Math.min(left.end, right.end) - Math.max(left.start, right.start));
  const union = left.end - left.start + (right.end - right.start) - overlap;
  return union <= 0 ? 0 : overlap / union;
}

/** Whether a predicted segment hits an expected one: the same video and temporal IoU ≥ `minIoU` (0.5). */
export function isSegmentHit({
  predicted,
  expected,
  minIoU = SEGMENT_HIT_IOU,
}: {
  predicted: SegmentRef;
  expected: SegmentRef;
  minIoU?: number;
}): boolean {
  return predicted.videoId === expected.videoId && temporalIoU(predicted, expected) >= minIoU - IOU_TOLERANCE;
}

/**
 * One-to-one matching of predicted segments to expected ones, in predicted order: each predicted segment
 * takes the unmatched expected segment it overlaps most among those it hits. Earlier predictions win, as
 * a ranking's earlier results do. Returns, per predicted segment, the index of its expected segment or -1.
 */
export function matchSegments({
  predicted,
  expected,
  minIoU = SEGMENT_HIT_IOU,
}: {
  predicted: readonly SegmentRef[];
  expected: readonly SegmentRef[];
  minIoU?: number;
}): number[] {
  const taken = new Set<number>();
  return predicted.map((segment) => {
    let best = -1;
    let bestIoU = -1;
    expected.forEach((candidate, index) => {
      if (taken.has(index) || !isSegmentHit({ predicted: segment, expected: candidate, minIoU })) return;
      const iou = temporalIoU(segment, candidate);
      if (iou > bestIoU) {
        best = index;
        bestIoU = iou;
      }
    });
    if (best >= 0) taken.add(best);
    return best;
  });
}

/**
 * Turns a ranked list of segments into a ranking the generic metrics score: each ranked segment becomes
 * the index of the expected segment it matches (see {@link matchSegments}) or a unique miss, and the
 * relevant set is every expected index. So a segment that repeats a hit scores nothing, and Recall@k,
 * MRR and nDCG@k need temporal IoU ≥ `minIoU`.
 */
export function segmentRanking({
  ranked,
  expected,
  minIoU = SEGMENT_HIT_IOU,
}: {
  ranked: readonly SegmentRef[];
  expected: readonly SegmentRef[];
  minIoU?: number;
}): { ranked: string[]; relevant: Set<string> } {
  const matches = matchSegments({ predicted: ranked, expected, minIoU });
  return {
    ranked: matches.map((match, position) => (match >= 0 ? `expected:${match}` : `miss:${position}`)),
    relevant: new Set(expected.map((_segment, index) => `expected:${index}`)),
  };
}

/** The headline retrieval figures of one task. */
export interface RetrievalSummary {
  /** Queries scored. */
  queries: number;
  recallAt1: number;
  recallAt5: number;
  recallAt10: number;
  /** Mean reciprocal rank over the whole returned list. */
  mrr: number;
  ndcgAt10: number;
}

/**
 * Recall@1/5/10 (a query counts when any relevant item is within the first k), MRR and nDCG@10 of a set
 * of queries. Relevance is binary (a set) or graded (a map to gains; Recall and MRR count any gain > 0).
 */
export function summarizeRetrieval<Item>({
  ranked,
  relevant,
}: {
  ranked: readonly (readonly Item[])[];
  relevant: readonly GradedRelevance<Item>[];
}): RetrievalSummary {
  const binary = relevant.map((relevance) => binaryRelevance(relevance));
  return {
    queries: ranked.length,
    recallAt1: recallAtK({ ranked, relevant: binary, k: 1 }),
    recallAt5: recallAtK({ ranked, relevant: binary, k: 5 }),
    recallAt10: recallAtK({ ranked, relevant: binary, k: 10 }),
    mrr: meanReciprocalRank({ ranked, relevant: binary }),
    ndcgAt10: ndcgAtK({ ranked, relevant, k: 10 }),
  };
}

/** {@link summarizeRetrieval} for text→video-segment queries: a hit needs temporal IoU ≥ `minIoU` (0.5). */
export function summarizeSegmentRetrieval({
  ranked,
  expected,
  minIoU = SEGMENT_HIT_IOU,
}: {
  ranked: readonly (readonly SegmentRef[])[];
  expected: readonly (readonly SegmentRef[])[];
  minIoU?: number;
}): RetrievalSummary {
  if (ranked.length !== expected.length) {
    throw new ValidationError(
      `Got ${ranked.length} segment rankings but ${expected.length} expected segment lists; give one of each per query.`,
    );
  }
  const rankings = ranked.map((row, query) =>
    segmentRanking({ ranked: row, expected: expected[query] ?? [], minIoU }),
  );
  return summarizeRetrieval({
    ranked: rankings.map((ranking) => ranking.ranked),
    relevant: rankings.map((ranking) => ranking.relevant),
  });
}

/** One triple probe: a near-identical image with a paraphrased question, and what Loupe reused for it. */
export interface TripleProbeOutcome {
  /** The stored triple that should answer the probe. */
  expectedTripleId: string;
  /** Triples Loupe reused for the probe (a finding with `source: "triple"`, or the top triple hit). */
  reusedTripleIds: readonly string[];
}

/** Triple reuse figures. */
export interface TripleReuse {
  probes: number;
  /** Share of probes that reused their own triple. */
  rate: number;
  /** Share of probes that reused only other triples (a wrong stored answer may have been given). */
  wrongRate: number;
}

/** How often probes reuse the triple stored for them. 0 rates for no probes. */
export function tripleReuseRate({ probes }: { probes: readonly TripleProbeOutcome[] }): TripleReuse {
  if (probes.length === 0) return { probes: 0, rate: 0, wrongRate: 0 };
  let reused = 0;
  let wrong = 0;
  for (const probe of probes) {
    if (probe.reusedTripleIds.includes(probe.expectedTripleId)) reused += 1;
    else if (probe.reusedTripleIds.length > 0) wrong += 1;
  }
  return { probes: probes.length, rate: reused / probes.length, wrongRate: wrong / probes.length };
}
