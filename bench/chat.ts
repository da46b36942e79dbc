/**
 * `npm run bench:chat [-- options]`: chat latency (p50 / p95) of the retrieval chain with the offline
 * composer at 1k and 10k indexed items, in one run, broken down by step (embed, retrieve, ground, compose,
 * verify, total), per question kind and overall. It runs on an embedded Milvus Lite and a blob store
 * started for the bench in a temporary directory.
 *
 * Each corpus is 80 % images, 10 % video segments and 10 % triples, made of real embeddings:
 * - images: `--real` Shapes World scenes (256 px JPEG) are rendered, stored as blobs and embedded once;
 *   the rest are those vectors with Gaussian jitter (σ = `--jitter` per dimension, re-normalized), each
 *   copy's `mediaRef` naming the blob of the scene it was copied from, so grounding reads and decodes a
 *   real image whichever record it retrieves;
 * - video segments: `--clips` Shapes World clips (128 px, one action each) are rendered and embedded with
 *   the pack's video head, four clips to a video, each with a WebP keyframe blob; the rest are jittered
 *   copies spread over further videos, pointing at their source clip's keyframe;
 * - triples: one generated question per scene with its answer, the scene's image vector and the
 *   question's text vector; the rest are copies with jittered image vectors.
 * Copies that share a blob collapse into one piece of evidence before the VQA head looks at them, and the
 * larger corpus has more copies of each scene (16 at 10k with 500 scenes), so its top hits span fewer
 * distinct images: the `VQA images` column shows how many images the head looked at per turn.
 * Each size lives in its own collections (its own prefix). Both are flushed before anything is measured
 * (Milvus Lite searches unflushed rows by brute force), then every question is asked of the 1k chain
 * and right after of the 10k chain, so the two sizes see the same questions under the same load.
 *
 * Question kinds, `--questions` measured turns of each, after `--warmup` turns of each that are not counted:
 * - `vqa`: a question of one of the six types (color, shape, count, exist, size, position, in turn) about
 *   a scene whose image is attached as bytes;
 * - `corpus`: "Is there an image with a red star and a blue circle?" naming two objects of one scene;
 * - `video`: "When does the red circle move left in video vid_…?" about one of the real clips (every
 *   other question leaves the video out, so all segments are searched);
 * - `off-domain`: questions outside Shapes World, which the chain declines.
 *
 * Options: --pack <dir>, --real <n> scenes (default 500), --clips <n> (default 24), --jitter <σ>
 * (default 0.02), --questions <n> per kind (default 36), --warmup <n> per kind (default 2), --threads <n>
 * onnxruntime intra-op threads (default $LOUPE_INFERENCE_THREADS or 0: onnxruntime's choice),
 * --index AUTOINDEX|HNSW (default AUTOINDEX).
 */
import { createHash } from "node:crypto";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { summarizeLatency } from "../src/eval/metrics/latency.ts";
import { blobRef, createFsBlobStore } from "../src/media/blob-store.ts";
import type { LoupeChainRunnable } from "../src/rag/chain.ts";
import type { ChatRequest, ChatResult, ChatTimings } from "../src/rag/types.ts";
import {
  type ImageRecord,
  type IndexType,
  RECORD_KINDS,
  type TripleRecord,
  type VideoSegmentRecord,
} from "../src/store/index.ts";
import {
  ACTION_VERBS,
  type Clip,
  createRng,
  deriveSeed,
  encodeImage,
  generateQuestions,
  QUESTION_TYPES,
  type Question,
  type RawImage,
  renderClipFrames,
  renderScene,
  type Scene,
  sampleClip,
  sampleScene,
} from "../src/synth/index.ts";
import { jittered, openBenchLoupe, ROOT } from "./bench-loupe.ts";

const { values: args } = parseArgs({
  options: {
    pack: { type: "string" },
    real: { type: "string", default: "500" },
    clips: { type: "string", default: "24" },
    jitter: { type: "string", default: "0.02" },
    questions: { type: "string", default: "36" },
    warmup: { type: "string", default: "2" },
    threads: { type: "string" },
    index: { type: "string", default: "AUTOINDEX" },
  },
});

