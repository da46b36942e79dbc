/**
 * Image preprocessing for the vision tower, following Hugging Face `CLIPImageProcessor` semantics from a
 * pack's `preprocessor_config.json`: convert to RGB (transparency composited on white), resize the shortest
 * edge, center crop (zero-padding images smaller than the crop), rescale, normalize, CHW float32.
 *
 * Decoding uses sharp with defences for untrusted bytes: byte and pixel limits checked against the header
 * before decoding, a format allow-list, `failOn: "warning"` (truncated or corrupt files are rejected), the
 * first frame only of animations, and EXIF orientation applied before resizing.
 *
 * sharp's `cubic` kernel (Catmull-Rom) is close to, but not bit-identical with, PIL's bicubic filter that the
 * Python reference uses; the difference is measured in `test/inference/image-processor.test.ts`.
 */
import sharp, { type Metadata, type OutputInfo, type Sharp } from "sharp";
import { mapWithConcurrency } from "../concurrency.ts";
import { MediaError, ModelPackError, ValidationError } from "../errors.ts";
import { shortEdgeSize } from "../media/short-edge-size.ts";
import type { PreprocessorConfig } from "./pack-config.ts";
import { type PilFilter, resizeLikePillow } from "./pil-resize.ts";

/** Limits applied to every encoded image before it is decoded. */
export interface ImageLimits {
  /** Largest encoded input in bytes. */
  maxInputBytes?: number;
  /** Largest width × height of the (first frame of the) input, read from its header. */
  maxInputPixels?: number;
  /**
   * Encoded formats accepted, as sharp names them. JPEG, PNG, WebP, GIF and TIFF are recognised by their
   * leading bytes before any decoder sees them; other formats are identified by libvips.
   */
  allowedFormats?: readonly string[];
  /** Longest time one image may take to decode and resize, in seconds (0: no limit). */
  decodeTimeoutSeconds?: number;
  /** Most frames (pages) an animated input may have; only the first is decoded. */
  maxFrames?: number;
}

/** Limits used when none are given. */
export const defaultImageLimits: Required<ImageLimits> = {
  maxInputBytes: 50 * 1024 * 1024,
  maxInputPixels: 40_000_000,
  allowedFormats: ["jpeg", "png", "webp", "gif"],
  decodeTimeoutSeconds: 10,
  maxFrames: 100,
};

/** The format of encoded image bytes from their signature, for the formats that have a fixed one. */
export function sniffImageFormat(bytes: Uint8Array): "jpeg" | "png" | "gif" | "webp" | "tiff" | undefined {
  const startsWith = (signature: readonly number[], offset = 0): boolean =>
    signature.every((value, index) => bytes[offset + index] === value);
  if (startsWith([0xff, 0xd8, 0xff])) return "jpeg";
  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "png";
  if (startsWith([0x47, 0x49, 0x46, 0x38]) && (bytes[4] === 0x37 || bytes[4] === 0x39) && bytes[5] === 0x61) {
    return "gif";
  }
  if (startsWith([0x52, 0x49, 0x46, 0x46]) && startsWith([0x57, 0x45, 0x42, 0x50], 8)) return "webp";
  if (startsWith([0x49, 0x49, 0x2a, 0x00]) || startsWith([0x4d, 0x4d, 0x00, 0x2a])) return "tiff";
  return undefined;
}

const SNIFFABLE_FORMATS = new Set(["jpeg", "png", "gif", "webp", "tiff"]);

/** Already-decoded pixels (e.g. a video frame), row-major and interleaved. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). */
  channels: 1 | 2 | 3 | 4;
}

/** An image to preprocess: encoded bytes (JPEG, PNG, WebP, GIF) or raw pixels. */
export type ImageInput = Uint8Array | RawImage;

/** Resized and cropped RGB pixels before rescaling and normalization. */
export interface RgbImage {
  /** Row-major interleaved RGB bytes, `height × width × 3`. */
  data: Uint8Array;
  width: number;
  height: number;
}

