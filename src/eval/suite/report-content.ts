/**
 * What `report.md` and `report.html` say, apart from how they say it: the figures as text, the run facts,
 * the ingest failures, the rows of the baseline and latency tables, and what a failed case asked and got
 * wrong. Each report passes in its own escaping (`markdownCell`, `escapeHtml`) where text from the corpus,
 * the cases or the answers goes in, so the content is written once and the formats cannot drift apart.
 */
import { formatDelta, type GateOutcome, type MetricDelta } from "./gate.ts";
import type { CaseRecord, RunMeta, RunResults } from "./results.ts";

/** A figure for a report: `digits` decimals, or `–` when the run has none. */
export function formatFigure(figure: number | null | undefined, digits = 3): string {
  return figure === null || figure === undefined ? "–" : figure.toFixed(digits);
}

/** The rows of a report's "run" table, as plain text: what ran, on what, when, and how long it took. */
export function runDetails({ meta, summary }: RunResults): Array<[string, string]> {
  return [
    ["suite", `${meta.suite} (${meta.format})`],
    ["seed", meta.seed === undefined ? "–" : String(meta.seed)],
    ["target", meta.target],
    ["composer", meta.composer],
    ["model pack", meta.modelPack ?? "–"],
    ["git commit", meta.gitCommit ?? "–"],
    ["date", meta.date],
    ["corpus", `${meta.corpus.images} images, ${meta.corpus.videos} videos, ${meta.corpus.triples} triples`],
    ["cases", `${summary.cases} (${summary.errors} errors)`],
    [
      "durations",
      `ingest ${meta.durations.ingestSeconds} s, cases ${meta.durations.casesSeconds} s, total ${meta.durations.totalSeconds} s`,
    ],
  ];
}

/** How many ingest failures a report names; results.json holds them all. */
const NAMED_INGEST_FAILURES = 10;

/**
 * A report's note on corpus items that failed to ingest, or undefined when none failed: a headline that
 * counts them and the first few as `kind id (message)`. Every part goes through `cell`, the report's
 * escaping, which also clips to `max` characters when given (the message is clipped to `messageLength`).
 */
export function ingestFailuresNote({
  failures,
  cell,
  messageLength,
}: {
  failures: RunMeta["ingestFailures"];
  cell: (text: string, max?: number) => string;
  messageLength: number;
}): { headline: string; list: string } | undefined {
  if (failures.length === 0) return undefined;
  return {
    headline: `${failures.length} corpus items failed to ingest:`,
    list: failures
      .slice(0, NAMED_INGEST_FAILURES)
      .map((failure) => `${cell(failure.kind)} ${cell(failure.id)} (${cell(failure.message, messageLength)})`)
      .join("; "),
  };
}

/** The header of a report's baseline table. */
export const BASELINE_HEADER = ["metric", "baseline", "current", "delta", "tolerance", "status"] as const;

/**
 * The rows of a report's baseline table: the gated figures with baseline, current value, delta and
 * tolerance as text; the label goes through `label` and the status through `status`, the report's own
 * way of writing them.
 */
export function baselineRows({
  gate,
  label,
  status,
}: {
  gate: GateOutcome;
  label: (text: string) => string;
  status: (status: MetricDelta["status"]) => string;
}): string[][] {
  return gate.rows
    .filter((row) => row.tolerance !== undefined)
    .map((row) => [
      label(row.label),
      formatFigure(row.baseline),
      formatFigure(row.current),
      formatDelta(row.delta),
      row.tolerance === undefined ? "" : `${row.lowerIsBetter ? "+" : "-"}${row.tolerance.toFixed(2)}`,
      status(row.status),
    ]);
}

/** The rows of a report's latency table, as plain text: step, count, then p50, p95, mean and max in ms. */
export function latencyRows({ summary }: Pick<RunResults, "summary">): string[][] {
  return Object.entries(summary.latency).map(([step, figures]) => [
    step,
    String(figures.count),
    formatFigure(figures.p50, 1),
    formatFigure(figures.p95, 1),
    formatFigure(figures.mean, 1),
    formatFigure(figures.max, 1),
  ]);
}

/** What a case asked, as plain text: its question, its query text or its first image. */
export function describeQuery(record: CaseRecord): string {
  return record.input.question ?? record.input.text ?? record.input.images?.[0] ?? "";
}

/** What a failed case got wrong, in a few words. */
export function describeFailure(record: CaseRecord): string {
  if (record.error !== undefined) return `error ${record.error.code}: ${record.error.message}`;
  if (record.kind === "retrieval")
    return `no relevant item in the top 10 (got ${(record.output.ranked ?? []).slice(0, 3).join(", ") || "nothing"})`;
  if (record.kind === "vqa")
    return `answered "${record.output.shortAnswer ?? ""}", expected "${(record.expected.answers ?? []).join(" / ")}"`;
  if (record.kind === "ocr") {
    const worst = record.output.ocr?.misses[0];
    const cer = typeof record.metrics.cer === "number" ? record.metrics.cer.toFixed(3) : "–";
    if (record.metrics.read !== true) return "no OCR reading stored";
    return worst === undefined ? `CER ${cer}` : `CER ${cer}; worst: "${worst.truth}" read as "${worst.read}"`;
  }
  if (record.kind === "detection") {
    const { objects, found, falsePositives, attributesRight, counts, countsRight } = record.metrics;
    return `found ${found} of ${objects} objects (${attributesRight} with colour and size right), ${falsePositives} false positives; ${countsRight} of ${counts} counts right`;
  }
  if (record.kind === "region") {
    const got = (record.output.regions ?? [])
      .slice(0, 3)
      .map((region) => `${region.label} in ${region.image}`)
      .join(", ");
    return `no region of a fitting object at rank 1 (got ${got || "nothing"})`;
  }
  if (record.kind === "triple-probe") {
    const reused = record.output.reusedTriples ?? [];
    return reused.length === 0
      ? `no triple reused (expected ${record.expected.tripleId})`
      : `reused ${reused.join(", ")} instead of ${record.expected.tripleId}`;
  }
  if (record.expected.unanswerable === true)
    return `answered an unanswerable question: "${record.output.answer ?? ""}"`;
  if (record.metrics.abstained === true) return `declined: "${record.output.answer ?? ""}"`;
  return `"${record.output.answer ?? ""}" (expected ${[...(record.expected.answers ?? []), ...(record.expected.evidence ?? [])].slice(0, 4).join(", ") || "segments"}; cited ${(record.output.citations ?? []).join(", ") || "nothing"})`;
}

