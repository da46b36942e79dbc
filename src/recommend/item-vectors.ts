/**
 * The embeddings of stored items. The vector store returns no vectors from a read, so an item's vector
 * is its media embedded again (a segment's keyframe, a triple's image), as `/v1/similar` does; with the
 * pack's detection head, the same tower pass also gives the embeddings of the objects in it (its regions).
 * Results are kept in a bounded least-recently-used cache keyed by model, tenant, item and media, so a
 * profile's items and the candidates of repeated requests are embedded once.
 */
import { ValidationError } from "../errors.ts";
import type { ModelPack, ObjectDetector } from "../inference/index.ts";
import type { MediaReader } from "../media/media-port.ts";
import type { StoredRecord } from "../store/index.ts";

/** Items cached unless configured otherwise (about 1 KB per vector for a 256-dimensional pack). */
export const DEFAULT_ITEM_VECTOR_CACHE_SIZE = 20_000;

/** What {@link ItemVectors} embeds with. */
export type ItemEmbeddingModels = Pick<ModelPack, "modelId" | "imageEmbedder">;

/** The detection head, for the regions of items. */
export type ItemDetector = Pick<ObjectDetector, "encodeAndDetect">;

/** An item's unit image embedding and its objects' unit embeddings (none without a detection head). */
export interface ItemEmbedding {
  image: Float32Array;
  regions: Float32Array[];
}

/** Embeds stored items' media, with a cache. */
export class ItemVectors {
  readonly #models: ItemEmbeddingModels;
  readonly #detector: ItemDetector | undefined;
  readonly #media: MediaReader | undefined;
  readonly #capacity: number;
  readonly #cache = new Map<string, ItemEmbedding>();

  constructor({
    models,
    detector,
    media,
    capacity = DEFAULT_ITEM_VECTOR_CACHE_SIZE,
  }: {
    models: ItemEmbeddingModels;
    /** The pack's detection head; without it items have no regions. */
    detector?: ItemDetector | undefined;
    media: MediaReader | undefined;
    capacity?: number;
  }) {
    this.#models = models;
    this.#detector = detector;
    this.#media = media;
    this.#capacity = capacity;
  }

  /** Whether items get regions (the pack has a detection head). */
  get detectsRegions(): boolean {
    return this.#detector !== undefined;
  }

  /** Number of items cached. */
  get size(): number {
    return this.#cache.size;
  }

  /** The unit image embeddings of `records` (of `tenant`), in their order. */
  async vectorsOf({
    tenant,
    records,
  }: {
    tenant: string;
    records: readonly StoredRecord[];
  }): Promise<Float32Array[]> {
    return (await this.embeddingsOf({ tenant, records })).map(({ image }) => image);
  }

  /** The image and region embeddings of `records` (of `tenant`), in their order. */
  async embeddingsOf({
    tenant,
    records,
  }: {
    tenant: string;
    records: readonly StoredRecord[];
  }): Promise<ItemEmbedding[]> {
    const modelId = this.#models.modelId;
    const keyOf = (record: StoredRecord) => [modelId, tenant, record.id, imageRefOf(record)].join("\u0000");
    const keys = records.map(keyOf);
    const missing = records.filter((_record, index) => !this.#cache.has(keys[index] as string));
    const fresh = new Map<string, ItemEmbedding>();
    if (missing.length > 0) {
      const media = this.#media;
      if (media === undefined) {
        throw new ValidationError(
          "Recommendations need the blob store to embed stored items, and this server has none.",
        );
      }
      const images = await Promise.all(missing.map((record) => media.read({ ref: imageRefOf(record) })));
      const embedded = await this.#embed(images);
      missing.forEach((record, index) => {
        const embedding = embedded[index];
        if (embedding !== undefined) fresh.set(keyOf(record), embedding);
      });
    }
    return keys.map((key) => {
      const embedding = this.#cache.get(key) ?? fresh.get(key);
      if (embedding === undefined) throw new Error("unreachable: an item was neither cached nor embedded");
      this.#remember(key, embedding);
      return embedding;
    });
  }

  async #embed(images: Uint8Array[]): Promise<ItemEmbedding[]> {
    if (this.#detector === undefined) {
      const vectors = await this.#models.imageEmbedder.embed({ images });
      return vectors.map((image) => ({ image, regions: [] }));
    }
    const { embeddings, detections } = await this.#detector.encodeAndDetect({ images });
    return embeddings.map((image, index) => ({
      image,
      regions: (detections[index]?.detections ?? []).flatMap((detection) =>
        detection.embedding === undefined ? [] : [detection.embedding],
      ),
    }));
  }

  /** Caches `embedding` as the most recently used; the least recently used go past the capacity. */
  #remember(key: string, embedding: ItemEmbedding): void {
    this.#cache.delete(key);
    this.#cache.set(key, embedding);
    while (this.#cache.size > this.#capacity) {
      const oldest = this.#cache.keys().next().value;
      if (oldest === undefined) break;
      this.#cache.delete(oldest);
    }
  }
}

/** Where an item's image lives: a segment's keyframe, otherwise its media. */
export function imageRefOf(record: StoredRecord): string {
  const ref = record.kind === "video_segment" ? record.keyframeRef : record.mediaRef;
  if (ref.length === 0) {
    throw new ValidationError(
      `Item ${record.id} has no image to recommend from (a segment without a keyframe).`,
      {
        context: { id: record.id },
      },
    );
  }
  return ref;
}
