/**
 * Quality evaluation of a model pack on a held-out Shapes World set generated in-process: text→image
 * retrieval with full descriptions, partial-query precision, VQA accuracy per question type, video clip
 * retrieval through a real H.264 round trip, the same image figures on other formats and sizes, and, for a
 * pack with a detection head, object detection, counting, left/right and text → region retrieval figures.
 *
 * The set derives from one seed with the TypeScript generator; the training scripts draw their data from
 * Python random streams, so no TypeScript seed reproduces a training item.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MediaError, ValidationError } from "../../errors.ts";
import { type Detection, findObject, type ImageDetections } from "../../inference/detection-head.ts";
import type { ModelPack } from "../../inference/model-pack.ts";
import { resampleIndices } from "../../inference/video-embedder.ts";
import { EMPTY_VOCABULARY } from "../../inference/vocabulary.ts";
import { defaultVideoLimits, runMediaTool, safeInputArgs, serverFileInput } from "../../media/ffmpeg.ts";
import { VisualCache } from "../../rag/ground.ts";
import { canonicalQuestion, parseQuestion } from "../../rag/question-parser.ts";
import { type Clip, type ClipDescription, describeClip, sampleClip } from "../../synth/clip.ts";
import { type Description, describeScene, sceneKey } from "../../synth/describe.ts";
import { POSITION_SPLIT, type Scene } from "../../synth/domain.ts";
import { type GalleryPartialQuery, generatePartialQueries } from "../../synth/partial-query.ts";
import { objectPhrase } from "../../synth/phrasing.ts";
import {
  generateQuestions,
  QUESTION_TYPES,
  type Question,
  type QuestionType,
} from "../../synth/questions.ts";
import { type ImageFormat, type RawImage, renderScene } from "../../synth/render.ts";
import { createRng, deriveSeed } from "../../synth/rng.ts";
import { sampleScene } from "../../synth/scene.ts";
import { checkInteger } from "../../synth/validate.ts";
import { encodeVideo, renderClipFrames } from "../../synth/video.ts";
import {
  attributeAccuracy,
  type Box,
  countingAccuracy,
  type DetectedBox,
  detectionAveragePrecision,
  type GroundTruthBox,
  type RegionRef,
  regionRecallAtK,
} from "../metrics/detection-metrics.ts";
import {
  type Accuracy,
  accuracyByType,
  chancePrecision,
  chanceRecallAtK,
  precisionAtK,
  rankGallery,
  recallAtK,
} from "../metrics/metrics.ts";

/** Seed of the held-out set unless another is given; never used to train the shipped pack. */
export const DEFAULT_EVAL_SEED = 90210;

/** How images of the set are encoded. */
export interface ImageVariant {
  format: ImageFormat;
  /** Canvas side in pixels, 64–1024. */
  size: number;
  /** JPEG/WebP quality (ignored for PNG). Default 90. */
  quality?: number;
}

/** The baseline rendering: 256 px JPEG. */
export const BASELINE_VARIANT: Required<ImageVariant> = { format: "jpeg", size: 256, quality: 90 };

/** The variants `--variants` adds: PNG and WebP at 128 and 512 px. */
export const DEFAULT_VARIANTS: readonly Required<ImageVariant>[] = [
  { format: "png", size: 128, quality: 90 },
  { format: "png", size: 512, quality: 90 },
  { format: "webp", size: 128, quality: 90 },
  { format: "webp", size: 512, quality: 90 },
];

/** The quality the shipped pack is meant to reach on the held-out set. */
export const PACK_QUALITY_TARGETS = {
  textToImageRecallAt1: 0.7,
  textToImageRecallAt10: 0.99,
  partialPrecisionAt10: 0.8,
  vqaOverall: 0.9,
  vqaPerType: 0.75,
  videoRecallAt1: 0.8,
  /** Largest drop of a variant's figure below the baseline's. */
  variantTolerance: 0.03,
  /** Mean AP@0.5 over the five shapes. */
  detectionAp50: 0.9,
  /** Colour and size each correct on this share of true positives. */
  detectionAttributes: 0.95,
  /** Counting questions answered from the detections. */
  detectionCounting: 0.95,
  /** Left/right questions answered from the detection centers. */
  detectionPosition: 0.95,
  /** Text → region Recall@1 for single-object descriptions. */
  regionRecallAt1: 0.8,
} as const;

/** Partial queries are scored only when at least this many gallery images are relevant to them. */
export const PARTIAL_MIN_RELEVANT = 10;

/** One image of the held-out set with its query and questions. */
export interface HeldOutImage {
  scene: Scene;
  /** The full description used as this image's text query (sizes named on every other image). */
  description: Description;
  questions: Question[];
}

/** One clip of the held-out set with its description query and the keys of its meaning. */
export interface HeldOutClip {
  clip: Clip;
  description: ClipDescription;
  /** `describeClip` keys with and without the size word. */
  keys: { withSize: string; withoutSize: string };
}

/**
 * Picks `count` questions, one per type at most, preferring the types asked least so far, so that over a
 * set every type is asked about equally often where the scenes allow it.
 */
function balancedQuestions({
  candidates,
  count,
  asked,
  offset,
}: {
  candidates: readonly Question[];
  count: number;
  asked: Map<QuestionType, number>;
  offset: number;
}): Question[] {
  const order = (type: QuestionType): number =>
    (QUESTION_TYPES.indexOf(type) - offset + QUESTION_TYPES.length * 8) % QUESTION_TYPES.length;
  const chosen = [...candidates]
    .sort(
      (left, right) =>
        (asked.get(left.type) ?? 0) - (asked.get(right.type) ?? 0) || order(left.type) - order(right.type),
    )
    .slice(0, count);
  for (const question of chosen) asked.set(question.type, (asked.get(question.type) ?? 0) + 1);
  return chosen;
}

/**
 * The held-out images: scene, full description (with sizes on even indices) and up to
 * `questionsPerImage` questions of different types, balanced over the set.
 */
