/**
 * Few-shot classification on Shapes World attribute tasks, beside zero-shot: dominant color (six
 * classes), number of objects (four) and contains-a-shape (one yes/no task per shape, averaged). For
 * each task a dev set is generated in-process from one seed: a pool the shots are drawn from and a
 * disjoint test set, each balanced over the classes. Each shot count (1, 5, 10 per class) is averaged
 * over several draws of shots, and fitted with the same code the classifiers API uses
 * (`classifiers/fitting.ts`); zero-shot is the labels' prompts alone, as `POST /v1/classify` scores them.
 *
 * It also times prediction (calibrated probabilities of a 10-class classifier from an embedding, the image
 * embedding excluded), the figure the API's predict adds on top of embedding the image.
 */

import {
  featureVector,
  fitClassifier,
  fitImageExamples,
  type LinearModel,
  predictProbabilities,
} from "../../classifiers/fitting.ts";
import { objectFeatures } from "../../classifiers/object-features.ts";
import type { ObjectDetector } from "../../inference/detection-head.ts";
import type { ModelPack } from "../../inference/model-pack.ts";
import { l2Normalize } from "../../inference/vector-math.ts";
import { COLORS, type Color, type Scene, SHAPES, type Shape } from "../../synth/domain.ts";
import { renderScene } from "../../synth/render.ts";
import { createRng, deriveSeed, type Rng } from "../../synth/rng.ts";
import { sampleScene } from "../../synth/scene.ts";
import { percentile } from "../metrics/latency.ts";

/** Seed of the few-shot dev sets unless another is given. */
export const DEFAULT_FEW_SHOT_SEED = 4242;
/** Shots per class that are measured. */
export const FEW_SHOT_COUNTS = [1, 5, 10] as const;
/** The targets: 5-shot accuracy per task, each also above zero-shot; predict p95 in ms. */
export const FEW_SHOT_TARGETS = {
  dominantColorAt5: 0.9,
  containsShapeAt5: 0.9,
  countAt5: 0.8,
  predictP95Ms: 20,
} as const;

/** The attribute tasks. */
export const FEW_SHOT_TASKS = ["dominant-color", "object-count", "contains-shape"] as const;
/** One attribute task. */
export type FewShotTask = (typeof FEW_SHOT_TASKS)[number];

/** One class of a task: its label, the prompt its zero-shot prior is embedded from, and a scene sampler. */
interface TaskClass {
  label: string;
  prompt: string;
  sample(rng: Rng): Scene;
}

/** A classification problem: classes whose scenes are generated on demand. */
interface TaskProblem {
  name: string;
  classes: TaskClass[];
}

/** The area of a shape of bounding radius 1 (relative: what "dominant" compares). */
const SHAPE_AREA: Readonly<Record<Shape, number>> = {
  circle: Math.PI,
  square: 2,
  triangle: 1.3,
  star: 1.1,
  hexagon: 2.6,
};

/** The color covering the largest area, when it covers at least twice the next one. */
export function dominantColor(scene: Scene): Color | undefined {
  const areas = new Map<Color, number>();
  for (const object of scene.objects) {
    areas.set(object.color, (areas.get(object.color) ?? 0) + SHAPE_AREA[object.shape] * object.r * object.r);
  }
  const sorted = [...areas.entries()].sort((left, right) => right[1] - left[1]);
  const [first, second] = sorted;
  if (first === undefined) return undefined;
  return second === undefined || first[1] >= 2 * second[1] ? first[0] : undefined;
}

function retry(rng: Rng, sample: (rng: Rng) => Scene, accept: (scene: Scene) => boolean): Scene {
  for (let attempt = 0; attempt < 1000; attempt += 1) {
    const scene = sample(rng);
    if (accept(scene)) return scene;
  }
  throw new Error("unreachable: a Shapes World scene of the class was not found in 1000 draws");
}

const COUNT_WORDS = ["one", "two", "three", "four"] as const;

/** The problems a task is made of: one for color and count, one per shape for contains-a-shape. */
export function taskProblems(task: FewShotTask): TaskProblem[] {
  if (task === "dominant-color") {
    return [
      {
        name: "dominant color",
        classes: COLORS.map((color) => ({
          label: color,
          prompt: `a ${color} object`,
          sample: (rng) =>
            retry(
              rng,
              (r) => sampleScene(r),
              (scene) => dominantColor(scene) === color,
            ),
        })),
      },
    ];
  }
  if (task === "object-count") {
    return [
      {
        name: "number of objects",
        classes: COUNT_WORDS.map((word, index) => ({
          label: String(index + 1),
          prompt: `${word} ${index === 0 ? "object" : "objects"}`,
          sample: (rng) => sampleScene(rng, { objectCount: index + 1 }),
        })),
      },
    ];
  }
  return SHAPES.map((shape) => {
    const others = SHAPES.filter((other) => other !== shape);
    return {
      name: `contains a ${shape}`,
      classes: [
        {
          label: "yes",
          prompt: `a ${shape}`,
          sample: (rng: Rng) => {
            const count = rng.int(1, 4);
            const objects = Array.from({ length: count }, (_, index) => (index === 0 ? { shape } : {}));
            return sampleScene(rng, { objects: rng.shuffle(objects) });
          },
        },
        {
          label: "no",
          prompt: others.map((other) => `a ${other}`).join(" or "),
          sample: (rng: Rng) => sampleScene(rng, { shapes: others }),
        },
      ],
    };
  });
}