/** A batch of preprocessed images, ready for a `pixel_values` tensor. */
export interface PixelBatch {
  /** Row-major `[batch, 3, height, width]`. */
  data: Float32Array;
  dims: [number, number, number, number];
}

type SharpKernel = "nearest" | "linear" | "cubic" | "lanczos3";

const resampleKernels: Record<number, SharpKernel> = { 0: "nearest", 1: "lanczos3", 2: "linear", 3: "cubic" };
const pillowFilters: Record<number, PilFilter> = { 1: "lanczos", 2: "bilinear", 3: "bicubic" };
const resampleNames: Record<number, string> = {
  0: "nearest",
  1: "lanczos",
  2: "bilinear",
  3: "bicubic",
  4: "box",
  5: "hamming",
};

/**
 * Where the model input of an image lies in it: the image is resized to `resizedWidth × resizedHeight`, then
 * the `cropWidth × cropHeight` window at (`left`, `top`) of the resized image is the model input (negative
 * offsets, or a window past the edge, are zero padding of an image smaller than the crop).
 */
export interface CropFrame {
  resizedWidth: number;
  resizedHeight: number;
  left: number;
  top: number;
  cropWidth: number;
  cropHeight: number;
}

/** Options of {@link ImageProcessor}. */
export interface ImageProcessorOptions {
  /** Parsed `preprocessor_config.json`. */
  config: PreprocessorConfig;
  /** Input limits; missing fields take {@link defaultImageLimits}. */
  limits?: ImageLimits;
  /** How many images of a batch are decoded at once (sharp shares libuv's thread pool). */
  decodeConcurrency?: number;
}

function isRawImage(input: ImageInput): input is RawImage {
  return !(input instanceof Uint8Array);
}

function formatMegapixels(pixels: number): string {
  return `${(pixels / 1_000_000).toFixed(1)} MP`;
}

function tooManyPixels(width: number, height: number, limits: Required<ImageLimits>): MediaError {
  const pixels = width * height;
  return new MediaError(
    `Image is ${width}x${height} (${formatMegapixels(pixels)}); the limit is ${formatMegapixels(limits.maxInputPixels)}. ` +
      "Resize it or raise the pixel limit (maxInputPixels).",
    {
      code: "media_too_large",
      status: 413,
      context: { width, height, pixels, limit: limits.maxInputPixels },
    },
  );
}

function decodeError(error: unknown, limits: Required<ImageLimits>): MediaError {
  const reason = error instanceof Error ? error.message : String(error);
  if (/pixel limit/i.test(reason)) {
    return new MediaError(
      `Image exceeds the pixel limit of ${formatMegapixels(limits.maxInputPixels)}. Resize it or raise the pixel limit (maxInputPixels).`,
      { cause: error, code: "media_too_large", status: 413 },
    );
  }
  return new MediaError(
    `Could not decode the image: ${reason}. Send an uncorrupted ${limits.allowedFormats.join(", ")} file.`,
    { cause: error },
  );
}

/** A sharp pipeline over an input, with the byte, pixel and time limits and EXIF orientation applied. */
function openImage(input: ImageInput, limits: Required<ImageLimits>): Sharp {
  if (isRawImage(input)) {
    const { data, width, height, channels } = input;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new ValidationError(`Raw image size must be positive integers, got ${width}x${height}.`);
    }
    if (data.length !== width * height * channels) {
      throw new ValidationError(
        `Raw image data has ${data.length} bytes; ${width}x${height}x${channels} needs ${width * height * channels}.`,
      );
    }
    if (width * height > limits.maxInputPixels) {
      throw tooManyPixels(width, height, limits);
    }
    return sharp(data, { raw: { width, height, channels }, limitInputPixels: limits.maxInputPixels });
  }
  if (input.length > limits.maxInputBytes) {
    throw new MediaError(
      `Image is ${input.length} bytes; the limit is ${limits.maxInputBytes} bytes. ` +
        "Send a smaller file or raise the image byte limit (maxInputBytes).",
      {
        code: "media_too_large",
        status: 413,
        context: { bytes: input.length, limit: limits.maxInputBytes },
      },
    );
  }
  return sharp(input, {
    failOn: "warning",
    limitInputPixels: limits.maxInputPixels,
    pages: 1,
    page: 0,
    autoOrient: true,
  }).timeout({ seconds: limits.decodeTimeoutSeconds });
}

