/**
 * The request and answer shapes of the few-shot classifier routes (`/v1/classifiers`), as the client
 * sends and reads them.
 */

/** `POST /v1/classifiers`: a classifier from example images per label. */
export interface CreateClassifierRequest {
  /** A letter, then letters, digits and `_` (at most 58). */
  name: string;
  /** Each label with its examples: stored item ids, data URLs, base64 or http(s) URLs. */
  labels: Array<{ label: string; examples: string[] }>;
  kinds?: string[];
  /** Write the predicted label of new images into `metadata.class_<name>`. */
  applyOnIngest?: boolean;
  threshold?: number;
  /** Replace a classifier of the same name instead of a 409. */
  replace?: boolean;
}

/** A classifier as the server shows it. */
export interface ClassifierInfo {
  name: string;
  labels: Array<{ label: string; examples: number; itemIds: string[] }>;
  kinds: string[];
  applyOnIngest: boolean;
  metadataKey: string;
  modelId: string;
  /** `embedding`, `objects` (the detection head's summary) or `both`. */
  features: string;
  method: string;
  looAccuracy: number;
  validation: string;
  threshold: number;
  scores: Array<{ method: string; priorStrength?: number; accuracy: number; logLoss: number }>;
  createdAt: string;
  updatedAt: string;
}

/** `POST /v1/classifiers/{name}/predict`: every label's calibrated probability, most probable first. */
export interface ClassifierPrediction {
  labels: Array<{ label: string; probability: number }>;
  /** True when the best probability is below the threshold. */
  none?: true;
  threshold: number;
  modelId: string;
}
