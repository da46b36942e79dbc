/**
 * The one place Loupe runs ffmpeg and ffprobe on untrusted videos. The binaries are the static builds of
 * `@ffmpeg-installer/ffmpeg` and `@ffprobe-installer/ffprobe`. Every run:
 * - is spawned with an argument list (no shell), with stdin closed and `-nostdin` for ffmpeg;
 * - reads only a path the server generated, with `-protocol_whitelist file` (no network, no pipes to
 *   other files) and `-format_whitelist` limited to the allowed containers, so playlists (HLS), concat
 *   lists, image sequences and raw data are refused before any decoder runs;
 * - probes little (`-probesize`, `-analyzeduration`);
 * - is killed with SIGKILL when it outlives its wall-clock limit or its output exceeds a byte cap.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { isAbsolute } from "node:path";
import { MediaError } from "../errors.ts";

/** A container Loupe accepts, with the demuxer name passed as `-f` and ffprobe's `format_name` for it. */
export interface VideoContainer {
  /** Short name for messages. */
  name: string;
  /** Demuxer passed to ffmpeg as `-f`. */
  demuxer: string;
  /** ffprobe's `format_name` for files of this container. */
  formatName: string;
}

/** The accepted containers: MP4/MOV (and 3GP, M4A), Matroska/WebM, AVI. */
export const VIDEO_CONTAINERS: readonly VideoContainer[] = [
  { name: "mp4", demuxer: "mov", formatName: "mov,mp4,m4a,3gp,3g2,mj2" },
  { name: "matroska", demuxer: "matroska", formatName: "matroska,webm" },
  { name: "avi", demuxer: "avi", formatName: "avi" },
];

/** `-format_whitelist` value: the demuxers of {@link VIDEO_CONTAINERS}, nothing else. */
export const FORMAT_WHITELIST = VIDEO_CONTAINERS.map((container) => container.formatName).join(",");

/** The only protocol ffmpeg and ffprobe may open. */
export const PROTOCOL_WHITELIST = "file";

/** Limits applied to every probe and decode. */
export interface VideoLimits {
  /** Longest accepted duration, seconds. */
  maxDurationSeconds: number;
  /** Largest width × height of the video stream. */
  maxPixels: number;
  /** Most streams (video, audio, subtitles, data) in the container. */
  maxStreams: number;
  /** Most frames one decode may produce. */
  maxFrames: number;
  /** Wall-clock limit of one ffprobe or ffmpeg run, milliseconds. */
  timeoutMs: number;
  /** Bytes ffprobe/ffmpeg may read to identify streams (`-probesize`). */
  probeSizeBytes: number;
  /** Microseconds of media analysed to identify streams (`-analyzeduration`). */
  analyzeDurationUs: number;
}

/** Limits used when none are given. */
export const defaultVideoLimits: VideoLimits = {
  maxDurationSeconds: 1800,
  maxPixels: 3840 * 2160,
  maxStreams: 8,
  maxFrames: 7200,
  timeoutMs: 120_000,
  probeSizeBytes: 5_000_000,
  analyzeDurationUs: 5_000_000,
};

/** Settings that set each limit, named in error messages. */
export const videoLimitSettings = {
  maxDurationSeconds: "LOUPE_VIDEO_MAX_DURATION_S",
  maxPixels: "LOUPE_VIDEO_MAX_PIXELS",
  maxStreams: "LOUPE_VIDEO_MAX_STREAMS",
  maxFrames: "LOUPE_VIDEO_MAX_FRAMES",
  timeoutMs: "LOUPE_VIDEO_TIMEOUT_MS",
} as const satisfies Partial<Record<keyof VideoLimits, string>>;

const require = createRequire(import.meta.url);
let binaries: { ffmpeg: string; ffprobe: string; ffmpegVersion: string; ffprobeVersion: string } | undefined;

/** Paths and versions of the bundled ffmpeg and ffprobe binaries. */
export function mediaBinaries(): {
  ffmpeg: string;
  ffprobe: string;
  ffmpegVersion: string;
  ffprobeVersion: string;
} {
  if (binaries === undefined) {
    const ffmpeg = require("@ffmpeg-installer/ffmpeg") as { path: string; version: string };
    const ffprobe = require("@ffprobe-installer/ffprobe") as { path: string; version: string };
    binaries = {
      ffmpeg: ffmpeg.path,
      ffprobe: ffprobe.path,
      ffmpegVersion: ffmpeg.version,
      ffprobeVersion: ffprobe.version,
    };
  }
  return binaries;
}

/** Input options every ffprobe and ffmpeg run gets before `-i`. */
export function safeInputArgs({ limits, demuxer }: { limits: VideoLimits; demuxer?: string }): string[] {
  return [
    "-protocol_whitelist",
    PROTOCOL_WHITELIST,
    "-format_whitelist",
    FORMAT_WHITELIST,
    "-probesize",
    String(limits.probeSizeBytes),
    "-analyzeduration",
    String(limits.analyzeDurationUs),
    ...(demuxer === undefined ? [] : ["-f", demuxer]),
    // MOV "data references" can name other files; off by default in both builds, and kept off here.
    ...(demuxer === "mov" ? ["-enable_drefs", "0"] : []),
  ];
}