/**
 * Reads the header only: format allow-list, pixel limit, displayed (EXIF-oriented) size, and whether an EXIF
 * orientation other than the identity is applied when decoding.
 */
async function checkImageHeader(
  image: Uint8Array,
  limits: Required<ImageLimits>,
): Promise<{ width: number; height: number; reoriented: boolean }> {
  // Refuse by signature first, so that no parser (SVG, PDF, HEIF...) ever runs on a refused format.
  const sniffed = sniffImageFormat(image);
  const unsniffableAllowed = limits.allowedFormats.some((format) => !SNIFFABLE_FORMATS.has(format));
  if (sniffed === undefined ? !unsniffableAllowed : !limits.allowedFormats.includes(sniffed)) {
    throw new MediaError(
      `Image format ${sniffed === undefined ? "is not recognised" : `"${sniffed}" is not accepted`}; ` +
        `allowed: ${limits.allowedFormats.join(", ")}.`,
      { code: "media_unsupported", status: 415, context: { format: sniffed ?? "unknown" } },
    );
  }
  let metadata: Metadata;
  try {
    // The pixel limit is checked below with a clearer message, so the header read does not enforce it.
    metadata = await sharp(image, { failOn: "warning", pages: 1, limitInputPixels: false }).metadata();
  } catch (error) {
    throw decodeError(error, limits);
  }
  if (!limits.allowedFormats.includes(metadata.format)) {
    throw new MediaError(
      `Image format "${metadata.format}" is not accepted; allowed: ${limits.allowedFormats.join(", ")}.`,
      { code: "media_unsupported", status: 415, context: { format: metadata.format } },
    );
  }
  const frames = metadata.pages ?? 1;
  if (frames > limits.maxFrames) {
    throw new MediaError(
      `Image has ${frames} frames; the limit is ${limits.maxFrames} (only the first frame is used). ` +
        "Send a still image or raise the frame limit (maxFrames, LOUPE_MAX_IMAGE_FRAMES).",
      { code: "media_too_large", status: 413, context: { frames, limit: limits.maxFrames } },
    );
  }
  const pageHeight = metadata.pageHeight ?? metadata.height;
  if (metadata.width * pageHeight > limits.maxInputPixels) {
    throw tooManyPixels(metadata.width, pageHeight, limits);
  }
  const swapped = metadata.autoOrient.width !== metadata.width;
  const reoriented = metadata.orientation !== undefined && metadata.orientation !== 1;
  return swapped
    ? { width: pageHeight, height: metadata.width, reoriented }
    : { width: metadata.width, height: pageHeight, reoriented };
}

/**
 * Decodes an image at its own size into RGB pixels, under the same limits as every image: byte limit, format
 * allow-list and pixel limit checked against the header before decoding, decode timeout, EXIF orientation
 * applied, transparency composited on white. Raw RGB pixels are returned as they are.
 *
 * @throws MediaError when the input is too large, of a refused format, corrupt or truncated.
 */
export async function decodeImage({
  image,
  limits = {},
}: {
  image: ImageInput;
  limits?: ImageLimits;
}): Promise<RgbImage> {
  const merged = { ...defaultImageLimits, ...limits };
  const pipeline = openImage(image, merged);
  if (isRawImage(image)) {
    if (image.channels === 3) return { data: image.data, width: image.width, height: image.height };
  } else {
    await checkImageHeader(image, merged);
  }
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await pipeline
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace("srgb")
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw decodeError(error, merged);
  }
  if (raw.info.channels !== 3) {
    throw new MediaError(`Decoded image has ${raw.info.channels} channels; expected 3 (RGB).`, {
      context: { channels: raw.info.channels },
    });
  }
  return {
    data: new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength),
    width: raw.info.width,
    height: raw.info.height,
  };
}

