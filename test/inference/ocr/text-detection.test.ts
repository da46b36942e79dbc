/**
 * The pure parts of PP-OCR around the models: detection sizes (never upscaled, multiples of 32, bounded for
 * extreme aspect ratios), boxes read off a probability map, lines in reading order, recognition widths and
 * greedy CTC decoding with the word-space rule.
 */
import { describe, expect, it } from "vitest";
import {
  boxesFromProbabilityMap,
  detectionSize,
  linesInReadingOrder,
  type TextBox,
} from "../../../src/inference/ocr/text-detection.ts";
import {
  decodeCtc,
  MAX_RECOGNITION_WIDTH,
  recognitionWidth,
} from "../../../src/inference/ocr/text-recognition.ts";

describe("detectionSize", () => {
  it("keeps an image that fits, padding it to multiples of 32", () => {
    expect(detectionSize({ width: 1280, height: 800, maxSide: 2560 })).toEqual({
      width: 1280,
      height: 800,
      paddedWidth: 1280,
      paddedHeight: 800,
    });
    expect(detectionSize({ width: 100, height: 50, maxSide: 2560 })).toEqual({
      width: 100,
      height: 50,
      paddedWidth: 128,
      paddedHeight: 64,
    });
  });

  it("scales a large image down to maxSide, keeping its aspect", () => {
    expect(detectionSize({ width: 8000, height: 5000, maxSide: 1600 })).toEqual({
      width: 1600,
      height: 1000,
      paddedWidth: 1600,
      paddedHeight: 1024,
    });
  });

  it("bounds both sides of extreme strips", () => {
    expect(detectionSize({ width: 1, height: 20_000, maxSide: 2560 })).toEqual({
      width: 1,
      height: 2560,
      paddedWidth: 32,
      paddedHeight: 2560,
    });
    expect(detectionSize({ width: 20_000, height: 1, maxSide: 960 })).toEqual({
      width: 960,
      height: 1,
      paddedWidth: 960,
      paddedHeight: 32,
    });
  });
});

/** A probability map with rectangles of a given probability on zero. */
function mapWith(
  width: number,
  height: number,
  rectangles: { x: number; y: number; w: number; h: number; p: number }[],
) {
  const map = new Float32Array(width * height);
  for (const { x, y, w, h, p } of rectangles) {
    for (let row = y; row < y + h; row += 1) map.fill(p, row * width + x, row * width + x + w);
  }
  return map;
}

describe("boxesFromProbabilityMap", () => {
  it("finds each region above the threshold and grows it by the unclip distance", () => {
    const map = mapWith(100, 40, [
      { x: 10, y: 10, w: 30, h: 6, p: 0.9 },
      { x: 60, y: 20, w: 20, h: 6, p: 0.9 },
    ]);
    const boxes = boxesFromProbabilityMap({ map, width: 100, height: 40 });
    expect(boxes).toHaveLength(2);
    const distance = (30 * 6 * 1.5) / (2 * 36);
    expect(boxes[0]?.x).toBeCloseTo(10 - distance);
    expect(boxes[0]?.width).toBeCloseTo(30 + 2 * distance);
    expect(boxes[0]?.score).toBeCloseTo(0.9);
  });

  it("drops regions with a low mean probability, tiny regions, and anything in the padding", () => {
    const map = mapWith(64, 32, [
      { x: 4, y: 4, w: 20, h: 6, p: 0.45 },
      { x: 30, y: 4, w: 2, h: 2, p: 0.99 },
      { x: 40, y: 20, w: 20, h: 6, p: 0.99 },
    ]);
    expect(boxesFromProbabilityMap({ map, width: 64, height: 32, validWidth: 36 })).toEqual([]);
  });

  it("splits lines stacked so close that the map bridges them", () => {
    const map = mapWith(100, 40, [
      { x: 10, y: 5, w: 60, h: 8, p: 0.9 },
      { x: 30, y: 13, w: 4, h: 3, p: 0.9 },
      { x: 10, y: 16, w: 80, h: 8, p: 0.9 },
    ]);
    const boxes = boxesFromProbabilityMap({ map, width: 100, height: 40, unclipRatio: 0 });
    expect(boxes.map(({ x, y, width, height }) => [x, y, width, height])).toEqual([
      [10, 5, 60, 10],
      [10, 15, 80, 9],
    ]);
  });

  it("keeps the largest regions when there are more than maxBoxes", () => {
    const map = mapWith(100, 20, [
      { x: 2, y: 5, w: 10, h: 6, p: 0.9 },
      { x: 20, y: 5, w: 40, h: 6, p: 0.9 },
      { x: 70, y: 5, w: 20, h: 6, p: 0.9 },
    ]);
    const boxes = boxesFromProbabilityMap({ map, width: 100, height: 20, maxBoxes: 1 });
    expect(boxes).toHaveLength(1);
    expect(boxes[0]?.x).toBeGreaterThan(10);
    expect(boxes[0]?.x).toBeLessThan(20);
  });
});