export function heldOutImages({
  seed = DEFAULT_EVAL_SEED,
  images = 1000,
  questionsPerImage = 3,
}: {
  seed?: number;
  images?: number;
  questionsPerImage?: number;
}): HeldOutImage[] {
  checkInteger("images", images, { min: 1, max: 100_000 });
  checkInteger("questionsPerImage", questionsPerImage, { min: 0, max: QUESTION_TYPES.length });
  const root = createRng(seed);
  const asked = new Map<QuestionType, number>();
  return Array.from({ length: images }, (_v, index) => {
    const itemRng = root.fork("image", index);
    const scene = sampleScene(itemRng.fork("scene"));
    const description = describeScene(scene, itemRng.fork("description"), { includeSizes: index % 2 === 0 });
    const candidates = generateQuestions(scene, itemRng.fork("questions"), { perType: 1 });
    const questions = balancedQuestions({ candidates, count: questionsPerImage, asked, offset: index });
    return { scene, description, questions };
  });
}

/** The held-out clips, each described with its size word on even indices. */
export function heldOutClips({
  seed = DEFAULT_EVAL_SEED,
  clips = 200,
}: {
  seed?: number;
  clips?: number;
}): HeldOutClip[] {
  checkInteger("clips", clips, { min: 1, max: 100_000 });
  const root = createRng(seed);
  return Array.from({ length: clips }, (_v, index) => {
    const clipRng = root.fork("clip", index);
    const clip = sampleClip(clipRng.fork("sample"));
    const textRng = clipRng.fork("description");
    const description = describeClip(clip, textRng, { includeSize: index % 2 === 0 });
    const keys = {
      withSize: describeClip(clip, textRng, { includeSize: true }).key,
      withoutSize: describeClip(clip, textRng, { includeSize: false }).key,
    };
    return { clip, description, keys };
  });
}

/** Text→image retrieval figures. */
export interface TextToImageFigures {
  recallAt1: number;
  recallAt5: number;
  recallAt10: number;
  queries: number;
  /** Expected figures of a random ranking. */
  chance: { recallAt1: number; recallAt10: number };
}

/** Partial-query figures. */
export interface PartialFigures {
  /** Mean Precision@10 over the scored queries. */
  precisionAt10: number;
  /** Queries with at least {@link PARTIAL_MIN_RELEVANT} relevant images (the scored ones). */
  queries: number;
  /** Distinct partial queries generated over the gallery. */
  generated: number;
  /** Mean share of relevant images over the scored queries: a random ranking's Precision@10. */
  chance: number;
}

/** VQA figures. */
export interface VqaFigures {
  overall: Accuracy;
  byType: Record<QuestionType, Accuracy>;
  /** Accuracy of always giving the most frequent answer (overall: per type, weighted). */
  chance: { overall: number; byType: Record<QuestionType, number> };
}

/** Figures of one image rendering. */
export interface ImageFigures {
  variant: Required<ImageVariant>;
  /** `jpeg-256`, `png-128`, … */
  label: string;
  textToImage: TextToImageFigures;
  partial: PartialFigures;
  /** Absent for packs without a VQA head. */
  vqa?: VqaFigures;
  /** Absent for packs without a detection head, and for variants (measured on the baseline only). */
  detection?: DetectionFigures;
  /**
   * Wall-clock milliseconds. Rendering of the next chunk overlaps the model runs of the current one, so the
   * parts may add up to more than `totalMs`.
   */
  timings: { renderMs: number; embedMs: number; vqaMs: number; totalMs: number; imagesPerSecond: number };
}

/** Average precision of one shape class. */
export interface ClassDetectionFigures {
  /** `undefined` when the set has no object of the class. */
  ap50: number | undefined;
  ap5095: number | undefined;
  /** Objects of the class in the set. */
  objects: number;
  /** Detections labelled with the class, at any score. */
  detections: number;
}

/** Text → region retrieval figures. */
export interface RegionRetrievalFigures {
  /** One single-object description per image ("a small green star"; sizes named on every other one). */
  queries: number;
  /** Regions ranked: every detection at the pack's threshold over the set. */
  regions: number;
  /** A hit: a region with IoU ≥ 0.5 with an object of any image that satisfies the description. */
  recallAt1: number;
  recallAt5: number;
}

/** Counting question variants answered from detections. */
export const DETECTION_COUNT_VARIANTS = ["count_shape", "count_color", "count_all"] as const;

/** Object detection figures on the baseline rendering, through `pack.detector`. */
export interface DetectionFigures {
  /** The pack's `score_threshold`: detections at or above it are counted, located and retrieved. */
  threshold: number;
  /** Objects in the set (ground truth: the square `[x − r, y − r, x + r, y + r]` of each bounding circle). */
  objects: number;
  /** Detections at or above the threshold. */
  detections: number;
  /** Mean over the shapes with objects in the set, all detections ranked by score (COCO style). */
  ap50: number;
  ap5095: number;
  perClass: Record<string, ClassDetectionFigures>;
  /** Per attribute (`color`, `size`): correct values over true positives at IoU ≥ 0.5, at the threshold. */
  attributes: Record<string, Accuracy>;
  /** Count questions answered by counting matching detections at the threshold. */
  counting: { overall: Accuracy; byVariant: Record<(typeof DETECTION_COUNT_VARIANTS)[number], Accuracy> };
  /** Left/right questions answered from the center of the best detection of the named colour and shape. */
  position: Accuracy;
  /** Absent when the detections carry no region embedding. */
  regionRetrieval?: RegionRetrievalFigures;
  /** The pack's VQA head on the same count and left/right questions, for comparison; absent without one. */
  vqaHead?: { counting: Accuracy; position: Accuracy };
  /**
   * The same questions through chat's grounding: read by the chain's question parser, put to both heads in
   * their canonical wording, answered by the detection head when it is confident and by the VQA head
   * otherwise (no half-painted copies: a side the detection head cannot find is the VQA head's answer).
   * Absent without a VQA head.
   */
  chain?: { counting: Accuracy; position: Accuracy; fromDetector: number };
  /**
   * Wall-clock milliseconds: the head and the decoding of its slots (`detectMs`; the vision tower pass it
   * reads is the one the embeddings come from, counted in the image figures' `embedMs`) and the region ranking.
   */
  timings: { detectMs: number; retrievalMs: number; chainMs?: number };
}

