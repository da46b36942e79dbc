/**
 * Identifying and checking a video before anything decodes it: the leading bytes must be those of an
 * accepted container, then ffprobe (under the safe options of `ffmpeg.ts`) reads the container, and
 * its `format_name`, streams, duration and resolution are checked against the limits. The result names
 * the demuxer that ffmpeg is then forced to use (`-f`), so decoding can never pick another format.
 */
import { open } from "node:fs/promises";
import { z } from "zod";
import { MediaError } from "../errors.ts";
import {
  runMediaTool,
  safeInputArgs,
  serverFileInput,
  VIDEO_CONTAINERS,
  type VideoContainer,
  type VideoLimits,
  videoLimitSettings,
} from "./ffmpeg.ts";

/** What a probe found out about an accepted video. */
export interface VideoProbe {
  container: VideoContainer;
  /** Seconds; from the container, else the video stream. */
  durationSeconds: number;
  width: number;
  height: number;
  /** Average frame rate of the video stream, when the container states one. */
  fps: number | undefined;
  /** Codec of the video stream, e.g. `h264`. */
  codec: string;
  /** Streams of every type in the container. */
  streamCount: number;
}

/**
 * The container of a file from its leading bytes: ISO BMFF (`ftyp`, or a leading `moov`/`mdat`/`free`
 * box), EBML (Matroska/WebM), RIFF AVI. Anything else — text playlists, concat lists, images — is not a
 * video Loupe opens.
 */
export function sniffVideoContainer(bytes: Uint8Array): VideoContainer | undefined {
  const ascii = (from: number, to: number) => Buffer.from(bytes.subarray(from, to)).toString("latin1");
  const byName = (name: string) => VIDEO_CONTAINERS.find((container) => container.name === name);
  if (bytes.length >= 12 && ["ftyp", "moov", "mdat", "free", "wide", "skip"].includes(ascii(4, 8))) {
    return byName("mp4");
  }
  if (bytes.length >= 4 && bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) {
    return byName("matroska");
  }
  if (bytes.length >= 12 && ascii(0, 4) === "RIFF" && ascii(8, 12) === "AVI ") return byName("avi");
  return undefined;
}

const ALLOWED_TEXT = "MP4/MOV (also 3GP), Matroska/WebM or AVI";

const rate = z
  .string()
  .optional()
  .transform((value) => {
    const match = /^(\d+)\/(\d+)$/.exec(value ?? "");
    if (match === null) return undefined;
    const fps = Number(match[1]) / Number(match[2]);
    return Number.isFinite(fps) && fps > 0 ? fps : undefined;
  });
const seconds = z
  .string()
  .optional()
  .transform((value) => {
    const parsed = value === undefined ? Number.NaN : Number(value);
    return Number.isFinite(parsed) && parsed > 0 ? parsed : undefined;
  });

const probeOutputSchema = z.object({
  format: z.object({
    format_name: z.string(),
    nb_streams: z.number().int(),
    duration: seconds,
  }),
  streams: z
    .array(
      z.object({
        index: z.number().int(),
        codec_type: z.string().optional(),
        codec_name: z.string().optional(),
        width: z.number().int().optional(),
        height: z.number().int().optional(),
        avg_frame_rate: rate,
        duration: seconds,
        disposition: z.object({ attached_pic: z.number().optional() }).optional(),
      }),
    )
    .default([]),
});

/** Options of {@link probeVideo}. */
export interface ProbeVideoOptions {
  /** A path the server wrote the upload to (never a caller string). */
  path: string;
  limits: VideoLimits;
  signal?: AbortSignal;
}

/**
 * Checks a video file: leading bytes, then ffprobe with the protocol and format allow-lists, then
 * format, stream count, presence of a video stream, resolution and duration against `limits`.
 *
 * @throws MediaError 415 `video_unsupported` for a refused container; 422 `video_invalid` for an
 *   unreadable one or one without a video stream; 413 `video_too_large` past a limit (naming it and its
 *   setting); 422 `video_timeout` when ffprobe runs too long.
 */
