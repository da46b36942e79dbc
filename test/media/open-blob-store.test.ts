import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config.ts";
import { ConfigError } from "../../src/errors.ts";
import { FsBlobStore } from "../../src/media/blob-store.ts";
import { openBlobStore } from "../../src/media/open-blob-store.ts";
import { S3BlobStore } from "../../src/media/s3-blob-store.ts";

function configError(env: Record<string, string>): ConfigError {
  try {
    parseConfig({ env, cwd: "/srv/loupe" });
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`parseConfig accepted ${JSON.stringify(env)}`);
}

describe("the S3 settings", () => {
  it("read every LOUPE_S3_* variable, adding the prefix's trailing slash", () => {
    const config = parseConfig({
      cwd: "/srv/loupe",
      env: {
        LOUPE_S3_BUCKET: "loupe-media.prod",
        LOUPE_S3_PREFIX: "tenants/all",
        LOUPE_S3_ENDPOINT: "https://minio.internal:9000",
        LOUPE_S3_FORCE_PATH_STYLE: "on",
        LOUPE_S3_REGION: "eu-west-1",
      },
    });
    expect(config).toMatchObject({
      s3Bucket: "loupe-media.prod",
      s3Prefix: "tenants/all/",
      s3Endpoint: "https://minio.internal:9000",
      s3ForcePathStyle: "on",
      s3Region: "eu-west-1",
    });
  });

  it("refuse bucket names S3 does not allow, naming the rules", () => {
    for (const bucket of [
      "ab",
      "Loupe",
      "-loupe",
      "loupe-",
      "lou..pe",
      "192.168.1.10",
      "lou_pe",
      "a".repeat(64),
    ]) {
      expect(configError({ LOUPE_S3_BUCKET: bucket }).message).toMatch(
        /LOUPE_S3_BUCKET=.* is not allowed; expected an S3 bucket name: 3–63 lowercase/,
      );
    }
  });

  it("refuse endpoints that are not plain http(s) URLs and prefixes that could name other keys", () => {
    for (const endpoint of [
      "minio:9000",
      "ftp://minio",
      "https://user:secret@minio",
      "https://minio/?x=1",
      "https://",
    ]) {
      const error = configError({ LOUPE_S3_ENDPOINT: endpoint });
      expect(error.message).toMatch(/LOUPE_S3_ENDPOINT=/);
    }
    for (const prefix of ["../up", "a/../b", "/root", "a//b", "with space", "a/./b"]) {
      expect(configError({ LOUPE_S3_PREFIX: prefix }).message).toMatch(/LOUPE_S3_PREFIX=/);
    }
    expect(configError({ LOUPE_S3_FORCE_PATH_STYLE: "yes" }).message).toMatch(/LOUPE_S3_FORCE_PATH_STYLE=/);
  });

  it("open the filesystem store without a bucket, the S3 one with one", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-open-blob-"));
    try {
      const fs = await openBlobStore({ settings: parseConfig({ env: { LOUPE_DATA_DIR: dir } }) });
      expect(fs.blobs).toBeInstanceOf(FsBlobStore);
      expect((fs.blobs as FsBlobStore).dir).toBe(path.join(dir, "blobs"));
      await fs.close();
      const told: unknown[] = [];
      const s3 = await openBlobStore({
        settings: parseConfig({ env: { LOUPE_DATA_DIR: dir, LOUPE_S3_BUCKET: "loupe-media" } }),
        // No request here: the check against a real endpoint is in s3-blob-store.int.test.ts.
        check: false,
        onS3: (where) => told.push(where),
      });
      expect(s3.blobs).toBeInstanceOf(S3BlobStore);
      expect(s3.blobs).toMatchObject({ bucket: "loupe-media", prefix: "blobs/" });
      expect(told).toEqual([
        { bucket: "loupe-media", prefix: "blobs/", endpoint: "AWS S3", region: "us-east-1" },
      ]);
      await s3.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
