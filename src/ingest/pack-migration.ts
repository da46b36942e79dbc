/**
 * The pack switch: re-embeds every stored item of every tenant with another model pack into collections
 * of that pack's model, then makes them the live ones in one step. It runs as a job (`POST /v1/jobs`
 * kind `migrate`, admin scope) or from `loupe models migrate --to <pack>`.
 *
 * Everything is re-derived from what ingest stored: an image from its original blob, a triple from its
 * image blob and its question, a video's segments from the video blob, sampled again at the rate it was
 * ingested with (`metadata.video.sampleFps`) and embedded with the new pack's video embedder over the
 * same spans, so segment boundaries, times and keyframes stay. Every other field (tenant, metadata, OCR
 * text, blob references, timestamps) is copied as it is. Ids include the model id, so each record gets a
 * new id (and each video a new `vid_` id); the job's items map each old id to its new one.
 *
 * The new ids are deterministic, so a run stopped part-way (a shutdown, a crash, a `limit`) is continued
 * by the next: rows already in the new collections are skipped. The live collections keep answering
 * searches until the switch, which is the single pointer write of {@link ModelCatalog.commit}, made only
 * once every tenant's counts in the new collections equal those in the live ones. Old collections are
 * dropped only on request.
 */
import { AppError, ConflictError, ModelPackError, ValidationError } from "../errors.ts";
import { type ModelPack, readModelPackInfo } from "../inference/model-pack.ts";
import type { Logger } from "../logger.ts";
import type { BlobStore } from "../media/blob-store.ts";
import { parseBlobRef } from "../media/blob-store.ts";
import { sampleVideoFrames } from "../media/video-frames.ts";
import { probeVideo } from "../media/video-probe.ts";
import {
  ITEM_KINDS,
  type LiveCollections,
  type MilvusVectorStore,
  type ModelCatalog,
  RECORD_KINDS,
  type RecordKind,
  recordId,
  type StoredImage,
  type StoredRecord,
  type StoredTriple,
  type StoredVideoSegment,
} from "../store/index.ts";
import { type JobItemOutcome, type JobRunner, toJobError } from "./jobs.ts";
import { REGIONS_MARKER } from "./regions.ts";
import { type VideoIngestSettings, videoId, withTempUpload } from "./video-ingest.ts";

/**
 * The kinds a switch re-embeds: whole items. Regions are not copied: another pack finds other objects, so
 * after the switch the region backfill job (kind `regions`) detects them with the new pack.
 */
const MIGRATED_KINDS = ITEM_KINDS;

/** The kind of job a pack switch runs as. */
export const MIGRATE_JOB_KIND = "migrate";

/** One stored record the migration copies (its id in the live collections). */
export interface PackMigrationItem {
  kind: RecordKind;
  tenant: string;
  id: string;
}

/** Progress of one kind: rows in the live collections, and how many are in the new ones. */
export interface KindProgress {
  /** Rows of the kind in the live collections, every tenant together. */
  total: number;
  /** Rows re-embedded and written by this run. */
  copied: number;
  /** Rows that were in the new collections already (an earlier run copied them). */
  skipped: number;
  /** Rows that could not be re-embedded (their media is gone or unreadable). */
  failed: number;
}

/** What {@link PackMigration.run} did. */
export interface PackMigrationReport {
  /** Model of the live collections before the run. */
  from: string | undefined;
  /** Model of the pack migrated to. */
  to: string;
  /** The new model's collections. */
  collections: Record<RecordKind, string>;
  progress: Record<RecordKind, KindProgress>;
  /**
   * `switched`: the new collections are live; `already`: they were before the run; `partial`: the run
   * stopped early (aborted or at its limit), run it again to continue; `incomplete`: items failed, so
   * nothing was switched.
   */
  status: "switched" | "already" | "partial" | "incomplete";
  /** Collections dropped (with `dropOld`). */
  dropped: string[];
}

/** One record's outcome, as {@link PackMigration.run} reports it. */
export interface MigratedItem {
  kind: RecordKind;
  tenant: string;
  /** Id in the live collections. */
  from: string;
  /** Id in the new model's collections. */
  to?: string;
  outcome: JobItemOutcome;
}

