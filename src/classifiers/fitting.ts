/**
 * The maths of few-shot classifiers over unit embeddings, in plain TypeScript: two models, fitted on the
 * examples' embeddings and chosen between by measurement.
 *
 * - **Nearest class mean**: each class is the normalized mean of its examples; a class's logit is its
 *   cosine similarity to the query times a scale. With one or two shots this is hard to beat.
 * - **Multinomial logistic regression with a zero-shot prior**: weights start at the labels' text
 *   embeddings times the pack's logit scale (the zero-shot classifier) and are pulled back toward them by an
 *   L2 penalty, so few examples move the decision only as far as they support.
 *
 * - **Diagonal linear discriminant** (shrunk): each class is its mean, and each feature is weighed by the
 *   inverse of its within-class variance (pooled over classes, shrunk toward the average variance), so a
 *   feature that is steady within a class and differs between classes decides, however many others vary.
 *   This is what finds "is there a star" in an object summary where counts and colours vary freely.
 *
 * All are scored by leave-one-out (each example predicted by the model fitted without it); the one with
 * the better held-out accuracy (then log-loss) is kept, its temperature is fitted on those held-out logits
 * (calibration), and the threshold under which a prediction is `none` is read off them too.
 */

/** The two model families. */
export const CLASSIFIER_METHODS = ["nearest-mean", "logistic", "diagonal-discriminant"] as const;
/** A model family. */
export type ClassifierMethod = (typeof CLASSIFIER_METHODS)[number];

/** Training data: unit vectors with class indices, and per class a unit prior (the label's text embedding). */
export interface TrainingSet {
  /** One unit vector per example. */
  vectors: readonly Float32Array[];
  /** Class index of each example, 0 … classes − 1. */
  labels: readonly number[];
  /** Number of classes; every class needs at least one example. */
  classes: number;
  /** Per class, the unit text embedding of its label (the zero-shot classifier). */
  priors: readonly Float32Array[];
  /** Softmax scale of zero-shot classification (the pack's logit scale). */
  priorScale: number;
}

/** A fitted linear model: logits = (W·x + b) / temperature. */
export interface LinearModel {
  method: ClassifierMethod;
  /** Rows of W, one per class. */
  weights: Float32Array[];
  bias: Float64Array;
  /** Divides the logits before the softmax; fitted on the held-out logits. */
  temperature: number;
}

/** Held-out figures of one method. */
export interface MethodScore {
  method: ClassifierMethod;
  /** The logistic regression's prior strength. */
  priorStrength?: number;
  /** The weight of the zero-shot prior in nearest-mean logits. */
  priorWeight?: number;
  /** The diagonal discriminant's shrinkage of variances toward their mean. */
  shrinkage?: number;
  /** Share of examples predicted right by the model fitted without them. */
  accuracy: number;
  /** Mean negative log-likelihood of the held-out predictions, after calibration. */
  logLoss: number;
}

/** What {@link fitClassifier} returns. */
export interface FittedClassifier {
  model: LinearModel;
  /** Leave-one-out accuracy of the chosen method (k-fold past {@link MAX_EXACT_LOO_EXAMPLES}). */
  looAccuracy: number;
  /** How held-out accuracy was measured. */
  validation: "leave-one-out" | "10-fold";
  /** Both methods' held-out figures, best first. */
  scores: MethodScore[];
  /** Probability under which the best label is reported as `none`. */
  threshold: number;
  /** The chosen model's held-out raw logits, one row per example (not stored; for combining models). */
  heldOut: Float64Array[];
}

/** Options of the logistic regression. */
export interface LogisticOptions {
  /** Strength of the pull toward the zero-shot weights (per unit of mean loss). */
  priorStrength?: number;
  /** Gradient steps. */
  iterations?: number;
  /** Adam's step size. */
  learningRate?: number;
}

