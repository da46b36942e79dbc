/**
 * Test helper: small videos made by the bundled ffmpeg from its `lavfi` test sources (colour bars,
 * solid colours, tones), and hostile files that pretend to be videos. Only tests use `lavfi`; Loupe's
 * own ffmpeg runs refuse every input format but the allowed containers.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { mediaBinaries } from "../../src/media/ffmpeg.ts";

const run = promisify(execFile);

/** Options of {@link makeTestVideo}. */
export interface MakeTestVideoOptions {
  /** File to write; its extension does not matter, `format` decides the container. */
  outPath: string;
  /** A lavfi video source, e.g. `testsrc=size=160x120:rate=8:duration=3` or `color=c=red:s=64x64:d=2`. */
  source: string;
  /** Extra lavfi audio sources, each its own stream (e.g. `sine=duration=3`). */
  audio?: readonly string[];
  /** `mp4` (H.264), `webm` (VP9), `matroska` (H.264) or `avi` (MPEG-4 part 2). Default `mp4`. */
  format?: "mp4" | "webm" | "matroska" | "avi";
}

/** Encodes a lavfi source into a file with the bundled ffmpeg. */
export async function makeTestVideo({
  outPath,
  source,
  audio = [],
  format = "mp4",
}: MakeTestVideoOptions): Promise<string> {
  const inputs = [source, ...audio].flatMap((lavfi) => ["-f", "lavfi", "-i", lavfi]);
  const maps = [source, ...audio].flatMap((_lavfi, index) => ["-map", String(index)]);
  const codec: Record<string, string[]> = {
    mp4: ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4"],
    matroska: ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "matroska"],
    webm: ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-f", "webm"],
    avi: ["-c:v", "mpeg4", "-f", "avi"],
  };
  const audioCodec =
    format === "webm" ? ["-c:a", "libopus"] : format === "avi" ? ["-c:a", "mp3"] : ["-c:a", "aac"];
  await run(mediaBinaries().ffmpeg, [
    "-nostdin",
    "-v",
    "error",
    ...inputs,
    ...maps,
    ...(codec[format] ?? []),
    ...(audio.length > 0 ? audioCodec : []),
    "-y",
    outPath,
  ]);
  return outPath;
}

/** Files that claim to be videos but are not, written into `dir`. */
export async function writeHostileVideos(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string | Buffer> = {
    // An HLS playlist pointing at a local file and at a URL.
    "hls.mp4":
      "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXTINF:10,\nhttp://169.254.169.254/latest\n#EXT-X-ENDLIST\n",
    // An ffconcat list pointing at local files.
    "concat.mp4": "ffconcat version 1.0\nfile '/etc/passwd'\nfile '/etc/hostname'\n",
    // A PNG image.
    "image.mp4": Buffer.from(
      "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082",
      "hex",
    ),
    // An MP4 box header followed by garbage.
    "garbage.mp4": Buffer.concat([Buffer.from("00000018667479706d703432", "hex"), Buffer.alloc(4096, 0x41)]),
    "empty.mp4": Buffer.alloc(0),
  };
  const paths: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    paths[name] = path.join(dir, name);
    await writeFile(paths[name], content);
  }
  return paths;
}