/** Options of {@link PackMigration}. */
export interface PackMigrationOptions {
  /** Opens a catalog of the store's collections for one run (closed after it). */
  openCatalog: () => ModelCatalog | Promise<ModelCatalog>;
  /** The blob store the media is read from and the new records' references are added to. */
  blobs: Pick<BlobStore, "get" | "addReference">;
  /** Resolves `to` (a pack directory, or a name under `LOUPE_MODELS_DIR`) to a directory. */
  resolvePack: (to: string) => string;
  /** Loads the pack to migrate to (closed after the run). */
  loadPack: (dir: string) => Promise<ModelPack>;
  /** Video limits and the temporary directory videos are decoded from. */
  video: Pick<VideoIngestSettings, "limits" | "tempDir" | "sampleFps">;
  /** Records read per page. */
  pageSize?: number;
  logger?: Logger;
}

/** Arguments of {@link PackMigration.run}. */
export interface RunPackMigrationRequest {
  /** The pack to switch to. */
  to: string;
  /** Drop the old model's collections after the switch. */
  dropOld?: boolean;
  signal?: AbortSignal;
  /** Stop (without switching) once this many rows were re-embedded; for tests and trial runs. */
  limit?: number;
  onItem?: (item: MigratedItem) => void;
  onProgress?: (progress: Record<RecordKind, KindProgress>) => void;
}

/**
 * One unit of a switch run piece by piece ({@link PackMigration.open}): a stored image or triple, or a
 * video with the ids of its segments (re-sampled once for all of them).
 */
export type PackMigrationWork =
  | { kind: "image" | "triple"; tenant: string; id: string }
  | { kind: "video_segment"; tenant: string; videoId: string; ids: string[] };

/**
 * A switch to one pack, run piece by piece by several processes (the shared queue's workers): its work
 * listed, each piece copied on its own, then switched once every piece is. Close it after use.
 */
export interface PackMigrationSession {
  /** Model of the pack switched to. */
  readonly modelId: string;
  /** The live collections hold this model already: nothing to copy or switch. */
  readonly already: boolean;
  /** Every piece of work, a page at a time (every tenant, every kind; a video's segments together). */
  work(signal?: AbortSignal): AsyncGenerator<PackMigrationWork[]>;
  /**
   * Copies one piece into the new collections: `stored` (its new id; a video's new `vid_` id), `skipped`
   * when it is there already or its original is gone, `failed` when its media cannot be re-embedded.
   *
   * @throws when the store or the model failed as a whole, or `signal` was aborted (the piece is left undone).
   */
  copy(work: PackMigrationWork, signal: AbortSignal): Promise<JobItemOutcome>;
  /**
   * Switches to the new collections once every tenant's counts match the live ones (removing copies of
   * items deleted meanwhile first), and drops the old model's collections with `dropOld`.
   *
   * @throws AppError `migration_incomplete` (409) when the counts differ.
   */
  switch(options: { dropOld: boolean }): Promise<{ status: "switched" | "already"; dropped: string[] }>;
  close(): Promise<void>;
}

/** Errors that concern one record (its media is gone or unreadable), not the run. */
function isItemError(error: unknown): boolean {
  return (
    !(error instanceof AppError) ||
    error.status < 500 ||
    error.code === "media_invalid" ||
    error.code === "inference_failed"
  );
}

class StopRun extends Error {}

/** Switches the store to another model pack. Build one and reuse it; runs go one at a time. */
export class PackMigration {
  readonly #options: Required<Omit<PackMigrationOptions, "logger">> & { logger: Logger | undefined };
  #running = false;

  constructor({ pageSize = 100, logger, ...options }: PackMigrationOptions) {
    this.#options = { ...options, pageSize, logger };
  }

  /**
   * Checks that `to` names a readable pack (its JSON files; no model is opened).
   *
   * @throws ValidationError naming what is wrong with it.
   */
  async check(to: string): Promise<{ dir: string; modelId: string }> {
    const dir = this.#options.resolvePack(to);
    try {
      const info = await readModelPackInfo({ dir });
      return { dir: info.dir, modelId: info.modelId };
    } catch (error) {
      if (!(error instanceof ModelPackError)) throw error;
      throw new ValidationError(`Cannot switch to the pack ${JSON.stringify(to)}: ${error.message}`, {
        cause: error,
        context: { field: "to" },
      });
    }
  }

