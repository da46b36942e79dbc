/**
 * The media ports: what the search, ingest and chat layers need of stored media. Reading a record's media
 * back (to re-embed an item given by id, since Milvus returns no vectors from a query), storing an image
 * (triple ingest), and the URLs under which the HTTP layer serves an item's media. Kept narrow so those
 * layers do not depend on how blobs are laid out or how routes are named.
 */

/** An image named in a request: its bytes, the id of a stored item, or a URL to fetch. */
export type ImageReference = { bytes: Uint8Array } | { id: string } | { url: string };

/** Reads the bytes behind a record's `mediaRef` (e.g. `blob:<sha256>`). */
export interface MediaReader {
  /**
   * @throws NotFoundError when nothing is stored under `ref`.
   */
  read(options: { ref: string }): Promise<Uint8Array>;
}

/** Stores media bytes content-addressed and returns the reference to keep on the record. */
export interface MediaWriter {
  /**
   * @param owner who uses the bytes (`<tenant>/<recordId>`), recorded so a delete removes the blob only
   *   once nothing refers to it.
   */
  write(options: { bytes: Uint8Array; contentType: string; owner: string }): Promise<{ ref: string }>;
  /**
   * Drops `owner`'s use of the media behind `ref` (a write whose record was never stored), removing the
   * bytes once nothing else uses them.
   */
  release(options: { ref: string; owner: string }): Promise<void>;
}

/** Where an item's media is served; built by the HTTP layer and handed to search and chat. */
export interface MediaUrls {
  /** The original media of an item (a segment's keyframe). */
  media(id: string): string;
  /** The item's thumbnail. */
  thumbnail(id: string): string;
}
