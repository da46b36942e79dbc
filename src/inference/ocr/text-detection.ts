/**
 * PP-OCR's DB (differentiable binarization) text detector, before and after the model: the size an image is
 * scaled to, the normalized input tensor, and the boxes read from the probability map the model returns
 * (threshold, connected components, box score, unclip). Boxes are axis-aligned: screenshot text is.
 */
import type { RgbImage } from "../image-processor.ts";

/** Side lengths the detector accepts are multiples of this (its feature pyramid downsamples by 32). */
export const DETECTION_STRIDE = 32;

/**
 * Mean and standard deviation, per input channel, that the detector was trained with (ImageNet's, applied
 * by PaddleOCR to BGR channels in this order).
 */
const DETECTION_MEAN = [0.485, 0.456, 0.406] as const;
const DETECTION_STD = [0.229, 0.224, 0.225] as const;

/** The size an image is scaled to for detection, and the padded size of the tensor. */
export interface DetectionSize {
  /** Scaled image size (aspect kept). */
  width: number;
  height: number;
  /** Tensor size: the scaled size rounded up to multiples of {@link DETECTION_STRIDE}. */
  paddedWidth: number;
  paddedHeight: number;
}

/**
 * Scales an image down (never up) so its longer side is at most `maxSide`, keeping its aspect, and pads it
 * to multiples of 32. A side is never below 1 pixel scaled nor 32 padded, so a 1×20000 strip becomes a
 * 1×2560 image in a 32×2560 tensor: the tensor is bounded by `maxSide` on both sides whatever the input.
 */
export function detectionSize({
  width,
  height,
  maxSide,
}: {
  width: number;
  height: number;
  maxSide: number;
}): DetectionSize {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  const scaledWidth = Math.max(1, Math.min(maxSide, Math.round(width * scale)));
  const scaledHeight = Math.max(1, Math.min(maxSide, Math.round(height * scale)));
  const pad = (side: number): number =>
    Math.max(DETECTION_STRIDE, Math.ceil(side / DETECTION_STRIDE) * DETECTION_STRIDE);
  return {
    width: scaledWidth,
    height: scaledHeight,
    paddedWidth: pad(scaledWidth),
    paddedHeight: pad(scaledHeight),
  };
}

/**
 * The detector's `[1, 3, paddedHeight, paddedWidth]` input: channels in BGR order, normalized with the
 * training mean and deviation. The padding repeats the last column and row, so it adds no edge that could
 * read as text.
 */
export function detectionTensor({
  image,
  paddedWidth,
  paddedHeight,
}: {
  image: RgbImage;
  paddedWidth: number;
  paddedHeight: number;
}): Float32Array {
  const plane = paddedWidth * paddedHeight;
  const out = new Float32Array(3 * plane);
  const scale = new Float32Array(3);
  const shift = new Float32Array(3);
  for (let channel = 0; channel < 3; channel += 1) {
    const std = DETECTION_STD[channel] ?? 1;
    scale[channel] = 1 / (255 * std);
    shift[channel] = -(DETECTION_MEAN[channel] ?? 0) / std;
  }
  const { data, width, height } = image;
  for (let y = 0; y < paddedHeight; y += 1) {
    const sourceRow = Math.min(y, height - 1) * width;
    for (let x = 0; x < paddedWidth; x += 1) {
      const source = (sourceRow + Math.min(x, width - 1)) * 3;
      const target = y * paddedWidth + x;
      // Tensor channel 0 is blue: PaddleOCR reads images with OpenCV.
      for (let channel = 0; channel < 3; channel += 1) {
        const value = data[source + 2 - channel] ?? 0;
        out[channel * plane + target] = value * (scale[channel] ?? 0) + (shift[channel] ?? 0);
      }
    }
  }
  return out;
}

/** An axis-aligned box found by the detector, in the pixels of the map it was found in. */
export interface TextBox {
  x: number;
  y: number;
  width: number;
  height: number;
  /** Mean text probability inside the box before unclipping, 0–1. */
  score: number;
}

interface Region {
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
  pixels: number;
}

/**
 * Splits a region that covers lines stacked close together (the map bridges them with a few pixels) at
 * the rows where it narrows to under a quarter of its widest row; parts lower than a third of the tallest
 * part stay with their neighbour, so ascenders and descenders are never cut off.
 */
