/**
 * Ingest jobs shared by every replica (`LOUPE_DATABASE_URL` and `LOUPE_REDIS_URL` both set): the shared
 * adapter of the job port, beside the in-process {@link JobRegistry} that remains the embedded one.
 *
 * - {@link SharedJobs} is the API side: it records a job and its items in PostgreSQL
 *   ({@link PgJobStore}), then queues one message per item on Redis ({@link RedisWorkQueue}); it reads a
 *   job and follows its progress from PostgreSQL, so any API replica answers for any job.
 * - {@link SharedJobWorker} is the worker side (`loupe serve --role worker|all`): it claims items,
 *   runs them with the runner of their job's kind ({@link SharedJobRunner}: images through the
 *   {@link ImageIngester}, triples through the triple ingester, videos through the video ingester,
 *   `shared-video-jobs.ts`), writes each
 *   outcome to PostgreSQL, then acknowledges it.
 *
 * A worker that dies mid-item leaves its lease to lapse; the next claim by any worker puts the item back
 * with its attempt counted, and a worker that sees an item already settled only acknowledges it. Running
 * an item twice is harmless: record ids are deterministic (tenant, content hash, model, and for a video's
 * segments their span), so a second run finds the record and reports it `skipped`, or upserts the same id
 * over a write the first run never confirmed; blobs are content-addressed and referenced before the
 * record is written, and released when it is not. An item whose run throws for the server (store or
 * database down) is retried after a backoff that doubles per attempt, and fails with `attempts_exhausted`
 * after `maxAttempts`.
 *
 * Some kinds find their items in the store rather than receive them (backfills, pack switches,
 * `shared-listed-jobs.ts`): such a job starts with one step, the listing ({@link LIST_STEP}), which a
 * worker runs like an item, adding and queueing the items it finds; the job cannot end before its listing
 * has. A kind with an ending of its own (a switch) gets an ending step ({@link FINISH_STEP}) once every
 * item is settled, run by one worker, retried like an item, and the job ends only after it.
 *
 * Followers poll PostgreSQL (`pollMs`) rather than listen on Redis pub/sub: the database holds the truth,
 * a follower that connects late or reconnects misses nothing (it reads the items changed since the last
 * `seq` it saw), and progress at half a second needs no second channel. Every kind of job runs here when
 * the shared queue is configured: images, videos, triples, OCR and region backfills, pack switches.
 */
import { randomBytes } from "node:crypto";
import type { AuditLog } from "../audit/audit-log.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { BlobStore } from "../media/blob-store.ts";
import type { ImageIngester, ImageIngestItem, ImageMetadata } from "./image-ingest.ts";
import { describeImageItem } from "./image-ingest.ts";
import {
  type JobActor,
  type JobCounts,
  type JobError,
  type JobEvent,
  type JobItemOutcome,
  type JobSnapshot,
  type JobWorkItem,
  toJobError,
} from "./jobs.ts";
import type { OcrBackfill } from "./ocr-backfill.ts";
import type { PackMigration } from "./pack-migration.ts";
import type { JobHead, JobWorkRow, ListedJobItem, NewJobItem, PgJobStore } from "./pg-job-store.ts";
import { FINISH_STEP, LIST_STEP, type RedisWorkQueue, type WorkMessage } from "./redis-work-queue.ts";
import type { RegionBackfill } from "./region-backfill.ts";
import {
  createBackfillJobRunner,
  createMigrateJobRunner,
  SHARED_MIGRATE_JOB_KIND,
  SHARED_OCR_JOB_KIND,
  SHARED_REGIONS_JOB_KIND,
} from "./shared-listed-jobs.ts";
import { createVideoJobRunner, type SharedVideoItem, stageVideoItems } from "./shared-video-jobs.ts";
import { type TripleIngester, type TripleInput, tripleJobOutcome } from "./triple-ingest.ts";
import type { VideoIngester } from "./video-ingest.ts";

/** Kind of the image jobs on the shared queue. */
export const SHARED_IMAGE_JOB_KIND = "images";
/** Kind of the video jobs on the shared queue. */
export const SHARED_VIDEO_JOB_KIND = "videos";
/** Kind of the triple jobs on the shared queue. */
export const SHARED_TRIPLE_JOB_KIND = "triples";
/** Triples run per ingest call: embedded together, as in one process. */
const TRIPLE_CHUNK = 32;

/** A triple of a request, as the route hands it to {@link SharedJobs.createTriples}: its input, or why it was refused. */
export type SharedTripleItem = { input: TripleInput } | { rejected: JobError };
/** Kinds whose items a worker lists ({@link SharedJobRunner.list}): one at a time per tenant (a switch: at all). */
export const SHARED_LISTED_JOB_KINDS: ReadonlySet<string> = new Set([
  SHARED_OCR_JOB_KIND,
  SHARED_REGIONS_JOB_KIND,
  SHARED_MIGRATE_JOB_KIND,
]);

