/**
 * The offline composer: writes a short, factual, cited answer from the evidence alone, with no LLM. It
 * is the default when no LLM is configured and the fallback when the LLM fails. Its sentences follow the
 * parsed intent: a VQA answer about the turn's image, the corpus images that show what was asked, the
 * video segment where an action happens, or the closest matches. A question about text in images is
 * answered by quoting the OCR lines that answer it (see {@link composeTextAnswer}). It declines when the
 * evidence does not answer the question.
 */
import type { OcrLine } from "../media/ocr-lines.ts";
import { areaPhrase, type ImageArea } from "./image-area.ts";
import { describeObject, type Intent, type ObjectMention, theObject } from "./question-parser.ts";
import { askedValue, type TextQuestion } from "./text-question.ts";
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
  /** Set when the turn asks about text in images: the answer quotes the lines that answer it. */
  textQuestion?: TextQuestion;
  /**
   * Whether the pack has a VQA head to check what images show (default true). Without one, and without a
   * stored triple answering, the answer lists the closest matches by similarity and says what it cannot do.
   */
  canGround?: boolean;
  settings?: Partial<OfflineComposerSettings>;
}

const VISUAL_INTENTS: readonly string[] = [
  "color",
  "shape",
  "count",
  "exist",
  "size",
  "position",
  "describe",
  "area",
];

/** The answer of a pack without a VQA head: the closest matches by similarity, and plainly what is not known. */
function composeUngrounded({
  intent,
  standaloneQuestion,
  evidence,
  turnImageIds,
  settings,
}: {
  intent: Intent;
  standaloneQuestion: string;
  evidence: readonly Evidence[];
  turnImageIds: readonly string[];
  settings: OfflineComposerSettings;
}): OfflineAnswer {
  const aboutImages = turnImageIds.length > 0 || VISUAL_INTENTS.includes(intent.type);
  const limit = aboutImages
    ? "The model pack has no VQA head, so without an LLM Loupe cannot tell what an image shows or check a match. "
    : "";
  const matches = evidence.filter(
    (entry) =>
      !entry.attachment &&
      !turnImageIds.includes(entry.citation.id) &&
      entry.citation.score >= settings.relevanceFloor,
  );
  if (matches.length === 0) {
    return decline(
      `${limit}Nothing stored is close enough to "${standaloneQuestion.slice(0, 200)}" to answer from the corpus.`,
    );
  }
  return {
    text: `${limit}The closest matches in the corpus by similarity alone (not checked) are ${listMatches(matches)}.`,
    answered: !aboutImages,
    confidence: round(matches[0]?.citation.score ?? 0),
  };
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

/** The first three matches, cited, with a segment's times. */
function listMatches(matches: readonly Evidence[]): string {
  return matches
    .slice(0, 3)
    .map((entry) => {
      const times =
        entry.citation.kind === "video_segment"
          ? ` (${formatSeconds(entry.citation.start)}–${formatSeconds(entry.citation.end)})`
          : "";
      return `${entry.citation.id}${times} ${cite(entry.citation.id)}`;
    })
    .join(", ");
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
  textQuestion,
  canGround = true,
  settings: given = {},
}: OfflineComposeInput): OfflineAnswer {
  const settings = { ...DEFAULT_OFFLINE_SETTINGS, ...given };
  if (textQuestion !== undefined) return composeTextAnswer({ textQuestion, evidence, turnImageIds });
  if (!canGround && intent.type !== "when" && evidence.every((entry) => entry.findings.length === 0)) {
    return composeUngrounded({ intent, standaloneQuestion, evidence, turnImageIds, settings });
  }
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

  if (intent.type === "area" && intent.area !== undefined)
    return composeArea({ area: intent.area, turnImages, settings });

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
    // Regions retrieved (`kinds` listing `region`) are objects the detection head found at ingest: one
    // whose label and attributes are the object asked for answers a question about one object.
    const regions = intent.objects.length === 1 ? matchingRegions(evidence, intent.objects[0]) : [];
    if (checked.length === 0 && regions.length > 0) {
      const [first, ...others] = regions as [Evidence, ...Evidence[]];
      const lead = intent.type === "exist" ? "Yes: " : "";
      const more =
        others.length > 0
          ? ` Also ${others
              .slice(0, 2)
              .map((entry) => regionName(entry))
              .join(", ")}.`
          : "";
      return {
        text: `${lead}${first.citation.parentId ?? first.citation.id} shows ${named} ${cite(first.citation.id)}.${more}`,
        answered: true,
        confidence: round(first.citation.boxes?.[0]?.score ?? 0),
      };
    }
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
  return {
    text: `The closest matches in the corpus are ${listMatches(matches)}.`,
    answered: true,
    confidence: round(matches[0]?.citation.score ?? 0),
  };
}

