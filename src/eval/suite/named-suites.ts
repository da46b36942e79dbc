/**
 * Suites by name or path, as `--suite` takes them:
 *
 * - `shapes-dev`: a Shapes World split generated on the fly from seed 777001, a seed the bundled pack
 *   never saw in training (150 images of 256 px JPEG, 20 triples, 2 videos), with a fixed selection of
 *   about six hundred cases over every kind: text→image, image→image, text→video segment, VQA per
 *   question type, triple probes, chat answer cases (attached-image questions, "is there an image
 *   with …", "when does … happen" over the videos, and off-domain questions the corpus cannot answer),
 *   detection cases (`POST /v1/detect` on every stored image against its objects) and text→region cases
 *   (one single-object description per image, searched with `kinds: ["region"]`).
 * - `shapes-ci`: the suite the CI gate runs against `evals/baselines/shapes-ci.json` (the same split and
 *   cases as `shapes-dev`, so a developer's run reads like the gate's).
 * - `screens-dev`: a Screens World set generated from seed 880001 (120 screenshots in English and
 *   Chinese), never used to tune anything: OCR CER per screenshot, every query in dense, text and hybrid
 *   modes, and one chat question per screenshot.
 * - `screens-ci`: a small Screens World set from another seed (880002, 30 screenshots) that the CI gate
 *   runs against `evals/baselines/screens-ci.json`.
 * - a path: a `.jsonl` file in Loupe's format, a folder written by `loupe synth` or `loupe synth screens`, a Karpathy caption
 *   JSON (`--format karpathy`) or VQAv2 questions and annotations (`--format vqav2 --annotations …`).
 *
 * Everything is deterministic for a seed: the split, the case selection and their order.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { extname, join, resolve } from "node:path";
import { ValidationError } from "../../errors.ts";
import {
  ACTION_VERBS,
  type Action,
  generateDataset,
  readJsonl,
  writeScreensDataset,
} from "../../synth/index.ts";
import { loadJsonlSuite } from "./loaders/jsonl-cases.ts";
import { loadKarpathySuite } from "./loaders/karpathy.ts";
import { isScreensSpec, loadScreensSuite } from "./loaders/screens.ts";
import { loadShapesWorldSuite } from "./loaders/shapes-world.ts";
import { loadVqaV2Suite } from "./loaders/vqav2.ts";
import type { AnswerCase, Suite, SuiteCase } from "./suite.ts";

/** Names `--suite` accepts besides paths. */
export const NAMED_SUITES = ["shapes-dev", "shapes-ci", "screens-dev", "screens-ci"] as const;
export type NamedSuite = (typeof NAMED_SUITES)[number];

/** Formats `--format` accepts for a path. */
export const SUITE_FORMATS = ["auto", "loupe-jsonl", "shapes-world", "screens", "karpathy", "vqav2"] as const;
export type SuiteFormatOption = (typeof SUITE_FORMATS)[number];

/** The seed of the named Shapes World suites; the pack was trained on other seeds. */
export const SHAPES_DEV_SEED = 777_001;

/** The named Screens World suites: seed and number of screenshots. */
export const SCREENS_SUITES: Record<"screens-dev" | "screens-ci", { seed: number; count: number }> = {
  "screens-dev": { seed: 880_001, count: 120 },
  "screens-ci": { seed: 880_002, count: 30 },
};

/** The split and the share of it the named Shapes World suites run. */
export interface ShapesSuitePlan {
  images: number;
  size: number;
  triples: number;
  videos: number;
  videoSize: number;
  /** Partial and description queries each. */
  textToImage: number;
  vqaPerType: number;
  attachedPerType: number;
  presenceQuestions: number;
  /** Images whose detections are scored. */
  detectionImages: number;
  /** Single-object descriptions searched among the regions. */
  regionQueries: number;
}

