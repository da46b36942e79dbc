/**
 * The reference index port of a blob store kept outside it ({@link BlobReferenceIndex}): which labels use
 * which blob, and when each was last written. The S3 adapter (`s3-blob-store.ts`) keeps its references
 * here when given one, on PostgreSQL (`pg-blob-references.ts`), instead of as objects in the bucket.
 *
 * Labels are those of `blob-store.ts`: a record's owner `<tenant>/<record id>` or an ingest's claim under
 * it; the index stores them as given, and the blob store applies {@link releases} and {@link ownersOf}.
 * What makes the index more than a list is {@link BlobReferenceIndex.withBlob}: a lock per blob that
 * every process on the same index shares, so "drop a reference and, if none is left, remove the bytes"
 * and "add a reference, then write the bytes if they are missing" never interleave.
 *
 * @see releases
 * @see ownersOf
 */

/** One label's reference to a blob. */
export interface BlobReference {
  /** `<tenant>/<record id>` or a claim under it. */
  label: string;
  /** When the reference was last written (added or touched), ms since the epoch, by the writer's clock. */
  touchedAt: number;
}

/** A reference as an import from another index copies it. */
export interface ImportedBlobReference extends BlobReference {
  sha256: string;
}

/** One blob's references while {@link BlobReferenceIndex.withBlob} holds its lock. */
export interface LockedBlobReferences {
  /** The blob's references, sorted by label. */
  list(): Promise<BlobReference[]>;
  /**
   * Adds `label`'s reference, or sets its time when it is there (which keeps the blob young for the
   * orphan sweep).
   *
   * @returns whether it was added (false: it was there).
   */
  touch(label: string, at?: number): Promise<boolean>;
  /** Removes these exact labels. @returns those that were there, sorted. */
  drop(labels: readonly string[]): Promise<string[]>;
  /** Removes every reference of the blob. */
  dropAll(): Promise<void>;
}

/** The reference index of one blob store (one bucket and key prefix). */
export interface BlobReferenceIndex {
  /** The blob store it indexes, e.g. `s3://<bucket>/<prefix>`. */
  readonly store: string;
  /**
   * Runs `work` holding `sha256`'s lock, which every process on the same index and store shares; what
   * `work` changes is kept when it resolves and undone when it throws. Work done with the lock held (an
   * S3 delete) keeps it for its whole length, so it should be short.
   */
  withBlob<Result>(sha256: string, work: (refs: LockedBlobReferences) => Promise<Result>): Promise<Result>;
  /** A blob's references as last kept, sorted by label, without taking the lock. */
  list(sha256: string): Promise<BlobReference[]>;
  /** Every blob's references (each list sorted by label), for the orphan sweep. */
  listAll(): Promise<Map<string, BlobReference[]>>;
  /**
   * Copies references from where the store kept them before, once per store: under the store's import
   * lock, and only when no earlier import of this store was recorded, `load` is called and what it
   * returns is added (a label already there keeps the newer time); the import is then recorded.
   *
   * @returns how many references were copied; `undefined` when the store had been imported before.
   */
  importOnce(load: () => Promise<ImportedBlobReference[]>): Promise<{ imported: number } | undefined>;
}