/** How a worker runs the items of one kind of job. */
export interface SharedJobRunner<Input> {
  /** Reads an item's input back from its row; `undefined` when the row holds nothing runnable. */
  inputOf(row: JobWorkRow): Input | undefined;
  /**
   * Runs the items, reporting each outcome; an item left unreported (a server failure, or `signal`
   * aborted before it ran) goes back to the queue. Throwing leaves every unreported item to retry.
   */
  run(options: {
    head: JobHead;
    work: JobWorkItem<Input>[];
    signal: AbortSignal;
    report: (index: number, outcome: JobItemOutcome) => void;
  }): Promise<void>;
  /** Most items it runs from one claim; the others go back to the queue at once, for other workers. */
  batchLimit?: number;
  /**
   * For kinds whose items are found in the store: lists them, handing each page to `append` (which adds
   * the ones the job lacks and queues them). Returns how many records it considered, when it counts them:
   * those not listed are the job's skipped ones.
   */
  list?(options: {
    head: JobHead;
    signal: AbortSignal;
    append: (items: readonly ListedJobItem[]) => Promise<void>;
  }): Promise<{ total?: number }>;
  /** The job's ending, run once every item is settled; the job ends `done` after it, or failed by its throw. */
  finish?(options: { head: JobHead; counts: JobCounts; signal: AbortSignal }): Promise<void>;
  /** Frees what the runner keeps between batches (a loaded pack). */
  close?(): Promise<void>;
}

/** Options of {@link SharedJobs}. */
export interface SharedJobsOptions {
  store: PgJobStore;
  queue: RedisWorkQueue;
  /** Where video uploads wait for a worker (the blob store every process shares); video jobs need it. */
  blobs?: BlobStore;
  /** How often a follower reads the job's changes, in milliseconds. */
  pollMs?: number;
}

function newJobId(): string {
  return `job_${randomBytes(12).toString("hex")}`;
}

function waitFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** See the module comment: the API side. */
export class SharedJobs {
  readonly #store: PgJobStore;
  readonly #queue: RedisWorkQueue;
  readonly #blobs: BlobStore | undefined;
  readonly #pollMs: number;

  constructor({ store, queue, blobs, pollMs = 500 }: SharedJobsOptions) {
    this.#store = store;
    this.#queue = queue;
    this.#blobs = blobs;
    this.#pollMs = Math.max(20, pollMs);
  }

  /** Whether video jobs can be queued (a blob store was given). */
  get runsVideos(): boolean {
    return this.#blobs !== undefined;
  }