/** The plan of `shapes-dev` and `shapes-ci`: minutes on two cores. */
export const SHAPES_DEV_PLAN: ShapesSuitePlan = {
  images: 150,
  size: 256,
  triples: 20,
  videos: 2,
  videoSize: 128,
  textToImage: 40,
  vqaPerType: 20,
  attachedPerType: 4,
  presenceQuestions: 12,
  detectionImages: 150,
  regionQueries: 150,
};

/** Off-domain questions: nothing in a Shapes World corpus answers them. */
export const OFF_DOMAIN_QUESTIONS = [
  "Who painted the Mona Lisa?",
  "What is the capital of France?",
  "Summarise the latest quarterly report.",
  "How do I bake sourdough bread?",
  "Which team won the 1998 football World Cup?",
  "What is the boiling point of water at sea level?",
  "Translate 'good morning' into Japanese.",
  "Who is the author of Pride and Prejudice?",
] as const;

interface SceneObject {
  shape: string;
  color: string;
}
interface RawScene {
  id: string;
  scene: { objects: SceneObject[] };
}
interface RawVideo {
  id: string;
  segments: Array<{
    start: number;
    end: number;
    action: Action;
    clip: { actor: number; frames: Array<{ objects: SceneObject[] }> };
  }>;
}

/** The first `count` cases that pass `test`, in suite order. */
function firstOf<Case extends SuiteCase>(
  cases: readonly SuiteCase[],
  count: number,
  test: (item: SuiteCase) => item is Case,
): Case[] {
  return cases.filter(test).slice(0, count);
}

/**
 * Picks the named suite's cases from a loaded split and adds the chat answer cases built from its raw
 * files (scenes for presence questions, videos for "when" questions).
 */
export async function selectShapesCases({
  suite,
  dir,
  plan,
}: {
  suite: Suite;
  dir: string;
  plan: ShapesSuitePlan;
}): Promise<SuiteCase[]> {
  const cases = suite.cases;
  const selected: SuiteCase[] = [
    ...firstOf(
      cases,
      plan.textToImage,
      (item): item is SuiteCase => item.kind === "retrieval" && item.tags[0] === "partial",
    ),
    ...firstOf(
      cases,
      plan.textToImage,
      (item): item is SuiteCase => item.kind === "retrieval" && item.tags[0] === "description",
    ),
    ...cases.filter((item) => item.kind === "retrieval" && item.task !== "text-to-image"),
    ...cases.filter((item) => item.kind === "triple-probe"),
    ...firstOf(cases, plan.detectionImages, (item): item is SuiteCase => item.kind === "detection"),
    ...firstOf(cases, plan.regionQueries, (item): item is SuiteCase => item.kind === "region"),
  ];
  const vqaByType = new Map<string, SuiteCase[]>();
  for (const item of cases) {
    if (item.kind !== "vqa") continue;
    const list = vqaByType.get(item.questionType ?? "other") ?? [];
    list.push(item);
    vqaByType.set(item.questionType ?? "other", list);
  }
  const answers: AnswerCase[] = [];
  for (const [type, list] of vqaByType) {
    selected.push(...list.slice(0, plan.vqaPerType));
    // Questions the VQA selection does not use, asked as chat turns about an attached image.
    for (const item of list.slice(plan.vqaPerType, plan.vqaPerType + plan.attachedPerType)) {
      if (item.kind !== "vqa") continue;
      answers.push({
        kind: "answer",
        id: `ask-${item.id}`,
        tags: ["attached", type],
        question: item.question,
        images: [item.image],
        history: [],
        answers: item.answers,
        evidence: ["att_1"],
        segments: [],
        unanswerable: false,
      });
    }
  }

  const scenes = await readJsonl<RawScene>(join(dir, "scenes.jsonl"));
  const pairsOf = (scene: RawScene) => [
    ...new Set(scene.scene.objects.map((object) => `${object.color} ${object.shape}`)),
  ];
  let presence = 0;
  for (const scene of scenes) {
    if (presence >= plan.presenceQuestions) break;
    const [first, second] = pairsOf(scene);
    if (first === undefined || second === undefined) continue;
    presence += 1;
    answers.push({
      kind: "answer",
      id: `presence-${scene.id}`,
      tags: ["corpus-image"],
      question: `Is there an image with a ${first} and a ${second}?`,
      images: [],
      history: [],
      answers: ["yes"],
      evidence: scenes
        .filter((other) => {
          const pairs = pairsOf(other);
          return pairs.includes(first) && pairs.includes(second);
        })
        .map((other) => other.id),
      segments: [],
      unanswerable: false,
    });
  }

  for (const video of await readJsonl<RawVideo>(join(dir, "videos.jsonl"))) {
    video.segments.forEach((segment, index) => {
      const actor = segment.clip.frames[0]?.objects[segment.clip.actor];
      const verb = ACTION_VERBS[segment.action];
      if (actor === undefined || verb === undefined) return;
      answers.push({
        kind: "answer",
        id: `when-${video.id}-${index + 1}`,
        tags: ["video", segment.action],
        question: `When does the ${actor.color} ${actor.shape} ${verb}?`,
        images: [],
        history: [],
        answers: [],
        evidence: [],
        segments: [{ videoId: video.id, start: segment.start, end: segment.end }],
        unanswerable: false,
      });
    });
  }

  OFF_DOMAIN_QUESTIONS.forEach((question, index) => {
    answers.push({
      kind: "answer",
      id: `off-domain-${index + 1}`,
      tags: ["unanswerable"],
      question,
      images: [],
      history: [],
      answers: [],
      evidence: [],
      segments: [],
      unanswerable: true,
    });
  });
  return [...selected, ...answers];
}