/** How the video frames reached the model. */
export type VideoDecode = "ffmpeg" | "frames";

/** Video clip retrieval figures. */
export interface VideoFigures {
  clips: number;
  size: number;
  /** `ffmpeg`: rendered, encoded to H.264 MP4 and decoded back; `frames`: the rendered frames directly. */
  decode: VideoDecode;
  /** Whether the pack's learned video head was used (otherwise the mean of frame embeddings). */
  videoHead: boolean;
  recallAt1: number;
  recallAt5: number;
  chance: { recallAt1: number };
  /**
   * Wall-clock milliseconds: rendering and the ffmpeg round trip (`codecMs`) of the next clips overlap the
   * model runs (`embedMs`, vision tower and video head) of the current ones.
   */
  timings: { renderMs: number; codecMs: number; embedMs: number; totalMs: number };
}

/** A figure set beside the baseline's. */
export interface VariantFigures extends ImageFigures {
  /** Variant minus baseline for each headline figure (negative: worse). */
  delta: Record<VariantFigure, number>;
}

/** Headline figures compared across variants. */
export const VARIANT_FIGURES = [
  "recallAt1",
  "recallAt5",
  "recallAt10",
  "partialPrecisionAt10",
  "vqa",
] as const;
/** A headline figure compared across variants. */
export type VariantFigure = (typeof VARIANT_FIGURES)[number];

/** One target and whether the report meets it. */
export interface TargetCheck {
  name: string;
  value: number;
  target: string;
  met: boolean;
}

/** Everything {@link evaluatePack} measured. */
export interface PackEvalReport {
  modelId: string;
  seed: number;
  images: number;
  questionsPerImage: number;
  baseline: ImageFigures;
  variants: VariantFigures[];
  video?: VideoFigures;
  targets: TargetCheck[];
  timings: { textEmbedMs: number; totalMs: number };
}

/** Progress of {@link evaluatePack}. */
export interface PackEvalProgress {
  phase: "texts" | "images" | "video";
  /** The image variant (`jpeg-256`) or `video`. */
  label: string;
  done: number;
  total: number;
}

/** Options of {@link evaluatePack}. */
export interface EvaluatePackOptions {
  pack: ModelPack;
  seed?: number;
  /** Gallery size. Default 1000. */
  images?: number;
  /** The baseline rendering. Default 256 px JPEG, quality 90. */
  baseline?: ImageVariant;
  /** Other renderings to compare with the baseline. Default none. */
  variants?: readonly ImageVariant[];
  /** VQA questions per image, of different types. Default 3. */
  questionsPerImage?: number;
  /** Distinct partial queries to generate (about a hundred exist). Default 100. */
  partialQueries?: number;
  /** Video clips (0 skips the video eval). Default 200. */
  clips?: number;
  /** Video frame side in pixels (even). Default 128. */
  videoSize?: number;
  /** Default `ffmpeg`. */
  videoDecode?: VideoDecode;
  /** Images rendered and embedded per step. Default 32. */
  batchSize?: number;
  onProgress?: (progress: PackEvalProgress) => void;
}

function variantLabel(variant: Required<ImageVariant>): string {
  return `${variant.format}-${variant.size}`;
}

function completeVariant(variant: ImageVariant): Required<ImageVariant> {
  checkInteger("size", variant.size, { min: 64, max: 1024 }, "Shapes World images are 64 to 1024 px.");
  const quality = variant.quality ?? BASELINE_VARIANT.quality;
  checkInteger("quality", quality, { min: 1, max: 100 });
  return { format: variant.format, size: variant.size, quality };
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let index = 1; index < values.length; index += 1) {
    if ((values[index] ?? Number.NEGATIVE_INFINITY) > (values[best] ?? Number.NEGATIVE_INFINITY))
      best = index;
  }
  return best;
}

function majorityShare(answers: readonly string[]): number {
  if (answers.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const answer of answers) counts.set(answer, (counts.get(answer) ?? 0) + 1);
  return Math.max(...counts.values()) / answers.length;
}

/** Text queries of the set, embedded once and shared by every variant. */
interface TextQueries {
  descriptions: Float32Array[];
  /** Description i's relevant gallery indices: images whose key (with or without sizes, as the text) is equal. */
  descriptionRelevant: Set<number>[];
  partial: GalleryPartialQuery[];
  partialEmbeddings: Float32Array[];
  partialRelevant: Set<number>[];
}

async function embedTextQueries({
  pack,
  set,
  seed,
  partialQueries,
}: {
  pack: ModelPack;
  set: readonly HeldOutImage[];
  seed: number;
  partialQueries: number;
}): Promise<TextQueries> {
  const byKey = new Map<string, Set<number>>();
  set.forEach(({ scene }, index) => {
    for (const key of [`sized:${sceneKey(scene)}`, `plain:${sceneKey(scene, { includeSizes: false })}`]) {
      const members = byKey.get(key) ?? new Set<number>();
      members.add(index);
      byKey.set(key, members);
    }
  });
  const descriptionRelevant = set.map(
    ({ description }) =>
      byKey.get(`${description.includeSizes ? "sized" : "plain"}:${description.key}`) ?? new Set<number>(),
  );
  const gallery = set.map(({ scene }, index) => ({ id: String(index), objects: scene.objects }));
  const partial = generatePartialQueries(createRng(seed).fork("partial"), { gallery, count: partialQueries });
  const partialRelevant = partial.map((query) => new Set(query.relevantIds.map(Number)));
  const embeddings = await pack.textEmbedder.embed({
    texts: [...set.map(({ description }) => description.text), ...partial.map((query) => query.text)],
  });
  return {
    descriptions: embeddings.slice(0, set.length),
    descriptionRelevant,
    partial,
    partialEmbeddings: embeddings.slice(set.length),
    partialRelevant,
  };
}