export async function probeVideo({ path, limits, signal }: ProbeVideoOptions): Promise<VideoProbe> {
  const input = serverFileInput(path);
  const head = Buffer.alloc(16);
  const handle = await open(path, "r");
  let headLength: number;
  try {
    ({ bytesRead: headLength } = await handle.read(head, 0, head.length, 0));
  } finally {
    await handle.close();
  }
  if (headLength === 0) {
    throw new MediaError(`The video is empty (0 bytes); send an ${ALLOWED_TEXT} file.`, {
      code: "video_invalid",
      status: 422,
    });
  }
  const sniffed = sniffVideoContainer(head.subarray(0, headLength));
  if (sniffed === undefined) {
    throw new MediaError(
      `The file is not a video container Loupe accepts (leading bytes ${JSON.stringify(printable(head.subarray(0, headLength)))}); allowed: ${ALLOWED_TEXT}. ` +
        "Playlists (HLS .m3u8), concat lists and image sequences are refused.",
      {
        code: "video_unsupported",
        status: 415,
        context: { leadingBytes: head.subarray(0, headLength).toString("hex") },
      },
    );
  }
  const { stdout } = await runMediaTool({
    tool: "ffprobe",
    args: [
      "-v",
      "error",
      ...safeInputArgs({ limits }),
      "-show_entries",
      "format=format_name,nb_streams,duration:stream=index,codec_type,codec_name,width,height,avg_frame_rate,duration:stream_disposition=attached_pic",
      "-of",
      "json",
      "-i",
      input,
    ],
    timeoutMs: limits.timeoutMs,
    maxStdoutBytes: 1024 * 1024,
    signal,
  });
  let parsed: z.infer<typeof probeOutputSchema>;
  try {
    parsed = probeOutputSchema.parse(JSON.parse(stdout.toString("utf8")));
  } catch (error) {
    throw new MediaError(`ffprobe could not describe the video; send an uncorrupted ${ALLOWED_TEXT} file.`, {
      code: "video_invalid",
      status: 422,
      cause: error,
    });
  }
  const { format, streams } = parsed;
  const container = VIDEO_CONTAINERS.find((candidate) => candidate.formatName === format.format_name);
  if (container === undefined || container.name !== sniffed.name) {
    throw new MediaError(`The video's container is "${format.format_name}"; allowed: ${ALLOWED_TEXT}.`, {
      code: "video_unsupported",
      status: 415,
      context: { formatName: format.format_name },
    });
  }
  if (format.nb_streams > limits.maxStreams || streams.length > limits.maxStreams) {
    throw new MediaError(
      `The video has ${format.nb_streams} streams; the limit is ${limits.maxStreams}. ` +
        `Remove extra tracks or raise ${videoLimitSettings.maxStreams}.`,
      {
        code: "video_too_large",
        status: 413,
        context: { streams: format.nb_streams, limit: limits.maxStreams },
      },
    );
  }
  const video = streams.find(
    (stream) => stream.codec_type === "video" && stream.disposition?.attached_pic !== 1,
  );
  if (
    video === undefined ||
    video.width === undefined ||
    video.height === undefined ||
    video.width < 1 ||
    video.height < 1
  ) {
    throw new MediaError(`The file has no video stream with a known size; send an ${ALLOWED_TEXT} video.`, {
      code: "video_invalid",
      status: 422,
      context: { streams: streams.map((stream) => stream.codec_type ?? "unknown") },
    });
  }
  const pixels = video.width * video.height;
  if (pixels > limits.maxPixels) {
    throw new MediaError(
      `The video is ${video.width}x${video.height} (${(pixels / 1e6).toFixed(1)} MP); the limit is ${(limits.maxPixels / 1e6).toFixed(1)} MP. ` +
        `Downscale it or raise ${videoLimitSettings.maxPixels}.`,
      {
        code: "video_too_large",
        status: 413,
        context: { width: video.width, height: video.height, limit: limits.maxPixels },
      },
    );
  }
  const durationSeconds = format.duration ?? video.duration;
  if (durationSeconds === undefined) {
    throw new MediaError(
      `The video does not state its duration; send an ${ALLOWED_TEXT} file with a duration.`,
      {
        code: "video_invalid",
        status: 422,
      },
    );
  }
  if (durationSeconds > limits.maxDurationSeconds) {
    throw new MediaError(
      `The video lasts ${durationSeconds.toFixed(1)} s; the limit is ${limits.maxDurationSeconds} s. ` +
        `Cut it or raise ${videoLimitSettings.maxDurationSeconds}.`,
      {
        code: "video_too_large",
        status: 413,
        context: { durationSeconds, limit: limits.maxDurationSeconds },
      },
    );
  }
  return {
    container,
    durationSeconds,
    width: video.width,
    height: video.height,
    fps: video.avg_frame_rate,
    codec: video.codec_name ?? "unknown",
    streamCount: format.nb_streams,
  };
}

function printable(bytes: Uint8Array): string {
  return Buffer.from(bytes)
    .toString("latin1")
    .replace(/[^\x20-\x7e]/g, ".");
}
