/**
 * The first step of a turn: what is asked, about which images. Follow-ups are resolved against earlier
 * user turns ("and how many are blue?" after "how many red objects are there?" becomes "How many blue
 * objects are there?"), and a turn without images that is not about the corpus keeps talking about the
 * images of the last turn that had some, or about the item the last answer cited. A question about text
 * in images ("what does the error say?") is read beside the vocabulary's intent ({@link TextQuestion}).
 */
import type { PackVocabulary } from "../inference/index.ts";
import type { ImageQuery } from "../search/index.ts";
import { areaQuestion } from "./image-area.ts";
import {
  canonicalQuestion,
  describeObject,
  type Intent,
  type ObjectMention,
  parseQuestion,
  VQA_INTENT_TYPES,
} from "./question-parser.ts";
import { readTextQuestion, type TextQuestion } from "./text-question.ts";
import type { ChatTurn } from "./types.ts";

/** An image the turn is about, with the evidence id it is cited by. */
export interface TurnImage {
  /** `att_<n>` for image bytes sent in the conversation, the item id for stored items (sent or named by id). */
  evidenceId: string;
  image: ImageQuery;
  /** True for images sent by the user (bytes or ids in `images`); false for items named in the text. */
  attached: boolean;
}

/** What {@link understandTurn} returns. */
export interface UnderstoodTurn {
  intent: Intent;
  /** The question with references resolved, worded for the VQA head when the intent allows. */
  standaloneQuestion: string;
  /** The text retrieval embeds: a description of what is looked for when the intent names objects. */
  retrievalText: string;
  images: TurnImage[];
  /** Set when the turn asks about text in images: then the answer quotes OCR lines. */
  textQuestion?: TextQuestion;
}

const STORED_IMAGE_ID = /^(img|seg|tri)_/;

function mergeObject(
  current: ObjectMention | undefined,
  previous: ObjectMention | undefined,
): ObjectMention[] {
  if (current === undefined) return previous === undefined ? [] : [previous];
  return [current];
}

/**
 * Completes an intent from the one before it: a follow-up keeps the earlier type when it names only
 * objects ("what about the star?"), and the earlier objects when it names only a type ("and how many?").
 */
export function resolveFollowUp(current: Intent, previous: Intent | undefined): Intent {
  if (previous === undefined) return current;
  // "and the bottom-right?" after "what is in the top-left?".
  if (current.type === "unknown" && current.area !== undefined && previous.type === "area")
    return { ...current, type: "area" };
  const complete = VQA_INTENT_TYPES.includes(current.type) && canonicalQuestion(current) !== undefined;
  if (complete && !(current.type === "count" && current.objects.length === 0 && current.followUp))
    return current;
  if ((current.type === "unknown" || current.type === "describe") && current.objects.length > 0) {
    if (!VQA_INTENT_TYPES.includes(previous.type) || !current.followUp) return current;
    const [object] = current.objects;
    const [before] = previous.objects;
    // "What color is the circle?" → "what about the star?": the new mention replaces the attribute the
    // earlier question was keyed on, and keeps the rest.
    const merged: ObjectMention = { ...before, ...object };
    if (previous.type === "color") delete merged.color;
    if (previous.type === "shape") delete merged.shape;
    return { ...current, type: previous.type, objects: [merged] };
  }
  if (VQA_INTENT_TYPES.includes(current.type) && current.objects.length === 0) {
    return { ...current, objects: mergeObject(undefined, previous.objects[0]) };
  }
  return current;
}

/**
 * The text retrieval embeds for an intent: a description of the objects or action, else the question.
 * Plurals of shapes are the vocabulary's.
 */
export function retrievalTextFor(intent: Intent, question: string, vocabulary?: PackVocabulary): string {
  if (intent.type === "when" && intent.action !== undefined) {
    const [object] = intent.objects;
    return `${object === undefined ? "an object" : describeObject({ ...object, count: undefined })} ${intent.action}`;
  }
  if ((intent.type === "exist" || intent.type === "find") && intent.objects.length > 0) {
    return intent.objects.map((object) => describeObject(object, { vocabulary })).join(" and ");
  }
  return question;
}

