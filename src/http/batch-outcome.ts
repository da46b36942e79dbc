/**
 * What the batch ingest routes (`POST /v1/images`, `POST /v1/triples`) answer once every item has an
 * outcome: per-item results with counts; a request whose every item failed is a 422 in the error
 * envelope (code `all_items_failed`) that still carries each item's reason.
 */
import type { AppContext } from "./context.ts";

/** Counts of a finished batch, in the shape of a job's counters. */
export interface BatchCounts {
  total: number;
  pending: 0;
  done: number;
  skipped: number;
  failed: number;
}

/** Counts the outcomes of a finished batch. */
export function countOutcomes(items: readonly { status: string }[]): BatchCounts {
  const count = (status: string) => items.filter((item) => item.status === status).length;
  return {
    total: items.length,
    pending: 0,
    done: count("stored"),
    skipped: count("skipped"),
    failed: count("failed"),
  };
}

/**
 * Answers a finished batch: 200 with the items and counts, or 422 `all_items_failed` when nothing could
 * be ingested. `noun` names one item ("image", "triple") in the message.
 */
export function answerBatch<Item extends { status: string; error?: { message: string } }>(
  c: AppContext,
  { items, noun }: { items: Item[]; noun: string },
): Response {
  const counts = countOutcomes(items);
  if (counts.failed !== counts.total) return c.json({ items, counts }, 200);
  const first = items[0]?.error?.message ?? "";
  const message =
    counts.total === 1
      ? `The ${noun} was not ingested: ${first}`
      : `None of the ${counts.total} ${noun}s was ingested; each item says why (the first: ${first})`;
  return c.json(
    { error: { code: "all_items_failed", message, requestId: c.get("requestId") }, items, counts },
    422,
  );
}
