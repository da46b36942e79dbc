/**
 * Frame sampling: ffmpeg decodes a probed video at a fixed rate, resizes the short side and center-crops
 * to the model's input size (the same geometry as the pack's image processor), and streams raw RGB frames
 * from its stdout. Frames are handed to the caller one at a time and stdout is read only as fast as the
 * caller takes them, so memory stays bounded whatever the video's length.
 */
import { availableParallelism } from "node:os";
import { MediaError, ValidationError } from "../errors.ts";
import {
  runMediaTool,
  safeInputArgs,
  serverFileInput,
  type VideoLimits,
  videoLimitSettings,
} from "./ffmpeg.ts";
import { shortEdgeSize } from "./short-edge-size.ts";
import type { VideoProbe } from "./video-probe.ts";

/** One sampled frame: `size × size` RGB, row-major interleaved. */
export interface VideoFrame {
  /** 0-based position among the sampled frames. */
  index: number;
  /** Presentation time, seconds (`index / fps`). */
  timeSeconds: number;
  data: Uint8Array;
  width: number;
  height: number;
  channels: 3;
}

/** Options of {@link sampleVideoFrames}. */
export interface SampleVideoFramesOptions {
  /** A server-made path to a file {@link probeVideo} accepted. */
  path: string;
  probe: VideoProbe;
  /** Frames per second to sample. */
  fps: number;
  /** Short side after resizing (the pack's `shortest_edge`). */
  shortestEdge: number;
  /** Side of the square center crop (the pack's crop size). */
  cropSize: number;
  limits: VideoLimits;
  /** Receives each frame; the next one is read only after the returned promise settles. */
  onFrame: (frame: VideoFrame) => void | Promise<void>;
  signal?: AbortSignal;
  /** ffmpeg decoding threads. Default: up to 2. */
  threads?: number;
}

/**
 * Decodes frames at `fps`, resized and center-cropped to `cropSize`, and passes them to `onFrame` in
 * order. ffmpeg is forced to the probed demuxer, reads at most the probed duration (capped by the limit)
 * and stops after `limits.maxFrames` frames.
 *
 * @returns the number of frames sampled.
 * @throws MediaError when decoding fails, times out, yields no frame, or would exceed the frame cap.
 */
export async function sampleVideoFrames({
  path,
  probe,
  fps,
  shortestEdge,
  cropSize,
  limits,
  onFrame,
  signal,
  threads = Math.min(2, availableParallelism()),
}: SampleVideoFramesOptions): Promise<number> {
  const input = serverFileInput(path);
  if (!(fps > 0 && fps <= 60)) throw new ValidationError(`Sampling rate must be in (0, 60] fps; got ${fps}.`);
  const expected = Math.ceil(Math.min(probe.durationSeconds, limits.maxDurationSeconds) * fps) + 1;
  if (expected > limits.maxFrames + 1) {
    throw new MediaError(
      `Sampling ${probe.durationSeconds.toFixed(1)} s at ${fps} fps makes about ${expected} frames; the limit is ${limits.maxFrames}. ` +
        `Send a shorter video, lower LOUPE_VIDEO_SAMPLE_FPS or raise ${videoLimitSettings.maxFrames}.`,
      { code: "video_too_large", status: 413, context: { expected, limit: limits.maxFrames, fps } },
    );
  }
  const scaled = shortEdgeSize({ width: probe.width, height: probe.height, shortestEdge });
  const filters = [
    `fps=${fps}`,
    `scale=${scaled.width}:${scaled.height}:flags=bicubic`,
    `crop=${cropSize}:${cropSize}:${Math.floor((scaled.width - cropSize) / 2)}:${Math.floor((scaled.height - cropSize) / 2)}`,
  ];
  if (scaled.width < cropSize || scaled.height < cropSize) {
    // Hugging Face pads with zeros when the crop is larger than the image; pad keeps that geometry.
    filters[2] = `pad=${Math.max(cropSize, scaled.width)}:${Math.max(cropSize, scaled.height)}:(ow-iw)/2:(oh-ih)/2:black,crop=${cropSize}:${cropSize}`;
  }
  const frameBytes = cropSize * cropSize * 3;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let index = 0;
  const takeFrames = async (chunk: Buffer) => {
    pending.push(chunk);
    pendingBytes += chunk.length;
    while (pendingBytes >= frameBytes) {
      const joined = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending);
      const data = new Uint8Array(joined.subarray(0, frameBytes));
      const rest = joined.subarray(frameBytes);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
      await onFrame({
        index,
        timeSeconds: index / fps,
        data,
        width: cropSize,
        height: cropSize,
        channels: 3,
      });
      index += 1;
    }
  };
  await runMediaTool({
    tool: "ffmpeg",
    args: [
      "-nostdin",
      "-hide_banner",
      "-v",
      "error",
      "-threads",
      String(threads),
      ...safeInputArgs({ limits, demuxer: probe.container.demuxer }),
      "-i",
      input,
      "-map",
      "0:v:0",
      "-an",
      "-sn",
      "-dn",
      "-t",
      String(Math.min(probe.durationSeconds, limits.maxDurationSeconds)),
      "-vf",
      filters.join(","),
      "-frames:v",
      String(limits.maxFrames),
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "pipe:1",
    ],
    timeoutMs: limits.timeoutMs,
    maxStdoutBytes: (limits.maxFrames + 1) * frameBytes,
    onStdout: takeFrames,
    signal,
  });
  if (index === 0) {
    throw new MediaError("No frame could be decoded from the video; send an uncorrupted video.", {
      code: "video_invalid",
      status: 422,
    });
  }
  return index;
}

