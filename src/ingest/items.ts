/**
 * Stored items by id, whatever their kind: finding an item's media for the caller's tenant, and
 * deleting an item with the blobs nothing else refers to. The kind is read from the id's prefix:
 * `img_` images, `seg_` video segments, `tri_` triples, `reg_` regions (objects in an image or a keyframe),
 * `vid_` whole videos (all their segments).
 *
 * Blob references follow one convention (see `BlobStore.addReference`): a record that uses a blob
 * holds the reference `<tenant>/<record id>`; a video's original is held as `<tenant>/<video id>`.
 */
import { NotFoundError, ValidationError } from "../errors.ts";
import { type BlobStore, parseBlobRef, type StoredBlob } from "../media/blob-store.ts";
import { isValidRecordId, type RecordKind, type StoredRecord, type VectorStore } from "../store/index.ts";
import { deleteRegionsOf } from "./regions.ts";
import { deleteVideo, videoSegmentsOf } from "./video-ingest.ts";

/** What an id names: a record of a kind, or a whole video. */
export type ItemKind = RecordKind | "video";

const PREFIXES: ReadonlyArray<[string, ItemKind]> = [
  ["img_", "image"],
  ["seg_", "video_segment"],
  ["tri_", "triple"],
  ["reg_", "region"],
  ["vid_", "video"],
];

/**
 * The kind an item id names.
 *
 * @throws {ValidationError} for ids that are malformed or have no known prefix.
 */
export function itemKindOf(id: string): ItemKind {
  if (!isValidRecordId(id)) {
    throw new ValidationError(
      `${JSON.stringify(String(id).slice(0, 80))} is not an item id; ids look like img_…, seg_…, tri_…, reg_… or vid_….`,
      { context: { id: String(id).slice(0, 80) } },
    );
  }
  const match = PREFIXES.find(([prefix]) => id.startsWith(prefix));
  if (match === undefined) {
    throw new ValidationError(
      `${JSON.stringify(id)} is not an item id: it must start with img_, seg_, tri_, reg_ or vid_.`,
      { context: { id } },
    );
  }
  return match[1];
}

function notFound(id: string): NotFoundError {
  return new NotFoundError(`No item ${id}.`, { context: { id } });
}

/**
 * The record an id names, for the tenant (a video: its first segment found).
 *
 * @throws {NotFoundError} when the tenant has no such item.
 */
export async function findItem({
  store,
  tenant,
  id,
}: {
  store: VectorStore;
  tenant: string;
  id: string;
}): Promise<StoredRecord> {
  const kind = itemKindOf(id);
  const [record] =
    kind === "video"
      ? await videoSegmentsOf({ store, tenant, videoId: id, limit: 1 })
      : await store.get({ kind, tenant, ids: [id] });
  if (record === undefined) throw notFound(id);
  return record;
}

/** Which file of an item: the original, or its thumbnail (a segment's keyframe). */
export type MediaVariant = "original" | "thumbnail";

/** The blob keys a record refers to: its media, thumbnail and keyframe. */
function blobKeysOf(record: StoredRecord): { media?: string; thumbnail?: string } {
  const thumbnailRef =
    typeof record.metadata.thumbnailRef === "string"
      ? record.metadata.thumbnailRef
      : record.kind === "video_segment"
        ? record.keyframeRef
        : "";
  return { media: parseBlobRef(record.mediaRef), thumbnail: parseBlobRef(thumbnailRef) };
}

/**
 * The stored file of an item for the tenant: its original, or its thumbnail (for a video segment or a
 * video, the keyframe; for a triple without one, its image).
 *
 * @throws {NotFoundError} when the tenant has no such item, or the item has no such stored file.
 */
export async function findMedia({
  store,
  blobs,
  tenant,
  id,
  variant,
}: {
  store: VectorStore;
  blobs: BlobStore;
  tenant: string;
  id: string;
  variant: MediaVariant;
}): Promise<StoredBlob> {
  const record = await findItem({ store, tenant, id });
  const keys = blobKeysOf(record);
  // A triple's image is small enough to stand in for a thumbnail when none was made.
  const key =
    variant === "original"
      ? keys.media
      : (keys.thumbnail ?? (record.kind === "triple" ? keys.media : undefined));
  if (key === undefined) {
    throw new NotFoundError(
      `Item ${id} has no stored ${variant === "original" ? "media" : "thumbnail"}${record.mediaRef.startsWith("blob:") ? "" : " (its media lives elsewhere)"}.`,
      { context: { id, variant } },
    );
  }
  try {
    return await blobs.get(key);
  } catch (error) {
    if (error instanceof NotFoundError) {
      throw new NotFoundError(`The ${variant} of item ${id} is missing from the blob store.`, {
        cause: error,
        context: { id, variant },
      });
    }
    throw error;
  }
}

/** What a delete removed. */
export interface DeletedItem {
  id: string;
  kind: ItemKind;
  /** Records removed from the store (a video: its segments); the regions of what was removed go too. */
  records: number;
  /** Blobs removed because nothing referred to them any more. */
  blobsRemoved: number;
}

async function releaseAll({
  blobs,
  keys,
  owner,
}: {
  blobs: BlobStore;
  keys: ReadonlyArray<string | undefined>;
  owner: string;
}): Promise<number> {
  let removed = 0;
  for (const key of new Set(keys)) {
    if (key === undefined) continue;
    if ((await blobs.release({ sha256: key, owner })).removed) removed += 1;
  }
  return removed;
}

/**
 * Deletes an item for the tenant: the record (a video: all its segments) first, then its blob
 * references, removing each blob no other record of any tenant refers to. Removing the record first
 * means a crash in between leaves an unreferenced blob, never a record without its media.
 *
 * @throws {NotFoundError} when the tenant has no such item.
 */
export async function deleteItem({
  store,
  blobs,
  tenant,
  id,
}: {
  store: VectorStore;
  blobs: BlobStore;
  tenant: string;
  id: string;
}): Promise<DeletedItem> {
  const kind = itemKindOf(id);
  if (kind === "video") {
    const { deleted, blobsRemoved } = await deleteVideo({ store, blobs, tenant, videoId: id });
    return { id, kind, records: deleted, blobsRemoved };
  }
  const [record] = await store.get({ kind, tenant, ids: [id] });
  if (record === undefined) throw notFound(id);
  // Regions go first: a crash in between leaves an item without regions (which a backfill restores),
  // never regions naming an item that is gone.
  if (kind === "image" || kind === "video_segment") await deleteRegionsOf({ store, tenant, parentIds: [id] });
  if (kind === "region") {
    const { deleted } = await store.delete({ kind, tenant, ids: [id] });
    return { id, kind, records: deleted, blobsRemoved: 0 };
  }
  const { deleted } = await store.delete({ kind, tenant, ids: [id] });
  const { media, thumbnail } = blobKeysOf(record);
  const blobsRemoved = await releaseAll({ blobs, keys: [media, thumbnail], owner: `${tenant}/${id}` });
  return { id, kind, records: deleted, blobsRemoved };
}
