/**
 * Reading the text of an image at ingest (and in the OCR backfill): the OCR engine's reading, lines under
 * the minimum confidence dropped, turned into what a record keeps — `ocrText` (the lines joined, within
 * the store's field size) and `metadata.ocr` (lines with boxes and confidences, within the store's
 * metadata size: trailing lines are left out and the reading marked `truncated`).
 *
 * A reading that fails never costs the image: the image was decoded and checked already, so a failure
 * here is the engine's (a model error, a limit of its own) and the record is stored without text, left
 * for `loupe ocr backfill` to try again. A reading that hits the engine's time or line limit is kept as
 * far as it got, marked `truncated`.
 */
import type { ImageInput } from "../inference/image-processor.ts";
import type { OcrEngine } from "../inference/ocr/ocr-engine.ts";
import type { Logger } from "../logger.ts";
import { OCR_METADATA_KEY, type OcrLine, type OcrMetadata, type OcrReading } from "../media/ocr-lines.ts";
import { METADATA_MAX_BYTES, VARCHAR_MAX_BYTES } from "../store/collections.ts";

/** What ingest reads text with: the engine and the confidence lines must reach to be kept. */
export interface IngestOcr {
  engine: OcrEngine;
  /** Lines with a lower mean character confidence are dropped (`LOUPE_OCR_MIN_CONFIDENCE`). */
  minConfidence: number;
}

/** Longest `ocrText` a record keeps, in UTF-8 bytes (the store's `ocr_text` field). */
export const OCR_TEXT_MAX_BYTES: number = VARCHAR_MAX_BYTES.ocr_text;

/** Room left in `metadata` for the JSON punctuation around the reading, and rounding slack. */
const METADATA_SLACK_BYTES = 256;

/** What a record keeps of a reading. */
export interface OcrRecordFields {
  /** The kept lines' text, joined by newlines, cut at a line boundary to {@link OCR_TEXT_MAX_BYTES}. */
  ocrText: string;
  /** The record's metadata with the reading added under `ocr`. */
  metadata: Record<string, unknown>;
}

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** A line as stored: confidence to 3 decimals and the box in whole pixels (smaller JSON, same meaning). */
function compactLine(line: OcrLine): OcrLine {
  const [x, y, width, height] = line.box;
  return {
    text: line.text,
    confidence: Math.round(line.confidence * 1000) / 1000,
    box: [Math.round(x), Math.round(y), Math.round(width), Math.round(height)],
  };
}

/** The lines' text joined by newlines, whole lines only, within `maxBytes`. */
export function cappedOcrText(
  lines: readonly Pick<OcrLine, "text">[],
  maxBytes = OCR_TEXT_MAX_BYTES,
): string {
  const kept: string[] = [];
  let bytes = 0;
  for (const { text } of lines) {
    const added = utf8Bytes(text) + (kept.length === 0 ? 0 : 1);
    if (bytes + added > maxBytes) break;
    kept.push(text);
    bytes += added;
  }
  return kept.join("\n");
}

/**
 * The record fields of a reading: lines under `minConfidence` dropped, `metadata.ocr` added to `metadata`
 * with as many leading lines as fit under the store's metadata size (the rest left out, `truncated`).
 */
export function ocrRecordFields({
  reading,
  minConfidence,
  metadata,
  maxMetadataBytes = METADATA_MAX_BYTES,
}: {
  reading: OcrReading;
  minConfidence: number;
  metadata: Record<string, unknown>;
  maxMetadataBytes?: number;
}): OcrRecordFields {
  const lines = reading.lines
    .filter((line) => line.text.trim().length > 0 && line.confidence >= minConfidence)
    .map(compactLine);
  const { [OCR_METADATA_KEY]: _replaced, ...rest } = metadata;
  const empty: OcrMetadata = {
    engine: reading.engine,
    width: reading.width,
    height: reading.height,
    lines: [],
    minConfidence,
    truncated: true,
  };
  let budget = maxMetadataBytes - METADATA_SLACK_BYTES - utf8Bytes(JSON.stringify({ ...rest, ocr: empty }));
  const kept: OcrLine[] = [];
  for (const line of lines) {
    const bytes = utf8Bytes(JSON.stringify(line)) + 1;
    if (bytes > budget) break;
    kept.push(line);
    budget -= bytes;
  }
  const truncated = reading.truncated === true || kept.length < lines.length;
  const ocr: OcrMetadata = {
    engine: reading.engine,
    width: reading.width,
    height: reading.height,
    lines: kept,
    minConfidence,
    ...(truncated ? { truncated: true } : {}),
  };
  return { ocrText: cappedOcrText(lines), metadata: { ...rest, [OCR_METADATA_KEY]: ocr } };
}

/**
 * Reads the text of one image, or `undefined` when the engine failed (the failure is logged; the image is
 * stored without text). An abort is thrown.
 */
export async function readImageText({
  ocr,
  image,
  signal,
  logger,
  context,
}: {
  ocr: IngestOcr;
  image: ImageInput;
  signal?: AbortSignal;
  logger?: Logger;
  /** Names the image in the log (`{ id }`). */
  context?: Record<string, unknown>;
}): Promise<OcrReading | undefined> {
  try {
    return await ocr.engine.read({ image, ...(signal === undefined ? {} : { signal }) });
  } catch (error) {
    if (signal?.aborted === true) throw error;
    logger?.warn({ err: error, ...context }, "reading the text of an image failed; storing it without text");
    return undefined;
  }
}
