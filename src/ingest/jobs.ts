/**
 * The in-process job registry. An ingest that should not hold its HTTP request open (a large batch,
 * `?async=true`) runs as a job: the registry keeps its items with their outcomes and counters, runs
 * a bounded number of jobs at once, streams progress events (for SSE), and can resume a finished job,
 * re-running the items that were not done. Jobs live in memory: a restart forgets them, but ingests are
 * idempotent (deterministic ids), so sending the same items again only does what is missing.
 */
import { randomBytes } from "node:crypto";
import type { AuditLog } from "../audit/audit-log.ts";
import { AppError, ConflictError, NotFoundError } from "../errors.ts";
import type { Logger } from "../logger.ts";

/** Where a job is: `queued` → `running` → `done` or `failed` (and back to `queued` on resume). */
export type JobStatus = "queued" | "running" | "done" | "failed";

/** Where an item is. `stored`: written now; `skipped`: already stored, nothing to do. */
export type JobItemStatus = "pending" | "stored" | "skipped" | "failed";

/** Why an item or a job failed, as shown to the caller. */
export interface JobError {
  code: string;
  message: string;
  /** The input field at fault, when one is (`metadata.title`, `question`). */
  field?: string;
}

/** Outcome of one item, reported by the job's runner. */
export type JobItemOutcome =
  | { status: "stored" | "skipped"; id: string; detail?: Record<string, unknown> }
  | { status: "failed"; error: JobError; id?: string; detail?: Record<string, unknown> };

/** One item of a job as callers see it. */
export interface JobItem {
  /** Position in the request, from 0. */
  index: number;
  /** What the item is, for people: `{ filename }`, `{ url }`, `{ file }`… */
  describe: Record<string, string>;
  status: JobItemStatus;
  /** Record id, once known. */
  id?: string;
  error?: JobError;
  /** Extra facts the runner reported (e.g. segment counts of a video). */
  detail?: Record<string, unknown>;
}

/** Item counters. `done` counts items stored by the job; `skipped` those that were already stored. */
export interface JobCounts {
  total: number;
  pending: number;
  done: number;
  skipped: number;
  failed: number;
}

/** A job as callers see it. Times are ISO 8601. */
export interface JobSnapshot {
  id: string;
  /** What the job ingests, e.g. `images`, `videos`, `triples`. */
  kind: string;
  status: JobStatus;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  counts: JobCounts;
  items: JobItem[];
  /** Why the job failed, when it did as a whole (not item by item). */
  error?: JobError;
  /**
   * Progress by part, for jobs whose work is known before its items are listed (a pack migration: rows
   * of each record kind done of the total); absent for the others.
   */
  progress?: Record<string, JobPartProgress>;
}

/** Progress of one part of a job (see {@link JobSnapshot.progress}). */
export interface JobPartProgress {
  done: number;
  total: number;
}

/** A progress event of a job's event stream. */
export type JobEvent =
  | { type: "progress"; data: { id: string; status: JobStatus; counts: JobCounts } }
  | { type: "item"; data: { id: string; item: JobItem } }
  | { type: "done"; data: { id: string; status: JobStatus; counts: JobCounts } }
  | { type: "error"; data: { id: string; status: JobStatus; counts: JobCounts; error: JobError } };

/** An item handed to a runner: its position and its input. */
export interface JobWorkItem<Input> {
  index: number;
  input: Input;
}

/** What a runner gets: the items to process (on resume, only those not done). */
export interface JobRunContext<Input> {
  items: readonly JobWorkItem<Input>[];
  /** Aborted when the registry closes (shutdown); stop soon and leave the rest pending. */
  signal: AbortSignal;
  /** Reports the outcome of the item at `index`; call once per item. */
  report(index: number, outcome: JobItemOutcome): void;
  /**
   * Adds an item the run found as it went (a backfill lists its work while it runs), pending, and returns
   * its index; report its outcome like any other. Its input is kept for a resume.
   */
  add(item: { describe: Record<string, string>; input: Input; id?: string }): number;
  /**
   * Sets how many items needed no work without being listed one by one (a backfill's records already
   * done): counted in `total` and `skipped`, never in `items`.
   */
  setUnlistedSkipped(count: number): void;
  /** Sets the job's progress by part (see {@link JobSnapshot.progress}), replacing the last. */
  setProgress(progress: Record<string, JobPartProgress>): void;
}