/** Accuracy of one problem at one shot count (mean over draws), and zero-shot. */
export interface ProblemFigures {
  name: string;
  classes: number;
  testImages: number;
  zeroShot: number;
  /** Shots per class → mean accuracy over the draws. */
  shots: Record<string, number>;
  /** Shots per class → how often each method was chosen by leave-one-out. */
  methods: Record<string, Record<string, number>>;
}

/** A task's figures: its problems and their mean. */
export interface TaskFigures {
  task: FewShotTask;
  problems: ProblemFigures[];
  zeroShot: number;
  shots: Record<string, number>;
}

/** What {@link evaluateFewShot} returns. */
export interface FewShotReport {
  modelId: string;
  seed: number;
  draws: number;
  tasks: TaskFigures[];
  /** Calibrated probabilities of a 10-class, 10-shot classifier from an embedding, in ms. */
  predict: { classes: number; runs: number; p50Ms: number; p95Ms: number };
  targets: Array<{ name: string; value: number; target: string; met: boolean }>;
  timings: { totalMs: number; embedMs: number; fitMs: number };
}

/** Options of {@link evaluateFewShot}. */
export interface FewShotEvalOptions {
  pack: Pick<ModelPack, "modelId" | "imageEmbedder" | "textEmbedder">;
  /** The pack's detection head: when given, classifiers also try the object summary, as the API does. */
  detector?: Pick<ObjectDetector, "encodeAndDetect" | "config">;
  /** Softmax scale of zero-shot classification (the pack's logit scale). */
  logitScale: number;
  seed?: number;
  /** Pool images per class the shots are drawn from (≥ the largest shot count). */
  poolPerClass?: number;
  /** Test images per class, disjoint from the pool. */
  testPerClass?: number;
  /** Draws of shots averaged per shot count. */
  draws?: number;
  /** Rendered image side. */
  size?: number;
  tasks?: readonly FewShotTask[];
  onProgress?: (message: string) => void;
}

async function embedScenes(
  pack: FewShotEvalOptions["pack"],
  detector: FewShotEvalOptions["detector"],
  scenes: readonly Scene[],
  { seed, size }: { seed: number; size: number },
): Promise<{ vectors: Float32Array[]; objects?: Float32Array[] }> {
  const images: Uint8Array[] = [];
  for (const [index, scene] of scenes.entries()) {
    const rendered = await renderScene(scene, {
      size,
      format: "jpeg",
      quality: 90,
      seed: deriveSeed(seed, "render", index),
    });
    images.push(rendered.data);
  }
  if (detector === undefined) return { vectors: await pack.imageEmbedder.embed({ images }) };
  const vocabulary = { classes: detector.config.classes, attributes: detector.config.attributes };
  const { embeddings, detections } = await detector.encodeAndDetect({ images });
  return {
    vectors: embeddings,
    objects: detections.map((image) => objectFeatures(image.detections, vocabulary)),
  };
}

function accuracyOf(model: LinearModel, vectors: readonly Float32Array[], labels: readonly number[]): number {
  let right = 0;
  for (const [index, vector] of vectors.entries()) {
    const probabilities = predictProbabilities(model, vector);
    let best = 0;
    for (let k = 1; k < probabilities.length; k += 1)
      if ((probabilities[k] ?? 0) > (probabilities[best] ?? 0)) best = k;
    if (best === labels[index]) right += 1;
  }
  return right / Math.max(vectors.length, 1);
}