/** Prior strengths the logistic regression is tried with, strongest first. */
export const PRIOR_STRENGTHS: readonly number[] = [10, 1, 0.1, 0.01];
/** Weights of the zero-shot prior nearest-mean is tried with (0: the examples alone). */
export const NEAREST_MEAN_PRIOR_WEIGHTS: readonly number[] = [0, 0.5, 1, 2];
/** Shrinkages of per-feature variances toward their mean the diagonal discriminant is tried with. */
export const DISCRIMINANT_SHRINKAGES: readonly number[] = [0.05, 0.3, 0.8];
/** Weights of the zero-shot prior the diagonal discriminant is tried with (0: the examples alone). */
export const DISCRIMINANT_PRIOR_WEIGHTS: readonly number[] = [0, 1];
/** Scale of nearest-class-mean logits before calibration (cosines are in [−1, 1]). */
export const NEAREST_MEAN_SCALE = 30;
/** Past this many examples, held-out accuracy is measured by 10-fold cross-validation, not leave-one-out. */
export const MAX_EXACT_LOO_EXAMPLES = 40;

const DEFAULT_LOGISTIC: Required<LogisticOptions> = {
  priorStrength: 0.02,
  iterations: 150,
  learningRate: 0.05,
};

/** Dot product of two vectors of the same length. */
export function dot(left: ArrayLike<number>, right: ArrayLike<number>): number {
  let sum = 0;
  for (let index = 0; index < left.length; index += 1) sum += (left[index] ?? 0) * (right[index] ?? 0);
  return sum;
}

/** Softmax of logits divided by `temperature`, stable for large logits. */
export function softmaxWithTemperature(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const out = new Float64Array(logits.length);
  let max = Number.NEGATIVE_INFINITY;
  for (let index = 0; index < logits.length; index += 1)
    max = Math.max(max, (logits[index] ?? 0) / temperature);
  let sum = 0;
  for (let index = 0; index < logits.length; index += 1) {
    const value = Math.exp((logits[index] ?? 0) / temperature - max);
    out[index] = value;
    sum += value;
  }
  for (let index = 0; index < out.length; index += 1) out[index] = (out[index] ?? 0) / sum;
  return out;
}

/** Raw logits W·x + b of a model (before its temperature). */
export function modelLogits(
  model: Pick<LinearModel, "weights" | "bias">,
  vector: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(model.weights.length);
  for (let row = 0; row < model.weights.length; row += 1) {
    out[row] = dot(model.weights[row] as Float32Array, vector) + (model.bias[row] ?? 0);
  }
  return out;
}

/** Calibrated class probabilities of a vector. */
export function predictProbabilities(model: LinearModel, vector: ArrayLike<number>): Float64Array {
  return softmaxWithTemperature(modelLogits(model, vector), model.temperature);
}

function normalized(vector: Float64Array): Float32Array {
  let norm = 0;
  for (const value of vector) norm += value * value;
  norm = Math.sqrt(norm);
  const out = new Float32Array(vector.length);
  if (norm === 0) return out;
  for (let index = 0; index < vector.length; index += 1) out[index] = (vector[index] ?? 0) / norm;
  return out;
}

function checkSet(set: TrainingSet): number {
  const { vectors, labels, classes, priors } = set;
  if (classes < 2) throw new RangeError(`A classifier needs at least 2 classes; got ${classes}.`);
  if (vectors.length !== labels.length) throw new RangeError("vectors and labels differ in length");
  if (priors.length !== classes) throw new RangeError("one prior per class is needed");
  const dimension = priors[0]?.length ?? 0;
  const counts = new Array<number>(classes).fill(0);
  for (const [index, label] of labels.entries()) {
    if (!Number.isInteger(label) || label < 0 || label >= classes)
      throw new RangeError(`label ${label} out of range`);
    if (vectors[index]?.length !== dimension) throw new RangeError("vectors differ in dimension");
    counts[label] = (counts[label] ?? 0) + 1;
  }
  const empty = counts.indexOf(0);
  if (empty >= 0) throw new RangeError(`class ${empty} has no examples`);
  return dimension;
}

/**
 * Nearest class mean: each class's normalized mean of the examples given (`include`), scaled by
 * {@link NEAREST_MEAN_SCALE}, plus `priorWeight` times the zero-shot weights (`priorScale` × the label's text
 * embedding), so the logits are a mix of similarity to the examples and zero-shot agreement. Without the
 * prior, a class left with no examples (a held-out single shot) falls back to its text embedding.
 */
