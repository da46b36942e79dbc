import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  createRng,
  encodeVideo,
  renderClipFrames,
  renderVideoFrames,
  sampleClip,
  sampleVideo,
} from "../../src/synth/index.ts";

const ffprobe = (createRequire(import.meta.url)("@ffprobe-installer/ffprobe") as { path: string }).path;
const dir = mkdtempSync(join(tmpdir(), "loupe-synth-video-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function probe(file: string): Record<string, string | number> {
  const result = spawnSync(
    ffprobe,
    [
      "-v",
      "error",
      "-count_frames",
      "-select_streams",
      "v:0",
      "-show_entries",
      "stream=codec_name,width,height,r_frame_rate,nb_read_frames,pix_fmt",
      "-of",
      "json",
      file,
    ],
    { encoding: "utf8", timeout: 30_000 },
  );
  expect(result.status, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { streams: Array<Record<string, string | number>> }).streams[0] ?? {};
}

describe("encodeVideo", () => {
  it("writes a 16-frame H.264 MP4 at 8 fps and 64 px", async () => {
    const clip = sampleClip(createRng(1));
    const file = join(dir, "clip.mp4");
    await encodeVideo({ frames: renderClipFrames(clip, { size: 64, seed: 1 }), size: 64, outPath: file });
    expect(probe(file)).toEqual({
      codec_name: "h264",
      width: 64,
      height: 64,
      pix_fmt: "yuv420p",
      r_frame_rate: "8/1",
      nb_read_frames: "16",
    });
  });

  it("writes a WebM (VP9) long video with 16 frames per clip", async () => {
    const video = sampleVideo(createRng(2), { clipCount: 3 });
    const file = join(dir, "video.webm");
    await encodeVideo({
      frames: renderVideoFrames(video, { size: 64, seed: 2 }),
      size: 64,
      outPath: file,
      format: "webm",
    });
    expect(probe(file)).toMatchObject({
      codec_name: "vp9",
      width: 64,
      height: 64,
      r_frame_rate: "8/1",
      nb_read_frames: "48",
    });
  });

  it("varies noise per frame but keeps each object's color", async () => {
    const clip = sampleClip(createRng(3), { action: "growing", objectCount: 1 });
    const frames = [];
    for await (const frame of renderClipFrames(clip, { size: 64, seed: 5 })) frames.push(frame);
    expect(frames).toHaveLength(16);
    expect(Buffer.compare(frames[0]?.data as Buffer, frames[1]?.data as Buffer)).not.toBe(0);
  });

  it("refuses odd sizes and mismatched frames, and reports ffmpeg failures", async () => {
    const clip = sampleClip(createRng(4));
    await expect(
      encodeVideo({ frames: renderClipFrames(clip, { size: 65 }), size: 65, outPath: join(dir, "odd.mp4") }),
    ).rejects.toThrow(ValidationError);
    await expect(
      encodeVideo({ frames: renderClipFrames(clip, { size: 64 }), size: 66, outPath: join(dir, "bad.mp4") }),
    ).rejects.toThrow(/every frame must be 66x66/);
    await expect(
      encodeVideo({
        frames: renderClipFrames(clip, { size: 64 }),
        size: 64,
        outPath: join(dir, "missing", "x.mp4"),
      }),
    ).rejects.toThrow(/ffmpeg failed/);
  });
});
