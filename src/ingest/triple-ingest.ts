/**
 * Ingest of image-question-answer triples: each image (bytes, a URL, or a stored image's id) and each
 * question are embedded, the image is stored as a blob, and the triple is upserted with its
 * deterministic id (tenant, image sha256, model id, question). Ingesting the same triple again adds
 * nothing: existing ids are skipped before any embedding. One bad item never fails the batch; it is
 * reported with its reason.
 */
import { createHash } from "node:crypto";
import { AppError, MediaError, ValidationError } from "../errors.ts";
import type { ModelPack } from "../inference/index.ts";
import { sniffImageFormat } from "../inference/index.ts";
import type { Logger } from "../logger.ts";
import { claimOwner } from "../media/blob-store.ts";
import type { ImageReference, MediaReader, MediaWriter } from "../media/media-port.ts";
import { makeThumbnail } from "../media/thumbnail.ts";
import type { LoupeMetrics } from "../metrics/metrics.ts";
import { recordId, type TripleRecord, type VectorStore } from "../store/index.ts";
import { type ImageMetadata, imageText, parseImageMetadata } from "./image-ingest.ts";
import type { JobItemOutcome } from "./jobs.ts";
import { assertStorableText } from "./storable-text.ts";
import { type AddedReference, releaseReferences, storeRecords } from "./store-records.ts";

/** Longest question, in characters. */
export const MAX_QUESTION_LENGTH = 500;
/** Longest answer, in characters. */
export const MAX_ANSWER_LENGTH = 2000;
/** Most triples one call takes (the HTTP route applies the lower `LOUPE_MAX_ITEMS_PER_REQUEST`). */
export const MAX_TRIPLES_PER_CALL = 100_000;

/** One triple to ingest. */
export interface TripleInput {
  image: ImageReference;
  question: string;
  answer: string;
  /** Caller metadata: `tags` (strings), `title`, `source`, anything else as JSON. */
  metadata?: Record<string, unknown>;
}

/** Outcome of one triple, in input order. */
export interface TripleItemResult {
  index: number;
  /** `stored`: written now; `skipped`: the same triple was already stored; `failed`: see `error`. */
  status: "stored" | "skipped" | "failed";
  id?: string;
  /** Why the item failed; `field` names the input at fault when one is. */
  error?: { code: string; message: string; field?: string };
}

/** A triple's result as a job item's outcome. */
export function tripleJobOutcome(result: TripleItemResult): JobItemOutcome {
  if (result.status === "failed") {
    return {
      status: "failed",
      error: result.error ?? { code: "internal_error", message: "The item failed." },
      ...(result.id === undefined ? {} : { id: result.id }),
    };
  }
  return { status: result.status, id: result.id ?? "" };
}

/** Outcome of {@link TripleIngester.ingest}. */
export interface TripleIngestResult {
  items: TripleItemResult[];
  counts: { stored: number; skipped: number; failed: number };
}

/** Fetches an image URL (through `fetchUrl`, with the server's limits and allow-list). */
export type ImageUrlFetcher = (options: { url: string }) => Promise<{ bytes: Uint8Array }>;

/** Options of {@link TripleIngester}. */
export interface TripleIngesterOptions {
  store: VectorStore;
  models: Pick<ModelPack, "modelId" | "textEmbedder" | "imageEmbedder">;
  media: MediaReader & MediaWriter;
  /** Without it, URL images fail with a message saying URLs are not enabled. */
  fetchImage?: ImageUrlFetcher;
  /** Largest caller metadata, as JSON bytes (`LOUPE_MAX_METADATA_BYTES`). */
  maxMetadataBytes?: number;
  /** Longest side of the WebP thumbnail kept beside each image (`LOUPE_THUMBNAIL_SIZE`). */
  thumbnailSize?: number;
  /** Largest width × height decoded for the thumbnail (`LOUPE_MAX_IMAGE_PIXELS`). */
  maxImagePixels?: number;
  logger?: Logger;
  /** Where each item's outcome is counted; nowhere when absent. */
  metrics?: Pick<LoupeMetrics, "countIngestItems">;
}

const CONTENT_TYPES: Record<string, string> = {
  jpeg: "image/jpeg",
  png: "image/png",
  gif: "image/gif",
  webp: "image/webp",
};

interface Prepared {
  index: number;
  id: string;
  bytes: Uint8Array;
  contentType: string;
  metadata: ImageMetadata;
  question: string;
  answer: string;
  source: string;
}

/** The reason shown for a failed item; unexpected errors get a fixed message (details are logged). */
export function itemError(error: unknown): { code: string; message: string; field?: string } {
  if (error instanceof AppError) {
    const field = error.context.field;
    return {
      code: error.code,
      message: error.message,
      ...(typeof field === "string" && field.length > 0 ? { field } : {}),
    };
  }
  return { code: "internal_error", message: "The item failed unexpectedly; see the server log." };
}