export function fitNearestMean(
  set: TrainingSet,
  include?: (index: number) => boolean,
  priorWeight = 0,
): LinearModel {
  const dimension = set.priors[0]?.length ?? 0;
  const sums = Array.from({ length: set.classes }, () => new Float64Array(dimension));
  const counts = new Array<number>(set.classes).fill(0);
  for (const [index, vector] of set.vectors.entries()) {
    if (include !== undefined && !include(index)) continue;
    const label = set.labels[index] as number;
    const sum = sums[label] as Float64Array;
    for (let d = 0; d < dimension; d += 1) sum[d] = (sum[d] ?? 0) + (vector[d] ?? 0);
    counts[label] = (counts[label] ?? 0) + 1;
  }
  const weights = sums.map((sum, label) => {
    const prior = set.priors[label] as Float32Array;
    if (priorWeight === 0) {
      return (counts[label] ?? 0) > 0
        ? scaled(normalized(sum), NEAREST_MEAN_SCALE)
        : scaled(prior, NEAREST_MEAN_SCALE);
    }
    const mean = (counts[label] ?? 0) > 0 ? normalized(sum) : new Float32Array(dimension);
    const row = new Float32Array(dimension);
    for (let d = 0; d < dimension; d += 1) {
      row[d] = NEAREST_MEAN_SCALE * (mean[d] ?? 0) + priorWeight * set.priorScale * (prior[d] ?? 0);
    }
    return row;
  });
  return { method: "nearest-mean", weights, bias: new Float64Array(set.classes), temperature: 1 };
}

function scaled(vector: Float32Array, factor: number): Float32Array {
  const out = new Float32Array(vector.length);
  for (let index = 0; index < vector.length; index += 1) out[index] = (vector[index] ?? 0) * factor;
  return out;
}

/**
 * Shrunk diagonal linear discriminant: class means, and per feature the within-class variance pooled over
 * the classes and shrunk toward the mean variance by `shrinkage` (0 … 1), which keeps a feature that happens
 * not to vary among a few examples from taking over. Logits are the Gaussian log-likelihoods with that shared
 * diagonal covariance, linear in the input: w_kd = μ_kd / σ²_d, b_k = −Σ_d μ_kd² / 2σ²_d. Equal class priors
 * (the examples' class balance says how the user labelled, not how often a class occurs). A class left with no
 * examples (a held-out single shot) gets a zero row and the lowest bias of the others. `priorWeight` adds
 * that many times the zero-shot logits (`priorScale` × the label's text embedding), as nearest mean does.
 */
export function fitDiagonalDiscriminant(
  set: TrainingSet,
  include?: (index: number) => boolean,
  { shrinkage = 0.3, priorWeight = 0 }: { shrinkage?: number; priorWeight?: number } = {},
): LinearModel {
  const dimension = set.priors[0]?.length ?? 0;
  const sums = Array.from({ length: set.classes }, () => new Float64Array(dimension));
  const counts = new Array<number>(set.classes).fill(0);
  for (const [index, vector] of set.vectors.entries()) {
    if (include !== undefined && !include(index)) continue;
    const label = set.labels[index] as number;
    const sum = sums[label] as Float64Array;
    for (let d = 0; d < dimension; d += 1) sum[d] = (sum[d] ?? 0) + (vector[d] ?? 0);
    counts[label] = (counts[label] ?? 0) + 1;
  }
  const means = sums.map((sum, label) => sum.map((value) => value / Math.max(counts[label] ?? 0, 1)));
  const variance = new Float64Array(dimension);
  let used = 0;
  for (const [index, vector] of set.vectors.entries()) {
    if (include !== undefined && !include(index)) continue;
    const mean = means[set.labels[index] as number] as Float64Array;
    for (let d = 0; d < dimension; d += 1)
      variance[d] = (variance[d] ?? 0) + ((vector[d] ?? 0) - (mean[d] ?? 0)) ** 2;
    used += 1;
  }
  const populated = counts.filter((count) => count > 0).length;
  const degrees = Math.max(used - populated, 1);
  let average = 0;
  for (let d = 0; d < dimension; d += 1) {
    variance[d] = (variance[d] ?? 0) / degrees;
    average += variance[d] ?? 0;
  }
  average = average / Math.max(dimension, 1) || 1e-6;
  for (let d = 0; d < dimension; d += 1)
    variance[d] = (1 - shrinkage) * (variance[d] ?? 0) + shrinkage * average + 1e-9;
  const weights = means.map((mean, label) => {
    const prior = set.priors[label] as Float32Array;
    return Float32Array.from(
      mean,
      (value, d) => value / (variance[d] ?? 1) + priorWeight * set.priorScale * (prior[d] ?? 0),
    );
  });
  const bias = new Float64Array(set.classes);
  for (const [label, mean] of means.entries()) {
    let sum = 0;
    for (let d = 0; d < dimension; d += 1) sum += ((mean[d] ?? 0) * (mean[d] ?? 0)) / (variance[d] ?? 1);
    bias[label] = -sum / 2;
  }
  const present = [...bias].filter((_, label) => (counts[label] ?? 0) > 0);
  const lowest = Math.min(...present);
  for (let label = 0; label < set.classes; label += 1) if ((counts[label] ?? 0) === 0) bias[label] = lowest;
  return { method: "diagonal-discriminant", weights, bias, temperature: 1 };
}