const packDir = resolve(
  args.pack ?? process.env.LOUPE_MODEL_PACK ?? join(ROOT, "models", "shapes-world-tiny"),
);
const realCount = Number.parseInt(args.real ?? "500", 10);
const clipCount = Number.parseInt(args.clips ?? "24", 10);
const jitter = Number.parseFloat(args.jitter ?? "0.02");
const questionCount = Number.parseInt(args.questions ?? "36", 10);
const warmupCount = Number.parseInt(args.warmup ?? "2", 10);
const threads = Number.parseInt(args.threads ?? process.env.LOUPE_INFERENCE_THREADS ?? "0", 10);
const indexType = (args.index ?? "AUTOINDEX") as IndexType;
if (
  !(realCount >= 2) ||
  !(clipCount >= 1) ||
  !(jitter >= 0) ||
  !(questionCount >= 1) ||
  !(warmupCount >= 0) ||
  !(threads >= 0) ||
  !["AUTOINDEX", "HNSW"].includes(indexType)
) {
  throw new Error(
    "--real ≥ 2, --clips ≥ 1, --jitter ≥ 0, --questions ≥ 1, --warmup ≥ 0, --threads ≥ 0, --index AUTOINDEX or HNSW.",
  );
}

const SIZES = [1000, 10_000];
const TENANT = "bench";
const CLIPS_PER_VIDEO = 4;
const CLIP_SECONDS = 2;
const KINDS = ["vqa", "corpus", "video", "off-domain"] as const;
type QuestionKind = (typeof KINDS)[number];
const STEPS = ["embed", "retrieve", "ground", "compose", "verify", "total"] as const;
const OFF_DOMAIN = [
  "Who painted the Mona Lisa?",
  "What is the capital of France?",
  "Summarise the latest quarterly report.",
  "How do I reset my router password?",
  "Which team won the 1998 football world cup?",
  "What is the boiling point of water at sea level?",
  "Translate good morning into Japanese.",
  "When was the printing press invented?",
];

/** `<prefix>_<32 hex>`: the shape of Loupe's ids, distinct per prefix and number. */
function benchId(prefix: string, index: number): string {
  return `${prefix}_${createHash("sha256").update(`bench-chat:${prefix}:${index}`).digest("hex").slice(0, 32)}`;
}

/** Distinct colored shapes of a scene, as "red star". */
function coloredShapes(scene: Scene): string[] {
  return [...new Set(scene.objects.map((object) => `${object.color} ${object.shape}`))];
}

/** One measured turn. */
interface Outcome {
  size: number;
  kind: QuestionKind;
  timings: ChatTimings;
  answered: boolean;
  looked: number;
}

interface Turn {
  kind: QuestionKind;
  request: Omit<ChatRequest, "tenant">;
}

const formatMs = (value: number) => (value >= 100 ? value.toFixed(0) : value.toFixed(1));

