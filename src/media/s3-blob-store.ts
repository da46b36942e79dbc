/**
 * The {@link BlobStore} on S3 or an S3-compatible object store ({@link S3BlobStore}), switched on by
 * `LOUPE_S3_BUCKET`.
 *
 * Keys are the filesystem adapter's, under `LOUPE_S3_PREFIX`: the bytes of a blob are the object
 * `<prefix><aa>/<bb>/<sha256>` (its `Content-Type` is the blob's; user metadata `stored-at` holds when it
 * was written). There is no JSON sidecar: each reference is a small object of its own,
 * `<prefix><aa>/<bb>/<sha256>.refs/<label as base64url>`, whose body is `{"label","touchedAt"}`. Adding a
 * reference is then one PutObject and never a read-modify-write of a shared list, so two Loupe processes
 * adding references to the same bytes cannot lose one; a write that names an owner it already has
 * rewrites that object, which is what makes the blob young for the orphan sweep. A label becomes base64url
 * in the key so that no owner, however hostile, can name another key.
 *
 * Only operations every S3 implementation has are used: PutObject (multipart through `@aws-sdk/lib-storage`
 * above {@link MULTIPART_PART_BYTES}), GetObject with `Range`, HeadObject, DeleteObject and ListObjectsV2.
 * Without an index (below), bytes are written before their reference and references are removed before
 * the bytes, so a crash leaves either an unreferenced blob (which the sweep collects after its grace
 * period) or a reference without bytes (which {@link S3BlobStore.scan} reports as a leftover). Operations
 * on one key are serialized within this process, as in the filesystem adapter; across processes, S3 has no
 * lock, so a process releasing the last reference of some bytes while another stores the same bytes again
 * can remove them under the new reference (the sweep then reports that reference as a leftover).
 *
 * Given a reference index ({@link S3BlobStoreOptions.referenceIndex}: PostgreSQL when
 * `LOUPE_DATABASE_URL` is set too), the references live there instead, with the records, and no `.refs/`
 * object is written or read. That race is then closed by the index's per-blob lock, shared by every
 * process: a release drops its references, and removes the bytes if none is left, with the lock held; a
 * put adds its reference with the lock held *before* it looks for the bytes, and writes them when they are
 * missing. Whichever takes the lock first, the bytes end up present and referenced: a release that comes
 * first removes them and the put writes them again; a put that comes first leaves a reference the release
 * sees. The lock is not held during the upload (a video takes minutes, and a lock is a database
 * connection), so while the bytes are being written their reference already names them; the put touches
 * it again once they are written, and takes it back if the upload fails. The reference objects of a
 * bucket that had them are copied into the index once, before the store is first used
 * ({@link S3BlobStore.importLegacyReferences}), and left in place: an older Loupe would still read them,
 * but this one no longer does.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { AppError, NotFoundError, StoreError, ValidationError } from "../errors.ts";
import type { BlobReference, BlobReferenceIndex } from "./blob-references.ts";
import {
  assertBlobKey,
  assertContentType,
  assertOwner,
  BLOB_KEY_PATTERN,
  type BlobEntry,
  type BlobInventory,
  type BlobLeftover,
  type BlobScan,
  type BlobStore,
  type ByteRange,
  type CollectBlobRequest,
  type CollectBlobResult,
  ownersOf,
  type PutBlobRequest,
  type PutBlobResult,
  releases,
  type StoredBlob,
  sha256Hex,
} from "./blob-store.ts";

/** Size of each part of a multipart upload; bodies up to this size go in one PutObject. */
export const MULTIPART_PART_BYTES = 8 * 1024 * 1024;

/** Allowed key prefixes: `/`-separated parts, ending in `/` (or empty for the bucket's root). */
const PREFIX_PATTERN = /^([A-Za-z0-9_.-]+\/){0,50}$/;
/** A key under the prefix: `<aa>/<bb>/<sha256>`, optionally `.refs/<base64url label>`. */
const LAYOUT_PATTERN = /^([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})(?:\.refs\/([A-Za-z0-9_-]{1,400}))?$/;
const STORED_AT_METADATA = "stored-at";

