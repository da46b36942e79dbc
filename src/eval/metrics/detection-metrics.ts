/**
 * Object detection figures: box IoU, COCO-style average precision per class (greedy matching by score,
 * 101-point interpolated precision, as pycocotools computes it), AP@0.5 and AP@[.5:.95], attribute accuracy
 * over true positives, counting accuracy, and text → region Recall@k. Pure functions over plain boxes;
 * images are named by any key compared with `===` (a gallery index, an item id).
 */
import { ValidationError } from "../../errors.ts";
import type { Accuracy } from "./metrics.ts";

/** An axis-aligned box, `x0 ≤ x1`, `y0 ≤ y1`, in any one unit (normalized or pixels) used throughout. */
export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** The image a box belongs to: a gallery index or an item id. */
export type ImageKey = number | string;

/** A ground-truth object. */
export interface GroundTruthBox {
  image: ImageKey;
  label: string;
  box: Box;
  /** Attribute values, e.g. `{ color: "red", size: "large" }`. */
  attributes?: Readonly<Record<string, string>>;
}

/** A detection: a ground-truth-like box with a confidence score. */
export interface DetectedBox extends GroundTruthBox {
  score: number;
}

/** The IoU a detection needs with a ground-truth box to be a true positive (and a region to be a hit). */
export const DETECTION_HIT_IOU = 0.5;

/**
 * The IoU thresholds of AP@[.5:.95], as numpy's `linspace(.5, .95, 10)` computes them (pycocotools'
 * `iouThrs`), so boundary cases agree with it bit for bit.
 */
export const COCO_IOU_THRESHOLDS: readonly number[] = Array.from({ length: 10 }, (_v, index) =>
  index === 9 ? 0.95 : index * ((0.95 - 0.5) / 9) + 0.5,
);

/** The 101 recall points of the interpolated precision, as numpy's `linspace(0, 1, 101)` computes them. */
const RECALL_POINTS: readonly number[] = Array.from({ length: 101 }, (_v, index) =>
  index === 100 ? 1 : index * (1 / 100),
);

/** Detections per image and class that pycocotools scores by default. */
export const COCO_MAX_DETECTIONS = 100;

function checkBox(box: Box, name: string): void {
  const { x0, y0, x1, y1 } = box;
  if (![x0, y0, x1, y1].every(Number.isFinite) || x1 < x0 || y1 < y0) {
    throw new ValidationError(
      `${name} box ${JSON.stringify(box)} is not valid; give finite coordinates with x0 ≤ x1 and y0 ≤ y1.`,
      { context: { box } },
    );
  }
}

function checkIoUThreshold(minIoU: number): void {
  if (!Number.isFinite(minIoU) || minIoU <= 0 || minIoU > 1) {
    throw new ValidationError(`minIoU is ${minIoU}; give an IoU threshold in (0, 1].`, {
      context: { minIoU },
    });
  }
}

function checkScore(detection: DetectedBox, index: number): void {
  if (!Number.isFinite(detection.score)) {
    throw new ValidationError(
      `Detection ${index} has score ${detection.score}; scores must be finite numbers.`,
      { context: { index, score: detection.score } },
    );
  }
}

/**
 * Intersection over union of two boxes, in [0, 1]. Boxes that only touch overlap by 0; a zero-area box has
 * IoU 0 with everything, itself included (pycocotools' box IoU, without its +1 pixel convention).
 *
 * @throws ValidationError for a box with non-finite coordinates or `x1 < x0` / `y1 < y0`.
 */
export function boxIoU(left: Box, right: Box): number {
  checkBox(left, "First");
  checkBox(right, "Second");
  const width = Math.min(left.x1, right.x1) - Math.max(left.x0, right.x0);
  const height = Math.min(left.y1, right.y1) - Math.max(left.y0, right.y0);
  if (width <= 0 || height <= 0) return 0;
  const overlap = width * height;
  const union =
    (left.x1 - left.x0) * (left.y1 - left.y0) + (right.x1 - right.x0) * (right.y1 - right.y0) - overlap;
  return union <= 0 ? 0 : overlap / union;
}

