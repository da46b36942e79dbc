/**
 * Image ingestion: from uploaded bytes, URLs or local files to stored, searchable image records.
 *
 * Each item is loaded under the byte limit, hashed (sha256 of the original bytes) and given its
 * deterministic record id, so an image already stored for the tenant is skipped without decoding it,
 * and the same image twice in one request is one record. New images are decoded and validated by the
 * model pack's image processor (format allow-list, pixel limit, first frame, EXIF orientation, truncated
 * data refused), thumbnailed, embedded in batches, their text read by the OCR engine when there is one
 * (one image at a time), their original and thumbnail put in the blob store (referenced by the record),
 * and upserted. A bad item fails alone with a message for the caller; a
 * failure of the store stops the run (the job is then resumable, and a re-run skips what was stored).
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { mapWithConcurrency } from "../concurrency.ts";
import { AppError, MediaError, ValidationError } from "../errors.ts";
import type { Detection, ModelPack, PixelBatch } from "../inference/index.ts";
import type { Logger } from "../logger.ts";
import { type BlobStore, blobRef, claimOwner, sha256Hex } from "../media/blob-store.ts";
import type { OcrReading } from "../media/ocr-lines.ts";
import { makeThumbnail } from "../media/thumbnail.ts";
import { fetchUrl } from "../media/url-fetcher.ts";
import type { LoupeMetrics } from "../metrics/metrics.ts";
import { METADATA_KEY_PATTERN } from "../store/filter.ts";
import { type ImageRecord, recordId, type VectorStore } from "../store/index.ts";
import { type IngestOcr, ocrRecordFields, readImageText } from "./ingest-ocr.ts";
import { type JobError, type JobItemOutcome, type JobWorkItem, toJobError } from "./jobs.ts";
import {
  type IngestRegions,
  REGIONS_MARKER,
  regionRecords,
  regionsMarker,
  replaceRegions,
} from "./regions.ts";
import { assertStorableText, toStorableText } from "./storable-text.ts";
import { type AddedReference, releaseReferences, storeRecords } from "./store-records.ts";

/** Media types fetched for image URLs. */
export const IMAGE_URL_CONTENT_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"] as const;

/** Metadata keys Loupe writes itself; caller metadata may not use them. */
export const RESERVED_METADATA_KEYS = [
  "sha256",
  "contentType",
  "bytes",
  "width",
  "height",
  "format",
  "filename",
  "url",
  "thumbnailRef",
  "ocr",
  "regions",
] as const;

/** Most tags per item. */
export const MAX_TAGS = 32;
/** Longest tag, in characters. */
export const MAX_TAG_LENGTH = 128;
/** Longest title, in characters. */
export const MAX_TITLE_LENGTH = 512;

/**
 * Caller metadata of an item: `tags`, `title` and `source` have meaning (tags and title become the
 * record's searchable `text`; `source` its source field); any other key is kept as given.
 */
export const imageMetadataSchema = z
  .object({
    tags: z.array(z.string().trim().min(1).max(MAX_TAG_LENGTH)).max(MAX_TAGS).optional(),
    title: z.string().trim().min(1).max(MAX_TITLE_LENGTH).optional(),
    source: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$/)
      .optional()
      .describe("how the item arrived; default `upload`, `url` or `cli`"),
  })
  .catchall(z.unknown());

/** Caller metadata, validated. */
export type ImageMetadata = z.infer<typeof imageMetadataSchema>;

/**
 * Validates caller metadata: an object with identifier keys (so each is filterable as
 * `metadata.<key>`), none of Loupe's own keys, typed `tags`/`title`/`source`, within `maxBytes` as JSON.
 *
 * @throws {ValidationError} naming what is wrong and what is allowed.
 */
