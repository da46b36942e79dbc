/** Detection metrics against hand-computed values. */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import {
  attributeAccuracy,
  type Box,
  boxIoU,
  COCO_IOU_THRESHOLDS,
  countingAccuracy,
  type DetectedBox,
  detectionAveragePrecision,
  type GroundTruthBox,
  matchDetections,
  regionRecallAtK,
} from "../../../src/eval/metrics/detection-metrics.ts";

const box = (x0: number, y0: number, x1: number, y1: number): Box => ({ x0, y0, x1, y1 });
const truth = (
  image: number,
  label: string,
  b: Box,
  attributes?: Record<string, string>,
): GroundTruthBox => ({
  image,
  label,
  box: b,
  ...(attributes === undefined ? {} : { attributes }),
});
const detection = (
  image: number,
  label: string,
  score: number,
  b: Box,
  attributes?: Record<string, string>,
): DetectedBox => ({ ...truth(image, label, b, attributes), score });

const unit = box(0, 0, 1, 1);
const far = box(5, 5, 6, 6);

describe("boxIoU", () => {
  it("is overlap over union", () => {
    // [0,2]² ∩ [1,3]² = 1; union = 4 + 4 − 1 = 7.
    expect(boxIoU(box(0, 0, 2, 2), box(1, 1, 3, 3))).toBeCloseTo(1 / 7, 12);
    // Containment: 4 / 16.
    expect(boxIoU(box(0, 0, 4, 4), box(0, 0, 2, 2))).toBe(0.25);
    expect(boxIoU(unit, unit)).toBe(1);
    // Half the unit square: exactly 0.5.
    expect(boxIoU(unit, box(0, 0, 1, 0.5))).toBe(0.5);
  });

  it("gives 0 for boxes that touch, do not meet, or have no area", () => {
    expect(boxIoU(box(0, 0, 1, 1), box(1, 0, 2, 1))).toBe(0);
    expect(boxIoU(unit, far)).toBe(0);
    expect(boxIoU(box(0, 0, 0, 1), box(0, 0, 0, 1))).toBe(0);
  });

  it("rejects reversed and non-finite boxes, naming the box", () => {
    expect(() => boxIoU(box(1, 0, 0, 1), unit)).toThrow(ValidationError);
    expect(() => boxIoU(unit, box(0, 0, 1, Number.NaN))).toThrow(/Second box .*x0 ≤ x1 and y0 ≤ y1/);
  });
});

describe("matchDetections", () => {
  it("matches greedily by score; a duplicate of a matched object is a false positive", () => {
    const groundTruth = [truth(0, "circle", unit)];
    // The lower-scored detection overlaps better, but the higher-scored one takes the object first.
    const detections = [detection(0, "circle", 0.6, unit), detection(0, "circle", 0.9, box(0, 0, 1, 0.8))];
    expect(matchDetections({ detections, groundTruth })).toEqual({ matched: [-1, 0], matchedBy: [1] });
  });

  it("matches only the same image and label, at IoU ≥ the threshold, the boundary included", () => {
    const groundTruth = [truth(0, "circle", unit)];
    const detections = [
      detection(1, "circle", 0.9, unit), // other image
      detection(0, "square", 0.9, unit), // other label
      detection(0, "circle", 0.8, box(0, 0, 1, 0.49)), // IoU 0.49
      detection(0, "circle", 0.7, box(0, 0, 1, 0.5)), // IoU exactly 0.5
    ];
    expect(matchDetections({ detections, groundTruth }).matched).toEqual([-1, -1, -1, 0]);
  });

  it("gives equal IoUs to the later ground-truth box, as pycocotools does", () => {
    // The first detection straddles two objects with IoU 1/3 each; the second sits exactly on the first.
    const groundTruth = [truth(0, "circle", box(0, 0, 2, 2)), truth(0, "circle", box(2, 0, 4, 2))];
    const detections = [
      detection(0, "circle", 0.9, box(1, 0, 3, 2)),
      detection(0, "circle", 0.8, box(0, 0, 2, 2)),
    ];
    expect(matchDetections({ detections, groundTruth, minIoU: 0.3 })).toEqual({
      matched: [1, 0],
      matchedBy: [1, 0],
    });
  });

  it("leaves detections past maxDetections per image and class unscored", () => {
    const detections = [
      detection(0, "circle", 0.5, unit),
      detection(0, "circle", 0.9, far),
      detection(0, "square", 0.1, unit),
    ];
    expect(
      matchDetections({ detections, groundTruth: [truth(0, "circle", unit)], maxDetections: 1 }).matched,
    ).toEqual([undefined, -1, -1]);
  });

  it("rejects bad thresholds, scores and boxes", () => {
    const groundTruth = [truth(0, "circle", unit)];
    expect(() => matchDetections({ detections: [], groundTruth, minIoU: 0 })).toThrow(/\(0, 1\]/);
    expect(() => matchDetections({ detections: [], groundTruth, minIoU: 1.5 })).toThrow(ValidationError);
    expect(() =>
      matchDetections({ detections: [detection(0, "circle", Number.NaN, unit)], groundTruth }),
    ).toThrow(/Detection 0 has score NaN/);
    expect(() =>
      matchDetections({ detections: [], groundTruth: [truth(0, "circle", box(0, 1, 1, 0))] }),
    ).toThrow(/Ground-truth 0 box/);
  });
});

