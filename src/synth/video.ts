/**
 * Rendering of clips and long videos to raw frames, and their encoding by piping raw RGB into the
 * ffmpeg binary of `@ffmpeg-installer/ffmpeg`.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { MediaError, ValidationError } from "../errors.ts";
import type { Clip, Video } from "./clip.ts";
import { VIDEO_FPS } from "./domain.ts";
import { checkImageSize, type RawImage, type RenderRawOptions, renderSceneRaw } from "./render.ts";
import { deriveSeed } from "./rng.ts";

/** Video containers the encoder writes: MP4 with H.264, WebM with VP9. */
export const VIDEO_FORMATS = ["mp4", "webm"] as const;
/** A video container. */
export type VideoFormat = (typeof VIDEO_FORMATS)[number];

/** Options of {@link renderClipFrames} and {@link renderVideoFrames}. */
export type RenderFramesOptions = Pick<RenderRawOptions, "size" | "seed" | "colorJitter" | "noise">;

/**
 * Renders a clip's frames one at a time. Object colors are jittered once per clip; pixel noise differs
 * per frame.
 */
export async function* renderClipFrames(
  clip: Clip,
  options: RenderFramesOptions = {},
): AsyncGenerator<RawImage> {
  const { seed = 0 } = options;
  for (const [index, frame] of clip.frames.entries()) {
    yield await renderSceneRaw(
      { background: clip.background, objects: frame.objects },
      { ...options, seed, noiseSeed: deriveSeed(seed, "frame", index) },
    );
  }
}

/** Renders a long video's frames, clip after clip, one frame at a time. */
export async function* renderVideoFrames(
  video: Video,
  options: RenderFramesOptions = {},
): AsyncGenerator<RawImage> {
  const { seed = 0 } = options;
  for (const [index, clip] of video.clips.entries()) {
    yield* renderClipFrames(clip, { ...options, seed: deriveSeed(seed, "clip", index) });
  }
}

/** Options of {@link encodeVideo}. */
export interface EncodeVideoOptions {
  /** Raw RGB frames, all `size` × `size`. */
  frames: AsyncIterable<RawImage> | Iterable<RawImage>;
  /** Frame side in pixels: even, 64–1024. */
  size: number;
  /** File to write; its parent folder must exist. */
  outPath: string;
  /** Default `mp4` (H.264, yuv420p); `webm` is VP9. */
  format?: VideoFormat;
  /** Frames per second. Default 8. */
  fps?: number;
  /** H.264/VP9 constant-quality factor; lower is better. Default 18 for MP4, 32 for WebM. */
  crf?: number;
  /** Wall-clock limit after which ffmpeg is killed. Default 120 000 ms. */
  timeoutMs?: number;
}

let ffmpegPath: string | undefined;

/** Path of the bundled ffmpeg binary. */
export function ffmpegBinary(): string {
  ffmpegPath ??= (createRequire(import.meta.url)("@ffmpeg-installer/ffmpeg") as { path: string }).path;
  return ffmpegPath;
}

/** Checks a video frame size: a valid canvas size that is even, as yuv420p needs. */
export function checkVideoSize(size: number): void {
  checkImageSize(size);
  if (size % 2 !== 0) {
    throw new ValidationError(
      `Video size ${size} is odd; H.264 and VP9 in yuv420p need an even size, e.g. ${size + 1}.`,
      {
        context: { size },
      },
    );
  }
}

function codecArgs(format: VideoFormat, crf: number | undefined): string[] {
  if (format === "mp4") {
    return [
      "-c:v",
      "libx264",
      "-preset",
      "veryfast",
      "-crf",
      String(crf ?? 18),
      "-pix_fmt",
      "yuv420p",
    ].concat(["-movflags", "+faststart", "-f", "mp4"]);
  }
  return [
    "-c:v",
    "libvpx-vp9",
    "-b:v",
    "0",
    "-crf",
    String(crf ?? 32),
    "-deadline",
    "realtime",
    "-cpu-used",
    "8",
  ].concat(["-pix_fmt", "yuv420p", "-f", "webm"]);
}

async function* frameBytes(frames: EncodeVideoOptions["frames"], size: number): AsyncGenerator<Buffer> {
  let index = 0;
  for await (const frame of frames) {
    if (frame.width !== size || frame.height !== size || frame.data.length !== size * size * 3) {
      throw new ValidationError(
        `Frame ${index} is ${frame.width}x${frame.height} with ${frame.data.length} bytes; every frame must be ${size}x${size} RGB.`,
      );
    }
    index++;
    yield frame.data;
  }
}

/**
 * Encodes raw RGB frames into an MP4 (H.264) or WebM (VP9) file by streaming them to ffmpeg's stdin.
 * ffmpeg runs with an argument list (no shell), `-nostdin` and a timeout that kills it.
 *
 * @throws MediaError when ffmpeg fails or times out; ValidationError for a bad size or frame.
 */
export async function encodeVideo(options: EncodeVideoOptions): Promise<void> {
  const { frames, size, outPath, format = "mp4", fps = VIDEO_FPS, crf, timeoutMs = 120_000 } = options;
  checkVideoSize(size);
  if (!VIDEO_FORMATS.includes(format)) {
    throw new ValidationError(
      `Video format "${format}" is not supported; use ${VIDEO_FORMATS.join(" or ")}.`,
    );
  }
  const args = [
    "-nostdin",
    "-hide_banner",
    "-loglevel",
    "error",
    "-f",
    "rawvideo",
    "-pix_fmt",
    "rgb24",
    "-s",
    `${size}x${size}`,
    "-framerate",
    String(fps),
    "-i",
    "pipe:0",
    "-an",
    ...codecArgs(format, crf),
    "-y",
    outPath,
  ];
  const child = spawn(ffmpegBinary(), args, { stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });

  let writeError: unknown;
  try {
    await pipeline(Readable.from(frameBytes(frames, size)), child.stdin);
  } catch (error) {
    writeError = error;
    if (error instanceof ValidationError) child.kill("SIGKILL");
  }
  let code: number | null = null;
  let spawnError: unknown;
  try {
    code = await exited;
  } catch (error) {
    spawnError = error;
  } finally {
    clearTimeout(timer);
  }
  if (writeError instanceof ValidationError) throw writeError;
  const context = { outPath, format, size, args };
  if (timedOut) {
    throw new MediaError(`ffmpeg did not finish encoding ${outPath} within ${timeoutMs} ms and was killed.`, {
      code: "video_encode_failed",
      status: 500,
      context,
    });
  }
  if (spawnError !== undefined || code !== 0 || writeError !== undefined) {
    const reason = stderr.trim() || String(spawnError ?? writeError ?? `exit code ${code}`);
    throw new MediaError(`ffmpeg failed to encode ${outPath} (exit code ${code}): ${reason}`, {
      code: "video_encode_failed",
      status: 500,
      cause: spawnError ?? writeError,
      context,
    });
  }
}