/** Runs the tasks and the timing; see the module's description. */
export async function evaluateFewShot({
  pack,
  detector,
  logitScale,
  seed = DEFAULT_FEW_SHOT_SEED,
  poolPerClass = 20,
  testPerClass = 60,
  draws = 5,
  size = 256,
  tasks = FEW_SHOT_TASKS,
  onProgress,
}: FewShotEvalOptions): Promise<FewShotReport> {
  const started = performance.now();
  let embedMs = 0;
  let fitMs = 0;
  const maxShots = Math.max(...FEW_SHOT_COUNTS);
  if (poolPerClass < maxShots) throw new RangeError(`poolPerClass must be at least ${maxShots}`);
  const figures: TaskFigures[] = [];
  let testDimension = 256;
  for (const task of tasks) {
    const problems: ProblemFigures[] = [];
    for (const problem of taskProblems(task)) {
      onProgress?.(`${problem.name}: rendering and embedding`);
      const problemSeed = deriveSeed(seed, "few-shot", problem.name);
      const scenes: Scene[] = [];
      const labels: number[] = [];
      const isPool: boolean[] = [];
      for (const [label, taskClass] of problem.classes.entries()) {
        const rng = createRng(deriveSeed(problemSeed, "class", taskClass.label));
        for (let index = 0; index < poolPerClass + testPerClass; index += 1) {
          scenes.push(taskClass.sample(rng));
          labels.push(label);
          isPool.push(index < poolPerClass);
        }
      }
      const embedStart = performance.now();
      const { vectors, objects } = await embedScenes(pack, detector, scenes, { seed: problemSeed, size });
      const priors = await pack.textEmbedder.embed({
        texts: problem.classes.map((taskClass) => taskClass.prompt),
      });
      embedMs += performance.now() - embedStart;
      testDimension = vectors[0]?.length ?? testDimension;
      const test = vectors.map((_, index) => index).filter((index) => !isPool[index]);
      const testVectors = test.map((index) => vectors[index] as Float32Array);
      const testLabels = test.map((index) => labels[index] as number);
      const zeroShotModel: LinearModel = {
        method: "logistic",
        weights: priors.map((prior) => Float32Array.from(prior, (value) => value * logitScale)),
        bias: new Float64Array(priors.length),
        temperature: 1,
      };
      const testObjects =
        objects === undefined ? undefined : test.map((index) => objects[index] as Float32Array);
      const shots: Record<string, number> = {};
      const methods: Record<string, Record<string, number>> = {};
      for (const count of FEW_SHOT_COUNTS) {
        let total = 0;
        const chosen: Record<string, number> = {};
        for (let draw = 0; draw < draws; draw += 1) {
          const rng = createRng(deriveSeed(problemSeed, "draw", count, draw));
          const trainVectors: Float32Array[] = [];
          const trainObjects: Float32Array[] = [];
          const trainLabels: number[] = [];
          for (let label = 0; label < problem.classes.length; label += 1) {
            const pool = vectors
              .map((_, index) => index)
              .filter((index) => isPool[index] && labels[index] === label);
            for (const index of rng.shuffle(pool).slice(0, count)) {
              trainVectors.push(vectors[index] as Float32Array);
              if (objects !== undefined) trainObjects.push(objects[index] as Float32Array);
              trainLabels.push(label);
            }
          }
          const fitStart = performance.now();
          const { features, fitted } = fitImageExamples({
            embeddings: trainVectors,
            ...(objects === undefined ? {} : { objects: trainObjects }),
            labels: trainLabels,
            classes: problem.classes.length,
            priors,
            priorScale: logitScale,
          });
          fitMs += performance.now() - fitStart;
          const choice = `${features} ${fitted.model.method}`;
          chosen[choice] = (chosen[choice] ?? 0) + 1;
          const inputs = testVectors.map((vector, index) =>
            featureVector(features, vector, testObjects?.[index]),
          );
          total += accuracyOf(fitted.model, inputs, testLabels);
        }
        shots[String(count)] = total / draws;
        methods[String(count)] = chosen;
      }
      problems.push({
        name: problem.name,
        classes: problem.classes.length,
        testImages: test.length,
        zeroShot: accuracyOf(zeroShotModel, testVectors, testLabels),
        shots,
        methods,
      });
    }
    const mean = (values: number[]) =>
      values.reduce((sum, value) => sum + value, 0) / Math.max(values.length, 1);
    figures.push({
      task,
      problems,
      zeroShot: mean(problems.map((problem) => problem.zeroShot)),
      shots: Object.fromEntries(
        FEW_SHOT_COUNTS.map((count) => [
          String(count),
          mean(problems.map((problem) => problem.shots[String(count)] ?? 0)),
        ]),
      ),
    });
  }
  const predict = timePredict({ dimension: testDimension, seed });
  const targets: FewShotReport["targets"] = [];
  const at5 = (task: FewShotTask) => figures.find((entry) => entry.task === task);
  const goals: Array<[FewShotTask, number]> = [
    ["dominant-color", FEW_SHOT_TARGETS.dominantColorAt5],
    ["contains-shape", FEW_SHOT_TARGETS.containsShapeAt5],
    ["object-count", FEW_SHOT_TARGETS.countAt5],
  ];
  for (const [task, goal] of goals) {
    const entry = at5(task);
    if (entry === undefined) continue;
    const value = entry.shots["5"] ?? 0;
    targets.push({ name: `${task} 5-shot accuracy`, value, target: `≥ ${goal}`, met: value >= goal });
    targets.push({
      name: `${task} 5-shot above zero-shot`,
      value: value - entry.zeroShot,
      target: "> 0",
      met: value > entry.zeroShot,
    });
  }
  targets.push({
    name: "predict p95 (ms, 10 classes, embedding excluded)",
    value: predict.p95Ms,
    target: `< ${FEW_SHOT_TARGETS.predictP95Ms}`,
    met: predict.p95Ms < FEW_SHOT_TARGETS.predictP95Ms,
  });
  return {
    modelId: pack.modelId,
    seed,
    draws,
    tasks: figures,
    predict,
    targets,
    timings: { totalMs: performance.now() - started, embedMs, fitMs },
  };
}

