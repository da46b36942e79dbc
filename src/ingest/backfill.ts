/**
 * What the OCR and region backfills share: each fills in something items were stored without (their
 * text, their objects), finds the items left by a marker in their metadata, and works an item at a time.
 * {@link Backfill} is that shape; {@link backfillRunner} runs one as a job in this process, and
 * `shared-listed-jobs.ts` runs one on the shared queue.
 */
import type { FilterSpec, StoredRecord, VectorStore } from "../store/index.ts";
import type { JobItemOutcome, JobRunner } from "./jobs.ts";

/** One stored item a backfill works on. */
export interface BackfillItem<Kind extends string> {
  kind: Kind;
  id: string;
}

/** A backfill: see the module comment. */
export interface Backfill<Kind extends string> {
  /** Every kind it works on, and so the ones a job of it may name. */
  readonly kinds: readonly Kind[];
  /** How many items of `kinds` the tenant has, done or not. */
  count(request: { tenant: string; kinds: readonly Kind[] }): Promise<number>;
  /** The tenant's items of `kind` still to do, a page at a time; stops early when `signal` is aborted. */
  unread(request: { tenant: string; kind: Kind; signal?: AbortSignal }): AsyncGenerator<StoredRecord[]>;
  /**
   * Does one item: `stored` when written, `skipped` when it was done already or is gone, `failed` when
   * its media cannot be read.
   *
   * @throws what the store threw when it failed as a whole.
   */
  read(request: {
    tenant: string;
    item: BackfillItem<Kind>;
    record?: StoredRecord;
    signal: AbortSignal;
  }): Promise<JobItemOutcome>;
}

/** How many items of `kinds` the tenant has (a backfill's total, done or not). */
export async function countKinds({
  store,
  tenant,
  kinds,
}: {
  store: VectorStore;
  tenant: string;
  kinds: readonly Parameters<VectorStore["count"]>[0]["kind"][];
}): Promise<number> {
  let total = 0;
  for (const kind of kinds) total += await store.count({ kind, tenant });
  return total;
}

/**
 * Pages of the tenant's items of `kind` that match `filter` (the backfill's "not done" marker), ordered
 * by id; an item done meanwhile drops out of later pages.
 */
export async function* listPages({
  store,
  tenant,
  kind,
  filter,
  pageSize,
  signal,
}: {
  store: VectorStore;
  tenant: string;
  kind: BackfillItem<string>["kind"] & Parameters<VectorStore["list"]>[0]["kind"];
  filter: FilterSpec;
  pageSize: number;
  signal?: AbortSignal;
}): AsyncGenerator<StoredRecord[]> {
  let after: string | undefined;
  do {
    if (signal?.aborted === true) return;
    const page = await store.list({
      kind,
      tenant,
      filter,
      limit: pageSize,
      ...(after === undefined ? {} : { after }),
    });
    if (page.rows.length > 0) yield page.rows;
    after = page.nextAfter;
  } while (after !== undefined);
}

/**
 * The runner of one backfill job in this process, over the tenant's items of `kinds`: it lists the items
 * still to do page by page, adding each as a job item and doing it at once; items done already are
 * counted as skipped without being listed. A resume does its failed items again, then finishes the
 * listing if an earlier run stopped before the end. A shutdown aborts the item in flight; it stays
 * pending and the job ends as shut down.
 */
export function backfillRunner<Kind extends string>(
  backfill: Backfill<Kind>,
  { tenant, kinds = backfill.kinds }: { tenant: string; kinds?: readonly Kind[] },
): JobRunner<BackfillItem<Kind>> {
  const indexByKey = new Map<string, number>();
  let listed = false;
  const keyOf = ({ kind, id }: BackfillItem<Kind>) => `${kind}/${id}`;
  const run: JobRunner<BackfillItem<Kind>> = async ({ items, signal, report, add, setUnlistedSkipped }) => {
    const retried = new Set<string>();
    for (const { index, input } of items) {
      if (signal.aborted) return;
      retried.add(keyOf(input));
      report(index, await backfill.read({ tenant, item: input, signal }));
    }
    if (listed) return;
    let total = 0;
    for (const kind of kinds) {
      total += await backfill.count({ tenant, kinds: [kind] });
      for await (const records of backfill.unread({ tenant, kind, signal })) {
        for (const record of records) {
          if (signal.aborted) return;
          const item = { kind, id: record.id };
          const key = keyOf(item);
          if (retried.has(key)) continue;
          let index = indexByKey.get(key);
          if (index === undefined) {
            index = add({ describe: { kind }, input: item, id: record.id });
            indexByKey.set(key, index);
          }
          report(index, await backfill.read({ tenant, item, record, signal }));
        }
      }
      if (signal.aborted) return;
      setUnlistedSkipped(total - indexByKey.size);
    }
    listed = true;
  };
  return async (context) => {
    try {
      await run(context);
    } catch (error) {
      if (!context.signal.aborted) throw error;
    }
  };
}