/**
 * Multinomial logistic regression, L2-regularized toward the zero-shot weights (`priorScale` × each
 * label's text embedding), fitted by full-batch Adam. `start` warm-starts it (leave-one-out refits).
 */
export function fitLogistic(
  set: TrainingSet,
  {
    include,
    start,
    options = {},
  }: { include?: (index: number) => boolean; start?: LinearModel; options?: LogisticOptions } = {},
): LinearModel {
  const { priorStrength, iterations, learningRate } = { ...DEFAULT_LOGISTIC, ...options };
  const classes = set.classes;
  const dimension = set.priors[0]?.length ?? 0;
  const indices = set.vectors
    .map((_, index) => index)
    .filter((index) => include === undefined || include(index));
  const prior = set.priors.map((row) => scaled(row, set.priorScale));
  const weights = (start?.weights ?? prior).map((row) => Float64Array.from(row));
  const bias = Float64Array.from(start?.bias ?? new Float64Array(classes));
  const size = classes * (dimension + 1);
  const moment = new Float64Array(size);
  const velocity = new Float64Array(size);
  const gradient = new Float64Array(size);
  const beta1 = 0.9;
  const beta2 = 0.999;
  const count = Math.max(indices.length, 1);
  const logits = new Float64Array(classes);
  for (let step = 1; step <= iterations; step += 1) {
    gradient.fill(0);
    for (const index of indices) {
      const vector = set.vectors[index] as Float32Array;
      let max = Number.NEGATIVE_INFINITY;
      for (let row = 0; row < classes; row += 1) {
        const weight = weights[row] as Float64Array;
        let sum = bias[row] ?? 0;
        for (let d = 0; d < dimension; d += 1) sum += (weight[d] ?? 0) * (vector[d] ?? 0);
        logits[row] = sum;
        if (sum > max) max = sum;
      }
      let total = 0;
      for (let row = 0; row < classes; row += 1) {
        const value = Math.exp((logits[row] ?? 0) - max);
        logits[row] = value;
        total += value;
      }
      const label = set.labels[index] as number;
      for (let row = 0; row < classes; row += 1) {
        const error = ((logits[row] ?? 0) / total - (row === label ? 1 : 0)) / count;
        const offset = row * (dimension + 1);
        for (let d = 0; d < dimension; d += 1)
          gradient[offset + d] = (gradient[offset + d] ?? 0) + error * (vector[d] ?? 0);
        gradient[offset + dimension] = (gradient[offset + dimension] ?? 0) + error;
      }
    }
    const correction1 = 1 - beta1 ** step;
    const correction2 = 1 - beta2 ** step;
    for (let row = 0; row < classes; row += 1) {
      const weight = weights[row] as Float64Array;
      const target = prior[row] as Float32Array;
      const offset = row * (dimension + 1);
      for (let d = 0; d <= dimension; d += 1) {
        const position = offset + d;
        const current = d < dimension ? (weight[d] ?? 0) : (bias[row] ?? 0);
        const pull = d < dimension ? priorStrength * (current - (target[d] ?? 0)) : 0;
        const grad = (gradient[position] ?? 0) + pull;
        moment[position] = beta1 * (moment[position] ?? 0) + (1 - beta1) * grad;
        velocity[position] = beta2 * (velocity[position] ?? 0) + (1 - beta2) * grad * grad;
        const update =
          (learningRate * ((moment[position] ?? 0) / correction1)) /
          (Math.sqrt((velocity[position] ?? 0) / correction2) + 1e-8);
        if (d < dimension) weight[d] = current - update;
        else bias[row] = current - update;
      }
    }
  }
  return {
    method: "logistic",
    weights: weights.map((row) => Float32Array.from(row)),
    bias,
    temperature: 1,
  };
}