export function parseImageMetadata({ value, maxBytes }: { value: unknown; maxBytes: number }): ImageMetadata {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ValidationError(
      `metadata must be a JSON object such as {"tags":["beach"],"title":"Dunes"}; got ${Array.isArray(value) ? "an array" : typeof value}.`,
    );
  }
  assertStorableText(value, "metadata");
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new ValidationError("metadata is not serializable as JSON.", { cause: error });
  }
  const bytes = Buffer.byteLength(json, "utf8");
  if (bytes > maxBytes) {
    throw new ValidationError(
      `metadata is ${bytes} bytes as JSON; the limit is ${maxBytes}. Shorten it or raise LOUPE_MAX_METADATA_BYTES.`,
      { context: { bytes, limit: maxBytes } },
    );
  }
  for (const key of Object.keys(value)) {
    if (!METADATA_KEY_PATTERN.test(key)) {
      throw new ValidationError(
        `metadata key ${JSON.stringify(key.slice(0, 80))} is not allowed: keys are letters, digits and _, not starting with a digit, at most 64 characters.`,
        { context: { key: key.slice(0, 80) } },
      );
    }
    if ((RESERVED_METADATA_KEYS as readonly string[]).includes(key)) {
      throw new ValidationError(
        `metadata key "${key}" is reserved: Loupe sets ${RESERVED_METADATA_KEYS.join(", ")} itself. Rename it.`,
        { context: { key } },
      );
    }
  }
  const parsed = imageMetadataSchema.safeParse(JSON.parse(json));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join(".") || "metadata";
    throw new ValidationError(
      `metadata.${where} is invalid: ${issue?.message ?? "invalid"}. Allowed: tags (up to ${MAX_TAGS} strings of at most ${MAX_TAG_LENGTH} characters), title (at most ${MAX_TITLE_LENGTH} characters), source (1–128 of letters, digits and _.:@/+-) and other JSON values.`,
      { context: { issues: parsed.error.issues } },
    );
  }
  const text = imageText(parsed.data);
  if (Buffer.byteLength(text, "utf8") > MAX_TEXT_BYTES) {
    throw new ValidationError(
      `metadata title and tags together are ${Buffer.byteLength(text, "utf8")} bytes of UTF-8; the limit is ${MAX_TEXT_BYTES}. Use fewer or shorter tags.`,
    );
  }
  return parsed.data;
}

/** Longest searchable text (title and tags) of a record, in bytes (the store's limit). */
const MAX_TEXT_BYTES = 8192;

/** The record's searchable text: the title, then one tag per line. */
export function imageText({ title, tags }: Pick<ImageMetadata, "title" | "tags">): string {
  return [title, ...(tags ?? [])].filter((part) => part !== undefined).join("\n");
}

/** Where an image comes from. */
export type ImageSource =
  | { type: "bytes"; bytes: Uint8Array; filename: string }
  | { type: "url"; url: string }
  | { type: "file"; path: string };

/** One image to ingest. */
export interface ImageIngestItem {
  source: ImageSource;
  metadata?: ImageMetadata;
  /**
   * Why the item was refused before ingest (its metadata did not parse): it fails with this error, alone,
   * in the same place as items the pipeline refuses.
   */
  rejected?: AppError;
}

/** How an item is named in results: `{ filename }`, `{ url }` or `{ file }`. */
export function describeImageItem(item: ImageIngestItem): Record<string, string> {
  const { source } = item;
  // Echoed in answers and job snapshots as JSON: a lone surrogate there would not encode either.
  if (source.type === "bytes") return { filename: toStorableText(source.filename) };
  if (source.type === "url") return { url: toStorableText(source.url) };
  return { file: toStorableText(source.path) };
}

/** Settings of URL downloads. */
export interface ImageFetchSettings {
  maxBytes: number;
  timeoutMs: number;
  allowHosts?: readonly string[];
  maxRedirects?: number;
}

