/**
 * The baseline gate: a run's figures against a committed `results.json`. The gated figures and how far
 * each may move the wrong way are declared once, in {@link GATED_METRICS}; figures are higher-is-better
 * unless marked `lowerIsBetter` (error rates), and a figure may be gated for some suites only. Latency is
 * reported but never gated: machines are noisy.
 *
 * A gated figure absent from both runs (a pack without a detection head has no detection or region
 * figures) is an `info` row; one the baseline has and this run lacks fails.
 */
import { readFile } from "node:fs/promises";
import { ValidationError } from "../../errors.ts";
import { RESULTS_FORMAT, type RunResults } from "./results.ts";

/** A gated figure: its flat name in `summary.figures`, what it means, and the drop allowed. */
export interface GatedMetric {
  metric: string;
  label: string;
  /** Largest drop (baseline − current; current − baseline when lower is better) that still passes, in the figure's units (0–1). */
  tolerance: number;
  /** An error rate: a rise is a regression. */
  lowerIsBetter?: boolean;
  /** The suites the figure is gated for, by name or format; every suite when absent. */
  suites?: readonly string[];
}

/** Screenshot figures are gated for the named screens suites and any Screens World folder. */
const SCREENS_SUITES = ["screens-ci", "screens-dev", "screens"] as const;

/** Detection and region figures are gated for the named Shapes World suites and any Shapes World split. */
const SHAPES_SUITES = ["shapes-ci", "shapes-dev", "shapes-world"] as const;

/** The figures the gate holds a change to. */
export const GATED_METRICS: readonly GatedMetric[] = [
  { metric: "vqa.accuracy", label: "VQA overall accuracy", tolerance: 0.03 },
  { metric: "retrieval.text-to-image.recallAt10", label: "text→image Recall@10", tolerance: 0.03 },
  { metric: "retrieval.image-to-image.recallAt1", label: "image→image Recall@1", tolerance: 0.05 },
  {
    metric: "retrieval.text-to-video-segment.recallAt5",
    label: "text→video segment Recall@5 (IoU ≥ 0.5)",
    tolerance: 0.1,
  },
  { metric: "answers.contains", label: "answer contains-rate", tolerance: 0.05 },
  { metric: "answers.citationRecall", label: "citation recall", tolerance: 0.05 },
  { metric: "abstention.recall", label: "abstention recall", tolerance: 0.1 },
  { metric: "triples.reuse", label: "triple reuse rate", tolerance: 0.1 },
  {
    metric: "ocr.cer.latin12",
    label: "OCR CER, English ≥ 12 px",
    tolerance: 0.01,
    lowerIsBetter: true,
    suites: SCREENS_SUITES,
  },
  {
    metric: "ocr.cer.cjk",
    label: "OCR CER, Chinese",
    tolerance: 0.02,
    lowerIsBetter: true,
    suites: SCREENS_SUITES,
  },
  {
    metric: "search.hybrid.code.recallAt1",
    label: "hybrid search R@1, error codes",
    tolerance: 0.04,
    suites: SCREENS_SUITES,
  },
  {
    metric: "search.hybrid.phrase.recallAt1",
    label: "hybrid search R@1, quoted phrases",
    tolerance: 0.07,
    suites: SCREENS_SUITES,
  },
  {
    metric: "search.hybrid.recallAt5",
    label: "hybrid search R@5, all queries",
    tolerance: 0.04,
    suites: SCREENS_SUITES,
  },
  {
    metric: "textAnswers.accuracy",
    label: "answers read off screenshots",
    tolerance: 0.07,
    suites: SCREENS_SUITES,
  },
  { metric: "detection.ap50", label: "detection AP@0.5", tolerance: 0.03, suites: SHAPES_SUITES },
  {
    metric: "detection.counting",
    label: "counting from detections",
    tolerance: 0.03,
    suites: SHAPES_SUITES,
  },
  {
    metric: "regions.recallAt1",
    label: "text→region Recall@1 (IoU ≥ 0.5)",
    tolerance: 0.05,
    suites: SHAPES_SUITES,
  },
];

/** One row of the comparison. */
export interface MetricDelta {
  metric: string;
  label: string;
  baseline: number | null;
  current: number | null;
  /** current − baseline; null when either is missing. */
  delta: number | null;
  /** The drop allowed (the rise, when lower is better), for gated figures. */
  tolerance?: number;
  lowerIsBetter?: boolean;
  /** `fail`: a gated figure dropped by more than its tolerance, or is missing from this run. */
  status: "pass" | "fail" | "info" | "new" | "missing";
}

/** What {@link compareToBaseline} found. */
export interface GateOutcome {
  rows: MetricDelta[];
  /** The gated rows that failed. */
  failures: MetricDelta[];
  passed: boolean;
  /** Why the two runs may not be comparable (another suite, seed or composer). */
  warnings: string[];
}

/** Slack for float noise: a drop exactly at the tolerance passes. */
const EPSILON = 1e-9;

/**
 * Compares a run with a baseline: every figure of either gets a row (gated figures first); a gated figure
 * fails when it dropped by more than its tolerance or this run lacks it while the baseline has it.
 */