/** Options of {@link matchDetections}. */
export interface MatchDetectionsOptions {
  detections: readonly DetectedBox[];
  groundTruth: readonly GroundTruthBox[];
  /** Default {@link DETECTION_HIT_IOU}. */
  minIoU?: number;
  /** Detections scored per image and class, best first; the rest are ignored. Default {@link COCO_MAX_DETECTIONS}. */
  maxDetections?: number;
}

/** What {@link matchDetections} found. */
export interface DetectionMatching {
  /**
   * Per detection (input order): the index of the ground-truth box it matched, -1 for a false positive, or
   * `undefined` when it fell beyond `maxDetections` of its image and class and was not scored.
   */
  matched: (number | undefined)[];
  /** Per ground-truth box (input order): the index of the detection that matched it, or -1. */
  matchedBy: number[];
}

function groupKey(image: ImageKey, label: string): string {
  return JSON.stringify([typeof image, image, label]);
}

/** Indices sorted by score, best first; equal scores keep input order (a stable sort, like numpy's mergesort). */
function byScore(indices: number[], detections: readonly DetectedBox[]): number[] {
  return indices.sort(
    (left, right) => (detections[right] as DetectedBox).score - (detections[left] as DetectedBox).score,
  );
}

/**
 * Greedy matching of detections to ground truth of the same image and label, as pycocotools does it: per
 * image and class, detections in order of score (ties in input order) each take the not yet matched
 * ground-truth box they overlap most, if that IoU is ≥ `minIoU`; equal IoUs go to the later ground-truth
 * box. A second detection of an already matched object is a false positive.
 *
 * @throws ValidationError for invalid boxes, non-finite scores, or `minIoU` outside (0, 1].
 */
export function matchDetections({
  detections,
  groundTruth,
  minIoU = DETECTION_HIT_IOU,
  maxDetections = COCO_MAX_DETECTIONS,
}: MatchDetectionsOptions): DetectionMatching {
  checkIoUThreshold(minIoU);
  if (!Number.isInteger(maxDetections) || maxDetections < 1) {
    throw new ValidationError(`maxDetections is ${maxDetections}; give a positive integer.`);
  }
  detections.forEach((detection, index) => {
    checkScore(detection, index);
    checkBox(detection.box, `Detection ${index}`);
  });
  groundTruth.forEach((truth, index) => {
    checkBox(truth.box, `Ground-truth ${index}`);
  });

  const truthsByGroup = new Map<string, number[]>();
  groundTruth.forEach((truth, index) => {
    const key = groupKey(truth.image, truth.label);
    const members = truthsByGroup.get(key);
    if (members === undefined) truthsByGroup.set(key, [index]);
    else members.push(index);
  });
  const detectionsByGroup = new Map<string, number[]>();
  detections.forEach((detection, index) => {
    const key = groupKey(detection.image, detection.label);
    const members = detectionsByGroup.get(key);
    if (members === undefined) detectionsByGroup.set(key, [index]);
    else members.push(index);
  });

  const matched: (number | undefined)[] = detections.map(() => undefined);
  const matchedBy = groundTruth.map(() => -1);
  // pycocotools never lets a threshold of exactly 1 require more than a perfect overlap can give.
  const threshold = Math.min(minIoU, 1 - 1e-10);
  for (const [key, members] of detectionsByGroup) {
    const truths = truthsByGroup.get(key) ?? [];
    for (const detectionIndex of byScore(members, detections).slice(0, maxDetections)) {
      const box = (detections[detectionIndex] as DetectedBox).box;
      let best = -1;
      let bestIoU = threshold;
      for (const truthIndex of truths) {
        if ((matchedBy[truthIndex] as number) >= 0) continue;
        const iou = boxIoU(box, (groundTruth[truthIndex] as GroundTruthBox).box);
        if (iou < bestIoU) continue;
        bestIoU = iou;
        best = truthIndex;
      }
      matched[detectionIndex] = best;
      if (best >= 0) matchedBy[best] = detectionIndex;
    }
  }
  return { matched, matchedBy };
}