/** Options of {@link ImageIngester}. */
export interface ImageIngesterOptions {
  store: VectorStore;
  models: ModelPack;
  blobs: BlobStore;
  /** Largest encoded image, in bytes. */
  maxImageBytes: number;
  /** Largest width × height decoded for thumbnails (the image processor has its own, equal, limit). */
  maxImagePixels?: number;
  /** Longest thumbnail side, in pixels. */
  thumbnailSize?: number;
  fetch: ImageFetchSettings;
  /** Items loaded, checked and embedded together; each group is upserted at once. */
  chunkSize?: number;
  /** Images decoded at once (sharp shares libuv's thread pool with file and DNS work). */
  decodeConcurrency?: number;
  /** URLs downloaded at once. */
  fetchConcurrency?: number;
  /** Reads the text of every new image (`LOUPE_OCR=auto`); absent: no text is read. */
  ocr?: IngestOcr;
  /**
   * Stores the objects the pack's detector finds in every new image as `region` records (`LOUPE_REGIONS`);
   * absent: no regions. The tower runs once per image either way.
   */
  regions?: IngestRegions;
  logger?: Logger;
  /** Where each item's outcome is counted; nowhere when absent. */
  metrics?: Pick<LoupeMetrics, "countIngestItems">;
  /** Adds metadata to new images from their embeddings (classifiers applied at ingest); none when absent. */
  annotate?: IngestAnnotator;
}

/**
 * Metadata for new items from their embeddings, one object per vector, merged over the caller's metadata
 * (e.g. `class_<name>` of the classifiers applied at ingest). A failure is logged and the items are
 * stored without it.
 */
export type IngestAnnotator = (request: {
  tenant: string;
  kind: "image" | "video_segment";
  vectors: readonly Float32Array[];
  /** The images' encoded bytes, in the order of `vectors`. */
  images: readonly Uint8Array[];
}) => Promise<ReadonlyArray<Record<string, unknown>>>;

/** Arguments of {@link ImageIngester.ingest}. */
export interface IngestImagesRequest {
  /** The caller's tenant. */
  tenant: string;
  items: readonly JobWorkItem<ImageIngestItem>[];
  /** Record source when the item's metadata names none (`upload`, `url`, `cli`…). */
  defaultSource?: string;
  signal?: AbortSignal;
  /** Called once per item with its outcome. */
  report(index: number, outcome: JobItemOutcome): void;
}

interface Loaded {
  index: number;
  item: ImageIngestItem;
  bytes: Uint8Array;
  sha256: string;
  id: string;
}

interface Prepared extends Loaded {
  pixels: Float32Array;
  thumb: Awaited<ReturnType<typeof makeThumbnail>>;
}

interface Embedded extends Prepared {
  vector: Float32Array;
  /** The objects found, when regions are stored. */
  detections?: Detection[];
  /** What OCR read, when an engine is configured and the reading succeeded. */
  reading?: OcrReading;
}

/** Errors that concern one item (its bytes, URL or metadata); anything else stops the run. */
function isItemError(error: unknown): error is AppError {
  return (
    error instanceof AppError &&
    (error.status < 500 || error.code === "media_invalid" || error.code === "inference_failed")
  );
}

/**
 * The caller-facing error of an item. The image processor names its own options as the fix
 * (`maxInputPixels`); a caller of the service changes the setting instead, so that is named.
 */
function itemError(error: unknown): JobError {
  const { code, message, field } = toJobError(error);
  return {
    code,
    ...(field === undefined ? {} : { field }),
    message: message
      .replace("raise the pixel limit (maxInputPixels)", "raise LOUPE_MAX_IMAGE_PIXELS")
      .replace("raise the image byte limit (maxInputBytes)", "raise LOUPE_MAX_IMAGE_BYTES"),
  };
}

/** Blob writes in flight at once while a chunk is stored. */
const BLOB_WRITE_CONCURRENCY = 4;

function failed(error: JobError): JobItemOutcome {
  return { status: "failed", error: { ...error } };
}

/** Turns images into stored image records. Build one and reuse it. */
export class ImageIngester {
  readonly #options: Required<
    Omit<ImageIngesterOptions, "logger" | "ocr" | "metrics" | "regions" | "annotate">
  > & {
    annotate?: IngestAnnotator;
    logger?: Logger;
    ocr?: IngestOcr;
    regions?: IngestRegions;
    metrics?: Pick<LoupeMetrics, "countIngestItems">;
  };

