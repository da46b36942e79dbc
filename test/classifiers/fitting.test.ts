/**
 * The fitting maths of few-shot classifiers on synthetic unit vectors: nearest class mean, the logistic
 * regression pulled toward its zero-shot prior, leave-one-out, temperature calibration, the `none`
 * threshold, and the choice between the methods.
 */
import { describe, expect, it } from "vitest";
import {
  fitClassifier,
  fitDiagonalDiscriminant,
  fitLogistic,
  fitNearestMean,
  fitTemperature,
  heldOutLogits,
  meanLogLoss,
  modelLogits,
  noneThreshold,
  predictProbabilities,
  softmaxWithTemperature,
  type TrainingSet,
} from "../../src/classifiers/fitting.ts";
import { l2Normalize } from "../../src/inference/vector-math.ts";
import { createRng, deriveSeed } from "../../src/synth/rng.ts";

const DIMENSION = 16;

function unit(values: number[]): Float32Array {
  return l2Normalize(Float32Array.from(values));
}

/** Classes around the first axes, examples jittered by `noise`; priors on the same axes (or the given ones). */
function clusters({
  classes,
  shots,
  noise,
  seed = 1,
  priors,
}: {
  classes: number;
  shots: number;
  noise: number;
  seed?: number;
  priors?: Float32Array[];
}): TrainingSet {
  const rng = createRng(deriveSeed(seed, "clusters"));
  const vectors: Float32Array[] = [];
  const labels: number[] = [];
  for (let label = 0; label < classes; label += 1) {
    for (let shot = 0; shot < shots; shot += 1) {
      vectors.push(
        unit(Array.from({ length: DIMENSION }, (_, d) => (d === label ? 1 : 0) + rng.float(-noise, noise))),
      );
      labels.push(label);
    }
  }
  return {
    vectors,
    labels,
    classes,
    priors:
      priors ??
      Array.from({ length: classes }, (_, label) =>
        unit(Array.from({ length: DIMENSION }, (_, d) => (d === label ? 1 : 0))),
      ),
    priorScale: 30,
  };
}

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let index = 1; index < values.length; index += 1)
    if ((values[index] ?? 0) > (values[best] ?? 0)) best = index;
  return best;
}

describe("softmaxWithTemperature", () => {
  it("sums to one, is stable for large logits, and flattens with a higher temperature", () => {
    const sharp = softmaxWithTemperature([1000, 999, 0], 1);
    expect(sharp.reduce((sum, value) => sum + value, 0)).toBeCloseTo(1, 12);
    expect(sharp[0]).toBeCloseTo(1 / (1 + Math.exp(-1)), 9);
    const flat = softmaxWithTemperature([1000, 999, 0], 1000);
    expect(flat[0]).toBeLessThan(sharp[0] as number);
    expect(flat[2]).toBeCloseTo(1 / (Math.exp(1) + Math.exp(0.999) + 1), 9);
  });
});

describe("fitNearestMean", () => {
  it("puts each class at the normalized mean of its examples and scores by cosine", () => {
    const set = clusters({ classes: 3, shots: 4, noise: 0.1 });
    const model = fitNearestMean(set);
    for (const [index, vector] of set.vectors.entries()) {
      expect(argmax(modelLogits(model, vector))).toBe(set.labels[index]);
    }
    const norm = Math.hypot(...(model.weights[0] as Float32Array));
    expect(norm).toBeCloseTo(30, 4);
  });

  it("falls back to the prior for a class left without examples", () => {
    const set = clusters({ classes: 2, shots: 1, noise: 0 });
    const model = fitNearestMean(set, (index) => index !== 1);
    expect(Array.from(model.weights[1] as Float32Array).map((value) => value / 30)).toEqual(
      Array.from(set.priors[1] as Float32Array),
    );
  });
});

describe("fitLogistic", () => {
  it("learns classes the prior gets wrong when the examples say so", () => {
    // Priors swapped: zero-shot would call class 0 class 1 and the other way round.
    const base = clusters({ classes: 2, shots: 6, noise: 0.2 });
    const set = { ...base, priors: [base.priors[1] as Float32Array, base.priors[0] as Float32Array] };
    const zeroShot = set.priors.map((prior) => Float32Array.from(prior, (value) => value * 30));
    expect(
      argmax(modelLogits({ weights: zeroShot, bias: new Float64Array(2) }, set.vectors[0] as Float32Array)),
    ).toBe(1);
    const model = fitLogistic(set, { options: { priorStrength: 0.001, iterations: 200, learningRate: 0.5 } });
    for (const [index, vector] of set.vectors.entries()) {
      expect(argmax(modelLogits(model, vector))).toBe(set.labels[index]);
    }
  });

  it("stays at the prior when the pull toward it is strong", () => {
    const set = clusters({ classes: 3, shots: 2, noise: 0.3 });
    const model = fitLogistic(set, { options: { priorStrength: 1000, iterations: 100 } });
    for (const [row, weights] of model.weights.entries()) {
      const prior = set.priors[row] as Float32Array;
      for (let d = 0; d < DIMENSION; d += 1) expect(weights[d]).toBeCloseTo((prior[d] ?? 0) * 30, 0);
    }
  });
});

