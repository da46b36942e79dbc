/**
 * Object-level cases of the Shapes World suites: the detection and region cases a split's scenes give,
 * how one image's detections and one region query are scored, the run's pooled figures (a wrong box, a
 * wrong label or a wrong colour lowers them), a pack without a detection head, the run step against a
 * scripted Loupe, and the gate rows of the new figures.
 */
import { describe, expect, it } from "vitest";
import { LoupeApiError } from "../../../src/client/index.ts";
import type { LoupeClient } from "../../../src/eval/suite/client.ts";
import { compareToBaseline, GATED_METRICS } from "../../../src/eval/suite/gate.ts";
import { IdMap } from "../../../src/eval/suite/id-map.ts";
import { objectCases, sceneCountQuestions } from "../../../src/eval/suite/loaders/shapes-world.ts";
import {
  countFromDetections,
  detectionCaseMetrics,
  NO_DETECTION_HEAD,
  regionCaseMetrics,
} from "../../../src/eval/suite/object-scores.ts";
import { type CaseRecord, RESULTS_FORMAT, type RunResults } from "../../../src/eval/suite/results.ts";
import { runCases } from "../../../src/eval/suite/run-cases.ts";
import { summarizeRun } from "../../../src/eval/suite/score.ts";
import type { DetectionCase, NormalizedBox, RegionCase, TruthObject } from "../../../src/eval/suite/suite.ts";

type Detection = NonNullable<CaseRecord["output"]["detections"]>[number];

const box = (x0: number, y0: number, x1: number, y1: number): NormalizedBox => ({ x0, y0, x1, y1 });

const redCircle: TruthObject = {
  label: "circle",
  attributes: { color: "red", size: "large" },
  box: box(0.1, 0.1, 0.4, 0.4),
};
const blueStar: TruthObject = {
  label: "star",
  attributes: { color: "blue", size: "small" },
  box: box(0.6, 0.6, 0.76, 0.76),
};

const detected = (object: TruthObject, score: number, change: Partial<Detection> = {}): Detection => ({
  label: object.label,
  attributes: object.attributes,
  score,
  box: object.box,
  ...change,
});

/** A detection record of one image, scored as the run step scores it. */
function detectionRecord(id: string, objects: TruthObject[], detections: Detection[]): CaseRecord {
  const counts = [
    { expected: objects.length },
    ...[...new Set(objects.map((object) => object.label))].map((label) => ({
      label,
      expected: objects.filter((object) => object.label === label).length,
    })),
  ];
  const scored = detectionCaseMetrics({ objects, counts, detections });
  return {
    id,
    kind: "detection",
    tags: [],
    input: {},
    expected: { objects, counts },
    output: { detections },
    metrics: scored.metrics,
    passed: scored.passed,
    timings: {},
  };
}

function regionRecord(
  id: string,
  regions: Array<{ image: string; box: NormalizedBox }>,
  targets: Array<{ image: string; box: NormalizedBox }>,
): CaseRecord {
  const metrics = regionCaseMetrics({ regions, targets });
  return {
    id,
    kind: "region",
    tags: [],
    input: { text: "a red circle" },
    expected: { targets },
    output: { regions: regions.map((region) => ({ ...region, label: "circle" })) },
    metrics,
    passed: metrics.hitAt1 === true,
    timings: {},
  };
}

