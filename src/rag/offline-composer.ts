/**
 * The offline composer: writes a short, factual, cited answer from the evidence alone, with no LLM. It
 * is the default when no LLM is configured and the fallback when the LLM fails. Its sentences follow the
 * parsed intent: a VQA answer about the turn's image, the corpus images that show what was asked, the
 * video segment where an action happens, or the closest matches. It declines when the evidence does not
 * answer the question.
 */
import { describeObject, type Intent, type ObjectMention, theObject } from "./question-parser.ts";
import type { Evidence, Finding } from "./types.ts";

/** The model name answers from the offline composer carry. */
export const OFFLINE_MODEL_NAME = "loupe-offline";

/** Thresholds of the offline composer. */
export interface OfflineComposerSettings {
  /** A corpus image counts as showing what was asked when the head's probability reaches this. */
  matchThreshold: number;
  /** Below this probability an answer is hedged with "probably". */
  hedgeBelow: number;
  /** A question outside the pack's vocabulary is answered with matches only above this retrieval score. */
  relevanceFloor: number;
}

export const DEFAULT_OFFLINE_SETTINGS: OfflineComposerSettings = {
  matchThreshold: 0.5,
  hedgeBelow: 0.5,
  relevanceFloor: 0.3,
};

/** What the offline composer writes. */
export interface OfflineAnswer {
  text: string;
  /** False when the answer declines. */
  answered: boolean;
  /** 0–1. */
  confidence: number;
}

/** Input of {@link composeOffline}. */
export interface OfflineComposeInput {
  intent: Intent;
  standaloneQuestion: string;
  evidence: readonly Evidence[];
  /** Evidence ids of the images the turn is about (attachments and items named by id). */
  turnImageIds: readonly string[];
  settings?: Partial<OfflineComposerSettings>;
}

const round = (value: number) => Math.round(value * 1000) / 1000;
const percent = (value: number) => `${Math.round(value * 100)}%`;

function cite(id: string): string {
  return `[${id}]`;
}

function hedge(probability: number, settings: OfflineComposerSettings): string {
  return probability < settings.hedgeBelow ? "probably " : "";
}

/** One sentence stating a VQA finding about one image. */
export function sentenceFor({
  intent,
  object,
  finding,
  evidenceId,
  settings,
}: {
  intent: Intent;
  object: ObjectMention | undefined;
  finding: Finding;
  evidenceId: string;
  settings: OfflineComposerSettings;
}): string {
  const answer = finding.answer;
  const maybe = hedge(finding.probability, settings);
  const source =
    finding.source === "triple" && finding.tripleId !== undefined
      ? ` ${cite(finding.tripleId)} (a stored answer for this image)`
      : "";
  const ref = `${cite(evidenceId)}${source}`;
  const subject = object === undefined ? "the object" : theObject(object);
  switch (intent.type) {
    case "color":
      return `${capitalize(subject)} is ${maybe}${answer} ${ref}.`;
    case "shape":
      return `${capitalize(subject)} is ${maybe}a ${answer} ${ref}.`;
    case "count": {
      const count = Number(answer);
      const counted =
        object === undefined
          ? "objects"
          : describeObject({ ...object, count: Number.isNaN(count) ? 2 : count }, { article: false }).replace(
              /^\d+ /,
              "",
            );
      const noun = count === 1 ? counted.replace(/s$/, "") : counted;
      return `There ${count === 1 ? "is" : "are"} ${maybe}${answer} ${noun} ${ref}.`;
    }
    case "exist":
    case "find": {
      const named = object === undefined ? "such an object" : describeObject(object);
      return answer === "yes"
        ? `Yes, there is ${maybe}${named} ${ref}.`
        : `No, there is ${maybe}no ${named.replace(/^an? /, "")} ${ref}.`;
    }
    case "size":
      return `${capitalize(subject)} is ${maybe}${answer} ${ref}.`;
    case "position":
      return `${capitalize(subject)} is ${maybe}on the ${answer} ${ref}.`;
    default:
      return `The answer is ${maybe}${answer} ${ref}.`;
  }
}

function capitalize(text: string): string {
  return text.length === 0 ? text : `${text[0]?.toUpperCase()}${text.slice(1)}`;
}

function formatSeconds(seconds: number | null): string {
  return seconds === null ? "?" : `${Number(seconds.toFixed(2))} s`;
}

