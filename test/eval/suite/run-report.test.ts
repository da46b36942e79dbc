/**
 * Report rendering: hostile text from cases, answers and evidence is escaped in HTML and kept out of
 * Markdown table syntax; the HTML page is self-contained (no scripts, no network) and carries the charts;
 * histogram bins count every value once.
 */
import { describe, expect, it } from "vitest";
import { barChart, escapeHtml, histogramBins, lineChart } from "../../../src/eval/suite/charts.ts";
import { compareToBaseline } from "../../../src/eval/suite/gate.ts";
import { renderHtmlReport } from "../../../src/eval/suite/report-html.ts";
import { markdownCell, renderMarkdownReport } from "../../../src/eval/suite/report-md.ts";
import { type CaseRecord, RESULTS_FORMAT, type RunResults } from "../../../src/eval/suite/results.ts";
import { summarizeRun } from "../../../src/eval/suite/score.ts";

const HOSTILE = `<script>alert("pwned")</script><img src=x onerror=alert(1)> | ' \` &amp;`;

function record(overrides: Partial<CaseRecord>): CaseRecord {
  return {
    id: "case",
    kind: "vqa",
    tags: ["color"],
    input: {},
    expected: {},
    output: {},
    metrics: {},
    passed: true,
    timings: {},
    ...overrides,
  };
}

function sampleResults(): RunResults {
  const records: CaseRecord[] = [
    record({
      id: "vqa-1",
      tags: ["color"],
      input: { question: HOSTILE },
      expected: { answers: ["red"] },
      output: {
        answer: HOSTILE,
        shortAnswer: HOSTILE,
        evidence: [{ id: "att_1", kind: "image", score: 1, text: HOSTILE }],
      },
      metrics: { accuracy: 0, answerContains: false },
      passed: false,
      timings: { embed: 10, retrieve: 20, ground: 5, compose: 1, verify: 3, total: 40 },
      imagePath: "/no/such/image.jpg",
    }),
    record({
      id: "vqa-2",
      tags: ["count"],
      input: { question: "How many circles?" },
      expected: { answers: ["2"] },
      output: { answer: "There are 2 circles [att_1].", shortAnswer: "2" },
      metrics: { accuracy: 1, answerContains: true },
      timings: { embed: 12, retrieve: 25, ground: 6, compose: 1, verify: 4, total: 48 },
    }),
    record({
      id: "t2i-1",
      kind: "retrieval",
      task: "text-to-image",
      tags: ["partial"],
      input: { text: "a red circle" },
      expected: { relevant: ["img-1"] },
      output: { ranked: ["img-2", "img-1"] },
      metrics: { hitAt1: false, hitAt5: true, hitAt10: true, reciprocalRank: 0.5 },
      timings: { search: 30 },
    }),
    record({
      id: "off-1",
      kind: "answer",
      tags: ["unanswerable"],
      input: { question: "Who painted the Mona Lisa?" },
      expected: { unanswerable: true },
      output: { answer: "The corpus does not answer this.", answered: false, citations: [] },
      metrics: {
        abstained: true,
        abstentionCorrect: true,
        citationRecall: null,
        contains: null,
        checkedClaims: 0,
        confirmedClaims: 0,
      },
      timings: { embed: 8, retrieve: 9, ground: 1, compose: 1, verify: 1, total: 20 },
    }),
  ];
  return {
    format: RESULTS_FORMAT,
    meta: {
      suite: HOSTILE,
      format: "loupe-jsonl",
      source: "/suite.jsonl",
      target: "in-process",
      composer: "offline",
      modelPack: "shapes-world-tiny@1",
      date: "2026-01-01T00:00:00.000Z",
      corpus: { images: 2, videos: 0, triples: 0 },
      ingestFailures: [{ kind: "image", id: "bad", message: HOSTILE }],
      durations: { ingestSeconds: 1, casesSeconds: 2, totalSeconds: 3 },
    },
    summary: summarizeRun({ records }),
    cases: records,
  };
}

