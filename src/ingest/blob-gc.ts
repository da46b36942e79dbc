/**
 * The orphan-blob sweep: removes stored files that no record of any tenant uses.
 *
 * Ingest writes each blob with its owner's reference (`<tenant>/<record id>`) and releases the references
 * of records it could not store, so a failed ingest leaves nothing behind. What is left to collect is
 * what a crash leaves: a process killed between writing a blob and storing its record, or between
 * deleting a record and releasing its blob. A blob is an orphan when
 *
 * - its reference index names no owner, or
 * - given the vector store, every owner it names is a record that no longer exists in that owner's
 *   tenant (checked with the store's tenant-scoped `get`; a video's original, held as `<tenant>/<vid_…>`,
 *   lives while any segment of the video does). Owners of any other shape are kept as live.
 *
 * A blob whose references changed within the grace period is left alone, however it looks: an ingest in
 * flight writes its blobs before it stores its records. The check is made again when the blob is removed,
 * under the blob store's lock for that key, so a write that comes during the sweep always wins. Files of
 * interrupted writes and removals (bytes without their index entry, temporary files) past the grace
 * period go too. A dry run reports the same set and changes nothing.
 */
import type { Logger } from "../logger.ts";
import { type BlobLeftover, type BlobStore, ownerOfLabel } from "../media/blob-store.ts";
import type { RecordKind, VectorStore } from "../store/index.ts";
import { type ItemKind, itemKindOf } from "./items.ts";
import { videoSegmentsOf } from "./video-ingest.ts";

/** Ids asked for per store `get` (the store's limit per call). */
const IDS_PER_GET = 1000;

/** Seconds a blob's references must have been still before the sweep may remove it, by default. */
export const DEFAULT_BLOB_GC_GRACE_SECONDS = 600;

/** Options of {@link sweepOrphanBlobs}. */
export interface SweepOrphanBlobsOptions {
  blobs: BlobStore;
  /**
   * The vector store, to find references whose records are gone. Without it, only blobs with no
   * reference at all are orphans.
   */
  store?: Pick<VectorStore, "get" | "query">;
  /** Report what would be removed, and remove nothing. */
  dryRun?: boolean;
  /** Blobs whose references changed less than this many seconds ago are left alone. */
  graceSeconds?: number;
  logger?: Logger;
  /** The clock (tests). */
  now?: () => number;
}

/** A blob the sweep removed (or, dry, would remove). */
export interface SweptBlob {
  sha256: string;
  size: number;
  /** `unreferenced`: no owner in the index; `records_gone`: every owner is a record that no longer exists. */
  reason: "unreferenced" | "records_gone";
  /** The dead owners dropped with it (`<tenant>/<record id>`). */
  owners: string[];
}

/** What {@link sweepOrphanBlobs} did. */
export interface BlobSweepReport {
  dryRun: boolean;
  graceSeconds: number;
  /** Whether owners were checked against the vector store. */
  checkedRecords: boolean;
  /** Blobs looked at, and their bytes. */
  scanned: { blobs: number; bytes: number };
  /** Blobs removed (dry: that would be), sorted by key. */
  removed: SweptBlob[];
  /** Bytes freed by them. */
  removedBytes: number;
  /** Dead references dropped from blobs that other, live, owners keep. */
  released: Array<{ sha256: string; owners: string[] }>;
  /** Leftovers of interrupted writes and removals removed (dry: that would be). */
  leftovers: BlobLeftover[];
  /** Bytes of those leftovers. */
  leftoverBytes: number;
  /** Blobs and leftovers not looked at because they changed within the grace period. */
  young: number;
  /** Blobs that changed between the scan and their removal, and were kept. */
  raced: number;
  /** Blobs whose index entry cannot be read: kept, for an operator to look at. */
  unreadable: string[];
}

/**
 * A reference label split into the tenant and item it names (`<tenant>/<id>`, or an ingest's claim
 * `<tenant>/<id>/<nonce>`); undefined for labels of another shape.
 */