/** AP of one class, or `undefined` when the class has no ground truth (pycocotools' -1). */
function classAveragePrecision({
  detections,
  matched,
  members,
  truthCount,
}: {
  detections: readonly DetectedBox[];
  matched: readonly (number | undefined)[];
  members: number[];
  truthCount: number;
}): number | undefined {
  if (truthCount === 0) return undefined;
  const scored = byScore(
    members.filter((index) => matched[index] !== undefined),
    detections,
  );
  const recall: number[] = [];
  const precision: number[] = [];
  let truePositives = 0;
  scored.forEach((index, rank) => {
    if ((matched[index] as number) >= 0) truePositives += 1;
    recall.push(truePositives / truthCount);
    precision.push(truePositives / (rank + 1));
  });
  // The precision envelope: precision at recall r is the best precision at any recall ≥ r.
  for (let index = precision.length - 1; index > 0; index -= 1) {
    precision[index - 1] = Math.max(precision[index - 1] as number, precision[index] as number);
  }
  let sum = 0;
  let position = 0;
  for (const point of RECALL_POINTS) {
    // numpy's searchsorted(recall, point, side="left"): the first rank whose recall reaches the point.
    while (position < recall.length && (recall[position] as number) < point) position += 1;
    if (position < precision.length) sum += precision[position] as number;
  }
  return sum / RECALL_POINTS.length;
}

/** Average precision of one class. */
export interface ClassAveragePrecision {
  /** AP at IoU 0.5; `undefined` when the class has no ground truth (left out of the means). */
  ap50: number | undefined;
  /** Mean AP over IoU 0.50:0.05:0.95; `undefined` when the class has no ground truth. */
  ap5095: number | undefined;
  groundTruth: number;
  detections: number;
}

/** What {@link detectionAveragePrecision} measured. */
export interface DetectionAveragePrecision {
  /** Mean AP@0.5 over the classes with ground truth; 0 when no class has any. */
  ap50: number;
  /** Mean AP@[.5:.95] over the classes with ground truth (COCO's mAP); 0 when no class has any. */
  ap5095: number;
  /** Per class, in `classes` order, then any other label met in first-seen order. */
  perClass: Record<string, ClassAveragePrecision>;
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((sum, value) => sum + value, 0) / values.length;
}

/**
 * COCO-style average precision: per class and IoU threshold, detections of all images ranked by score
 * (ties in input order) are true positives when {@link matchDetections} matched them; precision is made
 * monotone and read at the 101 recall points 0, 0.01, …, 1 (0 past the highest recall reached), and AP is
 * their mean. A class without ground truth has no AP and is left out of the means, even when it has
 * detections, as pycocotools does; a class with ground truth but no detections has AP 0.
 *
 * @throws ValidationError for invalid boxes or non-finite scores.
 */
export function detectionAveragePrecision({
  detections,
  groundTruth,
  classes = [],
  maxDetections = COCO_MAX_DETECTIONS,
}: {
  detections: readonly DetectedBox[];
  groundTruth: readonly GroundTruthBox[];
  /** Classes to report even when absent from both lists. */
  classes?: readonly string[];
  maxDetections?: number;
}): DetectionAveragePrecision {
  const labels = [
    ...new Set([...classes, ...groundTruth.map((truth) => truth.label), ...detections.map((d) => d.label)]),
  ];
  const membersOf = new Map<string, number[]>(labels.map((label) => [label, []]));
  detections.forEach((detection, index) => {
    membersOf.get(detection.label)?.push(index);
  });
  const truthCounts = new Map<string, number>(labels.map((label) => [label, 0]));
  for (const truth of groundTruth) truthCounts.set(truth.label, (truthCounts.get(truth.label) ?? 0) + 1);

  const byThreshold = COCO_IOU_THRESHOLDS.map((minIoU) => {
    const { matched } = matchDetections({ detections, groundTruth, minIoU, maxDetections });
    return new Map(
      labels.map((label) => [
        label,
        classAveragePrecision({
          detections,
          matched,
          members: membersOf.get(label) ?? [],
          truthCount: truthCounts.get(label) ?? 0,
        }),
      ]),
    );
  });
  const perClass: Record<string, ClassAveragePrecision> = {};
  for (const label of labels) {
    const values = byThreshold.map((aps) => aps.get(label));
    const hasTruth = (truthCounts.get(label) ?? 0) > 0;
    perClass[label] = {
      ap50: values[0],
      ap5095: hasTruth ? mean(values as number[]) : undefined,
      groundTruth: truthCounts.get(label) ?? 0,
      detections: membersOf.get(label)?.length ?? 0,
    };
  }
  const scoredClasses = Object.values(perClass).filter((entry) => entry.groundTruth > 0);
  return {
    ap50: mean(scoredClasses.map((entry) => entry.ap50 as number)),
    ap5095: mean(scoredClasses.map((entry) => entry.ap5095 as number)),
    perClass,
  };
}