describe("objectCases", () => {
  const scenes = [
    {
      id: "img-000001",
      objects: [
        { shape: "circle", color: "red", size: "large", x: 0.3, y: 0.3, r: 0.15 },
        { shape: "circle", color: "blue", size: "small", x: 0.7, y: 0.7, r: 0.07 },
      ],
    },
    {
      id: "img-000002",
      objects: [{ shape: "star", color: "blue", size: "small", x: 0.5, y: 0.5, r: 0.08 }],
    },
    {
      id: "img-000003",
      objects: [{ shape: "circle", color: "red", size: "small", x: 0.2, y: 0.8, r: 0.06 }],
    },
  ] as const;
  const cases = objectCases(scenes.map((scene) => ({ id: scene.id, objects: [...scene.objects] })));

  it("gives one detection case per image with the bounding circle's square as the box", () => {
    expect(cases.detection.map((item) => item.image)).toEqual(["img-000001", "img-000002", "img-000003"]);
    const first = cases.detection[0] as DetectionCase;
    expect(first.objects[0]).toEqual({
      label: "circle",
      attributes: { color: "red", size: "large" },
      box: { x0: 0.3 - 0.15, y0: 0.3 - 0.15, x1: 0.3 + 0.15, y1: 0.3 + 0.15 },
    });
    expect(first.counts).toEqual([
      { expected: 2 },
      { label: "circle", expected: 2 },
      { color: "red", expected: 1 },
      { color: "blue", expected: 1 },
    ]);
  });

  it("describes one object per image, with the size word on every other image, targeting every fit", () => {
    const [first, second, third] = cases.region as [RegionCase, RegionCase, RegionCase];
    expect(first.text).toBe("a large red circle");
    expect(first.targets.map((target) => target.image)).toEqual(["img-000001"]);
    expect(second.text).toBe("a blue star");
    expect(second.targets.map((target) => target.image)).toEqual(["img-000002"]);
    // Image 3, object 0 with its size: the small red circle only, not image 1's large one.
    expect(third.text).toBe("a small red circle");
    expect(third.targets).toEqual([
      { image: "img-000003", box: { x0: 0.2 - 0.06, y0: 0.8 - 0.06, x1: 0.2 + 0.06, y1: 0.8 + 0.06 } },
    ]);
  });

  it("counts shapes and colours only where the scene has them", () => {
    expect(sceneCountQuestions([])).toEqual([{ expected: 0 }]);
  });
});

describe("detectionCaseMetrics", () => {
  const counts = [{ expected: 2 }, { label: "circle", expected: 1 }, { color: "blue", expected: 1 }];

  it("passes an image whose objects are all found with their attributes", () => {
    const scored = detectionCaseMetrics({
      objects: [redCircle, blueStar],
      counts,
      detections: [detected(redCircle, 0.9), detected(blueStar, 0.8)],
    });
    expect(scored.passed).toBe(true);
    expect(scored.metrics).toMatchObject({ found: 2, falsePositives: 0, attributesRight: 2, countsRight: 3 });
  });

  it("fails a box that misses its object (IoU < 0.5) and a wrong label", () => {
    const shifted = detectionCaseMetrics({
      objects: [redCircle, blueStar],
      counts,
      detections: [detected(redCircle, 0.9, { box: box(0.3, 0.3, 0.6, 0.6) }), detected(blueStar, 0.8)],
    });
    expect(shifted.passed).toBe(false);
    expect(shifted.metrics).toMatchObject({ found: 1, falsePositives: 1, countsRight: 3 });
    const relabelled = detectionCaseMetrics({
      objects: [redCircle, blueStar],
      counts,
      detections: [detected(redCircle, 0.9, { label: "square" }), detected(blueStar, 0.8)],
    });
    expect(relabelled.passed).toBe(false);
    // Found once, and "how many circles?" now reads 0.
    expect(relabelled.metrics).toMatchObject({ found: 1, countsRight: 2 });
  });

  it("counts detections of the class and colour asked", () => {
    const detections = [detected(redCircle, 0.9), detected(blueStar, 0.8), detected(blueStar, 0.3)];
    expect(countFromDetections({}, detections)).toBe(3);
    expect(countFromDetections({ label: "star" }, detections)).toBe(2);
    expect(countFromDetections({ color: "red" }, detections)).toBe(1);
    expect(countFromDetections({ label: "star", color: "red" }, detections)).toBe(0);
  });
});

