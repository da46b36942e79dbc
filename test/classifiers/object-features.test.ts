/**
 * The object summary of an image's detections, and the choice between feature sets: when the embedding
 * says nothing about the labels and the objects do, the objects are chosen.
 */
import { describe, expect, it } from "vitest";
import { featureVector, fitImageExamples, predictProbabilities } from "../../src/classifiers/fitting.ts";
import {
  MAX_COUNTED_OBJECTS,
  objectFeatureLength,
  objectFeatures,
} from "../../src/classifiers/object-features.ts";
import type { Detection } from "../../src/inference/detection-head.ts";
import { l2Normalize } from "../../src/inference/vector-math.ts";
import { createRng, deriveSeed } from "../../src/synth/rng.ts";

const vocabulary = { classes: ["circle", "star"], attributes: { color: ["red", "blue"] } };

function detection(label: "circle" | "star", color: "red" | "blue", side = 0.2): Detection {
  return {
    label,
    labelScore: 1,
    attributes: { color: { value: color, score: 1 } },
    score: 1,
    box: { x0: 0, y0: 0, x1: side, y1: side },
    probabilities: {
      label: { circle: label === "circle" ? 1 : 0, star: label === "star" ? 1 : 0 },
      attributes: { color: { red: color === "red" ? 1 : 0, blue: color === "blue" ? 1 : 0 } },
    },
  };
}

describe("objectFeatures", () => {
  it("lays out the count, the classes and the area-weighted attributes, L2-normalized", () => {
    expect(objectFeatureLength(vocabulary)).toBe(MAX_COUNTED_OBJECTS + 1 + 4 + 4);
    const features = objectFeatures(
      [detection("star", "red", 0.4), detection("circle", "blue", 0.2)],
      vocabulary,
    );
    expect(Math.hypot(...features)).toBeCloseTo(1, 6);
    const raw = Array.from(features).map((value) => value / (features[2] as number));
    expect(raw.slice(0, MAX_COUNTED_OBJECTS + 1)).toEqual([0, 0, 1, 0, 0, 0, 0]);
    // Class sums and maxima: one circle, one star.
    expect(raw.slice(7, 11)).toEqual([1, 1, 1, 1]);
    // Colour by area: the red star covers 0.16 of 0.2 in all.
    expect(raw[11]).toBeCloseTo(0.8, 5);
    expect(raw[12]).toBeCloseTo(0.2, 5);
    const none = objectFeatures([], vocabulary);
    expect(none[0]).toBe(1);
    const many = objectFeatures(
      Array.from({ length: 9 }, () => detection("star", "red")),
      vocabulary,
    );
    expect(many[MAX_COUNTED_OBJECTS]).toBeGreaterThan(0);
  });
});

describe("fitImageExamples", () => {
  it("chooses the object summary when only it separates the labels, and the embedding without one", () => {
    const rng = createRng(deriveSeed(5, "examples"));
    const noise = () => l2Normalize(Float32Array.from({ length: 8 }, () => rng.float(-1, 1)));
    const embeddings: Float32Array[] = [];
    const objects: Float32Array[] = [];
    const labels: number[] = [];
    for (let label = 0; label < 2; label += 1) {
      for (let shot = 0; shot < 6; shot += 1) {
        embeddings.push(noise());
        objects.push(
          objectFeatures(label === 0 ? [detection("circle", "red")] : [detection("star", "red")], vocabulary),
        );
        labels.push(label);
      }
    }
    const priors = [noise(), noise()];
    const withObjects = fitImageExamples({ embeddings, objects, labels, classes: 2, priors, priorScale: 30 });
    expect(withObjects.features).not.toBe("embedding");
    expect(withObjects.fitted.looAccuracy).toBe(1);
    const query = featureVector(
      withObjects.features,
      noise(),
      objectFeatures([detection("star", "blue")], vocabulary),
    );
    const probabilities = predictProbabilities(withObjects.fitted.model, query);
    expect(probabilities[1]).toBeGreaterThan(probabilities[0] as number);

    const embeddingOnly = fitImageExamples({ embeddings, labels, classes: 2, priors, priorScale: 30 });
    expect(embeddingOnly.features).toBe("embedding");
  });

  it("uses the object summary and the labels' words together when neither alone gets every example", () => {
    // Half the examples show no object (the summary cannot tell them apart) and their embeddings agree with
    // their label's words; the other half show the object, and their embeddings lean slightly to the other
    // label. Neither the summary nor the embedding alone gets every example; the two together do.
    const rng = createRng(deriveSeed(6, "combined"));
    const axis = (label: number) => Float32Array.from({ length: 8 }, (_, d) => (d === label ? 1 : 0));
    const embeddings: Float32Array[] = [];
    const objects: Float32Array[] = [];
    const labels: number[] = [];
    for (let label = 0; label < 2; label += 1) {
      for (let shot = 0; shot < 8; shot += 1) {
        const seen = shot % 2 === 1;
        const lean = seen ? 1 - label : label;
        embeddings.push(
          l2Normalize(
            Float32Array.from(
              axis(lean),
              (value, d) => value * (seen ? 0.05 : 0.3) + (d > 1 ? rng.float(-1, 1) : 0),
            ),
          ),
        );
        objects.push(
          objectFeatures(seen ? [detection(label === 0 ? "circle" : "star", "red")] : [], vocabulary),
        );
        labels.push(label);
      }
    }
    const priors = [axis(0), axis(1)];
    const fitted = fitImageExamples({ embeddings, objects, labels, classes: 2, priors, priorScale: 30 });
    expect(fitted.fitted.looAccuracy).toBe(1);
    expect(fitted.features).toBe("both");
    // The stored model is one linear model over the `both` features, and predicts a new image of each kind.
    const star = featureVector("both", embeddings[8] as Float32Array, objectFeatures([], vocabulary));
    expect(fitted.fitted.scores[0]?.priorWeight).toBeGreaterThan(0);
    const probabilities = predictProbabilities(fitted.fitted.model, star);
    expect(probabilities[1]).toBeGreaterThan(probabilities[0] as number);
  });
});
