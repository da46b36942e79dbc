/**
 * A Shapes World split written by `loupe synth` (any seed, size, format) as a suite:
 *
 * - corpus: the images (`scenes.jsonl`, no captions: descriptions are the queries), the long videos
 *   (`videos.jsonl`, with their clips as ground-truth spans) and the stored triples (`triples.jsonl`);
 * - text→image cases: partial queries and full descriptions (`queries.jsonl`) with every relevant image;
 * - image→image cases: each triple's twin (the same scene rendered again) should find its image;
 * - VQA cases: `vqa.jsonl`, tagged with question type and variant;
 * - triple probes: the twin with a paraphrased question should reuse the stored triple;
 * - text→video-segment cases: one per distinct clip description (with and without the size word), whose
 *   expected segments are every clip of every video with that meaning;
 * - detection cases: one per image, with its objects (box: the square `[x − r, y − r, x + r, y + r]` of
 *   the bounding circle, normalized) and counting questions (all objects, each shape and each colour it has);
 * - region cases: one single-object description per image ("a small green star"; the size word on every
 *   other image), whose targets are every object of the corpus the description fits.
 *
 * The manifest's spec tag and counts are checked, so a truncated or foreign folder fails loudly.
 */
import { resolve } from "node:path";
import { z } from "zod";
import { DATASET_SPEC } from "../../../synth/dataset.ts";
import { COLORS, SHAPES, SIZES } from "../../../synth/domain.ts";
import { objectPhrase } from "../../../synth/phrasing.ts";
import type {
  CorpusImage,
  CorpusTriple,
  CorpusVideo,
  CountQuestion,
  DetectionCase,
  RegionCase,
  RetrievalCase,
  SegmentRef,
  Suite,
  SuiteCase,
  TripleProbeCase,
  TruthObject,
  VqaCase,
} from "../suite.ts";
import {
  failAt,
  type Place,
  parseAt,
  parseJsonFile,
  readJsonLines,
  referencedFiles,
  resolveInside,
} from "./files.ts";

const countSchema = z.number().int().min(0);

/** The manifest fields the loader relies on. */
export const shapesManifestSchema = z.object({
  spec: z.string(),
  seed: z.number().int(),
  options: z.object({ size: z.number().int(), format: z.string() }).loose(),
  counts: z.object({
    images: countSchema,
    partialQueries: countSchema,
    descriptionQueries: countSchema,
    vqa: countSchema,
    triples: countSchema,
    videos: countSchema,
  }),
  files: z.object({
    scenes: z.string(),
    queries: z.string(),
    vqa: z.string(),
    triples: z.string(),
    videos: z.string(),
  }),
});

const sceneObjectSchema = z
  .object({
    shape: z.enum(SHAPES),
    color: z.enum(COLORS),
    size: z.enum(SIZES),
    x: z.number().min(0).max(1),
    y: z.number().min(0).max(1),
    r: z.number().positive().max(0.5),
  })
  .loose();
type SceneObject = z.output<typeof sceneObjectSchema>;

const sceneLineSchema = z.object({
  id: z.string().min(1),
  file: z.string().min(1),
  width: z.number().int(),
  height: z.number().int(),
  key: z.string(),
  keyWithoutSizes: z.string(),
  /** The objects drawn; splits without it get no detection or region cases. */
  scene: z
    .object({ objects: z.array(sceneObjectSchema) })
    .loose()
    .optional(),
});

const queryLineSchema = z.discriminatedUnion("type", [
  z.object({
    id: z.string().min(1),
    type: z.literal("partial"),
    text: z.string().min(1),
    kind: z.string(),
    relevant: z.array(z.string()),
  }),
  z.object({
    id: z.string().min(1),
    type: z.literal("description"),
    text: z.string().min(1),
    includeSizes: z.boolean(),
    relevant: z.array(z.string()),
  }),
]);

