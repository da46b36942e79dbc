/**
 * The blob store port ({@link BlobStore}) and its filesystem adapter ({@link FsBlobStore}).
 *
 * Blobs are content-addressed: the key is the sha256 of the bytes (64 lowercase hex characters), so
 * storing the same bytes twice keeps one copy, and a key can never name a path outside the store (it is
 * validated before any path is built). Each blob sits at `<dir>/<aa>/<bb>/<sha256>` with a small JSON
 * sidecar `<sha256>.json` holding its content type and size. Writes go to a temporary file in the same
 * directory, are fsynced and renamed into place, so a crash leaves either the whole blob or none.
 *
 * The store also keeps a reference index: which record ids (of any tenant) use a blob. Deleting a
 * record drops its references, and the blob itself is removed only once nothing refers to it. The S3-
 * compatible adapter (`s3-blob-store.ts`) implements the same interface with the same keys.
 *
 * An ingest writes under a claim of its own, `<tenant>/<record id>/<nonce>` ({@link claimOwner}), not
 * the bare `<tenant>/<record id>`: two ingests of the same bytes for the same record at once (a client
 * retrying while the first is still running) each hold their own label, so the one that fails releases
 * only its claim and never the reference of the one that stored the record. A claim stands for its
 * record: {@link BlobStore.references} reports it as `<tenant>/<record id>`, and releasing the record's
 * owner drops every claim under it.
 *
 * For the orphan sweep (`ingest/blob-gc.ts`) the store lists what it holds with the time each blob's
 * references last changed ({@link BlobStore.scan}), and removes a blob only after checking again, under
 * the same per-key lock as every write, that nobody touched it since ({@link BlobStore.collect}). Every
 * write that names an owner touches that time, even when the reference was already there, so an ingest in
 * flight always looks young to the sweep.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, utimes } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { NotFoundError, ValidationError } from "../errors.ts";

/** Keys of blobs: the sha256 of their bytes, lowercase hex. */
export const BLOB_KEY_PATTERN = /^[0-9a-f]{64}$/;

/** Prefix of a record's `mediaRef` (and other `*Ref` fields) that names a blob: `blob:<sha256>`. */
export const BLOB_REF_PREFIX = "blob:";

/** Longest content type recorded for a blob. */
const MAX_CONTENT_TYPE_LENGTH = 255;
const CONTENT_TYPE_PATTERN =
  /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+"-]+)*$/;
/** Who refers to a blob: an owner label written by the caller, e.g. `<tenant>/<recordId>`. */
const OWNER_PATTERN = /^[A-Za-z0-9_.@:/-]{1,300}$/;

/** What {@link BlobStore.put} stored. */
export interface PutBlobResult {
  /** The blob's key: sha256 of its bytes. */
  sha256: string;
  /** Size in bytes. */
  size: number;
  /** False when the same bytes were already stored (nothing was written). */
  created: boolean;
}

/** A stored blob, as {@link BlobStore.get} returns it. */
export interface StoredBlob {
  sha256: string;
  size: number;
  contentType: string;
  /**
   * The bytes as a Web stream, read from storage as the caller consumes it; with `range`, only the bytes
   * from `start` to `end` (inclusive, both within the blob), so a media player seeking in a long video
   * reads only what it asks for.
   */
  stream(range?: ByteRange): ReadableStream<Uint8Array>;
  /** All the bytes at once. */
  bytes(): Promise<Buffer>;
}

/** A span of a blob's bytes, offsets inclusive (as in an HTTP `Content-Range`). */
export interface ByteRange {
  start: number;
  end: number;
}

/** Arguments of {@link BlobStore.put}. */
export interface PutBlobRequest {
  bytes: Uint8Array;
  /** MIME type served with the blob, e.g. `image/jpeg`. */
  contentType: string;
  /**
   * Who uses the bytes (`<tenant>/<recordId>`): referenced in the same step as the write, so the blob
   * never exists unreferenced and a failed ingest can {@link BlobStore.release} exactly what it added.
   */
  owner?: string;
}

/**
 * The blob store port: content-addressed bytes with their content type, and the reference index that
 * decides when a blob may go.
 */
