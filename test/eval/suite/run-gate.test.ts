/**
 * The baseline gate: which drops fail, the tolerance edge, missing figures, warnings on runs that are not
 * comparable, the terminal report, and reading a baseline file.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import { baselineOf } from "../../../src/eval/suite/cli.ts";
import {
  compareToBaseline,
  formatDelta,
  formatGateReport,
  GATED_METRICS,
  readResults,
} from "../../../src/eval/suite/gate.ts";
import { RESULTS_FORMAT, type RunResults } from "../../../src/eval/suite/results.ts";
import { summarizeRun } from "../../../src/eval/suite/score.ts";

function runWith(figures: Record<string, number | null>, meta: Partial<RunResults["meta"]> = {}): RunResults {
  return {
    format: RESULTS_FORMAT,
    meta: {
      suite: "shapes-ci",
      format: "shapes-world",
      source: "/somewhere",
      seed: 777001,
      target: "in-process",
      composer: "offline",
      date: "2026-01-01T00:00:00.000Z",
      corpus: { images: 1, videos: 0, triples: 0 },
      ingestFailures: [],
      durations: { ingestSeconds: 1, casesSeconds: 1, totalSeconds: 2 },
      ...meta,
    },
    summary: { ...summarizeRun({ records: [] }), figures },
    cases: [],
  };
}

const healthy = {
  "vqa.accuracy": 0.7,
  "retrieval.text-to-image.recallAt10": 0.9,
  "retrieval.image-to-image.recallAt1": 1,
  "retrieval.text-to-video-segment.recallAt5": 0.8,
  "answers.contains": 0.6,
  "answers.citationRecall": 0.7,
  "abstention.recall": 1,
  "triples.reuse": 0.95,
  "detection.ap50": 0.95,
  "detection.counting": 0.96,
  "regions.recallAt1": 0.85,
  "latency.total.p50": 300,
};

describe("compareToBaseline", () => {
  it("passes identical runs and lists every gated metric first", () => {
    const outcome = compareToBaseline({ current: runWith(healthy), baseline: runWith(healthy) });
    expect(outcome.passed).toBe(true);
    expect(outcome.failures).toEqual([]);
    // Figures gated for other suites only (the screens suites') are not rows of a shapes-ci run.
    const forShapes = GATED_METRICS.filter((gate) => gate.suites === undefined);
    expect(forShapes.length).toBeLessThan(GATED_METRICS.length);
    expect(outcome.rows.slice(0, forShapes.length).map((row) => row.metric)).toEqual(
      forShapes.map((gate) => gate.metric),
    );
    expect(outcome.rows.some((row) => row.metric.startsWith("ocr."))).toBe(false);
    expect(outcome.rows.every((row) => row.delta === 0)).toBe(true);
  });

  it("fails a gated metric that drops by more than its tolerance and names it", () => {
    const outcome = compareToBaseline({
      current: runWith({ ...healthy, "vqa.accuracy": 0.66, "answers.contains": 0.56 }),
      baseline: runWith(healthy),
    });
    expect(outcome.passed).toBe(false);
    expect(outcome.failures.map((row) => row.metric)).toEqual(["vqa.accuracy"]);
    expect(outcome.failures[0]?.delta).toBeCloseTo(-0.04, 9);
    const report = formatGateReport(outcome);
    expect(report).toContain(
      "gate: FAILED: VQA overall accuracy (vqa.accuracy) dropped -0.040 (tolerance -0.03)",
    );
  });

  it("passes a drop exactly at the tolerance and any rise", () => {
    const outcome = compareToBaseline({
      current: runWith({ ...healthy, "vqa.accuracy": 0.67, "triples.reuse": 0.85, "abstention.recall": 1 }),
      baseline: runWith(healthy),
    });
    expect(outcome.passed).toBe(true);
    expect(formatGateReport(outcome)).toContain("gate: passed");
  });

  it("never gates latency, however much it grows", () => {
    const outcome = compareToBaseline({
      current: runWith({ ...healthy, "latency.total.p50": 30_000 }),
      baseline: runWith(healthy),
    });
    expect(outcome.passed).toBe(true);
    const row = outcome.rows.find((entry) => entry.metric === "latency.total.p50");
    expect(row?.status).toBe("info");
    expect(row?.tolerance).toBeUndefined();
  });

  it("fails a gated metric the baseline has and this run lacks; a new one passes", () => {
    const { "triples.reuse": _dropped, ...withoutTriples } = healthy;
    const missing = compareToBaseline({ current: runWith(withoutTriples), baseline: runWith(healthy) });
    expect(missing.failures.map((row) => row.metric)).toEqual(["triples.reuse"]);
    expect(formatGateReport(missing)).toContain("triple reuse rate (triples.reuse) is missing from this run");
    const added = compareToBaseline({ current: runWith(healthy), baseline: runWith(withoutTriples) });
    expect(added.passed).toBe(true);
    expect(added.rows.find((row) => row.metric === "triples.reuse")?.status).toBe("new");
  });

  it("warns when the runs differ in suite, seed or composer", () => {
    const outcome = compareToBaseline({
      current: runWith(healthy, { seed: 1, composer: "auto" }),
      baseline: runWith(healthy),
    });
    expect(outcome.warnings).toHaveLength(2);
    expect(outcome.warnings[0]).toContain("seed is 777001 but this run's is 1");
  });

  it("formats deltas with a sign", () => {
    expect(formatDelta(0.0123)).toBe("+0.012");
    expect(formatDelta(-0.05)).toBe("-0.050");
    expect(formatDelta(-0.0001)).toBe("+0.000");
    expect(formatDelta(null)).toBe("–");
  });
});

describe("baselineOf", () => {
  it("keeps figures without latency, local paths or dates", () => {
    const baseline = baselineOf(runWith(healthy, { gitCommit: "abc" }));
    expect(baseline.summary.figures["latency.total.p50"]).toBeUndefined();
    expect(baseline.summary.figures["vqa.accuracy"]).toBe(0.7);
    expect(baseline.meta.source).toBe("");
    expect(baseline.meta.date).toBe("");
    expect("gitCommit" in baseline.meta).toBe(false);
    expect("cases" in baseline).toBe(false);
  });
});

describe("readResults", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-gate-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a baseline written by baselineOf", async () => {
    const file = path.join(dir, "baseline.json");
    await writeFile(file, JSON.stringify(baselineOf(runWith(healthy))));
    const read = await readResults({ file });
    expect(read.summary.figures["answers.contains"]).toBe(0.6);
  });

  it("refuses a missing file, bad JSON and JSON of another kind, naming the file", async () => {
    await expect(readResults({ file: path.join(dir, "nope.json") })).rejects.toThrow(
      /nope\.json cannot be read/,
    );
    const bad = path.join(dir, "bad.json");
    await writeFile(bad, "{not json");
    await expect(readResults({ file: bad })).rejects.toThrow(ValidationError);
    const other = path.join(dir, "other.json");
    await writeFile(other, JSON.stringify({ summary: {} }));
    await expect(readResults({ file: other })).rejects.toThrow(/is not an eval results file/);
  });
});