describe("summarizeRun", () => {
  it("computes the figures the reports and the gate read", () => {
    const { summary } = sampleResults();
    expect(summary.figures["vqa.accuracy"]).toBe(0.5);
    expect(summary.figures["vqa.accuracy.count"]).toBe(1);
    expect(summary.figures["retrieval.text-to-image.recallAt1"]).toBe(0);
    expect(summary.figures["retrieval.text-to-image.recallAt5"]).toBe(1);
    expect(summary.figures["retrieval.text-to-image.mrr"]).toBe(0.5);
    expect(summary.retrieval["text-to-image"]?.curve.map((point) => point.recall)).toEqual([
      0, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ]);
    expect(summary.figures["abstention.recall"]).toBe(1);
    expect(summary.latency.total?.count).toBe(3);
    expect(summary.latency.search?.p50).toBe(30);
  });
});

describe("renderHtmlReport", () => {
  const results = sampleResults();
  const html = renderHtmlReport({
    results,
    gate: compareToBaseline({ current: results, baseline: results }),
    thumbnails: new Map([["/no/such/image.jpg", "data:image/jpeg;base64,AAAA"]]),
  });

  it("escapes every string from the suite, cases, answers and evidence", () => {
    expect(html).not.toContain("<script>");
    expect(html).not.toContain("<img src=x");
    expect(html).not.toContain('alert("pwned")');
    expect(html).toContain("&#60;script&#62;alert(&#34;pwned&#34;)&#60;/script&#62;");
    expect(html).toContain("&#38;amp;");
  });

  it("is self-contained: no scripts, no external resources, a policy forbidding both", () => {
    expect(html).toMatch(/Content-Security-Policy" content="default-src 'none'; img-src data:/);
    expect(html).not.toMatch(/<script|src="http|href="http|<link/i);
  });

  it("carries the VQA bars, recall curves, latency histograms and the failures with thumbnails", () => {
    expect(html).toContain('aria-label="VQA accuracy per question type"');
    expect(html).toContain('aria-label="Recall@k"');
    for (const step of ["embed", "retrieve", "ground", "verify", "total", "search"]) {
      expect(html).toContain(`aria-label="${step}"`);
    }
    expect(html).toContain("Failures (1 of 4)");
    expect(html).toContain('<img class="thumb" alt="" src="data:image/jpeg;base64,AAAA">');
    expect(html).toContain("Gate passed.");
  });
});

describe("renderMarkdownReport", () => {
  it("keeps hostile text out of table syntax and lists failures and deltas", () => {
    const results = sampleResults();
    const worse = {
      ...results,
      summary: { ...results.summary, figures: { ...results.summary.figures, "vqa.accuracy": 0.2 } },
    };
    const markdown = renderMarkdownReport({
      results: worse,
      gate: compareToBaseline({ current: worse, baseline: results }),
    });
    expect(markdown).toContain("\\<script\\>");
    expect(markdown).not.toContain("<script>");
    expect(markdown).toContain("| VQA overall accuracy | 0.500 | 0.200 | -0.300 | -0.03 | **FAIL** |");
    expect(markdown).toContain("## Failures (1)");
    for (const line of markdown.split("\n").filter((entry) => entry.startsWith("| vqa-1"))) {
      expect(line.split(/(?<!\\)\|/u)).toHaveLength(6);
    }
  });

  it("escapes pipes and folds newlines in cells", () => {
    expect(markdownCell("a | b\nc")).toBe("a \\| b c");
  });
});

describe("charts", () => {
  it("escape labels and clamp bars to the plot", () => {
    const svg = barChart({ title: HOSTILE, bars: [{ label: HOSTILE, value: 1.7 }] });
    expect(svg).not.toContain("<script>");
    expect(
      lineChart({ title: "t", xLabel: HOSTILE, series: [{ name: HOSTILE, points: [{ x: 1, y: 0.5 }] }] }),
    ).not.toContain("<img");
    expect(escapeHtml(`<a href="x">'&`)).toBe("&#60;a href=&#34;x&#34;&#62;&#39;&#38;");
  });

  it("histogram bins count every value once, the largest in the last bin", () => {
    const bins = histogramBins({ values: [0, 1, 2, 3, 12], bins: 4 });
    expect(bins.map((bin) => bin.count)).toEqual([3, 1, 0, 1]);
    expect(bins.reduce((sum, bin) => sum + bin.count, 0)).toBe(5);
  });
});