const vqaLineSchema = z.object({
  id: z.string().min(1),
  image: z.string().min(1),
  question: z.string().min(1),
  answer: z.string().min(1),
  type: z.string(),
  variant: z.string(),
});

const tripleLineSchema = z.object({
  id: z.string().min(1),
  image: z.string().min(1),
  question: z.string().min(1),
  answer: z.string().min(1),
  type: z.string(),
  file: z.string().min(1),
  probe: z.object({ file: z.string().min(1), question: z.string().min(1) }),
});

const clipDescriptionSchema = z.object({
  text: z.string().min(1),
  includeSize: z.boolean(),
  key: z.string(),
});

const videoLineSchema = z.object({
  id: z.string().min(1),
  file: z.string().min(1),
  width: z.number().int(),
  height: z.number().int(),
  fps: z.number(),
  duration: z.number(),
  segments: z.array(
    z.object({
      start: z.number().min(0),
      end: z.number(),
      action: z.string(),
      descriptions: z.array(clipDescriptionSchema),
    }),
  ),
});

/** The ground-truth box of a Shapes World object: the square of its bounding circle, normalized. */
export function shapesObjectBox(object: Pick<SceneObject, "x" | "y" | "r">): TruthObject["box"] {
  return {
    x0: object.x - object.r,
    y0: object.y - object.r,
    x1: object.x + object.r,
    y1: object.y + object.r,
  };
}

/** Counting questions of one scene: all its objects, then each shape and each colour it has. */
export function sceneCountQuestions(objects: readonly SceneObject[]): CountQuestion[] {
  const questions: CountQuestion[] = [{ expected: objects.length }];
  for (const label of SHAPES) {
    const expected = objects.filter((object) => object.shape === label).length;
    if (expected > 0) questions.push({ label, expected });
  }
  for (const color of COLORS) {
    const expected = objects.filter((object) => object.color === color).length;
    if (expected > 0) questions.push({ color, expected });
  }
  return questions;
}

/**
 * Detection and region cases of a split's scenes (see the module comment); scenes without objects give
 * neither.
 */
export function objectCases(scenes: ReadonlyArray<{ id: string; objects: readonly SceneObject[] }>): {
  detection: DetectionCase[];
  region: RegionCase[];
} {
  const truthOf = (object: SceneObject): TruthObject => ({
    label: object.shape,
    attributes: { color: object.color, size: object.size },
    box: shapesObjectBox(object),
  });
  const detection: DetectionCase[] = [];
  const region: RegionCase[] = [];
  scenes.forEach((scene, index) => {
    if (scene.objects.length === 0) return;
    detection.push({
      kind: "detection",
      id: `det-${scene.id}`,
      tags: [`objects-${scene.objects.length}`],
      image: scene.id,
      objects: scene.objects.map(truthOf),
      counts: sceneCountQuestions(scene.objects),
    });
    const object = scene.objects[index % scene.objects.length] as SceneObject;
    const withSize = index % 2 === 0;
    const fits = (other: SceneObject) =>
      other.shape === object.shape &&
      other.color === object.color &&
      (!withSize || other.size === object.size);
    region.push({
      kind: "region",
      id: `reg-${scene.id}`,
      tags: [withSize ? "with-size" : "without-size"],
      text: objectPhrase({
        ...(withSize ? { size: object.size } : {}),
        color: object.color,
        shape: object.shape,
      }),
      targets: scenes.flatMap((other) =>
        other.objects.filter(fits).map((fit) => ({ image: other.id, box: shapesObjectBox(fit) })),
      ),
    });
  });
  return { detection, region };
}

/** Options of {@link loadShapesWorldSuite}. */
export interface LoadShapesWorldSuiteOptions {
  /** The folder `loupe synth --out` wrote. */
  dir: string;
  /** Suite name; defaults to `shapes-world-<seed>-<format>-<size>`. */
  name?: string;
  /** Check that every image and video file exists (default true). */
  checkFiles?: boolean;
}