  /**
   * Records an image job and queues its items; items refused before ingest (bad metadata) are recorded
   * failed and not queued. Only uploads (`bytes`) and URLs can be queued: a worker cannot read the
   * caller's files.
   *
   * @throws {OverloadedError} when the queue is full (the job is then recorded `failed`, resumable);
   *   `queue_unavailable` when Redis cannot be reached (likewise).
   */
  async createImages({
    tenant,
    items,
    defaultSource,
    actor,
  }: {
    tenant: string;
    items: readonly ImageIngestItem[];
    defaultSource: string;
    actor?: JobActor;
  }): Promise<Pick<JobSnapshot, "id" | "status">> {
    const id = newJobId();
    const rows = items.map((item): NewJobItem => {
      const describe = describeImageItem(item);
      const metadata = item.metadata === undefined ? {} : { metadata: item.metadata };
      if (item.rejected !== undefined) {
        return { describe, input: { source: { type: "none" } }, error: toJobError(item.rejected) };
      }
      const { source } = item;
      if (source.type === "bytes") {
        return {
          describe,
          input: { source: { type: "bytes", filename: source.filename }, ...metadata },
          bytes: source.bytes,
        };
      }
      if (source.type === "url")
        return { describe, input: { source: { type: "url", url: source.url }, ...metadata } };
      return {
        describe,
        input: { source: { type: "none" } },
        error: {
          code: "invalid_request",
          message:
            "A file path cannot be queued for another process; upload the file or ingest it with `loupe ingest`.",
        },
      };
    });
    await this.#store.create({
      id,
      tenant,
      kind: SHARED_IMAGE_JOB_KIND,
      spec: { defaultSource, ...(actor === undefined ? {} : { actor }) },
      items: rows,
    });
    await this.#enqueueRows(id, rows);
    return { id, status: "queued" };
  }

  /**
   * Records a video job and queues its videos; each video's bytes wait in the blob store until a worker
   * has stored it (see `shared-video-jobs.ts`). Items refused before ingest are recorded failed and not
   * queued.
   *
   * @throws {AppError} `internal_error` when this instance was built without a blob store; as
   *   {@link SharedJobs.createImages} when the queue is full or unreachable.
   */
  async createVideos({
    tenant,
    items,
    metadata,
    text,
    actor,
  }: {
    tenant: string;
    items: readonly SharedVideoItem[];
    /** Caller metadata (validated), stored on every segment of every video. */
    metadata: Record<string, unknown>;
    /** Searchable text (title, tags) stored on every segment. */
    text: string;
    actor?: JobActor;
  }): Promise<Pick<JobSnapshot, "id" | "status">> {
    const blobs = this.#blobs;
    if (blobs === undefined) {
      throw new AppError(
        "internal_error",
        500,
        "Video jobs cannot be queued: the shared jobs were built without a blob store.",
      );
    }
    const id = newJobId();
    const { rows, unstage } = await stageVideoItems({ blobs, tenant, jobId: id, items, metadata, text });
    try {
      await this.#store.create({
        id,
        tenant,
        kind: SHARED_VIDEO_JOB_KIND,
        spec: { defaultSource: "upload", ...(actor === undefined ? {} : { actor }) },
        items: rows,
      });
    } catch (error) {
      await unstage();
      throw error;
    }
    await this.#enqueueRows(id, rows);
    return { id, status: "queued" };
  }

  /**
   * Records a job whose items a worker lists (an OCR backfill, a pack switch) and queues its listing,
   * unless the tenant has one of that kind queued or running (a switch: anyone has): that one is
   * returned instead, as in one process.
   *
   * @throws as {@link SharedJobs.createImages} when the queue is full or unreachable.
   */
  async createListed({
    tenant,
    kind,
    params,
    actor,
  }: {
    tenant: string;
    kind: string;
    params: Record<string, unknown>;
    actor?: JobActor;
  }): Promise<Pick<JobSnapshot, "id" | "status">> {
    const { id, created } = await this.#store.createListed({
      id: newJobId(),
      tenant,
      kind,
      spec: { defaultSource: kind, params, ...(actor === undefined ? {} : { actor }) },
    });
    if (!created) {
      const head = await this.#store.head(id);
      return { id, status: head?.status ?? "queued" };
    }
    await this.#enqueue(id, [{ jobId: id, index: LIST_STEP, attempt: 1 }]);
    return { id, status: "queued" };
  }

  /**
   * Records a triple job and queues its triples; triples refused before ingest are recorded failed and
   * not queued. An uploaded image's bytes wait in its item's row, as an image job's do; a URL or a stored
   * image's id is kept as it is, for the worker to read.
   *
   * @throws as {@link SharedJobs.createImages} when the queue is full or unreachable.
   */
  async createTriples({
    tenant,
    items,
    actor,
  }: {
    tenant: string;
    items: readonly SharedTripleItem[];
    actor?: JobActor;
  }): Promise<Pick<JobSnapshot, "id" | "status">> {
    const id = newJobId();
    const rows = items.map((item, index): NewJobItem => {
      const describe = { item: String(index) };
      if ("rejected" in item) return { describe, input: {}, error: item.rejected };
      const { image, question, answer, metadata } = item.input;
      const fields = { question, answer, ...(metadata === undefined ? {} : { metadata }) };
      if ("bytes" in image)
        return { describe, input: { image: { type: "bytes" }, ...fields }, bytes: image.bytes };
      if ("url" in image) return { describe, input: { image: { type: "url", url: image.url }, ...fields } };
      return { describe, input: { image: { type: "item", id: image.id }, ...fields } };
    });
    await this.#store.create({
      id,
      tenant,
      kind: SHARED_TRIPLE_JOB_KIND,
      spec: { defaultSource: "upload", ...(actor === undefined ? {} : { actor }) },
      items: rows,
    });
    await this.#enqueueRows(id, rows);
    return { id, status: "queued" };
  }

  /** The job, if the tenant owns it; `undefined` otherwise. */
  async get({ id, tenant }: { id: string; tenant: string }): Promise<JobSnapshot | undefined> {
    return (await this.#store.snapshot({ id, tenant }))?.job;
  }

  /**
   * Queues the job's pending and failed items again. Returns its snapshot; `undefined` when there is no
   * such job for the tenant.
   *
   * @throws {AppError} `conflict` (409) while the job is queued or running.
   */
  async resume({ id, tenant }: { id: string; tenant: string }): Promise<JobSnapshot | undefined> {
    const before = await this.#store.snapshot({ id, tenant });
    if (before === undefined) return undefined;
    const { job } = before;
    if (job.status === "queued" || job.status === "running") {
      throw new AppError(
        "conflict",
        409,
        `Job ${id} is ${job.status}; only a job that is done or failed can be resumed. Wait for it to end.`,
        { context: { id, status: job.status } },
      );
    }
    // A listed job is listed again: what it lacks (records added since) joins, what it has is kept.
    const relist = SHARED_LISTED_JOB_KINDS.has(job.kind);
    const indexes = await this.#store.reopen({ id, relist });
    if (indexes === undefined) return job;
    await this.#enqueue(id, [
      ...indexes.map((index) => ({ jobId: id, index, attempt: 1 })),
      ...(relist ? [{ jobId: id, index: LIST_STEP, attempt: 1 }] : []),
    ]);
    return (await this.#store.snapshot({ id, tenant }))?.job;
  }

  /**
   * The job's events, read from the database: `progress` now, then `item` and `progress` as items settle,
   * ending with `done` (or `error` when the job failed as a whole). `undefined` when there is no such job.
   */
  async events({
    id,
    tenant,
    signal,
  }: {
    id: string;
    tenant: string;
    signal?: AbortSignal;
  }): Promise<AsyncGenerator<JobEvent> | undefined> {
    const first = await this.#store.snapshot({ id, tenant });
    if (first === undefined) return undefined;
    const store = this.#store;
    const pollMs = this.#pollMs;
    return (async function* () {
      const { job } = first;
      let seq = first.seq;
      yield { type: "progress", data: { id, status: job.status, counts: job.counts } };
      let status = job.status;
      let error = job.error;
      let counts = job.counts;
      while (status !== "done" && status !== "failed") {
        await waitFor(pollMs, signal);
        if (signal?.aborted === true) return;
        const changes = await store.changedSince({ id, seq });
        for (const change of changes) {
          seq = Math.max(seq, change.seq);
          yield { type: "item", data: { id, item: change.item } };
        }
        const now = await store.progress({ id, tenant });
        if (now === undefined) return;
        if (changes.length > 0 || now.status !== status) {
          yield { type: "progress", data: { id, status: now.status, counts: now.counts } };
        }
        ({ status, counts } = now);
        error = now.error;
      }
      yield status === "failed" && error !== undefined
        ? { type: "error", data: { id, status, counts, error } }
        : { type: "done", data: { id, status, counts } };
    })();
  }

  /** Queues the rows not refused before ingest. */
  async #enqueueRows(id: string, rows: readonly NewJobItem[]): Promise<void> {
    await this.#enqueue(
      id,
      rows.flatMap((row, index) => (row.error === undefined ? [{ jobId: id, index, attempt: 1 }] : [])),
    );
  }

  async #enqueue(id: string, messages: readonly WorkMessage[]): Promise<void> {
    try {
      await this.#queue.enqueue(messages);
    } catch (error) {
      await this.#store.fail({ id, error: toJobError(error) }).catch(() => undefined);
      throw error;
    }
    if (messages.length === 0) await this.#store.finishIfComplete(id);
  }
}