/** The fold each example is held out in: its own (leave-one-out) or one of 10, interleaved per class. */
function foldsOf(set: TrainingSet): {
  folds: number[];
  count: number;
  validation: FittedClassifier["validation"];
} {
  const n = set.vectors.length;
  if (n <= MAX_EXACT_LOO_EXAMPLES) {
    return { folds: set.vectors.map((_, index) => index), count: n, validation: "leave-one-out" };
  }
  const seen = new Array<number>(set.classes).fill(0);
  const folds = set.labels.map((label) => {
    const fold = (seen[label] ?? 0) % 10;
    seen[label] = (seen[label] ?? 0) + 1;
    return fold;
  });
  return { folds, count: 10, validation: "10-fold" };
}

/** Held-out raw logits of every example under a method. */
export function heldOutLogits(
  set: TrainingSet,
  method: ClassifierMethod,
  {
    options,
    full,
    priorWeight = 0,
    shrinkage,
  }: { options?: LogisticOptions; full?: LinearModel; priorWeight?: number; shrinkage?: number } = {},
): { logits: Float64Array[]; validation: FittedClassifier["validation"] } {
  const { folds, count, validation } = foldsOf(set);
  const logits: Float64Array[] = new Array(set.vectors.length);
  for (let fold = 0; fold < count; fold += 1) {
    const include = (index: number) => folds[index] !== fold;
    const model =
      method === "nearest-mean"
        ? fitNearestMean(set, include, priorWeight)
        : method === "diagonal-discriminant"
          ? fitDiagonalDiscriminant(set, include, { shrinkage, priorWeight })
          : fitLogistic(set, {
              include,
              // Warm-started from the model fitted on everything: one example moves it a little.
              ...(full === undefined ? {} : { start: full }),
              options: {
                ...options,
                iterations: Math.max(
                  20,
                  Math.round((options?.iterations ?? DEFAULT_LOGISTIC.iterations) / 3),
                ),
              },
            });
    for (const [index, vector] of set.vectors.entries()) {
      if (folds[index] === fold) logits[index] = modelLogits(model, vector);
    }
  }
  return { logits, validation };
}

/** Mean negative log-likelihood of the true classes under softmax(logits / temperature). */
export function meanLogLoss(
  logits: readonly Float64Array[],
  labels: readonly number[],
  temperature: number,
): number {
  let total = 0;
  for (const [index, row] of logits.entries()) {
    const probabilities = softmaxWithTemperature(row, temperature);
    total -= Math.log(Math.max(probabilities[labels[index] as number] ?? 0, 1e-12));
  }
  return total / Math.max(logits.length, 1);
}

/** The temperature (on a log grid from 0.05 to 20) that minimizes the held-out log-loss. */
export function fitTemperature(logits: readonly Float64Array[], labels: readonly number[]): number {
  let best = 1;
  let bestLoss = Number.POSITIVE_INFINITY;
  for (let step = 0; step <= 60; step += 1) {
    const temperature = Math.exp(Math.log(0.05) + (step / 60) * (Math.log(20) - Math.log(0.05)));
    const loss = meanLogLoss(logits, labels, temperature);
    if (loss < bestLoss - 1e-12) {
      bestLoss = loss;
      best = temperature;
    }
  }
  return best;
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let index = 1; index < values.length; index += 1)
    if ((values[index] ?? 0) > (values[best] ?? 0)) best = index;
  return best;
}

/** Share of rows whose largest logit is the true class. */
export function heldOutAccuracy(logits: readonly Float64Array[], labels: readonly number[]): number {
  let right = 0;
  for (const [index, row] of logits.entries()) if (argmax(row) === labels[index]) right += 1;
  return right / Math.max(logits.length, 1);
}

/**
 * The `none` threshold read off held-out predictions: the calibrated top probability that 95% of the
 * correctly predicted examples reach, never below 1.5 / classes (a prediction barely above a uniform
 * guess says nothing) nor above 0.9.
 */
