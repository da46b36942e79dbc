/**
 * The dataset writer: renders a seeded Shapes World dataset to a folder of images, videos and JSON Lines
 * files (scenes, queries, VQA, triples, videos) plus a manifest. Every item derives its own random
 * stream from the seed and its index, so output does not depend on concurrency, and lines are streamed
 * to disk so that memory stays bounded: only 12 bytes per image (a {@link SceneIndex}) are kept, for
 * the query relevance sets written at the end.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { describeClip, sampleVideo, videoSegments } from "./clip.ts";
import { type Description, describeScene, sceneKey } from "./describe.ts";
import { ANSWER_VOCABULARY, CLIP_FRAMES, type Scene, VIDEO_CLIP_COUNT_RANGE, VIDEO_FPS } from "./domain.ts";
import { type JsonlWriter, openJsonlWriter } from "./jsonl-writer.ts";
import { generatePartialQueries } from "./partial-query.ts";
import { generateQuestions, paraphraseQuestion, type Question } from "./questions.ts";
import { IMAGE_EXTENSIONS, IMAGE_FORMATS, renderScene } from "./render.ts";
import { createRng, deriveSeed, type Rng } from "./rng.ts";
import { sampleScene } from "./scene.ts";
import { packedKey, SceneIndex } from "./scene-index.ts";
import { checkVideoSize, encodeVideo, renderVideoFrames } from "./video.ts";

/** Version tag written to the manifest: the spec the data follows. */
export const DATASET_SPEC = "shapes-world/1";

const count = (max: number) => z.number().int().min(0).max(max);

/** Schema of {@link generateDataset}'s options (progress callback aside), with defaults. */
export const datasetOptionsSchema = z.object({
  /** Output folder; created when missing, and must be empty unless `overwrite` is set. */
  outDir: z.string().min(1),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  /** Images to render. */
  images: count(1_000_000).default(100),
  /** Image side in pixels. */
  size: z.number().int().min(64).max(1024).default(256),
  format: z.enum(IMAGE_FORMATS).default("jpeg"),
  /** JPEG/WebP quality. */
  quality: z.number().int().min(1).max(100).default(90),
  /** Full descriptions per image; they alternate with and without sizes. */
  descriptionsPerImage: z.number().int().min(1).max(10).default(2),
  /** VQA questions per type and image (0 writes no VQA). */
  questionsPerType: count(5).default(1),
  /** Partial queries (distinct; at most about a hundred exist). Default: as many as images, up to 100. */
  partialQueries: count(1000).optional(),
  /** Full-description queries. Default: as many as images, up to 100. */
  descriptionQueries: count(100_000).optional(),
  /** Image-question-answer triples, each with a re-rendered twin image and a paraphrase. Default: a quarter of the images. */
  triples: count(1_000_000).optional(),
  /** Long videos to render. */
  videos: count(100_000).default(0),
  /** Clips per long video, 3–6; random per video when unset. */
  clipsPerVideo: z.number().int().min(VIDEO_CLIP_COUNT_RANGE.min).max(VIDEO_CLIP_COUNT_RANGE.max).optional(),
  /** Video side in pixels (even); defaults to `size`. */
  videoSize: z.number().int().min(64).max(1024).optional(),
  /** Also write a WebM (VP9) beside each MP4. */
  webm: z.boolean().default(false),
  /** Replace a previous dataset in `outDir` (a folder holding a manifest.json). */
  overwrite: z.boolean().default(false),
  /** Images rendered at once. */
  concurrency: z.number().int().min(1).max(16).default(4),
});

/** Options of {@link generateDataset}. */
export type DatasetOptions = z.input<typeof datasetOptionsSchema> & {
  /** Called after each image and each video. */
  onProgress?: (progress: DatasetProgress) => void;
};

/** Progress of a dataset run. */
export interface DatasetProgress {
  phase: "images" | "videos";
  done: number;
  total: number;
}

/** Options after defaults, as written to the manifest. */
export type ResolvedDatasetOptions = Omit<
  z.output<typeof datasetOptionsSchema>,
  "partialQueries" | "descriptionQueries" | "triples" | "videoSize"
> & { partialQueries: number; descriptionQueries: number; triples: number; videoSize: number };