/** Connection settings of {@link S3BlobStore}; credentials come from the AWS SDK's default chain unless given. */
export interface S3BlobStoreOptions {
  /** Bucket holding the blobs; it must exist. */
  bucket: string;
  /** Key prefix of every object written, e.g. `blobs/`; a missing trailing `/` is added. */
  prefix?: string;
  /** Endpoint of an S3-compatible store; AWS S3 when absent. */
  endpoint?: string;
  /** Address the bucket in the path rather than the host name (most self-hosted stores need it). */
  forcePathStyle?: boolean;
  /** Region requests are signed for. */
  region?: string;
  /** Explicit credentials (tests); the SDK's default chain (`AWS_ACCESS_KEY_ID`, profiles, roles) when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Parts uploaded at once in a multipart upload. */
  uploadConcurrency?: number;
  /**
   * Keep the references in this index rather than as objects in the bucket (see the module comment); it
   * is given the store's name, `s3://<bucket>/<prefix>`, which keeps stores on one index apart.
   */
  referenceIndex?: (store: string) => BlobReferenceIndex;
}

interface ListedObject {
  /** Key relative to the prefix. */
  relative: string;
  size: number;
  lastModified: number;
}

interface RefObject {
  label: string;
  /** Key relative to the prefix. */
  relative: string;
  size: number;
  lastModified: number;
}