/**
 * Processes a job's items. It reports each item's outcome as it goes; a throw fails the job as a
 * whole (items not reported stay pending and can be resumed).
 */
export type JobRunner<Input> = (context: JobRunContext<Input>) => Promise<void>;

/** Who asked for a job's work, as the audit trail records it (the request is long answered by then). */
export interface JobActor {
  /** Id of the API key the request carried (never the key); null when authentication is off. */
  keyId: string | null;
  /** `METHOD /path` of the route that created or resumed the job. */
  route: string;
  requestId: string | null;
}

/** Where a job records the items it stores, and on whose behalf. */
export interface JobAudit extends JobActor {
  log: AuditLog;
}

/** Arguments of {@link JobRegistry.create}. */
export interface CreateJobRequest<Input> {
  /** The caller's tenant: only it can see the job. */
  tenant: string;
  kind: string;
  items: readonly { describe: Record<string, string>; input: Input }[];
  run: JobRunner<Input>;
  /**
   * The audit trail: items the job stores are recorded as `ingest` lines for this actor (at most
   * {@link AUDIT_BATCH} ids a line, and when a run ends); a resume is recorded and acts as its resumer.
   */
  audit?: JobAudit;
}

/** Most item ids in one audit line of a job; a run writes a line each time this many are stored. */
export const AUDIT_BATCH = 100;

/** Options of {@link JobRegistry}. */
export interface JobRegistryOptions {
  /** Jobs running at once; others wait, queued. */
  concurrency?: number;
  /** How long a finished job stays visible, in milliseconds. */
  retentionMs?: number;
  /** Most jobs kept; the oldest finished ones are forgotten first. */
  maxJobs?: number;
  logger?: Logger;
}

const TERMINAL: ReadonlySet<JobStatus> = new Set(["done", "failed"]);

const shuttingDown: JobError = {
  code: "shutting_down",
  message: "The server shut down before the job ended; send the items again (stored ones are skipped).",
};

/**
 * The caller-facing form of an error: an {@link AppError} keeps its code and message (written for the
 * caller); anything else becomes a fixed message, its details left to the log.
 */
export function toJobError(error: unknown): JobError {
  if (error instanceof AppError) {
    const field = error.context.field;
    return {
      code: error.code,
      message: error.message,
      ...(typeof field === "string" && field.length > 0 ? { field } : {}),
    };
  }
  return { code: "internal_error", message: "The job failed unexpectedly; the server log has the details." };
}

class Job<Input> {
  readonly id: string;
  readonly tenant: string;
  readonly kind: string;
  readonly createdAt = new Date();
  startedAt: Date | undefined;
  finishedAt: Date | undefined;
  status: JobStatus = "queued";
  error: JobError | undefined;
  readonly items: JobItem[];
  /** Items counted as skipped without being listed (see {@link JobRunContext.setUnlistedSkipped}). */
  unlistedSkipped = 0;
  /** See {@link JobSnapshot.progress}. */
  progress: Record<string, JobPartProgress> | undefined;
  /** Inputs of the items still to do; those of stored and skipped items are dropped (never re-run). */
  readonly inputs: Map<number, Input>;
  readonly run: JobRunner<Input>;
  /** The audit trail and who the next run acts for (the creator, then whoever resumed it). */
  audit: JobAudit | undefined;
  readonly #listeners = new Set<(event: JobEvent) => void>();
  /** Settles when the current run ends. */
  finished: Promise<void> = Promise.resolve();
  /** Settles {@link Job.finished}. */
  release: () => void = () => undefined;

  constructor(id: string, request: CreateJobRequest<Input>) {
    this.id = id;
    this.tenant = request.tenant;
    this.kind = request.kind;
    this.run = request.run;
    this.audit = request.audit;
    this.items = request.items.map((item, index) => ({
      index,
      describe: { ...item.describe },
      status: "pending",
    }));
    this.inputs = new Map(request.items.map((item, index) => [index, item.input]));
  }

  get terminal(): boolean {
    return TERMINAL.has(this.status);
  }

  counts(): JobCounts {
    const counts: JobCounts = {
      total: this.items.length + this.unlistedSkipped,
      pending: 0,
      done: 0,
      skipped: this.unlistedSkipped,
      failed: 0,
    };
    for (const item of this.items) {
      if (item.status === "pending") counts.pending += 1;
      else if (item.status === "stored") counts.done += 1;
      else if (item.status === "skipped") counts.skipped += 1;
      else counts.failed += 1;
    }
    return counts;
  }