export interface BlobStore {
  /**
   * Stores bytes under their sha256 (storing the same bytes again writes nothing), referenced by
   * `owner` when one is given.
   */
  put(request: PutBlobRequest): Promise<PutBlobResult>;
  /**
   * The blob with this key.
   *
   * @throws {NotFoundError} when there is none; {@link ValidationError} when the key is not a sha256.
   */
  get(sha256: string): Promise<StoredBlob>;
  /** Whether a blob with this key exists. */
  has(sha256: string): Promise<boolean>;
  /** Removes a blob and its references, whoever holds them; true when one was removed. */
  delete(sha256: string): Promise<boolean>;
  /** Records that `owner` (e.g. `<tenant>/<recordId>`) uses the blob. Idempotent. */
  addReference(request: { sha256: string; owner: string }): Promise<void>;
  /**
   * Drops `owner`'s reference (for a record's owner `<tenant>/<record id>`, every claim under it too)
   * and, when no reference is left, removes the blob.
   *
   * @returns whether the blob was removed.
   */
  release(request: { sha256: string; owner: string }): Promise<{ removed: boolean }>;
  /** Owners referring to the blob (claims as the record they stand for), sorted, each once. */
  references(sha256: string): Promise<string[]>;
  /**
   * Everything the store holds, for the orphan sweep: each blob with its references and when they last
   * changed, and leftovers of interrupted writes and removals.
   */
  scan(): Promise<BlobScan>;
  /**
   * Drops `staleOwners`' references and removes the blob if none is left, but only if its references
   * did not change after `untouchedSince` (checked under the key's lock, so a write in flight wins).
   */
  collect(request: CollectBlobRequest): Promise<CollectBlobResult>;
  /** Removes a leftover {@link BlobStore.scan} reported, if it was not touched after `untouchedSince`. */
  removeLeftover(request: { leftover: BlobLeftover; untouchedSince: number }): Promise<boolean>;
}

/** A stored blob as {@link BlobStore.scan} lists it. */
export interface BlobEntry {
  sha256: string;
  /** Size in bytes. */
  size: number;
  /** Labels referring to it as stored (`<tenant>/<record id>` or a claim under it), sorted. */
  refs: string[];
  /** When its references last changed (or were last confirmed by a write), ms since the epoch. */
  touchedAt: number;
  /** Set when the sidecar could not be parsed: damage to look at, never garbage. */
  unreadable?: true;
}

/** A file of no complete blob: bytes whose sidecar is gone, or a temporary file of a write. */
export interface BlobLeftover {
  kind: "unindexed" | "temporary";
  /** Path relative to the store's directory (on S3: the key under the prefix). */
  path: string;
  size: number;
  /** Last modification, ms since the epoch. */
  touchedAt: number;
}

/** What {@link BlobStore.scan} found. */
export interface BlobScan {
  blobs: BlobEntry[];
  leftovers: BlobLeftover[];
}

/** Arguments of {@link BlobStore.collect}. */
export interface CollectBlobRequest {
  sha256: string;
  /** References known to be dead (their records are gone); the others are kept. */
  staleOwners?: readonly string[];
  /** Ms since the epoch: a blob whose references changed after this is left alone. */
  untouchedSince: number;
}

/** What {@link BlobStore.collect} did. */
export interface CollectBlobResult {
  /** Whether the blob was removed (no reference left). */
  removed: boolean;
  /** Bytes freed. */
  bytes: number;
  /** References dropped. */
  released: string[];
  /** Set when nothing was done because the blob changed, or was gone, since the scan. */
  skipped?: "touched" | "gone";
}

/**
 * A label of its own for one ingest's use of a blob for a record: `<owner>/<16 hex>`. Put and release
 * with it; the record's owner (`<tenant>/<record id>`) still names it for references and deletes.
 */
export function claimOwner(owner: string): string {
  assertOwner(owner);
  return `${owner}/${randomBytes(8).toString("hex")}`;
}

/** The owner a label stands for: the record of a claim (`<tenant>/<id>/<nonce>`), else the label. */
export function ownerOfLabel(label: string): string {
  const parts = label.split("/");
  return parts.length === 3 ? `${parts[0]}/${parts[1]}` : label;
}

/** Whether releasing `owner` drops `label`: the same label, or a claim under a record's owner. */
export function releases(owner: string, label: string): boolean {
  return label === owner || (owner.split("/").length === 2 && label.startsWith(`${owner}/`));
}