function parseOwner(label: string): { tenant: string; id: string; kind: ItemKind } | undefined {
  const [tenant, id, nonce, ...rest] = label.split("/");
  if (tenant === undefined || tenant === "" || id === undefined || rest.length > 0) return undefined;
  if (nonce !== undefined && !/^[0-9a-f]{16}$/.test(nonce)) return undefined;
  try {
    return { tenant, id, kind: itemKindOf(id) };
  } catch {
    return undefined;
  }
}

/** Reference labels as the owners they stand for (a claim as its record), sorted, each once. */
function owners(labels: readonly string[]): string[] {
  return [...new Set(labels.map(ownerOfLabel))].sort();
}

/**
 * Which of the reference labels `owners` name records that no longer exist, asking the store once per tenant and kind (in
 * chunks) and once per video.
 *
 * @throws what the store throws: the sweep then removes nothing.
 */
async function deadOwners({
  store,
  owners,
}: {
  store: Pick<VectorStore, "get" | "query">;
  owners: Iterable<string>;
}): Promise<Set<string>> {
  const byTenantKind = new Map<string, { tenant: string; kind: RecordKind; ids: Set<string> }>();
  const videos = new Map<string, { tenant: string; id: string }>();
  const labels: Array<{ label: string; record: string }> = [];
  for (const label of owners) {
    const parsed = parseOwner(label);
    if (parsed === undefined) continue;
    labels.push({ label, record: `${parsed.tenant}/${parsed.id}` });
    if (parsed.kind === "video") {
      videos.set(`${parsed.tenant}/${parsed.id}`, parsed);
      continue;
    }
    const key = JSON.stringify([parsed.tenant, parsed.kind]);
    let group = byTenantKind.get(key);
    if (group === undefined) {
      group = { tenant: parsed.tenant, kind: parsed.kind, ids: new Set() };
      byTenantKind.set(key, group);
    }
    group.ids.add(parsed.id);
  }
  const deadRecords = new Set<string>();
  for (const { tenant, kind, ids } of byTenantKind.values()) {
    const all = [...ids];
    for (let start = 0; start < all.length; start += IDS_PER_GET) {
      const chunk = all.slice(start, start + IDS_PER_GET);
      const found = new Set((await store.get({ kind, tenant, ids: chunk })).map((record) => record.id));
      for (const id of chunk) if (!found.has(id)) deadRecords.add(`${tenant}/${id}`);
    }
  }
  for (const [owner, { tenant, id }] of videos) {
    const segments = await videoSegmentsOf({ store, tenant, videoId: id, limit: 1 });
    if (segments.length === 0) deadRecords.add(owner);
  }
  return new Set(labels.filter(({ record }) => deadRecords.has(record)).map(({ label }) => label));
}

/**
 * Removes blobs no record of any tenant uses, and the leftovers of interrupted writes, that have been
 * still for `graceSeconds`; with `dryRun`, only reports them. Owners are checked against `store` when it
 * is given. Safe to run while the server ingests: see the module's description.
 *
 * @throws what the store throws while owners are checked (nothing is removed then).
 */