async function readLines<Schema extends z.ZodType>({
  root,
  name,
  schema,
  expected,
  what,
}: {
  root: string;
  name: string;
  schema: Schema;
  expected: number;
  what: string;
}): Promise<Array<{ place: Place; value: z.output<Schema> }>> {
  const file = resolveInside({
    root,
    path: name,
    place: { file: resolve(root, "manifest.json") },
    field: "files",
  });
  const lines = (await readJsonLines({ file, what })).map(({ line, value }) => {
    const place = { file, line };
    return { place, value: parseAt({ schema, value, place }) };
  });
  if (lines.length !== expected) {
    failAt(
      { file },
      `has ${lines.length} lines but the manifest counts ${expected}; the split is incomplete or was edited. Generate it again with loupe synth.`,
      { lines: lines.length, expected },
    );
  }
  return lines;
}

/**
 * Loads a Shapes World split as a suite (see the module comment). Image, video and triple ids are the
 * dataset's (`img-000001`, `vid-000001`, `tri-000001`).
 *
 * @throws ValidationError for a folder without a Shapes World manifest, another spec version, a file
 * whose line count differs from the manifest, a malformed line (naming file, line and field), an id that
 * refers to no image, or a missing media file.
 */
export async function loadShapesWorldSuite({
  dir,
  name,
  checkFiles = true,
}: LoadShapesWorldSuiteOptions): Promise<Suite> {
  const root = resolve(dir);
  const manifestFile = resolve(root, "manifest.json");
  const manifestPlace: Place = { file: manifestFile };
  const manifest = await parseJsonFile({
    file: manifestFile,
    what: "Shapes World manifest",
    schema: shapesManifestSchema,
  });
  if (manifest.spec !== DATASET_SPEC) {
    failAt(
      manifestPlace,
      `field "spec": ${JSON.stringify(manifest.spec)} is not supported; this loader reads ${DATASET_SPEC}. Generate the split again with loupe synth.`,
      { spec: manifest.spec },
    );
  }
  const { counts, files: names } = manifest;
  const files = referencedFiles({ root });

  const scenes = await readLines({
    root,
    name: names.scenes,
    schema: sceneLineSchema,
    expected: counts.images,
    what: "Shapes World scenes file",
  });
  const images: CorpusImage[] = scenes.map(({ place, value }) => ({
    id: value.id,
    path: files.add({ path: value.file, place, field: "file" }),
    metadata: {
      width: value.width,
      height: value.height,
      key: value.key,
      keyWithoutSizes: value.keyWithoutSizes,
    },
  }));
  const imageIds = new Set(images.map((image) => image.id));
  const checkImageId = (id: string, place: Place, field: string) => {
    if (!imageIds.has(id)) {
      failAt(place, `field "${field}": ${JSON.stringify(id)} is not an image of ${names.scenes}.`, { id });
    }
  };

  const cases: SuiteCase[] = [];
  const queries = await readLines({
    root,
    name: names.queries,
    schema: queryLineSchema,
    expected: counts.partialQueries + counts.descriptionQueries,
    what: "Shapes World queries file",
  });
  for (const { place, value } of queries) {
    value.relevant.forEach((id, position) => {
      checkImageId(id, place, `relevant[${position}]`);
    });
    const retrieval: RetrievalCase = {
      kind: "retrieval",
      id: value.id,
      task: "text-to-image",
      tags:
        value.type === "partial"
          ? ["partial", value.kind]
          : ["description", value.includeSizes ? "with-sizes" : "without-sizes"],
      query: { text: value.text },
      relevant: value.relevant,
      segments: [],
    };
    cases.push(retrieval);
  }

  const vqa = await readLines({
    root,
    name: names.vqa,
    schema: vqaLineSchema,
    expected: counts.vqa,
    what: "Shapes World VQA file",
  });
  for (const { place, value } of vqa) {
    checkImageId(value.image, place, "image");
    const item: VqaCase = {
      kind: "vqa",
      id: value.id,
      tags: [value.type, value.variant],
      image: { kind: "corpus", id: value.image },
      question: value.question,
      answers: [value.answer],
      questionType: value.type,
    };
    cases.push(item);
  }

  const tripleLines = await readLines({
    root,
    name: names.triples,
    schema: tripleLineSchema,
    expected: counts.triples,
    what: "Shapes World triples file",
  });
  const triples: CorpusTriple[] = [];
  for (const { place, value } of tripleLines) {
    checkImageId(value.image, place, "image");
    triples.push({
      id: value.id,
      image: { kind: "corpus", id: value.image },
      question: value.question,
      answer: value.answer,
      metadata: { type: value.type },
    });
    const twin = {
      kind: "file" as const,
      path: files.add({ path: value.probe.file, place, field: "probe.file" }),
    };
    const probe: TripleProbeCase = {
      kind: "triple-probe",
      id: `${value.id}-probe`,
      tags: [value.type],
      image: twin,
      question: value.probe.question,
      tripleId: value.id,
      answer: value.answer,
    };
    const nearDuplicate: RetrievalCase = {
      kind: "retrieval",
      id: `${value.id}-twin`,
      task: "image-to-image",
      tags: ["twin"],
      query: { image: twin },
      relevant: [value.image],
      segments: [],
    };
    cases.push(probe, nearDuplicate);
  }

  const videoLines = await readLines({
    root,
    name: names.videos,
    schema: videoLineSchema,
    expected: counts.videos,
    what: "Shapes World videos file",
  });
  const videos: CorpusVideo[] = [];
  // One case per distinct meaning: the first text that expresses it, and every clip that has it.
  const byMeaning = new Map<
    string,
    { text: string; includeSize: boolean; action: string; segments: SegmentRef[] }
  >();
  for (const { place, value } of videoLines) {
    videos.push({
      id: value.id,
      path: files.add({ path: value.file, place, field: "file" }),
      metadata: {
        width: value.width,
        height: value.height,
        fps: value.fps,
        duration: value.duration,
      },
      segments: value.segments.map((segment) => ({
        start: segment.start,
        end: segment.end,
        label: segment.action,
      })),
    });
    value.segments.forEach((segment, position) => {
      if (!(segment.end > segment.start)) {
        failAt(
          place,
          `field "segments[${position}].end": ${segment.end} is not after start ${segment.start}.`,
        );
      }
      for (const description of segment.descriptions) {
        const meaning = `${description.includeSize}:${description.key}`;
        const entry = byMeaning.get(meaning) ?? {
          text: description.text,
          includeSize: description.includeSize,
          action: segment.action,
          segments: [],
        };
        entry.segments.push({ videoId: value.id, start: segment.start, end: segment.end });
        byMeaning.set(meaning, entry);
      }
    });
  }
  let videoCase = 0;
  for (const entry of byMeaning.values()) {
    videoCase += 1;
    cases.push({
      kind: "retrieval",
      id: `vq-${String(videoCase).padStart(6, "0")}`,
      task: "text-to-video-segment",
      tags: [entry.action, entry.includeSize ? "with-size" : "without-size"],
      query: { text: entry.text },
      relevant: [],
      segments: entry.segments,
    });
  }

  const objects = objectCases(
    scenes.flatMap(({ value }) =>
      value.scene === undefined ? [] : [{ id: value.id, objects: value.scene.objects }],
    ),
  );
  cases.push(...objects.detection, ...objects.region);

  if (checkFiles) await files.checkExist();
  return {
    name: name ?? `shapes-world-${manifest.seed}-${manifest.options.format}-${manifest.options.size}`,
    format: "shapes-world",
    source: root,
    corpus: { images, videos, triples },
    cases,
  };
}