/** The ground-truth box of a Shapes World object: the square of its bounding circle, normalized. */
export function objectBox(object: Pick<Scene["objects"][number], "x" | "y" | "r">): Box {
  return {
    x0: object.x - object.r,
    y0: object.y - object.r,
    x1: object.x + object.r,
    y1: object.y + object.r,
  };
}

/** Count and left/right questions of image `index`, drawn from their own stream of `seed`. */
function detectionQuestions({
  scene,
  seed,
  index,
}: {
  scene: Scene;
  seed: number;
  index: number;
}): Question[] {
  return generateQuestions(scene, createRng(seed).fork("detection-questions", index), {
    types: ["count", "position"],
    perType: 2,
  });
}

function accuracyOf(results: readonly { correct: boolean }[]): Accuracy {
  const correct = results.filter((result) => result.correct).length;
  return { accuracy: results.length === 0 ? 0 : correct / results.length, count: results.length };
}

/**
 * The answer the detections give to a count or position question; `undefined` when they give none. A count
 * counts the detections whose labels match; a position is read off the detection that most likely is the
 * object named ({@link findObject}: its class and colour probabilities, not only their argmax).
 */
function answerFromDetections(
  question: Question,
  found: readonly DetectedBox[],
  detections: readonly Detection[],
): string | undefined {
  const { shape, color } = question.params;
  if (question.type === "count") {
    const matching = found.filter(
      (detection) =>
        (shape === undefined || detection.label === shape) &&
        (color === undefined || detection.attributes?.color === color),
    );
    return String(matching.length);
  }
  const best = findObject({
    detections,
    ...(shape === undefined ? {} : { label: shape }),
    ...(color === undefined ? {} : { attributes: { color } }),
  });
  if (best === undefined) return undefined;
  const { box } = best.detection;
  return (box.x0 + box.x1) / 2 < POSITION_SPLIT ? "left" : "right";
}

async function regionRetrieval({
  pack,
  set,
  regions,
  groundTruth,
}: {
  pack: ModelPack;
  set: readonly HeldOutImage[];
  regions: readonly { ref: RegionRef; embedding: Float32Array }[];
  groundTruth: readonly GroundTruthBox[];
}): Promise<RegionRetrievalFigures> {
  const queries = set.map(({ scene }, index) => {
    const object = scene.objects[index % scene.objects.length] as Scene["objects"][number];
    const includeSize = index % 2 === 0;
    const text = objectPhrase({
      ...(includeSize ? { size: object.size } : {}),
      color: object.color,
      shape: object.shape,
    });
    const targets = groundTruth
      .filter(
        (truth) =>
          truth.label === object.shape &&
          truth.attributes?.color === object.color &&
          (!includeSize || truth.attributes?.size === object.size),
      )
      .map(({ image, box }) => ({ image, box }));
    return { text, targets };
  });
  const texts = [...new Set(queries.map((query) => query.text))];
  const embedded = await pack.textEmbedder.embed({ texts });
  const byText = new Map(texts.map((text, index) => [text, embedded[index] as Float32Array]));
  const ranked =
    regions.length === 0
      ? queries.map(() => [])
      : rankGallery({
          queries: queries.map((query) => byText.get(query.text) as Float32Array),
          gallery: regions.map((region) => region.embedding),
          k: 5,
        }).map((row) => row.map((index) => (regions[index] as { ref: RegionRef }).ref));
  const targets = queries.map((query) => query.targets);
  return {
    queries: queries.length,
    regions: regions.length,
    recallAt1: regionRecallAtK({ ranked, targets, k: 1 }),
    recallAt5: regionRecallAtK({ ranked, targets, k: 5 }),
  };
}