/** What `manifest.json` holds. */
export interface DatasetManifest {
  spec: string;
  seed: number;
  options: Omit<ResolvedDatasetOptions, "outDir" | "overwrite" | "concurrency">;
  counts: {
    images: number;
    twins: number;
    partialQueries: number;
    descriptionQueries: number;
    vqa: number;
    triples: number;
    videos: number;
    clips: number;
  };
  files: Record<string, string>;
}

/** What {@link generateDataset} reports. */
export interface DatasetSummary {
  manifest: DatasetManifest;
  /** Wall-clock milliseconds of the image phase (scenes, texts, questions, renders, twins). */
  imageMs: number;
  /** Wall-clock milliseconds of the video phase. */
  videoMs: number;
  totalMs: number;
}

const FILES = {
  scenes: "scenes.jsonl",
  queries: "queries.jsonl",
  vqa: "vqa.jsonl",
  triples: "triples.jsonl",
  videos: "videos.jsonl",
  manifest: "manifest.json",
} as const;

/** Parses and completes dataset options; throws a ValidationError naming every bad field. */
export function resolveDatasetOptions(options: DatasetOptions): ResolvedDatasetOptions {
  const { onProgress: _onProgress, ...rest } = options;
  const parsed = datasetOptionsSchema.safeParse(rest);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join(".") || "options"}: ${issue.message}`,
    );
    throw new ValidationError(`Dataset options are not valid: ${problems.join("; ")}.`, {
      context: { issues: parsed.error.issues },
    });
  }
  const value = parsed.data;
  const videoSize = value.videoSize ?? value.size;
  if (value.videos > 0) checkVideoSize(videoSize);
  return {
    ...value,
    partialQueries: value.partialQueries ?? Math.min(value.images, 100),
    descriptionQueries: value.descriptionQueries ?? Math.min(value.images, 100),
    triples: Math.min(value.triples ?? Math.ceil(value.images / 4), value.images),
    videoSize,
  };
}

async function prepareOutDir(outDir: string, overwrite: boolean): Promise<void> {
  const entries = existsSync(outDir) ? await readdir(outDir) : [];
  if (entries.length > 0) {
    if (!overwrite) {
      throw new ValidationError(
        `Output folder ${outDir} is not empty (${entries.length} entries); pick an empty folder, or set overwrite (loupe synth --overwrite) to replace a previous dataset.`,
        { context: { outDir } },
      );
    }
    if (!entries.includes(FILES.manifest)) {
      throw new ValidationError(
        `Output folder ${outDir} is not empty and holds no ${FILES.manifest}, so it is not a dataset to overwrite; pick an empty folder.`,
        { context: { outDir } },
      );
    }
    for (const name of ["images", "twins", "videos", ...Object.values(FILES)]) {
      await rm(join(outDir, name), { recursive: true, force: true });
    }
  }
  for (const folder of ["images", "twins", "videos"]) await mkdir(join(outDir, folder), { recursive: true });
}

function itemId(prefix: string, index: number): string {
  return `${prefix}-${String(index + 1).padStart(6, "0")}`;
}

interface ImageResult {
  scene: Scene;
  lines: { scene: unknown; vqa: unknown[]; triple?: unknown };
}

function vqaLine(id: string, image: string, question: Question): Record<string, unknown> {
  return {
    id,
    image,
    question: question.question,
    answer: question.answer,
    answerIndex: ANSWER_VOCABULARY.indexOf(question.answer),
    type: question.type,
    variant: question.variant,
    params: question.params,
  };
}

async function makeImage(index: number, options: ResolvedDatasetOptions, root: Rng): Promise<ImageResult> {
  const id = imageId(index);
  const ext = IMAGE_EXTENSIONS[options.format];
  const file = `images/${id}.${ext}`;
  const itemRng = root.fork("image", index);
  const scene = sampleScene(itemRng.fork("scene"));
  const encode = { size: options.size, format: options.format, quality: options.quality };
  const image = await renderScene(scene, { ...encode, seed: deriveSeed(options.seed, "render", index) });
  await writeFile(join(options.outDir, file), image.data);

  const textRng = itemRng.fork("descriptions");
  const descriptions = Array.from({ length: options.descriptionsPerImage }, (_v, k) =>
    describeScene(scene, textRng, { includeSizes: k % 2 === 0 }),
  );
  const questions =
    options.questionsPerType > 0
      ? generateQuestions(scene, itemRng.fork("questions"), { perType: options.questionsPerType })
      : [];
  const vqa = questions.map((question, k) => vqaLine(`${id}-q${k + 1}`, id, question));

  let triple: unknown;
  if (index < options.triples) {
    const tripleRng = itemRng.fork("triple");
    // Count and exist questions are always askable, so there is always one to pick.
    const asked = tripleRng.pick(generateQuestions(scene, tripleRng));
    const twinFile = `twins/${id}.${ext}`;
    const twin = await renderScene(scene, { ...encode, seed: deriveSeed(options.seed, "twin", index) });
    await writeFile(join(options.outDir, twinFile), twin.data);
    triple = {
      ...vqaLine(itemId("tri", index), id, asked),
      file,
      probe: { file: twinFile, question: paraphraseQuestion(asked, tripleRng) },
    };
  }
  return {
    scene,
    lines: {
      scene: {
        id,
        file,
        width: image.width,
        height: image.height,
        scene,
        descriptions,
        key: sceneKey(scene),
        keyWithoutSizes: sceneKey(scene, { includeSizes: false }),
      },
      vqa,
      ...(triple === undefined ? {} : { triple }),
    },
  };
}

interface Writers {
  scenes: JsonlWriter;
  vqa: JsonlWriter;
  triples: JsonlWriter;
}

function imageId(index: number): string {
  return itemId("img", index);
}

async function writeImages(
  options: ResolvedDatasetOptions,
  writers: Writers,
  onProgress: DatasetOptions["onProgress"],
): Promise<SceneIndex> {
  const root = createRng(options.seed);
  const index = new SceneIndex({ idOf: imageId });
  const inFlight: Array<Promise<ImageResult>> = [];
  const flush = async (): Promise<void> => {
    const next = inFlight.shift();
    if (next === undefined) return;
    const { scene, lines } = await next;
    await writers.scenes.write(lines.scene);
    for (const line of lines.vqa) await writers.vqa.write(line);
    if (lines.triple !== undefined) await writers.triples.write(lines.triple);
    index.add(scene.objects);
    onProgress?.({ phase: "images", done: index.length, total: options.images });
  };
  for (let position = 0; position < options.images; position++) {
    const pending = makeImage(position, options, root);
    // Failures surface when the promise is awaited in order; this only keeps later ones from being unhandled.
    pending.catch(() => undefined);
    inFlight.push(pending);
    if (inFlight.length >= options.concurrency) await flush();
  }
  while (inFlight.length > 0) await flush();
  return index;
}

interface DescriptionQuery {
  description: Description;
  packed: number;
  relevant: string[];
}

/** Distinct full-description queries drawn from random images, with every image of the same meaning. */
function descriptionQueries(rng: Rng, index: SceneIndex, count: number): DescriptionQuery[] {
  const queries = new Map<string, DescriptionQuery>();
  for (let draw = 0; draw < count * 10 && queries.size < count && index.length > 0; draw++) {
    const item = index.at(rng.int(0, index.length - 1));
    if (item === undefined) continue;
    const description = describeScene(item, rng);
    const id = `${description.includeSizes}:${description.key}`;
    if (queries.has(id)) continue;
    const packed = packedKey(item.objects, { includeSizes: description.includeSizes });
    queries.set(id, { description, packed, relevant: [] });
  }
  const all = [...queries.values()];
  for (let position = 0; position < index.length; position++) {
    for (const query of all) {
      if (index.keyAt(position, { includeSizes: query.description.includeSizes }) === query.packed) {
        query.relevant.push(imageId(position));
      }
    }
  }
  return all;
}

async function writeQueries(options: ResolvedDatasetOptions, index: SceneIndex, writer: JsonlWriter) {
  const rng = createRng(options.seed).fork("queries");
  let count = 0;
  const partial = generatePartialQueries(rng.fork("partial"), {
    gallery: index,
    count: options.partialQueries,
  });
  for (const query of partial) {
    await writer.write({
      id: itemId("q", count++),
      type: "partial",
      text: query.text,
      kind: query.kind,
      query: query.query,
      relevant: query.relevantIds,
    });
  }
  const described = descriptionQueries(rng.fork("descriptions"), index, options.descriptionQueries);
  for (const { description, relevant } of described) {
    await writer.write({
      id: itemId("q", count++),
      type: "description",
      text: description.text,
      includeSizes: description.includeSizes,
      key: description.key,
      relevant,
    });
  }
  return { partial: partial.length, description: described.length };
}

async function writeVideos(
  options: ResolvedDatasetOptions,
  writer: JsonlWriter,
  onProgress: DatasetOptions["onProgress"],
): Promise<number> {
  const root = createRng(options.seed);
  let clips = 0;
  for (let index = 0; index < options.videos; index++) {
    const id = itemId("vid", index);
    const videoRng = root.fork("video", index);
    const video = sampleVideo(videoRng.fork("clips"), {
      ...(options.clipsPerVideo === undefined ? {} : { clipCount: options.clipsPerVideo }),
    });
    const renderSeed = deriveSeed(options.seed, "video-render", index);
    const formats = options.webm ? (["mp4", "webm"] as const) : (["mp4"] as const);
    const files: Record<string, string> = {};
    for (const format of formats) {
      files[format] = `videos/${id}.${format}`;
      await encodeVideo({
        frames: renderVideoFrames(video, { size: options.videoSize, seed: renderSeed }),
        size: options.videoSize,
        outPath: join(options.outDir, files[format]),
        format,
      });
    }
    const textRng = videoRng.fork("descriptions");
    const segments = videoSegments(video).map((segment) => {
      const clip = video.clips[segment.index];
      if (clip === undefined) throw new RangeError(`Video ${id} has no clip ${segment.index}.`);
      return {
        ...segment,
        action: clip.action,
        descriptions: [true, false].map((includeSize) => describeClip(clip, textRng, { includeSize })),
        clip,
      };
    });
    clips += segments.length;
    await writer.write({
      id,
      file: files.mp4,
      ...(files.webm === undefined ? {} : { webm: files.webm }),
      width: options.videoSize,
      height: options.videoSize,
      fps: VIDEO_FPS,
      frames: segments.length * CLIP_FRAMES,
      duration: segments.at(-1)?.end ?? 0,
      segments,
    });
    onProgress?.({ phase: "videos", done: index + 1, total: options.videos });
  }
  return clips;
}

/**
 * Generates a Shapes World dataset into `outDir`:
 * `images/<id>.<ext>`, `twins/<id>.<ext>` (re-rendered images of the triples), `scenes.jsonl`,
 * `queries.jsonl`, `vqa.jsonl`, `triples.jsonl`, `videos/<id>.mp4` (+ `.webm`), `videos.jsonl` and
 * `manifest.json`. Equal options give identical files.
 *
 * @example await generateDataset({ outDir: "data/synth", seed: 7, images: 500, size: 256, format: "jpeg", videos: 4 })
 * @throws ValidationError for invalid options or a non-empty output folder.
 */
export async function generateDataset(options: DatasetOptions): Promise<DatasetSummary> {
  const resolved = resolveDatasetOptions(options);
  const started = performance.now();
  await prepareOutDir(resolved.outDir, resolved.overwrite);
  const path = (name: string) => join(resolved.outDir, name);
  const writers: Writers = {
    scenes: openJsonlWriter(path(FILES.scenes)),
    vqa: openJsonlWriter(path(FILES.vqa)),
    triples: openJsonlWriter(path(FILES.triples)),
  };
  const queries = openJsonlWriter(path(FILES.queries));
  const videos = openJsonlWriter(path(FILES.videos));
  const all = [...Object.values(writers), queries, videos];
  try {
    const index = await writeImages(resolved, writers, options.onProgress);
    const queryCounts = await writeQueries(resolved, index, queries);
    const imageMs = performance.now() - started;
    const clips = await writeVideos(resolved, videos, options.onProgress);
    const videoMs = performance.now() - started - imageMs;
    for (const writer of all) await writer.close();

    const { outDir: _outDir, overwrite: _overwrite, concurrency: _concurrency, ...recorded } = resolved;
    const manifest: DatasetManifest = {
      spec: DATASET_SPEC,
      seed: resolved.seed,
      options: recorded,
      counts: {
        images: index.length,
        twins: writers.triples.count,
        partialQueries: queryCounts.partial,
        descriptionQueries: queryCounts.description,
        vqa: writers.vqa.count,
        triples: writers.triples.count,
        videos: videos.count,
        clips,
      },
      files: { ...FILES, images: "images/", twins: "twins/", videoFiles: "videos/" },
    };
    await writeFile(path(FILES.manifest), `${JSON.stringify(manifest, null, 2)}\n`);
    return { manifest, imageMs, videoMs, totalMs: performance.now() - started };
  } catch (error) {
    await Promise.allSettled(all.map((writer) => writer.close()));
    throw error;
  }
}
