/**
 * The durable record of shared ingest jobs in PostgreSQL (`loupe_jobs`, `loupe_job_items`, migration 6):
 * each job's status and spec, and each item's input (an upload's bytes until the item is done), status
 * and outcome. Any replica reads a job from here; workers write each item's outcome here before they
 * acknowledge it on the queue, so an outcome is never lost, and write it only over a `pending` item, so
 * a second worker running the same item (its first worker's lease lapsed) changes nothing. Every change
 * of an item takes the next `seq`, so a follower reads only what changed since it last looked.
 */
import type pg from "pg";
import { withTransaction } from "../db/database.ts";
import { runQuery } from "../db/query-failure.ts";
import type {
  JobCounts,
  JobError,
  JobItem,
  JobItemOutcome,
  JobItemStatus,
  JobSnapshot,
  JobStatus,
} from "./jobs.ts";

/** What workers need of a job besides its items. */
export interface SharedJobSpec {
  /** Record source when an item's metadata names none. */
  defaultSource: string;
  /** Who asked, for the audit lines of the items stored. */
  actor?: { keyId: string | null; route: string; requestId: string | null };
  /** What the job's kind needs besides (an OCR backfill's kinds, a switch's pack); its runner reads it. */
  params?: Record<string, unknown>;
}

/** One item as a job is created with it. */
export interface NewJobItem {
  describe: Record<string, string>;
  /** The input without its bytes (JSON). */
  input: Record<string, unknown>;
  /** An upload's bytes. */
  bytes?: Uint8Array;
  /** Set for an item refused before it was queued: it is stored failed and never queued. */
  error?: JobError;
}

/** One item a job's listing found (see {@link PgJobStore.appendItems}). */
export interface ListedJobItem {
  /** What the item stands for (`<kind>/<record id>`…): an item is added once per key, however often listed. */
  key: string;
  describe: Record<string, string>;
  input: Record<string, unknown>;
  /** The record's id, shown on the item before it runs. */
  id?: string;
}

/** An item a worker is to run. */
export interface JobWorkRow {
  index: number;
  status: JobItemStatus;
  input: Record<string, unknown>;
  bytes: Buffer | null;
}

/** A job's header as workers read it. */
export interface JobHead {
  id: string;
  tenant: string;
  kind: string;
  status: JobStatus;
  spec: SharedJobSpec;
  /** False while a listed job's items are still being found. */
  listed: boolean;
}

interface JobRow {
  id: string;
  tenant: string;
  kind: string;
  status: JobStatus;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  error: JobError | null;
  spec: SharedJobSpec;
  listed: boolean;
  unlisted_skipped: number;
}

interface ItemRow {
  item_index: number;
  seq: string;
  status: JobItemStatus;
  describe: Record<string, string>;
  record_id: string | null;
  error: JobError | null;
  detail: Record<string, unknown> | null;
}

/** Most rows inserted per statement when a job is created. */
const INSERT_BATCH = 500;
/** Upload bytes per insert statement, about (a single larger upload goes alone). */
const INSERT_BATCH_BYTES = 32 * 1024 * 1024;

function toItem(row: ItemRow): JobItem {
  return {
    index: row.item_index,
    describe: row.describe,
    status: row.status,
    ...(row.record_id === null ? {} : { id: row.record_id }),
    ...(row.error === null ? {} : { error: row.error }),
    ...(row.detail === null ? {} : { detail: row.detail }),
  };
}

/** Counts of items by status, with the records a listing found done already. */
function countItems(items: readonly Pick<JobItem, "status">[], unlistedSkipped: number): JobCounts {
  const counts: JobCounts = {
    total: items.length + unlistedSkipped,
    pending: 0,
    done: 0,
    skipped: unlistedSkipped,
    failed: 0,
  };
  for (const item of items) {
    if (item.status === "pending") counts.pending += 1;
    else if (item.status === "stored") counts.done += 1;
    else if (item.status === "skipped") counts.skipped += 1;
    else counts.failed += 1;
  }
  return counts;
}

function snapshotOf(job: JobRow, items: readonly JobItem[], counts: JobCounts): JobSnapshot {
  return {
    id: job.id,
    kind: job.kind,
    status: job.status,
    createdAt: job.created_at.toISOString(),
    ...(job.started_at === null ? {} : { startedAt: job.started_at.toISOString() }),
    ...(job.finished_at === null ? {} : { finishedAt: job.finished_at.toISOString() }),
    counts,
    items: [...items],
    ...(job.error === null ? {} : { error: job.error }),
  };
}