/**
 * What is in a part of the turn's images ("what is in the top-left?"), from the detection head's findings:
 * the objects there with their attributes, or that there is nothing. Declines without an image, or when
 * no image could be looked at that way (a pack without a detection head).
 */
function composeArea({
  area,
  turnImages,
  settings,
}: {
  area: ImageArea;
  turnImages: readonly Evidence[];
  settings: OfflineComposerSettings;
}): OfflineAnswer {
  const where = areaPhrase(area);
  if (turnImages.length === 0) {
    return decline(
      `This question is about what is ${where} of one image, and none is attached or named. Attach the image, or name a stored item by its id (img_…), and ask again.`,
    );
  }
  const sentences: string[] = [];
  let confidence = 1;
  for (const entry of turnImages) {
    const finding = entry.findings.find(
      (item) => item.source === "detector" && item.question.startsWith("What is"),
    );
    if (finding === undefined) continue;
    const image = turnImages.length === 1 ? "the image" : entry.citation.id;
    const maybe = hedge(finding.probability, settings);
    sentences.push(
      finding.answer === "nothing"
        ? `There is ${maybe}nothing ${where} of ${image} ${cite(entry.citation.id)}.`
        : `${capitalize(where)} of ${image} there is ${maybe}${finding.answer} ${cite(entry.citation.id)}.`,
    );
    confidence = Math.min(confidence, finding.probability);
  }
  if (sentences.length === 0) {
    return decline(
      `The model pack has no detection head, so Loupe cannot tell what is ${where} of an image; ask about a named object instead ("is the red circle on the left or the right?").`,
    );
  }
  return { text: sentences.join(" "), answered: true, confidence: round(confidence) };
}

/** The region evidence whose object (its box's label and attributes) is the one named, best first. */
function matchingRegions(evidence: readonly Evidence[], object: ObjectMention | undefined): Evidence[] {
  if (object === undefined) return [];
  return evidence.filter((entry) => {
    const box = entry.citation.kind === "region" ? entry.citation.boxes?.[0] : undefined;
    if (box === undefined) return false;
    return (
      (object.shape === undefined || box.label === object.shape) &&
      (object.color === undefined || box.attributes.color === object.color) &&
      (object.size === undefined || box.attributes.size === object.size)
    );
  });
}

/** `the small green star in img_… [reg_…]`: a region as an answer names it. */
function regionName(entry: Evidence): string {
  const box = entry.citation.boxes?.[0];
  const what =
    box === undefined
      ? "the object"
      : `the ${[box.attributes.size, box.attributes.color, box.label].filter((word) => word !== undefined && word.length > 0).join(" ")}`;
  const where = entry.citation.parentId === undefined ? "" : ` in ${entry.citation.parentId}`;
  return `${what}${where} ${cite(entry.citation.id)}`;
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

/** Longest part of a line quoted in an answer, in characters. */
const MAX_QUOTE_CHARS = 200;

/**
 * A line as quoted in an answer: whitespace collapsed, capped, and with anything that reads as a
 * citation (`[img_…]`, `[att_1]`) put in parentheses, so the text of an image cannot make the answer
 * cite other evidence. Markup and links are left to the answer guard, like all stored text.
 */
export function quoteLine(text: string): string {
  let quoted = text
    .replace(/\s+/g, " ")
    .trim()
    .replace(/\[((?:img|seg|tri|reg|att)_[^\]]*)\]/g, "($1)");
  if (quoted.length > MAX_QUOTE_CHARS) quoted = `${quoted.slice(0, MAX_QUOTE_CHARS - 1).trimEnd()}…`;
  return `"${quoted}"`;
}

function quoteAll(lines: readonly OcrLine[]): string {
  const quotes = lines.map((line) => quoteLine(line.text));
  return quotes.length <= 1 ? (quotes[0] ?? "") : `${quotes.slice(0, -1).join(", ")} and ${quotes.at(-1)}`;
}

/** How sure an answer quoting these lines is: the recognizer's confidence, lower for a loose match. */
function quoteConfidence(entry: Evidence, question: TextQuestion): number {
  const lines = entry.citation.lines ?? [];
  const recognized = Math.min(...lines.map((line) => line.confidence));
  const strict = question.codes.length > 0 || question.phrases.length > 0;
  const asked = question.focus.some((focus) => focus !== "any") || question.keywords.length > 0;
  return round(recognized * (strict ? 1 : asked ? 0.9 : 0.75));
}

/** `img_… (12 s–14 s of video vid_…)`: how a retrieved item is named in an answer. */
function itemName(entry: Evidence): string {
  if (entry.citation.kind !== "video_segment") return entry.citation.id;
  const video = entry.videoId === undefined ? "" : ` of video ${entry.videoId}`;
  return `${entry.citation.id} (${formatSeconds(entry.citation.start)}–${formatSeconds(entry.citation.end)}${video})`;
}

