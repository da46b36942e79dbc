/**
 * What the search layer needs of the blob store: reading a stored record's media back (to re-embed an
 * item given by id, since Milvus returns no vectors from a query) and, for triple ingest, storing an
 * image. Kept narrow so the search layer does not depend on how blobs are laid out.
 */

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
}