/** See the module comment. The pool is `LOUPE_DATABASE_URL`'s, migrated; the store does not close it. */
export class PgJobStore {
  readonly #pool: pg.Pool;

  constructor({ pool }: { pool: pg.Pool }) {
    this.#pool = pool;
  }

  /** Records a new job, `queued`, with its items in one transaction. */
  async create({
    id,
    tenant,
    kind,
    spec,
    items,
  }: {
    id: string;
    tenant: string;
    kind: string;
    spec: SharedJobSpec;
    items: readonly NewJobItem[];
  }): Promise<void> {
    const pool = this.#pool;
    await withTransaction(pool, async (client) => {
      await runQuery(pool, {
        client,
        what: `Recording job ${id}`,
        text: `insert into loupe_jobs (id, tenant, kind, status, created_at, spec)
               values ($1, $2, $3, 'queued', now(), $4)`,
        values: [id, tenant, kind, JSON.stringify(spec)],
      });
      for (let start = 0; start < items.length; ) {
        // At most INSERT_BATCH rows and about INSERT_BATCH_BYTES of uploads per statement (one row at least).
        let end = start + 1;
        let bytes = items[start]?.bytes?.length ?? 0;
        while (end < items.length && end - start < INSERT_BATCH) {
          bytes += items[end]?.bytes?.length ?? 0;
          if (bytes > INSERT_BATCH_BYTES) break;
          end += 1;
        }
        const slice = items.slice(start, end);
        await runQuery(pool, {
          client,
          what: `Recording the items of job ${id}`,
          text: `insert into loupe_job_items (job_id, item_index, status, describe, input, bytes, error)
                 select $1, t.item_index, t.status, t.describe, t.input, t.bytes, t.error
                 from unnest($2::int[], $3::text[], $4::jsonb[], $5::jsonb[], $6::bytea[], $7::jsonb[])
                   as t (item_index, status, describe, input, bytes, error)`,
          values: [
            id,
            slice.map((_, offset) => start + offset),
            slice.map((item) => (item.error === undefined ? "pending" : "failed")),
            slice.map((item) => JSON.stringify(item.describe)),
            slice.map((item) => JSON.stringify(item.input)),
            slice.map((item) => (item.bytes === undefined ? null : Buffer.from(item.bytes))),
            slice.map((item) => (item.error === undefined ? null : JSON.stringify(item.error))),
          ],
        });
        start = end;
      }
    });
  }