const bench = await openBenchLoupe({ name: "chat", packDir, threads });
const pack = bench.models;
// One blob store for both sizes: the records of either point at the same rendered scenes and keyframes.
const blobs = createFsBlobStore({ dir: join(bench.work, "blobs") });
try {
  const rng = createRng(2025);

  // Scenes: rendered, stored as blobs, embedded once.
  let started = performance.now();
  const scenes = Array.from({ length: realCount }, (_, index) => sampleScene(rng.fork("scene", index)));
  const sceneBytes = await Promise.all(
    scenes.map(
      async (scene, index) =>
        new Uint8Array(
          (await renderScene(scene, { size: 256, format: "jpeg", seed: deriveSeed(2025, "render", index) }))
            .data,
        ),
    ),
  );
  const sceneRefs = await Promise.all(
    sceneBytes.map(async (bytes) => blobRef((await blobs.put({ bytes, contentType: "image/jpeg" })).sha256)),
  );
  const sceneVectors = await pack.imageEmbedder.embed({ images: sceneBytes });
  const sceneSeconds = (performance.now() - started) / 1000;

  // Clips: rendered, embedded with the video head, a WebP keyframe each.
  started = performance.now();
  const clips: Clip[] = Array.from({ length: clipCount }, (_, index) => sampleClip(rng.fork("clip", index)));
  const clipVectors: Float32Array[] = [];
  const keyframeRefs: string[] = [];
  for (const [index, clip] of clips.entries()) {
    const frames: RawImage[] = [];
    for await (const frame of renderClipFrames(clip, { size: 128, seed: deriveSeed(2025, "clip", index) })) {
      frames.push(frame);
    }
    clipVectors.push(await pack.videoEmbedder.embed({ frames }));
    const keyframe = await encodeImage(frames[Math.floor(frames.length / 2)] as RawImage, { format: "webp" });
    keyframeRefs.push(blobRef((await blobs.put({ bytes: keyframe, contentType: "image/webp" })).sha256));
  }
  const clipSeconds = (performance.now() - started) / 1000;

  // Triples: one generated question per scene.
  const tripleQuestions: Question[] = scenes
    .map(
      (scene, index) =>
        generateQuestions(scene, rng.fork("triple", index), {
          types: [QUESTION_TYPES[index % QUESTION_TYPES.length] ?? "exist"],
        })[0] ?? generateQuestions(scene, rng.fork("triple-exist", index), { types: ["exist"] })[0],
    )
    .filter((question): question is Question => question !== undefined);
  const tripleQuestionVectors = await pack.textEmbedder.embed({
    texts: tripleQuestions.map((question) => question.question),
  });

  // The corpora, one collection prefix per size, flushed before anything is measured.
  const chains = new Map<number, LoupeChainRunnable>();
  const insertSeconds = new Map<number, number>();
  for (const size of SIZES) {
    const prefix = `benchchat_${size}`;
    const { store, chain } = await bench.servicesFor({ prefix, indexType, blobs });
    const jitterRng = createRng(size);
    const random = () => jitterRng.next();
    const imageCount = Math.round(size * 0.8);
    const segmentCount = Math.round(size * 0.1);
    const tripleCount = size - imageCount - segmentCount;

    const images: ImageRecord[] = Array.from({ length: imageCount }, (_, index) => {
      const source = index % realCount;
      const base = sceneVectors[source] as Float32Array;
      return {
        id: benchId("img", index),
        modelId: pack.modelId,
        mediaRef: sceneRefs[source] as string,
        source: "bench",
        metadata: { tags: ["synth"] },
        vector: index < realCount ? base : jittered({ base, sigma: jitter, random }),
      };
    });
    const segments: VideoSegmentRecord[] = Array.from({ length: segmentCount }, (_, index) => {
      const source = index % clipCount;
      const base = clipVectors[source] as Float32Array;
      const position = index % CLIPS_PER_VIDEO;
      return {
        id: benchId("seg", index),
        modelId: pack.modelId,
        mediaRef: keyframeRefs[source] as string,
        source: "bench",
        metadata: { tags: ["synth"] },
        vector: index < clipCount ? base : jittered({ base, sigma: jitter, random }),
        videoId: benchId("vid", Math.floor(index / CLIPS_PER_VIDEO)),
        startS: position * CLIP_SECONDS,
        endS: (position + 1) * CLIP_SECONDS,
        keyframeRef: keyframeRefs[source] as string,
      };
    });
    const triples: TripleRecord[] = Array.from({ length: tripleCount }, (_, index) => {
      const source = index % tripleQuestions.length;
      const question = tripleQuestions[source] as Question;
      const base = sceneVectors[source] as Float32Array;
      return {
        id: benchId("tri", index),
        modelId: pack.modelId,
        mediaRef: sceneRefs[source] as string,
        source: "bench",
        text: `${question.question}\n${question.answer}`,
        metadata: { tags: ["synth"] },
        question: question.question,
        answer: question.answer,
        imageVector: index < tripleQuestions.length ? base : jittered({ base, sigma: jitter, random }),
        questionVector: tripleQuestionVectors[source] as Float32Array,
      };
    });
    started = performance.now();
    await store.upsert({ kind: "image", tenant: TENANT, records: images });
    await store.upsert({ kind: "video_segment", tenant: TENANT, records: segments });
    await store.upsert({ kind: "triple", tenant: TENANT, records: triples });
    await bench.flush({ prefix, kinds: RECORD_KINDS });
    insertSeconds.set(size, (performance.now() - started) / 1000);
    for (const [kind, expected] of [
      ["image", imageCount],
      ["video_segment", segmentCount],
      ["triple", tripleCount],
    ] as const) {
      const counted = await store.count({ kind, tenant: TENANT });
      if (counted !== expected)
        throw new Error(`expected ${expected} ${kind} records at ${size}, counted ${counted}`);
    }
    chains.set(size, chain);
  }

  // The questions: warm-up turns first, then the measured ones, kinds interleaved.
  const questionRng = rng.fork("questions");
  const pairScenes = scenes.filter((scene) => coloredShapes(scene).length >= 2);
  const makeTurn = (kind: QuestionKind, index: number): Turn => {
    switch (kind) {
      case "vqa": {
        const type = QUESTION_TYPES[index % QUESTION_TYPES.length] ?? "color";
        for (let attempt = 0; attempt < realCount; attempt += 1) {
          const sceneIndex = (index * 7 + attempt) % realCount;
          const [question] = generateQuestions(scenes[sceneIndex] as Scene, questionRng, { types: [type] });
          if (question !== undefined) {
            return {
              kind,
              request: {
                question: question.question,
                images: [{ bytes: sceneBytes[sceneIndex] as Uint8Array }],
              },
            };
          }
        }
        throw new Error(`no scene of the ${realCount} allows a ${type} question; raise --real`);
      }
      case "corpus": {
        const scene = pairScenes[index % Math.max(1, pairScenes.length)] ?? (scenes[0] as Scene);
        const [first, second = first] = questionRng.shuffle(coloredShapes(scene));
        return { kind, request: { question: `Is there an image with a ${first} and a ${second}?` } };
      }
      case "video": {
        const clipIndex = index % clipCount;
        const clip = clips[clipIndex] as Clip;
        const actor = clip.frames[0]?.objects[clip.actor];
        const subject = `the ${actor?.color} ${actor?.shape} ${ACTION_VERBS[clip.action]}`;
        const video = benchId("vid", Math.floor(clipIndex / CLIPS_PER_VIDEO));
        return {
          kind,
          request: {
            question: index % 2 === 0 ? `When does ${subject} in video ${video}?` : `When does ${subject}?`,
          },
        };
      }
      case "off-domain":
        return { kind, request: { question: OFF_DOMAIN[index % OFF_DOMAIN.length] as string } };
    }
  };
  const warmup = Array.from({ length: warmupCount }, (_, round) =>
    KINDS.map((kind) => makeTurn(kind, questionCount + round)),
  ).flat();
  const measured = Array.from({ length: questionCount }, (_, round) =>
    KINDS.map((kind) => makeTurn(kind, round)),
  ).flat();

  const ask = (size: number, turn: Turn): Promise<ChatResult> =>
    (chains.get(size) as LoupeChainRunnable).invoke({
      tenant: TENANT,
      composer: "offline",
      ...turn.request,
    });
  for (const turn of warmup) for (const size of SIZES) await ask(size, turn);

  const outcomes: Outcome[] = [];
  started = performance.now();
  for (const turn of measured) {
    for (const size of SIZES) {
      const result = await ask(size, turn);
      outcomes.push({
        size,
        kind: turn.kind,
        timings: result.timings,
        answered: result.answered,
        // Images the VQA head looked at: attachments and checked corpus images (ground's main cost).
        looked: result.evidence.filter(
          (entry) =>
            entry.citation.kind === "image" && entry.findings.some((finding) => finding.source === "vqa"),
        ).length,
      });
    }
  }
  const askSeconds = (performance.now() - started) / 1000;

  const cpuModel = cpus()[0]?.model ?? "unknown CPU";
  console.log(
    `machine: ${cpuModel}, ${availableParallelism()} cores; load average ${loadavg()
      .map((load) => load.toFixed(1))
      .join(" ")}; node ${process.version}`,
  );
  console.log(
    `pack: ${pack.modelId} (dimension ${pack.dimension}); onnxruntime intra-op threads ${threads === 0 ? "0 (onnxruntime's choice)" : threads}; composer offline`,
  );
  console.log(
    `corpus: ${realCount} scenes rendered, stored and embedded (${sceneSeconds.toFixed(1)} s), ${clipCount} clips embedded ` +
      `with the video head (${clipSeconds.toFixed(1)} s); each size 80 % images, 10 % video segments, 10 % triples, ` +
      `the rest jittered copies (σ=${jitter}). Index ${indexType}, Milvus Lite, flushed before measuring ` +
      `(insert + flush: ${SIZES.map((size) => `${size}: ${insertSeconds.get(size)?.toFixed(1)} s`).join(", ")}).`,
  );
  console.log(
    `turns: ${questionCount} measured per kind and size after ${warmupCount} warm-up turns per kind ` +
      `(${measured.length * SIZES.length} measured in ${askSeconds.toFixed(0)} s); latencies in ms, p50 / p95; VQA images: mean images per turn the VQA head looked at.\n`,
  );

  const header = ["items", "kind", "n", "answered", "VQA images", ...STEPS];
  const rows: string[][] = [];
  for (const size of SIZES) {
    for (const kind of [...KINDS, "all"] as const) {
      const chosen = outcomes.filter(
        (outcome) => outcome.size === size && (kind === "all" || outcome.kind === kind),
      );
      const figures = summarizeLatency({ samples: chosen.map((outcome) => ({ ...outcome.timings })) });
      const looked = chosen.reduce((sum, outcome) => sum + outcome.looked, 0) / chosen.length;
      rows.push([
        size >= 1000 ? `${size / 1000}k` : String(size),
        kind,
        String(chosen.length),
        String(chosen.filter((outcome) => outcome.answered).length),
        looked.toFixed(1),
        ...STEPS.map((step) => {
          const figure = figures[step];
          return figure === undefined ? "-" : `${formatMs(figure.p50)} / ${formatMs(figure.p95)}`;
        }),
      ]);
    }
  }
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) =>
        column < 2 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
      )
      .join(" | ");
  console.log(line(header));
  console.log(widths.map((width) => "-".repeat(width)).join(" | "));
  for (const row of rows) console.log(line(row));
} finally {
  await bench.close();
}
