import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { cosineDistance, detectShotChanges, segmentVideo } from "../../src/ingest/segmenter.ts";

/** A unit vector along axis `axis` of 4, nudged by `wobble` along the next axis (motion within a shot). */
function frame(axis: number, wobble = 0): Float32Array {
  const vector = new Float32Array(4);
  vector[axis] = 1;
  vector[(axis + 1) % 4] = wobble;
  const norm = Math.hypot(...vector);
  return vector.map((value) => value / norm);
}

/** Frames of shots: `[axis, frameCount]` each, with a little motion inside every shot. */
function shots(...spec: Array<[number, number]>): Float32Array[] {
  return spec.flatMap(([axis, count]) =>
    Array.from({ length: count }, (_, index) => frame(axis, 0.05 * (index % 3))),
  );
}

const spans = (segments: ReturnType<typeof segmentVideo>) =>
  segments.map((segment) => [segment.startSeconds, segment.endSeconds, segment.startsShot]);

describe("detectShotChanges", () => {
  it("finds the frames where the picture changes as a whole", () => {
    expect(detectShotChanges({ frameEmbeddings: shots([0, 3], [1, 2], [2, 4]), threshold: 0.25 })).toEqual([
      3, 5,
    ]);
    expect(cosineDistance(frame(0), frame(1))).toBeCloseTo(1, 6);
    expect(cosineDistance(frame(0), frame(0, 0.1))).toBeLessThan(0.01);
  });
});

/** Unit vectors in a plane whose consecutive cosine distances are `steps`. */
function walk(steps: readonly number[]): Float32Array[] {
  let angle = 0;
  const vectors = [Float32Array.of(1, 0)];
  for (const step of steps) {
    angle += Math.acos(1 - step);
    vectors.push(Float32Array.of(Math.cos(angle), Math.sin(angle)));
  }
  return vectors;
}

describe("detectShotChanges, relative rule", () => {
  it("finds a cut between similar shots of a still video, below the absolute threshold", () => {
    const frames = walk([0, 0.01, 0.04, 0.19, 0, 0, 0, 0.03]);
    expect(detectShotChanges({ frameEmbeddings: frames, threshold: 0.27 })).toEqual([4]);
    expect(
      detectShotChanges({
        frameEmbeddings: frames,
        threshold: 0.27,
        relativeFactor: Number.POSITIVE_INFINITY,
      }),
    ).toEqual([]);
  });

  it("does not cut steady motion that speeds up, nor small flickers", () => {
    expect(detectShotChanges({ frameEmbeddings: walk([0.05, 0.06, 0.07, 0.21]), threshold: 0.27 })).toEqual(
      [],
    );
    expect(detectShotChanges({ frameEmbeddings: walk([0, 0, 0.08, 0, 0]), threshold: 0.27 })).toEqual([]);
  });
});

describe("segmentVideo", () => {
  it("cuts at shot changes, then into fixed windows from each shot's start", () => {
    // 2 fps: shots of 2 s, 3 s and 1.5 s.
    const segments = segmentVideo({
      frameEmbeddings: shots([0, 4], [1, 6], [2, 3]),
      fps: 2,
      windowSeconds: 2,
    });
    expect(spans(segments)).toEqual([
      [0, 2, false],
      [2, 4, true],
      [4, 5, false],
      [5, 6.5, true],
    ]);
    expect(segments.map((segment) => [segment.startFrame, segment.endFrame])).toEqual([
      [0, 4],
      [4, 8],
      [8, 10],
      [10, 13],
    ]);
    expect(segments.map((segment) => segment.index)).toEqual([0, 1, 2, 3]);
  });

  it("aligns with clip boundaries of Shapes World-like videos (2 s clips, 2 fps)", () => {
    const frames = shots([0, 4], [1, 4], [2, 4], [3, 4], [0, 4]);
    // Long windows: only the shot detection can find the boundaries.
    const segments = segmentVideo({
      frameEmbeddings: frames,
      fps: 2,
      windowSeconds: 30,
      durationSeconds: 10,
    });
    expect(segments.map((segment) => segment.startSeconds)).toEqual([0, 2, 4, 6, 8]);
    expect(segments.at(-1)?.endSeconds).toBe(10);
  });

  it("merges a trailing piece shorter than the minimum into the window before it", () => {
    const segments = segmentVideo({ frameEmbeddings: shots([0, 9]), fps: 2, windowSeconds: 2 });
    // 4.5 s: windows 0–2, 2–4, and 4–4.5 (one frame) folds into 2–4.5.
    expect(spans(segments)).toEqual([
      [0, 2, false],
      [2, 4.5, false],
    ]);
  });

  it("folds a shot that is too short (a flash) into its neighbour", () => {
    const frames = shots([0, 4], [3, 1], [1, 4]);
    const segments = segmentVideo({
      frameEmbeddings: frames,
      fps: 2,
      windowSeconds: 2,
      minSegmentSeconds: 1,
    });
    expect(spans(segments)).toEqual([
      [0, 2.5, false],
      [2.5, 4.5, true],
    ]);
    // A flash at the very start joins the next shot.
    const first = segmentVideo({ frameEmbeddings: shots([3, 1], [0, 4]), fps: 2, windowSeconds: 4 });
    expect(spans(first)).toEqual([[0, 2.5, false]]);
  });

  it("falls back to fixed windows when detection is off", () => {
    const segments = segmentVideo({
      frameEmbeddings: shots([0, 4], [1, 4]),
      fps: 2,
      windowSeconds: 1.5,
      shotThreshold: Number.POSITIVE_INFINITY,
    });
    expect(spans(segments)).toEqual([
      [0, 1.5, false],
      [1.5, 3, false],
      [3, 4, false],
    ]);
  });

  it("handles a single frame and ends at the stated duration", () => {
    expect(spans(segmentVideo({ frameEmbeddings: [frame(0)], fps: 2, durationSeconds: 0.3 }))).toEqual([
      [0, 0.3, false],
    ]);
    expect(spans(segmentVideo({ frameEmbeddings: shots([0, 3]), fps: 2 }))).toEqual([[0, 1.5, false]]);
  });

  it("refuses empty input and settings out of range", () => {
    expect(() => segmentVideo({ frameEmbeddings: [], fps: 2 })).toThrow(ValidationError);
    expect(() => segmentVideo({ frameEmbeddings: [frame(0)], fps: 0 })).toThrow(/fps must be positive/);
    expect(() =>
      segmentVideo({ frameEmbeddings: [frame(0)], fps: 2, windowSeconds: 1, minSegmentSeconds: 2 }),
    ).toThrow(/minSegmentSeconds must be from 0 to windowSeconds/);
  });
});