/** The S3 {@link BlobStore}: see the module comment for what is stored where. */
export class S3BlobStore implements BlobStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly #client: S3Client;
  readonly #uploadConcurrency: number;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #index: BlobReferenceIndex | undefined;
  /** The import of the bucket's reference objects into the index, once per store object. */
  #imported: Promise<unknown> | undefined;

  constructor({
    bucket,
    prefix = "",
    endpoint,
    forcePathStyle = false,
    region = "us-east-1",
    credentials,
    uploadConcurrency = 4,
    referenceIndex,
  }: S3BlobStoreOptions) {
    const normalized = prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
    if (
      !PREFIX_PATTERN.test(normalized) ||
      normalized.split("/").some((part) => part === "." || part === "..")
    ) {
      throw new ValidationError(
        `Invalid S3 key prefix ${JSON.stringify(prefix.slice(0, 80))}: expected /-separated parts of letters, digits, _, . and - (no . or .. parts), e.g. blobs/.`,
      );
    }
    this.bucket = bucket;
    this.prefix = normalized;
    this.#uploadConcurrency = uploadConcurrency;
    this.#index = referenceIndex?.(this.name);
    this.#client = new S3Client({
      region,
      forcePathStyle,
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(credentials === undefined ? {} : { credentials }),
      // Checksums only where the API requires them: many S3-compatible stores reject the newer defaults.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
  }

  /**
   * Lists at most one key under the prefix, so that a missing bucket, refused credentials or an
   * unreachable store is reported at start-up rather than at the first upload.
   *
   * @throws {StoreError} naming the fix.
   */
  async check(): Promise<void> {
    try {
      await this.#client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, MaxKeys: 1 }),
      );
    } catch (error) {
      throw s3Failure(error, { operation: "ListObjectsV2", bucket: this.bucket, key: this.prefix });
    }
  }

  /** Releases the SDK's connections. */
  close(): void {
    this.#client.destroy();
  }

  /** The store's name in a reference index: `s3://<bucket>/<prefix>`. */
  get name(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  /** Whether references are kept in a reference index rather than as objects. */
  get indexed(): boolean {
    return this.#index !== undefined;
  }

  /**
   * Copies the bucket's reference objects (`<sha256>.refs/<label>`, written before references moved to
   * the index) into the reference index, once per store and index: the first call lists the prefix and
   * records the import; later ones, from any process, find it recorded and do nothing. Each reference
   * keeps its object's `LastModified` as its time. Every operation that reads or changes references
   * waits for it; `openBlobStore` runs it at start-up, so a failure stops start-up.
   *
   * @returns how many references were copied; `undefined` when there was nothing to do (no index, or
   *   imported before).
   */
  async importLegacyReferences(): Promise<{ imported: number } | undefined> {
    if (this.#index === undefined) return undefined;
    return this.#index.importOnce(async () => {
      const references: Array<BlobReference & { sha256: string }> = [];
      for (const object of await this.#list(this.prefix)) {
        const parsed = parseLayoutKey(object.relative);
        if (parsed?.label !== undefined) {
          references.push({ sha256: parsed.sha256, label: parsed.label, touchedAt: object.lastModified });
        }
      }
      return references;
    });
  }

  /** The reference index once the bucket's reference objects are in it; undefined without one. */
  async #ready(): Promise<BlobReferenceIndex | undefined> {
    if (this.#index === undefined) return undefined;
    this.#imported ??= this.importLegacyReferences().catch((error: unknown) => {
      this.#imported = undefined;
      throw error;
    });
    await this.#imported;
    return this.#index;
  }

  #bytesKey(sha256: string): string {
    assertBlobKey(sha256);
    return `${this.prefix}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
  }

  #refKey(sha256: string, label: string): string {
    return `${this.#bytesKey(sha256)}.refs/${Buffer.from(label, "utf8").toString("base64url")}`;
  }

  /** Where a reference of the index would be as an object, relative to the prefix: how scans name it. */
  #refRelative(sha256: string, reference: BlobReference): RefObject {
    return {
      label: reference.label,
      relative: this.#refKey(sha256, reference.label).slice(this.prefix.length),
      size: 0,
      lastModified: reference.touchedAt,
    };
  }

  /** Runs `task` after every earlier task on the same key has settled. */
  #withLock<T>(sha256: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(sha256) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.catch(() => undefined);
    this.#locks.set(sha256, settled);
    void settled.then(() => {
      if (this.#locks.get(sha256) === settled) this.#locks.delete(sha256);
    });
    return next;
  }

  /** The bytes object's size, content type and write time; undefined when there is none. */
  async #head(sha256: string): Promise<{ size: number; contentType: string; storedAt: number } | undefined> {
    const key = this.#bytesKey(sha256);
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      const storedAt = Number(head.Metadata?.[STORED_AT_METADATA]);
      return {
        size: head.ContentLength ?? 0,
        contentType: head.ContentType ?? "application/octet-stream",
        storedAt: Number.isFinite(storedAt) ? storedAt : (head.LastModified?.getTime() ?? 0),
      };
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw s3Failure(error, { operation: "HeadObject", bucket: this.bucket, key });
    }
  }

  /** Every object under `prefix` (absolute), relative to the store's prefix. */
  async #list(prefix: string): Promise<ListedObject[]> {
    const objects: ListedObject[] = [];
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        );
      } catch (error) {
        throw s3Failure(error, { operation: "ListObjectsV2", bucket: this.bucket, key: prefix });
      }
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.prefix)) continue;
        objects.push({
          relative: object.Key.slice(this.prefix.length),
          size: object.Size ?? 0,
          lastModified: object.LastModified?.getTime() ?? 0,
        });
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return objects;
  }

  /** The reference objects of one blob. */
  async #refs(sha256: string): Promise<RefObject[]> {
    const refs: RefObject[] = [];
    for (const object of await this.#list(`${this.#bytesKey(sha256)}.refs/`)) {
      const parsed = parseLayoutKey(object.relative);
      if (parsed?.label !== undefined && parsed.sha256 === sha256)
        refs.push({ ...object, label: parsed.label });
    }
    return refs;
  }

  /** Writes (or rewrites, which touches it) `label`'s reference to the blob. */
  async #writeRef(sha256: string, label: string): Promise<void> {
    const key = this.#refKey(sha256, label);
    try {
      await this.#client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: JSON.stringify({ label, touchedAt: Date.now() }),
          ContentType: "application/json",
        }),
      );
    } catch (error) {
      throw s3Failure(error, { operation: "PutObject", bucket: this.bucket, key });
    }
  }

  /** When a reference was last written, by this process's clock (the listing's time when unreadable). */
  async #refTouchedAt(ref: RefObject): Promise<number> {
    const key = `${this.prefix}${ref.relative}`;
    try {
      const response = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const parsed = JSON.parse((await response.Body?.transformToString("utf8")) ?? "") as {
        touchedAt?: unknown;
      };
      return typeof parsed.touchedAt === "number"
        ? Math.max(parsed.touchedAt, ref.lastModified)
        : ref.lastModified;
    } catch (error) {
      if (isMissing(error)) return 0;
      if (error instanceof SyntaxError) return ref.lastModified;
      throw s3Failure(error, { operation: "GetObject", bucket: this.bucket, key });
    }
  }

  async #delete(key: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      if (isMissing(error)) return;
      throw s3Failure(error, { operation: "DeleteObject", bucket: this.bucket, key });
    }
  }

  /** Removes the references first, then the bytes (see the module comment); true when bytes existed. */
  async #removeBlob(sha256: string, refs: readonly RefObject[]): Promise<boolean> {
    for (const ref of refs) await this.#delete(`${this.prefix}${ref.relative}`);
    const existed = (await this.#head(sha256)) !== undefined;
    await this.#delete(this.#bytesKey(sha256));
    return existed;
  }

  async put({ bytes, contentType, owner }: PutBlobRequest): Promise<PutBlobResult> {
    if (!(bytes instanceof Uint8Array)) throw new ValidationError("Blob bytes must be a Uint8Array.");
    assertContentType(contentType);
    if (owner !== undefined) assertOwner(owner);
    const sha256 = sha256Hex(bytes);
    const index = await this.#ready();
    return this.#withLock(sha256, async () => {
      if (index === undefined || owner === undefined) {
        const created = await this.#writeBytes(sha256, bytes, contentType);
        // After the bytes, so a reference never names bytes that were not written; a rewrite touches it.
        if (owner !== undefined) await this.#writeRef(sha256, owner);
        return { sha256, size: bytes.length, created };
      }
      // The reference first, under the blob's lock: from then on no release removes the bytes.
      const added = await index.withBlob(sha256, (refs) => refs.touch(owner));
      let created: boolean;
      try {
        created = await this.#writeBytes(sha256, bytes, contentType);
      } catch (error) {
        // Best effort: a reference left behind names missing bytes, which the sweep removes once old.
        if (added) await index.withBlob(sha256, (refs) => refs.drop([owner])).catch(() => undefined);
        throw error;
      }
      // An upload takes time: the reference is as young as the bytes (and back if a sweep dropped it).
      if (created) await index.withBlob(sha256, (refs) => refs.touch(owner));
      return { sha256, size: bytes.length, created };
    });
  }

  /** Writes the bytes unless an object of their size is there; true when written. */
  async #writeBytes(sha256: string, bytes: Uint8Array, contentType: string): Promise<boolean> {
    const key = this.#bytesKey(sha256);
    const existing = await this.#head(sha256);
    if (existing?.size === bytes.length) return false;
    const upload = new Upload({
      client: this.#client,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: bytes,
        ContentType: contentType,
        Metadata: { [STORED_AT_METADATA]: String(Date.now()) },
      },
      partSize: MULTIPART_PART_BYTES,
      queueSize: this.#uploadConcurrency,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      throw s3Failure(error, { operation: "PutObject", bucket: this.bucket, key });
    }
    return true;
  }

  async get(sha256: string): Promise<StoredBlob> {
    const head = await this.#head(sha256);
    if (head === undefined) {
      throw new NotFoundError(`No blob ${sha256} in the blob store.`, { context: { sha256 } });
    }
    const { size, contentType } = head;
    const key = this.#bytesKey(sha256);
    const open = async (range?: ByteRange): Promise<ReadableStream<Uint8Array>> => {
      try {
        const response = await this.#client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: key,
            ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` }),
          }),
        );
        const expected = range === undefined ? size : range.end - range.start + 1;
        if (response.Body === undefined || response.ContentLength !== expected) {
          await response.Body?.transformToWebStream().cancel();
          throw new StoreError(
            `S3 answered GetObject of ${key} with ${response.ContentLength ?? "no"} bytes where ${expected} were asked for; the store must honour Range requests.`,
            { code: "blob_store_error", context: { bucket: this.bucket, key } },
          );
        }
        return response.Body.transformToWebStream() as ReadableStream<Uint8Array>;
      } catch (error) {
        if (error instanceof AppError) throw error;
        if (isMissing(error)) {
          throw new NotFoundError(`Blob ${sha256} was removed while being read.`, { context: { sha256 } });
        }
        throw s3Failure(error, { operation: "GetObject", bucket: this.bucket, key });
      }
    };
    return {
      sha256,
      size,
      contentType,
      stream: (range) => {
        if (range !== undefined && !(0 <= range.start && range.start <= range.end && range.end < size)) {
          throw new ValidationError(
            `Byte range ${range.start}-${range.end} is not within blob ${sha256} of ${size} bytes.`,
          );
        }
        // Opened on the first read, so a stream nobody reads costs no request.
        let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
        return new ReadableStream<Uint8Array>({
          pull: async (controller) => {
            reader ??= (await open(range)).getReader();
            const { done, value } = await reader.read();
            if (done) controller.close();
            else controller.enqueue(value);
          },
          cancel: async (reason) => {
            await reader?.cancel(reason);
          },
        });
      },
      bytes: async () => {
        const chunks: Uint8Array[] = [];
        const reader = (await open()).getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          chunks.push(value);
        }
        return Buffer.concat(chunks);
      },
    };
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.#head(sha256)) !== undefined;
  }

  async delete(sha256: string): Promise<boolean> {
    assertBlobKey(sha256);
    const index = await this.#ready();
    return this.#withLock(sha256, async () => {
      if (index === undefined) return this.#removeBlob(sha256, await this.#refs(sha256));
      return index.withBlob(sha256, async (refs) => {
        await refs.dropAll();
        return this.#removeBlob(sha256, []);
      });
    });
  }

  async addReference({ sha256, owner }: { sha256: string; owner: string }): Promise<void> {
    assertOwner(owner);
    assertBlobKey(sha256);
    const index = await this.#ready();
    const missing = () =>
      new NotFoundError(`No blob ${sha256} to reference; store it first.`, { context: { sha256 } });
    await this.#withLock(sha256, async () => {
      if (index !== undefined) {
        // Under the blob's lock, so no release removes the bytes between the look and the reference.
        return index.withBlob(sha256, async (refs) => {
          if ((await this.#head(sha256)) === undefined) throw missing();
          await refs.touch(owner);
        });
      }
      if ((await this.#head(sha256)) === undefined) throw missing();
      await this.#writeRef(sha256, owner);
    });
  }

  async release({ sha256, owner }: { sha256: string; owner: string }): Promise<{ removed: boolean }> {
    assertOwner(owner);
    assertBlobKey(sha256);
    const index = await this.#ready();
    return this.#withLock(sha256, async () => {
      if (index !== undefined) {
        // The bytes go with the lock held: a put of the same bytes waits, then finds them gone.
        return index.withBlob(sha256, async (refs) => {
          const labels = (await refs.list()).map((ref) => ref.label);
          const dropped = await refs.drop(labels.filter((label) => releases(owner, label)));
          if (labels.length > dropped.length || (await this.#head(sha256)) === undefined) {
            return { removed: false };
          }
          return { removed: await this.#removeBlob(sha256, []) };
        });
      }
      const refs = await this.#refs(sha256);
      const dropped = refs.filter((ref) => releases(owner, ref.label));
      for (const ref of dropped) await this.#delete(`${this.prefix}${ref.relative}`);
      if (refs.length > dropped.length || (await this.#head(sha256)) === undefined) return { removed: false };
      return { removed: await this.#removeBlob(sha256, []) };
    });
  }

  async references(sha256: string): Promise<string[]> {
    assertBlobKey(sha256);
    const index = await this.#ready();
    if (index !== undefined) return ownersOf((await index.list(sha256)).map((ref) => ref.label));
    return ownersOf((await this.#refs(sha256)).map((ref) => ref.label));
  }

  /**
   * Lists the whole prefix once. A blob's `touchedAt` is the newest `LastModified` of its bytes and
   * references as the store reports it (whole seconds on many stores): {@link collect} checks again with
   * the times the references hold. References whose bytes are gone are leftovers of kind `temporary`.
   */
  async scan(): Promise<BlobScan> {
    const { blobs, orphanRefs } = await this.#layout();
    const scan: BlobScan = { blobs: [], leftovers: [] };
    for (const [sha256, blob] of blobs) {
      const entry: BlobEntry = {
        sha256,
        size: blob.size,
        refs: blob.refs.map((ref) => ref.label).sort(),
        touchedAt: Math.max(blob.lastModified, ...blob.refs.map((ref) => ref.lastModified)),
      };
      scan.blobs.push(entry);
    }
    for (const ref of orphanRefs) {
      scan.leftovers.push({
        kind: "temporary",
        path: ref.relative,
        size: ref.size,
        touchedAt: ref.lastModified,
      });
    }
    scan.blobs.sort((a, b) => a.sha256.localeCompare(b.sha256));
    scan.leftovers.sort((a, b) => a.path.localeCompare(b.path));
    return scan;
  }

  async collect({
    sha256,
    staleOwners = [],
    untouchedSince,
  }: CollectBlobRequest): Promise<CollectBlobResult> {
    assertBlobKey(sha256);
    const index = await this.#ready();
    const nothing = (skipped: "touched" | "gone"): CollectBlobResult => ({
      removed: false,
      bytes: 0,
      released: [],
      skipped,
    });
    if (index !== undefined) {
      return this.#withLock(sha256, () =>
        index.withBlob(sha256, async (refs) => {
          const head = await this.#head(sha256);
          if (head === undefined) return nothing("gone");
          const current = await refs.list();
          if (Math.max(head.storedAt, ...current.map((ref) => ref.touchedAt)) > untouchedSince) {
            return nothing("touched");
          }
          const released = await refs.drop(
            current.filter((ref) => staleOwners.includes(ref.label)).map((ref) => ref.label),
          );
          if (current.length > released.length) return { removed: false, bytes: 0, released };
          return { removed: await this.#removeBlob(sha256, []), bytes: head.size, released };
        }),
      );
    }
    return this.#withLock(sha256, async () => {
      const head = await this.#head(sha256);
      if (head === undefined) return nothing("gone");
      const refs = await this.#refs(sha256);
      const times = await Promise.all(refs.map((ref) => this.#refTouchedAt(ref)));
      if (Math.max(head.storedAt, ...times) > untouchedSince) return nothing("touched");
      const stale = refs.filter((ref) => staleOwners.includes(ref.label));
      for (const ref of stale) await this.#delete(`${this.prefix}${ref.relative}`);
      const released = stale.map((ref) => ref.label).sort();
      if (refs.length > stale.length) return { removed: false, bytes: 0, released };
      return { removed: await this.#removeBlob(sha256, []), bytes: head.size, released };
    });
  }

  async removeLeftover({
    leftover,
    untouchedSince,
  }: {
    leftover: BlobLeftover;
    untouchedSince: number;
  }): Promise<boolean> {
    // Only references a scan reports: a leftover can never name another key.
    const parsed = leftover.kind === "temporary" ? parseLayoutKey(leftover.path) : undefined;
    if (parsed?.label === undefined) return false;
    const { sha256, label } = parsed;
    const index = await this.#ready();
    if (index !== undefined) {
      return this.#withLock(sha256, () =>
        index.withBlob(sha256, async (refs) => {
          if ((await this.#head(sha256)) !== undefined) return false;
          const ref = (await refs.list()).find((candidate) => candidate.label === label);
          if (ref === undefined || ref.touchedAt > untouchedSince) return false;
          return (await refs.drop([label])).length > 0;
        }),
      );
    }
    return this.#withLock(sha256, async () => {
      if ((await this.#head(sha256)) !== undefined) return false;
      const ref = (await this.#refs(sha256)).find((candidate) => candidate.label === label);
      if (ref === undefined || (await this.#refTouchedAt(ref)) > untouchedSince) return false;
      await this.#delete(`${this.prefix}${ref.relative}`);
      return true;
    });
  }

  /** Keys of every stored blob (for tests and maintenance; lists the whole prefix). */
  async keys(): Promise<string[]> {
    return [...(await this.#layout()).blobs.keys()].sort();
  }

  /** Every object under the prefix, read against the layout, as {@link FsBlobStore.inventory} reports it. */
  async inventory(): Promise<BlobInventory> {
    const { blobs, orphanRefs, stray } = await this.#layout();
    const inventory: BlobInventory = {
      blobs: [],
      unreferenced: [],
      missingSidecar: [],
      missingBytes: [...new Set(orphanRefs.map((ref) => parseLayoutKey(ref.relative)?.sha256 ?? ""))].sort(),
      stray: stray.sort(),
    };
    for (const [sha256, blob] of [...blobs].sort(([a], [b]) => a.localeCompare(b))) {
      const refs = ownersOf(blob.refs.map((ref) => ref.label));
      inventory.blobs.push({ sha256, refs });
      if (refs.length === 0) inventory.unreferenced.push(sha256);
    }
    return inventory;
  }

  /** The whole prefix sorted into blobs with their references, references without bytes, and others. */
  async #layout(): Promise<{
    blobs: Map<string, ListedObject & { refs: RefObject[] }>;
    orphanRefs: RefObject[];
    stray: string[];
  }> {
    const index = await this.#ready();
    const blobs = new Map<string, ListedObject & { refs: RefObject[] }>();
    const refs: Array<RefObject & { sha256: string }> = [];
    const stray: string[] = [];
    for (const object of await this.#list(this.prefix)) {
      const parsed = parseLayoutKey(object.relative);
      if (parsed === undefined) stray.push(object.relative);
      else if (parsed.label === undefined) blobs.set(parsed.sha256, { ...object, refs: [] });
      // With an index, reference objects are the copied leftovers of before: neither read nor stray.
      else if (index === undefined) refs.push({ ...object, label: parsed.label, sha256: parsed.sha256 });
    }
    if (index !== undefined) {
      for (const [sha256, indexed] of await index.listAll()) {
        for (const reference of indexed) refs.push({ ...this.#refRelative(sha256, reference), sha256 });
      }
    }
    const orphanRefs: RefObject[] = [];
    for (const { sha256, ...ref } of refs) {
      const blob = blobs.get(sha256);
      if (blob === undefined) orphanRefs.push(ref);
      else blob.refs.push(ref);
    }
    return { blobs, orphanRefs, stray };
  }
}

/** A key relative to the prefix, read against the layout; undefined for anything else. */
function parseLayoutKey(relative: string): { sha256: string; label?: string } | undefined {
  const match = LAYOUT_PATTERN.exec(relative);
  if (match === null) return undefined;
  const [, first, second, sha256, encoded] = match as unknown as [string, string, string, string, string?];
  if (!BLOB_KEY_PATTERN.test(sha256) || sha256.slice(0, 2) !== first || sha256.slice(2, 4) !== second) {
    return undefined;
  }
  if (encoded === undefined) return { sha256 };
  const label = Buffer.from(encoded, "base64url").toString("utf8");
  // A reference object whose name does not decode to a valid label is not one of ours.
  try {
    assertOwner(label);
  } catch {
    return undefined;
  }
  return Buffer.from(label, "utf8").toString("base64url") === encoded ? { sha256, label } : undefined;
}

/** Whether an SDK failure says the object (not the bucket) does not exist. */
function isMissing(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  if (error.name === "NoSuchBucket") return false;
  return error.name === "NoSuchKey" || error.name === "NotFound" || error.$metadata.httpStatusCode === 404;
}

/** An SDK failure as a typed error naming the operation, the key and the fix; credentials never appear. */
function s3Failure(
  error: unknown,
  { operation, bucket, key }: { operation: string; bucket: string; key: string },
): AppError {
  if (error instanceof AppError) return error;
  const name = error instanceof Error ? error.name : "Error";
  const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
  const context = {
    operation,
    bucket,
    key,
    s3Error: name,
    ...(status === undefined ? {} : { httpStatus: status }),
  };
  const detail = error instanceof Error ? error.message.slice(0, 300) : String(error).slice(0, 300);
  if (name === "NoSuchBucket") {
    return new StoreError(
      `S3 bucket ${JSON.stringify(bucket)} does not exist (${operation} ${key}). Create it, or fix LOUPE_S3_BUCKET / LOUPE_S3_ENDPOINT.`,
      { code: "blob_store_error", cause: error, context },
    );
  }
  if (
    status === 403 ||
    ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "CredentialsProviderError"].includes(name)
  ) {
    return new StoreError(
      `S3 refused ${operation} ${key} in bucket ${JSON.stringify(bucket)} (${name}: ${detail}). Check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the role), LOUPE_S3_REGION and the bucket policy.`,
      { code: "blob_store_denied", cause: error, context },
    );
  }
  return new StoreError(
    `S3 ${operation} ${key} in bucket ${JSON.stringify(bucket)} failed (${name}: ${detail}). Check that the store at LOUPE_S3_ENDPOINT (or AWS) answers.`,
    { code: "blob_store_error", cause: error, context, retryAfterSeconds: 5 },
  );
}

/** Builds the S3 blob store; nothing is sent until the first operation. */
export function createS3BlobStore(options: S3BlobStoreOptions): S3BlobStore {
  return new S3BlobStore(options);
}