  /** The job with its items and counts, if the tenant owns it. */
  async snapshot({
    id,
    tenant,
  }: {
    id: string;
    tenant: string;
  }): Promise<{ job: JobSnapshot; seq: number } | undefined> {
    const job = await this.#job(id, tenant);
    if (job === undefined) return undefined;
    const { rows } = await runQuery<ItemRow>(this.#pool, {
      what: `Reading the items of job ${id}`,
      text: `select item_index, seq, status, describe, record_id, error, detail
             from loupe_job_items where job_id = $1 order by item_index`,
      values: [id],
    });
    const items = rows.map(toItem);
    const seq = rows.reduce((most, row) => Math.max(most, Number(row.seq)), 0);
    return { job: snapshotOf(job, items, countItems(items, job.unlisted_skipped)), seq };
  }

  /** The job's status and counts now (no items), if the tenant owns it. */
  async progress({
    id,
    tenant,
  }: {
    id: string;
    tenant: string;
  }): Promise<{ status: JobStatus; counts: JobCounts; error?: JobError } | undefined> {
    const job = await this.#job(id, tenant);
    if (job === undefined) return undefined;
    return {
      status: job.status,
      counts: await this.counts(id),
      ...(job.error === null ? {} : { error: job.error }),
    };
  }

  /** Items of the job changed after `seq`, in the order they changed. */
  async changedSince({
    id,
    seq,
  }: {
    id: string;
    seq: number;
  }): Promise<Array<{ seq: number; item: JobItem }>> {
    const { rows } = await runQuery<ItemRow>(this.#pool, {
      what: `Reading the changes of job ${id}`,
      text: `select item_index, seq, status, describe, record_id, error, detail
             from loupe_job_items where job_id = $1 and seq > $2 order by seq limit 5000`,
      values: [id, seq],
    });
    return rows.map((row) => ({ seq: Number(row.seq), item: toItem(row) }));
  }

  /** Item counts of the job (with the records its listing found done already). */
  async counts(id: string): Promise<JobCounts> {
    const { rows } = await runQuery<{ status: JobItemStatus | "unlisted"; count: string }>(this.#pool, {
      what: `Counting the items of job ${id}`,
      text: `select status, count(*) as count from loupe_job_items where job_id = $1 group by status
             union all select 'unlisted', unlisted_skipped from loupe_jobs where id = $1`,
      values: [id],
    });
    const counts: JobCounts = { total: 0, pending: 0, done: 0, skipped: 0, failed: 0 };
    for (const row of rows) {
      const count = Number(row.count);
      counts.total += count;
      if (row.status === "stored") counts.done += count;
      else if (row.status === "unlisted") counts.skipped += count;
      else counts[row.status] += count;
    }
    return counts;
  }

  /** The job's header (any tenant: workers act for the job's own), if it exists. */
  async head(id: string): Promise<JobHead | undefined> {
    const { rows } = await runQuery<JobRow>(this.#pool, {
      what: `Reading job ${id}`,
      text: "select id, tenant, kind, status, spec, listed from loupe_jobs where id = $1",
      values: [id],
    });
    const row = rows[0];
    return row === undefined
      ? undefined
      : {
          id: row.id,
          tenant: row.tenant,
          kind: row.kind,
          status: row.status,
          spec: row.spec,
          listed: row.listed,
        };
  }

  /**
   * Records a job whose items a worker will list (`listed` false, no items yet), unless the tenant has
   * one of that kind queued or running already (for `migrate`, any tenant): then that one is returned,
   * `created` false. The database decides, so two replicas asked at once agree on one job.
   */
  async createListed({
    id,
    tenant,
    kind,
    spec,
  }: {
    id: string;
    tenant: string;
    kind: string;
    spec: SharedJobSpec;
  }): Promise<{ id: string; created: boolean }> {
    for (let tries = 0; ; tries += 1) {
      const inserted = await runQuery<{ id: string }>(this.#pool, {
        what: `Recording job ${id}`,
        text: `insert into loupe_jobs (id, tenant, kind, status, created_at, spec, listed)
               values ($1, $2, $3, 'queued', now(), $4, false)
               on conflict do nothing returning id`,
        values: [id, tenant, kind, JSON.stringify(spec)],
      });
      if (inserted.rows.length > 0) return { id, created: true };
      const active = await this.active({ tenant, kind });
      if (active !== undefined) return { id: active, created: false };
      // The active one ended between the two statements: try again (a few times at most).
      if (tries >= 3) {
        throw new Error(`Job ${id} could not be recorded: another job of kind ${kind} kept being started.`);
      }
    }
  }

  /** The id of the tenant's queued or running job of a listed kind (`migrate`: of any tenant). */
  async active({ tenant, kind }: { tenant: string; kind: string }): Promise<string | undefined> {
    const { rows } = await runQuery<{ id: string }>(this.#pool, {
      what: `Reading the active ${kind} job`,
      text: `select id from loupe_jobs
             where kind = $2 and status in ('queued', 'running') and (kind = 'migrate' or tenant = $1)
             order by created_at limit 1`,
      values: [tenant, kind],
    });
    return rows[0]?.id;
  }

  /**
   * Adds the listed items the job does not have yet (by key), pending, after its last; returns the
   * indexes added. Appends to one job are serialized by a lock on its row, so two listings of the same
   * job (a lapsed lease) add each item once.
   */
  async appendItems({ id, items }: { id: string; items: readonly ListedJobItem[] }): Promise<number[]> {
    if (items.length === 0) return [];
    const pool = this.#pool;
    return withTransaction(pool, async (client) => {
      await runQuery(pool, {
        client,
        what: `Locking job ${id}`,
        text: "select id from loupe_jobs where id = $1 for update",
        values: [id],
      });
      const known = await runQuery<{ item_key: string }>(pool, {
        client,
        what: `Reading the items of job ${id}`,
        text: "select item_key from loupe_job_items where job_id = $1 and item_key = any($2::text[])",
        values: [id, items.map((item) => item.key)],
      });
      const seen = new Set(known.rows.map((row) => row.item_key));
      const fresh = items.filter((item) => {
        if (seen.has(item.key)) return false;
        seen.add(item.key);
        return true;
      });
      if (fresh.length === 0) return [];
      const last = await runQuery<{ last: number | null }>(pool, {
        client,
        what: `Reading the items of job ${id}`,
        text: "select max(item_index) as last from loupe_job_items where job_id = $1",
        values: [id],
      });
      const first = (last.rows[0]?.last ?? -1) + 1;
      const indexes = fresh.map((_, offset) => first + offset);
      await runQuery(pool, {
        client,
        what: `Recording the items of job ${id}`,
        text: `insert into loupe_job_items (job_id, item_index, status, describe, input, record_id, item_key)
               select $1, t.item_index, 'pending', t.describe, t.input, t.record_id, t.item_key
               from unnest($2::int[], $3::jsonb[], $4::jsonb[], $5::text[], $6::text[])
                 as t (item_index, describe, input, record_id, item_key)`,
        values: [
          id,
          indexes,
          fresh.map((item) => JSON.stringify(item.describe)),
          fresh.map((item) => JSON.stringify(item.input)),
          fresh.map((item) => item.id ?? null),
          fresh.map((item) => item.key),
        ],
      });
      return indexes;
    });
  }

  /** Indexes of the job's pending items. */
  async pendingIndexes(id: string): Promise<number[]> {
    const { rows } = await runQuery<{ item_index: number }>(this.#pool, {
      what: `Reading the pending items of job ${id}`,
      text: "select item_index from loupe_job_items where job_id = $1 and status = 'pending' order by item_index",
      values: [id],
    });
    return rows.map((row) => row.item_index);
  }

  /**
   * Records that the job's items are all listed. `total`, when the listing counted the records it
   * considered, makes those it did not list (found done already) the job's unlisted skipped ones.
   */
  async markListed({ id, total }: { id: string; total?: number }): Promise<void> {
    await runQuery(this.#pool, {
      what: `Recording the listing of job ${id}`,
      text: `update loupe_jobs j set listed = true,
               unlisted_skipped = case when $2::int is null then 0
                 else greatest(0, $2::int - (select count(*) from loupe_job_items i where i.job_id = j.id)) end
             where j.id = $1`,
      values: [id, total === undefined ? null : Math.max(0, Math.floor(total))],
    });
  }

  /**
   * Marks the job's ending as queued if it is listed, queued or running, has no pending item and its
   * ending is not queued yet; returns whether this call did (of workers settling the last items at once,
   * one does, and queues the ending). With `undo`, clears the mark (the ending could not be queued).
   */
  async claimEnding(id: string, { undo = false }: { undo?: boolean } = {}): Promise<boolean> {
    const { rowCount } = await runQuery(this.#pool, {
      what: `Ending job ${id}`,
      text: undo
        ? "update loupe_jobs set ending = false where id = $1 and ending"
        : `update loupe_jobs j set ending = true
           where j.id = $1 and j.listed and not j.ending and j.status in ('queued', 'running')
             and not exists (select 1 from loupe_job_items i where i.job_id = j.id and i.status = 'pending')`,
      values: [id],
    });
    return (rowCount ?? 0) > 0;
  }

  /** Whether the job is queued or running, listed, and has no pending item: what its ending waits for. */
  async settled(id: string): Promise<boolean> {
    const { rows } = await runQuery<{ settled: boolean }>(this.#pool, {
      what: `Reading job ${id}`,
      text: `select (j.listed and j.status in ('queued', 'running')
                     and not exists (select 1 from loupe_job_items i where i.job_id = j.id and i.status = 'pending')) as settled
             from loupe_jobs j where j.id = $1`,
      values: [id],
    });
    return rows[0]?.settled === true;
  }

  /** The items at `indexes` with their inputs, counting this as an attempt of the pending ones. */
  async takeWork({ id, indexes }: { id: string; indexes: readonly number[] }): Promise<JobWorkRow[]> {
    const { rows } = await runQuery<{
      item_index: number;
      status: JobItemStatus;
      input: Record<string, unknown>;
      bytes: Buffer | null;
    }>(this.#pool, {
      what: `Reading the work of job ${id}`,
      text: `update loupe_job_items set attempts = attempts + (case when status = 'pending' then 1 else 0 end)
             where job_id = $1 and item_index = any($2::int[])
             returning item_index, status, input, case when status = 'pending' then bytes end as bytes`,
      values: [id, [...indexes]],
    });
    return rows.map((row) => ({
      index: row.item_index,
      status: row.status,
      input: row.input,
      bytes: row.bytes,
    }));
  }

  /** Marks a queued job running, once. */
  async markRunning(id: string): Promise<void> {
    await runQuery(this.#pool, {
      what: `Starting job ${id}`,
      text: `update loupe_jobs set status = 'running', started_at = coalesce(started_at, now())
             where id = $1 and status = 'queued'`,
      values: [id],
    });
  }

  /**
   * Writes an item's outcome over a pending item (and drops its bytes unless it failed, so a resume can
   * run it again); returns whether it was pending.
   */
  async settle({
    id,
    index,
    outcome,
  }: {
    id: string;
    index: number;
    outcome: JobItemOutcome;
  }): Promise<boolean> {
    const { rowCount } = await runQuery(this.#pool, {
      what: `Recording item ${index} of job ${id}`,
      text: `update loupe_job_items
             set status = $3, record_id = coalesce($4, record_id), error = $5, detail = $6,
                 bytes = case when $3 = 'failed' then bytes end,
                 seq = nextval('loupe_job_items_seq')
             where job_id = $1 and item_index = $2 and status = 'pending'`,
      values: [
        id,
        index,
        outcome.status,
        outcome.id ?? null,
        outcome.status === "failed" ? JSON.stringify(outcome.error) : null,
        outcome.detail === undefined ? null : JSON.stringify(outcome.detail),
      ],
    });
    return (rowCount ?? 0) > 0;
  }

  /**
   * Ends the job when it is listed and no item is pending: `failed` when it has items and every one
   * failed, else `done`. Returns whether this call ended it (of workers finishing the last items at once,
   * one does).
   */
  async finishIfComplete(id: string): Promise<boolean> {
    const anyOk = `(exists (select 1 from loupe_job_items i where i.job_id = j.id and i.status <> 'failed')
                    or not exists (select 1 from loupe_job_items i where i.job_id = j.id))`;
    const { rowCount } = await runQuery(this.#pool, {
      what: `Ending job ${id}`,
      text: `update loupe_jobs j
             set status = case when ${anyOk} then 'done' else 'failed' end,
                 finished_at = now(),
                 error = case when ${anyOk}
                              then null else '{"code":"all_items_failed","message":"Every item of the job failed; each says why."}'::jsonb end
             where j.id = $1 and j.status in ('queued', 'running') and j.listed
               and not exists (select 1 from loupe_job_items i where i.job_id = j.id and i.status = 'pending')`,
      values: [id],
    });
    return (rowCount ?? 0) > 0;
  }

  /** Fails the job as a whole (its pending items stay pending, to resume). */
  async fail({ id, error }: { id: string; error: JobError }): Promise<void> {
    await runQuery(this.#pool, {
      what: `Failing job ${id}`,
      text: `update loupe_jobs set status = 'failed', finished_at = now(), error = $2
             where id = $1 and status in ('queued', 'running')`,
      values: [id, JSON.stringify(error)],
    });
  }

  /**
   * Queues an ended job again: its failed items become pending (their inputs are kept while they may run
   * again). With `relist` (a listed job) it is also marked unlisted, to be listed again, whatever its items.
   * Returns the indexes to queue, or `undefined` when there is nothing to resume or the job is queued or
   * running.
   */
  async reopen({ id, relist = false }: { id: string; relist?: boolean }): Promise<number[] | undefined> {
    return withTransaction(this.#pool, async (client) => {
      const reopened = await runQuery(this.#pool, {
        client,
        what: `Resuming job ${id}`,
        text: `update loupe_jobs set status = 'queued', finished_at = null, error = null, ending = false,
                 listed = listed and not $2
               where id = $1 and status in ('done', 'failed')
                 and ($2 or exists (select 1 from loupe_job_items i where i.job_id = $1 and i.status in ('pending', 'failed')))`,
        values: [id, relist],
      });
      if ((reopened.rowCount ?? 0) === 0) return undefined;
      const { rows } = await runQuery<{ item_index: number }>(this.#pool, {
        client,
        what: `Resuming the items of job ${id}`,
        text: `update loupe_job_items set status = 'pending', error = null, attempts = 0,
                 seq = nextval('loupe_job_items_seq')
               where job_id = $1 and status in ('pending', 'failed')
               returning item_index`,
        values: [id],
      });
      return rows.map((row) => row.item_index).sort((a, b) => a - b);
    });
  }

  async #job(id: string, tenant: string): Promise<JobRow | undefined> {
    const { rows } = await runQuery<JobRow>(this.#pool, {
      what: `Reading job ${id}`,
      text: `select id, tenant, kind, status, created_at, started_at, finished_at, error, spec, listed,
                    unlisted_skipped
             from loupe_jobs where id = $1 and tenant = $2`,
      values: [id, tenant],
    });
    return rows[0];
  }
}