function splitStackedLines({
  region,
  label,
  labels,
  width,
  minSize,
}: {
  region: Region;
  label: number;
  labels: Int32Array;
  width: number;
  minSize: number;
}): Region[] {
  const height = region.maxY - region.minY + 1;
  if (height < 2 * minSize + 1) return [region];
  const counts = new Int32Array(height);
  for (let y = region.minY; y <= region.maxY; y += 1) {
    let count = 0;
    for (let x = region.minX; x <= region.maxX; x += 1) if (labels[y * width + x] === label) count += 1;
    counts[y - region.minY] = count;
  }
  const peak = Math.max(...counts);
  const runs: { start: number; end: number }[] = [];
  let start = -1;
  for (let row = 0; row <= height; row += 1) {
    const full = row < height && (counts[row] ?? 0) > peak / 4;
    if (full && start < 0) start = row;
    if (!full && start >= 0) {
      runs.push({ start, end: row - 1 });
      start = -1;
    }
  }
  const tallest = Math.max(0, ...runs.map((run) => run.end - run.start + 1));
  const lines = runs.filter((run) => run.end - run.start + 1 >= Math.max(minSize, tallest / 3));
  if (lines.length < 2) return [region];
  // Each line takes the rows up to halfway to the next one.
  return lines
    .map((line, index) => {
      const previous = lines[index - 1];
      const next = lines[index + 1];
      const top = previous === undefined ? 0 : Math.floor((previous.end + line.start) / 2) + 1;
      const bottom = next === undefined ? height - 1 : Math.floor((line.end + next.start) / 2);
      const part: Region = {
        minX: region.maxX,
        minY: region.minY + top,
        maxX: region.minX,
        maxY: region.minY + bottom,
        pixels: 0,
      };
      for (let y = part.minY; y <= part.maxY; y += 1) {
        for (let x = region.minX; x <= region.maxX; x += 1) {
          if (labels[y * width + x] !== label) continue;
          part.pixels += 1;
          if (x < part.minX) part.minX = x;
          if (x > part.maxX) part.maxX = x;
        }
      }
      return part;
    })
    .filter((part) => part.pixels > 0);
}

/** Options of {@link boxesFromProbabilityMap}. */
export interface BoxOptions {
  /** Pixels with a text probability above this are text. */
  threshold?: number;
  /** Boxes whose mean probability is below this are dropped. */
  boxThreshold?: number;
  /** How far a box is grown back: by `area × ratio / perimeter` on every side (DB shrinks text regions). */
  unclipRatio?: number;
  /** Regions whose shorter side is below this many map pixels are dropped as noise. */
  minSize?: number;
  /** Most regions considered; the largest are kept when there are more. */
  maxBoxes?: number;
}

/**
 * Reads text boxes off the detector's probability map: thresholds it, labels 4-connected regions, scores
 * each region's bounding box by its mean probability and grows it back by the unclip distance.
 *
 * @param map probabilities, row-major `height × width`.
 * @param validWidth / validHeight the part of the map that covers the image (the rest is padding).
 */
