/**
 * The search layer: text/image search, recommendation, zero-shot classification and auto-tags
 * ({@link SearchService}), and the wiring that builds it and the triple ingester from the app's services.
 */
import type { Config } from "../config.ts";
import { NotFoundError } from "../errors.ts";
import type { ModelPack } from "../inference/index.ts";
import { TripleIngester } from "../ingest/triple-ingest.ts";
import { type BlobStore, blobRef, parseBlobRef } from "../media/blob-store.ts";
import { fetchUrl } from "../media/url-fetcher.ts";
import type { VectorStore } from "../store/index.ts";
import type { MediaReader, MediaWriter } from "./media-port.ts";
import { readLogitScale, SearchService } from "./search-service.ts";

export { type ImageReference, parseImageReference } from "./image-input.ts";
export type { MediaReader, MediaWriter } from "./media-port.ts";
export * from "./search-service.ts";

/** The {@link MediaReader} and {@link MediaWriter} of a blob store: `blob:<sha256>` references. */
export function blobMedia(blobs: BlobStore): MediaReader & MediaWriter {
  return {
    async read({ ref }) {
      const key = parseBlobRef(ref);
      if (key === undefined) {
        throw new NotFoundError(`The item's media ${JSON.stringify(ref.slice(0, 80))} is not a stored blob.`);
      }
      return (await blobs.get(key)).bytes();
    },
    async write({ bytes, contentType, owner }) {
      const { sha256 } = await blobs.put({ bytes, contentType });
      await blobs.addReference({ sha256, owner });
      return { ref: blobRef(sha256) };
    },
  };
}

/** What {@link createSearchServices} builds. */
export interface SearchServices {
  search: SearchService;
  triples: TripleIngester;
}

/**
 * Builds the search service and the triple ingester over the app's store, pack and blob store. The
 * pack's logit scale is read on first use, so a missing pack fails only the requests that need it.
 */
export function createSearchServices({
  store,
  models,
  blobs,
  config,
}: {
  store: VectorStore;
  models: ModelPack;
  blobs: BlobStore;
  config: Pick<
    Config,
    | "modelPack"
    | "urlAllowHosts"
    | "urlMaxBytes"
    | "urlTimeoutMs"
    | "urlMaxRedirects"
    | "maxImageBytes"
    | "maxImagePixels"
    | "maxMetadataBytes"
    | "thumbnailSize"
  >;
}): SearchServices {
  const media = blobMedia(blobs);
  const search = new SearchService({
    store,
    models,
    media,
    logitScale: () => readLogitScale({ packDir: config.modelPack }),
  });
  const triples = new TripleIngester({
    store,
    models,
    media,
    maxMetadataBytes: config.maxMetadataBytes,
    thumbnailSize: config.thumbnailSize,
    maxImagePixels: config.maxImagePixels,
    fetchImage: ({ url }) =>
      fetchUrl({
        url,
        maxBytes: Math.min(config.urlMaxBytes, config.maxImageBytes),
        timeoutMs: config.urlTimeoutMs,
        maxRedirects: config.urlMaxRedirects,
        allowHosts: config.urlAllowHosts,
        allowedContentTypes: ["image/jpeg", "image/png", "image/webp", "image/gif"],
      }),
  });
  return { search, triples };
}
