/**
 * The blob store's behaviour, run against both adapters: the filesystem one and the S3 one on the test
 * S3 endpoint (moto's server mode by default: an emulator of the S3 API; see s3-test-server.ts), the
 * latter twice, with its references as objects in the bucket and in PostgreSQL (a database of this file's
 * own; see test/db/test-database.ts). What only one adapter has (files on disk, objects in a bucket,
 * rows in the database) is tested at the end.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import {
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import type pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createDatabasePool, migrate } from "../../src/db/index.ts";
import { type AppError, NotFoundError, StoreError, ValidationError } from "../../src/errors.ts";
import { sweepOrphanBlobs } from "../../src/ingest/blob-gc.ts";
import {
  type BlobInventory,
  type BlobStore,
  claimOwner,
  createFsBlobStore,
  sha256Hex,
} from "../../src/media/blob-store.ts";
import { openBlobStore } from "../../src/media/open-blob-store.ts";
import { createPgBlobReferences } from "../../src/media/pg-blob-references.ts";
import { createS3BlobStore, MULTIPART_PART_BYTES, S3BlobStore } from "../../src/media/s3-blob-store.ts";
import { createTestDatabase, type TestDatabase } from "../db/test-database.ts";
import { startTestS3Server, type TestS3Server } from "./s3-test-server.ts";

type TestableBlobStore = BlobStore & { keys(): Promise<string[]>; inventory(): Promise<BlobInventory> };

let s3: TestS3Server;
let s3Admin: S3Client;
let database: TestDatabase;
let pool: pg.Pool;

beforeAll(async () => {
  database = await createTestDatabase();
  pool = createDatabasePool({ url: database.url });
  await migrate({ pool });
  s3 = await startTestS3Server();
  s3Admin = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    ...(s3.credentials === undefined ? {} : { credentials: s3.credentials }),
  });
});

afterAll(async () => {
  s3Admin?.destroy();
  await s3?.stop();
  await pool?.end();
  await database?.drop();
});

function s3Store(prefix: string, bucket = s3.bucket, { indexed = false } = {}): S3BlobStore {
  return createS3BlobStore({
    bucket,
    prefix,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    region: s3.region,
    ...(s3.credentials === undefined ? {} : { credentials: s3.credentials }),
    ...(indexed ? { referenceIndex: (store: string) => createPgBlobReferences({ pool, store }) } : {}),
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  return Buffer.from(await new Response(stream).arrayBuffer());
}

const adapters: Array<{
  name: string;
  open: () => Promise<{ blobs: TestableBlobStore; close(): Promise<void> }>;
}> = [
  {
    name: "FsBlobStore",
    open: async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-blob-both-"));
      return { blobs: createFsBlobStore({ dir }), close: () => rm(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: "S3BlobStore",
    open: async () => {
      // A prefix of its own per test: no test sees another's objects.
      const blobs = s3Store(`t-${randomBytes(4).toString("hex")}/blobs`);
      return { blobs, close: async () => blobs.close() };
    },
  },
  {
    name: "S3BlobStore with references in PostgreSQL",
    open: async () => {
      const blobs = s3Store(`t-${randomBytes(4).toString("hex")}/blobs`, s3.bucket, { indexed: true });
      return { blobs, close: async () => blobs.close() };
    },
  },
];

describe.each(adapters)("$name", ({ open }) => {
  let blobs: TestableBlobStore;
  let close: () => Promise<void>;

  beforeEach(async () => {
    ({ blobs, close } = await open());
  });

  afterEach(async () => {
    await close();
  });

  it("stores bytes under their sha256 with the content type, once", async () => {
    const bytes = Buffer.from("hello blob");
    const first = await blobs.put({ bytes, contentType: "image/png" });
    expect(first).toEqual({ sha256: sha256Hex(bytes), size: bytes.length, created: true });
    const second = await blobs.put({ bytes, contentType: "image/png" });
    expect(second).toEqual({ ...first, created: false });
    expect(await blobs.keys()).toEqual([first.sha256]);

    const stored = await blobs.get(first.sha256);
    expect(stored.contentType).toBe("image/png");
    expect(stored.size).toBe(bytes.length);
    expect((await stored.bytes()).toString()).toBe("hello blob");
    expect((await readAll(stored.stream())).toString()).toBe("hello blob");
    expect(await blobs.has(first.sha256)).toBe(true);
    expect(await blobs.has(sha256Hex(Buffer.from("never stored")))).toBe(false);
  });

  it("concurrent puts of the same bytes keep one blob", async () => {
    const bytes = Buffer.alloc(100_000, 7);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => blobs.put({ bytes, contentType: "application/octet-stream" })),
    );
    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(await blobs.keys()).toHaveLength(1);
  });

  it("reads ranges: the first bytes, the middle, a suffix, and refuses one outside the blob", async () => {
    const bytes = randomBytes(300_000);
    const { sha256 } = await blobs.put({ bytes, contentType: "video/mp4" });
    const stored = await blobs.get(sha256);
    expect(await readAll(stored.stream({ start: 0, end: 0 }))).toEqual(bytes.subarray(0, 1));
    expect(await readAll(stored.stream({ start: 0, end: 1023 }))).toEqual(bytes.subarray(0, 1024));
    expect(await readAll(stored.stream({ start: 123_456, end: 200_000 }))).toEqual(
      bytes.subarray(123_456, 200_001),
    );
    expect(await readAll(stored.stream({ start: bytes.length - 500, end: bytes.length - 1 }))).toEqual(
      bytes.subarray(bytes.length - 500),
    );
    for (const range of [
      { start: 0, end: bytes.length },
      { start: 10, end: 5 },
      { start: -1, end: 5 },
    ]) {
      expect(() => stored.stream(range)).toThrow(ValidationError);
    }
  });

  it(`stores a body larger than ${MULTIPART_PART_BYTES / 1024 / 1024} MiB (multipart on S3) and reads it back whole and in ranges`, async () => {
    const bytes = randomBytes(MULTIPART_PART_BYTES + 1_234_567);
    const put = await blobs.put({ bytes, contentType: "video/mp4", owner: "t/vid_1" });
    expect(put).toEqual({ sha256: sha256Hex(bytes), size: bytes.length, created: true });
    const stored = await blobs.get(put.sha256);
    expect(stored.size).toBe(bytes.length);
    expect(sha256Hex(await stored.bytes())).toBe(put.sha256);
    expect(sha256Hex(await readAll(stored.stream()))).toBe(put.sha256);
    // Across the boundary of the first part.
    const start = MULTIPART_PART_BYTES - 10;
    expect(await readAll(stored.stream({ start, end: start + 19 }))).toEqual(
      bytes.subarray(start, start + 20),
    );
    expect((await blobs.put({ bytes, contentType: "video/mp4" })).created).toBe(false);
    expect(await blobs.references(put.sha256)).toEqual(["t/vid_1"]);
  });

  it("refuses keys that are not sha256 digests, so no key can name another object", async () => {
    for (const key of [
      "../../etc/passwd",
      "ABC",
      `${"a".repeat(63)}/`,
      "A".repeat(64),
      "",
      `${"a".repeat(64)}.json`,
    ]) {
      await expect(blobs.get(key)).rejects.toBeInstanceOf(ValidationError);
      await expect(blobs.has(key)).rejects.toBeInstanceOf(ValidationError);
      await expect(blobs.delete(key)).rejects.toBeInstanceOf(ValidationError);
      await expect(blobs.references(key)).rejects.toBeInstanceOf(ValidationError);
      await expect(blobs.addReference({ sha256: key, owner: "t/img_1" })).rejects.toBeInstanceOf(
        ValidationError,
      );
      await expect(blobs.release({ sha256: key, owner: "t/img_1" })).rejects.toBeInstanceOf(ValidationError);
      await expect(blobs.collect({ sha256: key, untouchedSince: Date.now() })).rejects.toBeInstanceOf(
        ValidationError,
      );
    }
    await expect(blobs.get("0".repeat(64))).rejects.toBeInstanceOf(NotFoundError);
    await expect(blobs.addReference({ sha256: "0".repeat(64), owner: "t/img_1" })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect(await blobs.delete("0".repeat(64))).toBe(false);
  });

  it("refuses malformed content types and owners", async () => {
    await expect(
      blobs.put({ bytes: Buffer.from("x"), contentType: "text/html\r\nset-cookie: a=b" }),
    ).rejects.toThrow(/Invalid content type/);
    for (const owner of ["", "t/img 1", "t/img\n1", "x".repeat(301)]) {
      await expect(
        blobs.put({ bytes: Buffer.from("x"), contentType: "text/plain", owner }),
      ).rejects.toBeInstanceOf(ValidationError);
    }
    expect(await blobs.keys()).toEqual([]);
  });

  it("an owner label that looks like a path stays a label", async () => {
    const { sha256 } = await blobs.put({
      bytes: Buffer.from("dots"),
      contentType: "text/plain",
      owner: "../x",
    });
    expect(await blobs.references(sha256)).toEqual(["../x"]);
    expect((await blobs.inventory()).stray).toEqual([]);
    expect(await blobs.release({ sha256, owner: "../x" })).toEqual({ removed: true });
    expect(await blobs.keys()).toEqual([]);
  });

  it("removes a blob only when its last reference is released", async () => {
    const { sha256 } = await blobs.put({ bytes: Buffer.from("shared"), contentType: "image/jpeg" });
    await blobs.addReference({ sha256, owner: "a/img_1" });
    await blobs.addReference({ sha256, owner: "b/img_2" });
    await blobs.addReference({ sha256, owner: "a/img_1" });
    expect(await blobs.references(sha256)).toEqual(["a/img_1", "b/img_2"]);

    expect(await blobs.release({ sha256, owner: "a/img_1" })).toEqual({ removed: false });
    expect(await blobs.has(sha256)).toBe(true);
    expect(await blobs.release({ sha256, owner: "b/img_2" })).toEqual({ removed: true });
    expect(await blobs.has(sha256)).toBe(false);
    expect(await blobs.keys()).toEqual([]);
    expect(await blobs.release({ sha256, owner: "b/img_2" })).toEqual({ removed: false });
  });

  it("a put after references keeps them", async () => {
    const bytes = Buffer.from("kept");
    const { sha256 } = await blobs.put({ bytes, contentType: "image/jpeg" });
    await blobs.addReference({ sha256, owner: "t/img_1" });
    await blobs.put({ bytes, contentType: "image/jpeg" });
    expect(await blobs.references(sha256)).toEqual(["t/img_1"]);
  });

  it("delete removes the blob and every reference", async () => {
    const { sha256 } = await blobs.put({
      bytes: Buffer.from("gone"),
      contentType: "image/jpeg",
      owner: "a/img_1",
    });
    await blobs.addReference({ sha256, owner: "b/img_2" });
    expect(await blobs.delete(sha256)).toBe(true);
    expect(await blobs.has(sha256)).toBe(false);
    expect(await blobs.references(sha256)).toEqual([]);
    expect(await blobs.inventory()).toEqual({
      blobs: [],
      unreferenced: [],
      missingSidecar: [],
      missingBytes: [],
      stray: [],
    });
    await expect(blobs.get(sha256)).rejects.toBeInstanceOf(NotFoundError);
  });

  it("scan and inventory list every blob with its references", async () => {
    const kept = await blobs.put({ bytes: Buffer.from("kept"), contentType: "image/jpeg", owner: "t/img_1" });
    const lone = await blobs.put({ bytes: Buffer.from("lone"), contentType: "image/jpeg" });
    const before = Date.now();
    const scan = await blobs.scan();
    expect(scan.leftovers).toEqual([]);
    expect(scan.blobs).toEqual(
      [
        { sha256: kept.sha256, size: 4, refs: ["t/img_1"], touchedAt: expect.any(Number) },
        { sha256: lone.sha256, size: 4, refs: [], touchedAt: expect.any(Number) },
      ].sort((a, b) => a.sha256.localeCompare(b.sha256)),
    );
    for (const blob of scan.blobs) {
      expect(blob.touchedAt).toBeLessThanOrEqual(before + 1);
      expect(blob.touchedAt).toBeGreaterThan(before - 60_000);
    }
    const inventory = await blobs.inventory();
    expect(inventory.unreferenced).toEqual([lone.sha256]);
    expect(inventory.blobs).toEqual(
      [
        { sha256: kept.sha256, refs: ["t/img_1"] },
        { sha256: lone.sha256, refs: [] },
      ].sort((a, b) => a.sha256.localeCompare(b.sha256)),
    );
  });

  it("collect drops dead references, removes a blob left with none, and leaves one touched since", async () => {
    const bytes = Buffer.from("collected");
    const { sha256 } = await blobs.put({ bytes, contentType: "image/jpeg", owner: "a/img_1" });
    await blobs.addReference({ sha256, owner: "b/img_2" });
    const later = Date.now() + 1000;
    expect(await blobs.collect({ sha256, staleOwners: ["a/img_1"], untouchedSince: later })).toEqual({
      removed: false,
      bytes: 0,
      released: ["a/img_1"],
    });
    expect(await blobs.references(sha256)).toEqual(["b/img_2"]);
    // A write that names an existing owner still makes the blob young.
    const scanned = Date.now() - 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
    await blobs.put({ bytes, contentType: "image/jpeg", owner: "b/img_2" });
    expect(await blobs.collect({ sha256, staleOwners: ["b/img_2"], untouchedSince: scanned })).toMatchObject({
      removed: false,
      skipped: "touched",
    });
    expect(
      await blobs.collect({ sha256, staleOwners: ["b/img_2"], untouchedSince: Date.now() + 1000 }),
    ).toEqual({ removed: true, bytes: bytes.length, released: ["b/img_2"] });
    expect(await blobs.has(sha256)).toBe(false);
    expect(await blobs.collect({ sha256, untouchedSince: Date.now() })).toMatchObject({ skipped: "gone" });
  });

  it("the garbage collection removes unreferenced blobs only", async () => {
    const orphan = await blobs.put({ bytes: Buffer.from("orphan"), contentType: "image/jpeg" });
    const used = await blobs.put({ bytes: Buffer.from("used"), contentType: "image/jpeg", owner: "t/img_1" });
    const untouchedSince = Date.now() + 1000;
    for (const blob of (await blobs.scan()).blobs) {
      await blobs.collect({ sha256: blob.sha256, untouchedSince });
    }
    expect(await blobs.has(orphan.sha256)).toBe(false);
    expect(await blobs.has(used.sha256)).toBe(true);
    expect(await blobs.keys()).toEqual([used.sha256]);
  });

  it("claims of one record stand for it: releasing one keeps the others, releasing the record drops all", async () => {
    const bytes = Buffer.from("claimed twice");
    const first = claimOwner("t/img_1");
    const second = claimOwner("t/img_1");
    const { sha256 } = await blobs.put({ bytes, contentType: "image/jpeg", owner: first });
    await blobs.put({ bytes, contentType: "image/jpeg", owner: second });
    await blobs.addReference({ sha256, owner: "u/img_2" });
    expect(await blobs.references(sha256)).toEqual(["t/img_1", "u/img_2"]);
    expect((await blobs.inventory()).blobs).toEqual([{ sha256, refs: ["t/img_1", "u/img_2"] }]);
    expect((await blobs.scan()).blobs[0]?.refs).toEqual([first, second, "u/img_2"].sort());

    expect(await blobs.release({ sha256, owner: first })).toEqual({ removed: false });
    expect(await blobs.references(sha256)).toEqual(["t/img_1", "u/img_2"]);
    await blobs.addReference({ sha256, owner: "t/img_10" });
    expect(await blobs.release({ sha256, owner: "t/img_1" })).toEqual({ removed: false });
    expect(await blobs.references(sha256)).toEqual(["t/img_10", "u/img_2"]);
    await blobs.release({ sha256, owner: "t/img_10" });
    expect(await blobs.release({ sha256, owner: "u/img_2" })).toEqual({ removed: true });
  });
});

describe("S3BlobStore in the bucket", () => {
  let prefix: string;
  let blobs: S3BlobStore;

  beforeEach(() => {
    prefix = `t-${randomBytes(4).toString("hex")}/blobs/`;
    blobs = s3Store(prefix);
  });

  afterEach(() => {
    blobs.close();
  });

  async function objectKeys(): Promise<string[]> {
    const listed = await s3Admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
    return (listed.Contents ?? []).map((object) => (object.Key ?? "").slice(prefix.length)).sort();
  }

  it("lays blobs out as the filesystem store does, with one object per reference", async () => {
    const { sha256 } = await blobs.put({
      bytes: Buffer.from("x"),
      contentType: "text/plain",
      owner: "t/img_1",
    });
    const folder = `${sha256.slice(0, 2)}/${sha256.slice(2, 4)}`;
    expect(await objectKeys()).toEqual([
      `${folder}/${sha256}`,
      `${folder}/${sha256}.refs/${Buffer.from("t/img_1").toString("base64url")}`,
    ]);
  });

  it("uploads a body larger than one part in parts, and a small one in one request", async () => {
    const large = await blobs.put({
      bytes: randomBytes(MULTIPART_PART_BYTES * 2 + 1),
      contentType: "video/mp4",
    });
    const small = await blobs.put({ bytes: randomBytes(1000), contentType: "image/jpeg" });
    const etag = async (sha256: string) =>
      (
        await s3Admin.send(
          new HeadObjectCommand({
            Bucket: s3.bucket,
            Key: `${prefix}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`,
          }),
        )
      ).ETag;
    // A multipart object's ETag is the digest of its parts' digests, followed by the number of parts.
    expect(await etag(large.sha256)).toMatch(/-3"$/);
    expect(await etag(small.sha256)).toMatch(/^"[0-9a-f]{32}"$/);
  });

  it("reports a reference whose bytes are gone as a leftover, and removes it once old", async () => {
    const { sha256 } = await blobs.put({
      bytes: Buffer.from("lost"),
      contentType: "image/jpeg",
      owner: "t/img_1",
    });
    // A crash between removing the bytes and their references, or a release racing a put in another process.
    await s3Admin.send(
      new DeleteObjectCommand({
        Bucket: s3.bucket,
        Key: `${prefix}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`,
      }),
    );
    const scan = await blobs.scan();
    expect(scan.blobs).toEqual([]);
    expect(scan.leftovers).toEqual([
      {
        kind: "temporary",
        path: `${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}.refs/${Buffer.from("t/img_1").toString("base64url")}`,
        size: expect.any(Number),
        touchedAt: expect.any(Number),
      },
    ]);
    expect((await blobs.inventory()).missingBytes).toEqual([sha256]);
    const leftover = scan.leftovers[0];
    if (leftover === undefined) throw new Error("no leftover");
    expect(await blobs.removeLeftover({ leftover, untouchedSince: Date.now() - 60_000 })).toBe(false);
    for (const hostile of ["../../other/key", `${leftover.path}/..`, leftover.path.replace(".refs/", "/")]) {
      expect(
        await blobs.removeLeftover({
          leftover: { ...leftover, path: hostile },
          untouchedSince: Date.now() + 1000,
        }),
      ).toBe(false);
    }
    expect(await blobs.removeLeftover({ leftover, untouchedSince: Date.now() + 1000 })).toBe(true);
    expect(await objectKeys()).toEqual([]);
  });

  it("the orphan sweep (loupe gc) runs over it: orphans and interrupted writes go once old, the rest stays", async () => {
    const orphan = await blobs.put({ bytes: Buffer.from("orphan"), contentType: "image/jpeg" });
    const used = await blobs.put({ bytes: Buffer.from("used"), contentType: "image/jpeg", owner: "t/img_1" });
    const lost = await blobs.put({ bytes: Buffer.from("lost"), contentType: "image/jpeg", owner: "t/img_2" });
    await s3Admin.send(
      new DeleteObjectCommand({
        Bucket: s3.bucket,
        Key: `${prefix}${lost.sha256.slice(0, 2)}/${lost.sha256.slice(2, 4)}/${lost.sha256}`,
      }),
    );
    const young = await sweepOrphanBlobs({ blobs, graceSeconds: 600 });
    expect(young.removed).toEqual([]);
    expect(young.leftovers).toEqual([]);
    const later = () => Date.now() + 3_600_000;
    const dry = await sweepOrphanBlobs({ blobs, graceSeconds: 600, now: later, dryRun: true });
    expect(dry.removed.map((blob) => blob.sha256)).toEqual([orphan.sha256]);
    expect(await blobs.has(orphan.sha256)).toBe(true);
    const report = await sweepOrphanBlobs({ blobs, graceSeconds: 600, now: later });
    expect(report.removed.map((blob) => blob.sha256)).toEqual([orphan.sha256]);
    expect(report.leftovers.map((leftover) => leftover.kind)).toEqual(["temporary"]);
    expect(await blobs.keys()).toEqual([used.sha256]);
    expect(await blobs.inventory()).toMatchObject({ missingBytes: [], unreferenced: [] });
  });

  it("reports objects it did not write as stray and never touches them", async () => {
    await s3Admin.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}notes/readme.txt`, Body: "hi" }),
    );
    expect((await blobs.inventory()).stray).toEqual(["notes/readme.txt"]);
    expect((await blobs.scan()).leftovers).toEqual([]);
    expect(await objectKeys()).toEqual(["notes/readme.txt"]);
  });

  it("turns SDK failures into typed errors", async () => {
    const missing = s3Store(prefix, `no-such-bucket-${randomBytes(4).toString("hex")}`);
    const error = await missing
      .put({ bytes: Buffer.from("x"), contentType: "text/plain" })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as AppError).message).toMatch(/does not exist|failed/);
    missing.close();

    const unreachable = createS3BlobStore({
      bucket: s3.bucket,
      endpoint: "http://127.0.0.1:9",
      forcePathStyle: true,
      credentials: { accessKeyId: "a", secretAccessKey: "secret-never-shown" },
    });
    const down = await unreachable.has("0".repeat(64)).catch((caught: unknown) => caught);
    expect(down).toBeInstanceOf(StoreError);
    expect((down as AppError).code).toBe("blob_store_error");
    expect(String((down as AppError).message)).not.toContain("secret-never-shown");
    unreachable.close();
  });

  it("openBlobStore checks the bucket at start-up and names the fix when it is missing", async () => {
    const settings = {
      dataDir: "/nonexistent",
      s3Bucket: s3.bucket,
      s3Prefix: prefix,
      s3Endpoint: s3.endpoint,
      s3ForcePathStyle: "on" as const,
      s3Region: s3.region,
    };
    // openBlobStore takes credentials from the SDK's default chain, as the server does.
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    if (s3.credentials !== undefined) {
      process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
    }
    try {
      const opened = await openBlobStore({ settings });
      expect(opened.blobs).toBeInstanceOf(S3BlobStore);
      await opened.close();
      const missing = await openBlobStore({
        settings: { ...settings, s3Bucket: "loupe-no-such-bucket" },
      }).catch((caught: unknown) => caught);
      expect(missing).toBeInstanceOf(StoreError);
      expect((missing as AppError).message).toMatch(/"loupe-no-such-bucket" does not exist.*LOUPE_S3_BUCKET/);
    } finally {
      for (const [name, value] of [
        ["AWS_ACCESS_KEY_ID", saved.id],
        ["AWS_SECRET_ACCESS_KEY", saved.secret],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it("refuses a prefix that could name other keys", () => {
    for (const bad of ["../x", "a/../b", "a//b", "/abs", "a b"]) {
      expect(() => createS3BlobStore({ bucket: s3.bucket, prefix: bad })).toThrow(ValidationError);
    }
  });
});

describe("S3BlobStore with its references in PostgreSQL", () => {
  let prefix: string;
  let blobs: S3BlobStore;

  beforeEach(() => {
    prefix = `t-${randomBytes(4).toString("hex")}/blobs/`;
    blobs = s3Store(prefix, s3.bucket, { indexed: true });
  });

  afterEach(() => {
    blobs.close();
  });

  async function objectKeys(): Promise<string[]> {
    const listed = await s3Admin.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
    return (listed.Contents ?? []).map((object) => (object.Key ?? "").slice(prefix.length)).sort();
  }

  async function rows(): Promise<Array<{ sha256: string; label: string }>> {
    const found = await pool.query<{ sha256: string; label: string }>(
      "select sha256, label from loupe_blob_refs where store = $1 order by sha256, label",
      [blobs.name],
    );
    return found.rows;
  }

  function bytesKey(sha256: string): string {
    return `${prefix}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
  }

  it("writes the bytes only to the bucket and each reference as a row of the store", async () => {
    const claim = claimOwner("t/img_1");
    const { sha256 } = await blobs.put({ bytes: Buffer.from("x"), contentType: "text/plain", owner: claim });
    await blobs.addReference({ sha256, owner: "u/img_2" });
    expect(blobs.name).toBe(`s3://${s3.bucket}/${prefix}`);
    expect(await objectKeys()).toEqual([`${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`]);
    expect(await rows()).toEqual([
      { sha256, label: claim },
      { sha256, label: "u/img_2" },
    ]);
    // Another store on the same database keeps its own references.
    const other = s3Store(`t-${randomBytes(4).toString("hex")}/blobs/`, s3.bucket, { indexed: true });
    try {
      expect(await other.references(sha256)).toEqual([]);
    } finally {
      other.close();
    }
    expect(await blobs.release({ sha256, owner: "t/img_1" })).toEqual({ removed: false });
    expect(await blobs.release({ sha256, owner: "u/img_2" })).toEqual({ removed: true });
    expect(await objectKeys()).toEqual([]);
    expect(await rows()).toEqual([]);
  });

  it("a release and a put of the same bytes in two processes at once leave the bytes present and referenced", async () => {
    // Two stores: each has its own in-process lock, as two processes would; only the database's is shared.
    const second = s3Store(prefix, s3.bucket, { indexed: true });
    try {
      for (let round = 0; round < 40; round += 1) {
        const bytes = Buffer.from(`raced ${round} ${randomBytes(8).toString("hex")}`);
        const { sha256 } = await blobs.put({ bytes, contentType: "image/jpeg", owner: "a/img_1" });
        // Started in both orders, so each side is sometimes first to the lock.
        const release = () => blobs.release({ sha256, owner: "a/img_1" });
        const put = () => second.put({ bytes, contentType: "image/jpeg", owner: "b/img_2" });
        if (round % 2 === 0) await Promise.all([release(), put()]);
        else await Promise.all([put(), release()]);
        expect(await second.has(sha256)).toBe(true);
        expect(await blobs.references(sha256)).toEqual(["b/img_2"]);
        expect((await blobs.get(sha256)).size).toBe(bytes.length);
      }
      const inventory = await blobs.inventory();
      expect(inventory.blobs).toHaveLength(40);
      expect(inventory).toMatchObject({ unreferenced: [], missingBytes: [], stray: [] });
    } finally {
      second.close();
    }
  });

  it("takes back the reference of a put whose upload failed", async () => {
    const broken = createS3BlobStore({
      bucket: `no-such-bucket-${randomBytes(4).toString("hex")}`,
      prefix,
      endpoint: s3.endpoint,
      forcePathStyle: true,
      region: s3.region,
      ...(s3.credentials === undefined ? {} : { credentials: s3.credentials }),
      referenceIndex: (store) => createPgBlobReferences({ pool, store }),
    });
    try {
      // Recorded as imported, so the put gets as far as its upload.
      await pool.query(
        "insert into loupe_blob_ref_imports (store, imported_at, refs) values ($1, now(), 0)",
        [broken.name],
      );
      const bytes = Buffer.from("never stored");
      await expect(broken.put({ bytes, contentType: "image/jpeg", owner: "t/img_1" })).rejects.toBeInstanceOf(
        StoreError,
      );
      const left = await pool.query("select 1 from loupe_blob_refs where store = $1", [broken.name]);
      expect(left.rowCount).toBe(0);
    } finally {
      broken.close();
    }
  });

  it("reports a reference whose bytes are gone as a leftover, and removes its row once old", async () => {
    const { sha256 } = await blobs.put({
      bytes: Buffer.from("lost"),
      contentType: "image/jpeg",
      owner: "t/img_1",
    });
    await s3Admin.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: bytesKey(sha256) }));
    const scan = await blobs.scan();
    expect(scan.blobs).toEqual([]);
    expect(scan.leftovers).toEqual([
      {
        kind: "temporary",
        path: `${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}.refs/${Buffer.from("t/img_1").toString("base64url")}`,
        size: 0,
        touchedAt: expect.any(Number),
      },
    ]);
    expect((await blobs.inventory()).missingBytes).toEqual([sha256]);
    const leftover = scan.leftovers[0];
    if (leftover === undefined) throw new Error("no leftover");
    expect(await blobs.removeLeftover({ leftover, untouchedSince: Date.now() - 60_000 })).toBe(false);
    expect(await blobs.removeLeftover({ leftover, untouchedSince: Date.now() + 1000 })).toBe(true);
    expect(await rows()).toEqual([]);
    expect(await blobs.removeLeftover({ leftover, untouchedSince: Date.now() + 1000 })).toBe(false);
  });

  it("the orphan sweep runs over it: an orphan goes once old, the referenced blob stays", async () => {
    const orphan = await blobs.put({ bytes: Buffer.from("orphan"), contentType: "image/jpeg" });
    const used = await blobs.put({ bytes: Buffer.from("used"), contentType: "image/jpeg", owner: "t/img_1" });
    expect((await sweepOrphanBlobs({ blobs, graceSeconds: 600 })).removed).toEqual([]);
    const report = await sweepOrphanBlobs({ blobs, graceSeconds: 600, now: () => Date.now() + 3_600_000 });
    expect(report.removed.map((blob) => blob.sha256)).toEqual([orphan.sha256]);
    expect(await blobs.keys()).toEqual([used.sha256]);
    expect(await rows()).toEqual([{ sha256: used.sha256, label: "t/img_1" }]);
  });

  it("copies the reference objects of before into the table once, and leaves the objects in place", async () => {
    blobs.close();
    const legacy = s3Store(prefix);
    const claim = claimOwner("t/img_1");
    const shared = await legacy.put({
      bytes: Buffer.from("shared"),
      contentType: "image/jpeg",
      owner: claim,
    });
    await legacy.addReference({ sha256: shared.sha256, owner: "u/img_2" });
    const lone = await legacy.put({
      bytes: Buffer.from("lone"),
      contentType: "image/jpeg",
      owner: "t/img_3",
    });
    const before = await objectKeys();
    legacy.close();

    // Two processes start on the bucket at once: one copies, the other finds it done.
    blobs = s3Store(prefix, s3.bucket, { indexed: true });
    const sibling = s3Store(prefix, s3.bucket, { indexed: true });
    try {
      const imports = await Promise.all([blobs.importLegacyReferences(), sibling.importLegacyReferences()]);
      expect(imports.filter((result) => result !== undefined)).toEqual([{ imported: 3 }]);
      expect(await sibling.references(shared.sha256)).toEqual(["t/img_1", "u/img_2"]);
    } finally {
      sibling.close();
    }
    expect(await blobs.references(lone.sha256)).toEqual(["t/img_3"]);
    expect((await blobs.scan()).blobs.find((blob) => blob.sha256 === shared.sha256)?.refs).toEqual(
      [claim, "u/img_2"].sort(),
    );
    const recorded = await pool.query<{ refs: number }>(
      "select refs from loupe_blob_ref_imports where store = $1",
      [blobs.name],
    );
    expect(recorded.rows).toEqual([{ refs: 3 }]);

    // Released in the table: a restart does not bring the reference back from its object.
    expect(await blobs.release({ sha256: shared.sha256, owner: "t/img_1" })).toEqual({ removed: false });
    blobs.close();
    blobs = s3Store(prefix, s3.bucket, { indexed: true });
    expect(await blobs.importLegacyReferences()).toBeUndefined();
    expect(await blobs.references(shared.sha256)).toEqual(["u/img_2"]);
    expect(await objectKeys()).toEqual(before);
    expect((await blobs.inventory()).stray).toEqual([]);
  });

  it("imports before its first use when nobody asked it to", async () => {
    blobs.close();
    const legacy = s3Store(prefix);
    const { sha256 } = await legacy.put({
      bytes: Buffer.from("old"),
      contentType: "image/jpeg",
      owner: "t/img_1",
    });
    legacy.close();
    blobs = s3Store(prefix, s3.bucket, { indexed: true });
    // Without the copy, this release would find no other reference and remove the bytes.
    expect(await blobs.release({ sha256, owner: "u/img_9" })).toEqual({ removed: false });
    expect(await blobs.has(sha256)).toBe(true);
    expect(await blobs.references(sha256)).toEqual(["t/img_1"]);
  });

  it("openBlobStore keeps the references in PostgreSQL when LOUPE_DATABASE_URL is set too, and reports the copy", async () => {
    const legacy = s3Store(prefix);
    const { sha256 } = await legacy.put({
      bytes: Buffer.from("old"),
      contentType: "image/jpeg",
      owner: "t/img_1",
    });
    legacy.close();
    const settings = {
      dataDir: "/nonexistent",
      s3Bucket: s3.bucket,
      s3Prefix: prefix,
      s3Endpoint: s3.endpoint,
      s3ForcePathStyle: "on" as const,
      s3Region: s3.region,
      databaseUrl: database.url,
    };
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    if (s3.credentials !== undefined) {
      process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
    }
    try {
      const told: unknown[] = [];
      const opened = await openBlobStore({ settings, onReferenceIndex: (where) => told.push(where) });
      expect(opened.blobs).toBeInstanceOf(S3BlobStore);
      expect((opened.blobs as S3BlobStore).indexed).toBe(true);
      expect(told).toEqual([{ store: `s3://${s3.bucket}/${prefix}`, imported: 1 }]);
      expect(await opened.blobs.references(sha256)).toEqual(["t/img_1"]);
      await opened.close();

      // Over a pool it is handed (the server's): not ended by close().
      const again: unknown[] = [];
      const reopened = await openBlobStore({
        settings,
        pool,
        onReferenceIndex: (where) => again.push(where),
      });
      expect(again).toEqual([{ store: `s3://${s3.bucket}/${prefix}` }]);
      await reopened.blobs.addReference({ sha256, owner: "u/img_2" });
      await reopened.close();
      expect(await blobs.references(sha256)).toEqual(["t/img_1", "u/img_2"]);

      const unmigrated = await createTestDatabase();
      try {
        const refused = await openBlobStore({ settings: { ...settings, databaseUrl: unmigrated.url } }).catch(
          (caught: unknown) => caught,
        );
        expect((refused as AppError).code).toBe("migrations_pending");
        expect((refused as AppError).message).toContain("loupe migrate");
      } finally {
        await unmigrated.drop();
      }
    } finally {
      for (const [name, value] of [
        ["AWS_ACCESS_KEY_ID", saved.id],
        ["AWS_SECRET_ACCESS_KEY", saved.secret],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe("openBlobStore's imports", () => {
  it("loads pg only when a database is set: never for the files, nor for S3 alone", async () => {
    const scratch = await mkdtemp(path.join(os.tmpdir(), "loupe-blob-imports-"));
    try {
      // A module hook that reports every import of pg or the index's adapter, in a process of its own.
      await writeFile(
        path.join(scratch, "hook.mjs"),
        [
          "export async function resolve(specifier, context, next) {",
          '  if (/^pg$|pg-blob-references/.test(specifier)) process.stderr.write("IMPORTED " + specifier + "\\n");',
          "  return next(specifier, context);",
          "}",
        ].join("\n"),
      );
      await writeFile(
        path.join(scratch, "register.mjs"),
        'import { register } from "node:module";\nregister("./hook.mjs", import.meta.url);\n',
      );
      const module = pathToFileURL(path.join(import.meta.dirname, "../../src/media/open-blob-store.ts")).href;
      const imports = async (settings: Record<string, string>) => {
        const file = path.join(scratch, `run-${randomBytes(4).toString("hex")}.mts`);
        await writeFile(
          file,
          `const { openBlobStore } = await import(${JSON.stringify(module)});\n` +
            `const opened = await openBlobStore({ settings: ${JSON.stringify({
              dataDir: path.join(scratch, "data"),
              s3Prefix: "blobs/",
              s3ForcePathStyle: "off",
              s3Region: "us-east-1",
              ...settings,
            })}, check: false });\n` +
            "await opened.close();\n",
        );
        const { stderr } = await promisify(execFile)(
          process.execPath,
          ["--import", pathToFileURL(path.join(scratch, "register.mjs")).href, "--import", "tsx", file],
          { timeout: 60_000 },
        );
        return stderr.split("\n").filter((line) => line.startsWith("IMPORTED"));
      };
      expect(await imports({})).toEqual([]);
      expect(await imports({ s3Bucket: "loupe-media" })).toEqual([]);
      expect(await imports({ s3Bucket: "loupe-media", databaseUrl: database.url })).toEqual(
        expect.arrayContaining(["IMPORTED pg", "IMPORTED ./pg-blob-references.ts"]),
      );
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }, 120_000);
});
