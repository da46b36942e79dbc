/**
 * Ingest jobs shared by every replica (`LOUPE_DATABASE_URL` and `LOUPE_REDIS_URL` both set): the shared
 * adapter of the job port, beside the in-process {@link JobRegistry} that remains the embedded one.
 *
 * - {@link SharedJobs} is the API side: it records a job and its items in PostgreSQL
 *   ({@link PgJobStore}), then queues one message per item on Redis ({@link RedisWorkQueue}); it reads a
 *   job and follows its progress from PostgreSQL, so any API replica answers for any job.
 * - {@link SharedJobWorker} is the worker side (`loupe serve --role worker|all`): it claims items,
 *   runs them with the runner of their job's kind ({@link SharedJobRunner}: images through the
 *   {@link ImageIngester}, videos through the video ingester, `shared-video-jobs.ts`), writes each
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
 * Followers poll PostgreSQL (`pollMs`) rather than listen on Redis pub/sub: the database holds the truth,
 * a follower that connects late or reconnects misses nothing (it reads the items changed since the last
 * `seq` it saw), and progress at half a second needs no second channel. Image jobs (`kind: images`) and
 * video jobs (`kind: videos`) run here; triple, OCR, region and migration jobs still run in the process
 * that accepted them.
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
  type JobError,
  type JobEvent,
  type JobItemOutcome,
  type JobSnapshot,
  type JobWorkItem,
  toJobError,
} from "./jobs.ts";
import type { JobHead, JobWorkRow, NewJobItem, PgJobStore } from "./pg-job-store.ts";
import type { RedisWorkQueue, WorkMessage } from "./redis-work-queue.ts";
import { createVideoJobRunner, type SharedVideoItem, stageVideoItems } from "./shared-video-jobs.ts";
import type { VideoIngester } from "./video-ingest.ts";

/** Kind of the image jobs on the shared queue. */
export const SHARED_IMAGE_JOB_KIND = "images";
/** Kind of the video jobs on the shared queue. */
export const SHARED_VIDEO_JOB_KIND = "videos";

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
    const indexes = await this.#store.reopen({ id });
    if (indexes === undefined) return job;
    await this.#enqueue(
      id,
      indexes.map((index) => ({ jobId: id, index, attempt: 1 })),
    );
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

/** Options of {@link SharedJobWorker}. */
export interface SharedJobWorkerOptions {
  store: PgJobStore;
  queue: RedisWorkQueue;
  images: ImageIngester;
  /** Runs video jobs, reading their uploads from `blobs`; without both, video jobs are left to others. */
  videos?: VideoIngester;
  blobs?: BlobStore;
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

/** See the module comment: the worker side. {@link SharedJobWorker.close} it at shutdown. */
export class SharedJobWorker {
  readonly #options: Required<Omit<SharedJobWorkerOptions, "audit" | "logger" | "videos" | "blobs">> &
    Pick<SharedJobWorkerOptions, "audit" | "logger">;
  readonly #runners: ReadonlyMap<string, SharedJobRunner<unknown>>;
  readonly #abort = new AbortController();
  #loops: Promise<void>[] = [];

  constructor({
    concurrency = 1,
    batchItems = 16,
    maxAttempts = 5,
    retryBaseMs = 1_000,
    idlePollMs = 250,
    videos,
    blobs,
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
  }

  async #loop(): Promise<void> {
    const { queue, logger, batchItems, idlePollMs } = this.#options;
    const signal = this.#abort.signal;
    let failures = 0;
    while (!signal.aborted) {
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
      for (const message of claimed) byJob.set(message.jobId, [...(byJob.get(message.jobId) ?? []), message]);
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

  async #runBatch(jobId: string, messages: readonly WorkMessage[]): Promise<void> {
    const { store, queue, maxAttempts, logger } = this.#options;
    const signal = this.#abort.signal;
    const head = await store.head(jobId);
    const runner = head === undefined ? undefined : this.#runners.get(head.kind);
    if (head === undefined || runner === undefined) {
      // A job that no longer exists (or that this version cannot run) leaves nothing to do.
      for (const message of messages) await queue.ack(message);
      return;
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
    await store.finishIfComplete(jobId);
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