const box = (x: number, y: number, width: number, height = 20): TextBox => ({
  x,
  y,
  width,
  height,
  score: 0.9,
});

describe("linesInReadingOrder", () => {
  it("orders rows top to bottom and boxes left to right", () => {
    const lines = linesInReadingOrder({ boxes: [box(300, 100, 50), box(10, 102, 50), box(10, 10, 80)] });
    expect(lines.map((line) => [line.x, line.y])).toEqual([
      [10, 10],
      [10, 102],
      [300, 100],
    ]);
  });

  it("joins overlapping pieces of one line, keeps boxes set apart separate", () => {
    const lines = linesInReadingOrder({
      boxes: [box(10, 10, 50), box(55, 12, 55), box(120, 10, 60), box(400, 10, 60)],
    });
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ x: 10, y: 10, width: 100, height: 22 });
    expect(lines[1]).toMatchObject({ x: 120 });
  });

  it("joins pieces closer than gapRatio × the line height when asked", () => {
    const lines = linesInReadingOrder({
      boxes: [box(10, 10, 50), box(70, 12, 40), box(400, 10, 60)],
      gapRatio: 1,
    });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ x: 10, y: 10, width: 100, height: 22 });
    expect(lines[1]).toMatchObject({ x: 400 });
  });
});

describe("recognition", () => {
  it("scales crops to height 48 keeping their aspect, within bounds", () => {
    expect(recognitionWidth({ x: 0, y: 0, width: 200, height: 24 })).toBe(400);
    expect(recognitionWidth({ x: 0, y: 0, width: 1, height: 20_000 })).toBe(16);
    expect(recognitionWidth({ x: 0, y: 0, width: 20_000, height: 10 })).toBe(MAX_RECOGNITION_WIDTH);
  });

  /** Probabilities `[1, steps, 4]` over classes blank, "a", "b", space, from the best class per step. */
  function probabilities(steps: { best: number; p?: number; space?: number }[]): Float32Array {
    const data = new Float32Array(steps.length * 4);
    steps.forEach(({ best, p = 0.9, space = 0 }, step) => {
      const rest = (1 - p - (best === 3 ? 0 : space)) / 2;
      for (let type = 0; type < 4; type += 1) data[step * 4 + type] = rest / 2;
      if (best !== 3) data[step * 4 + 3] = space;
      data[step * 4 + best] = p;
    });
    return data;
  }
  const dictionary = ["", "a", "b", " "];

  it("collapses repeats, drops blanks and averages the kept characters' probabilities", () => {
    const steps = [{ best: 1, p: 0.8 }, { best: 1 }, { best: 0 }, { best: 1, p: 1 }, { best: 2, p: 0.6 }];
    const decoded = decodeCtc({
      probabilities: probabilities(steps),
      steps: 5,
      classes: 4,
      index: 0,
      dictionary,
    });
    expect(decoded.text).toBe("aab");
    expect(decoded.confidence).toBeCloseTo((0.8 + 1 + 0.6) / 3);
  });

  it("reads a word space where the space class nearly won over the blank, not elsewhere", () => {
    const steps = [{ best: 1 }, { best: 0, space: 0.3 }, { best: 2 }, { best: 0, space: 0.01 }, { best: 1 }];
    const decoded = decodeCtc({
      probabilities: probabilities(steps),
      steps: 5,
      classes: 4,
      index: 0,
      dictionary,
    });
    expect(decoded.text).toBe("a ba");
    expect(
      decodeCtc({ probabilities: new Float32Array(8), steps: 2, classes: 4, index: 0, dictionary }),
    ).toEqual({
      text: "",
      confidence: 0,
    });
  });
});