/** "The port is 5432: " when the question asks for a value the first quoted line holds. */
function valueLead(question: TextQuestion, lines: readonly OcrLine[]): string {
  for (const line of lines) {
    const value = askedValue(question, line.text);
    if (value !== undefined)
      return `The ${value.kind === "port" ? "port" : question.focus.includes("error") ? "error code" : "code"} is ${value.value}: `;
  }
  return "";
}

/**
 * The answer to a question about text: the lines of the evidence that answer it, quoted, with the
 * evidence cited (its citation carries the lines' boxes). About the turn's images when it has some and
 * the question does not ask which stored item shows the text; otherwise about the stored images and
 * video keyframes whose text answers it, best first. It declines when no line answers.
 */
export function composeTextAnswer({
  textQuestion,
  evidence,
  turnImageIds,
}: {
  textQuestion: TextQuestion;
  evidence: readonly Evidence[];
  turnImageIds: readonly string[];
}): OfflineAnswer {
  const answering = (entry: Evidence) => (entry.citation.lines?.length ?? 0) > 0;
  const turnImages = evidence.filter((entry) => turnImageIds.includes(entry.citation.id));
  const asked = [...textQuestion.codes, ...textQuestion.phrases.map((phrase) => `"${phrase}"`)];
  const askedText = asked.length > 0 ? asked.join(", ") : "what was asked";

  if (turnImages.length > 0 && !textQuestion.corpusScope) {
    const read = turnImages.filter((entry) => entry.ocr !== undefined);
    if (read.length === 0) {
      return decline(
        `No text could be read in ${turnImages.map((entry) => entry.citation.id).join(", ")}, so the image does not answer this question.`,
      );
    }
    const answered = turnImages.filter(answering);
    if (answered.length === 0) {
      const lineCount = read.reduce((sum, entry) => sum + (entry.ocr?.lines.length ?? 0), 0);
      return decline(
        lineCount === 0
          ? `No text was found in ${read.map((entry) => entry.citation.id).join(", ")}, so the image does not answer this question.`
          : `None of the ${lineCount} lines of text read in ${read.map((entry) => entry.citation.id).join(", ")} holds ${askedText}, so the image does not answer this question.`,
      );
    }
    const sentences = answered.map((entry) => {
      const lines = entry.citation.lines ?? [];
      const subject = turnImages.length === 1 ? "The image" : `Image ${entry.citation.id}`;
      return `${valueLead(textQuestion, lines)}${subject} reads ${quoteAll(lines)} ${cite(entry.citation.id)}.`;
    });
    return {
      text: sentences.join(" "),
      answered: true,
      confidence: Math.min(...answered.map((entry) => quoteConfidence(entry, textQuestion))),
    };
  }

  // The stored items (and the turn's images, for "which of these…") whose text answers, best first:
  // grounding ordered the evidence by how well its best line answers.
  const candidates = [
    ...turnImages.filter(answering),
    ...evidence.filter((entry) => !turnImageIds.includes(entry.citation.id) && answering(entry)),
  ];
  const [best, ...others] = candidates;
  if (best === undefined) {
    const where = turnImages.length > 0 ? "the attached images or the corpus" : "the corpus";
    return decline(
      asked.length > 0
        ? `No image or video frame in ${where} shows ${askedText} in its text, so ${where === "the corpus" ? "the corpus does" : "they do"} not answer this question.`
        : `No text read in ${where} answers this question, so ${where === "the corpus" ? "the corpus does" : "they do"} not answer it.`,
    );
  }
  const lines = best.citation.lines ?? [];
  // Other items that hold the same code or phrase (the question asked for it exactly).
  const alike = textQuestion.codes.length + textQuestion.phrases.length > 0 ? others.slice(0, 3) : [];
  const also =
    alike.length > 0
      ? ` Also ${alike.map((entry) => `${itemName(entry)} ${cite(entry.citation.id)}`).join(", ")}.`
      : "";
  // The code asked for, as asked: OCR may have spaced or misread it in the line quoted.
  const shown = textQuestion.codes.length > 0 ? ` shows ${textQuestion.codes.join(", ")}: it` : "";
  const sentence = `${valueLead(textQuestion, lines)}${itemName(best)}${shown} reads ${quoteAll(lines)} ${cite(best.citation.id)}.`;
  const text =
    textQuestion.corpusScope || turnImages.length > 0
      ? sentence
      : `No image is attached or named, so this is from the closest stored match: ${sentence.replace(/^The /, "the ")}`;
  return {
    text: `${text}${also}`,
    answered: true,
    confidence: round(
      quoteConfidence(best, textQuestion) * (textQuestion.corpusScope || asked.length > 0 ? 1 : 0.5),
    ),
  };
}
