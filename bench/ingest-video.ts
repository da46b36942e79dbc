/**
 * `npm run bench:video [-- options]`: end-to-end video ingest speed beside embedding-only speed, in the
 * same run. A Shapes World video (2-second clips, each with its own background, objects and action) is
 * generated and encoded as H.264 MP4, then:
 * - `ingest`: the video ingester of Loupe's services (`assembleServices`) as `POST /v1/videos` runs it —
 *   temp file, ffprobe, ffmpeg sampling, frame embeddings, segmentation, segment embeddings, keyframes,
 *   blobs, upsert into fresh collections of an embedded Milvus Lite — timed by wall clock;
 * - `embed only`: the vision tower and the video head on the same sampled frames, already decoded.
 * Both are reported as seconds and as × real time (video seconds per second of processing).
 *
 * Options: --seconds <s> video length (default 120), --size <px> frame side (default 256), --fps <n>
 * sampling rate (default $LOUPE_VIDEO_SAMPLE_FPS or 2), --threads <n> onnxruntime intra-op threads
 * (default 0: onnxruntime's choice), --rounds <n> ingests (each into a fresh collection; best kept,
 * default 2), --pack <dir> (a pack without a video head works too: segments are then the mean of their
 * frame embeddings, and `embed only` times the vision tower and that mean).
 */
import { readFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { l2Normalize, resampleIndices } from "../src/inference/index.ts";
import { segmentVideo } from "../src/ingest/segmenter.ts";
import { defaultVideoLimits } from "../src/media/ffmpeg.ts";
import { sampleVideoFrames, type VideoFrame } from "../src/media/video-frames.ts";
import { probeVideo } from "../src/media/video-probe.ts";
import { type Clip, createRng, encodeVideo, renderVideoFrames, sampleClip } from "../src/synth/index.ts";
import { openBenchLoupe, ROOT } from "./bench-loupe.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "120" },
    size: { type: "string", default: "256" },
    fps: { type: "string" },
    threads: { type: "string", default: "0" },
    rounds: { type: "string", default: "2" },
    pack: { type: "string" },
  },
});
const seconds = Number.parseInt(args.seconds ?? "120", 10);
const size = Number.parseInt(args.size ?? "256", 10);
const fps = Number.parseFloat(args.fps ?? process.env.LOUPE_VIDEO_SAMPLE_FPS ?? "2");
const threads = Number.parseInt(args.threads ?? "0", 10);
const rounds = Number.parseInt(args.rounds ?? "2", 10);
if (!(seconds >= 2) || !(size >= 64) || !(fps > 0) || !(threads >= 0) || !(rounds >= 1)) {
  throw new Error("--seconds ≥ 2, --size ≥ 64 (even), --fps > 0, --threads ≥ 0, --rounds ≥ 1.");
}
const packDir = resolve(
  args.pack ?? process.env.LOUPE_MODEL_PACK ?? join(ROOT, "models", "shapes-world-tiny"),
);

const bench = await openBenchLoupe({
  name: "video",
  packDir,
  threads,
  env: { LOUPE_VIDEO_SAMPLE_FPS: String(fps) },
});
const pack = bench.models;
try {
  // The video: 2-second clips back to back.
  const rng = createRng(2024);
  const clips: Clip[] = Array.from({ length: Math.ceil(seconds / 2) }, (_, index) =>
    sampleClip(rng.fork("clip", index)),
  );
  const file = join(bench.work, "bench.mp4");
  let started = performance.now();
  await encodeVideo({
    frames: renderVideoFrames({ clips }, { size, seed: 7 }),
    size,
    outPath: file,
    timeoutMs: 600_000,
  });
  const bytes = await readFile(file);
  const duration = clips.length * 2;
  console.log(
    `video: ${duration} s, ${size}x${size}, ${clips.length} clips, ${(bytes.length / 1e6).toFixed(1)} MB (generated in ${((performance.now() - started) / 1000).toFixed(1)} s)`,
  );
  console.log(
    `pack ${pack.modelId}: ${pack.videoEmbedder.hasHead ? `video head over ${pack.videoEmbedder.numFrames ?? "?"} frames` : "no video head (segments are the mean of their frame embeddings)"}; ` +
      `sampling ${fps} fps, model input ${pack.imageSize} px, ${availableParallelism()} CPUs, onnxruntime threads ${threads || "default"}`,
  );

  let best = { totalMs: Number.POSITIVE_INFINITY, embedMs: 0, cpuMs: 0, segments: 0, frames: 0 };
  for (let round = 0; round < rounds; round += 1) {
    // Fresh collections and blobs each round, so no round skips what an earlier one stored.
    const { videos: ingester } = await bench.servicesFor({ prefix: `bench_video_${round}` });
    started = performance.now();
    const cpuBefore = process.cpuUsage();
    const result = await ingester.ingest({ tenant: "bench", bytes, source: "bench" });
    const totalMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    if (totalMs < best.totalMs) {
      best = {
        totalMs,
        embedMs: result.timings.embedMs,
        cpuMs: (cpu.user + cpu.system) / 1000,
        segments: result.segments.length,
        frames: result.frames,
      };
    }
  }

  // Embedding only: the same frames, decoded beforehand; vision tower, segmentation, video head.
  const probe = await probeVideo({ path: file, limits: defaultVideoLimits });
  const frames: VideoFrame[] = [];
  await sampleVideoFrames({
    path: file,
    probe,
    fps,
    shortestEdge: pack.imageSize,
    cropSize: pack.imageSize,
    limits: defaultVideoLimits,
    onFrame: (frame) => {
      frames.push(frame);
    },
  });
  let embedOnlyMs = Number.POSITIVE_INFINITY;
  for (let round = 0; round < rounds; round += 1) {
    started = performance.now();
    const { embeddings, features } = await pack.videoEmbedder.encodeFrames({ images: frames });
    const spans = segmentVideo({
      frameEmbeddings: embeddings.map(l2Normalize),
      fps,
      durationSeconds: duration,
    });
    const numFrames = pack.videoEmbedder.numFrames;
    const videos = spans.map((span) => {
      const own = features.slice(span.startFrame, span.endFrame);
      return numFrames === undefined
        ? own
        : resampleIndices({ count: own.length, frames: numFrames }).map(
            (index) => own[index] as Float32Array,
          );
    });
    await pack.videoEmbedder.embedFrameFeatures({ videos });
    embedOnlyMs = Math.min(embedOnlyMs, performance.now() - started);
  }

  const row = (label: string, ms: number) =>
    `${label.padEnd(12)} ${(ms / 1000).toFixed(2).padStart(7)} s ${(duration / (ms / 1000)).toFixed(1).padStart(7)}× real time`;
  console.log(`frames sampled: ${best.frames}, segments: ${best.segments} (best of ${rounds} rounds)`);
  console.log(row("ingest", best.totalMs));
  console.log(row("  of which model", best.embedMs));
  console.log(row("embed only", embedOnlyMs));
  // On a shared machine wall time depends on the load; CPU time does not (ffmpeg and Milvus Lite excluded).
  console.log(
    `ingest CPU time of this process: ${(best.cpuMs / 1000).toFixed(2)} s (${(duration / (best.cpuMs / 1000)).toFixed(1)}× real time per core); load average ${loadavg()[0]?.toFixed(1)}`,
  );
} finally {
  await bench.close();
}