/**
 * Center crop of interleaved RGB pixels with Hugging Face's offsets (`(size - crop) // 2`), filling with 0
 * where the crop extends past the image.
 */
export function centerCrop({
  image,
  cropWidth,
  cropHeight,
}: {
  image: RgbImage;
  cropWidth: number;
  cropHeight: number;
}): RgbImage {
  if (image.width === cropWidth && image.height === cropHeight) return image;
  const top = Math.floor((image.height - cropHeight) / 2);
  const left = Math.floor((image.width - cropWidth) / 2);
  const data = new Uint8Array(cropWidth * cropHeight * 3);
  for (let y = 0; y < cropHeight; y += 1) {
    const sourceY = y + top;
    if (sourceY < 0 || sourceY >= image.height) continue;
    for (let x = 0; x < cropWidth; x += 1) {
      const sourceX = x + left;
      if (sourceX < 0 || sourceX >= image.width) continue;
      const from = (sourceY * image.width + sourceX) * 3;
      const to = (y * cropWidth + x) * 3;
      data[to] = image.data[from] ?? 0;
      data[to + 1] = image.data[from + 1] ?? 0;
      data[to + 2] = image.data[from + 2] ?? 0;
    }
  }
  return { data, width: cropWidth, height: cropHeight };
}

/** Turns images into `pixel_values` for the vision tower. */
export class ImageProcessor {
  /** Height of the tensor produced for each image. */
  readonly outputHeight: number;
  /** Width of the tensor produced for each image. */
  readonly outputWidth: number;
  readonly #config: PreprocessorConfig;
  readonly #limits: Required<ImageLimits>;
  readonly #kernel: SharpKernel;
  readonly #decodeConcurrency: number;
  readonly #scale: Float64Array;
  readonly #offset: Float64Array;

  /** @throws ModelPackError when the config asks for a resampling filter sharp does not offer. */
  constructor({ config, limits = {}, decodeConcurrency = 2 }: ImageProcessorOptions) {
    const kernel = resampleKernels[config.resample];
    if (kernel === undefined) {
      throw new ModelPackError(
        `preprocessor_config.json asks for resample=${config.resample} (${resampleNames[config.resample] ?? "unknown"}); ` +
          "supported are 0 (nearest), 1 (lanczos), 2 (bilinear) and 3 (bicubic).",
        { context: { file: "preprocessor_config.json", resample: config.resample } },
      );
    }
    if (!config.do_center_crop && !config.do_resize) {
      throw new ModelPackError(
        "preprocessor_config.json disables both resizing and center cropping, so images would not have a fixed size; enable one.",
        { context: { file: "preprocessor_config.json" } },
      );
    }
    this.#config = config;
    this.#limits = { ...defaultImageLimits, ...limits };
    this.#kernel = kernel;
    this.#decodeConcurrency = Math.max(1, Math.floor(decodeConcurrency));
    if (config.do_center_crop) {
      this.outputHeight = config.crop_size.height;
      this.outputWidth = config.crop_size.width;
    } else if ("height" in config.size) {
      this.outputHeight = config.size.height;
      this.outputWidth = config.size.width;
    } else {
      throw new ModelPackError(
        "preprocessor_config.json resizes by shortest_edge without a center crop, so images would not have a fixed size; " +
          "set do_center_crop or give size as {height, width}.",
        { context: { file: "preprocessor_config.json" } },
      );
    }
    // pixel -> ((pixel * rescale) - mean) / std, folded into pixel * scale + offset per channel.
    const rescale = config.do_rescale ? config.rescale_factor : 1;
    this.#scale = new Float64Array(3);
    this.#offset = new Float64Array(3);
    for (let channel = 0; channel < 3; channel += 1) {
      const mean = config.do_normalize ? (config.image_mean[channel] ?? 0) : 0;
      const std = config.do_normalize ? (config.image_std[channel] ?? 1) : 1;
      this.#scale[channel] = rescale / std;
      this.#offset[channel] = -mean / std;
    }
  }

