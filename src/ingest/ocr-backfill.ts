/**
 * The OCR backfill: reads the text of items stored without it (ingested while `LOUPE_OCR=off`, or before
 * Loupe read text at all) and writes it into their records with `VectorStore.update`, keeping their
 * vectors and ids. It runs as a job (`POST /v1/jobs` kind `ocr`, `loupe ocr backfill`).
 *
 * The marker of a record that is done is its `metadata.ocr`: the backfill lists only records without one
 * (`metadata.ocr` does not exist), so a run stopped part-way — a shutdown, a crash — is continued by the
 * next run, which finds only what is left. Records are read one at a time: an image's original, a
 * segment's stored keyframe (what ingest reads too, so the boxes refer to the image served for it).
 */
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { MediaReader } from "../media/media-port.ts";
import { readOcrMetadata } from "../media/ocr-lines.ts";
import type { FilterSpec, RecordKind, StoredRecord, VectorStore } from "../store/index.ts";
import { type Backfill, type BackfillItem, backfillRunner, countKinds, listPages } from "./backfill.ts";
import { type IngestOcr, ocrRecordFields } from "./ingest-ocr.ts";
import { type JobItemOutcome, type JobRunner, toJobError } from "./jobs.ts";

/** Kinds whose media has text to read: an image's original, a video segment's keyframe. */
export const OCR_BACKFILL_KINDS = ["image", "video_segment"] as const;
/** A kind the backfill reads. */
export type OcrBackfillKind = (typeof OCR_BACKFILL_KINDS)[number];

/** The kind of job the backfill runs as. */
export const OCR_JOB_KIND = "ocr";

/** One record the backfill reads. */
export type OcrBackfillItem = BackfillItem<OcrBackfillKind>;

/** Records without a reading: the backfill's work list (the marker of a record done is `metadata.ocr`). */
const WITHOUT_READING: FilterSpec = [{ field: "metadata.ocr", op: "exists", value: false }];

/** Options of {@link OcrBackfill}. */
export interface OcrBackfillOptions {
  store: VectorStore;
  /** Reads stored media (originals and keyframes). */
  media: MediaReader;
  ocr: IngestOcr;
  /** Records listed per store call. */
  pageSize?: number;
  logger?: Logger;
}

/** Errors that concern one record (its media is gone or unreadable, the engine refused it). */
function isItemError(error: unknown): boolean {
  return (
    !(error instanceof AppError) ||
    error.status < 500 ||
    error.code === "media_invalid" ||
    error.code === "inference_failed"
  );
}

/** Reads the text of stored items that have none. Build one and reuse it. */
export class OcrBackfill implements Backfill<OcrBackfillKind> {
  readonly #store: VectorStore;
  readonly #media: MediaReader;
  readonly #ocr: IngestOcr;
  readonly #pageSize: number;
  readonly #logger: Logger | undefined;

  constructor({ store, media, ocr, pageSize = 100, logger }: OcrBackfillOptions) {
    this.#store = store;
    this.#media = media;
    this.#ocr = ocr;
    this.#pageSize = pageSize;
    this.#logger = logger;
  }

  /** Every kind it reads. */
  get kinds(): readonly OcrBackfillKind[] {
    return OCR_BACKFILL_KINDS;
  }

  /** The runner of one backfill job in this process over the tenant's records of `kinds` ({@link backfillRunner}). */
  runner({
    tenant,
    kinds,
  }: {
    tenant: string;
    kinds?: readonly OcrBackfillKind[];
  }): JobRunner<OcrBackfillItem> {
    return backfillRunner(this, { tenant, ...(kinds === undefined ? {} : { kinds }) });
  }

  /** How many records of `kinds` the tenant has, read or not. */
  count({ tenant, kinds }: { tenant: string; kinds: readonly OcrBackfillKind[] }): Promise<number> {
    return countKinds({ store: this.#store, tenant, kinds });
  }

  /** The tenant's records of `kind` without a reading, a page at a time (see {@link listPages}). */
  unread({
    tenant,
    kind,
    signal,
  }: {
    tenant: string;
    kind: OcrBackfillKind;
    signal?: AbortSignal;
  }): AsyncGenerator<StoredRecord[]> {
    return listPages({
      store: this.#store,
      tenant,
      kind,
      filter: WITHOUT_READING,
      pageSize: this.#pageSize,
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /**
   * Reads one record's text and writes it: `stored` when written, `skipped` when the record has a reading
   * already or is gone, `failed` when its media cannot be read.
   *
   * @throws what the store threw when it failed as a whole (the job fails; a resume continues).
   */
  async read({
    tenant,
    item,
    record: listedRecord,
    signal,
  }: {
    tenant: string;
    item: OcrBackfillItem;
    record?: StoredRecord;
    signal: AbortSignal;
  }): Promise<JobItemOutcome> {
    const { kind, id } = item;
    const record =
      listedRecord ?? (await this.#store.get({ kind: kind as RecordKind, tenant, ids: [id] }))[0];
    if (record === undefined) return { status: "skipped", id, detail: { reason: "deleted" } };
    if (readOcrMetadata(record.metadata) !== undefined) return { status: "skipped", id };
    const ref = record.kind === "video_segment" ? record.keyframeRef : record.mediaRef;
    let fields: ReturnType<typeof ocrRecordFields>;
    try {
      const image = await this.#media.read({ ref });
      const reading = await this.#ocr.engine.read({ image, signal });
      fields = ocrRecordFields({
        reading,
        minConfidence: this.#ocr.minConfidence,
        metadata: record.metadata,
      });
    } catch (error) {
      if (signal.aborted || !isItemError(error)) throw error;
      this.#logger?.warn({ err: error, id, kind }, "reading the text of a stored item failed");
      return { status: "failed", id, error: toJobError(error) };
    }
    const { updated } = await this.#store.update({
      kind,
      tenant,
      patches: [{ id, ocrText: fields.ocrText, metadata: fields.metadata }],
    });
    if (updated === 0) return { status: "skipped", id, detail: { reason: "deleted" } };
    return { status: "stored", id, detail: { lines: countLines(fields.metadata) } };
  }
}

function countLines(metadata: Record<string, unknown>): number {
  return readOcrMetadata(metadata)?.lines.length ?? 0;
}
