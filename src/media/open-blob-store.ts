/**
 * Opens the blob store the settings name: S3 or an S3-compatible store when `LOUPE_S3_BUCKET` is set,
 * else the files under `<LOUPE_DATA_DIR>/blobs`. The server (`services.ts`) and what opens blobs alone
 * (`loupe feedback`) both open it here, so they always agree on where blobs are.
 */
import path from "node:path";
import type { Config } from "../config.ts";
import { type BlobStore, createFsBlobStore } from "./blob-store.ts";

/** Options of {@link openBlobStore}. */
export interface OpenBlobStoreOptions {
  /** The settings the store is chosen and configured by. */
  settings: Pick<
    Config,
    "dataDir" | "s3Bucket" | "s3Prefix" | "s3Endpoint" | "s3ForcePathStyle" | "s3Region"
  >;
  /**
   * Ask S3 once (a one-key listing) that the bucket exists and the credentials are accepted, so a
   * mistake stops start-up with a message naming the fix. Default true.
   */
  check?: boolean;
  /** Told where blobs go when they go to S3 (for the start-up log); never given credentials. */
  onS3?: (where: { bucket: string; prefix: string; endpoint: string; region: string }) => void;
}

/**
 * The blob store of the settings, with a `close()` that releases its connections. The S3 adapter (and
 * the AWS SDK) is imported only when a bucket is set, so the embedded default never loads it. With
 * `check`, one listing is sent to S3; credentials come from the AWS SDK's default chain.
 *
 * @throws {StoreError} when the check fails: the bucket is missing, the credentials are refused or the
 *   store does not answer.
 */
export async function openBlobStore({
  settings,
  check = true,
  onS3,
}: OpenBlobStoreOptions): Promise<{ blobs: BlobStore; close: () => Promise<void> }> {
  if (settings.s3Bucket === undefined) {
    return { blobs: createFsBlobStore({ dir: path.join(settings.dataDir, "blobs") }), close: async () => {} };
  }
  const { createS3BlobStore } = await import("./s3-blob-store.ts");
  const blobs = createS3BlobStore({
    bucket: settings.s3Bucket,
    prefix: settings.s3Prefix,
    forcePathStyle: settings.s3ForcePathStyle === "on",
    region: settings.s3Region,
    ...(settings.s3Endpoint === undefined ? {} : { endpoint: settings.s3Endpoint }),
  });
  if (check) {
    try {
      await blobs.check();
    } catch (error) {
      blobs.close();
      throw error;
    }
  }
  onS3?.({
    bucket: settings.s3Bucket,
    prefix: settings.s3Prefix,
    endpoint: settings.s3Endpoint ?? "AWS S3",
    region: settings.s3Region,
  });
  return { blobs, close: async () => blobs.close() };
}
