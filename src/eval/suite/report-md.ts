/**
 * `report.md`: a run's figures as Markdown tables (run facts, retrieval per task, VQA per type, answers,
 * triple reuse, latency per step, tokens), the deltas against a baseline when one was given, and the first
 * failures. Text from the corpus and the answers is kept out of table syntax (pipes, newlines escaped).
 */
import { formatDelta, type GateOutcome } from "./gate.ts";
import type { CaseRecord, RunResults } from "./results.ts";

const value = (figure: number | null | undefined, digits = 3) =>
  figure === null || figure === undefined ? "–" : figure.toFixed(digits);

/** Text made safe inside a Markdown table cell: one line, pipes and markup characters escaped. */
export function markdownCell(text: string, max = 160): string {
  const line = text.replace(/\s+/gu, " ").trim();
  const clipped = line.length > max ? `${line.slice(0, max - 1)}…` : line;
  return clipped.replace(/[\\`*_[\]<>|]/gu, (character) => `\\${character}`);
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

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ].join("\n");
}

/** What a failed case got wrong, in a few words. */
export function describeFailure(record: CaseRecord): string {
  if (record.error !== undefined) return `error ${record.error.code}: ${record.error.message}`;
  if (record.kind === "retrieval")
    return `no relevant item in the top 10 (got ${(record.output.ranked ?? []).slice(0, 3).join(", ") || "nothing"})`;
  if (record.kind === "vqa")
    return `answered "${record.output.shortAnswer ?? ""}", expected "${(record.expected.answers ?? []).join(" / ")}"`;
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

/** Renders `report.md`. */
export function renderMarkdownReport({
  results,
  gate,
  maxFailures = 30,
}: {
  results: RunResults;
  gate?: GateOutcome;
  maxFailures?: number;
}): string {
  const { meta, summary } = results;
  const parts: string[] = [`# Eval report: ${markdownCell(meta.suite)}`];
  parts.push(
    table(
      ["run", ""],
      runDetails(results).map(([label, value]) => [label, markdownCell(value)]),
    ),
  );
  if (meta.ingestFailures.length > 0) {
    parts.push(
      `**${meta.ingestFailures.length} corpus items failed to ingest:** ${meta.ingestFailures
        .slice(0, 10)
        .map(
          (failure) =>
            `${markdownCell(failure.kind)} ${markdownCell(failure.id)} (${markdownCell(failure.message, 100)})`,
        )
        .join("; ")}`,
    );
  }

  if (gate !== undefined) {
    parts.push("## Against the baseline");
    parts.push(
      table(
        ["metric", "baseline", "current", "delta", "tolerance", "status"],
        gate.rows
          .filter((row) => row.tolerance !== undefined)
          .map((row) => [
            row.label,
            value(row.baseline),
            value(row.current),
            formatDelta(row.delta),
            row.tolerance === undefined ? "" : `-${row.tolerance.toFixed(2)}`,
            row.status === "fail" ? "**FAIL**" : row.status,
          ]),
      ),
    );
    for (const warning of gate.warnings) parts.push(`> ${markdownCell(warning, 400)}`);
    parts.push(
      gate.passed
        ? "Gate: **passed**."
        : `Gate: **failed** (${gate.failures.map((row) => row.label).join(", ")}).`,
    );
  }

  const tasks = Object.entries(summary.retrieval);
  if (tasks.length > 0) {
    parts.push("## Retrieval");
    parts.push(
      table(
        ["task", "queries", "R@1", "R@5", "R@10", "MRR", "nDCG@10"],
        tasks.map(([task, figures]) => [
          task,
          String(figures.queries),
          value(figures.recallAt1),
          value(figures.recallAt5),
          value(figures.recallAt10),
          value(figures.mrr),
          value(figures.ndcgAt10),
        ]),
      ),
    );
  }
  if (summary.vqa !== null) {
    parts.push("## VQA");
    parts.push(
      table(
        ["question type", "questions", "accuracy"],
        [
          ...Object.entries(summary.vqa.byType).map(([type, figures]) => [
            markdownCell(type),
            String(figures.count),
            value(figures.accuracy),
          ]),
          ["**overall**", String(summary.vqa.overall.count), `**${value(summary.vqa.overall.accuracy)}**`],
        ],
      ),
    );
    parts.push(`Answer text states a reference answer: ${value(summary.vqa.answerContains)}.`);
  }
  if (summary.answers !== null) {
    const answers = summary.answers;
    parts.push("## Answers");
    parts.push(
      table(
        [
          "cases",
          "exact",
          "contains",
          "citation P",
          "citation R",
          "groundedness",
          "abstention P",
          "abstention R",
        ],
        [
          [
            String(answers.count),
            value(answers.exactMatch),
            value(answers.contains),
            value(answers.citationPrecision),
            value(answers.citationRecall),
            value(answers.groundedness),
            value(answers.abstention.precision),
            value(answers.abstention.recall),
          ],
        ],
      ),
    );
    parts.push(
      table(
        ["case group", "cases", "passed"],
        Object.entries(answers.byTag).map(([tag, entry]) => [
          markdownCell(tag),
          String(entry.count),
          String(entry.passed),
        ]),
      ),
    );
  }
  if (summary.triples !== null) {
    parts.push("## Triple reuse");
    parts.push(
      `${summary.triples.probes} probes: reused their own triple ${value(summary.triples.rate)}, another triple ${value(summary.triples.wrongRate)}.`,
    );
  }
  const steps = Object.entries(summary.latency);
  if (steps.length > 0) {
    parts.push("## Latency (ms)");
    parts.push(
      table(
        ["step", "count", "p50", "p95", "mean", "max"],
        steps.map(([step, figures]) => [
          step,
          String(figures.count),
          value(figures.p50, 1),
          value(figures.p95, 1),
          value(figures.mean, 1),
          value(figures.max, 1),
        ]),
      ),
    );
  }
  if (summary.tokens.llmTurns > 0) {
    parts.push(
      `LLM tokens: ${summary.tokens.promptTokens} prompt + ${summary.tokens.completionTokens} completion over ${summary.tokens.llmTurns} turns (${value(summary.tokens.meanTokensPerLlmTurn, 0)} per turn).`,
    );
  }
  const failures = results.cases.filter((record) => !record.passed);
  parts.push(`## Failures (${failures.length})`);
  if (failures.length > 0) {
    parts.push(
      table(
        ["case", "kind", "asked", "what went wrong"],
        failures
          .slice(0, maxFailures)
          .map((record) => [
            markdownCell(record.id),
            record.task ?? record.kind,
            markdownCell(record.input.question ?? record.input.text ?? record.input.images?.[0] ?? "", 80),
            markdownCell(describeFailure(record), 200),
          ]),
      ),
    );
    if (failures.length > maxFailures)
      parts.push(`… and ${failures.length - maxFailures} more (see results.json).`);
  }
  return `${parts.join("\n\n")}\n`;
}