describe("summarizeRun with detection cases", () => {
  const perfect = [
    detectionRecord("a", [redCircle, blueStar], [detected(redCircle, 0.9), detected(blueStar, 0.8)]),
    detectionRecord("b", [redCircle], [detected(redCircle, 0.7)]),
  ];

  it("reports AP, attributes and counting under flat names", () => {
    const summary = summarizeRun({ records: perfect });
    expect(summary.figures["detection.ap50"]).toBe(1);
    expect(summary.figures["detection.ap5095"]).toBe(1);
    expect(summary.figures["detection.colorAccuracy"]).toBe(1);
    expect(summary.figures["detection.sizeAccuracy"]).toBe(1);
    expect(summary.figures["detection.counting"]).toBe(1);
    expect(summary.figures["detection.perClass.star.ap50"]).toBe(1);
    expect(summary.detection).toMatchObject({ images: 2, objects: 3, detections: 3 });
  });

  it("lowers AP@0.5 for a wrong box and a wrong label, and counting for the wrong label", () => {
    const wrongBox = summarizeRun({
      records: [
        perfect[0] as CaseRecord,
        detectionRecord("b", [redCircle], [detected(redCircle, 0.7, { box: box(0.35, 0.35, 0.65, 0.65) })]),
      ],
    });
    expect(wrongBox.figures["detection.ap50"]).toBeLessThan(1);
    expect(wrongBox.figures["detection.counting"]).toBe(1);
    const wrongLabel = summarizeRun({
      records: [
        perfect[0] as CaseRecord,
        detectionRecord("b", [redCircle], [detected(redCircle, 0.7, { label: "hexagon" })]),
      ],
    });
    expect(wrongLabel.figures["detection.ap50"]).toBeLessThan(1);
    expect(wrongLabel.figures["detection.counting"]).toBeLessThan(1);
  });

  it("lowers colour accuracy for a wrong colour without touching AP", () => {
    const summary = summarizeRun({
      records: [
        perfect[0] as CaseRecord,
        detectionRecord(
          "b",
          [redCircle],
          [detected(redCircle, 0.7, { attributes: { color: "green", size: "large" } })],
        ),
      ],
    });
    expect(summary.figures["detection.ap50"]).toBe(1);
    expect(summary.figures["detection.colorAccuracy"]).toBeCloseTo(2 / 3, 9);
    expect(summary.figures["detection.sizeAccuracy"]).toBe(1);
  });

  it("has no detection figures when every case was refused for want of a detection head", () => {
    const refused = perfect.map((record) => ({
      ...record,
      output: { detections: [] },
      error: { code: NO_DETECTION_HEAD, message: "no head" },
    }));
    const summary = summarizeRun({ records: refused });
    expect(summary.detection).toBeUndefined();
    expect(Object.keys(summary.figures).filter((name) => name.startsWith("detection."))).toEqual([]);
  });

  it("counts a case that failed otherwise as an image where nothing was found", () => {
    const failed = {
      ...(perfect[1] as CaseRecord),
      output: { detections: [] },
      error: { code: "x", message: "y" },
    };
    const summary = summarizeRun({ records: [perfect[0] as CaseRecord, failed] });
    expect(summary.figures["detection.ap50"]).toBeLessThan(1);
  });
});

describe("region figures", () => {
  const target = { image: "img-1", box: box(0.1, 0.1, 0.4, 0.4) };

  it("scores a hit by image and IoU ≥ 0.5 at rank 1 or within 5", () => {
    expect(regionCaseMetrics({ regions: [target], targets: [target] })).toMatchObject({
      hitAt1: true,
      hitAt5: true,
      firstHit: 1,
    });
    const second = regionCaseMetrics({ regions: [{ ...target, image: "img-2" }, target], targets: [target] });
    expect(second).toMatchObject({ hitAt1: false, hitAt5: true, firstHit: 2 });
    const offBox = regionCaseMetrics({
      regions: [{ image: "img-1", box: box(0.3, 0.3, 0.6, 0.6) }],
      targets: [target],
    });
    expect(offBox).toMatchObject({ hitAt1: false, hitAt5: false, firstHit: null });
  });

  it("reports Recall@1 and Recall@5, lowered by a wrong box or a wrong image", () => {
    const summary = summarizeRun({
      records: [
        regionRecord("q1", [target], [target]),
        regionRecord("q2", [{ image: "img-9", box: target.box }, target], [target]),
        regionRecord("q3", [{ image: "img-1", box: box(0.3, 0.3, 0.6, 0.6) }], [target]),
        regionRecord("q4", [target], [target]),
      ],
    });
    expect(summary.figures["regions.recallAt1"]).toBe(0.5);
    expect(summary.figures["regions.recallAt5"]).toBe(0.75);
    expect(summary.regions).toEqual({ queries: 4, recallAt1: 0.5, recallAt5: 0.75 });
  });

  it("has no region figures when no query found any region (a corpus without regions)", () => {
    const summary = summarizeRun({ records: [regionRecord("q1", [], [target])] });
    expect(summary.regions).toBeUndefined();
    expect(summary.figures["regions.recallAt1"]).toBeUndefined();
  });
});