export function boxesFromProbabilityMap({
  map,
  width,
  height,
  validWidth = width,
  validHeight = height,
  threshold = 0.3,
  boxThreshold = 0.6,
  unclipRatio = 1.5,
  minSize = 3,
  maxBoxes = 4096,
}: {
  map: Float32Array;
  width: number;
  height: number;
  validWidth?: number;
  validHeight?: number;
} & BoxOptions): TextBox[] {
  const labels = new Int32Array(validWidth * validHeight);
  const stack = new Int32Array(validWidth * validHeight);
  const regions: Region[] = [];
  for (let y = 0; y < validHeight; y += 1) {
    for (let x = 0; x < validWidth; x += 1) {
      const index = y * validWidth + x;
      if (labels[index] !== 0 || (map[y * width + x] ?? 0) <= threshold) continue;
      const label = regions.length + 1;
      const region = { minX: x, minY: y, maxX: x, maxY: y, pixels: 0 };
      let top = 0;
      stack[top++] = index;
      labels[index] = label;
      while (top > 0) {
        const current = stack[--top] ?? 0;
        const cy = Math.floor(current / validWidth);
        const cx = current - cy * validWidth;
        region.pixels += 1;
        if (cx < region.minX) region.minX = cx;
        if (cx > region.maxX) region.maxX = cx;
        if (cy < region.minY) region.minY = cy;
        if (cy > region.maxY) region.maxY = cy;
        const neighbours = [
          cx > 0 ? current - 1 : -1,
          cx < validWidth - 1 ? current + 1 : -1,
          cy > 0 ? current - validWidth : -1,
          cy < validHeight - 1 ? current + validWidth : -1,
        ];
        for (const next of neighbours) {
          if (next < 0 || labels[next] !== 0) continue;
          const ny = Math.floor(next / validWidth);
          if ((map[ny * width + (next - ny * validWidth)] ?? 0) <= threshold) continue;
          labels[next] = label;
          stack[top++] = next;
        }
      }
      regions.push(region);
    }
  }
  const largest =
    regions.length > maxBoxes ? [...regions].sort((a, b) => b.pixels - a.pixels).slice(0, maxBoxes) : regions;
  const kept = largest.flatMap((region) =>
    splitStackedLines({ region, label: regions.indexOf(region) + 1, labels, width: validWidth, minSize }),
  );
  // Summed-area table of the probabilities: the mean over any box in constant time.
  const stride = validWidth + 1;
  const sums = new Float64Array(stride * (validHeight + 1));
  for (let y = 0; y < validHeight; y += 1) {
    let rowSum = 0;
    for (let x = 0; x < validWidth; x += 1) {
      rowSum += map[y * width + x] ?? 0;
      sums[(y + 1) * stride + x + 1] = (sums[y * stride + x + 1] ?? 0) + rowSum;
    }
  }
  const boxes: TextBox[] = [];
  for (const region of kept) {
    const boxWidth = region.maxX - region.minX + 1;
    const boxHeight = region.maxY - region.minY + 1;
    if (Math.min(boxWidth, boxHeight) < minSize) continue;
    const total =
      (sums[(region.maxY + 1) * stride + region.maxX + 1] ?? 0) -
      (sums[region.minY * stride + region.maxX + 1] ?? 0) -
      (sums[(region.maxY + 1) * stride + region.minX] ?? 0) +
      (sums[region.minY * stride + region.minX] ?? 0);
    const score = total / (boxWidth * boxHeight);
    if (score < boxThreshold) continue;
    const distance = (boxWidth * boxHeight * unclipRatio) / (2 * (boxWidth + boxHeight));
    const x = Math.max(0, region.minX - distance);
    const y = Math.max(0, region.minY - distance);
    const right = Math.min(validWidth, region.maxX + 1 + distance);
    const bottom = Math.min(validHeight, region.maxY + 1 + distance);
    if (Math.min(right - x, bottom - y) < minSize + 2) continue;
    boxes.push({ x, y, width: right - x, height: bottom - y, score });
  }
  return boxes;
}

/**
 * Orders boxes as text is read and joins the pieces of one line: boxes that share most of their height
 * form a row (top to bottom); in a row, boxes that overlap or are closer than `gapRatio` × the row's height
 * are one line. The default joins only overlapping boxes: DB already keeps the words of a line in one
 * region, and UI text set apart (menu items, table cells, a label and its value) is meant to be read apart.
 */
export function linesInReadingOrder({
  boxes,
  gapRatio = 0,
}: {
  boxes: readonly TextBox[];
  gapRatio?: number;
}): TextBox[] {
  const sorted = [...boxes].sort((a, b) => a.y + a.height / 2 - (b.y + b.height / 2));
  const rows: TextBox[][] = [];
  for (const box of sorted) {
    const row = rows.find((candidate) =>
      candidate.some((other) => {
        const overlap = Math.min(box.y + box.height, other.y + other.height) - Math.max(box.y, other.y);
        return overlap >= 0.5 * Math.min(box.height, other.height);
      }),
    );
    if (row === undefined) rows.push([box]);
    else row.push(box);
  }
  const lines: TextBox[] = [];
  for (const row of rows) {
    row.sort((a, b) => a.x - b.x);
    let current: TextBox | undefined;
    for (const box of row) {
      if (current !== undefined) {
        const gap = box.x - (current.x + current.width);
        const lineHeight = Math.min(current.height, box.height);
        if (
          gap <= gapRatio * lineHeight &&
          box.height <= 2 * current.height &&
          current.height <= 2 * box.height
        ) {
          const right = Math.max(current.x + current.width, box.x + box.width);
          const top = Math.min(current.y, box.y);
          const bottom = Math.max(current.y + current.height, box.y + box.height);
          const weight = current.width + box.width;
          current = {
            x: current.x,
            y: top,
            width: right - current.x,
            height: bottom - top,
            score: (current.score * current.width + box.score * box.width) / weight,
          };
          continue;
        }
        lines.push(current);
      }
      current = box;
    }
    if (current !== undefined) lines.push(current);
  }
  return lines;
}
