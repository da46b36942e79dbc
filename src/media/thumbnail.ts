/**
 * Thumbnails and basic facts of encoded images. Runs only on bytes the model pack's image processor has
 * already accepted (format allow-list, byte and pixel limits, full decode), and decodes them again with
 * the same defences: the pixel limit, `failOn: "warning"`, the first frame only, EXIF orientation applied.
 * Thumbnails are WebP without metadata, so no EXIF (GPS) data of the original is served from them.
 */
import sharp from "sharp";
import { MediaError } from "../errors.ts";

/** MIME types of the encoded formats Loupe stores, by sharp's format name. */
export const IMAGE_CONTENT_TYPES: Readonly<Record<string, string>> = {
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  gif: "image/gif",
  tiff: "image/tiff",
};

/** What a thumbnail run learns about the original and what it makes. */
export interface Thumbnail {
  /** The original's format as sharp names it (`jpeg`, `png`…). */
  format: string;
  /** The original's MIME type. */
  contentType: string;
  /** The original's displayed size (after EXIF orientation; first frame of an animation). */
  width: number;
  height: number;
  /** The thumbnail, WebP. */
  thumbnail: { bytes: Buffer; contentType: "image/webp"; width: number; height: number };
}

/** Options of {@link makeThumbnail}. */
export interface MakeThumbnailOptions {
  bytes: Uint8Array;
  /** Longest side of the thumbnail; smaller images keep their size. */
  size?: number;
  /** Largest width × height decoded. */
  maxInputPixels?: number;
  /** WebP quality, 1–100. */
  quality?: number;
  /** Longest decode and encode time, in seconds. */
  timeoutSeconds?: number;
}

/**
 * Reads an image's facts and renders its thumbnail.
 *
 * @throws {MediaError} when the bytes cannot be decoded within the limits.
 */
export async function makeThumbnail({
  bytes,
  size = 256,
  maxInputPixels = 40_000_000,
  quality = 80,
  timeoutSeconds = 10,
}: MakeThumbnailOptions): Promise<Thumbnail> {
  const open = () =>
    sharp(bytes, {
      failOn: "warning",
      limitInputPixels: maxInputPixels,
      pages: 1,
      page: 0,
      autoOrient: true,
    });
  try {
    const metadata = await open().metadata();
    const pageHeight = metadata.pageHeight ?? metadata.height;
    const swapped = metadata.autoOrient.width !== metadata.width;
    const rendered = await open()
      .resize({ width: size, height: size, fit: "inside", withoutEnlargement: true })
      .webp({ quality })
      .timeout({ seconds: timeoutSeconds })
      .toBuffer({ resolveWithObject: true });
    return {
      format: metadata.format,
      contentType: IMAGE_CONTENT_TYPES[metadata.format] ?? "application/octet-stream",
      width: swapped ? pageHeight : metadata.width,
      height: swapped ? metadata.width : pageHeight,
      thumbnail: {
        bytes: rendered.data,
        contentType: "image/webp",
        width: rendered.info.width,
        height: rendered.info.height,
      },
    };
  } catch (error) {
    throw new MediaError(
      `Could not make a thumbnail of the image: ${error instanceof Error ? error.message : String(error)}.`,
      { cause: error },
    );
  }
}