/** What a worker runs jobs with, as the composition root hands it (the rest of {@link SharedJobWorkerOptions} is configuration). */
export type SharedJobWorkerParts = Pick<
  SharedJobWorkerOptions,
  | "images"
  | "videos"
  | "blobs"
  | "triples"
  | "ocrBackfill"
  | "regionBackfill"
  | "packMigration"
  | "audit"
  | "logger"
>;

/** Options of {@link SharedJobWorker}. */
export interface SharedJobWorkerOptions {
  store: PgJobStore;
  queue: RedisWorkQueue;
  images: ImageIngester;
  /** Runs video jobs, reading their uploads from `blobs`; without both, video jobs are left to others. */
  videos?: VideoIngester;
  blobs?: BlobStore;
  /** Runs triple jobs; without it, they are left to other workers. */
  triples?: TripleIngester;
  /** Runs OCR backfill jobs; without it (OCR off here), they are left to other workers. */
  ocrBackfill?: OcrBackfill | undefined;
  /** Runs region backfill jobs; without it (no detection head), they are left to others. */
  regionBackfill?: RegionBackfill | undefined;
  /** Runs pack switch jobs; without it, they are left to other workers. */
  packMigration?: PackMigration | undefined;
  /** Where stored items are recorded, as the job's actor. */
  audit?: AuditLog;
  /** Batches of items run at once. */
  concurrency?: number;
  /** Items claimed (and embedded) together. */
  batchItems?: number;
  /** Runs of an item before it fails with `attempts_exhausted`. */
  maxAttempts?: number;
  /** First retry delay; each attempt doubles it, up to a minute. */
  retryBaseMs?: number;
  /** Wait between claims while the queue is empty. */
  idlePollMs?: number;
  logger?: Logger;
}

