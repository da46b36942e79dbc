/** Retrieval metrics of eval suites against hand-computed values. */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import { meanReciprocalRank, ndcgAtK, recallAtK } from "../../../src/eval/metrics/metrics.ts";
import {
  isSegmentHit,
  matchSegments,
  type SegmentRef,
  segmentRanking,
  summarizeRetrieval,
  summarizeSegmentRetrieval,
  temporalIoU,
  tripleReuseRate,
} from "../../../src/eval/metrics/retrieval-metrics.ts";

const span = (start: number, end: number) => ({ start, end });
const seg = (videoId: string, start: number, end: number): SegmentRef => ({ videoId, start, end });

describe("temporalIoU", () => {
  it("is overlap over union", () => {
    // [0,10] ∩ [5,15] = 5; union = 10 + 10 − 5 = 15.
    expect(temporalIoU(span(0, 10), span(5, 15))).toBeCloseTo(1 / 3, 12);
    // Containment: [2,7] inside [0,10]: 5 / 10.
    expect(temporalIoU(span(0, 10), span(2, 7))).toBe(0.5);
    expect(temporalIoU(span(3, 4), span(3, 4))).toBe(1);
  });

  it("gives 0 for spans that only touch or do not meet", () => {
    expect(temporalIoU(span(0, 2), span(2, 4))).toBe(0);
    expect(temporalIoU(span(0, 1), span(5, 6))).toBe(0);
  });

  it("gives 0 for zero-length spans, even identical ones", () => {
    expect(temporalIoU(span(3, 3), span(3, 3))).toBe(0);
    expect(temporalIoU(span(3, 3), span(0, 10))).toBe(0);
  });

  it("rejects reversed and non-finite spans", () => {
    expect(() => temporalIoU(span(5, 4), span(0, 10))).toThrow(ValidationError);
    expect(() => temporalIoU(span(0, 10), span(Number.NaN, 4))).toThrow(/start ≤ end/);
    expect(() => temporalIoU(span(0, Number.POSITIVE_INFINITY), span(0, 4))).toThrow(ValidationError);
  });
});

describe("isSegmentHit", () => {
  it("needs the same video and IoU ≥ 0.5, the boundary included", () => {
    expect(isSegmentHit({ predicted: seg("v", 2, 7), expected: seg("v", 0, 10) })).toBe(true); // 0.5
    expect(isSegmentHit({ predicted: seg("v", 2, 6.9), expected: seg("v", 0, 10) })).toBe(false); // 0.49
    expect(isSegmentHit({ predicted: seg("w", 0, 10), expected: seg("v", 0, 10) })).toBe(false);
    expect(isSegmentHit({ predicted: seg("v", 0, 10), expected: seg("v", 5, 15), minIoU: 0.3 })).toBe(true);
  });

  it("counts a boundary IoU that float arithmetic puts a hair below 0.5", () => {
    // (1.4 − 1.1) / (1.7 − 1.1) is exactly 0.5, but evaluates to 0.49999999999999983 in doubles.
    expect(temporalIoU(span(1.1, 1.7), span(1.1, 1.4))).toBeLessThan(0.5);
    expect(isSegmentHit({ predicted: seg("v", 1.1, 1.4), expected: seg("v", 1.1, 1.7) })).toBe(true);
  });
});

describe("matchSegments", () => {
  it("matches one predicted segment per expected one, earlier predictions first", () => {
    expect(
      matchSegments({ predicted: [seg("v", 0, 2), seg("v", 0, 2.1)], expected: [seg("v", 0, 2)] }),
    ).toEqual([0, -1]);
  });

  it("takes the expected segment with the highest IoU", () => {
    // [2,5] vs [0,4]: 2/5 = 0.4 (miss); vs [2,6]: 3/4 = 0.75.
    expect(
      matchSegments({ predicted: [seg("v", 2, 5)], expected: [seg("v", 0, 4), seg("v", 2, 6)] }),
    ).toEqual([1]);
  });
});