/**
 * Share of true positives (detections matched at IoU ≥ `minIoU`) whose `attribute` equals the matched
 * object's. Counts only pairs where both sides carry the attribute; 0 with count 0 when there are none.
 *
 * @throws ValidationError as {@link matchDetections} does.
 */
export function attributeAccuracy({
  detections,
  groundTruth,
  attribute,
  minIoU = DETECTION_HIT_IOU,
}: {
  detections: readonly DetectedBox[];
  groundTruth: readonly GroundTruthBox[];
  attribute: string;
  minIoU?: number;
}): Accuracy {
  const { matched } = matchDetections({ detections, groundTruth, minIoU });
  let correct = 0;
  let count = 0;
  matched.forEach((truthIndex, detectionIndex) => {
    if (truthIndex === undefined || truthIndex < 0) return;
    const predicted = (detections[detectionIndex] as DetectedBox).attributes?.[attribute];
    const expected = (groundTruth[truthIndex] as GroundTruthBox).attributes?.[attribute];
    if (predicted === undefined || expected === undefined) return;
    count += 1;
    if (predicted === expected) correct += 1;
  });
  return { accuracy: count === 0 ? 0 : correct / count, count };
}

/**
 * Share of counting questions whose predicted count equals the expected one; 0 with count 0 for none.
 *
 * @throws ValidationError for a count that is not a non-negative integer.
 */
export function countingAccuracy({
  results,
}: {
  results: readonly { predicted: number; expected: number }[];
}): Accuracy {
  let correct = 0;
  results.forEach(({ predicted, expected }, index) => {
    for (const [name, value] of [
      ["predicted", predicted],
      ["expected", expected],
    ] as const) {
      if (!Number.isInteger(value) || value < 0) {
        throw new ValidationError(
          `Counting result ${index} has ${name} count ${value}; counts are non-negative integers.`,
          { context: { index, predicted, expected } },
        );
      }
    }
    if (predicted === expected) correct += 1;
  });
  return { accuracy: results.length === 0 ? 0 : correct / results.length, count: results.length };
}

/** A region of one image: a ranked result of text → region retrieval or an object it should find. */
export interface RegionRef {
  image: ImageKey;
  box: Box;
}

/**
 * Text → region Recall@k: the share of queries with a region among their first `k` results that lies on
 * the same image as one of the query's targets (the objects satisfying its description) with IoU ≥ `minIoU`.
 * 0 for no queries.
 *
 * @throws ValidationError when rankings and targets differ in number, a query has no target, `k` is not a
 *   positive integer, or a box is invalid.
 */
export function regionRecallAtK({
  ranked,
  targets,
  k,
  minIoU = DETECTION_HIT_IOU,
}: {
  /** Per query, its regions best first. */
  ranked: readonly (readonly RegionRef[])[];
  /** Per query, the objects that satisfy it. */
  targets: readonly (readonly RegionRef[])[];
  k: number;
  minIoU?: number;
}): number {
  if (!Number.isInteger(k) || k < 1) {
    throw new ValidationError(`k must be a positive integer, got ${k}.`, { context: { k } });
  }
  checkIoUThreshold(minIoU);
  if (ranked.length !== targets.length) {
    throw new ValidationError(
      `Got ${ranked.length} rankings but ${targets.length} target lists; give one of each per query.`,
    );
  }
  if (ranked.length === 0) return 0;
  let hits = 0;
  ranked.forEach((row, query) => {
    const wanted = targets[query] as readonly RegionRef[];
    if (wanted.length === 0) {
      throw new ValidationError(
        `Query ${query} has no target region; a query nothing satisfies cannot be scored.`,
        { context: { query } },
      );
    }
    const hit = row
      .slice(0, k)
      .some((region) =>
        wanted.some((target) => target.image === region.image && boxIoU(region.box, target.box) >= minIoU),
      );
    if (hit) hits += 1;
  });
  return hits / ranked.length;
}