function checkText(value: unknown, name: string, limit: number): string {
  const text = typeof value === "string" ? value.trim() : "";
  if (text.length === 0) throw new ValidationError(`${name} must be a non-empty string.`);
  assertStorableText(text, name);
  if (text.length > limit) {
    throw new ValidationError(`${name} is ${text.length} characters; the limit is ${limit}. Shorten it.`);
  }
  return text;
}

/** Searchable text of a triple: its question and answer, then the caller's title and tags. */
function tripleText(question: string, answer: string, metadata: ImageMetadata): string {
  // Question and answer are capped at 500 + 2000 characters and tags and title by the metadata rules, so
  // the text stays under the store's 8 KiB.
  return [question, answer, imageText(metadata)].filter((part) => part.length > 0).join("\n");
}

function summarize(results: TripleItemResult[]): TripleIngestResult {
  const counts = { stored: 0, skipped: 0, failed: 0 };
  for (const result of results) counts[result.status] += 1;
  return { items: results, counts };
}

/** Embeds and stores image-question-answer triples. */
export class TripleIngester {
  readonly #store: VectorStore;
  readonly #models: TripleIngesterOptions["models"];
  readonly #media: MediaReader & MediaWriter;
  readonly #fetchImage: ImageUrlFetcher | undefined;
  readonly #maxMetadataBytes: number;
  readonly #thumbnailSize: number;
  readonly #maxImagePixels: number;
  readonly #logger: Logger | undefined;
  readonly #metrics: Pick<LoupeMetrics, "countIngestItems"> | undefined;

  constructor({
    store,
    models,
    media,
    fetchImage,
    maxMetadataBytes = 16_384,
    thumbnailSize = 256,
    maxImagePixels = 40_000_000,
    logger,
    metrics,
  }: TripleIngesterOptions) {
    this.#metrics = metrics;
    this.#store = store;
    this.#models = models;
    this.#media = media;
    this.#fetchImage = fetchImage;
    this.#maxMetadataBytes = maxMetadataBytes;
    this.#thumbnailSize = thumbnailSize;
    this.#maxImagePixels = maxImagePixels;
    this.#logger = logger;
  }