function decline(reason: string): OfflineAnswer {
  return { text: reason, answered: false, confidence: 0 };
}

/**
 * What grounding did not check: a sentence naming the retrieved images it skipped once the turn's
 * grounding budget was spent (empty when it checked them all), so an answer never passes them off as verified.
 */
export function uncheckedNote(evidence: readonly Evidence[]): string {
  const ids = evidence.filter((entry) => entry.unchecked === true).map((entry) => entry.citation.id);
  if (ids.length === 0) return "";
  const images = ids.length === 1 ? "image" : "images";
  return ` Not checked within this turn's grounding budget: ${ids.length} more close ${images} (${ids.join(", ")}), so ${ids.length === 1 ? "it is" : "they are"} not counted above.`;
}

/** Writes the answer. Pure: everything it says comes from `evidence`. */
export function composeOffline({
  intent,
  standaloneQuestion,
  evidence,
  turnImageIds,
  settings: given = {},
}: OfflineComposeInput): OfflineAnswer {
  const settings = { ...DEFAULT_OFFLINE_SETTINGS, ...given };
  const turnImages = evidence.filter((entry) => turnImageIds.includes(entry.citation.id));

  // About the images of the turn: the head's answer (or a stored triple's) per image.
  if (
    turnImages.length > 0 &&
    ["color", "shape", "count", "exist", "size", "position"].includes(intent.type)
  ) {
    const sentences: string[] = [];
    let confidence = 1;
    for (const entry of turnImages) {
      if (intent.type === "exist" && intent.objects.length > 1) {
        for (const [index, object] of intent.objects.entries()) {
          const finding = entry.findings.filter((item) => item.source === "vqa")[index];
          if (finding === undefined) continue;
          sentences.push(sentenceFor({ intent, object, finding, evidenceId: entry.citation.id, settings }));
          confidence = Math.min(confidence, finding.probability);
        }
        continue;
      }
      const finding = entry.findings[0];
      if (finding === undefined) continue;
      sentences.push(
        sentenceFor({ intent, object: intent.objects[0], finding, evidenceId: entry.citation.id, settings }),
      );
      confidence = Math.min(confidence, finding.probability);
    }
    if (sentences.length > 0)
      return { text: sentences.join(" "), answered: true, confidence: round(confidence) };
  }

  if (turnImages.length > 0 && intent.type === "describe") {
    const sentences = turnImages.map((entry) => describeFromFindings(entry));
    return {
      text: sentences.join(" "),
      answered: true,
      confidence: round(Math.min(...turnImages.map(describeConfidence))),
    };
  }

  if (intent.type === "when") return composeWhen({ intent, evidence });

  if ((intent.type === "exist" || intent.type === "find") && intent.objects.length > 0) {
    const named = intent.objects.map((object) => describeObject(object)).join(" and ");
    const checked = evidence.filter(
      (entry) => !turnImageIds.includes(entry.citation.id) && entry.match !== undefined,
    );
    const note = uncheckedNote(evidence);
    if (checked.length === 0 && note.length > 0) {
      return decline(
        `The closest images to ${named} could not be checked within this turn's grounding budget, so the corpus gives no verified answer; ask again.${note}`,
      );
    }
    if (checked.length === 0) {
      return decline(
        `No image in the corpus comes close to ${named}, so the corpus does not answer this question.`,
      );
    }
    const matches = checked.filter((entry) => (entry.match ?? 0) >= settings.matchThreshold);
    // Grounding put the checked images in order of its combined judgement; the first match is the best.
    const best = Math.max(...checked.map((entry) => entry.match ?? 0));
    if (matches.length === 0) {
      // Worded without "a <color> <shape>" so the sentence claims nothing about any single object.
      const bestId = checked.find((entry) => entry.match === best)?.citation.id ?? "";
      const asked = intent.objects.map((object) => describeObject(object, { article: false })).join(", ");
      return {
        text: `No: none of the ${checked.length} closest images shows everything asked for (${asked}); the best match, ${cite(bestId)}, fits with ${percent(best)} probability.${note}`,
        answered: true,
        confidence: round(1 - best),
      };
    }
    const [first, ...others] = matches;
    if (first === undefined) throw new Error("unreachable: matches is not empty");
    const lead = intent.type === "exist" ? "Yes: " : "";
    const more =
      others.length > 0 ? ` Also ${others.map((entry) => cite(entry.citation.id)).join(", ")}.` : "";
    return {
      text: `${lead}${first.citation.id} shows ${named} ${cite(first.citation.id)}.${more}${note}`,
      answered: true,
      confidence: round(first.match ?? 0),
    };
  }

  if (["color", "shape", "count", "size", "position"].includes(intent.type)) {
    // No image in the turn: what the head says about the closest matches, clearly marked as such.
    const about = evidence.filter(
      (entry) => entry.findings.length > 0 && !turnImageIds.includes(entry.citation.id),
    );
    if (about.length > 0) {
      const sentences = about.flatMap((entry) => {
        const finding = entry.findings[0];
        return finding === undefined
          ? []
          : [
              sentenceFor({
                intent,
                object: intent.objects[0],
                finding,
                evidenceId: entry.citation.id,
                settings,
              }),
            ];
      });
      const confidence = Math.min(...about.map((entry) => entry.findings[0]?.probability ?? 0)) / 2;
      return {
        text: `No image is attached or named, so this is about the closest matches in the corpus: ${sentences.join(" ")}${uncheckedNote(evidence)}`,
        answered: true,
        confidence: round(confidence),
      };
    }
    return decline(
      `This question is about one image, and none is attached or named. Attach the image, or name a stored item by its id (img_…), and ask again.`,
    );
  }

  // Anything else: the closest matches, when they are close enough; otherwise decline.
  const matches = evidence.filter(
    (entry) => !entry.attachment && entry.citation.score >= settings.relevanceFloor,
  );
  if (!intent.inVocabulary || matches.length === 0) {
    return decline(
      `The corpus does not answer this question: nothing stored is close enough to "${standaloneQuestion.slice(0, 200)}".`,
    );
  }
  const listed = matches.slice(0, 3).map((entry) => {
    const times =
      entry.citation.kind === "video_segment"
        ? ` (${formatSeconds(entry.citation.start)}–${formatSeconds(entry.citation.end)})`
        : "";
    return `${entry.citation.id}${times} ${cite(entry.citation.id)}`;
  });
  return {
    text: `The closest matches in the corpus are ${listed.join(", ")}.`,
    answered: true,
    confidence: round(matches[0]?.citation.score ?? 0),
  };
}

