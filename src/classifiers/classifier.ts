/**
 * What a stored few-shot classifier is: its labels with their examples (and the examples' embeddings),
 * the fitted model, the model pack it was fitted under and its measured leave-one-out accuracy; the
 * limits every classifier is held to; and the metadata key a classifier applied at ingest writes.
 */
import type { ClassifierMethod, FeatureSet, MethodScore } from "./fitting.ts";

/** Most labels (classes) one classifier may have. */
export const MAX_CLASSIFIER_LABELS = 1000;
/** Most examples one label may have. */
export const MAX_EXAMPLES_PER_LABEL = 200;
/** Most examples one classifier may have in all. */
export const MAX_CLASSIFIER_EXAMPLES = 2000;
/** Most examples one request may send (each is embedded while the request waits). */
export const MAX_EXAMPLES_PER_REQUEST = 500;
/** Most classifiers one tenant may keep. */
export const MAX_CLASSIFIERS_PER_TENANT = 100;
/** Longest label, in characters. */
export const MAX_CLASSIFIER_LABEL_LENGTH = 200;
/**
 * A classifier's name: a letter, then letters, digits and `_`, at most 58 characters, so that
 * `class_<name>` is a metadata key the filter language accepts.
 */
export const CLASSIFIER_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,57}$/;
/** The metadata key that a classifier applied at ingest writes its label under. */
export function classMetadataKey(name: string): string {
  return `class_${name}`;
}
/** Prompt each label is put into for its zero-shot prior. */
export const CLASSIFIER_LABEL_TEMPLATE = "a photo of {label}";
/**
 * Item kinds a classifier may be applied to at ingest: images, and video segments (by the segment's
 * embedding, and its keyframe for a classifier fitted on objects).
 */
export const CLASSIFIER_KINDS = ["image", "video_segment"] as const;
/** A kind a classifier applies to. */
export type ClassifierKind = (typeof CLASSIFIER_KINDS)[number];

/**
 * One example as stored: where its image came from (a stored item, or bytes the request sent, kept in
 * the blob store under the classifier) and its embedding under the classifier's model.
 */
export interface StoredExample {
  /** The item id the caller named, when it named one. */
  itemId?: string;
  /** The image bytes, `blob:<sha256>`, so the example can be embedded again under another pack. */
  mediaRef: string;
  /** The unit embedding under {@link StoredClassifier.modelId}, as base64 of little-endian float32. */
  vector: string;
  /** The summary of the objects the pack's detection head found (`object-features.ts`), when it has one. */
  objects?: string;
}

/** One class of a stored classifier. */
export interface StoredLabel {
  label: string;
  examples: StoredExample[];
}

/** The fitted model as stored (vectors as base64 float32). */
export interface StoredModel {
  method: ClassifierMethod;
  weights: string[];
  bias: number[];
  temperature: number;
}

/** A classifier as the store keeps it (one JSON file). */
export interface StoredClassifier {
  /** File format version. */
  version: 1;
  name: string;
  tenant: string;
  createdAt: string;
  updatedAt: string;
  /** The model pack the embeddings and model belong to. */
  modelId: string;
  dimension: number;
  labels: StoredLabel[];
  kinds: ClassifierKind[];
  applyOnIngest: boolean;
  /** What the model's vectors are made of; `embedding` when absent. */
  features?: FeatureSet;
  /** Set by the caller; else the fitted threshold is used. */
  threshold?: number;
  fitted: {
    model: StoredModel;
    looAccuracy: number;
    validation: "leave-one-out" | "10-fold";
    scores: MethodScore[];
    /** The `none` threshold read off the held-out predictions. */
    threshold: number;
  };
}

/** Writes a float32 vector as base64. */
export function encodeVector(vector: Float32Array): string {
  const copy = Float32Array.from(vector);
  return Buffer.from(copy.buffer, copy.byteOffset, copy.byteLength).toString("base64");
}

/** Reads a vector written by {@link encodeVector}. */
export function decodeVector(text: string): Float32Array {
  const bytes = Buffer.from(text, "base64");
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return new Float32Array(copy.buffer, 0, Math.floor(copy.length / 4));
}
