/** The media ports over the blob store: records refer to their media as `blob:<sha256>`. */
import { NotFoundError } from "../errors.ts";
import { type BlobStore, blobRef, parseBlobRef } from "./blob-store.ts";
import type { MediaReader, MediaWriter } from "./media-port.ts";

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
      // Written and referenced in one step: the blob is never there without its owner.
      const { sha256 } = await blobs.put({ bytes, contentType, owner });
      return { ref: blobRef(sha256) };
    },
    async release({ ref, owner }) {
      const key = parseBlobRef(ref);
      if (key !== undefined) await blobs.release({ sha256: key, owner });
    },
  };
}