describe("held-out measurement and calibration", () => {
  it("gives every example a prediction from a model fitted without it", () => {
    const set = clusters({ classes: 2, shots: 1, noise: 0 });
    // Nearest mean without the single shot of class 1 has only the prior there, which is the same axis.
    const { logits, validation } = heldOutLogits(set, "nearest-mean");
    expect(validation).toBe("leave-one-out");
    expect(logits).toHaveLength(2);
    expect(argmax(logits[1] as Float64Array)).toBe(1);
  });

  it("switches to 10-fold past 40 examples", () => {
    expect(heldOutLogits(clusters({ classes: 2, shots: 20, noise: 0.1 }), "nearest-mean").validation).toBe(
      "leave-one-out",
    );
    const set = clusters({ classes: 2, shots: 21, noise: 0.1 });
    expect(heldOutLogits(set, "nearest-mean").validation).toBe("10-fold");
  });

  it("fits a temperature that lowers the held-out log-loss of overconfident logits", () => {
    const logits = [
      Float64Array.from([50, 0]),
      Float64Array.from([0, 50]),
      Float64Array.from([50, 0]),
      Float64Array.from([50, 0]),
    ];
    const labels = [0, 1, 1, 0];
    const temperature = fitTemperature(logits, labels);
    expect(temperature).toBeGreaterThan(1);
    expect(meanLogLoss(logits, labels, temperature)).toBeLessThan(meanLogLoss(logits, labels, 1));
  });

  it("reads the none threshold off the correct held-out predictions, within [1.5 / classes, 0.9]", () => {
    const logits = Array.from({ length: 20 }, (_, index) => Float64Array.from([2 + index / 10, 0]));
    const threshold = noneThreshold(logits, new Array(20).fill(0), 1, 2);
    expect(threshold).toBeGreaterThanOrEqual(0.75);
    expect(threshold).toBeLessThanOrEqual(0.9);
    expect(noneThreshold([Float64Array.from([0, 1])], [0], 1, 4)).toBe(0.375);
  });
});

describe("fitClassifier", () => {
  it("measures both methods, keeps the better, and calibrates it", () => {
    const set = clusters({ classes: 4, shots: 5, noise: 0.4, seed: 3 });
    const fitted = fitClassifier(set);
    expect(
      fitted.scores
        .map(
          (score) =>
            `${score.method} ${score.shrinkage === undefined ? "" : `${score.shrinkage}/`}${score.priorStrength ?? score.priorWeight}`,
        )
        .sort(),
    ).toEqual([
      "diagonal-discriminant 0.05/0",
      "diagonal-discriminant 0.05/1",
      "diagonal-discriminant 0.3/0",
      "diagonal-discriminant 0.3/1",
      "diagonal-discriminant 0.8/0",
      "diagonal-discriminant 0.8/1",
      "logistic 0.01",
      "logistic 0.1",
      "logistic 1",
      "logistic 10",
      "nearest-mean 0",
      "nearest-mean 0.5",
      "nearest-mean 1",
      "nearest-mean 2",
    ]);
    expect(fitted.looAccuracy).toBe(fitted.scores[0]?.accuracy);
    const best = Math.max(...fitted.scores.map((score) => score.accuracy));
    expect(fitted.looAccuracy).toBeGreaterThanOrEqual(best - 1 / set.vectors.length - 1e-9);
    expect(fitted.model.method).toBe(fitted.scores[0]?.method);
    expect(fitted.looAccuracy).toBeGreaterThanOrEqual(0.9);
    expect(fitted.validation).toBe("leave-one-out");
    const probabilities = predictProbabilities(fitted.model, set.vectors[0] as Float32Array);
    expect(probabilities.reduce((sum, value) => sum + value, 0)).toBeCloseTo(1, 9);
    expect(fitted.threshold).toBeGreaterThanOrEqual(1.5 / 4);
  });

  it("finds the one steady feature among noisy ones with the diagonal discriminant", () => {
    // Feature 0 says the class (±0.3 with little spread); the other 39 vary ten times more and say nothing,
    // as counts and colours do in an object summary when the question is "is there a star".
    const rng = createRng(deriveSeed(5, "steady"));
    const draw = (label: number) =>
      Float32Array.from({ length: 40 }, (_, d) =>
        d === 0 ? (label === 1 ? 0.3 : -0.3) + rng.float(-0.05, 0.05) : rng.float(-0.5, 0.5),
      );
    const set: TrainingSet = {
      vectors: Array.from({ length: 10 }, (_, index) => draw(index % 2)),
      labels: Array.from({ length: 10 }, (_, index) => index % 2),
      classes: 2,
      priors: [new Float32Array(40), new Float32Array(40)],
      priorScale: 30,
    };
    const test = Array.from({ length: 200 }, (_, index) => ({ label: index % 2, vector: draw(index % 2) }));
    const accuracy = (model: ReturnType<typeof fitNearestMean>) =>
      test.filter(({ label, vector }) => argmax(modelLogits(model, vector)) === label).length / test.length;
    const discriminant = fitDiagonalDiscriminant(set, undefined, { shrinkage: 0.05 });
    expect(discriminant.method).toBe("diagonal-discriminant");
    expect(accuracy(discriminant)).toBeGreaterThanOrEqual(0.97);
    // The class means alone are swamped by the noisy features.
    expect(accuracy(fitNearestMean(set))).toBeLessThan(accuracy(discriminant) - 0.1);
    // Full shrinkage is nearest mean without the normalization: the steady feature no longer stands out.
    expect(accuracy(fitDiagonalDiscriminant(set, undefined, { shrinkage: 1 }))).toBeLessThan(0.9);
    expect(fitClassifier(set).model.method).toBe("diagonal-discriminant");
  });

  it("refuses a class without examples, fewer than two classes, and mismatched sizes", () => {
    const set = clusters({ classes: 3, shots: 2, noise: 0.1 });
    expect(() =>
      fitClassifier({ ...set, labels: set.labels.map((label) => (label === 2 ? 1 : label)) }),
    ).toThrow(/class 2 has no examples/);
    expect(() => fitClassifier({ ...set, classes: 1, priors: [set.priors[0] as Float32Array] })).toThrow(
      /at least 2 classes/,
    );
    expect(() => fitClassifier({ ...set, labels: set.labels.slice(1) })).toThrow(/differ in length/);
  });
});
