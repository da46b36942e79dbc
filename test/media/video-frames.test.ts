import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaError } from "../../src/errors.ts";
import { defaultVideoLimits, type VideoLimits } from "../../src/media/ffmpeg.ts";
import { sampleVideoFrames, type VideoFrame } from "../../src/media/video-frames.ts";
import { probeVideo } from "../../src/media/video-probe.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";

let dir: string;
let halves: string;
let long: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "loupe-video-frames-"));
  // 3 s, 8 fps, 200x100: red for the first 1.5 s, then blue; the left and right quarters are cropped away.
  halves = await makeTestVideo({
    outPath: path.join(dir, "halves.mp4"),
    source: "color=c=red:s=200x100:r=8:d=1.5[a];color=c=blue:s=200x100:r=8:d=1.5[b];[a][b]concat=n=2:v=1",
  });
  // 10 minutes of a tiny picture: cheap to encode, long to decode at full rate.
  long = await makeTestVideo({
    outPath: path.join(dir, "long.mp4"),
    source: "testsrc=size=64x64:rate=25:duration=600",
  });
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function sample(
  file: string,
  fps: number,
  limits: VideoLimits = defaultVideoLimits,
): Promise<VideoFrame[]> {
  const probe = await probeVideo({ path: file, limits });
  const frames: VideoFrame[] = [];
  await sampleVideoFrames({
    path: file,
    probe,
    fps,
    shortestEdge: 32,
    cropSize: 32,
    limits,
    onFrame: async (frame) => {
      frames.push(frame);
    },
  });
  return frames;
}

describe("sampleVideoFrames", () => {
  it("streams frames at the sampling rate, resized and center-cropped, with their times", async () => {
    const frames = await sample(halves, 2);
    expect(frames).toHaveLength(6);
    expect(frames.map((frame) => frame.timeSeconds)).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
    for (const frame of frames) {
      expect(frame).toMatchObject({ width: 32, height: 32, channels: 3 });
      expect(frame.data).toHaveLength(32 * 32 * 3);
    }
    const centre = (frame: VideoFrame) => {
      const offset = (16 * 32 + 16) * 3;
      return [...frame.data.subarray(offset, offset + 3)];
    };
    // Red before 1.5 s, blue from 1.5 s on (H.264 colours are close, not exact).
    for (const frame of frames.slice(0, 3)) expect(centre(frame)[0]).toBeGreaterThan(200);
    for (const frame of frames.slice(3)) expect(centre(frame)[2]).toBeGreaterThan(200);
  });

  it("refuses, before decoding, a video that would exceed the frame cap", async () => {
    const error = await sample(long, 2, { ...defaultVideoLimits, maxFrames: 100 }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(MediaError);
    expect((error as MediaError).status).toBe(413);
    expect((error as MediaError).message).toMatch(
      /about 1201 frames; the limit is 100.*LOUPE_VIDEO_MAX_FRAMES/,
    );
  });

  it("kills a decode that outlives its wall-clock limit", async () => {
    const started = performance.now();
    const limits = { ...defaultVideoLimits, timeoutMs: 400 };
    const probe = await probeVideo({ path: long, limits: defaultVideoLimits });
    const error = await sampleVideoFrames({
      path: long,
      probe,
      fps: 5,
      shortestEdge: 32,
      cropSize: 32,
      limits,
      onFrame: () => undefined,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MediaError);
    expect((error as MediaError).code).toBe("video_timeout");
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("decodes no further than the checked duration, whatever the streams hold", async () => {
    const probe = await probeVideo({ path: long, limits: defaultVideoLimits });
    const frames: VideoFrame[] = [];
    // As if the container had stated 10 s: ffmpeg stops there (-t), not at the stream's real end.
    await sampleVideoFrames({
      path: long,
      probe: { ...probe, durationSeconds: 10 },
      fps: 25,
      shortestEdge: 32,
      cropSize: 32,
      limits: defaultVideoLimits,
      onFrame: (frame) => {
        frames.push(frame);
      },
    });
    expect(frames).toHaveLength(250);
    expect(frames.at(-1)?.timeSeconds).toBeCloseTo(9.96, 2);
  });
});