export function compareToBaseline({
  current,
  baseline,
  gated = GATED_METRICS,
}: {
  current: Pick<RunResults, "meta" | "summary">;
  baseline: Pick<RunResults, "meta" | "summary">;
  gated?: readonly GatedMetric[];
}): GateOutcome {
  const rows: MetricDelta[] = [];
  const now = current.summary.figures;
  const then = baseline.summary.figures;
  const applicable = gated.filter(
    (gate) =>
      gate.suites === undefined ||
      gate.suites.includes(current.meta.suite) ||
      gate.suites.includes(current.meta.format),
  );
  for (const gate of applicable) {
    const before = then[gate.metric] ?? null;
    const after = now[gate.metric] ?? null;
    const delta = before === null || after === null ? null : after - before;
    let status: MetricDelta["status"];
    if (before === null) status = after === null ? "info" : "new";
    else if (after === null) status = "fail";
    else {
      const worse = gate.lowerIsBetter === true ? after - before : before - after;
      status = worse > gate.tolerance + EPSILON ? "fail" : "pass";
    }
    rows.push({
      metric: gate.metric,
      label: gate.label,
      baseline: before,
      current: after,
      delta,
      tolerance: gate.tolerance,
      ...(gate.lowerIsBetter === true ? { lowerIsBetter: true } : {}),
      status,
    });
  }
  const gatedNames = new Set(applicable.map((gate) => gate.metric));
  const names = [...new Set([...Object.keys(then), ...Object.keys(now)])].filter(
    (name) => !gatedNames.has(name),
  );
  for (const name of names.sort()) {
    const before = then[name] ?? null;
    const after = now[name] ?? null;
    rows.push({
      metric: name,
      label: name,
      baseline: before,
      current: after,
      delta: before === null || after === null ? null : after - before,
      status:
        before === null && after !== null ? "new" : after === null && before !== null ? "missing" : "info",
    });
  }
  const warnings: string[] = [];
  for (const field of ["suite", "seed", "composer"] as const) {
    const before = baseline.meta[field];
    const after = current.meta[field];
    if (before !== after) {
      warnings.push(
        `The baseline's ${field} is ${JSON.stringify(before)} but this run's is ${JSON.stringify(after)}; the figures may not be comparable.`,
      );
    }
  }
  const failures = rows.filter((row) => row.status === "fail");
  return { rows, failures, passed: failures.length === 0, warnings };
}

/** Reads a `results.json` to compare with; a file of another kind is a ValidationError naming it. */
export async function readResults({ file }: { file: string }): Promise<RunResults> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ValidationError(
      `Baseline ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? "error"}); give the path of a results.json an eval run wrote.`,
      {
        cause: error,
        context: { file },
      },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (error) {
    throw new ValidationError(`Baseline ${file} is not valid JSON (${(error as Error).message}).`, {
      cause: error,
      context: { file },
    });
  }
  const results = value as Partial<RunResults> | null;
  if (
    results === null ||
    typeof results !== "object" ||
    results.format !== RESULTS_FORMAT ||
    typeof results.summary?.figures !== "object" ||
    typeof results.meta !== "object"
  ) {
    throw new ValidationError(
      `Baseline ${file} is not an eval results file (expected "format": "${RESULTS_FORMAT}" with meta and summary.figures); give a results.json an eval run wrote.`,
      { context: { file } },
    );
  }
  return results as RunResults;
}

const formatValue = (value: number | null) => (value === null ? "–" : value.toFixed(3));

/** The delta of a row as text, signed (`+0.012`, `-0.050`, `–`). */
export function formatDelta(delta: number | null): string {
  if (delta === null) return "–";
  const rounded = Math.abs(delta) < 0.0005 ? 0 : delta;
  return `${rounded >= 0 ? "+" : ""}${rounded.toFixed(3)}`;
}

/** The gate's outcome as plain text for a terminal: gated rows, then what failed and why. */
export function formatGateReport(outcome: GateOutcome): string {
  const lines = [
    "metric                                        baseline  current   delta  tolerance  status",
  ];
  for (const row of outcome.rows.filter((entry) => entry.tolerance !== undefined)) {
    lines.push(
      `${row.label.padEnd(44)}  ${formatValue(row.baseline).padStart(8)}  ${formatValue(row.current).padStart(7)}  ${formatDelta(row.delta).padStart(6)}  ${(row.tolerance === undefined ? "" : `${row.lowerIsBetter ? "+" : "-"}${row.tolerance.toFixed(2)}`).padStart(9)}  ${row.status}`,
    );
  }
  for (const warning of outcome.warnings) lines.push(`warning: ${warning}`);
  if (outcome.passed) lines.push("gate: passed (no gated metric dropped by more than its tolerance)");
  else {
    lines.push(
      `gate: FAILED: ${outcome.failures
        .map((row) =>
          row.current === null
            ? `${row.label} (${row.metric}) is missing from this run`
            : `${row.label} (${row.metric}) ${row.lowerIsBetter ? "rose" : "dropped"} ${formatDelta(row.delta)} (tolerance ${row.lowerIsBetter ? "+" : "-"}${row.tolerance?.toFixed(2)})`,
        )
        .join("; ")}`,
    );
  }
  return lines.join("\n");
}