describe("runCases with detection and region cases", () => {
  const images = [
    { id: "img-000001", path: "/corpus/img-000001.jpg", metadata: {} },
    { id: "img-000002", path: "/corpus/img-000002.jpg", metadata: {} },
  ];
  const ids = new IdMap();
  ids.add("img-000001", "img_aaa");
  ids.add("img-000002", "img_bbb");
  const cases = [
    {
      kind: "detection" as const,
      id: "det-img-000001",
      tags: [],
      image: "img-000001",
      objects: [redCircle],
      counts: [{ expected: 1 }],
    },
    {
      kind: "region" as const,
      id: "reg-img-000001",
      tags: [],
      text: "a large red circle",
      targets: [{ image: "img-000001", box: redCircle.box }],
    },
  ];

  function scripted({ head }: { head: boolean }): { client: LoupeClient; asked: unknown[] } {
    const asked: unknown[] = [];
    const client = {
      target: "scripted",
      ingestImages: async () => [],
      ingestVideos: async () => [],
      ingestTriples: async () => [],
      listImages: async () => [],
      chat: async () => {
        throw new Error("not asked");
      },
      detect: async (request: { image: string }) => {
        asked.push(request);
        if (!head) {
          throw new LoupeApiError({
            code: "not_ready",
            status: 503,
            message: "The model pack p has no detection head (onnx/detection_model.onnx); use another pack.",
            request: "POST /v1/detect",
          });
        }
        return {
          model: "p",
          detections: [
            {
              label: "circle",
              attributes: { color: "red", size: "large" },
              score: 0.912345,
              box: redCircle.box,
            },
          ],
        };
      },
      search: async (request: unknown) => {
        asked.push(request);
        return head
          ? [
              {
                id: "reg_1",
                kind: "region",
                score: 0.5,
                region: {
                  parentId: "img_aaa",
                  parentKind: "image",
                  box: { x0: 0.1, y0: 0.1, x1: 0.4, y1: 0.40004 },
                  label: "circle",
                  attributes: { color: "red" },
                  score: 0.9,
                },
              },
            ]
          : [];
      },
    } as unknown as LoupeClient;
    return { client, asked };
  }

  it("sends the stored id to /v1/detect and searches regions, mapping parents to suite ids", async () => {
    const { client, asked } = scripted({ head: true });
    const { records } = await runCases({ cases, client, ids, images });
    expect(asked).toEqual([
      { image: "img_aaa" },
      {
        text: "a large red circle",
        kinds: ["region"],
        topK: 5,
        filter: [{ field: "parent_kind", op: "eq", value: "image" }],
      },
    ]);
    const [detection, region] = records as [CaseRecord, CaseRecord];
    expect(detection.passed).toBe(true);
    expect(detection.output.detections?.[0]?.score).toBe(0.9123);
    expect(region.output.regions).toEqual([
      { image: "img-000001", box: { x0: 0.1, y0: 0.1, x1: 0.4, y1: 0.4 }, label: "circle" },
    ]);
    expect(region.metrics.hitAt1).toBe(true);
    const summary = summarizeRun({ records });
    expect(summary.figures["detection.ap50"]).toBe(1);
    expect(summary.figures["regions.recallAt1"]).toBe(1);
  });

  it("records a pack without a detection head as such, and the run then has no object figures", async () => {
    const { client } = scripted({ head: false });
    const { records } = await runCases({ cases, client, ids, images });
    expect(records[0]?.error?.code).toBe(NO_DETECTION_HEAD);
    const summary = summarizeRun({ records });
    expect(summary.figures["detection.ap50"]).toBeUndefined();
    expect(summary.figures["regions.recallAt1"]).toBeUndefined();
  });
});