async function detectionFigures({
  pack,
  set,
  found,
  seed,
  detectMs,
  vqaAnswers,
  chainAnswers,
  chainMs,
}: {
  pack: ModelPack;
  set: readonly HeldOutImage[];
  /** Per image, every detection the head gives (threshold 0). */
  found: readonly ImageDetections[];
  seed: number;
  detectMs: number;
  /** The VQA head's results on the same count and left/right questions, in order. */
  vqaAnswers?: readonly { type: QuestionType; correct: boolean }[];
  /** The chain's grounding on the same questions, in order (see {@link DetectionFigures.chain}). */
  chainAnswers?: readonly { type: QuestionType; correct: boolean; source: "vqa" | "detector" }[];
  chainMs?: number;
}): Promise<DetectionFigures> {
  const config = (pack.detector as NonNullable<ModelPack["detector"]>).config;
  const threshold = config.score_threshold;
  const groundTruth: GroundTruthBox[] = set.flatMap(({ scene }, image) =>
    scene.objects.map((object) => ({
      image,
      label: object.shape,
      box: objectBox(object),
      attributes: { color: object.color, size: object.size },
    })),
  );
  const detectionsOf = (image: number): DetectedBox[] =>
    (found[image]?.detections ?? []).map((detection) => ({
      image,
      label: detection.label,
      score: detection.score,
      box: detection.box,
      attributes: Object.fromEntries(
        Object.entries(detection.attributes).map(([name, { value }]) => [name, value]),
      ),
    }));
  const all = set.flatMap((_item, image) => detectionsOf(image));
  const kept = all.filter((detection) => detection.score >= threshold);
  const ap = detectionAveragePrecision({ detections: all, groundTruth, classes: config.classes });
  const perClass: Record<string, ClassDetectionFigures> = {};
  for (const [label, figures] of Object.entries(ap.perClass)) {
    perClass[label] = {
      ap50: figures.ap50,
      ap5095: figures.ap5095,
      objects: figures.groundTruth,
      detections: figures.detections,
    };
  }
  const attributes: Record<string, Accuracy> = {};
  for (const name of Object.keys(config.attributes)) {
    attributes[name] = attributeAccuracy({ detections: kept, groundTruth, attribute: name });
  }

  const counts: {
    variant: (typeof DETECTION_COUNT_VARIANTS)[number];
    predicted: number;
    expected: number;
  }[] = [];
  const positions: { correct: boolean }[] = [];
  set.forEach(({ scene }, image) => {
    const mine = detectionsOf(image).filter((detection) => detection.score >= threshold);
    const shown = (found[image]?.detections ?? []).filter((detection) => detection.score >= threshold);
    for (const question of detectionQuestions({ scene, seed, index: image })) {
      const answer = answerFromDetections(question, mine, shown);
      if (question.type === "count") {
        counts.push({
          variant: question.variant as (typeof DETECTION_COUNT_VARIANTS)[number],
          predicted: Number(answer),
          expected: Number(question.answer),
        });
      } else {
        positions.push({ correct: answer === question.answer });
      }
    }
  });
  const byVariant = {} as DetectionFigures["counting"]["byVariant"];
  for (const variant of DETECTION_COUNT_VARIANTS) {
    byVariant[variant] = countingAccuracy({ results: counts.filter((count) => count.variant === variant) });
  }

  const retrievalStarted = performance.now();
  const withEmbeddings: { ref: RegionRef; embedding: Float32Array }[] = [];
  found.forEach((imageDetections, image) => {
    for (const detection of imageDetections.detections) {
      if (detection.score < threshold || detection.embedding === undefined) continue;
      withEmbeddings.push({ ref: { image, box: detection.box }, embedding: detection.embedding });
    }
  });
  const hasEmbeddings = found.some((image) => image.detections.some((d) => d.embedding !== undefined));
  const retrieval = hasEmbeddings
    ? await regionRetrieval({ pack, set, regions: withEmbeddings, groundTruth })
    : undefined;
  const retrievalMs = performance.now() - retrievalStarted;

  return {
    threshold,
    objects: groundTruth.length,
    detections: kept.length,
    ap50: ap.ap50,
    ap5095: ap.ap5095,
    perClass,
    attributes,
    counting: { overall: countingAccuracy({ results: counts }), byVariant },
    position: accuracyOf(positions),
    ...(retrieval === undefined ? {} : { regionRetrieval: retrieval }),
    ...(vqaAnswers === undefined
      ? {}
      : {
          vqaHead: {
            counting: accuracyOf(vqaAnswers.filter((answer) => answer.type === "count")),
            position: accuracyOf(vqaAnswers.filter((answer) => answer.type === "position")),
          },
        }),
    ...(chainAnswers === undefined
      ? {}
      : {
          chain: {
            counting: accuracyOf(chainAnswers.filter((answer) => answer.type === "count")),
            position: accuracyOf(chainAnswers.filter((answer) => answer.type === "position")),
            fromDetector:
              chainAnswers.filter((answer) => answer.source === "detector").length /
              Math.max(1, chainAnswers.length),
          },
        }),
    timings: { detectMs, retrievalMs, ...(chainMs === undefined ? {} : { chainMs }) },
  };
}

/**
 * The detection figures' count and left/right questions of a batch of images through chat's grounding
 * ({@link VisualCache.opinions}): parsed as the chain parses a user's question, asked in canonical wording.
 */
async function chainGrounding({
  pack,
  images,
  set,
  start,
  seed,
}: {
  pack: ModelPack;
  images: readonly Uint8Array[];
  set: readonly HeldOutImage[];
  start: number;
  seed: number;
}): Promise<{ type: QuestionType; correct: boolean; source: "vqa" | "detector" }[]> {
  const cache = new VisualCache({ models: pack });
  const vocabulary = pack.vocabulary ?? EMPTY_VOCABULARY;
  const ids = images.map((_image, offset) => `image_${start + offset}`);
  ids.forEach((id, offset) => {
    cache.register(id, async () => images[offset] as Uint8Array);
  });
  await cache.encodeMany(ids);
  const results: { type: QuestionType; correct: boolean; source: "vqa" | "detector" }[] = [];
  for (const [offset, id] of ids.entries()) {
    const { scene } = set[start + offset] as HeldOutImage;
    const questions = detectionQuestions({ scene, seed, index: start + offset });
    const canonical = questions.map((question) =>
      canonicalQuestion(parseQuestion(question.question, vocabulary), { vocabulary }),
    );
    const asked = canonical.filter((question): question is string => question !== undefined);
    const opinions = await cache.opinions(id, asked);
    let next = 0;
    questions.forEach((question, index) => {
      if (canonical[index] === undefined) {
        results.push({ type: question.type, correct: false, source: "vqa" });
        return;
      }
      const opinion = opinions[next++];
      results.push({
        type: question.type,
        correct: opinion?.answers[0]?.answer === question.answer,
        source: opinion?.source ?? "vqa",
      });
    });
  }
  return results;
}