describe("recall, MRR and nDCG over ids", () => {
  const ranked = [["a", "b", "c"], ["x", "y", "z"], ["p"]];
  const relevant = [new Set(["b"]), new Set(["z", "w"]), new Set(["p"])];

  it("gives hand-computed figures", () => {
    expect(recallAtK({ ranked, relevant, k: 1 })).toBeCloseTo(1 / 3, 12);
    expect(recallAtK({ ranked, relevant, k: 5 })).toBe(1);
    // Reciprocal ranks 1/2, 1/3, 1 → 11/18.
    expect(meanReciprocalRank({ ranked, relevant })).toBeCloseTo(11 / 18, 12);
    // Query 1: 1/log2(3) = 0.630930 (ideal 1). Query 2: (1/log2 4) / (1 + 1/log2 3) = 0.5 / 1.630930 = 0.306573.
    // Query 3: 1. Mean = (0.630930 + 0.306573 + 1) / 3 = 0.645834.
    expect(ndcgAtK({ ranked, relevant, k: 10 })).toBeCloseTo(0.645834, 5);
  });

  it("cuts MRR at k when given", () => {
    expect(meanReciprocalRank({ ranked: [["x", "y", "b"]], relevant: [new Set(["b"])], k: 2 })).toBe(0);
    expect(meanReciprocalRank({ ranked: [["x", "y", "b"]], relevant: [new Set(["b"])], k: 3 })).toBeCloseTo(
      1 / 3,
    );
  });

  it("uses graded gains against the ideal ordering of every relevant item", () => {
    const grades = new Map([
      ["a", 1],
      ["b", 3],
      ["c", 0],
      ["d", 2],
    ]);
    // DCG = 1/1 + 3/log2 3 + 0 = 2.892789. Ideal [3, 2, 1]: 3 + 2/log2 3 + 1/2 = 4.761860. → 0.607488.
    expect(ndcgAtK({ ranked: [["a", "b", "c"]], relevant: [grades], k: 10 })).toBeCloseTo(0.607488, 5);
    // At k = 1: 1 / 3.
    expect(ndcgAtK({ ranked: [["a", "b", "c"]], relevant: [grades], k: 1 })).toBeCloseTo(1 / 3, 12);
  });

  it("counts a repeated item once and scores a query with nothing relevant 0", () => {
    expect(ndcgAtK({ ranked: [["a", "a"]], relevant: [new Set(["a"])], k: 10 })).toBe(1);
    expect(ndcgAtK({ ranked: [["a"]], relevant: [new Set<string>()], k: 10 })).toBe(0);
    expect(() => ndcgAtK({ ranked: [["a"]], relevant: [new Map([["a", Number.NaN]])], k: 10 })).toThrow(
      ValidationError,
    );
  });

  it("summarizes R@1/5/10, MRR and nDCG@10 with graded relevance reduced to gain > 0 for recall", () => {
    const summary = summarizeRetrieval({
      ranked: [["c", "a"], ["q"]],
      relevant: [
        new Map([
          ["a", 2],
          ["c", 0],
        ]),
        new Set(["r"]),
      ],
    });
    // Query 1: "c" has gain 0, "a" is the first relevant at rank 2. Query 2: nothing relevant returned.
    expect(summary).toMatchObject({ queries: 2, recallAt1: 0, recallAt5: 0.5, recallAt10: 0.5, mrr: 0.25 });
    // Query 1 nDCG: (2 / log2 3) / 2 = 0.630930; query 2: 0. Mean 0.315465.
    expect(summary.ndcgAt10).toBeCloseTo(0.315465, 5);
  });
});

describe("segment retrieval", () => {
  it("turns a segment ranking into expected-index hits", () => {
    const ranking = segmentRanking({
      ranked: [seg("v", 0, 2), seg("v", 4, 6.5), seg("v", 4, 6)],
      expected: [seg("v", 4, 6)],
    });
    // [4,6.5] hits [4,6] (IoU 0.8) first; the exact [4,6] after it finds the expected segment taken.
    expect(ranking.ranked).toEqual(["miss:0", "expected:0", "miss:2"]);
    expect([...ranking.relevant]).toEqual(["expected:0"]);
  });

  it("summarizes text→segment queries with IoU ≥ 0.5 hits", () => {
    const summary = summarizeSegmentRetrieval({
      ranked: [[seg("v", 0, 2), seg("v", 4, 6.5)], [seg("w", 0, 2)]],
      expected: [[seg("v", 4, 6)], [seg("v", 0, 2)]],
    });
    // Query 1 hits at rank 2 (RR 1/2, nDCG 1/log2 3); query 2 has the right times in another video: miss.
    expect(summary).toMatchObject({ queries: 2, recallAt1: 0, recallAt5: 0.5, mrr: 0.25 });
    expect(summary.ndcgAt10).toBeCloseTo(0.63093 / 2, 5);
    expect(() => summarizeSegmentRetrieval({ ranked: [[]], expected: [] })).toThrow(ValidationError);
  });
});

describe("tripleReuseRate", () => {
  it("counts probes that reused their own triple, and those that reused only others", () => {
    const reuse = tripleReuseRate({
      probes: [
        { expectedTripleId: "t1", reusedTripleIds: ["t1"] },
        { expectedTripleId: "t2", reusedTripleIds: ["t9"] },
        { expectedTripleId: "t3", reusedTripleIds: [] },
        { expectedTripleId: "t4", reusedTripleIds: ["t9", "t4"] },
      ],
    });
    expect(reuse).toEqual({ probes: 4, rate: 0.5, wrongRate: 0.25 });
    expect(tripleReuseRate({ probes: [] })).toEqual({ probes: 0, rate: 0, wrongRate: 0 });
  });
});