  snapshot(): JobSnapshot {
    return {
      id: this.id,
      kind: this.kind,
      status: this.status,
      createdAt: this.createdAt.toISOString(),
      ...(this.startedAt === undefined ? {} : { startedAt: this.startedAt.toISOString() }),
      ...(this.finishedAt === undefined ? {} : { finishedAt: this.finishedAt.toISOString() }),
      counts: this.counts(),
      items: this.items.map((item) => ({ ...item, describe: { ...item.describe } })),
      ...(this.error === undefined ? {} : { error: this.error }),
      ...(this.progress === undefined
        ? {}
        : {
            progress: Object.fromEntries(Object.entries(this.progress).map(([part, p]) => [part, { ...p }])),
          }),
    };
  }

  progressEvent(): JobEvent {
    return { type: "progress", data: { id: this.id, status: this.status, counts: this.counts() } };
  }

  terminalEvent(): JobEvent {
    const data = { id: this.id, status: this.status, counts: this.counts() };
    return this.error === undefined || this.status !== "failed"
      ? { type: "done", data }
      : { type: "error", data: { ...data, error: this.error } };
  }

  emit(event: JobEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  subscribe(listener: (event: JobEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/**
 * The registry of ingest jobs. Build one in `main.ts`, share it, and {@link JobRegistry.close} it at
 * shutdown (running jobs are aborted; their unfinished items stay pending).
 */
export class JobRegistry {
  readonly #jobs = new Map<string, Job<unknown>>();
  readonly #queue: Job<unknown>[] = [];
  readonly #concurrency: number;
  readonly #retentionMs: number;
  readonly #maxJobs: number;
  readonly #logger: Logger | undefined;
  readonly #abort = new AbortController();
  #running = 0;

  constructor({ concurrency = 1, retentionMs = 3_600_000, maxJobs = 1000, logger }: JobRegistryOptions = {}) {
    this.#concurrency = Math.max(1, Math.floor(concurrency));
    this.#retentionMs = retentionMs;
    this.#maxJobs = Math.max(1, Math.floor(maxJobs));
    this.#logger = logger;
  }

  /** Registers a job and queues it to run. Returns its snapshot (status `queued` or `running`). */
  create<Input>(request: CreateJobRequest<Input>): JobSnapshot {
    if (this.#abort.signal.aborted) {
      throw new AppError(
        "shutting_down",
        503,
        "The server is shutting down and takes no new jobs; retry later.",
      );
    }
    this.#evict();
    if (this.#jobs.size >= this.#maxJobs) {
      throw new AppError(
        "too_many_jobs",
        429,
        `${this.#jobs.size} jobs are queued or running, the most this server keeps; wait for some to end and retry.`,
      );
    }
    const job = new Job<Input>(`job_${randomBytes(12).toString("hex")}`, request);
    this.#jobs.set(job.id, job as Job<unknown>);
    this.#enqueue(job as Job<unknown>);
    return job.snapshot();
  }

  /**
   * The job with this id, if the tenant owns it.
   *
   * @throws {NotFoundError} when there is none (or it belongs to another tenant, or was forgotten).
   */
  get({ id, tenant }: { id: string; tenant: string }): JobSnapshot {
    return this.#find(id, tenant).snapshot();
  }

  /** The tenant's job of `kind` that is queued or running, if there is one (the oldest). */
  active({ tenant, kind }: { tenant: string; kind: string }): JobSnapshot | undefined {
    for (const job of this.#jobs.values()) {
      if (job.tenant === tenant && job.kind === kind && !job.terminal) return job.snapshot();
    }
    return undefined;
  }

  /** Waits until the job's current run ends, then returns its snapshot. */
  async wait({ id, tenant }: { id: string; tenant: string }): Promise<JobSnapshot> {
    const job = this.#find(id, tenant);
    while (!job.terminal) await job.finished;
    return job.snapshot();
  }

  /**
   * Queues a finished job again to run the items that are pending or failed. A job with nothing left
   * to do is returned as it is. A resume of a job with an audit trail is recorded (`job.resume`) before
   * it is queued.
   *
   * @throws {ConflictError} while the job is queued or running.
   */
  async resume({
    id,
    tenant,
    actor,
  }: {
    id: string;
    tenant: string;
    /** Who resumes it: recorded in the audit trail, and the actor of the items the new run stores. */
    actor?: JobActor;
  }): Promise<JobSnapshot> {
    const job = this.#find(id, tenant);
    if (!job.terminal) {
      throw new ConflictError(
        `Job ${id} is ${job.status}; only a job that is done or failed can be resumed. Wait for it to end.`,
        { context: { id, status: job.status } },
      );
    }
    const redo = job.items.filter((item) => item.status === "pending" || item.status === "failed");
    if (redo.length === 0) return job.snapshot();
    if (job.audit !== undefined && actor !== undefined) {
      job.audit = { ...actor, log: job.audit.log };
      await this.#record(job, job.audit, "job.resume", [job.id], {
        jobId: job.id,
        kind: job.kind,
        items: redo.length,
      });
    }
    if (!job.terminal) return job.snapshot();
    for (const item of redo) {
      item.status = "pending";
      delete item.error;
    }
    job.error = undefined;
    job.finishedAt = undefined;
    job.status = "queued";
    this.#enqueue(job);
    return job.snapshot();
  }

  /**
   * The job's events: a `progress` event with the counts now, then `item` and `progress` events as items
   * finish, ending with `done` (or `error` when the job failed as a whole). A job that has already ended
   * yields its `progress` and final event at once.
   */
  async *events({
    id,
    tenant,
    signal,
  }: {
    id: string;
    tenant: string;
    signal?: AbortSignal;
  }): AsyncGenerator<JobEvent> {
    const job = this.#find(id, tenant);
    const queue: JobEvent[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = job.subscribe((event) => {
      queue.push(event);
      wake?.();
    });
    const onAbort = () => wake?.();
    signal?.addEventListener("abort", onAbort);
    try {
      const endedAlready = job.terminal;
      yield job.progressEvent();
      if (endedAlready) {
        yield job.terminalEvent();
        return;
      }
      while (signal?.aborted !== true) {
        const event = queue.shift();
        if (event === undefined) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        yield event;
        if (event.type === "done" || event.type === "error") return;
      }
    } finally {
      unsubscribe();
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Aborts running jobs, forgets queued ones, and waits for the running ones to stop. */
  async close(): Promise<void> {
    this.#abort.abort();
    const running = [...this.#jobs.values()].filter((job) => job.status === "running");
    for (const job of this.#queue.splice(0)) {
      job.status = "failed";
      job.error = shuttingDown;
      job.finishedAt = new Date();
      job.emit(job.terminalEvent());
      job.release();
    }
    await Promise.all(running.map((job) => job.finished));
  }

  #find(id: string, tenant: string): Job<unknown> {
    const job = this.#jobs.get(id);
    if (job === undefined || job.tenant !== tenant) {
      throw new NotFoundError(
        `No job ${JSON.stringify(id.slice(0, 80))}. Jobs are kept for ${Math.round(this.#retentionMs / 60_000)} minutes after they end, in the server that ran them.`,
        { context: { id: id.slice(0, 80) } },
      );
    }
    return job;
  }

  #enqueue(job: Job<unknown>): void {
    job.finished = new Promise<void>((resolve) => {
      job.release = resolve;
    });
    this.#queue.push(job);
    this.#pump();
  }

  #pump(): void {
    while (this.#running < this.#concurrency) {
      const next = this.#queue.shift();
      if (next === undefined) return;
      this.#running += 1;
      void this.#execute(next).finally(() => {
        this.#running -= 1;
        next.release();
        this.#pump();
      });
    }
  }

  async #execute(job: Job<unknown>): Promise<void> {
    job.status = "running";
    job.startedAt = new Date();
    job.emit(job.progressEvent());
    const work = job.items
      .filter((item) => item.status === "pending" && job.inputs.has(item.index))
      .map((item) => ({ index: item.index, input: job.inputs.get(item.index) }));
    const reported = new Set<number>();
    // Stored ids waiting for their audit line; written in batches as the run goes, so a crash loses few.
    // The actor is the one the run started for, whoever resumes the job later.
    const audit = job.audit;
    let unaudited: string[] = [];
    let auditing: Promise<void> = Promise.resolve();
    const flushAudit = () => {
      if (unaudited.length === 0) return;
      const itemIds = unaudited;
      unaudited = [];
      auditing = auditing.then(() =>
        this.#record(job, audit, "ingest", itemIds, {
          jobId: job.id,
          kind: job.kind,
          stored: itemIds.length,
        }),
      );
    };
    const report = (index: number, outcome: JobItemOutcome) => {
      const item = job.items[index];
      if (item === undefined || reported.has(index)) return;
      reported.add(index);
      if (outcome.status === "stored" && audit !== undefined) {
        unaudited.push(outcome.id);
        if (unaudited.length >= AUDIT_BATCH) flushAudit();
      }
      item.status = outcome.status;
      if (outcome.id !== undefined) item.id = outcome.id;
      if (outcome.status === "failed") {
        const { code, message, field } = outcome.error;
        item.error = { code, message, ...(field === undefined ? {} : { field }) };
      }
      if (outcome.detail !== undefined) item.detail = outcome.detail;
      // Uploaded bytes can be large; keep them only while the item may still run again.
      if (outcome.status !== "failed") job.inputs.delete(index);
      job.emit({ type: "item", data: { id: job.id, item: { ...item } } });
      job.emit(job.progressEvent());
    };
    const add = ({
      describe,
      input,
      id,
    }: {
      describe: Record<string, string>;
      input: unknown;
      id?: string;
    }) => {
      const index = job.items.length;
      job.items.push({
        index,
        describe: { ...describe },
        status: "pending",
        ...(id === undefined ? {} : { id }),
      });
      job.inputs.set(index, input);
      job.emit(job.progressEvent());
      return index;
    };
    const setUnlistedSkipped = (count: number) => {
      job.unlistedSkipped = Math.max(0, Math.floor(count));
      job.emit(job.progressEvent());
    };
    const setProgress = (progress: Record<string, JobPartProgress>) => {
      job.progress = Object.fromEntries(
        Object.entries(progress).map(([part, { done, total }]) => [part, { done, total }]),
      );
    };
    try {
      await job.run({
        items: work,
        signal: this.#abort.signal,
        report,
        add,
        setUnlistedSkipped,
        setProgress,
      });
      if (this.#abort.signal.aborted && job.items.some((item) => item.status === "pending")) {
        throw new AppError("shutting_down", 503, shuttingDown.message);
      }
      const counts = job.counts();
      job.status = counts.total > 0 && counts.failed === counts.total ? "failed" : "done";
    } catch (error) {
      job.status = "failed";
      job.error = toJobError(error);
      this.#logger?.warn({ err: error, jobId: job.id }, "job failed");
    }
    flushAudit();
    await auditing;
    job.finishedAt = new Date();
    job.emit(job.terminalEvent());
    this.#logger?.info(
      { jobId: job.id, kind: job.kind, status: job.status, counts: job.counts() },
      "job ended",
    );
  }

  /**
   * Writes one audit line for the job's actor. A failed write is logged, not thrown: the items are
   * stored already, and the job's outcome should say so.
   */
  async #record(
    job: Job<unknown>,
    audit: JobAudit | undefined,
    action: "ingest" | "job.resume",
    itemIds: readonly string[],
    detail: Record<string, unknown>,
  ): Promise<void> {
    if (audit === undefined) return;
    try {
      await audit.log.record({
        action,
        keyId: audit.keyId,
        tenant: job.tenant,
        route: audit.route,
        requestId: audit.requestId,
        itemIds,
        detail,
      });
    } catch (error) {
      this.#logger?.error({ err: error, jobId: job.id, action, itemIds }, "writing the audit trail failed");
    }
  }

  /** Forgets finished jobs past their retention, then the oldest finished ones beyond the cap. */
  #evict(): void {
    const now = Date.now();
    for (const [id, job] of this.#jobs) {
      if (
        job.terminal &&
        job.finishedAt !== undefined &&
        now - job.finishedAt.getTime() > this.#retentionMs
      ) {
        this.#jobs.delete(id);
      }
    }
    if (this.#jobs.size < this.#maxJobs) return;
    const finished = [...this.#jobs.values()]
      .filter((job) => job.terminal)
      .sort((a, b) => (a.finishedAt?.getTime() ?? 0) - (b.finishedAt?.getTime() ?? 0));
    for (const job of finished) {
      if (this.#jobs.size < this.#maxJobs) break;
      this.#jobs.delete(job.id);
    }
  }
}

/** Builds the job registry. */
export function createJobRegistry(options: JobRegistryOptions = {}): JobRegistry {
  return new JobRegistry(options);
}
