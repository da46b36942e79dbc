/**
 * Figures of the object-level cases: detection cases (`POST /v1/detect` on a stored image against its
 * objects) and region cases (a single-object description searched among the regions). Per case
 * ({@link detectionCaseMetrics}, {@link regionCaseMetrics}) and pooled over a run ({@link summarizeDetection},
 * {@link summarizeRegions}), with the metrics of `../metrics/detection-metrics.ts`. Both summaries are
 * absent when the run shows no detection head at all, so a pack without one has no such figures rather
 * than figures of 0.
 */
import {
  attributeAccuracy,
  boxIoU,
  DETECTION_HIT_IOU,
  type DetectedBox,
  detectionAveragePrecision,
  type GroundTruthBox,
  matchDetections,
  regionRecallAtK,
} from "../metrics/detection-metrics.ts";
import type { CaseMetric, CaseRecord, RunSummary } from "./results.ts";
import type { CountQuestion, NormalizedBox, RegionTarget, TruthObject } from "./suite.ts";

/** The error code of a detection case the server could not run: its pack has no detection head. */
export const NO_DETECTION_HEAD = "no_detection_head";

/** The attributes whose accuracy over true positives is reported. */
export const DETECTION_ATTRIBUTES = ["color", "size"] as const;

/** A detection as a record keeps it. */
type RecordedDetection = NonNullable<CaseRecord["output"]["detections"]>[number];

/** The count a question gets from detections: those of its class and colour (any, when it names none). */
export function countFromDetections(
  question: Pick<CountQuestion, "label" | "color">,
  detections: readonly Pick<RecordedDetection, "label" | "attributes">[],
): number {
  return detections.filter(
    (detection) =>
      (question.label === undefined || detection.label === question.label) &&
      (question.color === undefined || detection.attributes.color === question.color),
  ).length;
}

const truthBoxes = (image: string, objects: readonly TruthObject[]): GroundTruthBox[] =>
  objects.map((object) => ({ image, label: object.label, box: object.box, attributes: object.attributes }));

const detectedBoxes = (image: string, detections: readonly RecordedDetection[]): DetectedBox[] =>
  detections.map((detection) => ({
    image,
    label: detection.label,
    score: detection.score,
    box: detection.box,
    attributes: detection.attributes,
  }));

/**
 * One image's detection figures: objects found (same class, IoU ≥ 0.5), false positives, attributes right
 * on the objects found, and counting questions answered right. The case passes when every object is found
 * with its attributes, nothing else is, and every count is right.
 */
export function detectionCaseMetrics({
  objects,
  counts,
  detections,
}: {
  objects: readonly TruthObject[];
  counts: readonly CountQuestion[];
  detections: readonly RecordedDetection[];
}): { metrics: Record<string, CaseMetric>; passed: boolean } {
  const { matched } = matchDetections({
    detections: detectedBoxes("image", detections),
    groundTruth: truthBoxes("image", objects),
  });
  let found = 0;
  let attributesRight = 0;
  matched.forEach((truthIndex, detectionIndex) => {
    if (truthIndex === undefined || truthIndex < 0) return;
    found += 1;
    const truth = objects[truthIndex] as TruthObject;
    const detection = detections[detectionIndex] as RecordedDetection;
    if (DETECTION_ATTRIBUTES.every((name) => detection.attributes[name] === truth.attributes[name])) {
      attributesRight += 1;
    }
  });
  const countsRight = counts.filter(
    (question) => countFromDetections(question, detections) === question.expected,
  ).length;
  const metrics = {
    objects: objects.length,
    detections: detections.length,
    found,
    falsePositives: detections.length - found,
    attributesRight,
    counts: counts.length,
    countsRight,
  };
  return {
    metrics,
    passed:
      found === objects.length &&
      detections.length === found &&
      attributesRight === found &&
      countsRight === counts.length,
  };
}

/** Whether a region lies on a target's image (compared as given) with IoU ≥ 0.5 with its box. */
function regionHits(
  region: { image: string; box: NormalizedBox },
  targets: readonly RegionTarget[],
): boolean {
  return targets.some(
    (target) => target.image === region.image && boxIoU(region.box, target.box) >= DETECTION_HIT_IOU,
  );
}