  /**
   * Runs the migration to the pack `to` (see the module's description) and reports what it did.
   *
   * @throws ConflictError while another run is under way; ValidationError for a pack that cannot be read;
   *   what the store threw when it failed as a whole (a run again continues).
   */
  async run(request: RunPackMigrationRequest): Promise<PackMigrationReport> {
    if (this.#running) throw new ConflictError("A pack migration is already running; wait for it to finish.");
    this.#running = true;
    try {
      const { dir } = await this.check(request.to);
      const pack = await this.#options.loadPack(dir);
      try {
        const catalog = await this.#options.openCatalog();
        try {
          return await this.#run({ request, pack, catalog });
        } finally {
          await catalog.close();
        }
      } finally {
        await pack.close();
      }
    } finally {
      this.#running = false;
    }
  }

  /**
   * Opens a switch to the pack `to` for running piece by piece (see {@link PackMigrationSession}): the
   * pack is loaded and the new model's collections made; `modelId`, when given, must be the pack's (the
   * model the job was started for).
   *
   * @throws ValidationError for a pack that cannot be read, or whose model is not `modelId`.
   */
  async open(to: string, { modelId }: { modelId?: string } = {}): Promise<PackMigrationSession> {
    const { dir } = await this.check(to);
    const pack = await this.#options.loadPack(dir);
    let catalog: ModelCatalog | undefined;
    try {
      if (modelId !== undefined && pack.modelId !== modelId) {
        throw new ValidationError(
          `The pack at ${dir} is model ${JSON.stringify(pack.modelId)}, not ${JSON.stringify(modelId)}, which the switch was started for: every process must see the same pack there. Start the switch again.`,
          { context: { field: "to" } },
        );
      }
      catalog = await this.#options.openCatalog();
      const live = await catalog.live();
      const collections = catalog.collectionsOf(pack.modelId);
      const already = live.modelId === pack.modelId;
      const source = await catalog.open({ collections: live.collections, dimension: live.dimension });
      let target = source;
      if (!already) {
        await catalog.clearRetired({ collections });
        target = await catalog.open({ collections, dimension: pack.dimension, modelId: pack.modelId });
      }
      return this.#session({ pack, catalog, live, collections, source, target, already });
    } catch (error) {
      await catalog?.close().catch(() => undefined);
      await pack.close().catch(() => undefined);
      throw error;
    }
  }

  #session({
    pack,
    catalog,
    live,
    collections,
    source,
    target,
    already,
  }: {
    pack: ModelPack;
    catalog: ModelCatalog;
    live: LiveCollections;
    collections: Record<RecordKind, string>;
    source: MilvusVectorStore;
    target: MilvusVectorStore;
    already: boolean;
  }): PackMigrationSession {
    const { pageSize, logger } = this.#options;
    const copyRun = (signal: AbortSignal, onItem: (item: MigratedItem) => void): CopyRun => ({
      source,
      target,
      pack,
      progress: Object.fromEntries(
        RECORD_KINDS.map((kind) => [kind, { total: 0, copied: 0, skipped: 0, failed: 0 }]),
      ) as Record<RecordKind, KindProgress>,
      budget: { left: Number.POSITIVE_INFINITY },
      expected: new Map(),
      request: { to: pack.modelId, signal, onItem },
    });
    return {
      modelId: pack.modelId,
      already,
      async *work(signal) {
        if (already) return;
        for (const kind of MIGRATED_KINDS) {
          for (const tenant of await source.tenants(kind)) {
            const videos = new Map<string, string[]>();
            for await (const rows of pagesOf(source, { kind, tenant, limit: pageSize })) {
              if (signal?.aborted === true) return;
              if (kind === "video_segment") {
                for (const row of rows as StoredVideoSegment[]) {
                  videos.set(row.videoId, [...(videos.get(row.videoId) ?? []), row.id]);
                }
              } else {
                yield rows.map((row) => ({ kind: kind as "image" | "triple", tenant, id: row.id }));
              }
            }
            const list = [...videos].map(
              ([videoId, ids]): PackMigrationWork => ({ kind: "video_segment", tenant, videoId, ids }),
            );
            for (let start = 0; start < list.length; start += pageSize)
              yield list.slice(start, start + pageSize);
          }
        }
      },
      copy: async (work, signal) => {
        const outcomes: JobItemOutcome[] = [];
        const run = copyRun(signal, (item) => outcomes.push(item.outcome));
        const { tenant } = work;
        const ids = work.kind === "video_segment" ? work.ids : [work.id];
        const rows = await source.get({ kind: work.kind, tenant, ids });
        const from = work.kind === "video_segment" ? work.videoId : work.id;
        if (rows.length === 0) return { status: "skipped", id: from, detail: { reason: "deleted" } };
        try {
          if (work.kind === "image") await this.#copyImages({ ...run, tenant, rows: rows as StoredImage[] });
          else if (work.kind === "triple")
            await this.#copyTriples({ ...run, tenant, rows: rows as StoredTriple[] });
          else await this.#copyVideo({ ...run, tenant, segments: rows as StoredVideoSegment[] });
        } catch (error) {
          if (error instanceof StopRun) throw new AppError("shutting_down", 503, "The copy was stopped.");
          throw error;
        }
        const failed = outcomes.find((outcome) => outcome.status === "failed");
        if (failed !== undefined) return failed;
        if (work.kind !== "video_segment") return outcomes[0] ?? { status: "skipped", id: from };
        const first = rows[0] as StoredVideoSegment;
        const sha256 = parseBlobRef(first.mediaRef) as string;
        const id = videoId({ tenant, contentSha256: sha256, modelId: pack.modelId });
        const stored = outcomes.filter((outcome) => outcome.status === "stored").length;
        return {
          status: stored > 0 ? "stored" : "skipped",
          id,
          detail: { from: work.videoId, segments: rows.length, copied: stored },
        };
      },
      switch: async ({ dropOld }) => {
        if (already) return { status: "already", dropped: [] };
        const expected = new Map<string, Set<string>>();
        for (const kind of MIGRATED_KINDS) {
          for (const tenant of await source.tenants(kind)) {
            const ids = new Set<string>();
            for await (const rows of pagesOf(source, { kind, tenant, limit: 1000 })) {
              for (const row of rows as Array<StoredImage | StoredTriple | StoredVideoSegment>) {
                const sha256 = parseBlobRef(row.mediaRef);
                if (sha256 !== undefined)
                  ids.add(newRecordId({ row, tenant, sha256, modelId: pack.modelId }));
              }
            }
            expected.set(`${kind}/${tenant}`, ids);
          }
        }
        await this.#assertComplete({ source, target, live, expected });
        await target.flush();
        await catalog.commit({ modelId: pack.modelId, collections });
        logger?.info(
          { from: live.modelId, to: pack.modelId, collections },
          "switched to the new model's collections",
        );
        const dropped =
          dropOld && live.modelId !== undefined ? await catalog.drop({ modelId: live.modelId }) : [];
        return { status: "switched", dropped };
      },
      close: async () => {
        await catalog.close().catch(() => undefined);
        await pack.close();
      },
    };
  }

  /** The runner of a job of kind `migrate`: one item per record, with its new id. */
  runner({ to, dropOld = false }: { to: string; dropOld?: boolean }): JobRunner<PackMigrationItem> {
    // Kept across runs of the job: a resume reports the records it had not done under their items.
    const indexByKey = new Map<string, number>();
    const done = new Set<string>();
    return async ({ signal, add, report, setProgress }) => {
      try {
        const result = await this.run({
          to,
          dropOld,
          signal,
          onProgress: (progress) =>
            setProgress(
              Object.fromEntries(
                Object.entries(progress).map(([kind, p]) => [
                  kind,
                  { done: p.copied + p.skipped, total: p.total },
                ]),
              ),
            ),
          onItem: ({ kind, tenant, from, outcome }) => {
            const key = `${kind}/${tenant}/${from}`;
            if (done.has(key)) return;
            if (outcome.status !== "failed") done.add(key);
            let index = indexByKey.get(key);
            if (index === undefined) {
              index = add({ describe: { kind, tenant, from }, input: { kind, tenant, id: from } });
              indexByKey.set(key, index);
            }
            report(index, outcome);
          },
        });
        if (result.status === "partial") {
          // Only a shutdown stops a job's run early: it ends failed, and a new job continues it.
          throw new AppError(
            "shutting_down",
            503,
            "The server shut down before the migration ended; nothing was switched. Start the job again after the restart: rows already copied are skipped.",
          );
        }
        if (result.status === "incomplete") {
          const failed = RECORD_KINDS.reduce((sum, kind) => sum + result.progress[kind].failed, 0);
          throw new AppError(
            "migration_incomplete",
            409,
            `${failed} items could not be re-embedded (see the failed items); nothing was switched. Delete or re-ingest them, then resume the job.`,
          );
        }
      } catch (error) {
        if (!signal.aborted || (error instanceof AppError && error.code === "shutting_down")) throw error;
      }
    };
  }

  async #run({
    request,
    pack,
    catalog,
  }: {
    request: RunPackMigrationRequest;
    pack: ModelPack;
    catalog: ModelCatalog;
  }): Promise<PackMigrationReport> {
    const { logger } = this.#options;
    const live = await catalog.live();
    const to = pack.modelId;
    const collections = catalog.collectionsOf(to);
    const progress = Object.fromEntries(
      RECORD_KINDS.map((kind) => [kind, { total: 0, copied: 0, skipped: 0, failed: 0 }]),
    ) as Record<RecordKind, KindProgress>;
    const base = { from: live.modelId, to, collections, progress, dropped: [] as string[] };
    if (live.modelId === to) {
      logger?.info({ modelId: to }, "the live collections already hold this model; nothing to migrate");
      return { ...base, collections: live.collections, status: "already" };
    }
    const source = await catalog.open({ collections: live.collections, dimension: live.dimension });
    // Collections of this model that were live once and left behind by a later switch are stale copies.
    await catalog.clearRetired({ collections });
    const target = await catalog.open({ collections, dimension: pack.dimension, modelId: to });
    logger?.info({ from: live.modelId, to, collections }, "pack migration started");
    const budget = { left: request.limit ?? Number.POSITIVE_INFINITY };
    const expected = new Map<string, Set<string>>();
    const run = { source, target, pack, progress, budget, request, expected };
    try {
      for (const kind of MIGRATED_KINDS) {
        for (const tenant of await source.tenants(kind)) {
          progress[kind].total += await source.count({ kind, tenant });
        }
      }
      request.onProgress?.(progress);
      for (const kind of MIGRATED_KINDS) {
        for (const tenant of await source.tenants(kind)) await this.#copyTenant({ ...run, kind, tenant });
      }
    } catch (error) {
      if (error instanceof StopRun) return { ...base, status: "partial" };
      throw error;
    }
    if (RECORD_KINDS.some((kind) => progress[kind].failed > 0)) return { ...base, status: "incomplete" };
    await this.#assertComplete({ source, target, live, expected });
    await target.flush();
    await catalog.commit({ modelId: to, collections });
    logger?.info({ from: live.modelId, to, collections }, "switched to the new model's collections");
    const dropped =
      request.dropOld === true && live.modelId !== undefined
        ? await catalog.drop({ modelId: live.modelId })
        : [];
    return { ...base, status: "switched", dropped };
  }

  /**
   * Removes from the new collections the rows whose originals are gone (deleted after an earlier run
   * copied them), then checks that every tenant's rows of every kind are there, as many as in the live
   * collections.
   */
  async #assertComplete({
    source,
    target,
    live,
    expected,
  }: {
    source: MilvusVectorStore;
    target: MilvusVectorStore;
    live: LiveCollections;
    expected: ReadonlyMap<string, ReadonlySet<string>>;
  }): Promise<void> {
    for (const kind of MIGRATED_KINDS) {
      const tenants = new Set([...(await source.tenants(kind)), ...(await target.tenants(kind))]);
      for (const tenant of tenants) {
        const wanted = expected.get(`${kind}/${tenant}`) ?? new Set<string>();
        const stale: string[] = [];
        for await (const rows of pagesOf(target, { kind, tenant, limit: 1000 })) {
          for (const row of rows) if (!wanted.has(row.id)) stale.push(row.id);
        }
        for (let start = 0; start < stale.length; start += 1000) {
          await target.delete({ kind, tenant, ids: stale.slice(start, start + 1000) });
        }
        if (stale.length > 0) {
          this.#options.logger?.info({ kind, tenant, rows: stale.length }, "removed copies of deleted items");
        }
      }
      for (const tenant of tenants) {
        const [before, after] = [await source.count({ kind, tenant }), await target.count({ kind, tenant })];
        if (before !== after) {
          throw new AppError(
            "migration_incomplete",
            409,
            `Tenant ${tenant} has ${before} ${kind} rows in ${live.collections[kind]} but ${after} in the new collections (rows were added or deleted during the migration); nothing was switched. Run the migration again.`,
            { context: { kind, tenant, before, after } },
          );
        }
      }
    }
  }

  /** Copies one tenant's rows of one kind, page by page. */
  async #copyTenant(run: CopyRun & { kind: RecordKind; tenant: string }): Promise<void> {
    const { source, kind, tenant } = run;
    if (kind === "video_segment") {
      await this.#copyVideos(run);
      return;
    }
    for await (const rows of pagesOf(source, { kind, tenant, limit: this.#options.pageSize })) {
      if (kind === "image") await this.#copyImages({ ...run, rows: rows as StoredImage[] });
      else await this.#copyTriples({ ...run, rows: rows as StoredTriple[] });
    }
  }

  /** The rows of `rows` not yet in the new collections, with their new ids; reports the others as skipped. */
  async #pending<R extends { id: string; mediaRef: string }>({
    run,
    kind,
    tenant,
    rows,
    newId,
  }: {
    run: CopyRun;
    kind: RecordKind;
    tenant: string;
    rows: readonly R[];
    newId: (row: R, sha256: string) => string;
  }): Promise<Array<{ row: R; to: string; sha256: string }>> {
    const withIds: Array<{ row: R; to: string; sha256: string }> = [];
    for (const row of rows) {
      const sha256 = parseBlobRef(row.mediaRef);
      if (sha256 === undefined) {
        this.#fail(
          run,
          { kind, tenant, from: row.id },
          new ValidationError(
            `Record ${row.id} has no stored media (${row.mediaRef.slice(0, 80)}); it cannot be re-embedded.`,
          ),
        );
        continue;
      }
      const to = newId(row, sha256);
      const key = `${kind}/${tenant}`;
      const ids = run.expected.get(key) ?? new Set<string>();
      ids.add(to);
      run.expected.set(key, ids);
      withIds.push({ row, to, sha256 });
    }
    const present = new Set(
      withIds.length === 0
        ? []
        : (await run.target.get({ kind, tenant, ids: withIds.map((entry) => entry.to) })).map(
            (row) => row.id,
          ),
    );
    const pending: typeof withIds = [];
    for (const entry of withIds) {
      if (present.has(entry.to)) {
        run.progress[kind].skipped += 1;
        run.request.onItem?.({
          kind,
          tenant,
          from: entry.row.id,
          to: entry.to,
          outcome: { status: "skipped", id: entry.to },
        });
      } else {
        pending.push(entry);
      }
    }
    run.request.onProgress?.(run.progress);
    return pending;
  }

  /** Takes `count` rows off the run's budget; stops the run when it is spent or aborted. */
  #spend(run: CopyRun, count: number): void {
    if (run.request.signal?.aborted === true || run.budget.left <= 0) throw new StopRun();
    run.budget.left -= count;
  }

  #fail(run: CopyRun, item: { kind: RecordKind; tenant: string; from: string; to?: string }, error: unknown) {
    run.progress[item.kind].failed += 1;
    this.#options.logger?.warn({ err: error, ...item }, "a record could not be re-embedded");
    run.request.onItem?.({
      ...item,
      outcome: {
        status: "failed",
        ...(item.to === undefined ? {} : { id: item.to }),
        error: toJobError(error),
      },
    });
  }

  #stored(run: CopyRun, item: { kind: RecordKind; tenant: string; from: string; to: string }) {
    run.progress[item.kind].copied += 1;
    run.request.onItem?.({
      ...item,
      outcome: { status: "stored", id: item.to, detail: { from: item.from } },
    });
  }

  /** The record's blobs are referenced by the new id too, before the record exists (as ingest does). */
  async #reference({ tenant, owner, refs }: { tenant: string; owner: string; refs: readonly unknown[] }) {
    const keys = new Set<string>();
    for (const ref of refs) {
      if (typeof ref !== "string") continue;
      const key = parseBlobRef(ref);
      if (key !== undefined) keys.add(key);
    }
    for (const sha256 of keys)
      await this.#options.blobs.addReference({ sha256, owner: `${tenant}/${owner}` });
  }

  async #read(sha256: string): Promise<Buffer> {
    return (await this.#options.blobs.get(sha256)).bytes();
  }

  async #copyImages(run: CopyRun & { tenant: string; rows: StoredImage[] }): Promise<void> {
    const { tenant, pack } = run;
    const pending = await this.#pending({
      run,
      kind: "image",
      tenant,
      rows: run.rows,
      newId: (row, sha256) => newRecordId({ row, tenant, sha256, modelId: pack.modelId }),
    });
    for (const { row, to, sha256 } of pending) {
      this.#spend(run, 1);
      const item = { kind: "image" as const, tenant, from: row.id, to };
      let vector: Float32Array;
      try {
        [vector] = (await pack.imageEmbedder.embed({ images: [await this.#read(sha256)] })) as [Float32Array];
      } catch (error) {
        if (!isItemError(error)) throw error;
        this.#fail(run, item, error);
        continue;
      }
      await this.#reference({ tenant, owner: to, refs: [row.mediaRef, ...Object.values(row.metadata)] });
      await run.target.upsert({
        kind: "image",
        tenant,
        records: [{ ...copiedFields(row, pack.modelId), id: to, vector }],
      });
      this.#stored(run, item);
    }
    run.request.onProgress?.(run.progress);
  }

  async #copyTriples(run: CopyRun & { tenant: string; rows: StoredTriple[] }): Promise<void> {
    const { tenant, pack } = run;
    const pending = await this.#pending({
      run,
      kind: "triple",
      tenant,
      rows: run.rows,
      newId: (row, sha256) => newRecordId({ row, tenant, sha256, modelId: pack.modelId }),
    });
    for (const { row, to, sha256 } of pending) {
      this.#spend(run, 1);
      const item = { kind: "triple" as const, tenant, from: row.id, to };
      let imageVector: Float32Array;
      let questionVector: Float32Array;
      try {
        [imageVector] = (await pack.imageEmbedder.embed({ images: [await this.#read(sha256)] })) as [
          Float32Array,
        ];
        [questionVector] = (await pack.textEmbedder.embed({ texts: [row.question] })) as [Float32Array];
      } catch (error) {
        if (!isItemError(error)) throw error;
        this.#fail(run, item, error);
        continue;
      }
      await this.#reference({ tenant, owner: to, refs: [row.mediaRef, ...Object.values(row.metadata)] });
      await run.target.upsert({
        kind: "triple",
        tenant,
        records: [
          {
            ...copiedFields(row, pack.modelId),
            id: to,
            imageVector,
            questionVector,
            question: row.question,
            answer: row.answer,
          },
        ],
      });
      this.#stored(run, item);
    }
    run.request.onProgress?.(run.progress);
  }

  /**
   * Copies a tenant's video segments, a video at a time: its segments are listed (every page), grouped by
   * video, and each video with a segment missing from the new collections is sampled again and all its
   * missing segments embedded over their stored spans.
   */
  async #copyVideos(run: CopyRun & { tenant: string }): Promise<void> {
    const { source, tenant } = run;
    const videos = new Map<string, StoredVideoSegment[]>();
    const pages = pagesOf(source, { kind: "video_segment", tenant, limit: this.#options.pageSize });
    for await (const rows of pages) {
      for (const row of rows as StoredVideoSegment[]) {
        const list = videos.get(row.videoId) ?? [];
        list.push(row);
        videos.set(row.videoId, list);
      }
    }

    for (const segments of videos.values()) await this.#copyVideo({ ...run, segments });
  }

  /** Copies one video's segments: sampled again once, every segment missing from the new collections embedded. */
  async #copyVideo(run: CopyRun & { tenant: string; segments: StoredVideoSegment[] }): Promise<void> {
    const { tenant, pack, segments } = run;
    segments.sort((a, b) => a.startS - b.startS);
    const pending = await this.#pending({
      run,
      kind: "video_segment",
      tenant,
      rows: segments,
      newId: (row, sha256) => newRecordId({ row, tenant, sha256, modelId: pack.modelId }),
    });
    if (pending.length === 0) return;
    this.#spend(run, pending.length);
    const sha256 = pending[0]?.sha256 as string;
    const newVideoId = videoId({ tenant, contentSha256: sha256, modelId: pack.modelId });
    let vectors: Float32Array[];
    try {
      vectors = await this.#embedSegments({
        pack,
        bytes: await this.#read(sha256),
        spans: pending.map(({ row }) => row),
        videoEndS: Math.max(...segments.map((segment) => segment.endS)),
        sampleFps: sampleFpsOf(pending[0]?.row, this.#options.video.sampleFps),
        signal: run.request.signal,
      });
    } catch (error) {
      if (run.request.signal?.aborted === true) throw new StopRun();
      if (!isItemError(error)) throw error;
      for (const { row, to } of pending)
        this.#fail(run, { kind: "video_segment", tenant, from: row.id, to }, error);
      return;
    }
    await this.#reference({ tenant, owner: newVideoId, refs: [pending[0]?.row.mediaRef] });
    for (const { row, to } of pending) {
      await this.#reference({ tenant, owner: to, refs: [row.keyframeRef, ...Object.values(row.metadata)] });
    }
    await run.target.upsert({
      kind: "video_segment",
      tenant,
      records: pending.map(({ row, to }, index) => ({
        ...copiedFields(row, pack.modelId),
        id: to,
        vector: vectors[index] as Float32Array,
        videoId: newVideoId,
        startS: row.startS,
        endS: row.endS,
        keyframeRef: row.keyframeRef,
      })),
    });
    for (const { row, to } of pending) this.#stored(run, { kind: "video_segment", tenant, from: row.id, to });
    run.request.onProgress?.(run.progress);
  }

  /**
   * Samples a stored video again at the rate it was ingested with and embeds each span from its frames
   * with the pack's video embedder (its head, or the mean of frame embeddings), as ingest did.
   */
  async #embedSegments({
    pack,
    bytes,
    spans,
    videoEndS,
    sampleFps,
    signal,
  }: {
    pack: ModelPack;
    bytes: Uint8Array;
    spans: ReadonlyArray<{ startS: number; endS: number }>;
    /** End of the video's last segment: a span ending there takes every frame to the last. */
    videoEndS: number;
    sampleFps: number;
    signal: AbortSignal | undefined;
  }): Promise<Float32Array[]> {
    const { tempDir, limits } = this.#options.video;
    // Through the ingest's temp uploads: a process killed while re-sampling leaves nothing for long.
    return withTempUpload({ dir: tempDir, bytes, logger: this.#options.logger }, async (file) => {
      const probe = await probeVideo({ path: file, limits, signal });
      const processor = pack.imageProcessor;
      const cropSize = processor.outputWidth;
      const shortestEdge =
        processor.config.do_resize && "shortest_edge" in processor.config.size
          ? processor.config.size.shortest_edge
          : cropSize;
      const frames: Array<{ data: Uint8Array; width: number; height: number; channels: 3 }> = [];
      await sampleVideoFrames({
        path: file,
        probe,
        fps: sampleFps,
        shortestEdge,
        cropSize,
        limits,
        signal,
        onFrame: (frame) => {
          frames.push({ data: frame.data, width: frame.width, height: frame.height, channels: 3 });
        },
      });
      if (frames.length === 0) {
        throw new AppError(
          "media_invalid",
          422,
          "The stored video decoded to no frames; it cannot be re-embedded.",
        );
      }
      const vectors: Float32Array[] = [];
      for (const span of spans) {
        const first = Math.min(Math.round(span.startS * sampleFps), frames.length - 1);
        // Segment times are frame / fps (ms-rounded), except the last end, which is the decoded duration.
        const last = span.endS >= videoEndS;
        const end = last
          ? frames.length
          : Math.min(Math.max(Math.round(span.endS * sampleFps), first + 1), frames.length);
        vectors.push(await pack.videoEmbedder.embed({ frames: frames.slice(first, end) }));
      }
      return vectors;
    });
  }
}