function composeWhen({ intent, evidence }: { intent: Intent; evidence: readonly Evidence[] }): OfflineAnswer {
  const segments = evidence.filter((entry) => entry.citation.kind === "video_segment");
  const [best, second] = segments;
  const subject = intent.objects[0] === undefined ? "the object" : theObject(intent.objects[0]);
  const action = intent.action ?? "moving";
  if (best === undefined) {
    return decline(
      `No video segment in the corpus shows ${subject} ${action}, so the corpus does not answer this question.`,
    );
  }
  const margin = best.citation.score - (second?.citation.score ?? 0);
  const video = best.videoId === undefined ? "" : ` of video ${best.videoId}`;
  return {
    text: `${capitalize(subject)} is ${action} from ${formatSeconds(best.citation.start)} to ${formatSeconds(best.citation.end)}${video} ${cite(best.citation.id)}.`,
    answered: true,
    confidence: round(Math.max(0.05, Math.min(1, 0.5 + margin * 5))),
  };
}

function describeFromFindings(entry: Evidence): string {
  const count = entry.findings.find((finding) => finding.question.startsWith("How many"));
  const present = entry.findings
    .filter((finding) => finding.question.startsWith("Is there") && finding.answer === "yes")
    .sort((left, right) => right.probability - left.probability)
    .map((finding) => finding.question.replace(/^Is there /, "").replace(/\?$/, ""));
  const shown = present.slice(0, Math.max(1, Number(count?.answer ?? present.length) || present.length));
  const list =
    shown.length === 0 ? "no object I can name" : shown.join(", ").replace(/, ([^,]*)$/, " and $1");
  const counted =
    count === undefined ? "" : ` (${count.answer} ${count.answer === "1" ? "object" : "objects"})`;
  return `The image shows ${list}${counted} ${cite(entry.citation.id)}.`;
}

function describeConfidence(entry: Evidence): number {
  const count = entry.findings.find((finding) => finding.question.startsWith("How many"));
  return count?.probability ?? 0.5;
}