async function evaluateImages({
  pack,
  set,
  texts,
  variant,
  seed,
  batchSize,
  detect = false,
  onProgress,
}: {
  pack: ModelPack;
  set: readonly HeldOutImage[];
  texts: TextQueries;
  variant: Required<ImageVariant>;
  seed: number;
  batchSize: number;
  /** Also run the pack's detector on every image (the baseline only). */
  detect?: boolean;
  onProgress?: (progress: PackEvalProgress) => void;
}): Promise<ImageFigures> {
  const label = variantLabel(variant);
  const started = performance.now();
  const timings = { renderMs: 0, embedMs: 0, vqaMs: 0, chainMs: 0 };
  const found: ImageDetections[] = [];
  let detectMs = 0;
  const vqaHead = pack.vqaHead;
  const detector = detect ? pack.detector : undefined;
  const withTokens = vqaHead !== undefined || detector !== undefined;
  const render = async (start: number): Promise<Buffer[]> => {
    const begun = performance.now();
    const rendered = await Promise.all(
      set.slice(start, start + batchSize).map(async ({ scene }, offset) => {
        // The render seed depends on the image only, so variants differ in encoding and size alone.
        const image = await renderScene(scene, {
          ...variant,
          seed: deriveSeed(seed, "render", start + offset),
        });
        return image.data;
      }),
    );
    timings.renderMs += performance.now() - begun;
    return rendered;
  };

  const gallery: Float32Array[] = [];
  const vqaResults: { type: QuestionType; correct: boolean; answer: string }[] = [];
  const vqaOnDetectionQuestions: { type: QuestionType; correct: boolean }[] = [];
  const chainOnDetectionQuestions: { type: QuestionType; correct: boolean; source: "vqa" | "detector" }[] =
    [];
  let next = render(0);
  for (let start = 0; start < set.length; start += batchSize) {
    const images = await next;
    // Render the next chunk while this one runs through the model.
    if (start + batchSize < set.length) next = render(start + batchSize);
    const embedStarted = performance.now();
    const encoded = await pack.imageEmbedder.encode({ images, withTokens });
    timings.embedMs += performance.now() - embedStarted;
    gallery.push(...encoded.embeddings);
    if (vqaHead !== undefined && encoded.tokens !== undefined) {
      const vqaStarted = performance.now();
      for (const [offset, tokens] of encoded.tokens.entries()) {
        const { questions, scene } = set[start + offset] as HeldOutImage;
        // The detection figures' count and left/right questions too, for the VQA head's figure beside them.
        const compared =
          detector === undefined ? [] : detectionQuestions({ scene, seed, index: start + offset });
        const asked = [...questions, ...compared];
        if (asked.length === 0) continue;
        const logits = await vqaHead.logits({ image: tokens, questions: asked.map((q) => q.question) });
        asked.forEach((question, index) => {
          const predicted = vqaHead.answers[argmax(logits[index] ?? [])];
          const correct = predicted === question.answer;
          if (index < questions.length)
            vqaResults.push({ type: question.type, correct, answer: question.answer });
          else vqaOnDetectionQuestions.push({ type: question.type, correct });
        });
      }
      timings.vqaMs += performance.now() - vqaStarted;
    }
    if (detector !== undefined) {
      const detectStarted = performance.now();
      // Threshold 0: every slot, so that AP sees the whole ranking; the figures apply the pack's threshold.
      // The head on the token states of the tower pass above (the images are `variant.size` squares).
      found.push(
        ...(await detector.detectTokens({
          tokens: encoded.tokens ?? [],
          sizes: images.map(() => ({ width: variant.size, height: variant.size })),
          images,
          threshold: 0,
        })),
      );
      detectMs += performance.now() - detectStarted;
      if (vqaHead !== undefined) {
        const chainStarted = performance.now();
        chainOnDetectionQuestions.push(...(await chainGrounding({ pack, images, set, start, seed })));
        timings.chainMs += performance.now() - chainStarted;
      }
    }
    onProgress?.({
      phase: "images",
      label,
      done: Math.min(start + batchSize, set.length),
      total: set.length,
    });
  }

  const ranked = rankGallery({ queries: texts.descriptions, gallery, k: 10 });
  const relevantCounts = texts.descriptionRelevant.map((relevant) => relevant.size);
  const textToImage: TextToImageFigures = {
    recallAt1: recallAtK({ ranked, relevant: texts.descriptionRelevant, k: 1 }),
    recallAt5: recallAtK({ ranked, relevant: texts.descriptionRelevant, k: 5 }),
    recallAt10: recallAtK({ ranked, relevant: texts.descriptionRelevant, k: 10 }),
    queries: ranked.length,
    chance: {
      recallAt1: chanceRecallAtK({ relevantCounts, gallerySize: gallery.length, k: 1 }),
      recallAt10: chanceRecallAtK({ relevantCounts, gallerySize: gallery.length, k: 10 }),
    },
  };

  const scored = texts.partialRelevant
    .map((relevant, index) => ({ relevant, index }))
    .filter(({ relevant }) => relevant.size >= PARTIAL_MIN_RELEVANT);
  const partialRanked = rankGallery({
    queries: scored.map(({ index }) => texts.partialEmbeddings[index] as Float32Array),
    gallery,
    k: 10,
  });
  const partial: PartialFigures = {
    precisionAt10: precisionAtK({
      ranked: partialRanked,
      relevant: scored.map(({ relevant }) => relevant),
      k: 10,
    }),
    queries: scored.length,
    generated: texts.partial.length,
    chance: chancePrecision({
      relevantCounts: scored.map(({ relevant }) => relevant.size),
      gallerySize: gallery.length,
    }),
  };

  let vqa: VqaFigures | undefined;
  if (vqaHead !== undefined) {
    const { overall, byType } = accuracyByType({ results: vqaResults, types: QUESTION_TYPES });
    const chanceByType = {} as Record<QuestionType, number>;
    let weighted = 0;
    for (const type of QUESTION_TYPES) {
      const answers = vqaResults.filter((result) => result.type === type).map((result) => result.answer);
      chanceByType[type] = majorityShare(answers);
      weighted += chanceByType[type] * answers.length;
    }
    vqa = {
      overall,
      byType,
      chance: { overall: vqaResults.length === 0 ? 0 : weighted / vqaResults.length, byType: chanceByType },
    };
  }
  const detection =
    detector === undefined
      ? undefined
      : await detectionFigures({
          pack,
          set,
          found,
          seed,
          detectMs,
          ...(vqaHead === undefined
            ? {}
            : {
                vqaAnswers: vqaOnDetectionQuestions,
                chainAnswers: chainOnDetectionQuestions,
                chainMs: timings.chainMs,
              }),
        });
  const totalMs = performance.now() - started;
  return {
    variant,
    label,
    textToImage,
    partial,
    ...(vqa === undefined ? {} : { vqa }),
    ...(detection === undefined ? {} : { detection }),
    timings: { ...timings, totalMs, imagesPerSecond: set.length / (totalMs / 1000) },
  };
}

/**
 * Decodes a video file the eval wrote to raw RGB frames, through Loupe's ffmpeg runner (no shell, the same
 * input restrictions as ingestion, a timeout and an output cap that kill it).
 *
 * @throws MediaError when ffmpeg fails, times out, writes more than `maxFrames` frames or returns a
 *   partial frame.
 */
