/**
 * What the batch ingest routes (`POST /v1/images`, `POST /v1/triples`) answer once every item has an
 * outcome: per-item results with counts; a request whose every item failed is a 422 in the error
 * envelope (code `all_items_failed`) that still carries each item's reason.
 */
import { type ErrorEnvelope, errorEnvelope } from "./errors.ts";

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

/** The answer to a finished batch: 200 with the items and counts, or 422 when nothing was ingested. */
export type BatchAnswer<Item> =
  | { status: 200; body: { items: Item[]; counts: BatchCounts } }
  | { status: 422; body: ErrorEnvelope & { items: Item[]; counts: BatchCounts } };

/**
 * Answers a finished batch: 200 with the items and counts, or 422 `all_items_failed` when nothing could
 * be ingested. `noun` names one item ("image", "triple") in the message.
 */
export function answerBatch<Item extends { status: string; error?: { message: string } }>({
  items,
  noun,
  requestId,
}: {
  items: Item[];
  noun: string;
  requestId: string;
}): BatchAnswer<Item> {
  const counts = countOutcomes(items);
  if (counts.failed !== counts.total) return { status: 200, body: { items, counts } };
  const first = items[0]?.error?.message ?? "";
  const message =
    counts.total === 1
      ? `The ${noun} was not ingested: ${first}`
      : `None of the ${counts.total} ${noun}s was ingested; each item says why (the first: ${first})`;
  return {
    status: 422,
    body: { ...errorEnvelope({ code: "all_items_failed", message, requestId }), items, counts },
  };
}
