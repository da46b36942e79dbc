/**
 * Rendering of scenes: an SVG of the scene rasterized by sharp, seeded per-pixel noise on the raw RGB
 * buffer, then PNG, JPEG or WebP encoding.
 */
import sharp from "sharp";
import { ValidationError } from "../errors.ts";
import {
  COLOR_RGB,
  IMAGE_SIZE_RANGE,
  MAX_COLOR_JITTER,
  MAX_PIXEL_NOISE,
  type Scene,
  type SceneObject,
  STAR_INNER_RATIO,
} from "./domain.ts";
import { createRng } from "./rng.ts";
import { checkInteger } from "./validate.ts";

/** An sRGB color as three 0–255 channels. */
export type Rgb = readonly [number, number, number];

/** Encoded image formats the renderer writes. */
export const IMAGE_FORMATS = ["png", "jpeg", "webp"] as const;
/** An encoded image format. */
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** File extension of each image format. */
export const IMAGE_EXTENSIONS: Readonly<Record<ImageFormat, string>> = {
  png: "png",
  jpeg: "jpg",
  webp: "webp",
};

/** Interleaved 8-bit RGB pixels, row by row. */
export interface RawImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 3;
}

/** Options of {@link renderSceneRaw}. */
export interface RenderRawOptions {
  /** Canvas side in pixels, 64–1024. Default 256. */
  size?: number;
  /** Seed of the per-object color jitter, and of the noise unless `noiseSeed` is set. Default 0. */
  seed?: number;
  /** Seed of the pixel noise alone; frames of one clip share `seed` and differ here. */
  noiseSeed?: number;
  /** Largest per-channel color jitter, 0–15. Default 15. */
  colorJitter?: number;
  /** Largest per-pixel, per-channel noise, 0–8. Default 8. */
  noise?: number;
}

/** Options of {@link encodeImage}. */
export interface EncodeImageOptions {
  /** Default `png`. */
  format?: ImageFormat;
  /** JPEG/WebP quality, 1–100. Default 90. */
  quality?: number;
}

/** Options of {@link renderScene}. */
export interface RenderSceneOptions extends RenderRawOptions, EncodeImageOptions {
  /** Also return the raw RGB pixels that were encoded. Default false. */
  includeRaw?: boolean;
}

/** An encoded image, with its raw pixels when asked for. */
export interface RenderedImage {
  data: Buffer;
  format: ImageFormat;
  width: number;
  height: number;
  raw?: RawImage;
}

/** Checks a canvas size: an integer from 64 to 1024 px. */
export function checkImageSize(size: number): void {
  checkInteger("size", size, IMAGE_SIZE_RANGE, "Pick a canvas side in pixels.");
}

/**
 * The color each object is drawn with: its reference color plus a per-channel jitter drawn from `seed`.
 */
export function objectColors(
  scene: Pick<Scene, "objects">,
  options: { seed?: number; colorJitter?: number } = {},
): Rgb[] {
  const { seed = 0, colorJitter = MAX_COLOR_JITTER } = options;
  checkInteger("colorJitter", colorJitter, { min: 0, max: MAX_COLOR_JITTER }, "The spec allows at most ±15.");
  const rng = createRng(seed).fork("color-jitter");
  return scene.objects.map((object) => {
    const [r, g, b] = COLOR_RGB[object.color];
    const jitter = (channel: number): number =>
      Math.min(255, Math.max(0, channel + rng.int(-colorJitter, colorJitter)));
    return [jitter(r), jitter(g), jitter(b)] as const;
  });
}

/**
 * Outline vertices of a polygonal shape in canvas units, inscribed in its bounding circle and rotated
 * (degrees, clockwise on screen since y points down). Circles have none.
 */
export function shapeVertices(
  object: Pick<SceneObject, "shape" | "x" | "y" | "r" | "rotation">,
): Array<[number, number]> {
  const point = (angleDegrees: number, radius: number): [number, number] => {
    const angle = ((angleDegrees + object.rotation) * Math.PI) / 180;
    return [object.x + radius * Math.cos(angle), object.y + radius * Math.sin(angle)];
  };
  const regular = (sides: number, firstAngle: number): Array<[number, number]> =>
    Array.from({ length: sides }, (_v, index) => point(firstAngle + (360 / sides) * index, object.r));
  switch (object.shape) {
    case "circle":
      return [];
    case "square":
      return regular(4, 45);
    case "triangle":
      // -90° points up on screen: the apex.
      return regular(3, -90);
    case "hexagon":
      return regular(6, 0);
    case "star":
      return Array.from({ length: 10 }, (_v, index) =>
        point(-90 + 36 * index, index % 2 === 0 ? object.r : object.r * STAR_INNER_RATIO),
      );
  }
}

