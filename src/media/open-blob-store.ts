/**
 * Opens the blob store the settings name: S3 or an S3-compatible store when `LOUPE_S3_BUCKET` is set,
 * else the files under `<LOUPE_DATA_DIR>/blobs`. With `LOUPE_DATABASE_URL` set too, the S3 store keeps its
 * reference index in PostgreSQL (`pg-blob-references.ts`) rather than as objects in the bucket. The server
 * (`services.ts`) and what opens blobs alone (`loupe feedback`) both open it here, so they always agree on
 * where blobs and their references are.
 */
import path from "node:path";
import type pg from "pg";
import type { Config } from "../config.ts";
import type { BlobReferenceIndex } from "./blob-references.ts";
import { type BlobStore, createFsBlobStore } from "./blob-store.ts";

/** Options of {@link openBlobStore}. */
export interface OpenBlobStoreOptions {
  /** The settings the store is chosen and configured by. */
  settings: Pick<
    Config,
    "dataDir" | "s3Bucket" | "s3Prefix" | "s3Endpoint" | "s3ForcePathStyle" | "s3Region"
  > &
    Partial<Pick<Config, "databaseUrl">>;
  /**
   * A pool on `LOUPE_DATABASE_URL`'s database, already checked to be migrated (the server's), for the
   * reference index; without it, one is opened when `databaseUrl` is set and ended by `close()`.
   */
  pool?: pg.Pool;
  /**
   * Ask S3 once (a one-key listing) that the bucket exists and the credentials are accepted, so a
   * mistake stops start-up with a message naming the fix. Default true.
   */
  check?: boolean;
  /** Told where blobs go when they go to S3 (for the start-up log); never given credentials. */
  onS3?: (where: { bucket: string; prefix: string; endpoint: string; region: string }) => void;
  /**
   * Told when the S3 store's references are in PostgreSQL: the store's name there and, on the first
   * start over a bucket with reference objects, how many were copied in (`imported`).
   */
  onReferenceIndex?: (where: { store: string; imported?: number }) => void;
}

/**
 * The blob store of the settings, with a `close()` that releases its connections. The S3 adapter (and
 * the AWS SDK) is imported only when a bucket is set, and `pg` only when a database is set too, so the
 * embedded default loads neither. With `check`, one listing is sent to S3 (credentials come from the AWS
 * SDK's default chain) and, with a database, the bucket's reference objects of before are copied into it
 * if that was never done (`S3BlobStore.importLegacyReferences`); without `check` that happens at the
 * first use of the references.
 *
 * @throws {StoreError} when the check fails: the bucket is missing, the credentials are refused or the
 *   store does not answer; `DatabaseError` when the database cannot be reached or lacks migrations.
 */
export async function openBlobStore({
  settings,
  pool,
  check = true,
  onS3,
  onReferenceIndex,
}: OpenBlobStoreOptions): Promise<{ blobs: BlobStore; close: () => Promise<void> }> {
  if (settings.s3Bucket === undefined) {
    return { blobs: createFsBlobStore({ dir: path.join(settings.dataDir, "blobs") }), close: async () => {} };
  }
  const { createS3BlobStore } = await import("./s3-blob-store.ts");
  const { index, end } = await openReferenceIndex({ settings, pool });
  const blobs = createS3BlobStore({
    bucket: settings.s3Bucket,
    prefix: settings.s3Prefix,
    forcePathStyle: settings.s3ForcePathStyle === "on",
    region: settings.s3Region,
    ...(settings.s3Endpoint === undefined ? {} : { endpoint: settings.s3Endpoint }),
    ...(index === undefined ? {} : { referenceIndex: index }),
  });
  const close = async () => {
    blobs.close();
    await end();
  };
  if (check) {
    try {
      await blobs.check();
      const imported = await blobs.importLegacyReferences();
      if (blobs.indexed) {
        onReferenceIndex?.({ store: blobs.name, ...(imported === undefined ? {} : imported) });
      }
    } catch (error) {
      await close();
      throw error;
    }
  } else if (blobs.indexed) {
    onReferenceIndex?.({ store: blobs.name });
  }
  onS3?.({
    bucket: settings.s3Bucket,
    prefix: settings.s3Prefix,
    endpoint: settings.s3Endpoint ?? "AWS S3",
    region: settings.s3Region,
  });
  return { blobs, close };
}

/**
 * The PostgreSQL reference index for the S3 store when a database is set (over `pool`, or a pool of its
 * own that `end` ends), imported on use so that `pg` loads only then.
 */
async function openReferenceIndex({
  settings,
  pool,
}: Pick<OpenBlobStoreOptions, "settings" | "pool">): Promise<{
  index?: (store: string) => BlobReferenceIndex;
  end: () => Promise<void>;
}> {
  if (settings.databaseUrl === undefined) return { end: async () => {} };
  const { createPgBlobReferences } = await import("./pg-blob-references.ts");
  if (pool !== undefined)
    return { index: (store) => createPgBlobReferences({ pool, store }), end: async () => {} };
  const { openDatabase } = await import("../db/open-database.ts");
  const own = await openDatabase({ url: settings.databaseUrl });
  return { index: (store) => createPgBlobReferences({ pool: own, store }), end: () => own.end() };
}