export function noneThreshold(
  logits: readonly Float64Array[],
  labels: readonly number[],
  temperature: number,
  classes: number,
): number {
  const tops: number[] = [];
  for (const [index, row] of logits.entries()) {
    const probabilities = softmaxWithTemperature(row, temperature);
    const best = argmax(probabilities);
    if (best === labels[index]) tops.push(probabilities[best] ?? 0);
  }
  const floor = Math.min(1.5 / classes, 0.9);
  if (tops.length === 0) return floor;
  tops.sort((left, right) => left - right);
  const fifth = tops[Math.floor(0.05 * (tops.length - 1))] ?? floor;
  return Math.min(Math.max(fifth, floor), 0.9);
}

/**
 * Fits both methods, each with several strengths of the zero-shot prior, measures every variant by
 * leave-one-out, and keeps the one with the lowest calibrated log-loss among those within one example of
 * the best held-out accuracy; calibrates its temperature on its held-out logits and derives the `none`
 * threshold.
 *
 * @throws RangeError for fewer than two classes, a class without examples, or mismatched sizes.
 */
export function fitClassifier(
  set: TrainingSet,
  {
    methods = CLASSIFIER_METHODS,
    priorStrengths = PRIOR_STRENGTHS,
    priorWeights = NEAREST_MEAN_PRIOR_WEIGHTS,
    shrinkages = DISCRIMINANT_SHRINKAGES,
    priorWeightsOfDiscriminant = DISCRIMINANT_PRIOR_WEIGHTS,
    logistic,
  }: {
    /** Weights of the zero-shot prior added to the diagonal discriminant's logits. */
    priorWeightsOfDiscriminant?: readonly number[];
    /** Shrinkages of the diagonal discriminant's variances; the best by leave-one-out is kept. */
    shrinkages?: readonly number[];
    /** Weights of the zero-shot prior mixed into nearest-mean logits; the best by leave-one-out is kept. */
    priorWeights?: readonly number[];
    methods?: readonly ClassifierMethod[];
    /** Strengths of the zero-shot prior the logistic regression is tried with; the best by leave-one-out is kept. */
    priorStrengths?: readonly number[];
    logistic?: Omit<LogisticOptions, "priorStrength">;
  } = {},
): FittedClassifier {
  checkSet(set);
  type Variant = {
    method: ClassifierMethod;
    options?: LogisticOptions;
    priorWeight?: number;
    shrinkage?: number;
  };
  const variants = methods.flatMap((method): Variant[] =>
    method === "nearest-mean"
      ? priorWeights.map((priorWeight) => ({ method, priorWeight }))
      : method === "diagonal-discriminant"
        ? shrinkages.flatMap((shrinkage) =>
            priorWeightsOfDiscriminant.map((priorWeight) => ({ method, shrinkage, priorWeight })),
          )
        : priorStrengths.map((priorStrength) => ({ method, options: { ...logistic, priorStrength } })),
  );
  const candidates = variants.map(({ method, options, priorWeight, shrinkage }) => {
    const full =
      method === "nearest-mean"
        ? fitNearestMean(set, undefined, priorWeight)
        : method === "diagonal-discriminant"
          ? fitDiagonalDiscriminant(set, undefined, {
              shrinkage,
              ...(priorWeight === undefined ? {} : { priorWeight }),
            })
          : fitLogistic(set, { ...(options === undefined ? {} : { options }) });
    const { logits, validation } = heldOutLogits(set, method, {
      ...(options === undefined ? {} : { options }),
      ...(priorWeight === undefined ? {} : { priorWeight }),
      ...(shrinkage === undefined ? {} : { shrinkage }),
      full,
    });
    const temperature = fitTemperature(logits, set.labels);
    const score: MethodScore = {
      method,
      ...(options?.priorStrength === undefined ? {} : { priorStrength: options.priorStrength }),
      ...(priorWeight === undefined ? {} : { priorWeight }),
      ...(shrinkage === undefined ? {} : { shrinkage }),
      accuracy: heldOutAccuracy(logits, set.labels),
      logLoss: meanLogLoss(logits, set.labels, temperature),
    };
    return { full, logits, validation, temperature, score };
  });
  // Held-out accuracy over a few examples moves in steps of one example, so among the variants within
  // one example of the best, the calibrated log-loss (a finer measure) decides.
  const topAccuracy = Math.max(...candidates.map((candidate) => candidate.score.accuracy));
  const withinOne = topAccuracy - 1 / set.vectors.length - 1e-9;
  candidates.sort((left, right) => {
    const leftNear = left.score.accuracy >= withinOne;
    const rightNear = right.score.accuracy >= withinOne;
    if (leftNear !== rightNear) return leftNear ? -1 : 1;
    return leftNear
      ? left.score.logLoss - right.score.logLoss
      : right.score.accuracy - left.score.accuracy || left.score.logLoss - right.score.logLoss;
  });
  const best = candidates[0];
  if (best === undefined) throw new RangeError("no method to fit");
  return {
    model: { ...best.full, temperature: best.temperature },
    looAccuracy: best.score.accuracy,
    validation: best.validation,
    scores: candidates.map((candidate) => candidate.score),
    threshold: noneThreshold(best.logits, set.labels, best.temperature, set.classes),
    heldOut: best.logits,
  };
}

