/**
 * `report.html`: one self-contained page (inline CSS and SVG, thumbnails as data URLs, no scripts and no
 * network) with the run facts, the deltas against a baseline, per-type VQA accuracy bars, recall@k
 * curves, a latency histogram per chain step, and the failures with thumbnails. Everything that comes
 * from the corpus, the cases or the answers is hostile text and goes through {@link escapeHtml}; a
 * Content-Security-Policy forbids scripts as a second line of defence.
 */
import sharp from "sharp";
import { barChart, escapeHtml, histogramChart, lineChart } from "./charts.ts";
import type { GateOutcome } from "./gate.ts";
import {
  BASELINE_HEADER,
  baselineRows,
  describeFailure,
  describeQuery,
  formatFigure,
  ingestFailuresNote,
  latencyRows,
  objectTables,
  runDetails,
  textReadingTables,
} from "./report-content.ts";
import type { CaseRecord, RunResults } from "./results.ts";

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return `<table><thead><tr>${header.map((cell) => `<th>${escapeHtml(cell)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((row) => `<tr>${row.map((cell) => `<td>${cell}</td>`).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

/** Thumbnail side, in pixels. */
const THUMBNAIL_SIZE = 96;

/**
 * Small JPEG thumbnails (data URLs) of the images the given cases are about, by path. A file that is gone
 * or not an image gets none; the report then shows the case without one.
 */
export async function makeThumbnails(records: readonly CaseRecord[]): Promise<Map<string, string>> {
  const thumbnails = new Map<string, string>();
  for (const record of records) {
    const path = record.imagePath;
    if (path === undefined || thumbnails.has(path)) continue;
    try {
      const bytes = await sharp(path, { limitInputPixels: 50_000_000 })
        .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: "inside" })
        .jpeg({ quality: 70 })
        .toBuffer();
      thumbnails.set(path, `data:image/jpeg;base64,${bytes.toString("base64")}`);
    } catch {
      // A missing or broken image leaves the row without a thumbnail; the case is still listed.
    }
  }
  return thumbnails;
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#111}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.fail{color:#b91c1c;font-weight:600}.pass{color:#15803d}.charts{display:flex;flex-wrap:wrap;gap:16px}
svg.chart{font:11px system-ui,sans-serif;background:#fafafa;border:1px solid #eee}svg .title{font-weight:600;font-size:12px}
td.answer{max-width:420px;word-break:break-word}img.thumb{width:${THUMBNAIL_SIZE}px;height:auto;border:1px solid #ccc}
.warn{background:#fef3c7;padding:6px 10px}
`;

/** Renders `report.html` (see the module comment). `thumbnails` maps image paths to data URLs. */
export function renderHtmlReport({
  results,
  gate,
  thumbnails = new Map(),
  maxFailures = 60,
}: {
  results: RunResults;
  gate?: GateOutcome;
  thumbnails?: ReadonlyMap<string, string>;
  maxFailures?: number;
}): string {
  const { meta, summary } = results;
  const sections: string[] = [];
  sections.push(
    table(
      ["run", ""],
      runDetails(results).map(([label, value]) => [label, escapeHtml(value)]),
    ),
  );
  const ingestFailures = ingestFailuresNote({
    failures: meta.ingestFailures,
    cell: (text, max) => escapeHtml(text.slice(0, max)),
    messageLength: 160,
  });
  if (ingestFailures !== undefined) {
    sections.push(`<p class="warn">${ingestFailures.headline} ${ingestFailures.list}</p>`);
  }
  if (gate !== undefined) {
    sections.push("<h2>Against the baseline</h2>");
    sections.push(
      table(
        BASELINE_HEADER,
        baselineRows({
          gate,
          label: escapeHtml,
          status: (status) =>
            `<span class="${status === "fail" ? "fail" : "pass"}">${escapeHtml(status)}</span>`,
        }),
      ),
    );
    for (const warning of gate.warnings) sections.push(`<p class="warn">${escapeHtml(warning)}</p>`);
    sections.push(
      gate.passed
        ? `<p class="pass">Gate passed.</p>`
        : `<p class="fail">Gate failed: ${gate.failures.map((row) => escapeHtml(row.label)).join(", ")}.</p>`,
    );
  }

  const headline: string[][] = [];
  for (const [task, figures] of Object.entries(summary.retrieval)) {
    headline.push([
      escapeHtml(`${task} R@1 / R@5 / R@10 / MRR`),
      `${formatFigure(figures.recallAt1)} / ${formatFigure(figures.recallAt5)} / ${formatFigure(figures.recallAt10)} / ${formatFigure(figures.mrr)}`,
    ]);
  }
  if (summary.vqa !== null)
    headline.push([
      "VQA accuracy",
      `${formatFigure(summary.vqa.overall.accuracy)} (${summary.vqa.overall.count} questions)`,
    ]);
  if (summary.answers !== null) {
    const answers = summary.answers;
    headline.push(
      [
        "answers: exact / contains",
        `${formatFigure(answers.exactMatch)} / ${formatFigure(answers.contains)} (${answers.count} cases)`,
      ],
      [
        "citations: precision / recall",
        `${formatFigure(answers.citationPrecision)} / ${formatFigure(answers.citationRecall)}`,
      ],
      ["groundedness", formatFigure(answers.groundedness)],
      [
        "abstention: precision / recall",
        `${formatFigure(answers.abstention.precision)} / ${formatFigure(answers.abstention.recall)}`,
      ],
    );
  }
  if (summary.triples !== null)
    headline.push([
      "triple reuse (own / other)",
      `${formatFigure(summary.triples.rate)} / ${formatFigure(summary.triples.wrongRate)} (${summary.triples.probes} probes)`,
    ]);
  if (summary.tokens.llmTurns > 0) {
    headline.push([
      "LLM tokens (prompt + completion)",
      `${summary.tokens.promptTokens} + ${summary.tokens.completionTokens} over ${summary.tokens.llmTurns} turns`,
    ]);
  }
  sections.push("<h2>Summary</h2>", table(["figure", "value"], headline));
  for (const entry of [...textReadingTables(results), ...objectTables(results)]) {
    sections.push(
      `<h2>${escapeHtml(entry.title)}</h2>`,
      table(
        entry.header,
        entry.rows.map((row) => row.map(escapeHtml)),
      ),
    );
  }

  const charts: string[] = [];
  if (summary.vqa !== null) {
    charts.push(
      barChart({
        title: "VQA accuracy per question type",
        bars: [
          ...Object.entries(summary.vqa.byType).map(([type, figures]) => ({
            label: type,
            value: figures.accuracy,
            note: `(n=${figures.count})`,
          })),
          { label: "overall", value: summary.vqa.overall.accuracy, note: `(n=${summary.vqa.overall.count})` },
        ],
      }),
    );
  }
  const curves = Object.entries(summary.retrieval).map(([task, figures]) => ({
    name: task,
    points: figures.curve.map((point) => ({ x: point.k, y: point.recall })),
  }));
  if (curves.length > 0) charts.push(lineChart({ title: "Recall@k", xLabel: "k", series: curves }));
  if (charts.length > 0) sections.push("<h2>Charts</h2>", `<div class="charts">${charts.join("")}</div>`);

  const steps = Object.entries(summary.latency);
  if (steps.length > 0) {
    const histograms = steps.map(([step, figures]) => {
      const values = results.cases
        .filter((record) => record.error === undefined)
        .map((record) => record.timings[step])
        .filter((ms): ms is number => typeof ms === "number");
      return histogramChart({ title: step, values, p50: figures.p50, p95: figures.p95 });
    });
    sections.push(
      "<h2>Latency per step</h2>",
      table(
        ["step", "count", "p50 ms", "p95 ms", "mean ms", "max ms"],
        latencyRows(results).map((row) => row.map(escapeHtml)),
      ),
      `<div class="charts">${histograms.join("")}</div>`,
    );
  }

  const failures = results.cases.filter((record) => !record.passed);
  sections.push(`<h2>Failures (${failures.length} of ${results.cases.length})</h2>`);
  if (failures.length > 0) {
    sections.push(
      table(
        ["image", "case", "kind", "asked", "what went wrong", "top evidence"],
        failures.slice(0, maxFailures).map((record) => {
          const thumbnail = record.imagePath === undefined ? undefined : thumbnails.get(record.imagePath);
          const evidence = (record.output.evidence ?? [])
            .slice(0, 3)
            .map(
              (item) =>
                `${escapeHtml(item.id)} (${item.score.toFixed(2)})${item.text === undefined ? "" : `: ${escapeHtml(item.text.slice(0, 80))}`}`,
            )
            .join("<br>");
          return [
            thumbnail === undefined ? "" : `<img class="thumb" alt="" src="${escapeHtml(thumbnail)}">`,
            escapeHtml(record.id),
            escapeHtml(record.task ?? record.kind),
            escapeHtml(describeQuery(record)),
            `<div class="answer">${escapeHtml(describeFailure(record))}</div>`,
            evidence,
          ];
        }),
      ),
    );
    if (failures.length > maxFailures) {
      sections.push(`<p>… and ${failures.length - maxFailures} more failures in results.json.</p>`);
    }
  }

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Loupe eval: ${escapeHtml(meta.suite)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Loupe eval: ${escapeHtml(meta.suite)}</h1>
${sections.join("\n")}
</body>
</html>
`;
}