/** A titled table of plain-text cells. */
export interface ReportTable {
  title: string;
  header: string[];
  rows: string[][];
}

const BUCKET_LABELS: Record<string, string> = {
  latin12: "English, 12 px and larger",
  latinSmall: "English, under 12 px",
  cjk: "Chinese",
};

/**
 * The tables of text read in images, when the run has such cases: OCR CER by script and size, text→image
 * recall per search mode and query type, and answers read off screenshots per question type.
 */
export function textReadingTables({ summary }: Pick<RunResults, "summary">): ReportTable[] {
  const tables: ReportTable[] = [];
  const ocr = summary.ocr;
  if (ocr !== undefined && ocr !== null) {
    tables.push({
      title: `OCR (${ocr.images} images; CER over non-space characters, lower is better)`,
      header: ["text", "characters", "CER"],
      rows: [
        ...Object.entries(ocr.byBucket).map(([bucket, figures]) => [
          BUCKET_LABELS[bucket] ?? bucket,
          String(figures.chars),
          formatFigure(figures.cer),
        ]),
        ["all, with spurious lines", String(ocr.chars), formatFigure(ocr.cer)],
        ["lines found (box overlap)", "", formatFigure(ocr.lineRecall)],
      ],
    });
  }
  const search = summary.search;
  if (search !== undefined && Object.keys(search).length > 0) {
    const modes = Object.keys(search);
    const types = [...new Set(Object.values(search).flatMap((figures) => Object.keys(figures.byType)))];
    tables.push({
      title: "Text→screenshot search by mode (Recall@1 / Recall@5)",
      header: ["query type", "queries", ...modes],
      rows: [
        ...types.map((type) => [
          type,
          String(search[modes[0] as string]?.byType[type]?.queries ?? 0),
          ...modes.map((mode) => {
            const figures = search[mode]?.byType[type];
            return figures === undefined
              ? "–"
              : `${formatFigure(figures.recallAt1)} / ${formatFigure(figures.recallAt5)}`;
          }),
        ]),
        [
          "all",
          String(search[modes[0] as string]?.queries ?? 0),
          ...modes.map(
            (mode) => `${formatFigure(search[mode]?.recallAt1)} / ${formatFigure(search[mode]?.recallAt5)}`,
          ),
        ],
      ],
    });
  }
  const textAnswers = summary.textAnswers;
  if (textAnswers !== undefined && textAnswers !== null) {
    tables.push({
      title: "Answers read off screenshots (expected text in the answer and the evidence cited)",
      header: ["question", "cases", "accuracy"],
      rows: [
        ...Object.entries(textAnswers.byType).map(([type, figures]) => [
          type,
          String(figures.count),
          formatFigure(figures.accuracy),
        ]),
        ["all", String(textAnswers.count), formatFigure(textAnswers.accuracy)],
      ],
    });
  }
  return tables;
}

/**
 * The tables of object-level figures, when the run has them: detection AP per class with attribute and
 * counting accuracy, and text→region recall.
 */
export function objectTables({ summary }: Pick<RunResults, "summary">): ReportTable[] {
  const tables: ReportTable[] = [];
  const detection = summary.detection;
  if (detection !== undefined && detection !== null) {
    tables.push({
      title: `Detection (${detection.images} images, ${detection.objects} objects, ${detection.detections} detections)`,
      header: ["class", "objects", "detections", "AP@0.5", "AP@[.5:.95]"],
      rows: [
        ...Object.entries(detection.perClass).map(([label, figures]) => [
          label,
          String(figures.objects),
          String(figures.detections),
          formatFigure(figures.ap50),
          formatFigure(figures.ap5095),
        ]),
        [
          "mean",
          String(detection.objects),
          String(detection.detections),
          formatFigure(detection.ap50),
          formatFigure(detection.ap5095),
        ],
        ...Object.entries(detection.attributes).map(([name, figures]) => [
          `${name} right (of ${figures.count} true positives)`,
          "",
          "",
          formatFigure(figures.accuracy),
          "",
        ]),
        [
          `counting from detections (${detection.counting.count} questions)`,
          "",
          "",
          formatFigure(detection.counting.accuracy),
          "",
        ],
      ],
    });
  }
  const regions = summary.regions;
  if (regions !== undefined && regions !== null) {
    tables.push({
      title: "Text→region search (IoU ≥ 0.5 with an object the description fits)",
      header: ["queries", "Recall@1", "Recall@5"],
      rows: [[String(regions.queries), formatFigure(regions.recallAt1), formatFigure(regions.recallAt5)]],
    });
  }
  return tables;
}