/** The scene as an SVG document of `size` × `size` pixels, objects filled with `colors`. */
export function sceneToSvg(scene: Scene, options: { size?: number; colors?: readonly Rgb[] } = {}): string {
  const { size = 256 } = options;
  checkImageSize(size);
  const colors = options.colors ?? scene.objects.map((object) => COLOR_RGB[object.color]);
  const px = (value: number): string => (value * size).toFixed(3);
  const g = scene.background;
  const shapes = scene.objects.map((object, index) => {
    const [r, gr, b] = colors[index] ?? COLOR_RGB[object.color];
    const fill = `fill="rgb(${r},${gr},${b})"`;
    if (object.shape === "circle") {
      return `<circle cx="${px(object.x)}" cy="${px(object.y)}" r="${px(object.r)}" ${fill}/>`;
    }
    const points = shapeVertices(object)
      .map(([x, y]) => `${px(x)},${px(y)}`)
      .join(" ");
    return `<polygon points="${points}" ${fill}/>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}">`,
    `<rect width="${size}" height="${size}" fill="rgb(${g},${g},${g})"/>`,
    ...shapes,
    "</svg>",
  ].join("");
}

/** Adds uniform integer noise in [-amplitude, amplitude] to every channel of every pixel, in place. */
function addNoise(data: Buffer, amplitude: number, seed: number): void {
  if (amplitude === 0) return;
  const rng = createRng(seed).fork("pixel-noise");
  const levels = 2 * amplitude + 1;
  let index = 0;
  while (index < data.length) {
    // Four noise values per 32-bit draw; byte * levels >> 8 spreads 0–255 evenly over the levels.
    let word = rng.uint32();
    for (const end = Math.min(data.length, index + 4); index < end; index++) {
      const value = (data[index] as number) + (((word & 0xff) * levels) >> 8) - amplitude;
      data[index] = Math.min(255, Math.max(0, value));
      word >>>= 8;
    }
  }
}

/** Renders a scene to raw RGB: SVG rasterized by sharp, then seeded per-pixel noise. */
export async function renderSceneRaw(scene: Scene, options: RenderRawOptions = {}): Promise<RawImage> {
  const { size = 256, seed = 0, colorJitter = MAX_COLOR_JITTER, noise = MAX_PIXEL_NOISE } = options;
  checkImageSize(size);
  checkInteger("noise", noise, { min: 0, max: MAX_PIXEL_NOISE }, "The spec allows at most ±8.");
  const svg = sceneToSvg(scene, { size, colors: objectColors(scene, { seed, colorJitter }) });
  const { data, info } = await sharp(Buffer.from(svg))
    .removeAlpha()
    .toColourspace("srgb")
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3) {
    throw new RangeError(
      `SVG rasterized to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3.`,
    );
  }
  addNoise(data, noise, options.noiseSeed ?? seed);
  return { data, width: size, height: size, channels: 3 };
}

/** Encodes raw RGB pixels as PNG, JPEG or WebP. */
export async function encodeImage(raw: RawImage, options: EncodeImageOptions = {}): Promise<Buffer> {
  const { format = "png", quality = 90 } = options;
  checkInteger("quality", quality, { min: 1, max: 100 }, "Use 1 (smallest) to 100 (best).");
  const image = sharp(raw.data, { raw: { width: raw.width, height: raw.height, channels: raw.channels } });
  switch (format) {
    case "png":
      return image.png().toBuffer();
    case "jpeg":
      return image.jpeg({ quality }).toBuffer();
    case "webp":
      return image.webp({ quality }).toBuffer();
    default:
      throw new ValidationError(
        `Image format "${String(format)}" is not supported; use ${IMAGE_FORMATS.join(", ")}.`,
      );
  }
}

/**
 * Renders a scene and encodes it. Equal scenes and options give byte-identical output.
 *
 * @example
 * const image = await renderScene(scene, { size: 256, format: "jpeg", quality: 90, seed: 7 });
 */
export async function renderScene(scene: Scene, options: RenderSceneOptions = {}): Promise<RenderedImage> {
  const { format = "png", quality = 90, includeRaw = false } = options;
  const raw = await renderSceneRaw(scene, options);
  const data = await encodeImage(raw, { format, quality });
  return { data, format, width: raw.width, height: raw.height, ...(includeRaw ? { raw } : {}) };
}
