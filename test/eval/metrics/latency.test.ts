/** Latency percentiles against hand-computed values. */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import { percentile, summarizeLatency } from "../../../src/eval/metrics/latency.ts";

describe("percentile", () => {
  it("reads the nearest rank ⌈p/100 · n⌉ by default", () => {
    const values = [5, 1, 4, 2, 3];
    expect(percentile({ values, p: 50 })).toBe(3); // rank ⌈2.5⌉ = 3
    expect(percentile({ values, p: 95 })).toBe(5); // rank ⌈4.75⌉ = 5
    expect(percentile({ values, p: 0 })).toBe(1);
    const twenty = Array.from({ length: 20 }, (_v, index) => index + 1);
    expect(percentile({ values: twenty, p: 95 })).toBe(19); // rank ⌈19⌉ = 19
  });

  it("interpolates linearly on request", () => {
    // Position 0.95 · 4 = 3.8: 4 + 0.8 · (5 − 4).
    expect(percentile({ values: [5, 1, 4, 2, 3], p: 95, method: "linear" })).toBeCloseTo(4.8, 12);
    const twenty = Array.from({ length: 20 }, (_v, index) => index + 1);
    expect(percentile({ values: twenty, p: 95, method: "linear" })).toBeCloseTo(19.05, 12);
    expect(percentile({ values: [7], p: 50, method: "linear" })).toBe(7);
  });

  it("rejects no values, bad values and p outside 0–100", () => {
    expect(() => percentile({ values: [], p: 50 })).toThrow(ValidationError);
    expect(() => percentile({ values: [1, Number.NaN], p: 50 })).toThrow(/finite/);
    expect(() => percentile({ values: [1], p: 101 })).toThrow(/0 to 100/);
  });
});

describe("summarizeLatency", () => {
  it("gives p50, p95, mean and max per step, skipping steps a run did not time", () => {
    const figures = summarizeLatency({
      samples: [
        { embed: 10, total: 50 },
        { embed: 30, total: 70, compose: 5 },
      ],
    });
    expect(Object.keys(figures)).toEqual(["embed", "total", "compose"]);
    expect(figures.embed).toEqual({ count: 2, p50: 10, p95: 30, mean: 20, max: 30 });
    expect(figures.compose).toEqual({ count: 1, p50: 5, p95: 5, mean: 5, max: 5 });
  });
});