/** A suite ready to run, with what to remove after the run. */
export interface ResolvedSuite {
  suite: Suite;
  /** The seed the suite was generated from (named suites). */
  seed?: number;
  /** Removes temporary files (a generated split); safe to call more than once. */
  dispose(): Promise<void>;
}

/** Options of {@link resolveSuite}. */
export interface ResolveSuiteOptions {
  /** A name of {@link NAMED_SUITES} or a path. */
  suite: string;
  format?: SuiteFormatOption;
  /** Seed of a named suite (default {@link SHAPES_DEV_SEED}, or the screens suite's own). */
  seed?: number;
  /** VQAv2: the annotations file beside the questions file. */
  annotations?: string;
  /** Karpathy and VQAv2: the images folder. */
  imagesDir?: string;
  /** Shrinks a named suite's split (tests); defaults to {@link SHAPES_DEV_PLAN}. */
  plan?: ShapesSuitePlan;
  /** Screenshots of a named screens suite (tests); defaults to the suite's own count. */
  screens?: number;
  /** Where to generate a named suite's split (default: a new temporary folder). */
  workDir?: string;
}

async function generateNamedSuite({
  name,
  seed,
  plan,
  workDir,
}: {
  name: NamedSuite;
  seed: number;
  plan: ShapesSuitePlan;
  workDir?: string;
}): Promise<ResolvedSuite> {
  const root = workDir ?? (await mkdtemp(join(tmpdir(), "loupe-eval-suite-")));
  const dir = join(root, name);
  const dispose = async () => {
    if (workDir === undefined) await rm(root, { recursive: true, force: true });
  };
  try {
    await generateDataset({
      outDir: dir,
      seed,
      images: plan.images,
      size: plan.size,
      format: "jpeg",
      questionsPerType: 1,
      triples: plan.triples,
      videos: plan.videos,
      videoSize: plan.videoSize,
      overwrite: true,
      concurrency: 2,
    });
    const split = await loadShapesWorldSuite({ dir, name });
    return {
      suite: { ...split, cases: await selectShapesCases({ suite: split, dir, plan }) },
      seed,
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

async function generateScreensSuite({
  name,
  seed,
  count,
  workDir,
}: {
  name: "screens-dev" | "screens-ci";
  seed: number;
  count: number;
  workDir?: string;
}): Promise<ResolvedSuite> {
  const root = workDir ?? (await mkdtemp(join(tmpdir(), "loupe-eval-suite-")));
  const dir = join(root, name);
  const dispose = async () => {
    if (workDir === undefined) await rm(root, { recursive: true, force: true });
  };
  try {
    await writeScreensDataset({ outDir: dir, seed, count, overwrite: true, concurrency: 2 });
    return { suite: await loadScreensSuite({ dir, name }), seed, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

async function detectFormat(path: string): Promise<Exclude<SuiteFormatOption, "auto">> {
  const info = await stat(path);
  if (info.isDirectory()) {
    const manifest = join(path, "manifest.json");
    if (existsSync(manifest)) {
      const spec = (JSON.parse(await readFile(manifest, "utf8").catch(() => "{}")) as { spec?: unknown })
        .spec;
      return isScreensSpec(spec) ? "screens" : "shapes-world";
    }
    throw new ValidationError(
      `Suite folder ${path} holds no manifest.json, so it is not a Shapes World split; give a split written by loupe synth, a .jsonl suite, or --format karpathy|vqav2 with a file.`,
      { context: { path } },
    );
  }
  if (extname(path).toLowerCase() === ".jsonl") return "loupe-jsonl";
  throw new ValidationError(
    `Cannot tell the format of suite file ${path}; name it *.jsonl for Loupe's format, or give --format karpathy|vqav2.`,
    { context: { path } },
  );
}

/**
 * Loads the suite `--suite` names: a named suite is generated into a temporary folder (removed by
 * `dispose`); a path is loaded with the loader of its format.
 *
 * @throws ValidationError for an unknown name that is no path, a format that cannot be told, or the
 * loaders' own errors (file, line, field).
 */
export async function resolveSuite({
  suite,
  format = "auto",
  seed,
  annotations,
  imagesDir,
  plan = SHAPES_DEV_PLAN,
  screens,
  workDir,
}: ResolveSuiteOptions): Promise<ResolvedSuite> {
  if (suite === "screens-dev" || suite === "screens-ci") {
    const named = SCREENS_SUITES[suite];
    return generateScreensSuite({
      name: suite,
      seed: seed ?? named.seed,
      count: screens ?? named.count,
      ...(workDir ? { workDir } : {}),
    });
  }
  if ((NAMED_SUITES as readonly string[]).includes(suite)) {
    return generateNamedSuite({
      name: suite as NamedSuite,
      seed: seed ?? SHAPES_DEV_SEED,
      plan,
      ...(workDir ? { workDir } : {}),
    });
  }
  const path = resolve(suite);
  if (!existsSync(path)) {
    throw new ValidationError(
      `Suite ${JSON.stringify(suite)} is neither a named suite (${NAMED_SUITES.join(", ")}) nor an existing file or folder.`,
      { context: { suite } },
    );
  }
  const kind = format === "auto" ? await detectFormat(path) : format;
  const done = async () => undefined;
  if (kind === "loupe-jsonl") return { suite: await loadJsonlSuite({ file: path }), dispose: done };
  if (kind === "shapes-world") return { suite: await loadShapesWorldSuite({ dir: path }), dispose: done };
  if (kind === "screens") return { suite: await loadScreensSuite({ dir: path }), dispose: done };
  if (kind === "karpathy") {
    return {
      suite: await loadKarpathySuite({ file: path, ...(imagesDir ? { imagesDir } : {}) }),
      dispose: done,
    };
  }
  if (annotations === undefined) {
    throw new ValidationError(
      "A VQAv2 suite needs its annotations file: give --annotations <file> beside --suite <questions file>.",
    );
  }
  return {
    suite: await loadVqaV2Suite({
      questionsFile: path,
      annotationsFile: resolve(annotations),
      ...(imagesDir ? { imagesDir } : {}),
    }),
    dispose: done,
  };
}
