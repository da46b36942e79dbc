/**
 * What the batch ingest routes (`POST /v1/images`, `POST /v1/triples`) answer once every item has an
 * outcome: per-item results with counts; a request whose every item failed is a 422 in the error
 * envelope (code `all_items_failed`) that still carries each item's reason. Also what the writing routes
 * (ingest, delete, job resume) record in the audit trail: one JSON line per write, naming the key id
 * (never the key), the tenant, the route, the request id and the items.
 */
import type { AuditAction, AuditLog } from "../audit/audit-log.ts";
import type { JobActor, JobAudit } from "../ingest/jobs.ts";
import type { AppContext } from "./context.ts";
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

/**
 * Who a request acts as, for the audit trail: the id of its API key (null while authentication is off,
 * or before the caller is known), `route` (`METHOD /path` as declared) and the request id.
 */
export function auditActor(c: AppContext, route: string): JobActor {
  // Set by the authentication middleware; a request it has not seen acts for no key.
  const principal = c.get("principal") as { keyId: string | null } | undefined;
  return { keyId: principal?.keyId ?? null, route, requestId: c.get("requestId") ?? null };
}

/** A job's audit trail for the request that creates it; none when the app has no audit log. */
export function jobAudit(c: AppContext, route: string, log: AuditLog | undefined): JobAudit | undefined {
  return log === undefined ? undefined : { ...auditActor(c, route), log };
}

/**
 * Records one write in the audit trail, for the request's actor and tenant; nothing when no item was
 * written or the app has no audit log. A failed write of the trail is logged at error level and not
 * thrown: the items are stored (or deleted) already, and the answer should say so.
 */
export async function recordWrite({
  c,
  log,
  action,
  route,
  itemIds,
  detail,
}: {
  c: AppContext;
  log: AuditLog | undefined;
  action: AuditAction;
  route: string;
  itemIds: readonly string[];
  detail?: Record<string, unknown>;
}): Promise<void> {
  if (log === undefined || itemIds.length === 0) return;
  try {
    await log.record({
      action,
      ...auditActor(c, route),
      tenant: c.get("tenant"),
      itemIds,
      ...(detail === undefined ? {} : { detail }),
    });
  } catch (error) {
    c.get("logger").error({ err: error, action, itemIds }, "writing the audit trail failed");
  }
}