/** Labels as the owners they stand for, sorted, each once. */
export function ownersOf(labels: readonly string[]): string[] {
  return [...new Set(labels.map(ownerOfLabel))].sort();
}

/** The sha256 of bytes, lowercase hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** `blob:<sha256>`, the reference to a blob stored on records. */
export function blobRef(sha256: string): string {
  assertBlobKey(sha256);
  return `${BLOB_REF_PREFIX}${sha256}`;
}

/** The key named by a `blob:<sha256>` reference; undefined for anything else (URLs, empty). */
export function parseBlobRef(ref: string): string | undefined {
  if (!ref.startsWith(BLOB_REF_PREFIX)) return undefined;
  const key = ref.slice(BLOB_REF_PREFIX.length);
  return BLOB_KEY_PATTERN.test(key) ? key : undefined;
}

/** @throws {ValidationError} unless `sha256` is 64 lowercase hex characters. */
export function assertBlobKey(sha256: unknown): asserts sha256 is string {
  if (typeof sha256 !== "string" || !BLOB_KEY_PATTERN.test(sha256)) {
    throw new ValidationError(
      `Invalid blob key ${JSON.stringify(String(sha256).slice(0, 80))}: blob keys are sha256 digests, 64 lowercase hex characters.`,
      { context: { key: String(sha256).slice(0, 80) } },
    );
  }
}

/** @throws {ValidationError} unless `contentType` is a MIME type such as `image/jpeg` (no header injection). */
export function assertContentType(contentType: unknown): asserts contentType is string {
  if (
    typeof contentType !== "string" ||
    contentType.length > MAX_CONTENT_TYPE_LENGTH ||
    !CONTENT_TYPE_PATTERN.test(contentType)
  ) {
    throw new ValidationError(
      `Invalid content type ${JSON.stringify(String(contentType).slice(0, 80))}: expected a MIME type such as image/jpeg.`,
    );
  }
}

/** @throws {ValidationError} unless `owner` is a label of 1–300 characters from letters, digits and `_.@:/-`. */
export function assertOwner(owner: unknown): asserts owner is string {
  if (typeof owner !== "string" || !OWNER_PATTERN.test(owner)) {
    throw new ValidationError(
      `Invalid blob owner ${JSON.stringify(String(owner).slice(0, 80))}: 1–300 characters from letters, digits and _.@:/-.`,
    );
  }
}

interface Sidecar {
  contentType: string;
  size: number;
  /** Owners referring to the blob. */
  refs: string[];
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/** Options of {@link FsBlobStore}. */
export interface FsBlobStoreOptions {
  /** Root directory, e.g. `<LOUPE_DATA_DIR>/blobs`; created on first write. */
  dir: string;
}

/**
 * The filesystem {@link BlobStore}. Operations on one key are serialized in this process (the sidecar
 * is read, changed and rewritten), so concurrent puts and releases of the same blob cannot lose a
 * reference. One process per data directory, like Milvus Lite.
 */
export class FsBlobStore implements BlobStore {
  readonly dir: string;
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor({ dir }: FsBlobStoreOptions) {
    this.dir = path.resolve(dir);
  }

  #paths(sha256: string): { folder: string; blob: string; sidecar: string } {
    assertBlobKey(sha256);
    const folder = path.join(this.dir, sha256.slice(0, 2), sha256.slice(2, 4));
    return { folder, blob: path.join(folder, sha256), sidecar: path.join(folder, `${sha256}.json`) };
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

