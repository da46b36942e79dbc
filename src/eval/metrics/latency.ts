/**
 * Latency percentiles of eval runs, per step (embed, retrieve, ground, compose, verify, total of a chat
 * turn, or whatever steps a runner times).
 *
 * Percentiles use the nearest-rank method by default: the p-th percentile of n sorted values is the value
 * at rank ⌈p/100 · n⌉, so every reported figure is a latency that was actually observed and p95 of fewer
 * than 20 runs is the slowest one. `linear` interpolates between neighbours instead (NumPy's default,
 * `(n − 1) · p/100`), for comparison with tools that use it.
 */
import { ValidationError } from "../../errors.ts";

/** How a percentile is read from the sorted values. */
export type PercentileMethod = "nearest-rank" | "linear";

/**
 * The `p`-th percentile (0–100) of `values`.
 *
 * @example percentile({ values: [5, 1, 4, 2, 3], p: 50 }) // 3
 * @throws ValidationError for no values, a non-finite value or `p` outside 0–100.
 */
export function percentile({
  values,
  p,
  method = "nearest-rank",
}: {
  values: readonly number[];
  p: number;
  method?: PercentileMethod;
}): number {
  if (!Number.isFinite(p) || p < 0 || p > 100) {
    throw new ValidationError(`Percentile must be a number from 0 to 100, got ${p}.`, { context: { p } });
  }
  if (values.length === 0) {
    throw new ValidationError("A percentile needs at least one value, got none.");
  }
  const bad = values.find((value) => !Number.isFinite(value));
  if (bad !== undefined) {
    throw new ValidationError(`Latencies must be finite numbers, got ${bad}.`, { context: { value: bad } });
  }
  const sorted = [...values].sort((left, right) => left - right);
  if (method === "nearest-rank") {
    const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
    return sorted[rank - 1] as number;
  }
  const position = (p / 100) * (sorted.length - 1);
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const low = sorted[lower] as number;
  return low + ((sorted[upper] as number) - low) * (position - lower);
}

/** Latency figures of one step, in the unit of the samples (milliseconds for chat timings). */
export interface LatencyFigures {
  count: number;
  p50: number;
  p95: number;
  mean: number;
  max: number;
}

/**
 * p50, p95, mean and max of each step over many runs. A run without a figure for a step (a step that did
 * not run) is left out of that step only. Steps come out in first-seen order.
 *
 * @example summarizeLatency({ samples: results.map((result) => result.timings) })
 */
export function summarizeLatency({
  samples,
  method = "nearest-rank",
}: {
  samples: readonly Readonly<Partial<Record<string, number>>>[];
  method?: PercentileMethod;
}): Record<string, LatencyFigures> {
  const byStep = new Map<string, number[]>();
  for (const sample of samples) {
    for (const [step, value] of Object.entries(sample)) {
      if (value === undefined) continue;
      const values = byStep.get(step) ?? [];
      values.push(value);
      byStep.set(step, values);
    }
  }
  const figures: Record<string, LatencyFigures> = {};
  for (const [step, values] of byStep) {
    figures[step] = {
      count: values.length,
      p50: percentile({ values, p: 50, method }),
      p95: percentile({ values, p: 95, method }),
      mean: values.reduce((sum, value) => sum + value, 0) / values.length,
      max: values.reduce((most, value) => Math.max(most, value), Number.NEGATIVE_INFINITY),
    };
  }
  return figures;
}