export async function decodeVideoFrames({
  path,
  size,
  timeoutMs = 60_000,
  maxFrames = 1000,
}: {
  /** An absolute path. */
  path: string;
  /** Frame side in pixels (the file's size; frames are not scaled). */
  size: number;
  timeoutMs?: number;
  maxFrames?: number;
}): Promise<RawImage[]> {
  const frameBytes = size * size * 3;
  const fail = (reason: string, cause?: unknown): MediaError =>
    new MediaError(`ffmpeg could not decode ${path}: ${reason}.`, {
      code: "video_decode_failed",
      status: 500,
      context: { path, size },
      ...(cause === undefined ? {} : { cause }),
    });
  let bytes: Buffer;
  try {
    ({ stdout: bytes } = await runMediaTool({
      tool: "ffmpeg",
      args: [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        ...safeInputArgs({ limits: { ...defaultVideoLimits, timeoutMs }, demuxer: "mov" }),
        "-i",
        serverFileInput(path),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        `${size}x${size}`,
        "pipe:1",
      ],
      timeoutMs,
      maxStdoutBytes: maxFrames * frameBytes,
    }));
  } catch (error) {
    if (!(error instanceof MediaError)) throw error;
    const exitCode = error.context.exitCode;
    const reason =
      error.code === "video_timeout"
        ? `did not finish within ${timeoutMs} ms`
        : error.code === "video_too_large"
          ? `wrote more than ${maxFrames} frames of ${size}x${size}`
          : exitCode !== undefined
            ? `exited with code ${String(exitCode)} (${error.message})`
            : error.message;
    throw fail(reason, error);
  }
  if (bytes.length === 0 || bytes.length % frameBytes !== 0) {
    throw fail(`returned ${bytes.length} bytes, not a whole number of ${size}x${size} RGB frames`);
  }
  return Array.from({ length: bytes.length / frameBytes }, (_v, index) => ({
    data: bytes.subarray(index * frameBytes, (index + 1) * frameBytes),
    width: size,
    height: size,
    channels: 3 as const,
  }));
}

