import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaError } from "../../src/errors.ts";
import {
  defaultVideoLimits,
  mediaBinaries,
  runMediaTool,
  safeInputArgs,
  serverFileInput,
} from "../../src/media/ffmpeg.ts";
import { probeVideo, sniffVideoContainer } from "../../src/media/video-probe.ts";
import { makeTestVideo, writeHostileVideos } from "../helpers/video-fixtures.ts";

let dir: string;
let hostile: Record<string, string>;
const videos: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "loupe-video-probe-"));
  hostile = await writeHostileVideos(dir);
  const source = "testsrc=size=160x120:rate=8:duration=3";
  videos.mp4 = await makeTestVideo({ outPath: path.join(dir, "ok.mp4"), source });
  videos.webm = await makeTestVideo({ outPath: path.join(dir, "ok.webm"), source, format: "webm" });
  videos.mkv = await makeTestVideo({ outPath: path.join(dir, "ok.mkv"), source, format: "matroska" });
  videos.avi = await makeTestVideo({ outPath: path.join(dir, "ok.avi"), source, format: "avi" });
  videos.audio = await makeTestVideo({
    outPath: path.join(dir, "tracks.mp4"),
    source,
    audio: ["sine=duration=3", "sine=frequency=880:duration=3"],
  });
  videos.audioOnly = path.join(dir, "audio.mp4");
  await runAudioOnly(videos.audioOnly);
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function runAudioOnly(outPath: string): Promise<void> {
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  await promisify(execFile)(mediaBinaries().ffmpeg, [
    "-nostdin",
    "-v",
    "error",
    "-f",
    "lavfi",
    "-i",
    "sine=duration=2",
    "-c:a",
    "aac",
    "-f",
    "mp4",
    "-y",
    outPath,
  ]);
}

async function probeError(file: string, limits = defaultVideoLimits): Promise<MediaError> {
  const error = await probeVideo({ path: file, limits }).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(MediaError);
  return error as MediaError;
}

describe("probeVideo", () => {
  it.each([
    ["mp4", "mp4", "mov", "h264"],
    ["webm", "matroska", "matroska", "vp9"],
    ["mkv", "matroska", "matroska", "h264"],
    ["avi", "avi", "avi", "mpeg4"],
  ])("accepts %s and names the demuxer ffmpeg must use", async (key, name, demuxer, codec) => {
    const probe = await probeVideo({ path: videos[key] as string, limits: defaultVideoLimits });
    expect(probe.container.name).toBe(name);
    expect(probe.container.demuxer).toBe(demuxer);
    expect(probe).toMatchObject({ width: 160, height: 120, codec, streamCount: 1 });
    expect(probe.durationSeconds).toBeCloseTo(3, 0);
  });

  it.each([
    ["hls.mp4", /not a video container.*#EXTM3U.*Playlists \(HLS \.m3u8\), concat lists/s],
    ["concat.mp4", /not a video container.*ffconcat/s],
    ["image.mp4", /not a video container.*\.PNG/s],
  ])("refuses %s by its leading bytes before ffprobe runs (415)", async (name, message) => {
    const error = await probeError(hostile[name] as string);
    expect(error.status).toBe(415);
    expect(error.code).toBe("video_unsupported");
    expect(error.message).toMatch(message);
    expect(error.message).toMatch(/allowed: MP4\/MOV \(also 3GP\), Matroska\/WebM or AVI/);
  });

  it("refuses an empty file and a container of garbage (422)", async () => {
    const empty = await probeError(hostile["empty.mp4"] as string);
    expect(empty.status).toBe(422);
    expect(empty.message).toMatch(/empty \(0 bytes\)/);
    const garbage = await probeError(hostile["garbage.mp4"] as string);
    expect(garbage.status).toBe(422);
    expect(garbage.code).toBe("video_invalid");
    expect(garbage.message).toMatch(/ffprobe could not read the video/);
  });

  it("refuses a file without a video stream", async () => {
    const error = await probeError(videos.audioOnly as string);
    expect(error.status).toBe(422);
    expect(error.message).toMatch(/no video stream/);
  });

  it("names the limit and its setting: duration, resolution, streams", async () => {
    const long = await probeError(videos.mp4 as string, { ...defaultVideoLimits, maxDurationSeconds: 2 });
    expect(long.status).toBe(413);
    expect(long.message).toMatch(/lasts 3\.0 s; the limit is 2 s.*LOUPE_VIDEO_MAX_DURATION_S/);
    const big = await probeError(videos.mp4 as string, { ...defaultVideoLimits, maxPixels: 10_000 });
    expect(big.status).toBe(413);
    expect(big.message).toMatch(/160x120 .* the limit is 0\.0 MP.*LOUPE_VIDEO_MAX_PIXELS/);
    const tracks = await probeError(videos.audio as string, { ...defaultVideoLimits, maxStreams: 2 });
    expect(tracks.status).toBe(413);
    expect(tracks.message).toMatch(/3 streams; the limit is 2.*LOUPE_VIDEO_MAX_STREAMS/);
  });

  it("times out and kills ffprobe when it runs past its limit", async () => {
    const error = await probeError(videos.mp4 as string, { ...defaultVideoLimits, timeoutMs: 1 });
    expect(error.code).toBe("video_timeout");
    expect(error.message).toMatch(/within 1 ms.*LOUPE_VIDEO_TIMEOUT_MS/);
  });
});

describe("ffmpeg safety options", () => {
  it("ffprobe itself refuses a concat list and an HLS playlist even when given them directly", async () => {
    for (const name of ["concat.mp4", "hls.mp4"]) {
      const error = await runMediaTool({
        tool: "ffprobe",
        args: [
          "-v",
          "error",
          ...safeInputArgs({ limits: defaultVideoLimits }),
          "-show_format",
          "-i",
          serverFileInput(hostile[name] as string),
        ],
        timeoutMs: 10_000,
      }).then(
        () => undefined,
        (caught: unknown) => caught as MediaError,
      );
      expect(error, name).toBeInstanceOf(MediaError);
      expect(error?.message).toMatch(/Format not on whitelist|Invalid data|moov atom not found/);
    }
  });

  it("only passes absolute server paths, as file: inputs", () => {
    expect(serverFileInput("/tmp/x/video-1.upload")).toBe("file:/tmp/x/video-1.upload");
    expect(() => serverFileInput("http://example.com/a.mp4")).toThrow(
      /only absolute, server-made temp paths/,
    );
    expect(() => serverFileInput("relative.mp4")).toThrow(MediaError);
    expect(() => serverFileInput("/tmp/a\nb.mp4")).toThrow(MediaError);
  });

  it("sniffs containers by their leading bytes", () => {
    expect(sniffVideoContainer(Buffer.from("00000018667479706d703432", "hex"))?.name).toBe("mp4");
    expect(sniffVideoContainer(Buffer.from("1a45dfa3", "hex"))?.name).toBe("matroska");
    expect(sniffVideoContainer(Buffer.from("RIFF\x00\x00\x00\x00AVI LIST", "latin1"))?.name).toBe("avi");
    expect(sniffVideoContainer(Buffer.from("RIFF\x00\x00\x00\x00WEBPVP8 ", "latin1"))).toBeUndefined();
    expect(sniffVideoContainer(Buffer.from("#EXTM3U\n"))).toBeUndefined();
  });
});