/** Reads an image item's input back from its row; `undefined` when the row holds nothing runnable. */
function imageInputOf(row: JobWorkRow): ImageIngestItem | undefined {
  const source = row.input.source as { type?: unknown; filename?: unknown; url?: unknown } | undefined;
  const metadata = row.input.metadata as ImageMetadata | undefined;
  const withMetadata = metadata === undefined || metadata === null ? {} : { metadata };
  if (source?.type === "bytes" && typeof source.filename === "string" && row.bytes !== null) {
    return { source: { type: "bytes", bytes: row.bytes, filename: source.filename }, ...withMetadata };
  }
  if (source?.type === "url" && typeof source.url === "string") {
    return { source: { type: "url", url: source.url }, ...withMetadata };
  }
  return undefined;
}

/** The worker's runner of image jobs: a batch at a time through the {@link ImageIngester}. */
function createImageJobRunner(images: ImageIngester): SharedJobRunner<ImageIngestItem> {
  return {
    inputOf: imageInputOf,
    run: ({ head, work, signal, report }) =>
      images.ingest({
        tenant: head.tenant,
        items: work,
        defaultSource: head.spec.defaultSource,
        signal,
        report,
      }),
  };
}

/** Reads a triple item's input back from its row; `undefined` when the row holds nothing runnable. */
function tripleInputOf(row: JobWorkRow): TripleInput | undefined {
  const { image, question, answer, metadata } = row.input as Record<string, unknown>;
  const ref = image as { type?: unknown; url?: unknown; id?: unknown } | undefined;
  if (typeof question !== "string" || typeof answer !== "string") return undefined;
  const fields = {
    question,
    answer,
    ...(typeof metadata === "object" && metadata !== null
      ? { metadata: metadata as Record<string, unknown> }
      : {}),
  };
  if (ref?.type === "bytes" && row.bytes !== null) return { image: { bytes: row.bytes }, ...fields };
  if (ref?.type === "url" && typeof ref.url === "string") return { image: { url: ref.url }, ...fields };
  if (ref?.type === "item" && typeof ref.id === "string") return { image: { id: ref.id }, ...fields };
  return undefined;
}

/** The worker's runner of triple jobs: {@link TRIPLE_CHUNK} at a time through the {@link TripleIngester}. */
function createTripleJobRunner(triples: TripleIngester): SharedJobRunner<TripleInput> {
  return {
    inputOf: tripleInputOf,
    async run({ head, work, signal, report }) {
      for (let start = 0; start < work.length; start += TRIPLE_CHUNK) {
        if (signal.aborted) return;
        const chunk = work.slice(start, start + TRIPLE_CHUNK);
        const outcome = await triples.ingest({
          tenant: head.tenant,
          items: chunk.map((entry) => entry.input),
          source: head.spec.defaultSource,
        });
        for (const [position, result] of outcome.items.entries()) {
          const entry = chunk[position];
          if (entry !== undefined) report(entry.index, tripleJobOutcome(result));
        }
      }
    },
  };
}

/** See the module comment: the worker side. {@link SharedJobWorker.close} it at shutdown. */
export class SharedJobWorker {
  readonly #options: Required<
    Omit<
      SharedJobWorkerOptions,
      "audit" | "logger" | "videos" | "blobs" | "triples" | "ocrBackfill" | "regionBackfill" | "packMigration"
    >
  > &
    Pick<SharedJobWorkerOptions, "audit" | "logger">;
  readonly #runners: ReadonlyMap<string, SharedJobRunner<unknown>>;
  readonly #abort = new AbortController();
  /** Kinds of job met that this worker has no runner for (each logged once). */
  readonly #lacking = new Set<string>();
  /** When this worker may claim again, after leaving work to others (ms since the epoch). */
  #pausedUntil = 0;
  #loops: Promise<void>[] = [];