  /** The preprocessing configuration in force. */
  get config(): PreprocessorConfig {
    return this.#config;
  }

  /** The limits in force. */
  get limits(): Required<ImageLimits> {
    return this.#limits;
  }

  /**
   * The displayed size of an image (EXIF orientation applied), from its header only; raw pixels give their own.
   *
   * @throws MediaError when the input is of a refused format, over the pixel limit, or has no readable header.
   */
  async imageSize({ image }: { image: ImageInput }): Promise<{ width: number; height: number }> {
    if (isRawImage(image)) return { width: image.width, height: image.height };
    const { width, height } = await checkImageHeader(image, this.#limits);
    return { width, height };
  }

  /**
   * Where the model input of an image of `width × height` (displayed pixels) lies in it: the same resize
   * and center crop {@link ImageProcessor.resizeAndCrop} applies, as geometry.
   */
  cropFrame({ width, height }: { width: number; height: number }): CropFrame {
    const config = this.#config;
    let target = { width, height };
    if (config.do_resize) {
      target =
        "shortest_edge" in config.size
          ? shortEdgeSize({ width, height, shortestEdge: config.size.shortest_edge })
          : { width: config.size.width, height: config.size.height };
    }
    if (!config.do_center_crop) {
      return {
        resizedWidth: target.width,
        resizedHeight: target.height,
        left: 0,
        top: 0,
        cropWidth: target.width,
        cropHeight: target.height,
      };
    }
    const { left, top } = this.#cropWindow(target);
    return {
      resizedWidth: target.width,
      resizedHeight: target.height,
      left,
      top,
      cropWidth: this.outputWidth,
      cropHeight: this.outputHeight,
    };
  }

  /**
   * Decodes, orients, converts to RGB, resizes and center-crops one image: the uint8 pixels that are then
   * rescaled and normalized.
   *
   * @throws MediaError when the input is too large, of a refused format, corrupt or truncated.
   */
  async resizeAndCrop({ image }: { image: ImageInput }): Promise<RgbImage> {
    let width: number;
    let height: number;
    let reoriented = false;
    if (isRawImage(image)) {
      width = image.width;
      height = image.height;
    } else {
      ({ width, height, reoriented } = await checkImageHeader(image, this.#limits));
    }
    const config = this.#config;
    let target = { width, height };
    if (config.do_resize) {
      target =
        "shortest_edge" in config.size
          ? shortEdgeSize({ width, height, shortestEdge: config.size.shortest_edge })
          : { width: config.size.width, height: config.size.height };
    }
    const resizing = target.width !== width || target.height !== height;
    const enlarging = target.width > width || target.height > height;
    const pillowFilter = pillowFilters[config.resample];
    // libvips and Pillow agree closely when reducing but not when enlarging (different pixel-centre
    // conventions), so enlargements use the port of Pillow's resize; it is cheap there as the input is small.
    const resizeInJs = resizing && enlarging && pillowFilter !== undefined;
    let pipeline = openImage(image, this.#limits)
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace("srgb");
    if (resizing && !resizeInJs) {
      pipeline = pipeline.resize({
        width: target.width,
        height: target.height,
        fit: "fill",
        kernel: this.#kernel,
        fastShrinkOnLoad: false,
      });
    }
    // A crop inside the resized image is cut by libvips on its own thread, so that only the cropped pixels
    // reach JavaScript; one that needs padding (a small image) is done below, and so is the crop of an image
    // that EXIF rotates (libvips would then cut before rotating, a pixel off).
    const crop = config.do_center_crop ? this.#cropWindow(target) : undefined;
    const cropInPipeline = crop !== undefined && !resizeInJs && !reoriented && crop.inside;
    if (cropInPipeline) {
      pipeline = pipeline.extract({
        left: crop.left,
        top: crop.top,
        width: this.outputWidth,
        height: this.outputHeight,
      });
    }
    let raw: { data: Buffer; info: OutputInfo };
    try {
      raw = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    } catch (error) {
      throw decodeError(error, this.#limits);
    }
    if (raw.info.channels !== 3) {
      throw new MediaError(`Decoded image has ${raw.info.channels} channels; expected 3 (RGB).`, {
        context: { channels: raw.info.channels },
      });
    }
    let resized: RgbImage = {
      data: new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength),
      width: raw.info.width,
      height: raw.info.height,
    };
    if (resizeInJs && pillowFilter !== undefined) {
      resized = {
        data: resizeLikePillow({
          data: resized.data,
          width: resized.width,
          height: resized.height,
          targetWidth: target.width,
          targetHeight: target.height,
          filter: pillowFilter,
        }),
        width: target.width,
        height: target.height,
      };
    }
    if (!config.do_center_crop || cropInPipeline) return resized;
    return centerCrop({ image: resized, cropWidth: this.outputWidth, cropHeight: this.outputHeight });
  }

  /** Where the center crop of an image of `size` starts (Hugging Face's offsets), and whether it fits inside. */
  #cropWindow(size: { width: number; height: number }): { left: number; top: number; inside: boolean } {
    const top = Math.floor((size.height - this.outputHeight) / 2);
    const left = Math.floor((size.width - this.outputWidth) / 2);
    return { left, top, inside: top >= 0 && left >= 0 };
  }

  /** Rescales and normalizes cropped RGB pixels into `out` (CHW) starting at `offset`. */
  #normalizeInto(image: RgbImage, out: Float32Array, offset: number): void {
    const planeSize = image.width * image.height;
    const pixels = image.data;
    const [redScale = 1, greenScale = 1, blueScale = 1] = this.#scale;
    const [redShift = 0, greenShift = 0, blueShift = 0] = this.#offset;
    const green = offset + planeSize;
    const blue = green + planeSize;
    // One pass over the interleaved bytes, writing the three planes (this runs on the event loop).
    for (let index = 0, from = 0; index < planeSize; index += 1, from += 3) {
      out[offset + index] = (pixels[from] as number) * redScale + redShift;
      out[green + index] = (pixels[from + 1] as number) * greenScale + greenShift;
      out[blue + index] = (pixels[from + 2] as number) * blueScale + blueShift;
    }
  }

  /** Preprocesses one image into a `[3, height, width]` float32 array. */
  async preprocess({ image }: { image: ImageInput }): Promise<Float32Array> {
    const cropped = await this.resizeAndCrop({ image });
    const out = new Float32Array(3 * cropped.width * cropped.height);
    this.#normalizeInto(cropped, out, 0);
    return out;
  }

  /**
   * Preprocesses a batch into one `[batch, 3, height, width]` array. Decoding runs with bounded concurrency.
   *
   * @throws ValidationError when `images` is empty; MediaError naming the index of a bad image.
   */
  async preprocessBatch({ images }: { images: readonly ImageInput[] }): Promise<PixelBatch> {
    if (images.length === 0) throw new ValidationError("Cannot preprocess an empty batch of images.");
    const planeSize = 3 * this.outputHeight * this.outputWidth;
    const data = new Float32Array(images.length * planeSize);
    await mapWithConcurrency({
      items: images,
      limit: this.#decodeConcurrency,
      task: async (image, index) => {
        let cropped: RgbImage;
        try {
          cropped = await this.resizeAndCrop({ image });
        } catch (error) {
          if (error instanceof MediaError && images.length > 1) {
            throw new MediaError(`Image ${index} of the batch: ${error.message}`, {
              cause: error,
              code: error.code,
              status: error.status,
              context: { ...error.context, index },
            });
          }
          throw error;
        }
        this.#normalizeInto(cropped, data, index * planeSize);
      },
    });
    return { data, dims: [images.length, 3, this.outputHeight, this.outputWidth] };
  }
}
