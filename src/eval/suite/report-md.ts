/**
 * `report.md`: a run's figures as Markdown tables (run facts, retrieval per task, VQA per type, answers,
 * triple reuse, latency per step, tokens), the deltas against a baseline when one was given, and the first
 * failures. Text from the corpus and the answers is kept out of table syntax (pipes, newlines escaped).
 */
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
import type { RunResults } from "./results.ts";

/** Text made safe inside a Markdown table cell: one line, pipes and markup characters escaped. */
export function markdownCell(text: string, max = 160): string {
  const line = text.replace(/\s+/gu, " ").trim();
  const clipped = line.length > max ? `${line.slice(0, max - 1)}…` : line;
  return clipped.replace(/[\\`*_[\]<>|]/gu, (character) => `\\${character}`);
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ].join("\n");
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
  const ingestFailures = ingestFailuresNote({
    failures: meta.ingestFailures,
    cell: markdownCell,
    messageLength: 100,
  });
  if (ingestFailures !== undefined) parts.push(`**${ingestFailures.headline}** ${ingestFailures.list}`);

  if (gate !== undefined) {
    parts.push("## Against the baseline");
    parts.push(
      table(
        BASELINE_HEADER,
        baselineRows({
          gate,
          label: (label) => label,
          status: (status) => (status === "fail" ? "**FAIL**" : status),
        }),
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
          formatFigure(figures.recallAt1),
          formatFigure(figures.recallAt5),
          formatFigure(figures.recallAt10),
          formatFigure(figures.mrr),
          formatFigure(figures.ndcgAt10),
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
            formatFigure(figures.accuracy),
          ]),
          [
            "**overall**",
            String(summary.vqa.overall.count),
            `**${formatFigure(summary.vqa.overall.accuracy)}**`,
          ],
        ],
      ),
    );
    parts.push(`Answer text states a reference answer: ${formatFigure(summary.vqa.answerContains)}.`);
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
            formatFigure(answers.exactMatch),
            formatFigure(answers.contains),
            formatFigure(answers.citationPrecision),
            formatFigure(answers.citationRecall),
            formatFigure(answers.groundedness),
            formatFigure(answers.abstention.precision),
            formatFigure(answers.abstention.recall),
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
  for (const entry of [...textReadingTables(results), ...objectTables(results)]) {
    parts.push(`## ${entry.title}`);
    parts.push(
      table(
        entry.header,
        entry.rows.map((row) => row.map((cell) => markdownCell(cell))),
      ),
    );
  }
  if (summary.triples !== null) {
    parts.push("## Triple reuse");
    parts.push(
      `${summary.triples.probes} probes: reused their own triple ${formatFigure(summary.triples.rate)}, another triple ${formatFigure(summary.triples.wrongRate)}.`,
    );
  }
  const latency = latencyRows(results);
  if (latency.length > 0) {
    parts.push("## Latency (ms)");
    parts.push(table(["step", "count", "p50", "p95", "mean", "max"], latency));
  }
  if (summary.tokens.llmTurns > 0) {
    parts.push(
      `LLM tokens: ${summary.tokens.promptTokens} prompt + ${summary.tokens.completionTokens} completion over ${summary.tokens.llmTurns} turns (${formatFigure(summary.tokens.meanTokensPerLlmTurn, 0)} per turn).`,
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
            markdownCell(describeQuery(record), 80),
            markdownCell(describeFailure(record), 200),
          ]),
      ),
    );
    if (failures.length > maxFailures)
      parts.push(`… and ${failures.length - maxFailures} more (see results.json).`);
  }
  return `${parts.join("\n\n")}\n`;
}