/**
 * What a classifier's vectors are made of: the image embedding (with the labels' zero-shot prior), the
 * summary of the objects the pack's detection head finds (`object-features.ts`), or both side by side.
 */
export const FEATURE_SETS = ["embedding", "objects", "both"] as const;
/** A feature set. */
export type FeatureSet = (typeof FEATURE_SETS)[number];

/** One image's vector under a feature set (`objects` is needed for `objects` and `both`). */
export function featureVector(
  features: FeatureSet,
  embedding: Float32Array,
  objects?: Float32Array,
): Float32Array {
  if (features === "embedding") return embedding;
  if (objects === undefined) throw new RangeError(`the ${features} features need the image's object summary`);
  if (features === "objects") return objects;
  const out = new Float32Array(embedding.length + objects.length);
  out.set(embedding.map((value) => value * Math.SQRT1_2));
  out.set(
    objects.map((value) => value * Math.SQRT1_2),
    embedding.length,
  );
  return out;
}

/**
 * The prior of each class under a feature set: the label's text embedding where the embedding is (scaled
 * so the zero-shot logits stay those of the embedding alone), zeros where the object summary is.
 */
export function featurePriors(
  features: FeatureSet,
  priors: readonly Float32Array[],
  objectLength: number,
): Float32Array[] {
  if (features === "embedding") return [...priors];
  if (features === "objects") return priors.map(() => new Float32Array(objectLength));
  return priors.map((prior) => {
    const out = new Float32Array(prior.length + objectLength);
    out.set(prior.map((value) => value * Math.SQRT2));
    return out;
  });
}

/**
 * Fits a classifier on each feature set given (see {@link fitClassifier}) and keeps the best by the same
 * rule: the lowest calibrated log-loss among those within one example of the best held-out accuracy.
 * Without a zero-shot prior (the object summary), only nearest mean without prior and an L2-regularized
 * logistic regression are tried.
 */
export function fitFeatureSets(candidates: ReadonlyArray<{ features: FeatureSet; set: TrainingSet }>): {
  features: FeatureSet;
  fitted: FittedClassifier;
} {
  const results = candidates.map(({ features, set }) => ({
    features,
    fitted:
      features === "objects"
        ? fitClassifier(set, {
            priorWeights: [0],
            priorStrengths: [1, 0.1, 0.01],
            priorWeightsOfDiscriminant: [0],
          })
        : fitClassifier(set),
  }));
  return bestOf(results, candidates[0]?.set.vectors.length ?? 1);
}

/** The lowest calibrated log-loss among the fits within one example of the best held-out accuracy. */
function bestOf(
  results: ReadonlyArray<{ features: FeatureSet; fitted: FittedClassifier }>,
  examples: number,
): { features: FeatureSet; fitted: FittedClassifier } {
  const top = Math.max(...results.map((result) => result.fitted.looAccuracy));
  const near = results.filter((result) => result.fitted.looAccuracy >= top - 1 / examples - 1e-9);
  near.sort((left, right) => (left.fitted.scores[0]?.logLoss ?? 0) - (right.fitted.scores[0]?.logLoss ?? 0));
  const best = near[0];
  if (best === undefined) throw new RangeError("no feature set to fit");
  return best;
}

/** Examples as images' vectors: embeddings, object summaries where the pack has a detection head. */
export interface ImageExamples {
  embeddings: readonly Float32Array[];
  /** One per example, or none at all (then only the embedding is tried). */
  objects?: readonly (Float32Array | undefined)[];
  labels: readonly number[];
  classes: number;
  /** The labels' unit text embeddings. */
  priors: readonly Float32Array[];
  priorScale: number;
}

