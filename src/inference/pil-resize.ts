/**
 * A port of Pillow's separable convolution resize for 8-bit RGB (`Image.resize` with BICUBIC, BILINEAR or
 * LANCZOS and no `reducing_gap`), which Hugging Face image processors use. It gives the same bytes as Pillow
 * for the same decoded input: same filter weights, same 22-bit fixed-point coefficients, horizontal pass first
 * with a clipped 8-bit intermediate, same rounding.
 *
 * Its cost grows with input size × filter support, so the image processor uses it when an axis is enlarged
 * (inputs smaller than the model size) and lets libvips do large reductions, where the two agree closely.
 */

/** Filters of Pillow's convolution resize, by Pillow's resample number. */
export type PilFilter = "bilinear" | "bicubic" | "lanczos";

const PRECISION_BITS = 32 - 8 - 2;
const PRECISION_SCALE = 2 ** PRECISION_BITS;
const ROUNDING = 2 ** (PRECISION_BITS - 1);

function sinc(x: number): number {
  if (x === 0) return 1;
  const scaled = x * Math.PI;
  return Math.sin(scaled) / scaled;
}

const filters: Record<PilFilter, { support: number; weight: (x: number) => number }> = {
  bilinear: {
    support: 1,
    weight: (x) => {
      const distance = Math.abs(x);
      return distance < 1 ? 1 - distance : 0;
    },
  },
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const distance = Math.abs(x);
      if (distance < 1) return ((a + 2) * distance - (a + 3)) * distance * distance + 1;
      if (distance < 2) return (((distance - 5) * distance + 8) * distance - 4) * a;
      return 0;
    },
  },
  lanczos: {
    support: 3,
    weight: (x) => (x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0),
  },
};

interface Coefficients {
  kernelSize: number;
  /** Per output pixel: first input index. */
  starts: Int32Array;
  /** Per output pixel: number of input pixels used. */
  counts: Int32Array;
  /** Per output pixel: `kernelSize` fixed-point weights. */
  weights: Float64Array;
}

/** Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`. */
function precomputeCoefficients(inputSize: number, outputSize: number, filter: PilFilter): Coefficients {
  const { support: baseSupport, weight } = filters[filter];
  const scale = inputSize / outputSize;
  const filterScale = Math.max(scale, 1);
  const support = baseSupport * filterScale;
  const kernelSize = Math.ceil(support) * 2 + 1;
  const starts = new Int32Array(outputSize);
  const counts = new Int32Array(outputSize);
  const weights = new Float64Array(outputSize * kernelSize);
  const inverseScale = 1 / filterScale;
  for (let out = 0; out < outputSize; out += 1) {
    const center = (out + 0.5) * scale;
    // C casts to int truncate toward zero.
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inputSize);
    const count = end - start;
    let total = 0;
    const row = out * kernelSize;
    for (let index = 0; index < count; index += 1) {
      const value = weight((index + start - center + 0.5) * inverseScale);
      weights[row + index] = value;
      total += value;
    }
    for (let index = 0; index < count; index += 1) {
      const normalized = total === 0 ? (weights[row + index] ?? 0) : (weights[row + index] ?? 0) / total;
      weights[row + index] =
        normalized < 0
          ? Math.trunc(-0.5 + normalized * PRECISION_SCALE)
          : Math.trunc(0.5 + normalized * PRECISION_SCALE);
    }
    starts[out] = start;
    counts[out] = count;
  }
  return { kernelSize, starts, counts, weights };
}

function clip8(accumulator: number): number {
  const value = Math.floor(accumulator / PRECISION_SCALE);
  return Math.min(255, Math.max(0, value));
}

/**
 * Resizes interleaved 8-bit RGB pixels exactly as Pillow's `Image.resize(size, resample)` does for an RGB image.
 */
export function resizeLikePillow({
  data,
  width,
  height,
  targetWidth,
  targetHeight,
  filter = "bicubic",
}: {
  data: Uint8Array;
  width: number;
  height: number;
  targetWidth: number;
  targetHeight: number;
  filter?: PilFilter;
}): Uint8Array {
  const channels = 3;
  const needHorizontal = targetWidth !== width;
  const needVertical = targetHeight !== height;
  if (!needHorizontal && !needVertical) return data;
  const horizontal = precomputeCoefficients(width, targetWidth, filter);
  const vertical = precomputeCoefficients(height, targetHeight, filter);

  let source = data;
  let sourceWidth = width;
  let rowOffset = 0;
  if (needHorizontal) {
    // Only the rows the vertical pass will read.
    const firstRow = vertical.starts[0] ?? 0;
    const lastRow = (vertical.starts[targetHeight - 1] ?? 0) + (vertical.counts[targetHeight - 1] ?? 0);
    const rows = needVertical ? lastRow - firstRow : height;
    const rowStart = needVertical ? firstRow : 0;
    const temp = new Uint8Array(rows * targetWidth * channels);
    for (let y = 0; y < rows; y += 1) {
      const inRow = (y + rowStart) * width * channels;
      const outRow = y * targetWidth * channels;
      for (let x = 0; x < targetWidth; x += 1) {
        const start = horizontal.starts[x] ?? 0;
        const count = horizontal.counts[x] ?? 0;
        const kernel = x * horizontal.kernelSize;
        let red = ROUNDING;
        let green = ROUNDING;
        let blue = ROUNDING;
        for (let index = 0; index < count; index += 1) {
          const weight = horizontal.weights[kernel + index] ?? 0;
          const pixel = inRow + (start + index) * channels;
          red += (data[pixel] ?? 0) * weight;
          green += (data[pixel + 1] ?? 0) * weight;
          blue += (data[pixel + 2] ?? 0) * weight;
        }
        const out = outRow + x * channels;
        temp[out] = clip8(red);
        temp[out + 1] = clip8(green);
        temp[out + 2] = clip8(blue);
      }
    }
    source = temp;
    sourceWidth = targetWidth;
    rowOffset = rowStart;
  }
  if (!needVertical) return source;

  const output = new Uint8Array(targetHeight * targetWidth * channels);
  for (let y = 0; y < targetHeight; y += 1) {
    const start = (vertical.starts[y] ?? 0) - rowOffset;
    const count = vertical.counts[y] ?? 0;
    const kernel = y * vertical.kernelSize;
    const outRow = y * targetWidth * channels;
    for (let x = 0; x < targetWidth; x += 1) {
      let red = ROUNDING;
      let green = ROUNDING;
      let blue = ROUNDING;
      for (let index = 0; index < count; index += 1) {
        const weight = vertical.weights[kernel + index] ?? 0;
        const pixel = ((start + index) * sourceWidth + x) * channels;
        red += (source[pixel] ?? 0) * weight;
        green += (source[pixel + 1] ?? 0) * weight;
        blue += (source[pixel + 2] ?? 0) * weight;
      }
      const out = outRow + x * channels;
      output[out] = clip8(red);
      output[out + 1] = clip8(green);
      output[out + 2] = clip8(blue);
    }
  }
  return output;
}
