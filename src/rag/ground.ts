/**
 * The grounding step: turns retrieved candidates and the turn's images into evidence with what the VQA
 * head sees in them. Each image is decoded and run through the vision tower once per turn
 * ({@link VisualCache}); its embedding drops near-duplicate candidates, its token states feed the VQA
 * head. A stored triple whose image is a near-copy of an attached image and whose question means the
 * same supplies its stored answer. With a detection head, counts and sides are also read off its boxes,
 * "what is in the top-left?" is answered from them, and each citation carries the boxes of the objects its
 * findings are about.
 */
import type { Detection, ImageTokens, ModelPack, PackVocabulary, VqaAnswer } from "../inference/index.ts";
import { cosineSimilarity, findObject } from "../inference/index.ts";
import { type HalfMasks, maskHalves } from "../media/half-mask.ts";
import type { MediaReader, MediaUrls } from "../media/media-port.ts";
import type { SearchHit, StoredRecord, StoredTriple } from "../store/index.ts";
import type { FusedItem } from "./fusion.ts";
import { areaQuestion, type ImageArea, inArea } from "./image-area.ts";
import {
  colorsAndShapes,
  describeObject,
  type Intent,
  type ObjectMention,
  pluralOf,
  questionMeaningKey,
  VQA_INTENT_TYPES,
  vqaQuestionsFor,
} from "./question-parser.ts";
import type { Citation, CitedBox, Evidence, Finding, HeadOpinions } from "./types.ts";
import type { TurnImage } from "./understand.ts";

/** Thresholds and sizes of grounding; the defaults suit Loupe's packs. */
export interface GroundingSettings {
  /** Retrieved images the VQA head looks at for corpus questions. */
  imagesToGround: number;
  /** Retrieved images a question about one image is put to when the turn has no image. */
  imagesForImageQuestions: number;
  /** Evidence kept after fusion (besides the turn's images). */
  maxEvidence: number;
  /** Cosine of two image embeddings above which the lower-ranked one is a near-duplicate. */
  duplicateCosine: number;
  /** Cosine between an attached image and a triple's image above which the two are the same picture. */
  tripleImageCosine: number;
  /** Cosine between two question embeddings above which they mean the same (when parsing cannot tell). */
  tripleQuestionCosine: number;
  /** Alternatives kept per finding. */
  alternatives: number;
  /** Attached images whose text is read (OCR) in one turn, for a question about text; the rest are not read. */
  imagesToRead: number;
  /**
   * Time one turn may spend grounding, in ms, counted from the start of the step; once spent, the
   * remaining retrieved images are not checked (they stay as evidence, marked `unchecked`). The first
   * image is checked whatever the time, so an answer always has verified evidence to cite. 0: no limit.
   */
  budgetMs: number;
}

export const DEFAULT_GROUNDING_SETTINGS: GroundingSettings = {
  imagesToGround: 6,
  imagesForImageQuestions: 3,
  maxEvidence: 8,
  duplicateCosine: 0.985,
  tripleImageCosine: 0.95,
  tripleQuestionCosine: 0.95,
  alternatives: 3,
  imagesToRead: 4,
  budgetMs: 0,
};

/** What grounding needs of the model pack. */
/** The detection head is optional: without one, position questions are answered from half-painted copies. */
export type GroundingModels = Pick<ModelPack, "imageEmbedder" | "textEmbedder" | "vqaHead"> &
  Partial<Pick<ModelPack, "detector">>;

interface Encoded {
  embedding: Float32Array;
  tokens: ImageTokens;
}

/**
 * Encoded images of one turn, by evidence id: each image is read and run through the vision tower at most
 * once, whether grounding or verification asks first.
 */
export class VisualCache {
  readonly #models: GroundingModels;
  readonly #loaders = new Map<string, () => Promise<Uint8Array>>();
  readonly #bytes = new Map<string, Promise<Uint8Array>>();
  readonly #encoded = new Map<string, Promise<Encoded>>();
  readonly #halves = new Map<string, Promise<HalfMasks>>();
  readonly #detections = new Map<string, Promise<Detection[]>>();

  readonly #maxImagePixels: number;

  constructor({ models, maxImagePixels = 40_000_000 }: { models: GroundingModels; maxImagePixels?: number }) {
    this.#models = models;
    this.#maxImagePixels = maxImagePixels;
  }

