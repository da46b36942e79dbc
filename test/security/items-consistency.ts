/**
 * The check that a blob store and a vector store agree: every blob is referenced, every reference names
 * a record that exists (for its tenant), every record's media is a blob that names it, and no half-made
 * file is left. Run after anything that may have failed half-way.
 */
import { expect } from "vitest";
import { type FsBlobStore, parseBlobRef } from "../../src/media/blob-store.ts";
import type { RecordKind, StoredRecord, VectorStore } from "../../src/store/index.ts";

const KIND_BY_PREFIX: ReadonlyArray<[string, RecordKind]> = [
  ["img_", "image"],
  ["tri_", "triple"],
  ["seg_", "video_segment"],
];

/** The records an owner label (`<tenant>/<id>`) points at: a record, or a video's segments. */
async function recordsOf(store: VectorStore, owner: string): Promise<StoredRecord[]> {
  const slash = owner.lastIndexOf("/");
  const tenant = owner.slice(0, slash);
  const id = owner.slice(slash + 1);
  if (id.startsWith("vid_")) {
    return store.query({
      kind: "video_segment",
      tenant,
      filter: [{ field: "video_id", op: "eq", value: id }],
      limit: 10,
    });
  }
  const kind = KIND_BY_PREFIX.find(([prefix]) => id.startsWith(prefix))?.[1];
  if (kind === undefined) throw new Error(`owner ${owner} names no item`);
  return store.get({ kind, tenant, ids: [id] });
}

/** Fails unless the blob store's files, its reference index and the vector store agree. */
export async function expectBlobsAgree({
  blobs,
  store,
}: {
  blobs: FsBlobStore;
  store: VectorStore;
}): Promise<void> {
  const inventory = await blobs.inventory();
  expect(inventory.unreferenced, "blobs nothing refers to").toEqual([]);
  expect(inventory.missingSidecar, "blob files without their sidecar").toEqual([]);
  expect(inventory.missingBytes, "sidecars without their blob").toEqual([]);
  expect(inventory.stray, "leftover temporary files").toEqual([]);
  for (const blob of inventory.blobs) {
    for (const owner of blob.refs) {
      const records = await recordsOf(store, owner);
      expect(records.length, `${owner} refers to blob ${blob.sha256} but has no record`).toBeGreaterThan(0);
      const refs = records.flatMap((record) => [
        record.mediaRef,
        String(record.metadata.thumbnailRef ?? ""),
        record.kind === "video_segment" ? record.keyframeRef : "",
      ]);
      expect(
        refs.map(parseBlobRef),
        `${owner} refers to blob ${blob.sha256} that its record does not use`,
      ).toContain(blob.sha256);
    }
  }
}