describe("the gate's object rows", () => {
  function runWith(figures: Record<string, number | null>, suite = "shapes-ci"): RunResults {
    return {
      format: RESULTS_FORMAT,
      meta: {
        suite,
        format: suite.startsWith("screens") ? "screens" : "shapes-world",
        source: "/somewhere",
        target: "in-process",
        composer: "offline",
        date: "2026-01-01T00:00:00.000Z",
        corpus: { images: 1, videos: 0, triples: 0 },
        ingestFailures: [],
        durations: { ingestSeconds: 1, casesSeconds: 1, totalSeconds: 2 },
      },
      summary: { ...summarizeRun({ records: [] }), figures },
      cases: [],
    };
  }
  const objectMetrics = ["detection.ap50", "detection.counting", "regions.recallAt1"];
  const healthy = { "detection.ap50": 0.95, "detection.counting": 0.97, "regions.recallAt1": 0.85 };
  const rowsOf = (outcome: ReturnType<typeof compareToBaseline>) =>
    Object.fromEntries(
      outcome.rows.filter((row) => objectMetrics.includes(row.metric)).map((row) => [row.metric, row]),
    );

  it("gates AP@0.5 and counting at 0.03 and region R@1 at 0.05, for Shapes World suites only", () => {
    expect(
      GATED_METRICS.filter((gate) => objectMetrics.includes(gate.metric)).map((gate) => [
        gate.metric,
        gate.tolerance,
      ]),
    ).toEqual([
      ["detection.ap50", 0.03],
      ["detection.counting", 0.03],
      ["regions.recallAt1", 0.05],
    ]);
    const screens = compareToBaseline({
      current: runWith({}, "screens-ci"),
      baseline: runWith(healthy, "screens-ci"),
    });
    expect(screens.passed).toBe(true);
    expect(Object.values(rowsOf(screens)).map((row) => row.status)).toEqual([
      "missing",
      "missing",
      "missing",
    ]);
  });

  it("passes drops within the tolerance and fails one beyond it", () => {
    const within = compareToBaseline({
      current: runWith({ "detection.ap50": 0.92, "detection.counting": 0.94, "regions.recallAt1": 0.8 }),
      baseline: runWith(healthy),
    });
    expect(within.passed).toBe(true);
    expect(Object.values(rowsOf(within)).map((row) => row.status)).toEqual(["pass", "pass", "pass"]);
    const beyond = compareToBaseline({
      current: runWith({ ...healthy, "regions.recallAt1": 0.79 }),
      baseline: runWith(healthy),
    });
    expect(beyond.failures.map((row) => row.metric)).toEqual(["regions.recallAt1"]);
  });

  it("gives info rows when neither run has the figures (a pack without a detection head)", () => {
    const outcome = compareToBaseline({ current: runWith({}), baseline: runWith({}) });
    expect(outcome.passed).toBe(true);
    expect(Object.values(rowsOf(outcome)).map((row) => row.status)).toEqual(["info", "info", "info"]);
  });

  it("fails figures the baseline has and the run lacks, and marks figures new to the run", () => {
    const lost = compareToBaseline({ current: runWith({}), baseline: runWith(healthy) });
    expect(lost.failures.map((row) => row.metric)).toEqual(objectMetrics);
    const added = compareToBaseline({ current: runWith(healthy), baseline: runWith({}) });
    expect(added.passed).toBe(true);
    expect(Object.values(rowsOf(added)).map((row) => row.status)).toEqual(["new", "new", "new"]);
  });
});
