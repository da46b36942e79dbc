/**
 * The score step: the figures of a run from its case records. Per-case retrieval values
 * ({@link retrievalCaseMetrics}) and the run's summary ({@link summarizeRun}): recall@k curves, MRR and
 * nDCG per retrieval task, VQA accuracy per question type, answer, citation, groundedness and abstention
 * figures, triple reuse, detection AP, counting and text→region recall (`object-scores.ts`), latency per
 * step and token usage, with every headline figure also under one flat
 * name in `figures` for reports and the baseline gate.
 */

import type { ChatResult } from "../../rag/types.ts";
import {
  abstentionScores,
  meanOfDefined,
  pooledGroundedness,
  summarizeTokenUsage,
} from "../metrics/answer-metrics.ts";
import { summarizeLatency } from "../metrics/latency.ts";
import { accuracyByType, recallAtK } from "../metrics/metrics.ts";
import { CER_BUCKETS } from "../metrics/ocr-metrics.ts";
import {
  type RetrievalSummary,
  segmentRanking,
  summarizeRetrieval,
  summarizeSegmentRetrieval,
  type TripleReuse,
  tripleReuseRate,
} from "../metrics/retrieval-metrics.ts";
import { summarizeDetection, summarizeRegions } from "./object-scores.ts";
import { type CaseMetric, type CaseRecord, CURVE_KS, type RunSummary } from "./results.ts";
import type { RetrievalTask } from "./suite.ts";

/** Per-case retrieval figures: hits at 1/5/10 and the reciprocal rank. */
export function retrievalCaseMetrics(
  ranked: readonly string[],
  relevant: ReadonlySet<string>,
): Record<string, CaseMetric> {
  const position = ranked.findIndex((id) => relevant.has(id));
  return {
    hitAt1: position === 0,
    hitAt5: position >= 0 && position < 5,
    hitAt10: position >= 0 && position < 10,
    reciprocalRank: position < 0 ? 0 : 1 / (position + 1),
  };
}

function rankingOf(record: CaseRecord): { ranked: string[]; relevant: Set<string> } {
  if (record.task === "text-to-video-segment") {
    const expected = record.expected.segments ?? [];
    const ranked = (record.output.ranked ?? []).map((text) => {
      const match = /^(.*)@([\d.e+-]+)-([\d.e+-]+)$/u.exec(text);
      return { videoId: match?.[1] ?? "", start: Number(match?.[2] ?? 0), end: Number(match?.[3] ?? 0) };
    });
    return segmentRanking({ ranked, expected });
  }
  return { ranked: record.output.ranked ?? [], relevant: new Set(record.expected.relevant ?? []) };
}