/** Times calibrated prediction of a 10-class, 10-shot classifier over random unit embeddings. */
export function timePredict({
  dimension,
  seed,
  classes = 10,
  runs = 2000,
}: {
  dimension: number;
  seed: number;
  classes?: number;
  runs?: number;
}): FewShotReport["predict"] {
  const rng = createRng(deriveSeed(seed, "predict-timing"));
  const unit = () => l2Normalize(Float32Array.from({ length: dimension }, () => rng.float(-1, 1)));
  const priors = Array.from({ length: classes }, unit);
  const vectors: Float32Array[] = [];
  const labels: number[] = [];
  for (let label = 0; label < classes; label += 1) {
    for (let shot = 0; shot < 10; shot += 1) {
      vectors.push(
        l2Normalize(
          Float32Array.from(priors[label] as Float32Array, (value) => value + rng.float(-0.05, 0.05)),
        ),
      );
      labels.push(label);
    }
  }
  const { model } = fitClassifier({ vectors, labels, classes, priors, priorScale: 30 });
  const queries = Array.from({ length: runs }, unit);
  const times: number[] = [];
  for (const query of queries) {
    const start = performance.now();
    predictProbabilities(model, query);
    times.push(performance.now() - start);
  }
  return {
    classes,
    runs,
    p50Ms: percentile({ values: times, p: 50 }),
    p95Ms: percentile({ values: times, p: 95 }),
  };
}

/** The report as text: per task and problem, zero-shot beside 1, 5 and 10 shots; the timing; the targets. */
export function formatFewShotReport(report: FewShotReport): string {
  const fixed = (value: number) => value.toFixed(3);
  const lines: string[] = [
    `Few-shot classification, ${report.modelId}, on Shapes World dev sets generated from seed ${report.seed} ` +
      `(shots drawn from a pool disjoint from the test images; ${report.draws} draws per shot count):`,
    "",
  ];
  const rows = [["task", "classes", "test", "zero-shot", ...FEW_SHOT_COUNTS.map((count) => `${count}-shot`)]];
  for (const task of report.tasks) {
    for (const problem of task.problems) {
      rows.push([
        problem.name,
        String(problem.classes),
        String(problem.testImages),
        fixed(problem.zeroShot),
        ...FEW_SHOT_COUNTS.map((count) => fixed(problem.shots[String(count)] ?? 0)),
      ]);
    }
    if (task.problems.length > 1) {
      rows.push([
        `${task.task} (mean)`,
        "",
        "",
        fixed(task.zeroShot),
        ...FEW_SHOT_COUNTS.map((count) => fixed(task.shots[String(count)] ?? 0)),
      ]);
    }
  }
  const width = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? "").length))) ?? [];
  for (const row of rows) lines.push(row.map((cell, column) => cell.padEnd(width[column] ?? 0)).join("  "));
  lines.push(
    "",
    `Predict (calibrated probabilities from an embedding, ${report.predict.classes} classes, ${report.predict.runs} runs, ` +
      `image embedding excluded): p50 ${report.predict.p50Ms.toFixed(4)} ms, p95 ${report.predict.p95Ms.toFixed(4)} ms`,
    "",
    "Targets:",
  );
  for (const check of report.targets) {
    lines.push(
      `  ${check.name}: ${check.value.toFixed(3)} (${check.target}) ${check.met ? "met" : "NOT MET"}`,
    );
  }
  lines.push(
    `${report.targets.filter((check) => check.met).length} of ${report.targets.length} targets met.`,
    `Timings: embedding ${(report.timings.embedMs / 1000).toFixed(1)} s, fitting ${(report.timings.fitMs / 1000).toFixed(1)} s, total ${(report.timings.totalMs / 1000).toFixed(1)} s.`,
  );
  return `${lines.join("\n")}\n`;
}