describe("detectionAveragePrecision", () => {
  it("is 1 when every object is found once, before any false positive", () => {
    const groundTruth = [truth(0, "circle", unit), truth(1, "circle", far)];
    const detections = [detection(0, "circle", 0.9, unit), detection(1, "circle", 0.8, far)];
    const result = detectionAveragePrecision({ detections, groundTruth });
    expect(result.ap50).toBe(1);
    expect(result.ap5095).toBe(1);
    expect(result.perClass.circle).toEqual({ ap50: 1, ap5095: 1, groundTruth: 2, detections: 2 });
  });

  it("reads the interpolated precision at 101 recall points", () => {
    // Three objects; ranked: TP (recall 1/3, precision 1), FP (1/3, 1/2), TP (2/3, 2/3); the third is missed.
    // Envelope [1, 2/3, 2/3]: points 0.00–0.33 read 1 (34 points), 0.34–0.66 read 2/3 (33), 0.67–1 read 0.
    const groundTruth = [truth(0, "circle", unit), truth(1, "circle", unit), truth(2, "circle", unit)];
    const detections = [
      detection(0, "circle", 0.9, unit),
      detection(0, "circle", 0.8, far),
      detection(1, "circle", 0.7, unit),
    ];
    expect(detectionAveragePrecision({ detections, groundTruth }).ap50).toBeCloseTo(56 / 101, 12);
  });

  it("counts a duplicate detection of one object as a false positive", () => {
    // Two objects; ranked: TP (recall 1/2, precision 1), duplicate FP (1/2, 1/2), TP (1, 2/3).
    // Points 0.00–0.50 read 1 (51 points), 0.51–1.00 read 2/3 (50): (51 + 100/3) / 101 = 253/303.
    const groundTruth = [truth(0, "circle", unit), truth(1, "circle", unit)];
    const detections = [
      detection(0, "circle", 0.9, unit),
      detection(0, "circle", 0.8, box(0, 0, 1, 0.9)),
      detection(1, "circle", 0.7, unit),
    ];
    expect(detectionAveragePrecision({ detections, groundTruth }).ap50).toBeCloseTo(253 / 303, 12);
    // Without the duplicate, every object is found before any false positive.
    expect(
      detectionAveragePrecision({ detections: [detections[0], detections[2]] as DetectedBox[], groundTruth })
        .ap50,
    ).toBe(1);
  });

  it("gives AP 0 to a class with ground truth and no predictions", () => {
    const result = detectionAveragePrecision({ detections: [], groundTruth: [truth(0, "circle", unit)] });
    expect(result).toEqual({
      ap50: 0,
      ap5095: 0,
      perClass: { circle: { ap50: 0, ap5095: 0, groundTruth: 1, detections: 0 } },
    });
  });

  it("leaves a class without ground truth out of the means, even with false positives", () => {
    const result = detectionAveragePrecision({
      detections: [detection(0, "circle", 0.9, unit), detection(0, "star", 0.95, far)],
      groundTruth: [truth(0, "circle", unit)],
      classes: ["circle", "star", "hexagon"],
    });
    expect(result.ap50).toBe(1);
    expect(result.perClass.star).toEqual({
      ap50: undefined,
      ap5095: undefined,
      groundTruth: 0,
      detections: 1,
    });
    expect(result.perClass.hexagon).toEqual({
      ap50: undefined,
      ap5095: undefined,
      groundTruth: 0,
      detections: 0,
    });
    expect(Object.keys(result.perClass)).toEqual(["circle", "star", "hexagon"]);
  });

  it("is 0 with neither ground truth nor detections", () => {
    expect(detectionAveragePrecision({ detections: [], groundTruth: [], classes: ["circle"] })).toEqual({
      ap50: 0,
      ap5095: 0,
      perClass: { circle: { ap50: undefined, ap5095: undefined, groundTruth: 0, detections: 0 } },
    });
  });

  it("averages the per-class APs, a wrong label scoring for neither class", () => {
    // circle: found (1); square: its only detection is labelled "circle" on another image → AP 0.
    const groundTruth = [truth(0, "circle", unit), truth(1, "square", unit)];
    const detections = [detection(0, "circle", 0.9, unit), detection(1, "circle", 0.8, unit)];
    const result = detectionAveragePrecision({ detections, groundTruth });
    // circle: TP then FP: envelope [1, 1/2], all points reached at rank 0 → 1.
    expect(result.perClass.circle?.ap50).toBe(1);
    expect(result.perClass.square?.ap50).toBe(0);
    expect(result.ap50).toBe(0.5);
  });

  it("breaks score ties in input order, as pycocotools' stable sort does", () => {
    const groundTruth = [truth(0, "circle", unit)];
    const falsePositive = detection(1, "circle", 0.5, unit);
    const truePositive = detection(0, "circle", 0.5, unit);
    // FP first: ranks (recall 0, precision 0), (1, 1/2); envelope [1/2, 1/2] → 0.5 at every point.
    expect(detectionAveragePrecision({ detections: [falsePositive, truePositive], groundTruth }).ap50).toBe(
      0.5,
    );
    expect(detectionAveragePrecision({ detections: [truePositive, falsePositive], groundTruth }).ap50).toBe(
      1,
    );
  });

  it("averages AP over IoU 0.50:0.05:0.95", () => {
    expect(COCO_IOU_THRESHOLDS).toHaveLength(10);
    expect(COCO_IOU_THRESHOLDS[0]).toBe(0.5);
    expect(COCO_IOU_THRESHOLDS[9]).toBe(0.95);
    // IoU 0.72 is a hit at 0.50, 0.55, 0.60, 0.65, 0.70 and a miss at the five thresholds above.
    const result = detectionAveragePrecision({
      detections: [detection(0, "circle", 0.9, box(0, 0, 1, 0.72))],
      groundTruth: [truth(0, "circle", unit)],
    });
    expect(result.ap50).toBe(1);
    expect(result.ap5095).toBeCloseTo(0.5, 12);
  });
});

