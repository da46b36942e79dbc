/**
 * The region backfill: finds the objects in items stored without regions (ingested while
 * `LOUPE_REGIONS=off`, before the pack had a detection head, or whose regions could not be written) and
 * stores them as `region` records. It runs as a job (`POST /v1/jobs` kind `regions`).
 *
 * The marker of an item that is done is its `metadata.regions` (`{ count }`), written by ingest and by the
 * backfill after the item's regions are stored: the backfill lists only items without one, so a run
 * stopped part-way — a shutdown, a crash — is continued by the next run, which finds only what is left.
 * An image is read from its original, a video segment from its stored keyframe.
 */
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { MediaReader } from "../media/media-port.ts";
import type { FilterSpec, StoredRecord, VectorStore } from "../store/index.ts";
import { type Backfill, type BackfillItem, backfillRunner, countKinds, listPages } from "./backfill.ts";
import { type JobItemOutcome, type JobRunner, toJobError } from "./jobs.ts";
import {
  type IngestRegions,
  REGIONS_MARKER,
  regionParentOf,
  regionRecords,
  regionsMarker,
  replaceRegions,
} from "./regions.ts";

/** Kinds whose media holds objects: an image's original, a video segment's keyframe. */
export const REGION_BACKFILL_KINDS = ["image", "video_segment"] as const;
/** A kind the backfill reads. */
export type RegionBackfillKind = (typeof REGION_BACKFILL_KINDS)[number];

/** The kind of job the backfill runs as. */
export const REGIONS_JOB_KIND = "regions";

/** One item the backfill reads. */
export type RegionBackfillItem = BackfillItem<RegionBackfillKind>;

/** Items without regions: the backfill's work list. */
const WITHOUT_REGIONS: FilterSpec = [{ field: `metadata.${REGIONS_MARKER}`, op: "exists", value: false }];

/** Options of {@link RegionBackfill}. */
export interface RegionBackfillOptions {
  store: VectorStore;
  /** Reads stored media (originals and keyframes). */
  media: MediaReader;
  regions: IngestRegions;
  modelId: string;
  /** Items listed per store call. */
  pageSize?: number;
  logger?: Logger;
}

/** Errors that concern one item (its media is gone or unreadable). */
function isItemError(error: unknown): boolean {
  return (
    !(error instanceof AppError) ||
    error.status < 500 ||
    error.code === "media_invalid" ||
    error.code === "inference_failed"
  );
}

/** Stores the regions of items that have none. Build one and reuse it. */
export class RegionBackfill implements Backfill<RegionBackfillKind> {
  readonly #options: Required<Omit<RegionBackfillOptions, "logger">> & { logger?: Logger };

  constructor({ pageSize = 100, ...rest }: RegionBackfillOptions) {
    this.#options = { pageSize, ...rest };
  }

  /** Every kind it reads. */
  get kinds(): readonly RegionBackfillKind[] {
    return REGION_BACKFILL_KINDS;
  }

  /** The runner of one backfill job in this process over the tenant's items of `kinds` ({@link backfillRunner}). */
  runner({
    tenant,
    kinds,
  }: {
    tenant: string;
    kinds?: readonly RegionBackfillKind[];
  }): JobRunner<RegionBackfillItem> {
    return backfillRunner(this, { tenant, ...(kinds === undefined ? {} : { kinds }) });
  }

  /** How many items of `kinds` the tenant has, with regions or not. */
  count({ tenant, kinds }: { tenant: string; kinds: readonly RegionBackfillKind[] }): Promise<number> {
    return countKinds({ store: this.#options.store, tenant, kinds });
  }

  /** The tenant's items of `kind` without regions, a page at a time (see {@link listPages}). */
  unread({
    tenant,
    kind,
    signal,
  }: {
    tenant: string;
    kind: RegionBackfillKind;
    signal?: AbortSignal;
  }): AsyncGenerator<StoredRecord[]> {
    const { store, pageSize } = this.#options;
    return listPages({
      store,
      tenant,
      kind,
      filter: WITHOUT_REGIONS,
      pageSize,
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /**
   * Detects one item's objects and stores them: `stored` when written, `skipped` when the item has its
   * regions already or is gone, `failed` when its media cannot be read.
   *
   * @throws what the store threw when it failed as a whole (the job fails; a resume continues).
   */
  async read({
    tenant,
    item,
    record: listedRecord,
  }: {
    tenant: string;
    item: RegionBackfillItem;
    record?: StoredRecord;
    signal?: AbortSignal;
  }): Promise<JobItemOutcome> {
    const { store, media, regions, modelId, logger } = this.#options;
    const { kind, id } = item;
    const record = listedRecord ?? (await store.get({ kind, tenant, ids: [id] }))[0];
    if (record === undefined) return { status: "skipped", id, detail: { reason: "deleted" } };
    if (record.metadata[REGIONS_MARKER] !== undefined) return { status: "skipped", id };
    const parent = regionParentOf(record);
    if (parent === undefined) return { status: "skipped", id };
    let records: ReturnType<typeof regionRecords>;
    try {
      const image = await media.read({ ref: parent.mediaRef });
      const [found] = await regions.detector.detect({
        images: [image],
        ...(regions.threshold === undefined ? {} : { threshold: regions.threshold }),
      });
      records = regionRecords({ tenant, modelId, parent, detections: found?.detections ?? [] });
    } catch (error) {
      if (!isItemError(error)) throw error;
      logger?.warn({ err: error, id, kind }, "finding the objects of a stored item failed");
      return { status: "failed", id, error: toJobError(error) };
    }
    await replaceRegions({ store, tenant, parentIds: [id], records });
    // The marker last: an item is marked done only once its regions are stored.
    const { updated } = await store.update({
      kind,
      tenant,
      patches: [{ id, metadata: { ...record.metadata, ...regionsMarker(records.length) } }],
    });
    if (updated === 0) {
      // Deleted meanwhile: its regions must not outlive it.
      await replaceRegions({ store, tenant, parentIds: [id], records: [] });
      return { status: "skipped", id, detail: { reason: "deleted" } };
    }
    return { status: "stored", id, detail: { regions: records.length } };
  }
}