  async #readSidecar(file: string): Promise<Sidecar | undefined> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if (isErrno(error, "ENOENT")) return undefined;
      throw error;
    }
    const parsed = JSON.parse(text) as Partial<Sidecar>;
    return {
      contentType: typeof parsed.contentType === "string" ? parsed.contentType : "application/octet-stream",
      size: typeof parsed.size === "number" ? parsed.size : 0,
      refs: Array.isArray(parsed.refs) ? parsed.refs.filter((ref) => typeof ref === "string") : [],
    };
  }

  /** Writes `data` to `file` through a fsynced temporary file and a rename. */
  async #writeAtomic(folder: string, file: string, data: Uint8Array | string): Promise<void> {
    await mkdir(folder, { recursive: true });
    const temporary = path.join(folder, `.tmp-${randomBytes(8).toString("hex")}`);
    const handle = await open(temporary, "wx", 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temporary, file);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
  }

  async put({ bytes, contentType, owner }: PutBlobRequest): Promise<PutBlobResult> {
    if (!(bytes instanceof Uint8Array)) throw new ValidationError("Blob bytes must be a Uint8Array.");
    assertContentType(contentType);
    if (owner !== undefined) assertOwner(owner);
    const sha256 = sha256Hex(bytes);
    const { folder, blob, sidecar } = this.#paths(sha256);
    return this.#withLock(sha256, async () => {
      const existing = await this.#readSidecar(sidecar);
      const refs = existing?.refs ?? [];
      const withOwner = owner === undefined || refs.includes(owner) ? refs : [...refs, owner].sort();
      if (existing !== undefined && (await fileSize(blob)) === bytes.length) {
        if (withOwner !== refs) {
          await this.#writeAtomic(folder, sidecar, JSON.stringify({ ...existing, refs: withOwner }));
        } else if (owner !== undefined) {
          // The owner may be a dead reference the sweep is about to drop: a fresh time keeps it.
          await touch(sidecar);
        }
        return { sha256, size: bytes.length, created: false };
      }
      await this.#writeAtomic(folder, blob, bytes);
      const record: Sidecar = { contentType, size: bytes.length, refs: withOwner };
      await this.#writeAtomic(folder, sidecar, JSON.stringify(record));
      return { sha256, size: bytes.length, created: true };
    });
  }

  async get(sha256: string): Promise<StoredBlob> {
    const { blob, sidecar } = this.#paths(sha256);
    const meta = await this.#readSidecar(sidecar);
    const size = await fileSize(blob);
    if (meta === undefined || size === undefined) {
      throw new NotFoundError(`No blob ${sha256} in the blob store.`, { context: { sha256 } });
    }
    return {
      sha256,
      size,
      contentType: meta.contentType,
      stream: (range) => {
        if (range !== undefined && !(0 <= range.start && range.start <= range.end && range.end < size)) {
          throw new ValidationError(
            `Byte range ${range.start}-${range.end} is not within blob ${sha256} of ${size} bytes.`,
          );
        }
        return Readable.toWeb(createReadStream(blob, range)) as ReadableStream<Uint8Array>;
      },
      bytes: () => readFile(blob),
    };
  }

  async has(sha256: string): Promise<boolean> {
    const { blob, sidecar } = this.#paths(sha256);
    return (await fileSize(blob)) !== undefined && (await fileSize(sidecar)) !== undefined;
  }

  async delete(sha256: string): Promise<boolean> {
    const { blob, sidecar } = this.#paths(sha256);
    return this.#withLock(sha256, () => removeBlobFiles(blob, sidecar));
  }

  async addReference({ sha256, owner }: { sha256: string; owner: string }): Promise<void> {
    assertOwner(owner);
    const { folder, sidecar } = this.#paths(sha256);
    await this.#withLock(sha256, async () => {
      const meta = await this.#readSidecar(sidecar);
      if (meta === undefined) {
        throw new NotFoundError(`No blob ${sha256} to reference; store it first.`, { context: { sha256 } });
      }
      if (meta.refs.includes(owner)) {
        await touch(sidecar);
        return;
      }
      meta.refs = [...meta.refs, owner].sort();
      await this.#writeAtomic(folder, sidecar, JSON.stringify(meta));
    });
  }

  async release({ sha256, owner }: { sha256: string; owner: string }): Promise<{ removed: boolean }> {
    assertOwner(owner);
    const { folder, blob, sidecar } = this.#paths(sha256);
    return this.#withLock(sha256, async () => {
      const meta = await this.#readSidecar(sidecar);
      if (meta === undefined) return { removed: false };
      const refs = meta.refs.filter((ref) => !releases(owner, ref));
      if (refs.length > 0) {
        if (refs.length !== meta.refs.length) {
          await this.#writeAtomic(folder, sidecar, JSON.stringify({ ...meta, refs }));
        }
        return { removed: false };
      }
      return { removed: await removeBlobFiles(blob, sidecar) };
    });
  }

  async references(sha256: string): Promise<string[]> {
    const { sidecar } = this.#paths(sha256);
    return ownersOf((await this.#readSidecar(sidecar))?.refs ?? []);
  }

  async scan(): Promise<BlobScan> {
    const scan: BlobScan = { blobs: [], leftovers: [] };
    for (const { relative, folder, names } of await this.#folders()) {
      for (const name of names) {
        const file = path.join(folder, name);
        const key = name.endsWith(".json") ? name.slice(0, -5) : name;
        if (name.startsWith(".tmp-")) {
          const info = await statOrUndefined(file);
          if (info !== undefined) {
            scan.leftovers.push({
              kind: "temporary",
              path: path.join(relative, name),
              size: info.size,
              touchedAt: info.mtimeMs,
            });
          }
          continue;
        }
        if (!BLOB_KEY_PATTERN.test(key) || name.endsWith(".json")) continue;
        const sidecarInfo = names.has(`${key}.json`) ? await statOrUndefined(`${file}.json`) : undefined;
        const info = await statOrUndefined(file);
        if (info === undefined) continue;
        if (sidecarInfo === undefined) {
          scan.leftovers.push({
            kind: "unindexed",
            path: path.join(relative, name),
            size: info.size,
            touchedAt: info.mtimeMs,
          });
          continue;
        }
        const meta = await this.#readSidecar(`${file}.json`).catch(() => undefined);
        scan.blobs.push({
          sha256: key,
          size: info.size,
          refs: meta?.refs ?? [],
          touchedAt: sidecarInfo.mtimeMs,
          ...(meta === undefined ? { unreadable: true } : {}),
        });
      }
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
    const { folder, blob, sidecar } = this.#paths(sha256);
    return this.#withLock(sha256, async () => {
      const nothing = (skipped: "touched" | "gone"): CollectBlobResult => ({
        removed: false,
        bytes: 0,
        released: [],
        skipped,
      });
      const info = await statOrUndefined(sidecar);
      if (info === undefined) return nothing("gone");
      if (info.mtimeMs > untouchedSince) return nothing("touched");
      const meta = await this.#readSidecar(sidecar);
      if (meta === undefined) return nothing("gone");
      const released = meta.refs.filter((ref) => staleOwners.includes(ref));
      const refs = meta.refs.filter((ref) => !staleOwners.includes(ref));
      if (refs.length > 0) {
        if (released.length > 0) await this.#writeAtomic(folder, sidecar, JSON.stringify({ ...meta, refs }));
        return { removed: false, bytes: 0, released };
      }
      const bytes = (await fileSize(blob)) ?? 0;
      return { removed: await removeBlobFiles(blob, sidecar), bytes, released };
    });
  }

  async removeLeftover({
    leftover,
    untouchedSince,
  }: {
    leftover: BlobLeftover;
    untouchedSince: number;
  }): Promise<boolean> {
    const file = path.resolve(this.dir, leftover.path);
    const name = path.basename(file);
    const inside = path.relative(this.dir, file);
    // Only names a scan reports, two levels down: a leftover can never name another path.
    if (inside.startsWith("..") || inside.split(path.sep).length !== 3) return false;
    const remove = async () => {
      const info = await statOrUndefined(file);
      if (info === undefined || info.mtimeMs > untouchedSince) return false;
      await rm(file, { force: true });
      return true;
    };
    if (leftover.kind === "temporary") return name.startsWith(".tmp-") ? remove() : false;
    if (!BLOB_KEY_PATTERN.test(name)) return false;
    const { sidecar } = this.#paths(name);
    // Under the key's lock: a put between writing the bytes and the sidecar is not a leftover.
    return this.#withLock(name, async () => ((await fileSize(sidecar)) === undefined ? remove() : false));
  }

  /** The two-level folders of the store, with the names in each. */
  async #folders(): Promise<Array<{ relative: string; folder: string; names: Set<string> }>> {
    const level = async (dir: string): Promise<string[]> =>
      (await readdir(dir).catch(() => [] as string[])).filter((name) => /^[0-9a-f]{2}$/.test(name));
    const folders: Array<{ relative: string; folder: string; names: Set<string> }> = [];
    for (const first of await level(this.dir)) {
      for (const second of await level(path.join(this.dir, first))) {
        const folder = path.join(this.dir, first, second);
        const names = new Set(await readdir(folder).catch(() => [] as string[]));
        folders.push({ relative: path.join(first, second), folder, names });
      }
    }
    return folders;
  }

  /** Keys of every stored blob (for tests and maintenance; walks the whole tree). */
  async keys(): Promise<string[]> {
    const keys: string[] = [];
    const level = async (dir: string): Promise<string[]> =>
      (await readdir(dir).catch(() => [] as string[])).filter((name) => /^[0-9a-f]{2}$/.test(name));
    for (const first of await level(this.dir)) {
      for (const second of await level(path.join(this.dir, first))) {
        for (const name of await readdir(path.join(this.dir, first, second))) {
          if (BLOB_KEY_PATTERN.test(name)) keys.push(name);
        }
      }
    }
    return keys.sort();
  }

  /**
   * Every file under the store, read against the reference index (for tests and maintenance): each blob
   * with its references, and what does not add up — blobs nothing refers to, blobs without their sidecar
   * or sidecars without their blob, and leftover temporary files.
   */
  async inventory(): Promise<BlobInventory> {
    const inventory: BlobInventory = {
      blobs: [],
      unreferenced: [],
      missingSidecar: [],
      missingBytes: [],
      stray: [],
    };
    const level = async (dir: string): Promise<string[]> =>
      (await readdir(dir).catch(() => [] as string[])).filter((name) => /^[0-9a-f]{2}$/.test(name));
    for (const first of await level(this.dir)) {
      for (const second of await level(path.join(this.dir, first))) {
        const folder = path.join(this.dir, first, second);
        const names = new Set(await readdir(folder));
        for (const name of names) {
          const key = name.endsWith(".json") ? name.slice(0, -5) : name;
          if (!BLOB_KEY_PATTERN.test(key)) {
            inventory.stray.push(path.join(first, second, name));
            continue;
          }
          if (name.endsWith(".json")) {
            if (!names.has(key)) inventory.missingBytes.push(key);
            continue;
          }
          if (!names.has(`${key}.json`)) {
            inventory.missingSidecar.push(key);
            continue;
          }
          const refs = ownersOf((await this.#readSidecar(path.join(folder, `${key}.json`)))?.refs ?? []);
          inventory.blobs.push({ sha256: key, refs });
          if (refs.length === 0) inventory.unreferenced.push(key);
        }
      }
    }
    for (const list of [
      inventory.unreferenced,
      inventory.missingSidecar,
      inventory.missingBytes,
      inventory.stray,
    ])
      list.sort();
    inventory.blobs.sort((a, b) => a.sha256.localeCompare(b.sha256));
    return inventory;
  }
}

/** What {@link FsBlobStore.inventory} found. */
export interface BlobInventory {
  /** Every complete blob (bytes and sidecar) with the owners that refer to it (claims as their record). */
  blobs: Array<{ sha256: string; refs: string[] }>;
  /** Blobs with no reference left: nothing will ever remove them. */
  unreferenced: string[];
  /** Bytes without a sidecar (a crash between the two removals). */
  missingSidecar: string[];
  /** Sidecars without bytes. */
  missingBytes: string[];
  /** Other files (interrupted temporary writes), relative to the store's directory. */
  stray: string[];
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
}

async function statOrUndefined(file: string): Promise<{ size: number; mtimeMs: number } | undefined> {
  try {
    const info = await stat(file);
    return { size: info.size, mtimeMs: info.mtimeMs };
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
}

/** Marks a sidecar as changed now without rewriting it. */
async function touch(file: string): Promise<void> {
  const now = new Date();
  await utimes(file, now, now).catch((error: unknown) => {
    if (!isErrno(error, "ENOENT")) throw error;
  });
}

async function removeBlobFiles(blob: string, sidecar: string): Promise<boolean> {
  const existed = (await fileSize(blob)) !== undefined;
  // The sidecar goes first: a blob without one is invisible to get/has, so a crash between the two
  // leaves an orphan file rather than a blob that claims to exist without its bytes.
  await rm(sidecar, { force: true });
  await rm(blob, { force: true });
  return existed;
}

/** Builds the filesystem blob store under `dir`. */
export function createFsBlobStore({ dir }: FsBlobStoreOptions): FsBlobStore {
  return new FsBlobStore({ dir });
}