  constructor({
    chunkSize = 32,
    decodeConcurrency = 2,
    fetchConcurrency = 4,
    thumbnailSize = 256,
    maxImagePixels = 40_000_000,
    ...rest
  }: ImageIngesterOptions) {
    this.#options = {
      chunkSize,
      decodeConcurrency,
      fetchConcurrency,
      thumbnailSize,
      maxImagePixels,
      ...rest,
    };
  }

  /**
   * Ingests the items, reporting each outcome: `stored` (written now), `skipped` (already stored for
   * the tenant, or an earlier item of this call had the same bytes) or `failed` with the reason.
   *
   * @throws StoreError (or another server-side error) when the store or the pack fails as a whole;
   * items not reported by then are left for a later run.
   */
  async ingest({
    tenant,
    items,
    defaultSource = "upload",
    signal,
    report,
  }: IngestImagesRequest): Promise<void> {
    const firstIndexById = new Map<string, number>();
    const outcomes = new Map<number, JobItemOutcome>();
    const settle = (index: number, outcome: JobItemOutcome) => {
      outcomes.set(index, outcome);
      this.#options.metrics?.countIngestItems("image", outcome.status);
      report(index, outcome);
    };
    for (let start = 0; start < items.length; start += this.#options.chunkSize) {
      if (signal?.aborted === true) return;
      const chunk = items.slice(start, start + this.#options.chunkSize);
      const duplicates: Array<{ index: number; of: number; id: string }> = [];

      const loaded: Loaded[] = [];
      const attempts = await mapWithConcurrency({
        items: chunk,
        limit: this.#options.fetchConcurrency,
        task: async ({ index, input }) => {
          try {
            return { index, item: input, ...(await this.#load(input, tenant, signal)) };
          } catch (error) {
            if (!isItemError(error)) throw error;
            settle(index, failed(itemError(error)));
            return undefined;
          }
        },
      });
      for (const attempt of attempts) {
        if (attempt === undefined) continue;
        const first = firstIndexById.get(attempt.id);
        if (first !== undefined) {
          duplicates.push({ index: attempt.index, of: first, id: attempt.id });
          continue;
        }
        firstIndexById.set(attempt.id, attempt.index);
        loaded.push(attempt);
      }

      const existing = new Set(
        loaded.length === 0
          ? []
          : (
              await this.#options.store.get({ kind: "image", tenant, ids: loaded.map((item) => item.id) })
            ).map((record) => record.id),
      );
      const fresh: Loaded[] = [];
      for (const item of loaded) {
        if (existing.has(item.id)) settle(item.index, { status: "skipped", id: item.id });
        else fresh.push(item);
      }

      const prepared: Prepared[] = [];
      const preparations = await mapWithConcurrency({
        items: fresh,
        limit: this.#options.decodeConcurrency,
        task: async (item) => {
          try {
            const pixels = await this.#options.models.imageProcessor.preprocess({ image: item.bytes });
            const thumb = await makeThumbnail({
              bytes: item.bytes,
              size: this.#options.thumbnailSize,
              maxInputPixels: this.#options.maxImagePixels,
            });
            return { ...item, pixels, thumb };
          } catch (error) {
            if (!isItemError(error)) throw error;
            settle(item.index, { ...failed(itemError(error)), id: item.id });
            return undefined;
          }
        },
      });
      for (const preparation of preparations) if (preparation !== undefined) prepared.push(preparation);

      const embedded = await this.#embed(prepared, settle);
      await this.#readText({ embedded, signal });
      if (embedded.length > 0) await this.#store({ tenant, defaultSource, embedded, settle });

      for (const duplicate of duplicates) {
        const original = outcomes.get(duplicate.of);
        settle(
          duplicate.index,
          original === undefined || original.status !== "failed"
            ? { status: "skipped", id: duplicate.id }
            : { ...failed(original.error), id: duplicate.id },
        );
      }
    }
  }

  /** Reads the item's bytes under the byte limit and derives its hash and id. */
  async #load(
    item: ImageIngestItem,
    tenant: string,
    signal: AbortSignal | undefined,
  ): Promise<{ bytes: Uint8Array; sha256: string; id: string }> {
    const { maxImageBytes } = this.#options;
    if (item.rejected !== undefined) throw item.rejected;
    // Checked before any byte is read or written, so an item the store could not keep fails alone.
    assertStorableText(item.metadata ?? {}, "metadata");
    if (item.source.type === "url") assertStorableText(item.source.url, "url");
    const tooLarge = (size: number, what: string) =>
      new MediaError(
        `${what} is ${size} bytes; the limit is ${maxImageBytes} bytes. Send a smaller image or raise LOUPE_MAX_IMAGE_BYTES.`,
        { code: "media_too_large", status: 413, context: { bytes: size, limit: maxImageBytes } },
      );
    let bytes: Uint8Array;
    const { source } = item;
    if (source.type === "bytes") {
      bytes = source.bytes;
    } else if (source.type === "url") {
      const fetched = await fetchUrl({
        url: source.url,
        maxBytes: Math.min(this.#options.fetch.maxBytes, maxImageBytes),
        timeoutMs: this.#options.fetch.timeoutMs,
        allowedContentTypes: IMAGE_URL_CONTENT_TYPES,
        allowHosts: this.#options.fetch.allowHosts,
        maxRedirects: this.#options.fetch.maxRedirects,
        signal,
      });
      bytes = fetched.bytes;
    } else {
      let size: number;
      try {
        const info = await stat(source.path);
        if (!info.isFile()) throw new Error("not a regular file");
        size = info.size;
      } catch (error) {
        throw new ValidationError(
          `Cannot read ${source.path}: ${error instanceof Error ? error.message : String(error)}. Give a path to an image file.`,
          { cause: error },
        );
      }
      if (size > maxImageBytes) throw tooLarge(size, `File ${path.basename(source.path)}`);
      bytes = await readFile(source.path);
    }
    if (bytes.length === 0) {
      throw new MediaError("The image is empty (0 bytes). Send a JPEG, PNG, WebP or GIF file.", {
        code: "media_empty",
        context: { bytes: 0 },
      });
    }
    if (bytes.length > maxImageBytes) throw tooLarge(bytes.length, "The image");
    const sha256 = sha256Hex(bytes);
    const id = recordId({
      kind: "image",
      tenant,
      contentSha256: sha256,
      modelId: this.#options.models.modelId,
    });
    return { bytes, sha256, id };
  }

  /**
   * Reads the text of each embedded image, one at a time (the engine's own limits bound each reading), so
   * one ingest never holds more than one image in OCR. A failed reading leaves the image without text.
   */
  async #readText({ embedded, signal }: { embedded: Embedded[]; signal?: AbortSignal }): Promise<void> {
    const { ocr, logger } = this.#options;
    if (ocr === undefined) return;
    for (const item of embedded) {
      const reading = await readImageText({
        ocr,
        image: item.bytes,
        signal,
        logger,
        context: { id: item.id },
      });
      if (reading !== undefined) item.reading = reading;
    }
  }

  /** Embeds prepared images in the embedder's batch size; a batch that fails fails its items only. */
  async #embed(
    prepared: readonly Prepared[],
    settle: (index: number, outcome: JobItemOutcome) => void,
  ): Promise<Embedded[]> {
    const { imageEmbedder, imageProcessor } = this.#options.models;
    const height = imageProcessor.outputHeight;
    const width = imageProcessor.outputWidth;
    const plane = 3 * height * width;
    const result: Embedded[] = [];
    for (let start = 0; start < prepared.length; start += imageEmbedder.batchSize) {
      const batch = prepared.slice(start, start + imageEmbedder.batchSize);
      const data = new Float32Array(batch.length * plane);
      batch.forEach((item, position) => {
        data.set(item.pixels, position * plane);
      });
      const pixels: PixelBatch = { data, dims: [batch.length, 3, height, width] };
      try {
        const regions = this.#options.regions;
        const { embeddings, tokens } = await imageEmbedder.encodePixels({
          pixels,
          withTokens: regions !== undefined,
        });
        const found =
          regions === undefined || tokens === undefined
            ? undefined
            : await regions.detector.detectTokens({
                tokens,
                sizes: batch.map((item) => ({ width: item.thumb.width, height: item.thumb.height })),
                images: batch.map((item) => item.bytes),
                ...(regions.threshold === undefined ? {} : { threshold: regions.threshold }),
              });
        batch.forEach((item, position) => {
          const vector = embeddings[position];
          const detections = found?.[position]?.detections;
          if (vector !== undefined)
            result.push({ ...item, vector, ...(detections === undefined ? {} : { detections }) });
        });
      } catch (error) {
        if (!isItemError(error)) throw error;
        for (const item of batch) settle(item.index, { ...failed(itemError(error)), id: item.id });
      }
    }
    return result;
  }

  /**
   * Puts originals and thumbnails in the blob store, each referenced as it is written, then upserts the
   * records. A record the store refuses fails alone; the references of every record not stored are
   * released, so no blob outlives a failed write.
   *
   * @throws what the store threw when it failed as a whole (after the chunk's references are released).
   */
  async #store({
    tenant,
    defaultSource,
    embedded,
    settle,
  }: {
    tenant: string;
    defaultSource: string;
    embedded: readonly Embedded[];
    settle: (index: number, outcome: JobItemOutcome) => void;
  }): Promise<void> {
    const { blobs, store, logger } = this.#options;
    const added: AddedReference[] = [];
    const records: ImageRecord[] = [];
    const annotations = await this.#annotations({ tenant, embedded });
    const write = async (item: Embedded): Promise<ImageRecord> => {
      // Referenced as written, before the record, so no record ever points at a blob another delete could
      // remove; under a claim of this run's own, so a failure releases nothing a concurrent run stored.
      const owner = claimOwner(`${tenant}/${item.id}`);
      const original = await blobs.put({ bytes: item.bytes, contentType: item.thumb.contentType, owner });
      added.push({ recordId: item.id, ref: original.sha256, owner });
      const thumbnail = await blobs.put({
        bytes: item.thumb.thumbnail.bytes,
        contentType: item.thumb.thumbnail.contentType,
        owner,
      });
      added.push({ recordId: item.id, ref: thumbnail.sha256, owner });
      return this.#record({ defaultSource, item, original, thumbnail, annotation: annotations.get(item.id) });
    };
    // Blob writes are fsynced; a few at once overlap their waits. Each group settles whole, so a failed
    // write leaves no write running whose reference would escape the release below.
    for (let start = 0; start < embedded.length; start += BLOB_WRITE_CONCURRENCY) {
      const group = await Promise.allSettled(
        embedded.slice(start, start + BLOB_WRITE_CONCURRENCY).map(write),
      );
      const failure = group.find((result) => result.status === "rejected");
      if (failure !== undefined) {
        await releaseReferences({ references: added, release: this.#release, logger });
        throw failure.reason;
      }
      for (const result of group) if (result.status === "fulfilled") records.push(result.value);
    }
    const outcome = await storeRecords({
      store,
      kind: "image",
      tenant,
      records,
      added,
      release: this.#release,
      logger,
    });
    const stored = new Set(outcome.stored);
    await this.#storeRegions({
      tenant,
      records: records.filter((record) => stored.has(record.id)),
      embedded,
    });
    for (const item of embedded) {
      const rejection = outcome.rejected.get(item.id);
      if (stored.has(item.id)) settle(item.index, { status: "stored", id: item.id });
      else if (rejection !== undefined) settle(item.index, { ...failed(itemError(rejection)), id: item.id });
    }
    if (outcome.failure !== undefined) throw outcome.failure;
  }

  readonly #release = ({ ref, owner }: AddedReference) => this.#options.blobs.release({ sha256: ref, owner });

  /**
   * Writes the regions of the images just stored. A failure leaves those images stored without regions
   * (logged; the region backfill job finds them) rather than failing images that are already stored.
   */
  async #storeRegions({
    tenant,
    records,
    embedded,
  }: {
    tenant: string;
    records: readonly ImageRecord[];
    embedded: readonly Embedded[];
  }): Promise<void> {
    if (this.#options.regions === undefined || records.length === 0) return;
    const detectionsById = new Map(embedded.map((item) => [item.id, item.detections]));
    const regions = records.flatMap((record) =>
      regionRecords({
        tenant,
        modelId: this.#options.models.modelId,
        parent: { ...record, kind: "image" },
        detections: detectionsById.get(record.id) ?? [],
      }),
    );
    try {
      await replaceRegions({
        store: this.#options.store,
        tenant,
        parentIds: records.map((record) => record.id),
        records: regions,
      });
    } catch (error) {
      this.#options.logger?.warn(
        { err: error, images: records.length, regions: regions.length },
        "could not store the regions of ingested images; the region backfill job can add them",
      );
      // Unmarked, so the backfill finds them (best effort: the store has just failed).
      await this.#options.store
        .update({
          kind: "image",
          tenant,
          patches: records.map((record) => {
            const { [REGIONS_MARKER]: _marker, ...metadata } = record.metadata ?? {};
            return { id: record.id, metadata };
          }),
        })
        .catch(() => undefined);
    }
  }

  /** The annotator's metadata by item id; none when there is no annotator or it failed (logged). */
  async #annotations({
    tenant,
    embedded,
  }: {
    tenant: string;
    embedded: readonly Embedded[];
  }): Promise<Map<string, Record<string, unknown>>> {
    const { annotate, logger } = this.#options;
    if (annotate === undefined || embedded.length === 0) return new Map();
    try {
      const found = await annotate({
        tenant,
        kind: "image",
        vectors: embedded.map((item) => item.vector),
        images: embedded.map((item) => item.bytes),
      });
      return new Map(embedded.map((item, index) => [item.id, found[index] ?? {}]));
    } catch (error) {
      logger?.warn(
        { err: error, images: embedded.length },
        "could not annotate new images; stored without it",
      );
      return new Map();
    }
  }

  #record({
    defaultSource,
    item,
    original,
    thumbnail,
    annotation,
  }: {
    defaultSource: string;
    item: Embedded;
    original: { sha256: string };
    thumbnail: { sha256: string };
    annotation?: Record<string, unknown>;
  }): ImageRecord {
    const { tags, title, source, ...extra } = item.item.metadata ?? {};
    const { source: from } = item.item;
    const origin =
      from.type === "bytes"
        ? { filename: toStorableText(from.filename) }
        : from.type === "url"
          ? { url: from.url }
          : { filename: toStorableText(path.basename(from.path)) };
    const metadata: Record<string, unknown> = {
      ...extra,
      ...annotation,
      ...(tags === undefined ? {} : { tags }),
      ...(title === undefined ? {} : { title }),
      ...origin,
      sha256: item.sha256,
      contentType: item.thumb.contentType,
      bytes: item.bytes.length,
      width: item.thumb.width,
      height: item.thumb.height,
      format: item.thumb.format,
      thumbnailRef: blobRef(thumbnail.sha256),
      // Marked as having its regions (written right after the record; see #storeRegions).
      ...(item.detections === undefined
        ? {}
        : regionsMarker(item.detections.filter((found) => found.embedding !== undefined).length)),
    };
    const read =
      item.reading === undefined || this.#options.ocr === undefined
        ? undefined
        : ocrRecordFields({
            reading: item.reading,
            minConfidence: this.#options.ocr.minConfidence,
            metadata,
          });
    return {
      id: item.id,
      modelId: this.#options.models.modelId,
      mediaRef: blobRef(original.sha256),
      source: source ?? defaultSource,
      text: imageText({ title, tags }),
      metadata: read?.metadata ?? metadata,
      ...(read === undefined ? {} : { ocrText: read.ocrText }),
      vector: item.vector,
    };
  }
}