/** Reads one turn, in the pack's vocabulary, in the light of the conversation before it. */
export function understandTurn({
  question,
  images = [],
  history = [],
  vocabulary,
}: {
  question: string;
  images?: readonly ImageQuery[];
  history?: readonly ChatTurn[];
  vocabulary: PackVocabulary;
}): UnderstoodTurn {
  let previous: Intent | undefined;
  let previousText: TextQuestion | undefined;
  for (const turn of history) {
    if (turn.role !== "user") continue;
    previous = resolveFollowUp(parseQuestion(turn.content, vocabulary), previous);
    previousText = readTextQuestion(turn.content, previous);
  }
  const parsed = parseQuestion(question, vocabulary);
  let intent = parsed.followUp || parsed.type === "unknown" ? resolveFollowUp(parsed, previous) : parsed;
  // A follow-up to a question about text ("and in the other one?") still asks about text.
  const imageInTurn =
    images.length > 0 ||
    intent.ids.some((id) => STORED_IMAGE_ID.test(id)) ||
    history.some((turn) => turn.role === "user" && (turn.images?.length ?? 0) > 0);
  let textQuestion = readTextQuestion(question, intent, { imageInTurn });
  if (
    textQuestion === undefined &&
    previousText !== undefined &&
    parsed.followUp &&
    intent.type === "unknown"
  )
    textQuestion = { ...previousText, corpusScope: intent.corpusScope };
  // "Which screenshot shows …" searches the corpus, not the images of an earlier turn.
  if (textQuestion?.corpusScope === true && !intent.corpusScope) intent = { ...intent, corpusScope: true };
  const canonical =
    intent.type === "area" && intent.area !== undefined
      ? areaQuestion(intent.area)
      : VQA_INTENT_TYPES.includes(intent.type)
        ? canonicalQuestion(intent, { vocabulary })
        : undefined;
  const standaloneQuestion =
    intent.objects.length <= 1 && canonical !== undefined ? canonical : question.trim();

  // Images sent in the whole conversation are numbered in order, so att_2 means the same in every turn.
  const sent: ImageQuery[] = [];
  let lastTurnImages: number[] = [];
  for (const turn of history) {
    if (turn.role !== "user" || turn.images === undefined || turn.images.length === 0) continue;
    lastTurnImages = turn.images.map((image) => sent.push(image) - 1);
  }
  const current = images.map((image) => sent.push(image) - 1);

  let selected: number[] = current;
  if (selected.length === 0 && !intent.corpusScope && lastTurnImages.length > 0) selected = lastTurnImages;
  // A stored item sent by id is cited by its own id (with its media URLs); sent bytes are `att_<n>`.
  const turnImages: TurnImage[] = [];
  for (const index of selected) {
    const image = sent[index] as ImageQuery;
    const evidenceId = "id" in image ? image.id : `att_${index + 1}`;
    if (!turnImages.some((entry) => entry.evidenceId === evidenceId)) {
      turnImages.push({ evidenceId, image, attached: true });
    }
  }

  // Stored images named in the question ("how many stars are in img_…?") are looked at like attachments.
  for (const id of intent.ids) {
    if (STORED_IMAGE_ID.test(id) && !turnImages.some((entry) => entry.evidenceId === id)) {
      turnImages.push({ evidenceId: id, image: { id }, attached: false });
    }
  }
  // "and in that image?" after an answer that cited stored images: the first cited image.
  if (turnImages.length === 0 && !intent.corpusScope && parsed.followUp) {
    const lastAnswer = [...history].reverse().find((turn) => turn.role === "assistant");
    const cited = lastAnswer?.citations?.find((id) => id.startsWith("img_"));
    if (cited !== undefined) turnImages.push({ evidenceId: cited, image: { id: cited }, attached: false });
  }

  return {
    intent,
    standaloneQuestion,
    retrievalText: retrievalTextFor(intent, standaloneQuestion, vocabulary),
    images: turnImages,
    ...(textQuestion === undefined ? {} : { textQuestion }),
  };
}