describe("detectionAveragePrecision against pycocotools", () => {
  /**
   * 60 images with 1–4 objects of three classes; most objects detected once with jittered boxes, some missed,
   * some twice, some under a wrong label, plus stray boxes. The expected figures are what pycocotools 2.0.11
   * (`COCOeval`, bbox, all areas, 100 detections) computed for the same boxes.
   */
  function pseudoRandomCase(): { detections: DetectedBox[]; groundTruth: GroundTruthBox[] } {
    let state = 7;
    const random = (): number => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state / 0x7fffffff;
    };
    const labels = ["circle", "square", "triangle"];
    const label = (): string => labels[Math.floor(random() * 3)] as string;
    const groundTruth: GroundTruthBox[] = [];
    const detections: DetectedBox[] = [];
    for (let image = 0; image < 60; image += 1) {
      const objects = 1 + Math.floor(random() * 4);
      for (let object = 0; object < objects; object += 1) {
        const [x, y, w, h] = [random() * 200, random() * 200, 10 + random() * 60, 10 + random() * 60];
        const kind = label();
        groundTruth.push(truth(image, kind, box(x, y, x + w, y + h)));
        const copies = random() < 0.15 ? 0 : random() < 0.2 ? 2 : 1;
        for (let copy = 0; copy < copies; copy += 1) {
          const jitter = (): number => (random() - 0.5) * 0.5;
          const detected = random() < 0.1 ? label() : kind;
          const score = random();
          const [x0, y0, x1, y1] = [
            x + jitter() * w,
            y + jitter() * h,
            x + w + jitter() * w,
            y + h + jitter() * h,
          ];
          detections.push(
            detection(image, detected, score, box(x0, y0, Math.max(x1, x0 + 1), Math.max(y1, y0 + 1))),
          );
        }
      }
      if (random() < 0.3) {
        const [x, y] = [random() * 200, random() * 200];
        detections.push(detection(image, label(), random() * 0.6, box(x, y, x + 30, y + 30)));
      }
    }
    return { detections, groundTruth };
  }

  it("gives the same AP@0.5, AP@[.5:.95] and per-class APs", () => {
    const result = detectionAveragePrecision(pseudoRandomCase());
    expect(result.ap50).toBeCloseTo(0.6393581287736673, 12);
    expect(result.ap5095).toBeCloseTo(0.16439708530770814, 12);
    expect(result.perClass.circle?.ap50).toBeCloseTo(0.6759643245557556, 12);
    expect(result.perClass.circle?.ap5095).toBeCloseTo(0.1827228096256561, 12);
    expect(result.perClass.square?.ap50).toBeCloseTo(0.5980920688646515, 12);
    expect(result.perClass.square?.ap5095).toBeCloseTo(0.15027876387889116, 12);
    expect(result.perClass.triangle?.ap50).toBeCloseTo(0.6440179929005947, 12);
    expect(result.perClass.triangle?.ap5095).toBeCloseTo(0.16018968241857715, 12);
    expect(result.perClass.square?.groundTruth).toBe(55);
  });
});