/** The summary of a run's case records (also used to re-summarize a `results.json`). */
export function summarizeRun({
  records,
  chatResults = [],
}: {
  records: readonly CaseRecord[];
  chatResults?: readonly Pick<ChatResult, "usage">[];
}): RunSummary {
  const figures: Record<string, number | null> = {};
  const retrieval: RunSummary["retrieval"] = {};
  const tasks: RetrievalTask[] = ["text-to-image", "image-to-image", "text-to-video-segment"];
  for (const task of tasks) {
    // Cases run in a named search mode are summarized per mode below.
    const taskRecords = records.filter(
      (record) => record.kind === "retrieval" && record.task === task && record.mode === undefined,
    );
    if (taskRecords.length === 0) continue;
    let summary: RetrievalSummary;
    let rankings: Array<{ ranked: string[]; relevant: Set<string> }>;
    if (task === "text-to-video-segment") {
      const ranked = taskRecords.map((record) => rankingOf(record));
      rankings = ranked;
      summary = summarizeSegmentRetrieval({
        ranked: taskRecords.map((record) =>
          (record.output.ranked ?? []).map((text) => {
            const match = /^(.*)@([\d.e+-]+)-([\d.e+-]+)$/u.exec(text);
            return {
              videoId: match?.[1] ?? "",
              start: Number(match?.[2] ?? 0),
              end: Number(match?.[3] ?? 0),
            };
          }),
        ),
        expected: taskRecords.map((record) => record.expected.segments ?? []),
      });
    } else {
      rankings = taskRecords.map((record) => rankingOf(record));
      summary = summarizeRetrieval({
        ranked: rankings.map((ranking) => ranking.ranked),
        relevant: rankings.map((ranking) => ranking.relevant),
      });
    }
    const curve = CURVE_KS.map((k) => ({
      k,
      recall: recallAtK({
        ranked: rankings.map((ranking) => ranking.ranked),
        relevant: rankings.map((ranking) => ranking.relevant),
        k,
      }),
    }));
    retrieval[task] = { ...summary, curve };
    for (const name of ["recallAt1", "recallAt5", "recallAt10", "mrr", "ndcgAt10"] as const) {
      figures[`retrieval.${task}.${name}`] = summary[name];
    }
  }

  const vqaRecords = records.filter((record) => record.kind === "vqa");
  let vqa: RunSummary["vqa"] = null;
  if (vqaRecords.length > 0) {
    const byType = accuracyByType({
      results: vqaRecords.map((record) => ({
        type: record.tags[0] ?? "all",
        correct: Number(record.metrics.accuracy ?? 0) >= 0.5,
      })),
    });
    // Accuracy is the mean of the (possibly fractional) VQAv2 scores, per type and overall.
    const mean = (list: readonly CaseRecord[]) =>
      list.reduce((sum, record) => sum + Number(record.metrics.accuracy ?? 0), 0) / Math.max(1, list.length);
    const types: Record<string, { accuracy: number; count: number }> = {};
    for (const type of Object.keys(byType.byType)) {
      const list = vqaRecords.filter((record) => (record.tags[0] ?? "all") === type);
      types[type] = { accuracy: mean(list), count: list.length };
      figures[`vqa.accuracy.${type}`] = types[type].accuracy;
    }
    const contains = meanOfDefined(vqaRecords.map((record) => record.metrics.answerContains ?? null));
    vqa = {
      overall: { accuracy: mean(vqaRecords), count: vqaRecords.length },
      byType: types,
      answerContains: contains.mean,
    };
    figures["vqa.accuracy"] = vqa.overall.accuracy;
    figures["vqa.answerContains"] = contains.mean;
  }

  const answerRecords = records.filter((record) => record.kind === "answer");
  let answers: RunSummary["answers"] = null;
  if (answerRecords.length > 0) {
    const metric = (name: string) =>
      meanOfDefined(answerRecords.map((record) => record.metrics[name] ?? null)).mean;
    const abstention = abstentionScores({
      outcomes: answerRecords.map((record) => ({
        unanswerable: record.expected.unanswerable === true,
        abstained: record.metrics.abstained === true,
      })),
    });
    const grounded = pooledGroundedness(
      answerRecords.map((record) => ({
        checked: Number(record.metrics.checkedClaims ?? 0),
        confirmed: Number(record.metrics.confirmedClaims ?? 0),
      })),
    );
    const byTag: Record<string, { count: number; passed: number }> = {};
    for (const record of answerRecords) {
      const tag = record.tags[0] ?? "untagged";
      const entry = byTag[tag] ?? { count: 0, passed: 0 };
      entry.count += 1;
      if (record.passed) entry.passed += 1;
      byTag[tag] = entry;
    }
    answers = {
      count: answerRecords.length,
      exactMatch: metric("exactMatch"),
      contains: metric("contains"),
      citationPrecision: metric("citationPrecision"),
      citationRecall: metric("citationRecall"),
      groundedness: grounded.rate,
      abstention: { precision: abstention.precision, recall: abstention.recall, f1: abstention.f1 },
      byTag,
    };
    figures["answers.exactMatch"] = answers.exactMatch;
    figures["answers.contains"] = answers.contains;
    figures["answers.citationPrecision"] = answers.citationPrecision;
    figures["answers.citationRecall"] = answers.citationRecall;
    figures["answers.groundedness"] = answers.groundedness;
    figures["abstention.precision"] = abstention.precision;
    figures["abstention.recall"] = abstention.recall;
    figures["abstention.f1"] = abstention.f1;
  }

  const probeRecords = records.filter((record) => record.kind === "triple-probe");
  let triples: TripleReuse | null = null;
  if (probeRecords.length > 0) {
    triples = tripleReuseRate({
      probes: probeRecords.map((record) => ({
        expectedTripleId: record.expected.tripleId ?? "",
        reusedTripleIds: record.output.reusedTriples ?? [],
      })),
    });
    figures["triples.reuse"] = triples.rate;
    figures["triples.wrongReuse"] = triples.wrongRate;
  }

  const search = summarizeSearchModes(records, figures);
  const ocr = summarizeOcr(records, figures);
  const textAnswers = summarizeTextAnswers(records, figures);
  const detection = summarizeDetection(records, figures);
  const regions = summarizeRegions(records, figures);

  const chatSteps = records.filter(
    (record) =>
      record.kind !== "retrieval" &&
      record.kind !== "ocr" &&
      record.kind !== "detection" &&
      record.kind !== "region" &&
      record.error === undefined,
  );
  const latency = {
    ...summarizeLatency({ samples: chatSteps.map((record) => record.timings) }),
    ...summarizeLatency({
      samples: records.filter((record) => record.kind === "retrieval").map((record) => record.timings),
    }),
    ...summarizeLatency({
      samples: records
        .filter((record) => record.kind === "detection" && record.error === undefined)
        .map((record) => record.timings),
    }),
  };
  for (const [step, value] of Object.entries(latency)) {
    figures[`latency.${step}.p50`] = value.p50;
    figures[`latency.${step}.p95`] = value.p95;
  }
  const errors = records.filter((record) => record.error !== undefined).length;
  figures.errors = errors;
  return {
    cases: records.length,
    errors,
    retrieval,
    vqa,
    answers,
    triples,
    ...(ocr === null ? {} : { ocr }),
    ...(Object.keys(search).length === 0 ? {} : { search }),
    ...(textAnswers === null ? {} : { textAnswers }),
    ...(detection === null ? {} : { detection }),
    ...(regions === null ? {} : { regions }),
    latency,
    tokens: summarizeTokenUsage({
      results: chatResults.length > 0 ? chatResults : records.map((record) => ({ usage: record.usage })),
    }),
    figures,
  };
}