  /** Registers how to read an evidence's image; nothing is read until asked. */
  register(evidenceId: string, load: () => Promise<Uint8Array>): void {
    if (!this.#loaders.has(evidenceId)) this.#loaders.set(evidenceId, load);
  }

  has(evidenceId: string): boolean {
    return this.#loaders.has(evidenceId);
  }

  /** The encoded bytes of an evidence's image. */
  bytes(evidenceId: string): Promise<Uint8Array> {
    let bytes = this.#bytes.get(evidenceId);
    if (bytes === undefined) {
      const load = this.#loaders.get(evidenceId);
      if (load === undefined) throw new Error(`unreachable: no image registered for ${evidenceId}`);
      bytes = load();
      this.#bytes.set(evidenceId, bytes);
    }
    return bytes;
  }

  /** Encodes several evidences' images in one batch (those not encoded yet). */
  async encodeMany(evidenceIds: readonly string[]): Promise<void> {
    const missing = [...new Set(evidenceIds)].filter((id) => !this.#encoded.has(id) && this.#loaders.has(id));
    if (missing.length === 0) return;
    const batch = (async () => {
      const images = await Promise.all(missing.map((id) => this.bytes(id)));
      const encoded = await this.#models.imageEmbedder.encode({ images, withTokens: true });
      return encoded;
    })();
    missing.forEach((id, index) => {
      const one = batch.then((encoded) => {
        const embedding = encoded.embeddings[index];
        const tokens = encoded.tokens?.[index];
        if (embedding === undefined || tokens === undefined) {
          throw new Error("unreachable: the vision tower returned fewer outputs than images");
        }
        return { embedding, tokens };
      });
      // The failure reaches the caller through `await batch`; whoever asks for this image later gets it
      // again from the stored promise. Without a handler here it would also surface as unhandled.
      one.catch(() => undefined);
      this.#encoded.set(id, one);
    });
    await batch;
  }

  async encoded(evidenceId: string): Promise<Encoded> {
    await this.encodeMany([evidenceId]);
    const encoded = this.#encoded.get(evidenceId);
    if (encoded === undefined) throw new Error(`unreachable: no image registered for ${evidenceId}`);
    return encoded;
  }

  /**
   * Full answer distributions (every answer, most probable first) for questions about one image. Counts
   * and sides come from the detection head when it is confident (see {@link VisualCache.opinions}); a side
   * it cannot find is asked of half-painted copies ({@link VisualCache.askPosition}).
   */
  async ask(evidenceId: string, questions: readonly string[]): Promise<VqaAnswer[][]> {
    return (await this.opinions(evidenceId, questions)).map((opinion) => opinion.answers);
  }

  /**
   * The answer to each question about one image, with whose answer it is. The VQA head answers every
   * question; a count ("How many stars are there?") or a side ("Is the red star on the left or the
   * right?") is also read off the detection head's boxes, and its answer stands when it is confident (at
   * least even odds for a count, a likely enough detection for a side). When the two heads' most probable
   * answers differ, both are reported in `disagreement`.
   */
  async opinions(evidenceId: string, questions: readonly string[]): Promise<Opinion[]> {
    const head = this.#models.vqaHead;
    if (head === undefined || questions.length === 0)
      return questions.map(() => ({ answers: [], source: "vqa" as const }));
    const { tokens } = await this.encoded(evidenceId);
    const answers = await head.answerMany({ image: tokens, questions, topK: head.answers.length });
    return Promise.all(
      questions.map(async (question, index): Promise<Opinion> => {
        const asked = answers[index] ?? [];
        const counted = COUNT_QUESTION.exec(question);
        if (counted !== null) {
          const count = await this.#detectorCount(evidenceId, counted[1] ?? "");
          if (count === undefined) return { answers: asked, source: "vqa" };
          const fromDetections = countDistribution(count, asked);
          const followed = fromDetections === undefined ? "vqa" : "detector";
          return {
            answers: fromDetections ?? asked,
            source: followed,
            ...disagreementOf({
              detector: { answer: count.answer, probability: count.certainty },
              vqa: asked[0],
              followed,
            }),
          };
        }
        const position = POSITION_QUESTION.exec(question);
        if (position === null) return { answers: asked, source: "vqa" };
        const [, color = "", shape = ""] = position;
        const side = await this.positionFromDetections(evidenceId, { color, shape });
        if (side === undefined)
          return {
            answers: await this.askPosition(evidenceId, `Is there a ${color} ${shape}?`),
            source: "vqa",
          };
        const [best] = side;
        return {
          answers: side,
          source: "detector",
          ...(best === undefined
            ? {}
            : disagreementOf({ detector: best, vqa: asked[0], followed: "detector" })),
        };
      }),
    );
  }

  /** The objects the pack's detection head finds in an evidence's image (none without a head). */
  async detections(evidenceId: string): Promise<Detection[]> {
    const detector = this.#models.detector;
    if (detector === undefined) return [];
    let found = this.#detections.get(evidenceId);
    if (found === undefined) {
      found = (async () => {
        const [{ tokens }, bytes] = await Promise.all([this.encoded(evidenceId), this.bytes(evidenceId)]);
        const size = await this.#models.imageEmbedder.processor.imageSize({ image: bytes });
        const [image] = await detector.detectTokens({ tokens: [tokens], sizes: [size], images: [bytes] });
        return image?.detections ?? [];
      })();
      found.catch(() => undefined);
      this.#detections.set(evidenceId, found);
    }
    return found;
  }

  /** Whether the pack has a detection head (without one, nothing is read off boxes). */
  get canDetect(): boolean {
    return this.#models.detector !== undefined;
  }

  /**
   * How many objects of a kind (`stars`, `red objects`, `objects`) the detection head finds: detections whose
   * most probable class and colour match. Its probability is how sure the head is of every detection either
   * way (each one's probability of matching or of not matching, whichever is larger, multiplied); the VQA head's
   * other answers share the rest. Undefined without a head, for a kind it does not know, a count outside the
   * answers, or when it is less sure than even odds (the VQA head's answer stands then).
   */
  async countFromDetections(
    evidenceId: string,
    what: string,
    asked: readonly VqaAnswer[],
  ): Promise<VqaAnswer[] | undefined> {
    const count = await this.#detectorCount(evidenceId, what);
    return count === undefined ? undefined : countDistribution(count, asked);
  }

  /** The detection head's count of a kind, how sure it is, and the detections counted. */
  async #detectorCount(evidenceId: string, what: string): Promise<DetectorCount | undefined> {
    const detector = this.#models.detector;
    if (detector === undefined) return undefined;
    const { classes, attributes } = detector.config;
    const colorWord = /^(\w+) objects$/.exec(what)?.[1];
    const color =
      colorWord !== undefined && (attributes.color ?? []).includes(colorWord) ? colorWord : undefined;
    const shape = classes.find((label) => what === `${label}s` || what === `${label}es` || what === label);
    if (what !== "objects" && color === undefined && shape === undefined) return undefined;
    const detections = await this.detections(evidenceId);
    const counted: Detection[] = [];
    let certainty = 1;
    for (const detection of detections) {
      const probabilities = detection.probabilities;
      const pLabel =
        shape === undefined ? 1 : (probabilities?.label[shape] ?? (detection.label === shape ? 1 : 0));
      const pColor =
        color === undefined
          ? 1
          : (probabilities?.attributes.color?.[color] ??
            (detection.attributes.color?.value === color ? 1 : 0));
      const matches =
        (shape === undefined || detection.label === shape) &&
        (color === undefined || detection.attributes.color?.value === color);
      if (matches) counted.push(detection);
      const pMatch = pLabel * pColor;
      certainty *= Math.max(pMatch, 1 - pMatch);
    }
    return { answer: String(counted.length), certainty, counted };
  }

  /**
   * Which side an object is on, read off the detection that most likely is it (its class and colour
   * probabilities, so a small circle the head labels a hexagon is still found): left when its box's center
   * lies left of the middle. The probability grows with that likelihood. Undefined without a detection head,
   * or when no detection is likely enough to be the object (the caller then asks the VQA head).
   */
  async positionFromDetections(
    evidenceId: string,
    { color, shape }: { color: string; shape: string },
  ): Promise<VqaAnswer[] | undefined> {
    const found = await this.#likelyObject(evidenceId, { label: shape, attributes: { color } });
    if (found === undefined) return undefined;
    const { box } = found.detection;
    const side = (box.x0 + box.x1) / 2 < 0.5 ? "left" : "right";
    const probability = 0.5 + 0.5 * Math.min(1, found.likelihood);
    return [
      { answer: side, probability },
      { answer: side === "left" ? "right" : "left", probability: 1 - probability },
    ];
  }

  /** The detection most likely to be an object, when likely enough to answer from (see {@link findObject}). */
  async #likelyObject(
    evidenceId: string,
    { label, attributes }: { label?: string; attributes: Record<string, string> },
  ): Promise<{ detection: Detection; likelihood: number } | undefined> {
    if (this.#models.detector === undefined) return undefined;
    const found = findObject({
      detections: await this.detections(evidenceId),
      ...(label === undefined ? {} : { label }),
      attributes,
    });
    return found === undefined || found.likelihood < MIN_OBJECT_LIKELIHOOD ? undefined : found;
  }

  /**
   * The boxes of the objects an answer to a canonical question is about, where the detection head agrees
   * with the answer: the detections counted when the count is the head's, the detection of the object whose
   * side, colour, shape or size was asked (when it has the answered value), the object asked about when
   * the answer is that it is there. None without a detection head, for other questions, or where the head
   * does not back the answer.
   */
  async boxesFor(evidenceId: string, question: string, answer: string): Promise<Detection[]> {
    if (this.#models.detector === undefined) return [];
    const counted = COUNT_QUESTION.exec(question);
    if (counted !== null) {
      const count = await this.#detectorCount(evidenceId, counted[1] ?? "");
      return count !== undefined && count.answer === answer ? count.counted : [];
    }
    const position = POSITION_QUESTION.exec(question);
    if (position !== null) {
      const [, color = "", shape = ""] = position;
      const found = await this.#likelyObject(evidenceId, { label: shape, attributes: { color } });
      if (found === undefined) return [];
      const { box } = found.detection;
      return ((box.x0 + box.x1) / 2 < 0.5 ? "left" : "right") === answer ? [found.detection] : [];
    }
    const wanted = this.#objectAnswered(question, answer);
    if (wanted === undefined) return [];
    const found = await this.#likelyObject(evidenceId, wanted);
    return found === undefined ? [] : [found.detection];
  }

  /**
   * The object an answer to a colour, shape, presence or size question is about, as a description to find
   * among the detections (`What color is the star?` answered `red`: a red star); undefined for other
   * questions and for presence answered `no`.
   */
  #objectAnswered(
    question: string,
    answer: string,
  ): { label?: string; attributes: Record<string, string> } | undefined {
    const color = COLOR_QUESTION.exec(question);
    if (color !== null) return { label: color[1] as string, attributes: { color: answer } };
    const shape = SHAPE_QUESTION.exec(question);
    if (shape !== null) return { label: answer, attributes: { color: shape[1] as string } };
    const exist = EXIST_QUESTION.exec(question);
    if (exist !== null)
      return answer === "yes"
        ? { label: exist[2] as string, attributes: { color: exist[1] as string } }
        : undefined;
    const size = SIZE_QUESTION.exec(question);
    if (size === null) return undefined;
    const sizes = this.#models.detector?.config.attributes.size ?? [];
    return {
      label: size[2] as string,
      attributes: { color: size[1] as string, ...(sizes.includes(answer) ? { size: answer } : {}) },
    };
  }

  /**
   * The objects the detection head finds in a part of the image (by the centres of their boxes, see
   * `image-area.ts`), left to right and top to bottom, with how sure it is of the list: the lowest score of
   * an object listed, or for an empty part the lowest score of the objects found elsewhere (1 when it
   * found none). Undefined without a detection head.
   */
  async objectsIn(
    evidenceId: string,
    area: ImageArea,
  ): Promise<{ objects: Detection[]; probability: number } | undefined> {
    if (this.#models.detector === undefined) return undefined;
    const detections = await this.detections(evidenceId);
    const objects = detections
      .filter((detection) => inArea(area, detection.box))
      .sort(
        (left, right) =>
          left.box.x0 + left.box.x1 - (right.box.x0 + right.box.x1) || left.box.y0 - right.box.y0,
      );
    const scored = objects.length > 0 ? objects : detections;
    const probability = scored.length === 0 ? 1 : Math.min(...scored.map((detection) => detection.score));
    return { objects, probability };
  }

  /**
   * Which side an object is on, from two presence questions: the image with its right half painted over
   * and the image with its left half painted over are each asked `presence` ("Is there a red star?"),
   * and the side whose copy answers "yes" more surely wins. Presence is what a VQA head answers best (it
   * learns it before left/right), and this keeps the answer in the head's vocabulary.
   */
  async askPosition(evidenceId: string, presence: string): Promise<VqaAnswer[]> {
    const head = this.#models.vqaHead;
    if (head === undefined) return [];
    let halves = this.#halves.get(evidenceId);
    if (halves === undefined) {
      halves = this.bytes(evidenceId).then((bytes) => maskHalves({ bytes, maxPixels: this.#maxImagePixels }));
      this.#halves.set(evidenceId, halves);
      const shared = halves;
      this.register(`${evidenceId}#left`, async () => (await shared).left);
      this.register(`${evidenceId}#right`, async () => (await shared).right);
    }
    await halves;
    await this.encodeMany([`${evidenceId}#left`, `${evidenceId}#right`]);
    const [left, right] = await Promise.all(
      (["left", "right"] as const).map(async (side) => {
        const { tokens } = await this.encoded(`${evidenceId}#${side}`);
        const [distribution] = await head.answerMany({
          image: tokens,
          questions: [presence],
          topK: head.answers.length,
        });
        return probabilityOf(distribution ?? [], "yes");
      }),
    );
    const total = (left ?? 0) + (right ?? 0);
    const pLeft = total === 0 ? 0.5 : (left ?? 0) / total;
    const sides = [
      { answer: "left", probability: pLeft },
      { answer: "right", probability: 1 - pLeft },
    ];
    return sides.sort((a, b) => b.probability - a.probability);
  }
}

const POSITION_QUESTION = /^Is the (\w+) (\w+) on the left or the right\?$/;
const COUNT_QUESTION = /^How many (.+) are there\?$/;
const COLOR_QUESTION = /^What color is the (\w+)\?$/;
const SHAPE_QUESTION = /^What shape is the (\w+) object\?$/;
const EXIST_QUESTION = /^Is there an? (\w+) (\w+)\?$/;
const SIZE_QUESTION = /^Is the (\w+) (\w+) small or large\?$/;

/** An answer to one question about one image, and whose it is. */
export interface Opinion {
  /** Every answer, most probable first. */
  answers: VqaAnswer[];
  /** `detector`: read off the detection head's boxes; `vqa`: the VQA head's (or its half-painted copies'). */
  source: "vqa" | "detector";
  /** Set when both heads answered and their most probable answers differ. */
  disagreement?: HeadOpinions;
}

/** The detection head's count of a kind of object in one image. */
interface DetectorCount {
  answer: string;
  /** How sure the head is of every detection, matching or not (see {@link VisualCache.countFromDetections}). */
  certainty: number;
  counted: Detection[];
}

/**
 * The distribution of a count the detection head is sure of: its count with its certainty, the VQA head's
 * other answers sharing the rest. Undefined when the head is less sure than even odds or its count is not
 * one of the VQA head's answers.
 */
function countDistribution(count: DetectorCount, asked: readonly VqaAnswer[]): VqaAnswer[] | undefined {
  const { answer, certainty } = count;
  if (certainty < 0.5 || !asked.some((candidate) => candidate.answer === answer)) return undefined;
  const others = asked.filter((candidate) => candidate.answer !== answer);
  const rest = others.reduce((sum, candidate) => sum + candidate.probability, 0);
  return [
    { answer, probability: certainty },
    ...others.map((candidate) => ({
      answer: candidate.answer,
      probability: rest > 0 ? ((1 - certainty) * candidate.probability) / rest : 0,
    })),
  ];
}

const round3 = (value: number) => Math.round(value * 1000) / 1000;

/** `{ disagreement }` when the heads' most probable answers differ, else nothing. */
function disagreementOf({
  detector,
  vqa,
  followed,
}: {
  detector: VqaAnswer;
  vqa: VqaAnswer | undefined;
  followed: "detector" | "vqa";
}): { disagreement?: HeadOpinions } {
  if (vqa === undefined || vqa.answer === detector.answer) return {};
  return {
    disagreement: {
      detector: { answer: detector.answer, probability: round3(detector.probability) },
      vqa: { answer: vqa.answer, probability: round3(vqa.probability) },
      followed,
    },
  };
}

/** A detection as a citation's box: the box rounded to 4 decimals, attribute values, the score. */
export function citedBox(detection: Pick<Detection, "box" | "label" | "attributes" | "score">): CitedBox {
  const at = (value: number) => Math.round(value * 10_000) / 10_000;
  const { x0, y0, x1, y1 } = detection.box;
  return {
    box: { x0: at(x0), y0: at(y0), x1: at(x1), y1: at(y1) },
    label: detection.label,
    attributes: Object.fromEntries(
      Object.entries(detection.attributes).map(([name, attribute]) => [name, attribute.value]),
    ),
    score: round3(detection.score),
  };
}

/**
 * How likely a detection must be the object a position question names (score × class and colour
 * probabilities) to answer from its box; below, the half-painted copies are asked instead.
 */
const MIN_OBJECT_LIKELIHOOD = 0.3;

/** The probability a full answer distribution gives `answer`. */
export function probabilityOf(distribution: readonly VqaAnswer[], answer: string): number {
  return distribution.find((entry) => entry.answer === answer)?.probability ?? 0;
}

function toFinding({
  question,
  distribution,
  alternatives,
  source = "vqa",
  disagreement,
}: {
  question: string;
  distribution: readonly VqaAnswer[];
  alternatives: number;
  source?: Opinion["source"];
  disagreement?: HeadOpinions | undefined;
}): Finding | undefined {
  const [best, ...rest] = distribution;
  if (best === undefined) return undefined;
  return {
    question,
    answer: best.answer,
    probability: best.probability,
    alternatives: rest.slice(0, alternatives).map(({ answer, probability }) => ({ answer, probability })),
    source,
    ...(disagreement === undefined ? {} : { disagreement }),
  };
}

/** The findings of questions put to one image: each answer with whose it is. */
async function askFindings({
  cache,
  evidenceId,
  questions,
  alternatives,
}: {
  cache: VisualCache;
  evidenceId: string;
  questions: readonly string[];
  alternatives: number;
}): Promise<Finding[]> {
  const opinions = await cache.opinions(evidenceId, questions);
  return questions.flatMap((question, index) => {
    const opinion = opinions[index];
    const finding = toFinding({
      question,
      distribution: opinion?.answers ?? [],
      alternatives,
      ...(opinion === undefined ? {} : { source: opinion.source, disagreement: opinion.disagreement }),
    });
    return finding === undefined ? [] : [finding];
  });
}

/**
 * The finding that answers "what is in the top-left?" from the detection head: the objects there in
 * words ("a large red circle and a small blue star", "nothing"), with their boxes. Undefined without a
 * detection head.
 */
async function areaFinding({
  cache,
  evidenceId,
  area,
}: {
  cache: VisualCache;
  evidenceId: string;
  area: ImageArea;
}): Promise<{ finding: Finding; boxes: CitedBox[] } | undefined> {
  const found = await cache.objectsIn(evidenceId, area);
  if (found === undefined) return undefined;
  const boxes = found.objects.map(citedBox);
  return {
    finding: {
      question: areaQuestion(area),
      answer: listObjects(boxes),
      probability: round3(found.probability),
      alternatives: [],
      source: "detector",
    },
    boxes,
  };
}

/** `a large red circle, a small green star and a blue square`, or `nothing`: detected objects in words. */
export function listObjects(boxes: readonly Pick<CitedBox, "label" | "attributes">[]): string {
  const phrases = boxes.map(({ label, attributes }) => {
    const words = [attributes.size, attributes.color, label].filter(
      (word): word is string => word !== undefined && word.length > 0,
    );
    const phrase = words.join(" ");
    return `${/^[aeiou]/.test(phrase) ? "an" : "a"} ${phrase}`;
  });
  if (phrases.length === 0) return "nothing";
  return phrases.length === 1
    ? (phrases[0] as string)
    : `${phrases.slice(0, -1).join(", ")} and ${phrases.at(-1)}`;
}

/**
 * The boxes of the objects an evidence's findings are about, each detection once (see
 * {@link VisualCache.boxesFor}).
 */
async function boxesOfFindings(cache: VisualCache, entry: Evidence): Promise<CitedBox[]> {
  if (!cache.canDetect || !cache.has(entry.citation.id)) return [];
  const seen = new Set<Detection>();
  for (const finding of entry.findings) {
    for (const detection of await cache.boxesFor(entry.citation.id, finding.question, finding.answer))
      seen.add(detection);
  }
  return [...seen].map(citedBox);
}

/**
 * The question that checks one named object in an image and how to read its answer: a colored shape is
 * checked with "Is there a …?", a bare shape or color with "How many …?" (any but `0`, or exactly the
 * count named). Plurals are the vocabulary's.
 */
export function objectCheck(
  object: ObjectMention,
  vocabulary?: PackVocabulary,
): { question: string; score: (distribution: readonly VqaAnswer[]) => number } | undefined {
  if (object.color !== undefined && object.shape !== undefined && (object.count ?? 1) === 1) {
    return { question: `Is there a ${object.color} ${object.shape}?`, score: (d) => probabilityOf(d, "yes") };
  }
  const question =
    object.shape !== undefined && object.color === undefined
      ? `How many ${pluralOf(object.shape, vocabulary)} are there?`
      : object.color !== undefined && object.shape === undefined
        ? `How many ${object.color} objects are there?`
        : object.color !== undefined && object.shape !== undefined
          ? `Is there a ${object.color} ${object.shape}?`
          : undefined;
  if (question === undefined) return undefined;
  if (question.startsWith("Is there")) return { question, score: (d) => probabilityOf(d, "yes") };
  const count = object.count;
  return {
    question,
    score: (d) => (count === undefined ? 1 - probabilityOf(d, "0") : probabilityOf(d, String(count))),
  };
}

/** The citation of a stored record, with the URLs its media is served under. */
export function citationOf(record: StoredRecord, score: number, urls: MediaUrls): Citation {
  return {
    id: record.id,
    kind: record.kind,
    mediaUrl: urls.media(record.id),
    thumbnailUrl: urls.thumbnail(record.id),
    start: record.kind === "video_segment" ? record.startS : null,
    end: record.kind === "video_segment" ? record.endS : null,
    question: record.kind === "triple" ? record.question : null,
    answer: record.kind === "triple" ? record.answer : null,
    score: Math.round(Math.max(0, Math.min(1, score)) * 1000) / 1000,
    // A region is one object: its own box, in its parent's image.
    ...(record.kind === "region"
      ? {
          boxes: [
            citedBox({
              box: record.box,
              label: record.label,
              attributes: Object.fromEntries(
                Object.entries(record.attributes).map(([name, value]) => [name, { value, score: 1 }]),
              ),
              score: record.score,
            }),
          ],
          parentId: record.parentId,
        }
      : {}),
  };
}

/** The citation of an image the user sent. */
export function attachmentCitation(evidenceId: string): Citation {
  return {
    id: evidenceId,
    kind: "image",
    mediaUrl: null,
    thumbnailUrl: null,
    start: null,
    end: null,
    question: null,
    answer: null,
    score: 1,
  };
}

/** Options of {@link groundEvidence}. */
export interface GroundOptions {
  models: GroundingModels;
  media: MediaReader;
  /** Where cited items' media is served. */
  urls: MediaUrls;
  cache: VisualCache;
  intent: Intent;
  /** The pack's vocabulary, which `intent` was parsed in. */
  vocabulary: PackVocabulary;
  standaloneQuestion: string;
  /** The turn's images; their loaders are already registered in `cache`. */
  images: readonly TurnImage[];
  /** Retrieved candidates, best first. */
  candidates: readonly FusedItem<StoredRecord>[];
  /** Stored items the question names by id, read from the store. */
  namedRecords?: ReadonlyMap<string, StoredRecord>;
  /** Raw retrieval lists, to find triples matching each attached image. */
  lists: Record<string, SearchHit[]>;
  /** Encode the top candidate images even when no VQA question is asked of them (an LLM reads them). */
  inspectCandidates?: boolean;
  /** Softmax scale of the pack's image-text similarities (its trained logit scale). */
  logitScale?: number;
  settings?: Partial<GroundingSettings>;
}

/** The stored image of a record: a segment's keyframe; a region's is its parent's image (or keyframe). */
function imageRefOf(record: StoredRecord): string {
  return record.kind === "video_segment" ? record.keyframeRef : record.mediaRef;
}

/** Builds the turn's evidence with what the VQA head finds in it. */
export async function groundEvidence({
  models,
  media,
  urls,
  cache,
  intent,
  vocabulary,
  standaloneQuestion,
  images,
  candidates,
  lists,
  namedRecords = new Map(),
  inspectCandidates = false,
  logitScale = 100,
  settings: given = {},
}: GroundOptions): Promise<Evidence[]> {
  const settings = { ...DEFAULT_GROUNDING_SETTINGS, ...given };
  const started = performance.now();
  const budgetSpent = () => settings.budgetMs > 0 && performance.now() - started >= settings.budgetMs;
  const turnIds = new Set(images.map((image) => image.evidenceId));

  // Candidates with an image are registered so later steps can look at them; exact copies (same blob)
  // collapse at once, near-copies after encoding.
  const kept: Array<{ item: FusedItem<StoredRecord>; duplicates: string[] }> = [];
  const seenRefs = new Map<string, { duplicates: string[] }>();
  for (const item of candidates) {
    if (turnIds.has(item.id)) continue;
    const ref = imageRefOf(item.value);
    const sameBlob = item.value.kind === "image" && ref.length > 0 ? seenRefs.get(ref) : undefined;
    if (sameBlob !== undefined) {
      sameBlob.duplicates.push(item.id);
      continue;
    }
    const entry = { item, duplicates: [] as string[] };
    if (item.value.kind === "image" && ref.length > 0) seenRefs.set(ref, entry);
    kept.push(entry);
    if (ref.length > 0) cache.register(item.id, () => media.read({ ref }));
  }

  // Candidate images are encoded (for near-duplicates and the VQA head) only where someone looks at
  // them: corpus questions about objects, and an LLM that reads the evidence list.
  const checkCorpus = (intent.type === "exist" || intent.type === "find") && intent.corpusScope;
  // A question about one image with no image in the turn is put to the closest retrieved images.
  const askRetrieved =
    images.length === 0 &&
    ["color", "shape", "count", "size", "position"].includes(intent.type) &&
    vqaQuestionsFor(intent, { vocabulary }).length > 0;
  const imageCandidates = kept.filter((entry) => entry.item.value.kind === "image");
  const toEncode =
    checkCorpus || askRetrieved || inspectCandidates
      ? imageCandidates.slice(0, settings.imagesToGround + 2).map((entry) => entry.item.id)
      : [];
  await cache.encodeMany([...images.map((image) => image.evidenceId), ...toEncode]);

  // Near-duplicate images: the lower-ranked copy goes, its id noted on the one kept.
  const dropped = new Set<string>();
  const encodedKept: Array<{ entry: (typeof kept)[number]; embedding: Float32Array }> = [];
  for (const entry of imageCandidates) {
    if (!toEncode.includes(entry.item.id)) continue;
    const { embedding } = await cache.encoded(entry.item.id);
    const original = encodedKept.find(
      (other) => cosineSimilarity(other.embedding, embedding) >= settings.duplicateCosine,
    );
    if (original === undefined) encodedKept.push({ entry, embedding });
    else {
      original.entry.duplicates.push(entry.item.id, ...entry.duplicates);
      dropped.add(entry.item.id);
    }
  }
  const remaining = kept.filter((entry) => !dropped.has(entry.item.id));
  // For corpus questions about objects the images to check come first, whatever their fused rank
  // among segments and triples.
  const checkedImages =
    checkCorpus || askRetrieved
      ? remaining
          .filter((entry) => entry.item.value.kind === "image")
          .slice(0, checkCorpus ? settings.imagesToGround : settings.imagesForImageQuestions)
      : [];
  const retrieved = [...checkedImages, ...remaining.filter((entry) => !checkedImages.includes(entry))].slice(
    0,
    Math.max(settings.maxEvidence, checkedImages.length),
  );

  const evidence: Evidence[] = [];
  const questions = vqaQuestionsFor(intent, { vocabulary });
  const askAboutTurnImages =
    VQA_INTENT_TYPES.includes(intent.type) || intent.type === "describe" || intent.type === "find";

  for (const turnImage of images) {
    const findings: Finding[] = [];
    let citation = attachmentCitation(turnImage.evidenceId);
    let text = "";
    if ("id" in turnImage.image) {
      const record = namedRecords.get(turnImage.evidenceId);
      if (record !== undefined) {
        citation = citationOf(record, 1, urls);
        text = record.text;
      } else
        citation = {
          ...citation,
          mediaUrl: urls.media(turnImage.evidenceId),
          thumbnailUrl: urls.thumbnail(turnImage.evidenceId),
        };
    }
    if (intent.type === "area" && intent.area !== undefined) {
      // What is in a part of the image is read off the detection head's boxes (nothing without one).
      const answered = await areaFinding({ cache, evidenceId: turnImage.evidenceId, area: intent.area });
      if (answered !== undefined) {
        findings.push(answered.finding);
        if (answered.boxes.length > 0) citation = { ...citation, boxes: answered.boxes };
      }
    }
    if (askAboutTurnImages) {
      const asked = intent.type === "describe" ? describeQuestions(vocabulary) : questions;
      findings.push(
        ...(await askFindings({
          cache,
          evidenceId: turnImage.evidenceId,
          questions: asked,
          alternatives: settings.alternatives,
        })),
      );
      if (intent.type === "exist" || intent.type === "find") {
        evidence.push({
          citation,
          attachment: turnImage.attached && !("id" in turnImage.image),
          text,
          findings,
          match: await matchOf(cache, turnImage.evidenceId, intent.objects, vocabulary),
        });
        continue;
      }
    }
    evidence.push({ citation, attachment: turnImage.attached && !("id" in turnImage.image), text, findings });
  }

  // Stored answers for near-copies of an attached image, asked with a question of the same meaning.
  const questionKey = questionMeaningKey(standaloneQuestion, vocabulary);
  for (const turnImage of images) {
    const hits = (lists[`${turnImage.evidenceId}:triple`] ?? []) as SearchHit<"triple">[];
    for (const hit of hits) {
      if (hit.score < settings.tripleImageCosine) continue;
      const triple = hit.fields as StoredTriple;
      if (
        !(await sameMeaning({
          models,
          vocabulary,
          left: standaloneQuestion,
          right: triple.question,
          leftKey: questionKey,
          threshold: settings.tripleQuestionCosine,
        }))
      ) {
        continue;
      }
      const target = evidence.find((entry) => entry.citation.id === turnImage.evidenceId);
      target?.findings.unshift({
        question: triple.question,
        answer: triple.answer,
        probability: Math.round(hit.score * 1000) / 1000,
        alternatives: [],
        source: "triple",
        tripleId: triple.id,
      });
      if (!evidence.some((entry) => entry.citation.id === triple.id)) {
        evidence.push({
          citation: citationOf(triple, hit.score, urls),
          attachment: false,
          text: triple.text,
          findings: [],
        });
      }
      break;
    }
  }

  // Corpus questions about objects: the top retrieved images are checked for every object named.
  let contrastive: Array<((imageEmbedding: Float32Array) => number) | undefined> | undefined;
  let checkedCount = 0;
  const rankOf = new Map<Evidence, number>();
  for (const { item, duplicates } of retrieved) {
    if (evidence.some((entry) => entry.citation.id === item.id)) continue;
    const record = item.value;
    const entry: Evidence = {
      citation: citationOf(record, item.bestScore, urls),
      attachment: false,
      text: record.text,
      findings: [],
      ...(record.kind === "video_segment" ? { videoId: record.videoId } : {}),
      ...(duplicates.length > 0 ? { duplicates } : {}),
    };
    // An image whose turn comes after the budget is spent is left as retrieved, marked unchecked.
    const skipped =
      checkedImages.some((checked) => checked.item.id === item.id) && checkedCount > 0 && budgetSpent();
    const toCheck = !skipped && checkedImages.some((checked) => checked.item.id === item.id);
    if (skipped) entry.unchecked = true;
    if (toCheck) checkedCount += 1;
    if (askRetrieved && toCheck) {
      entry.findings.push(
        ...(await askFindings({
          cache,
          evidenceId: item.id,
          questions,
          alternatives: settings.alternatives,
        })),
      );
    } else if (toCheck) {
      const checks = intent.objects
        .map((object) => objectCheck(object, vocabulary))
        .filter((check) => check !== undefined);
      contrastive ??= await contrastiveChecks({
        models,
        objects: intent.objects.filter((object) => objectCheck(object, vocabulary) !== undefined),
        vocabulary,
        logitScale,
      });
      const opinions = await cache.opinions(
        item.id,
        checks.map((check) => check.question),
      );
      const distributions = opinions.map((opinion) => opinion.answers);
      checks.forEach((check, index) => {
        const opinion = opinions[index];
        const finding = toFinding({
          question: check.question,
          distribution: distributions[index] ?? [],
          alternatives: settings.alternatives,
          ...(opinion === undefined ? {} : { source: opinion.source, disagreement: opinion.disagreement }),
        });
        if (finding !== undefined) entry.findings.push(finding);
      });
      const { embedding } = await cache.encoded(item.id);
      entry.match = checks.reduce(
        (product, check, index) => product * check.score(distributions[index] ?? []),
        1,
      );
      rankOf.set(
        entry,
        checks.reduce((product, check, index) => {
          const vqa = check.score(distributions[index] ?? []);
          const second = contrastive?.[index]?.(embedding);
          return product * (second === undefined ? vqa : Math.sqrt(vqa * second));
        }, 1),
      );
    }
    evidence.push(entry);
  }
  // The boxes of the objects the findings are about go on the citations (not for a description, which
  // looks for every object the vocabulary has).
  if (intent.type !== "describe") {
    for (const entry of evidence) {
      if (entry.citation.boxes !== undefined || entry.findings.length === 0) continue;
      const boxes = await boxesOfFindings(cache, entry);
      if (boxes.length > 0) entry.citation = { ...entry.citation, boxes };
    }
  }
  // Checked images in order of the combined judgement, so the first one that matches is the best.
  const checkedEntries = evidence.filter((entry) => rankOf.has(entry));
  checkedEntries.sort((left, right) => (rankOf.get(right) ?? 0) - (rankOf.get(left) ?? 0));
  let next = 0;
  return evidence.map((entry) => (rankOf.has(entry) ? (checkedEntries[next++] as Evidence) : entry));
}

/**
 * A second opinion from the dual encoder on each colored shape a question names: the softmax, over the
 * object and its one-attribute-off variants in the vocabulary ("a yellow circle" against "a yellow
 * hexagon", "an orange circle", …), of the image embedding's similarity to each. The VQA head and the
 * contrastive towers err differently, so their geometric mean rejects more look-alikes than either alone.
 */
export async function contrastiveChecks({
  models,
  objects,
  vocabulary,
  logitScale,
}: {
  models: Pick<GroundingModels, "textEmbedder">;
  objects: readonly ObjectMention[];
  vocabulary: PackVocabulary;
  logitScale: number;
}): Promise<Array<((imageEmbedding: Float32Array) => number) | undefined>> {
  return Promise.all(
    objects.map(async (object) => {
      const { color, shape } = object;
      if (color === undefined || shape === undefined || (object.count ?? 1) !== 1) return undefined;
      const variants = [
        { color, shape },
        ...colorsAndShapes(vocabulary).filter((pair) => (pair.color === color) !== (pair.shape === shape)),
      ];
      const texts = variants.map((pair) => describeObject(pair));
      const vectors = await models.textEmbedder.embed({ texts });
      return (imageEmbedding: Float32Array) => {
        const logits = vectors.map((vector) => cosineSimilarity(vector, imageEmbedding) * logitScale);
        const max = Math.max(...logits);
        const weights = logits.map((logit) => Math.exp(logit - max));
        const total = weights.reduce((sum, weight) => sum + weight, 0);
        return (weights[0] ?? 0) / total;
      };
    }),
  );
}

async function matchOf(
  cache: VisualCache,
  evidenceId: string,
  objects: readonly ObjectMention[],
  vocabulary: PackVocabulary,
): Promise<number> {
  const checks = objects
    .map((object) => objectCheck(object, vocabulary))
    .filter((check) => check !== undefined);
  if (checks.length === 0) return 0;
  const distributions = await cache.ask(
    evidenceId,
    checks.map((check) => check.question),
  );
  return checks.reduce((product, check, index) => product * check.score(distributions[index] ?? []), 1);
}

/** The questions that describe an image: how many objects, and which of the vocabulary's colored shapes. */
export function describeQuestions(vocabulary: PackVocabulary): string[] {
  return [
    "How many objects are there?",
    ...colorsAndShapes(vocabulary).map(({ color, shape }) => `Is there a ${color} ${shape}?`),
  ];
}

async function sameMeaning({
  models,
  vocabulary,
  left,
  right,
  leftKey,
  threshold,
}: {
  models: GroundingModels;
  vocabulary: PackVocabulary;
  left: string;
  right: string;
  leftKey: string | undefined;
  threshold: number;
}): Promise<boolean> {
  const rightKey = questionMeaningKey(right, vocabulary);
  if (leftKey !== undefined || rightKey !== undefined) return leftKey === rightKey;
  const [a, b] = await models.textEmbedder.embed({ texts: [left, right] });
  return a !== undefined && b !== undefined && cosineSimilarity(a, b) >= threshold;
}