/** Options of {@link extractFrameAt}. */
export interface ExtractFrameOptions {
  /** A server-made path to a file {@link probeVideo} accepted. */
  path: string;
  probe: VideoProbe;
  /** Presentation time of the frame, seconds (clamped into the video). */
  timeSeconds: number;
  /** Longest side of the frame; larger frames are scaled down, smaller ones kept as they are. */
  maxSide: number;
  limits: VideoLimits;
  signal?: AbortSignal;
}

/**
 * One whole frame (not cropped) at `timeSeconds`, scaled so its longer side is at most `maxSide`, as raw
 * RGB: what OCR reads from a video and what is stored as a segment's keyframe when text is read, since
 * text is illegible at the model's crop size. ffmpeg seeks to the nearest earlier keyframe and decodes
 * forward, under the same input limits, timeout and output cap as sampling.
 *
 * @throws MediaError when no frame can be decoded at that time.
 */
export async function extractFrameAt({
  path,
  probe,
  timeSeconds,
  maxSide,
  limits,
  signal,
}: ExtractFrameOptions): Promise<VideoFrame> {
  const input = serverFileInput(path);
  if (!(Number.isInteger(maxSide) && maxSide >= 16)) {
    throw new ValidationError(`The frame's longest side must be an integer of at least 16; got ${maxSide}.`);
  }
  const longer = Math.max(probe.width, probe.height);
  const scale = Math.min(1, maxSide / longer);
  // Even sizes, at least 2: what rgb24 output of every codec accepts.
  const width = Math.max(2, Math.round((probe.width * scale) / 2) * 2);
  const height = Math.max(2, Math.round((probe.height * scale) / 2) * 2);
  const duration = Math.min(probe.durationSeconds, limits.maxDurationSeconds);
  const at = Math.max(0, Math.min(timeSeconds, Math.max(0, duration - 0.001)));
  const frameBytes = width * height * 3;
  const { stdout } = await runMediaTool({
    tool: "ffmpeg",
    args: [
      "-nostdin",
      "-hide_banner",
      "-v",
      "error",
      "-threads",
      "1",
      ...safeInputArgs({ limits, demuxer: probe.container.demuxer }),
      "-ss",
      at.toFixed(3),
      "-i",
      input,
      "-map",
      "0:v:0",
      "-an",
      "-sn",
      "-dn",
      "-vf",
      `scale=${width}:${height}:flags=bicubic`,
      "-frames:v",
      "1",
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "pipe:1",
    ],
    timeoutMs: limits.timeoutMs,
    maxStdoutBytes: frameBytes,
    signal,
  });
  if (stdout.length < frameBytes) {
    throw new MediaError(
      `No frame could be decoded at ${at.toFixed(2)} s of the video; send an uncorrupted video.`,
      { code: "video_invalid", status: 422, context: { timeSeconds: at } },
    );
  }
  return {
    index: 0,
    timeSeconds: at,
    data: new Uint8Array(stdout.subarray(0, frameBytes)),
    width,
    height,
    channels: 3,
  };
}