/** Weights of the zero-shot logits added to a model of the object summary; the best by leave-one-out is kept. */
export const OBJECT_PRIOR_WEIGHTS: readonly number[] = [0.25, 1, 4];

/**
 * Examples' object-summary model plus `weight` × the labels' zero-shot logits on the embedding, as one linear
 * model over the `both` features (whose halves are each scaled by 1/√2, hence the √2), with its held-out
 * figures: the zero-shot logits need no training, so the held-out logits are the object model's plus them.
 */
function withZeroShot({
  objects,
  embeddings,
  labels,
  classes,
  priors,
  priorScale,
  weight,
}: {
  objects: FittedClassifier;
  embeddings: readonly Float32Array[];
  labels: readonly number[];
  classes: number;
  priors: readonly Float32Array[];
  priorScale: number;
  weight: number;
}): FittedClassifier {
  const zeroShot = (embedding: Float32Array) =>
    priors.map((prior) => weight * priorScale * dot(prior, embedding));
  const logits = objects.heldOut.map((row, index) => {
    const prior = zeroShot(embeddings[index] as Float32Array);
    return row.map((value, label) => value + (prior[label] ?? 0));
  });
  const temperature = fitTemperature(logits, labels);
  const accuracy = heldOutAccuracy(logits, labels);
  const weights = objects.model.weights.map((row, label) => {
    const prior = priors[label] as Float32Array;
    const out = new Float32Array(prior.length + row.length);
    for (let d = 0; d < prior.length; d += 1) out[d] = weight * priorScale * (prior[d] ?? 0) * Math.SQRT2;
    for (let d = 0; d < row.length; d += 1) out[prior.length + d] = (row[d] ?? 0) * Math.SQRT2;
    return out;
  });
  const method = objects.model.method;
  const score: MethodScore = {
    method,
    ...(objects.scores[0]?.shrinkage === undefined ? {} : { shrinkage: objects.scores[0].shrinkage }),
    ...(objects.scores[0]?.priorStrength === undefined
      ? {}
      : { priorStrength: objects.scores[0].priorStrength }),
    priorWeight: weight,
    accuracy,
    logLoss: meanLogLoss(logits, labels, temperature),
  };
  return {
    model: { method, weights, bias: Float64Array.from(objects.model.bias), temperature },
    looAccuracy: accuracy,
    validation: objects.validation,
    scores: [score],
    threshold: noneThreshold(logits, labels, temperature, classes),
    heldOut: logits,
  };
}

/**
 * What the classifiers API fits: every feature set the examples allow (the embedding; with object
 * summaries for all of them, also the objects and both), each measured as {@link fitFeatureSets} says,
 * and the best model of the object summary with the labels' zero-shot logits added (what the examples
 * show about the objects, and what the label's words say about the whole image); the best by the same
 * rule is kept.
 */
export function fitImageExamples(examples: ImageExamples): {
  features: FeatureSet;
  fitted: FittedClassifier;
} {
  const { embeddings, objects = [], labels, classes, priors, priorScale } = examples;
  const objectLength = objects[0]?.length ?? 0;
  const withObjects =
    objectLength > 0 &&
    objects.length === embeddings.length &&
    objects.every((entry) => entry?.length === objectLength);
  const sets: FeatureSet[] = withObjects ? ["embedding", "objects", "both"] : ["embedding"];
  const candidates = sets.map((features) => {
    const set: TrainingSet = {
      vectors: embeddings.map((embedding, index) => featureVector(features, embedding, objects[index])),
      labels,
      classes,
      priors: featurePriors(features, priors, objectLength),
      priorScale,
    };
    return {
      features,
      fitted:
        features === "objects"
          ? fitClassifier(set, {
              priorWeights: [0],
              priorStrengths: [1, 0.1, 0.01],
              priorWeightsOfDiscriminant: [0],
            })
          : fitClassifier(set),
    };
  });
  const objectModel = candidates.find((candidate) => candidate.features === "objects");
  if (objectModel !== undefined) {
    for (const weight of OBJECT_PRIOR_WEIGHTS) {
      candidates.push({
        features: "both",
        fitted: withZeroShot({
          objects: objectModel.fitted,
          embeddings,
          labels,
          classes,
          priors,
          priorScale,
          weight,
        }),
      });
    }
  }
  return bestOf(candidates, embeddings.length);
}
