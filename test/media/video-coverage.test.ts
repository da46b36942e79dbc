import { describe, expect, it } from "vitest";
import { videoCoverage } from "../../src/media/video-coverage.ts";

describe("videoCoverage", () => {
  it("finds a whole video whole, within a sampling step of its declared duration", () => {
    expect(videoCoverage({ frames: 18, fps: 2, declaredSeconds: 9 })).toEqual({
      declaredDurationSeconds: 9,
      decodedDurationSeconds: 9,
      truncated: false,
    });
    // 0.5 s short at 2 fps is what the frame count cannot tell apart from whole.
    expect(videoCoverage({ frames: 17, fps: 2, declaredSeconds: 9 }).truncated).toBe(false);
    // More frames than the duration holds (rounding of the last one) never extend it.
    expect(videoCoverage({ frames: 19, fps: 2, declaredSeconds: 9.02 }).decodedDurationSeconds).toBe(9.02);
  });

  it("calls a video truncated when more than 10 % or more than 2 s of it did not decode", () => {
    expect(videoCoverage({ frames: 5, fps: 2, declaredSeconds: 9 })).toEqual({
      declaredDurationSeconds: 9,
      decodedDurationSeconds: 2.5,
      truncated: true,
    });
    // 1.5 s of 9 s missing: more than 10 %.
    expect(videoCoverage({ frames: 15, fps: 2, declaredSeconds: 9 }).truncated).toBe(true);
    // 3 s of an hour missing: under 10 %, but more than 2 s.
    expect(videoCoverage({ frames: 7194, fps: 2, declaredSeconds: 3600 }).truncated).toBe(true);
    // 1.5 s of an hour: neither.
    expect(videoCoverage({ frames: 7197, fps: 2, declaredSeconds: 3600 }).truncated).toBe(false);
  });

  it("never counts less than a sampling step as missing, however short the video", () => {
    expect(videoCoverage({ frames: 1, fps: 2, declaredSeconds: 0.9 }).truncated).toBe(false);
    expect(videoCoverage({ frames: 1, fps: 0.5, declaredSeconds: 3 }).truncated).toBe(false);
    expect(videoCoverage({ frames: 1, fps: 2, declaredSeconds: 3 }).truncated).toBe(true);
  });
});