describe("attributeAccuracy", () => {
  it("scores attributes over true positives only", () => {
    const groundTruth = [
      truth(0, "circle", unit, { color: "red", size: "large" }),
      truth(1, "circle", unit, { color: "blue", size: "small" }),
      truth(2, "circle", unit, { color: "green", size: "small" }),
    ];
    const detections = [
      detection(0, "circle", 0.9, unit, { color: "red", size: "small" }),
      detection(1, "circle", 0.9, unit, { color: "green", size: "small" }),
      detection(1, "circle", 0.8, unit, { color: "blue", size: "small" }), // duplicate: not scored
      detection(3, "circle", 0.9, unit, { color: "green", size: "small" }), // false positive: not scored
    ];
    expect(attributeAccuracy({ detections, groundTruth, attribute: "color" })).toEqual({
      accuracy: 0.5,
      count: 2,
    });
    expect(attributeAccuracy({ detections, groundTruth, attribute: "size" })).toEqual({
      accuracy: 0.5,
      count: 2,
    });
    expect(attributeAccuracy({ detections, groundTruth, attribute: "shade" })).toEqual({
      accuracy: 0,
      count: 0,
    });
    expect(attributeAccuracy({ detections: [], groundTruth, attribute: "color" })).toEqual({
      accuracy: 0,
      count: 0,
    });
  });
});

describe("countingAccuracy", () => {
  it("is the share of exact counts", () => {
    const results = [
      { predicted: 2, expected: 2 },
      { predicted: 1, expected: 2 },
      { predicted: 0, expected: 0 },
    ];
    expect(countingAccuracy({ results }).accuracy).toBeCloseTo(2 / 3, 12);
    expect(countingAccuracy({ results }).count).toBe(3);
    expect(countingAccuracy({ results: [] })).toEqual({ accuracy: 0, count: 0 });
  });

  it("rejects counts that are not non-negative integers", () => {
    expect(() => countingAccuracy({ results: [{ predicted: -1, expected: 0 }] })).toThrow(
      /Counting result 0 has predicted count -1/,
    );
    expect(() => countingAccuracy({ results: [{ predicted: 1, expected: 1.5 }] })).toThrow(ValidationError);
  });
});

describe("regionRecallAtK", () => {
  // Query 0 wants the object of image 0; query 1 either of two objects of images 1 and 2.
  const targets = [
    [{ image: 0, box: unit }],
    [
      { image: 1, box: unit },
      { image: 2, box: far },
    ],
  ];

  it("counts a query when a region among its first k hits a target: same image, IoU ≥ 0.5", () => {
    const ranked = [
      // Right box on the wrong image, then the target itself at rank 2.
      [
        { image: 1, box: unit },
        { image: 0, box: unit },
      ],
      // IoU 0.5 exactly with the second target.
      [{ image: 2, box: box(5, 5, 6, 5.5) }],
    ];
    expect(regionRecallAtK({ ranked, targets, k: 1 })).toBe(0.5);
    expect(regionRecallAtK({ ranked, targets, k: 5 })).toBe(1);
    expect(regionRecallAtK({ ranked, targets, k: 5, minIoU: 0.6 })).toBe(0.5);
  });

  it("is 0 for no queries and misses a query with no regions", () => {
    expect(regionRecallAtK({ ranked: [], targets: [], k: 1 })).toBe(0);
    expect(regionRecallAtK({ ranked: [[], [{ image: 1, box: unit }]], targets, k: 1 })).toBe(0.5);
  });

  it("rejects mismatched inputs, queries without targets and bad k", () => {
    expect(() => regionRecallAtK({ ranked: [[]], targets, k: 1 })).toThrow(/1 rankings but 2 target lists/);
    expect(() => regionRecallAtK({ ranked: [[]], targets: [[]], k: 1 })).toThrow(/Query 0 has no target/);
    expect(() => regionRecallAtK({ ranked: [], targets: [], k: 0 })).toThrow(ValidationError);
  });
});