/** Figures of retrieval cases run in a named search mode: per mode, and per mode and query type (first tag). */
function summarizeSearchModes(
  records: readonly CaseRecord[],
  figures: Record<string, number | null>,
): NonNullable<RunSummary["search"]> {
  const search: NonNullable<RunSummary["search"]> = {};
  const moded = records.filter((record) => record.kind === "retrieval" && record.mode !== undefined);
  const recallOf = (list: readonly CaseRecord[], name: "hitAt1" | "hitAt5") =>
    list.filter((record) => record.metrics[name] === true).length / Math.max(1, list.length);
  for (const mode of [...new Set(moded.map((record) => record.mode as string))]) {
    const list = moded.filter((record) => record.mode === mode);
    const byType: Record<string, { queries: number; recallAt1: number; recallAt5: number }> = {};
    for (const type of [...new Set(list.map((record) => record.tags[0] ?? "untagged"))]) {
      const typed = list.filter((record) => (record.tags[0] ?? "untagged") === type);
      byType[type] = {
        queries: typed.length,
        recallAt1: recallOf(typed, "hitAt1"),
        recallAt5: recallOf(typed, "hitAt5"),
      };
      figures[`search.${mode}.${type}.recallAt1`] = byType[type].recallAt1;
      figures[`search.${mode}.${type}.recallAt5`] = byType[type].recallAt5;
    }
    const mrr =
      list.reduce((sum, record) => sum + Number(record.metrics.reciprocalRank ?? 0), 0) / list.length;
    search[mode] = {
      queries: list.length,
      recallAt1: recallOf(list, "hitAt1"),
      recallAt5: recallOf(list, "hitAt5"),
      mrr,
      byType,
    };
    figures[`search.${mode}.recallAt1`] = search[mode].recallAt1;
    figures[`search.${mode}.recallAt5`] = search[mode].recallAt5;
    figures[`search.${mode}.mrr`] = mrr;
  }
  return search;
}

/** CER over every OCR case, pooled (edits over reference characters), overall and by bucket. */
function summarizeOcr(
  records: readonly CaseRecord[],
  figures: Record<string, number | null>,
): NonNullable<RunSummary["ocr"]> | null {
  const ocrRecords = records.filter((record) => record.kind === "ocr");
  if (ocrRecords.length === 0) return null;
  const sum = (name: string) =>
    ocrRecords.reduce((total, record) => total + Number(record.metrics[name] ?? 0), 0);
  const rate = (edits: number, chars: number) => (chars === 0 ? null : edits / chars);
  const byBucket: Record<string, { cer: number | null; chars: number }> = {};
  for (const bucket of CER_BUCKETS) {
    const chars = sum(`chars.${bucket}`);
    byBucket[bucket] = { cer: rate(sum(`edits.${bucket}`), chars), chars };
    figures[`ocr.cer.${bucket}`] = byBucket[bucket].cer;
  }
  const chars = sum("chars");
  const lines = sum("lines");
  const ocr = {
    images: ocrRecords.length,
    cer: rate(sum("edits"), chars),
    chars,
    byBucket,
    lineRecall: lines === 0 ? null : sum("linesFound") / lines,
    spuriousChars: sum("spuriousChars"),
  };
  figures["ocr.cer"] = ocr.cer;
  figures["ocr.lineRecall"] = ocr.lineRecall;
  figures["ocr.unread"] = ocrRecords.filter((record) => record.metrics.read !== true).length;
  return ocr;
}

/** Answer cases scored on text read off screenshots: contained and cited, overall and per type (second tag). */
function summarizeTextAnswers(
  records: readonly CaseRecord[],
  figures: Record<string, number | null>,
): NonNullable<RunSummary["textAnswers"]> | null {
  const scored = records.filter(
    (record) => record.kind === "answer" && record.metrics.textCorrect !== undefined,
  );
  if (scored.length === 0) return null;
  const accuracyOf = (list: readonly CaseRecord[]) =>
    list.filter((record) => record.metrics.textCorrect === true).length / Math.max(1, list.length);
  const byType: Record<string, { count: number; accuracy: number }> = {};
  for (const type of [...new Set(scored.map((record) => record.tags[1] ?? "untagged"))]) {
    const typed = scored.filter((record) => (record.tags[1] ?? "untagged") === type);
    byType[type] = { count: typed.length, accuracy: accuracyOf(typed) };
    figures[`textAnswers.${type}.accuracy`] = byType[type].accuracy;
  }
  const accuracy = accuracyOf(scored);
  figures["textAnswers.accuracy"] = accuracy;
  return { count: scored.length, accuracy, byType };
}
