/**
 * Text in the turn's evidence: the OCR reading each image carries (stored at ingest in `metadata.ocr`,
 * or read during the turn for an attached image that has none), and, for a question about text, the
 * lines that answer it, set on the evidence's citation with their boxes. Attached images are read at
 * most once per turn, and at most {@link ReadTurnTextOptions.most} of them; retrieved items are never
 * read again (their stored reading is used as it is).
 */
import type { OcrEngine } from "../inference/ocr/ocr-engine.ts";
import type { Logger } from "../logger.ts";
import { readOcrMetadata } from "../media/ocr-lines.ts";
import type { RecordKind, StoredRecord } from "../store/index.ts";
import type { FusedItem } from "./fusion.ts";
import type { VisualCache } from "./ground.ts";
import { type RetrievalResult, textListName } from "./retrieve.ts";
import { bestLines, type TextQuestion } from "./text-question.ts";
import type { Evidence, EvidenceText } from "./types.ts";
import type { TurnImage } from "./understand.ts";

/** Kinds whose records hold text read in their image (an image, a video segment's keyframe). */
export const TEXT_KINDS: readonly RecordKind[] = ["image", "video_segment"];

/** The OCR reading stored with a record, when it has one. */
export function storedText(record: StoredRecord | undefined): EvidenceText | undefined {
  if (record === undefined || record.kind === "triple") return undefined;
  const reading = readOcrMetadata(record.metadata);
  if (reading === undefined) return undefined;
  const { minConfidence: _minConfidence, ...rest } = reading;
  return { ...rest, source: "stored" };
}

/** Options of {@link readTurnText}. */
export interface ReadTurnTextOptions {
  /** The OCR engine; without it nothing is read during the turn. */
  ocr: OcrEngine | undefined;
  /** The turn's images; their bytes are registered in `cache`. */
  images: readonly TurnImage[];
  cache: VisualCache;
  /** Stored items among the turn's images: their stored reading is used, never read again. */
  namedRecords: ReadonlyMap<string, StoredRecord>;
  /** Most images read in one turn; the rest are left without text. */
  most: number;
  signal?: AbortSignal;
  logger?: Logger;
}

/**
 * The text of the turn's images, by evidence id: the stored reading of a stored item, else (attached
 * bytes, or a stored item that was never read) a reading made now with the engine, for at most `most`
 * images, all at once (the engine queues them under its own limits). An image the engine fails on is
 * left without text and the failure logged: the turn still answers, saying no text was read.
 */
export async function readTurnText({
  ocr,
  images,
  cache,
  namedRecords,
  most,
  signal,
  logger,
}: ReadTurnTextOptions): Promise<Map<string, EvidenceText>> {
  const readings = new Map<string, EvidenceText>();
  const toRead: string[] = [];
  for (const image of images) {
    const stored = storedText(namedRecords.get(image.evidenceId));
    if (stored !== undefined) readings.set(image.evidenceId, stored);
    else if (ocr !== undefined && toRead.length < most && !toRead.includes(image.evidenceId))
      toRead.push(image.evidenceId);
  }
  if (ocr === undefined) return readings;
  await Promise.all(
    toRead.map(async (evidenceId) => {
      try {
        const bytes = await cache.bytes(evidenceId);
        const reading = await ocr.read({ image: bytes, ...(signal === undefined ? {} : { signal }) });
        readings.set(evidenceId, { ...reading, source: "read" });
      } catch (error) {
        if (signal?.aborted) throw error;
        logger?.warn({ err: error, evidenceId }, "could not read the text of a chat image");
      }
    }),
  );
  return readings;
}

/**
 * Candidates with the BM25 lists' hits first (in fused order), so that the items holding the asked
 * text stay among the evidence kept after fusion, whatever the dense lists ranked above them.
 */
export function textHitsFirst(retrieval: RetrievalResult): FusedItem<StoredRecord>[] {
  const textIds = new Set(
    TEXT_KINDS.flatMap((kind) =>
      [textListName(kind), textListName(kind, { loose: true })].flatMap((name) =>
        (retrieval.lists[name] ?? []).map((hit) => hit.id),
      ),
    ),
  );
  return [
    ...retrieval.fused.filter((item) => textIds.has(item.id)),
    ...retrieval.fused.filter((item) => !textIds.has(item.id)),
  ];
}

/** Options of {@link attachText}. */
export interface AttachTextOptions {
  evidence: readonly Evidence[];
  /** Stored records by id (retrieved candidates and items named in the turn). */
  records: ReadonlyMap<string, StoredRecord>;
  /** Readings made during the turn (and stored ones of the turn's images), by evidence id. */
  readings: ReadonlyMap<string, EvidenceText>;
  /** The question about text, when the turn asks one. */
  textQuestion?: TextQuestion;
  /** Evidence ids of the turn's images: they stay first. */
  turnImageIds: readonly string[];
  /** Most lines one citation quotes. */
  linesPerCitation?: number;
}

/**
 * The evidence with its text: each piece gets the reading it has (`ocr`); for a question about text, its
 * citation gets the lines that answer it (`lines`), and the retrieved evidence is ordered by how well its
 * best line answers (the turn's images stay first, ties keep their retrieval order).
 */
export function attachText({
  evidence,
  records,
  readings,
  textQuestion,
  turnImageIds,
  linesPerCitation = 3,
}: AttachTextOptions): Evidence[] {
  const scored = evidence.map((entry, order) => {
    const id = entry.citation.id;
    const ocr = readings.get(id) ?? storedText(records.get(id));
    if (ocr === undefined) return { entry, order, score: 0 };
    if (textQuestion === undefined) return { entry: { ...entry, ocr }, order, score: 0 };
    const lines = bestLines(textQuestion, ocr.lines, linesPerCitation);
    const score = Math.max(0, ...lines.map((match) => match.score));
    const citation =
      lines.length === 0
        ? entry.citation
        : {
            ...entry.citation,
            lines: lines.map(({ line, index }) => ({
              line: index,
              text: line.text,
              confidence: line.confidence,
              box: [...line.box] as [number, number, number, number],
            })),
          };
    return { entry: { ...entry, citation, ocr }, order, score };
  });
  if (textQuestion === undefined) return scored.map(({ entry }) => entry);
  const first = scored.filter(({ entry }) => turnImageIds.includes(entry.citation.id));
  const rest = scored
    .filter(({ entry }) => !turnImageIds.includes(entry.citation.id))
    .sort((left, right) => right.score - left.score || left.order - right.order);
  return [...first, ...rest].map(({ entry }) => entry);
}