async function evaluateVideo({
  pack,
  clips,
  seed,
  size,
  decode,
  onProgress,
}: {
  pack: ModelPack;
  clips: readonly HeldOutClip[];
  seed: number;
  size: number;
  decode: VideoDecode;
  onProgress?: (progress: PackEvalProgress) => void;
}): Promise<VideoFigures> {
  const started = performance.now();
  const timings = { renderMs: 0, codecMs: 0, embedMs: 0 };
  const workDir = await mkdtemp(join(tmpdir(), "loupe-pack-eval-"));
  const embedder = pack.videoEmbedder;
  const frameCount = embedder.numFrames;
  const group = 8;
  const framesOf = async (index: number): Promise<RawImage[]> => {
    const { clip } = clips[index] as HeldOutClip;
    const renderStarted = performance.now();
    const rendered: RawImage[] = [];
    for await (const frame of renderClipFrames(clip, {
      size,
      seed: deriveSeed(seed, "clip-render", index),
    })) {
      rendered.push(frame);
    }
    timings.renderMs += performance.now() - renderStarted;
    if (decode === "frames") return rendered;
    const codecStarted = performance.now();
    const path = join(workDir, `clip-${index}.mp4`);
    await encodeVideo({ frames: rendered, size, outPath: path });
    const decoded = await decodeVideoFrames({ path, size });
    await rm(path, { force: true });
    timings.codecMs += performance.now() - codecStarted;
    return decoded;
  };
  // One clip after the other: ffmpeg and sharp use several threads each, and the 2-core machines this runs
  // on gain nothing from more processes; the next group is still prepared while the model runs.
  const prepare = async (start: number): Promise<RawImage[][]> => {
    const prepared: RawImage[][] = [];
    for (let index = start; index < Math.min(start + group, clips.length); index += 1) {
      prepared.push(await framesOf(index));
    }
    return prepared;
  };

  const embeddings: Float32Array[] = [];
  try {
    let next = prepare(0);
    for (let start = 0; start < clips.length; start += group) {
      const batch = await next;
      if (start + group < clips.length) next = prepare(start + group);
      const embedStarted = performance.now();
      if (frameCount === undefined) {
        for (const frames of batch) embeddings.push(await embedder.embed({ frames }));
      } else {
        // All frames of the group through the vision tower at once, then the video head on the group.
        const picked = batch.map((frames) =>
          resampleIndices({ count: frames.length, frames: frameCount }).map(
            (index) => frames[index] as RawImage,
          ),
        );
        const encoded = await embedder.encodeFrames({ images: picked.flat() });
        const videos = picked.map((_frames, clip) =>
          encoded.features.slice(clip * frameCount, (clip + 1) * frameCount),
        );
        embeddings.push(...(await embedder.embedFrameFeatures({ videos })));
      }
      timings.embedMs += performance.now() - embedStarted;
      onProgress?.({
        phase: "video",
        label: "video",
        done: Math.min(start + group, clips.length),
        total: clips.length,
      });
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }

  const queries = await pack.textEmbedder.embed({ texts: clips.map(({ description }) => description.text) });
  const ranked = rankGallery({ queries, gallery: embeddings, k: 5 });
  const relevant = clips.map(({ description }) => (index: number): boolean => {
    const keys = (clips[index] as HeldOutClip).keys;
    return (description.includeSize ? keys.withSize : keys.withoutSize) === description.key;
  });
  const relevantCounts = relevant.map((isHit) => clips.filter((_clip, index) => isHit(index)).length);
  return {
    clips: clips.length,
    size,
    decode,
    videoHead: embedder.hasHead,
    recallAt1: recallAtK({ ranked, relevant, k: 1 }),
    recallAt5: recallAtK({ ranked, relevant, k: 5 }),
    chance: { recallAt1: chanceRecallAtK({ relevantCounts, gallerySize: clips.length, k: 1 }) },
    timings: { ...timings, totalMs: performance.now() - started },
  };
}

function headline(figures: ImageFigures): Record<VariantFigure, number> {
  return {
    recallAt1: figures.textToImage.recallAt1,
    recallAt5: figures.textToImage.recallAt5,
    recallAt10: figures.textToImage.recallAt10,
    partialPrecisionAt10: figures.partial.precisionAt10,
    vqa: figures.vqa?.overall.accuracy ?? 0,
  };
}

/** Compares a report's figures with {@link PACK_QUALITY_TARGETS}. */
export function checkTargets(report: Omit<PackEvalReport, "targets" | "timings">): TargetCheck[] {
  const targets = PACK_QUALITY_TARGETS;
  const { baseline } = report;
  const checks: TargetCheck[] = [];
  const atLeast = (name: string, value: number, target: number): void => {
    checks.push({ name, value, target: `≥ ${target.toFixed(2)}`, met: value >= target });
  };
  atLeast("text→image R@1", baseline.textToImage.recallAt1, targets.textToImageRecallAt1);
  atLeast("text→image R@10", baseline.textToImage.recallAt10, targets.textToImageRecallAt10);
  atLeast("partial P@10", baseline.partial.precisionAt10, targets.partialPrecisionAt10);
  if (baseline.vqa !== undefined) {
    atLeast("VQA overall", baseline.vqa.overall.accuracy, targets.vqaOverall);
    for (const type of QUESTION_TYPES) {
      atLeast(`VQA ${type}`, baseline.vqa.byType[type].accuracy, targets.vqaPerType);
    }
  }
  const detection = baseline.detection;
  if (detection !== undefined) {
    atLeast("detection AP@0.5", detection.ap50, targets.detectionAp50);
    for (const [name, accuracy] of Object.entries(detection.attributes)) {
      atLeast(`detection ${name} (true positives)`, accuracy.accuracy, targets.detectionAttributes);
    }
    atLeast("counting from detections", detection.counting.overall.accuracy, targets.detectionCounting);
    atLeast("left/right from detections", detection.position.accuracy, targets.detectionPosition);
    if (detection.chain !== undefined) {
      atLeast(
        "counting through chat's grounding",
        detection.chain.counting.accuracy,
        targets.detectionCounting,
      );
      atLeast(
        "left/right through chat's grounding",
        detection.chain.position.accuracy,
        targets.detectionPosition,
      );
    }
    if (detection.regionRetrieval !== undefined) {
      atLeast("text→region R@1", detection.regionRetrieval.recallAt1, targets.regionRecallAt1);
    }
  }
  if (report.video !== undefined) atLeast("video R@1", report.video.recallAt1, targets.videoRecallAt1);
  for (const variant of report.variants) {
    const worst = Math.min(...Object.values(variant.delta));
    checks.push({
      name: `${variant.label} vs ${baseline.label} (largest drop)`,
      value: worst,
      target: `≥ −${targets.variantTolerance.toFixed(2)}`,
      met: worst >= -targets.variantTolerance,
    });
  }
  return checks;
}

/**
 * Evaluates a loaded pack on a held-out Shapes World set generated from `seed`: the baseline rendering,
 * then each variant (same scenes, texts and questions; only format and size change), then the video clips.
 *
 * @throws ValidationError for out-of-range options; MediaError when ffmpeg fails.
 */
export async function evaluatePack({
  pack,
  seed = DEFAULT_EVAL_SEED,
  images = 1000,
  baseline = BASELINE_VARIANT,
  variants = [],
  questionsPerImage = 3,
  partialQueries = 100,
  clips = 200,
  videoSize = 128,
  videoDecode = "ffmpeg",
  batchSize = 32,
  onProgress,
}: EvaluatePackOptions): Promise<PackEvalReport> {
  const started = performance.now();
  checkInteger("batchSize", batchSize, { min: 1, max: 1024 });
  checkInteger("partialQueries", partialQueries, { min: 0, max: 1000 });
  checkInteger("clips", clips, { min: 0, max: 100_000 });
  if (clips > 0) {
    checkInteger("videoSize", videoSize, { min: 64, max: 1024 });
    if (videoSize % 2 !== 0) {
      throw new ValidationError(
        `videoSize is ${videoSize}; H.264 needs an even size, e.g. ${videoSize + 1}.`,
      );
    }
  }
  const base = completeVariant(baseline);
  const others = variants.map(completeVariant);
  const set = heldOutImages({ seed, images, questionsPerImage });

  const textStarted = performance.now();
  onProgress?.({ phase: "texts", label: "texts", done: 0, total: 1 });
  const texts = await embedTextQueries({ pack, set, seed, partialQueries });
  const textEmbedMs = performance.now() - textStarted;
  onProgress?.({ phase: "texts", label: "texts", done: 1, total: 1 });

  const common = { pack, set, texts, seed, batchSize, ...(onProgress ? { onProgress } : {}) };
  const baselineFigures = await evaluateImages({ ...common, variant: base, detect: true });
  const reference = headline(baselineFigures);
  const variantFigures: VariantFigures[] = [];
  for (const variant of others) {
    const figures = await evaluateImages({ ...common, variant });
    const values = headline(figures);
    const delta = {} as Record<VariantFigure, number>;
    for (const name of VARIANT_FIGURES) delta[name] = values[name] - reference[name];
    if (figures.vqa === undefined) delete (delta as Partial<Record<VariantFigure, number>>).vqa;
    variantFigures.push({ ...figures, delta });
  }

  const video =
    clips > 0
      ? await evaluateVideo({
          pack,
          clips: heldOutClips({ seed, clips }),
          seed,
          size: videoSize,
          decode: videoDecode,
          ...(onProgress ? { onProgress } : {}),
        })
      : undefined;

  const report = {
    modelId: pack.modelId,
    seed,
    images,
    questionsPerImage,
    baseline: baselineFigures,
    variants: variantFigures,
    ...(video === undefined ? {} : { video }),
  };
  return {
    ...report,
    targets: checkTargets(report),
    timings: { textEmbedMs, totalMs: performance.now() - started },
  };
}