  constructor({
    concurrency = 1,
    batchItems = 16,
    maxAttempts = 5,
    retryBaseMs = 1_000,
    idlePollMs = 250,
    videos,
    blobs,
    triples,
    ocrBackfill,
    regionBackfill,
    packMigration,
    ...rest
  }: SharedJobWorkerOptions) {
    const runners = new Map<string, SharedJobRunner<unknown>>([
      [SHARED_IMAGE_JOB_KIND, createImageJobRunner(rest.images) as SharedJobRunner<unknown>],
    ]);
    if (videos !== undefined && blobs !== undefined) {
      const runner = createVideoJobRunner({
        videos,
        blobs,
        ...(rest.logger === undefined ? {} : { logger: rest.logger }),
      });
      runners.set(SHARED_VIDEO_JOB_KIND, runner as SharedJobRunner<unknown>);
    }
    if (triples !== undefined) {
      runners.set(SHARED_TRIPLE_JOB_KIND, createTripleJobRunner(triples) as SharedJobRunner<unknown>);
    }
    if (ocrBackfill !== undefined) {
      runners.set(SHARED_OCR_JOB_KIND, createBackfillJobRunner(ocrBackfill) as SharedJobRunner<unknown>);
    }
    if (regionBackfill !== undefined) {
      runners.set(
        SHARED_REGIONS_JOB_KIND,
        createBackfillJobRunner(regionBackfill) as SharedJobRunner<unknown>,
      );
    }
    if (packMigration !== undefined) {
      const runner = createMigrateJobRunner({
        migration: packMigration,
        ...(rest.logger === undefined ? {} : { logger: rest.logger }),
      });
      runners.set(SHARED_MIGRATE_JOB_KIND, runner as SharedJobRunner<unknown>);
    }
    this.#runners = runners;
    this.#options = {
      concurrency: Math.max(1, Math.floor(concurrency)),
      batchItems: Math.max(1, Math.floor(batchItems)),
      maxAttempts: Math.max(1, Math.floor(maxAttempts)),
      retryBaseMs: Math.max(0, retryBaseMs),
      idlePollMs: Math.max(10, idlePollMs),
      ...rest,
    };
  }

  /** Starts claiming work. */
  start(): void {
    if (this.#loops.length > 0) return;
    this.#loops = Array.from({ length: this.#options.concurrency }, () => this.#loop());
  }

  /** Stops claiming, lets the batches in hand end (unrun items go back to the queue at once), and waits. */
  async close(): Promise<void> {
    this.#abort.abort();
    await Promise.all(this.#loops);
    for (const runner of this.#runners.values()) await runner.close?.();
  }

  async #loop(): Promise<void> {
    const { queue, logger, batchItems, idlePollMs } = this.#options;
    const signal = this.#abort.signal;
    let failures = 0;
    while (!signal.aborted) {
      const paused = this.#pausedUntil - Date.now();
      if (paused > 0) {
        await waitFor(paused, signal);
        continue;
      }
      let claimed: WorkMessage[];
      try {
        claimed = await queue.claim(batchItems);
        failures = 0;
      } catch (error) {
        failures += 1;
        if (failures === 1) logger?.warn({ err: error }, "claiming work failed; retrying");
        await waitFor(Math.min(idlePollMs * 2 ** failures, 5_000), signal);
        continue;
      }
      if (claimed.length === 0) {
        await waitFor(idlePollMs, signal);
        continue;
      }
      const byJob = new Map<string, WorkMessage[]>();
      const steps: WorkMessage[] = [];
      for (const message of claimed) {
        if (message.index < 0) steps.push(message);
        else byJob.set(message.jobId, [...(byJob.get(message.jobId) ?? []), message]);
      }
      for (const step of steps) {
        try {
          await this.#runStep(step);
        } catch (error) {
          // As for a batch: the lease lapses and the step runs again.
          logger?.error({ err: error, jobId: step.jobId }, "running a step of a job failed");
        }
      }
      for (const [jobId, messages] of byJob) {
        try {
          await this.#runBatch(jobId, messages);
        } catch (error) {
          // The database or the queue failed outside an item: the leases lapse and the items run again.
          logger?.error({ err: error, jobId, items: messages.length }, "running a batch of a job failed");
        }
      }
    }
  }

  async #runBatch(jobId: string, claimed: readonly WorkMessage[]): Promise<void> {
    let messages = claimed;
    const { store, queue, maxAttempts, logger } = this.#options;
    const signal = this.#abort.signal;
    const head = await store.head(jobId);
    const runner = head === undefined ? undefined : this.#runners.get(head.kind);
    if (head === undefined) {
      // A job that no longer exists leaves nothing to do.
      for (const message of messages) await queue.ack(message);
      return;
    }
    if (runner === undefined) {
      await this.#leaveToOthers(head, messages);
      return;
    }
    if (runner.batchLimit !== undefined && messages.length > runner.batchLimit) {
      // Left to other workers (or this one's next claim) untried, rather than waiting behind this batch.
      await queue.release(messages.slice(runner.batchLimit));
      messages = messages.slice(0, runner.batchLimit);
    }
    const rows = new Map(
      (await store.takeWork({ id: jobId, indexes: messages.map((message) => message.index) })).map((row) => [
        row.index,
        row,
      ]),
    );
    const held = new Map<number, WorkMessage>();
    const work: JobWorkItem<unknown>[] = [];
    for (const message of messages) {
      const row = rows.get(message.index);
      if (row === undefined || row.status !== "pending") {
        await queue.ack(message);
        continue;
      }
      const input = runner.inputOf(row);
      if (message.attempt > maxAttempts || input === undefined) {
        const error: JobError =
          input === undefined
            ? {
                code: "internal_error",
                message: "The item's input is missing from the job record; send it again.",
              }
            : {
                code: "attempts_exhausted",
                message: `The item was tried ${maxAttempts} times (LOUPE_JOB_MAX_ATTEMPTS) without an outcome; the server log says why. Resume the job to try again.`,
              };
        await store.settle({ id: jobId, index: message.index, outcome: { status: "failed", error } });
        await queue.ack(message);
        continue;
      }
      held.set(message.index, message);
      work.push({ index: message.index, input });
    }
    if (work.length > 0) {
      await store.markRunning(jobId);
      await this.#ingest({ jobId, head, runner, work, held, signal, logger });
    }
    await this.#endIfSettled(head, runner);
  }

  /**
   * Ends the job if it is listed and every item is settled: at once, or, for a kind with an ending of its
   * own, by queueing its ending step, once (the database decides which worker queues it).
   */
  async #endIfSettled(head: JobHead, runner: SharedJobRunner<unknown>): Promise<void> {
    const { store, queue } = this.#options;
    if (runner.finish === undefined) {
      await store.finishIfComplete(head.id);
      return;
    }
    if (!(await store.claimEnding(head.id))) return;
    try {
      await queue.enqueue([{ jobId: head.id, index: FINISH_STEP, attempt: 1 }]);
    } catch (error) {
      // Unqueued, the ending must be claimable again: by the next batch, or a resume.
      await store.claimEnding(head.id, { undo: true }).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Gives back, untried, the work of a job this worker has no runner for (its kind needs what this
   * worker lacks: OCR on, a detection head), put off for a while, during which this worker claims nothing:
   * a worker that has the runner takes it meanwhile. Logged once per kind.
   */
  async #leaveToOthers(head: JobHead, messages: readonly WorkMessage[]): Promise<void> {
    const { queue, logger, idlePollMs } = this.#options;
    if (!this.#lacking.has(head.kind)) {
      this.#lacking.add(head.kind);
      logger?.warn(
        { jobId: head.id, kind: head.kind },
        "this worker cannot run jobs of this kind (see the worker's settings); they are left to other workers",
      );
    }
    const delayMs = Math.max(1_000, idlePollMs * 8);
    for (const message of messages) await queue.defer(message, delayMs);
    // This worker claims nothing until the work is due and a little after, or it would win it back each
    // time (its polls fall in step with the delay it set); a worker that can run it takes it meanwhile.
    this.#pausedUntil = Date.now() + delayMs + 2 * idlePollMs;
  }

  /**
   * Runs a job-wide step: the listing of a listed job, or the ending of a kind with one. A step that
   * fails for the request (4xx: a pack that cannot be read) fails the job; one that fails for the server
   * is retried after its backoff, and fails the job once its attempts are spent.
   */
  async #runStep(message: WorkMessage): Promise<void> {
    const { store, queue, maxAttempts, retryBaseMs, logger } = this.#options;
    const signal = this.#abort.signal;
    const head = await store.head(message.jobId);
    const runner = head === undefined ? undefined : this.#runners.get(head.kind);
    if (head === undefined || (head.status !== "queued" && head.status !== "running")) {
      await queue.ack(message);
      return;
    }
    if (runner === undefined) {
      await this.#leaveToOthers(head, [message]);
      return;
    }
    const listing = message.index === LIST_STEP;
    if (listing ? head.listed || runner.list === undefined : runner.finish === undefined) {
      await queue.ack(message);
      if (listing) await this.#endIfSettled(head, runner);
      return;
    }
    if (message.attempt > maxAttempts) {
      await store.fail({
        id: head.id,
        error: {
          code: "attempts_exhausted",
          message: `The job's ${listing ? "listing" : "ending"} was tried ${maxAttempts} times (LOUPE_JOB_MAX_ATTEMPTS) without an outcome; the server log says why. Resume the job to try again.`,
        },
      });
      await queue.ack(message);
      return;
    }
    const heartbeat = setInterval(
      () => void queue.extend([message]).catch(() => undefined),
      Math.max(100, Math.floor(queue.leaseMs / 3)),
    );
    try {
      await store.markRunning(head.id);
      if (listing) {
        logger?.info(
          { jobId: head.id, kind: head.kind, attempt: message.attempt },
          "listing the items of a job",
        );
        await this.#list(head, runner, message, signal);
        await queue.ack(message);
        await this.#endIfSettled({ ...head, listed: true }, runner);
      } else {
        if (!(await store.settled(head.id))) {
          await queue.ack(message);
          return;
        }
        logger?.info({ jobId: head.id, kind: head.kind }, "ending a job");
        await runner.finish?.({ head, counts: await store.counts(head.id), signal });
        await store.finishIfComplete(head.id);
        await queue.ack(message);
      }
    } catch (error) {
      if (signal.aborted) {
        await queue.release([message]).catch(() => undefined);
      } else if (error instanceof AppError && error.status < 500) {
        logger?.warn({ err: error, jobId: head.id }, "a job failed");
        await store.fail({ id: head.id, error: toJobError(error) });
        await queue.ack(message);
      } else {
        logger?.warn(
          { err: error, jobId: head.id },
          "a step of a job failed for the server; it will be retried",
        );
        await queue.retry(message, Math.min(retryBaseMs * 2 ** (message.attempt - 1), 60_000));
      }
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Runs the job's listing: each page's new items recorded, then queued. */
  async #list(
    head: JobHead,
    runner: SharedJobRunner<unknown>,
    message: WorkMessage,
    signal: AbortSignal,
  ): Promise<void> {
    const { store, queue } = this.#options;
    if (message.attempt > 1) {
      // An earlier listing may have recorded items and stopped before queueing them. A second message
      // for an item is harmless: whoever runs it second finds it settled.
      const pending = await store.pendingIndexes(head.id);
      await queue.enqueue(pending.map((index) => ({ jobId: head.id, index, attempt: 1 })));
    }
    const listed = await runner.list?.({
      head,
      signal,
      append: async (items) => {
        const indexes = await store.appendItems({ id: head.id, items });
        await queue.enqueue(indexes.map((index) => ({ jobId: head.id, index, attempt: 1 })));
      },
    });
    if (signal.aborted) throw new AppError("shutting_down", 503, "The worker is shutting down.");
    await store.markListed({ id: head.id, ...(listed?.total === undefined ? {} : { total: listed.total }) });
  }

  async #ingest({
    jobId,
    head,
    runner,
    work,
    held,
    signal,
    logger,
  }: {
    jobId: string;
    head: JobHead;
    runner: SharedJobRunner<unknown>;
    work: JobWorkItem<unknown>[];
    held: Map<number, WorkMessage>;
    signal: AbortSignal;
    logger?: Logger;
  }): Promise<void> {
    const { store, queue, retryBaseMs } = this.#options;
    // Renewed while the batch runs, so only a worker that stopped loses its items.
    const heartbeat = setInterval(
      () => void queue.extend([...held.values()]).catch(() => undefined),
      Math.max(100, Math.floor(queue.leaseMs / 3)),
    );
    const writes: Promise<void>[] = [];
    const stored: string[] = [];
    const report = (index: number, outcome: JobItemOutcome) => {
      const message = held.get(index);
      if (message === undefined) return;
      held.delete(index);
      if (outcome.status === "stored") stored.push(outcome.id);
      // Outcome first, then the acknowledgement: a crash between them only makes another worker find it settled.
      writes.push(
        store
          .settle({ id: jobId, index, outcome })
          .then(() => queue.ack(message))
          .then(
            () => undefined,
            (error: unknown) =>
              logger?.warn({ err: error, jobId, index }, "recording an item's outcome failed"),
          ),
      );
    };
    try {
      await runner.run({ head, work, signal, report });
    } catch (error) {
      logger?.warn(
        { err: error, jobId, items: held.size },
        "an ingest batch failed; its unfinished items will be retried",
      );
    } finally {
      clearInterval(heartbeat);
    }
    await Promise.all(writes);
    // Whatever the run did not settle goes back: at once at shutdown, else after the backoff.
    for (const message of held.values()) {
      const delay = signal.aborted ? 0 : Math.min(retryBaseMs * 2 ** (message.attempt - 1), 60_000);
      await queue
        .retry(message, delay)
        .catch((error: unknown) =>
          logger?.warn(
            { err: error, jobId, index: message.index },
            "giving an item back failed; its lease will lapse",
          ),
        );
    }
    await this.#audit({ head, stored });
  }

  async #audit({
    head,
    stored,
  }: {
    head: NonNullable<Awaited<ReturnType<PgJobStore["head"]>>>;
    stored: readonly string[];
  }): Promise<void> {
    const { audit, logger } = this.#options;
    const actor = head.spec.actor;
    if (audit === undefined || actor === undefined || stored.length === 0) return;
    try {
      await audit.record({
        action: "ingest",
        keyId: actor.keyId,
        tenant: head.tenant,
        route: actor.route,
        requestId: actor.requestId,
        itemIds: stored,
        detail: { jobId: head.id, kind: head.kind, stored: stored.length },
      });
    } catch (error) {
      logger?.error({ err: error, jobId: head.id }, "writing the audit trail failed");
    }
  }
}