  /**
   * Ingests triples for `tenant`. Items are checked, their images read, hashed and checked for an
   * existing record; new ones are embedded (images in batches, falling back to one at a time when a
   * batch holds an undecodable image), their images stored, and all upserted at once.
   *
   * @param source the record source when an item's metadata names none (`upload`, `jsonl`, `cli`).
   */
  async ingest({
    tenant,
    items,
    source = "upload",
  }: {
    tenant: string;
    items: readonly TripleInput[];
    source?: string;
  }): Promise<TripleIngestResult> {
    if (items.length > MAX_TRIPLES_PER_CALL) {
      throw new ValidationError(
        `One ingest takes at most ${MAX_TRIPLES_PER_CALL} triples; got ${items.length}. Split it.`,
      );
    }
    const results: TripleItemResult[] = items.map((_, index) => ({ index, status: "failed" }));
    const fail = (index: number, error: unknown) => {
      results[index] = { ...results[index], index, status: "failed", error: itemError(error) };
    };

    const prepared: Prepared[] = [];
    for (const [index, input] of items.entries()) {
      try {
        prepared.push(await this.#prepare({ tenant, index, input, source }));
      } catch (error) {
        fail(index, error);
      }
    }

    // Existing ids are skipped, and a triple repeated within the request is written once.
    const existing = new Set<string>();
    for (let start = 0; start < prepared.length; start += 1000) {
      const ids = prepared.slice(start, start + 1000).map((item) => item.id);
      for (const record of await this.#store.get({ kind: "triple", tenant, ids })) existing.add(record.id);
    }
    const pending: Prepared[] = [];
    const seen = new Set<string>();
    for (const item of prepared) {
      if (existing.has(item.id) || seen.has(item.id)) {
        results[item.index] = { index: item.index, status: "skipped", id: item.id };
      } else {
        seen.add(item.id);
        pending.push(item);
      }
    }

    if (pending.length === 0) return this.#finish(results);
    const imageVectors = await this.#embedImages(pending, fail);
    const embeddable = pending.filter((item) => imageVectors.has(item.index));
    const questionVectors = await this.#models.textEmbedder.embed({
      texts: embeddable.map((item) => item.question),
    });

    const records: TripleRecord[] = [];
    const written: Prepared[] = [];
    const added: AddedReference[] = [];
    const release = ({ ref, owner }: AddedReference) => this.#media.release({ ref, owner });
    for (const [position, item] of embeddable.entries()) {
      // A claim of this run's own: a failure releases nothing a concurrent ingest of the same triple stored.
      const owner = claimOwner(`${tenant}/${item.id}`);
      const own: AddedReference[] = [];
      try {
        const { thumbnail } = await makeThumbnail({
          bytes: item.bytes,
          size: this.#thumbnailSize,
          maxInputPixels: this.#maxImagePixels,
        });
        // Each blob is referenced as it is written, before the record exists.
        const { ref } = await this.#media.write({ bytes: item.bytes, contentType: item.contentType, owner });
        own.push({ recordId: item.id, ref, owner });
        const thumbnailRef = (await this.#media.write({ ...thumbnail, owner })).ref;
        own.push({ recordId: item.id, ref: thumbnailRef, owner });
        const { source: _source, ...metadata } = item.metadata;
        records.push({
          id: item.id,
          modelId: this.#models.modelId,
          mediaRef: ref,
          source: item.source,
          text: tripleText(item.question, item.answer, item.metadata),
          metadata: { ...metadata, thumbnailRef },
          question: item.question,
          answer: item.answer,
          imageVector: imageVectors.get(item.index) as Float32Array,
          questionVector: questionVectors[position] as Float32Array,
        });
        written.push(item);
        added.push(...own);
      } catch (error) {
        fail(item.index, error);
        await releaseReferences({ references: own, release, logger: this.#logger });
      }
    }
    if (records.length > 0) {
      const outcome = await storeRecords({
        store: this.#store,
        kind: "triple",
        tenant,
        records,
        added,
        release,
        logger: this.#logger,
      });
      const stored = new Set(outcome.stored);
      for (const item of written) {
        if (stored.has(item.id)) results[item.index] = { index: item.index, status: "stored", id: item.id };
        else fail(item.index, outcome.rejected.get(item.id) ?? outcome.failure);
      }
    }
    return this.#finish(results);
  }

  /** The result of a call whose every item has its outcome, each counted. */
  #finish(results: TripleItemResult[]): TripleIngestResult {
    const summary = summarize(results);
    for (const [status, count] of Object.entries(summary.counts)) {
      this.#metrics?.countIngestItems("triple", status as TripleItemResult["status"], count);
    }
    return summary;
  }

  async #prepare({
    tenant,
    index,
    input,
    source,
  }: {
    tenant: string;
    index: number;
    input: TripleInput;
    source: string;
  }): Promise<Prepared> {
    const question = checkText(input.question, "question", MAX_QUESTION_LENGTH);
    const answer = checkText(input.answer, "answer", MAX_ANSWER_LENGTH);
    const metadata = parseImageMetadata({ value: input.metadata, maxBytes: this.#maxMetadataBytes });
    let bytes: Uint8Array;
    let itemSource = source;
    if ("bytes" in input.image) {
      bytes = input.image.bytes;
    } else if ("url" in input.image) {
      if (this.#fetchImage === undefined) {
        throw new ValidationError("Image URLs are not enabled on this server; send the image bytes.");
      }
      bytes = (await this.#fetchImage({ url: input.image.url })).bytes;
      itemSource = "url";
    } else {
      bytes = await this.#readStoredImage({ tenant, id: input.image.id });
    }
    const format = sniffImageFormat(bytes);
    const contentType = format === undefined ? undefined : CONTENT_TYPES[format];
    if (contentType === undefined) {
      throw new MediaError(
        `The image is not JPEG, PNG, WebP or GIF (its first bytes are ${Buffer.from(bytes.subarray(0, 8)).toString("hex") || "empty"}).`,
        { status: 415, code: "unsupported_media_type" },
      );
    }
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const id = recordId({
      kind: "triple",
      tenant,
      contentSha256: sha256,
      modelId: this.#models.modelId,
      question,
    });
    return {
      index,
      id,
      bytes,
      contentType,
      metadata,
      question,
      answer,
      source:
        typeof metadata.source === "string" && metadata.source.length > 0 ? metadata.source : itemSource,
    };
  }

  async #readStoredImage({ tenant, id }: { tenant: string; id: string }): Promise<Uint8Array> {
    if (!id.startsWith("img_")) {
      throw new ValidationError(`A triple's image id must name a stored image (img_…); got ${id}.`);
    }
    const [record] = await this.#store.get({ kind: "image", tenant, ids: [id] });
    if (record === undefined) {
      throw new ValidationError(`No stored image with id ${id}; ingest it first or send the image itself.`);
    }
    return this.#media.read({ ref: record.mediaRef });
  }

  async #embedImages(
    items: readonly Prepared[],
    fail: (index: number, error: unknown) => void,
  ): Promise<Map<number, Float32Array>> {
    const vectors = new Map<number, Float32Array>();
    const embedder = this.#models.imageEmbedder;
    for (let start = 0; start < items.length; start += embedder.batchSize) {
      const group = items.slice(start, start + embedder.batchSize);
      try {
        const embedded = await embedder.embed({ images: group.map((item) => item.bytes) });
        for (const [position, item] of group.entries()) {
          vectors.set(item.index, embedded[position] as Float32Array);
        }
      } catch {
        // One undecodable image fails its whole batch; redo the batch one by one to find it.
        for (const item of group) {
          try {
            const [vector] = await embedder.embed({ images: [item.bytes] });
            vectors.set(item.index, vector as Float32Array);
          } catch (error) {
            fail(item.index, error);
          }
        }
      }
    }
    return vectors;
  }
}
