/**
 * A summary of the objects a pack's detection head finds in an image, as a feature vector for few-shot
 * classifiers: how many objects (one-hot up to {@link MAX_COUNTED_OBJECTS}), the class distribution summed
 * and at its most confident over the objects, and each attribute's distribution weighted by the objects'
 * areas and at its most confident. Whole-image embeddings carry counts and "is there a star" only weakly;
 * this carries them directly. L2-normalized; laid out by the pack's detection vocabulary.
 */
import type { Detection } from "../inference/detection-head.ts";

/** Counts above this share the last one-hot slot. */
export const MAX_COUNTED_OBJECTS = 6;

/** The detection head's vocabulary: classes, and each attribute's values (`loupe.detection`). */
export interface ObjectVocabulary {
  classes: readonly string[];
  attributes: Readonly<Record<string, readonly string[]>>;
}

/** Length of {@link objectFeatures}' vectors for a vocabulary. */
export function objectFeatureLength(vocabulary: ObjectVocabulary): number {
  const attributeValues = Object.values(vocabulary.attributes).reduce(
    (sum, values) => sum + values.length,
    0,
  );
  return MAX_COUNTED_OBJECTS + 1 + 2 * vocabulary.classes.length + 2 * attributeValues;
}

/** The feature vector of one image's detections (see the module's description). */
export function objectFeatures(detections: readonly Detection[], vocabulary: ObjectVocabulary): Float32Array {
  const out = new Float64Array(objectFeatureLength(vocabulary));
  out[Math.min(detections.length, MAX_COUNTED_OBJECTS)] = 1;
  let offset = MAX_COUNTED_OBJECTS + 1;
  const classCount = vocabulary.classes.length;
  for (const detection of detections) {
    const weight = detection.score;
    for (const [index, name] of vocabulary.classes.entries()) {
      const probability = detection.probabilities?.label[name] ?? (detection.label === name ? 1 : 0);
      out[offset + index] = (out[offset + index] ?? 0) + weight * probability;
      out[offset + classCount + index] = Math.max(
        out[offset + classCount + index] ?? 0,
        weight * probability,
      );
    }
  }
  offset += 2 * classCount;
  for (const [attribute, values] of Object.entries(vocabulary.attributes)) {
    let totalArea = 0;
    for (const detection of detections) {
      const area =
        Math.max(0, detection.box.x1 - detection.box.x0) * Math.max(0, detection.box.y1 - detection.box.y0);
      const weight = detection.score * area;
      totalArea += weight;
      for (const [index, value] of values.entries()) {
        const probability =
          detection.probabilities?.attributes[attribute]?.[value] ??
          (detection.attributes[attribute]?.value === value ? 1 : 0);
        out[offset + index] = (out[offset + index] ?? 0) + weight * probability;
        out[offset + values.length + index] = Math.max(
          out[offset + values.length + index] ?? 0,
          detection.score * probability,
        );
      }
    }
    if (totalArea > 0)
      for (let index = 0; index < values.length; index += 1)
        out[offset + index] = (out[offset + index] ?? 0) / totalArea;
    offset += 2 * values.length;
  }
  let norm = 0;
  for (const value of out) norm += value * value;
  norm = Math.sqrt(norm) || 1;
  return Float32Array.from(out, (value) => value / norm);
}