/** One region query's figures: a hit at rank 1 and within the first 5, and the rank of the first hit. */
export function regionCaseMetrics({
  regions,
  targets,
}: {
  /** The regions found, best first; `image` is named as in `targets`. */
  regions: readonly { image: string; box: NormalizedBox }[];
  targets: readonly RegionTarget[];
}): Record<string, CaseMetric> {
  const position = regions.findIndex((region) => regionHits(region, targets));
  return {
    hitAt1: position === 0,
    hitAt5: position >= 0 && position < 5,
    firstHit: position < 0 ? null : position + 1,
    regions: regions.length,
  };
}

/**
 * The detection figures of a run, pooled over its detection cases: AP@0.5 and AP@[.5:.95] (mean over the
 * classes with objects, every image's detections ranked together), colour and size accuracy over true
 * positives, and counting accuracy over every counting question. A case that failed with another error
 * counts as an image where nothing was found. `null` when there are no detection cases or every one was
 * refused for want of a detection head.
 */
export function summarizeDetection(
  records: readonly CaseRecord[],
  figures: Record<string, number | null>,
): NonNullable<RunSummary["detection"]> | null {
  const scored = records.filter(
    (record) => record.kind === "detection" && record.error?.code !== NO_DETECTION_HEAD,
  );
  if (scored.length === 0) return null;
  const groundTruth = scored.flatMap((record) => truthBoxes(record.id, record.expected.objects ?? []));
  const detections = scored.flatMap((record) => detectedBoxes(record.id, record.output.detections ?? []));
  const ap = detectionAveragePrecision({ detections, groundTruth });
  const perClass: NonNullable<RunSummary["detection"]>["perClass"] = {};
  for (const [label, entry] of Object.entries(ap.perClass)) {
    perClass[label] = {
      ap50: entry.ap50 ?? null,
      ap5095: entry.ap5095 ?? null,
      objects: entry.groundTruth,
      detections: entry.detections,
    };
    figures[`detection.perClass.${label}.ap50`] = entry.ap50 ?? null;
  }
  const attributes: Record<string, { accuracy: number; count: number }> = {};
  for (const name of DETECTION_ATTRIBUTES) {
    attributes[name] = attributeAccuracy({ detections, groundTruth, attribute: name });
  }
  const questions = scored.flatMap((record) =>
    (record.expected.counts ?? []).map(
      (question) => countFromDetections(question, record.output.detections ?? []) === question.expected,
    ),
  );
  const counting = {
    accuracy: questions.length === 0 ? 0 : questions.filter(Boolean).length / questions.length,
    count: questions.length,
  };
  figures["detection.ap50"] = ap.ap50;
  figures["detection.ap5095"] = ap.ap5095;
  for (const name of DETECTION_ATTRIBUTES) {
    const entry = attributes[name] as { accuracy: number; count: number };
    figures[`detection.${name}Accuracy`] = entry.count === 0 ? null : entry.accuracy;
  }
  figures["detection.counting"] = counting.count === 0 ? null : counting.accuracy;
  return {
    images: scored.length,
    objects: groundTruth.length,
    detections: detections.length,
    ap50: ap.ap50,
    ap5095: ap.ap5095,
    perClass,
    attributes,
    counting,
  };
}

/**
 * Text → region Recall@1 and Recall@5 over the run's region cases (a case that failed counts as a miss).
 * `null` when there are none, or when no query found any region at all: a corpus without regions (a pack
 * without a detection head) has nothing to measure.
 */
export function summarizeRegions(
  records: readonly CaseRecord[],
  figures: Record<string, number | null>,
): NonNullable<RunSummary["regions"]> | null {
  const regionRecords = records.filter((record) => record.kind === "region");
  if (!regionRecords.some((record) => (record.output.regions ?? []).length > 0)) return null;
  const scorable = regionRecords.filter((record) => (record.expected.targets ?? []).length > 0);
  const ranked = scorable.map((record) => record.output.regions ?? []);
  const targets = scorable.map((record) => record.expected.targets ?? []);
  const recall = (k: number) =>
    scorable.length === 0 ? 0 : regionRecallAtK({ ranked, targets, k, minIoU: DETECTION_HIT_IOU });
  const regions = { queries: scorable.length, recallAt1: recall(1), recallAt5: recall(5) };
  figures["regions.recallAt1"] = regions.recallAt1;
  figures["regions.recallAt5"] = regions.recallAt5;
  return regions;
}