/** What one copy works with. */
interface CopyRun {
  source: MilvusVectorStore;
  target: MilvusVectorStore;
  pack: ModelPack;
  progress: Record<RecordKind, KindProgress>;
  budget: { left: number };
  /** The new id of every live row seen, by `<kind>/<tenant>`: rows of the new collections not here are stale. */
  expected: Map<string, Set<string>>;
  request: RunPackMigrationRequest;
}

/** Every row of a tenant's kind, a page at a time (pages that are not empty). */
async function* pagesOf(
  store: MilvusVectorStore,
  { kind, tenant, limit }: { kind: RecordKind; tenant: string; limit: number },
): AsyncGenerator<StoredRecord[]> {
  let after: string | undefined;
  do {
    const page = await store.list({ kind, tenant, limit, ...(after === undefined ? {} : { after }) });
    if (page.rows.length > 0) yield page.rows;
    after = page.nextAfter;
  } while (after !== undefined);
}

/** The id a live row gets in the new model's collections (deterministic: a run again finds it). */
function newRecordId({
  row,
  tenant,
  sha256,
  modelId,
}: {
  row: StoredImage | StoredTriple | StoredVideoSegment;
  tenant: string;
  sha256: string;
  modelId: string;
}): string {
  const base = { tenant, contentSha256: sha256, modelId };
  if (row.kind === "triple") return recordId({ kind: "triple", ...base, question: row.question });
  if (row.kind === "video_segment") {
    return recordId({ kind: "video_segment", ...base, startS: row.startS, endS: row.endS });
  }
  return recordId({ kind: "image", ...base });
}

/** The fields a copy keeps as they are, with the new model id. */
function copiedFields(
  row: StoredImage | StoredTriple | StoredVideoSegment,
  modelId: string,
): {
  modelId: string;
  mediaRef: string;
  source: string;
  createdAt: number;
  text: string;
  metadata: Record<string, unknown>;
  ocrText: string;
} {
  return {
    modelId,
    mediaRef: row.mediaRef,
    source: row.source,
    createdAt: row.createdAt,
    text: row.text,
    // Regions are not copied (the new pack finds its own objects): unmarked, the region backfill finds them.
    metadata: withoutRegionsMarker(row.metadata),
    ocrText: row.ocrText,
  };
}

function withoutRegionsMarker(metadata: Record<string, unknown>): Record<string, unknown> {
  const { [REGIONS_MARKER]: _marker, ...rest } = metadata;
  return rest;
}

/** The rate a video was sampled at when ingested (`metadata.video.sampleFps`), else the configured one. */
function sampleFpsOf(row: StoredVideoSegment | undefined, fallback: number): number {
  const video = row?.metadata.video as { sampleFps?: unknown } | undefined;
  const fps = Number(video?.sampleFps);
  return Number.isFinite(fps) && fps > 0 ? fps : fallback;
}