/**
 * The input argument for a path the server made: an absolute path, given to ffmpeg as `file:<path>` so
 * that nothing in it can be read as another protocol or as an option. Callers' strings never get here.
 *
 * @throws MediaError (500) when the path is not absolute or holds control characters; that is a bug.
 */
export function serverFileInput(path: string): string {
  if (!isAbsolute(path) || [...path].some((char) => char.charCodeAt(0) < 0x20 || char === "\x7f")) {
    throw new MediaError(
      `Refusing to pass ${JSON.stringify(path)} to ffmpeg: only absolute, server-made temp paths are allowed.`,
      { code: "media_internal", status: 500 },
    );
  }
  return `file:${path}`;
}

/** Options of {@link runMediaTool}. */
export interface RunMediaToolOptions {
  /** `ffmpeg` or `ffprobe`. */
  tool: "ffmpeg" | "ffprobe";
  args: readonly string[];
  /** Wall-clock limit; the process is killed with SIGKILL after it. */
  timeoutMs: number;
  /** Largest stdout kept; the process is killed when it writes more. */
  maxStdoutBytes?: number;
  /** Called with each stdout chunk instead of collecting it (streaming). May return a promise (backpressure). */
  onStdout?: (chunk: Buffer) => undefined | Promise<void>;
  signal?: AbortSignal;
}

/** Outcome of a {@link runMediaTool} run that exited with status 0. */
export interface MediaToolResult {
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs ffmpeg or ffprobe with an argument list, stdin closed, a SIGKILL timeout and a stdout cap.
 *
 * @throws MediaError `video_timeout` (422) when it ran past `timeoutMs`; `video_invalid` (422) when it
 *   exited with an error (its last stderr lines are quoted); `video_too_large` (413) past the stdout cap.
 */
export async function runMediaTool({
  tool,
  args,
  timeoutMs,
  maxStdoutBytes = 64 * 1024 * 1024,
  onStdout,
  signal,
}: RunMediaToolOptions): Promise<MediaToolResult> {
  const binary = tool === "ffmpeg" ? mediaBinaries().ffmpeg : mediaBinaries().ffprobe;
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], shell: false });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-4000);
  });
  let killedFor: "timeout" | "output" | "abort" | undefined;
  const kill = (reason: "timeout" | "output" | "abort") => {
    killedFor ??= reason;
    child.kill("SIGKILL");
  };
  const startedAt = performance.now();
  const timer = setTimeout(() => kill("timeout"), timeoutMs);
  const onAbort = () => kill("abort");
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) kill("abort");

  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  const chunks: Buffer[] = [];
  let stdoutBytes = 0;
  let consumerError: unknown;
  try {
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      stdoutBytes += chunk.length;
      if (stdoutBytes > maxStdoutBytes) {
        kill("output");
        break;
      }
      if (onStdout === undefined) chunks.push(chunk);
      else await onStdout(chunk);
    }
  } catch (error) {
    consumerError = error;
    kill("abort");
  }
  let code: number | null;
  try {
    code = await exited;
  } catch (error) {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    throw new MediaError(
      `Could not run ${tool}: ${error instanceof Error ? error.message : String(error)}.`,
      {
        code: "media_internal",
        status: 500,
        cause: error,
      },
    );
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  if (consumerError !== undefined) throw consumerError;
  // A run that ended past its limit before the timer could fire (a busy event loop) ran past it all the same.
  if (killedFor === undefined && performance.now() - startedAt > timeoutMs) killedFor = "timeout";
  if (killedFor === "timeout") {
    throw new MediaError(
      `${tool} did not finish within ${timeoutMs} ms and was stopped; the video may be corrupt or too long to process. ` +
        `Send a shorter video or raise ${videoLimitSettings.timeoutMs}.`,
      { code: "video_timeout", status: 422, context: { tool, timeoutMs } },
    );
  }
  if (killedFor === "output") {
    throw new MediaError(`${tool} produced more than ${maxStdoutBytes} bytes of output and was stopped.`, {
      code: "video_too_large",
      status: 413,
      context: { tool, maxStdoutBytes },
    });
  }
  if (killedFor === "abort") {
    throw new MediaError(`${tool} was cancelled.`, {
      code: "video_cancelled",
      status: 400,
      context: { tool },
    });
  }
  if (code !== 0) {
    const reason = lastLines(stderr) || `exit code ${code}`;
    throw new MediaError(`${tool} could not read the video: ${reason}`, {
      code: "video_invalid",
      status: 422,
      context: { tool, exitCode: code },
    });
  }
  return { stdout: Buffer.concat(chunks), stderr };
}

/** The last few stderr lines, without ffmpeg's `[demuxer @ 0x…]` addresses (they only vary). */
function lastLines(stderr: string): string {
  return stderr
    .trim()
    .split("\n")
    .slice(-3)
    .map((line) => line.replace(/ @ 0x[0-9a-f]+\]/g, "]").trim())
    .join(" ")
    .slice(0, 500);
}
