/**
 * Text read in an image: the lines an OCR engine found, with their boxes and confidences, and the
 * `metadata.ocr` object records keep them in. Shared by the OCR engine (`inference/ocr/`), ingest
 * (which writes it), search and chat (which quote it and point at its boxes). Stored metadata is read
 * back through {@link readOcrMetadata}, which checks its shape: stored text is untrusted.
 */

/** `[x, y, width, height]` in pixels of the image as displayed (EXIF orientation applied). */
export type OcrBox = readonly [number, number, number, number];

/** One line of text found in an image. */
export interface OcrLine {
  text: string;
  /** The recognizer's mean character confidence, 0–1. */
  confidence: number;
  box: OcrBox;
}

/** What an OCR engine read in one image. */
export interface OcrReading {
  /** Engine and model, e.g. `pp-ocrv4`. */
  engine: string;
  /** Size of the image the boxes refer to. */
  width: number;
  height: number;
  /** Lines in reading order (top to bottom, then left to right). */
  lines: OcrLine[];
  /** The engine stopped at a limit (lines, time) before it had read everything it found. */
  truncated?: boolean;
}

/** `metadata.ocr` of a record: the reading kept with it (lines under the minimum confidence left out). */
export interface OcrMetadata extends OcrReading {
  /** The minimum confidence lines were kept at. */
  minConfidence: number;
}

/** The metadata key OCR readings are kept under. */
export const OCR_METADATA_KEY = "ocr";

/** The text of a reading: its lines joined by newlines. */
export function ocrTextOf(reading: Pick<OcrReading, "lines">): string {
  return reading.lines.map((line) => line.text).join("\n");
}

function isBox(value: unknown): value is OcrBox {
  return (
    Array.isArray(value) &&
    value.length === 4 &&
    value.every((part) => typeof part === "number" && Number.isFinite(part) && part >= 0)
  );
}

function isLine(value: unknown): value is OcrLine {
  if (typeof value !== "object" || value === null) return false;
  const { text, confidence, box } = value as Record<string, unknown>;
  return (
    typeof text === "string" &&
    typeof confidence === "number" &&
    confidence >= 0 &&
    confidence <= 1 &&
    isBox(box)
  );
}

/**
 * The OCR reading kept in a record's metadata, or `undefined` when there is none or it is not of the
 * expected shape (lines of another shape are dropped, never trusted).
 */
export function readOcrMetadata(metadata: Record<string, unknown> | undefined): OcrMetadata | undefined {
  const value = metadata?.[OCR_METADATA_KEY];
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const { engine, width, height, lines, truncated, minConfidence } = value as Record<string, unknown>;
  if (typeof engine !== "string" || typeof width !== "number" || typeof height !== "number") return undefined;
  if (!Array.isArray(lines)) return undefined;
  return {
    engine,
    width,
    height,
    lines: lines
      .filter(isLine)
      .map(({ text, confidence, box }) => ({ text, confidence, box: [...box] as const })),
    minConfidence: typeof minConfidence === "number" ? minConfidence : 0,
    ...(truncated === true ? { truncated: true } : {}),
  };
}
