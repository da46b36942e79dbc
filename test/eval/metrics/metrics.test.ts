/** Metric code of the evals against hand-computed values. */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import {
  accuracyByType,
  chancePrecision,
  chanceRecallAtK,
  precisionAtK,
  rankGallery,
  recallAtK,
  topKIndices,
} from "../../../src/eval/metrics/metrics.ts";

describe("topKIndices", () => {
  it("returns the best k indices, best first, ties to the lower index", () => {
    expect(topKIndices({ scores: [0.1, 0.9, 0.5, 0.9, -1], k: 3 })).toEqual([1, 3, 2]);
    expect(topKIndices({ scores: [0.2, 0.2, 0.2], k: 2 })).toEqual([0, 1]);
    expect(topKIndices({ scores: [3, 1], k: 5 })).toEqual([0, 1]);
  });

  it("rejects k below 1", () => {
    expect(() => topKIndices({ scores: [1], k: 0 })).toThrow(ValidationError);
  });
});

describe("rankGallery", () => {
  it("ranks gallery vectors by dot product with each query", () => {
    const gallery = [
      new Float32Array([1, 0]),
      new Float32Array([0, 1]),
      new Float32Array([Math.SQRT1_2, Math.SQRT1_2]),
    ];
    const queries = [new Float32Array([1, 0]), new Float32Array([0, 1]), new Float32Array([-1, 0])];
    expect(rankGallery({ queries, gallery, k: 3 })).toEqual([
      [0, 2, 1],
      [1, 2, 0],
      [1, 2, 0],
    ]);
  });
});

describe("recallAtK and precisionAtK", () => {
  // Three queries over a gallery of six; rankings and relevant sets chosen by hand.
  const ranked = [
    [4, 1, 0, 2, 3],
    [5, 3, 2, 1, 0],
    [0, 1, 2, 3, 4],
  ];
  const relevant = [new Set([1, 2]), new Set([0]), new Set([5])];

  it("Recall@k is the share of queries with a relevant item in the top k", () => {
    // Query 0 hits at rank 2, query 1 at rank 5, query 2 never.
    expect(recallAtK({ ranked, relevant, k: 1 })).toBe(0);
    expect(recallAtK({ ranked, relevant, k: 2 })).toBeCloseTo(1 / 3, 12);
    expect(recallAtK({ ranked, relevant, k: 4 })).toBeCloseTo(1 / 3, 12);
    expect(recallAtK({ ranked, relevant, k: 5 })).toBeCloseTo(2 / 3, 12);
  });

  it("Precision@k averages the share of relevant items among the top k", () => {
    // k=4: query 0 has 1 and 2 → 2/4; query 1 none → 0; query 2 none → 0. Mean 1/6.
    expect(precisionAtK({ ranked, relevant, k: 4 })).toBeCloseTo(1 / 6, 12);
    // k=5: 2/5, 1/5, 0 → mean 1/5.
    expect(precisionAtK({ ranked, relevant, k: 5 })).toBeCloseTo(1 / 5, 12);
    // Missing results count as misses: k=10 over 5 results: 2/10, 1/10, 0 → 1/10.
    expect(precisionAtK({ ranked, relevant, k: 10 })).toBeCloseTo(1 / 10, 12);
  });

  it("takes relevance as a predicate too", () => {
    const even = (index: number): boolean => index % 2 === 0;
    expect(recallAtK({ ranked: [[1, 3, 4]], relevant: [even], k: 2 })).toBe(0);
    expect(recallAtK({ ranked: [[1, 3, 4]], relevant: [even], k: 3 })).toBe(1);
    expect(precisionAtK({ ranked: [[1, 3, 4]], relevant: [even], k: 3 })).toBeCloseTo(1 / 3, 12);
  });

  it("is 0 without queries and refuses mismatched inputs", () => {
    expect(recallAtK({ ranked: [], relevant: [], k: 1 })).toBe(0);
    expect(precisionAtK({ ranked: [], relevant: [], k: 1 })).toBe(0);
    expect(() => recallAtK({ ranked, relevant: relevant.slice(1), k: 1 })).toThrow(/3 rankings but 2/);
  });
});

describe("accuracyByType", () => {
  it("gives overall and per-type accuracy with counts", () => {
    const results = [
      { type: "color", correct: true },
      { type: "color", correct: false },
      { type: "color", correct: true },
      { type: "count", correct: false },
      { type: "exist", correct: true },
    ] as const;
    const { overall, byType } = accuracyByType({ results, types: ["color", "count", "exist", "size"] });
    expect(overall).toEqual({ accuracy: 3 / 5, count: 5 });
    expect(byType.color.accuracy).toBeCloseTo(2 / 3, 12);
    expect(byType.color.count).toBe(3);
    expect(byType.count).toEqual({ accuracy: 0, count: 1 });
    expect(byType.exist).toEqual({ accuracy: 1, count: 1 });
    expect(byType.size).toEqual({ accuracy: 0, count: 0 });
    expect(Object.keys(byType)).toEqual(["color", "count", "exist", "size"]);
  });
});

describe("chance levels", () => {
  it("Recall@k of a random ranking: 1 − C(n−r, k)/C(n, k)", () => {
    // n = 5, r = 1, k = 2: 1 − C(4,2)/C(5,2) = 1 − 6/10 = 0.4. r = 2: 1 − C(3,2)/C(5,2) = 0.7.
    expect(chanceRecallAtK({ relevantCounts: [1], gallerySize: 5, k: 2 })).toBeCloseTo(0.4, 12);
    expect(chanceRecallAtK({ relevantCounts: [1, 2], gallerySize: 5, k: 2 })).toBeCloseTo(0.55, 12);
    // k = 1 is r/n; a query whose irrelevant items cannot fill the top k always hits.
    expect(chanceRecallAtK({ relevantCounts: [3], gallerySize: 1000, k: 1 })).toBeCloseTo(0.003, 12);
    expect(chanceRecallAtK({ relevantCounts: [4], gallerySize: 5, k: 2 })).toBe(1);
  });

  it("Precision of a random ranking is the mean share of relevant items", () => {
    expect(chancePrecision({ relevantCounts: [10, 30], gallerySize: 100 })).toBeCloseTo(0.2, 12);
    expect(chancePrecision({ relevantCounts: [], gallerySize: 100 })).toBe(0);
  });
});