export async function sweepOrphanBlobs({
  blobs,
  store,
  dryRun = false,
  graceSeconds = DEFAULT_BLOB_GC_GRACE_SECONDS,
  logger,
  now = Date.now,
}: SweepOrphanBlobsOptions): Promise<BlobSweepReport> {
  const untouchedSince = now() - graceSeconds * 1000;
  const scan = await blobs.scan();
  const report: BlobSweepReport = {
    dryRun,
    graceSeconds,
    checkedRecords: store !== undefined,
    scanned: { blobs: scan.blobs.length, bytes: scan.blobs.reduce((sum, blob) => sum + blob.size, 0) },
    removed: [],
    removedBytes: 0,
    released: [],
    leftovers: [],
    leftoverBytes: 0,
    young: 0,
    raced: 0,
    unreadable: scan.blobs.filter((blob) => blob.unreadable === true).map((blob) => blob.sha256),
  };
  const settled = scan.blobs.filter((blob) => blob.unreadable !== true && blob.touchedAt <= untouchedSince);
  const dead =
    store === undefined
      ? new Set<string>()
      : await deadOwners({ store, owners: new Set(settled.flatMap((blob) => blob.refs)) });

  for (const blob of scan.blobs) {
    if (blob.unreadable === true) continue;
    const stale = blob.refs.filter((owner) => dead.has(owner));
    const orphan = stale.length === blob.refs.length;
    if (blob.touchedAt > untouchedSince) {
      report.young += 1;
      continue;
    }
    if (stale.length === 0 && !orphan) continue;
    const reason = blob.refs.length === 0 ? "unreferenced" : "records_gone";
    if (dryRun) {
      if (orphan)
        report.removed.push({ sha256: blob.sha256, size: blob.size, reason, owners: owners(stale) });
      else report.released.push({ sha256: blob.sha256, owners: owners(stale) });
      continue;
    }
    const result = await blobs.collect({ sha256: blob.sha256, staleOwners: stale, untouchedSince });
    if (result.skipped !== undefined) {
      report.raced += 1;
      continue;
    }
    if (result.removed) {
      report.removed.push({
        sha256: blob.sha256,
        size: result.bytes,
        reason,
        owners: owners(result.released),
      });
    } else if (result.released.length > 0) {
      report.released.push({ sha256: blob.sha256, owners: owners(result.released) });
    }
  }

  for (const leftover of scan.leftovers) {
    if (leftover.touchedAt > untouchedSince) {
      report.young += 1;
      continue;
    }
    if (dryRun || (await blobs.removeLeftover({ leftover, untouchedSince }))) report.leftovers.push(leftover);
    else report.raced += 1;
  }
  report.removedBytes = report.removed.reduce((sum, blob) => sum + blob.size, 0);
  report.leftoverBytes = report.leftovers.reduce((sum, leftover) => sum + leftover.size, 0);
  logger?.info(
    {
      dryRun,
      graceSeconds,
      checkedRecords: report.checkedRecords,
      scanned: report.scanned,
      removed: report.removed.length,
      removedBytes: report.removedBytes,
      released: report.released.length,
      leftovers: report.leftovers.length,
      leftoverBytes: report.leftoverBytes,
      young: report.young,
      raced: report.raced,
    },
    dryRun ? "orphan blob sweep (dry run)" : "orphan blob sweep",
  );
  if (report.unreadable.length > 0) {
    logger?.warn(
      { blobs: report.unreadable.slice(0, 20), count: report.unreadable.length },
      "blobs whose reference index cannot be read were kept; look at their .json files",
    );
  }
  return report;
}

/**
 * The start-up sweep, as `LOUPE_BLOB_GC_AT_START` says (`on`, `dry-run` or `off`), with the grace of
 * `LOUPE_BLOB_GC_GRACE_S`. It never throws: a sweep that fails is logged and the server serves on.
 *
 * @returns the report, or undefined when the sweep is off or failed.
 */
export async function sweepOrphanBlobsAtStart({
  blobs,
  store,
  config,
  logger,
}: {
  blobs: BlobStore;
  store: Pick<VectorStore, "get" | "query">;
  config: { blobGcAtStart: "on" | "dry-run" | "off"; blobGcGraceS: number };
  logger: Logger;
}): Promise<BlobSweepReport | undefined> {
  if (config.blobGcAtStart === "off") return undefined;
  try {
    return await sweepOrphanBlobs({
      blobs,
      store,
      dryRun: config.blobGcAtStart === "dry-run",
      graceSeconds: config.blobGcGraceS,
      logger,
    });
  } catch (error) {
    logger.warn({ err: error }, "the orphan blob sweep at start-up failed; it runs again at the next start");
    return undefined;
  }
}
