/**
 * The PostgreSQL adapter of the {@link FeedbackStore} port, for several Loupe processes sharing feedback
 * and its proposed triples (`LOUPE_DATABASE_URL`). Tables from migration 3:
 *
 * - `loupe_feedback`: one row per feedback, appended only; tenant, time, rating and proposal are
 *   columns, the whole entry is jsonb. Recording an id again (a retried write) keeps the first.
 * - `loupe_feedback_proposals`: one row per proposal, keyed by tenant and id, status a column.
 *
 * Saving a proposal locks its row in a transaction and applies {@link decideSave}, so two replicas
 * deciding one proposal at once leave one decision: the first approval or rejection stays, a second of
 * the same kind changes nothing, one of the other kind is refused with a {@link ConflictError}, and a
 * proposal made again while one exists keeps the first. A new pending proposal under a cap
 * (`maxPending`) is counted and inserted under a transaction-scoped advisory lock of its tenant, so
 * replicas proposing at once never pass the cap together.
 */
import type pg from "pg";
import { withTransaction } from "../db/database.ts";
import { runQuery } from "../db/query-failure.ts";
import { ValidationError } from "../errors.ts";
import {
  decideSave,
  type FeedbackEntry,
  type FeedbackStore,
  PROPOSAL_ID_PATTERN,
  type Proposal,
  type ProposalSave,
} from "./feedback-store.ts";

/** Options of {@link createPgFeedbackStore}. */
export interface PgFeedbackStoreOptions {
  /** The pool of `LOUPE_DATABASE_URL`, migrated; the store does not close it. */
  pool: pg.Pool;
}

/** The feedback store over the `loupe_feedback` and `loupe_feedback_proposals` tables of a migrated database. */
export function createPgFeedbackStore({ pool }: PgFeedbackStoreOptions): FeedbackStore {
  const writing = new Set<Promise<unknown>>();
  /** Runs a write, remembered until it settles so that `close()` waits for it. */
  const tracked = async <Result>(write: Promise<Result>): Promise<Result> => {
    writing.add(write);
    try {
      return await write;
    } finally {
      writing.delete(write);
    }
  };

  return {
    async record(entry: FeedbackEntry) {
      await tracked(
        runQuery(pool, {
          what: `Recording feedback ${entry.id}`,
          text: `insert into loupe_feedback (id, tenant, time, rating, proposal_id, entry)
                 values ($1, $2, $3, $4, $5, $6)
                 on conflict (id) do nothing`,
          values: [
            entry.id,
            entry.tenant,
            entry.time,
            entry.rating,
            entry.proposalId ?? null,
            JSON.stringify(entry),
          ],
        }),
      );
    },

    async saveProposal(proposal, { maxPending } = {}) {
      if (!PROPOSAL_ID_PATTERN.test(proposal.id)) {
        throw new ValidationError(
          `Not a proposal id: ${JSON.stringify(proposal.id.slice(0, 80))}; ids are fbp_ and 32 hex digits.`,
        );
      }
      const what = `Saving proposal ${proposal.id}`;
      // Only a new pending proposal counts against the cap; a decision only lowers the count.
      const cap = proposal.status === "pending" ? maxPending : undefined;
      return tracked(
        withTransaction(pool, async (client): Promise<ProposalSave> => {
          if (cap !== undefined) {
            // Held until commit: the next replica's count, taken after, sees this insert.
            await runQuery(pool, {
              client,
              what,
              text: "select pg_advisory_xact_lock(hashtext('loupe_feedback_proposals'), hashtext($1))",
              values: [proposal.tenant],
            });
          }
          const found = await runQuery<{ proposal: Proposal }>(pool, {
            client,
            what,
            text: "select proposal from loupe_feedback_proposals where tenant = $1 and id = $2 for update",
            values: [proposal.tenant, proposal.id],
          });
          const existing = found.rows[0]?.proposal;
          if (existing !== undefined && decideSave({ existing, next: proposal }) === "keep") {
            return { outcome: "kept" };
          }
          if (cap !== undefined && existing === undefined) {
            const counted = await runQuery<{ pending: number }>(pool, {
              client,
              what,
              text: "select count(*)::int as pending from loupe_feedback_proposals where tenant = $1 and status = 'pending'",
              values: [proposal.tenant],
            });
            const pending = counted.rows[0]?.pending ?? 0;
            if (pending >= cap) return { outcome: "refused", pending };
          }
          await runQuery(pool, {
            client,
            what,
            // A proposal made by two replicas at once: the row neither saw is inserted once, the first kept.
            text: `insert into loupe_feedback_proposals (tenant, id, status, created_at, proposal)
                   values ($1, $2, $3, $4, $5)
                   on conflict (tenant, id) do update
                     set status = excluded.status, created_at = excluded.created_at, proposal = excluded.proposal
                     where $6`,
            values: [
              proposal.tenant,
              proposal.id,
              proposal.status,
              proposal.createdAt,
              JSON.stringify(proposal),
              existing !== undefined,
            ],
          });
          return { outcome: "saved" };
        }),
      );
    },

    async getProposal({ tenant, id }) {
      if (!PROPOSAL_ID_PATTERN.test(id)) return undefined;
      const found = await runQuery<{ proposal: Proposal }>(pool, {
        what: `Reading proposal ${id}`,
        text: "select proposal from loupe_feedback_proposals where tenant = $1 and id = $2",
        values: [tenant, id],
      });
      return found.rows[0]?.proposal;
    },

    async listProposals({ tenant }) {
      const found = await runQuery<{ proposal: Proposal }>(pool, {
        what: `Listing the proposals of tenant ${tenant}`,
        text: `select proposal from loupe_feedback_proposals where tenant = $1 order by created_at, id`,
        values: [tenant],
      });
      return found.rows.map((row) => row.proposal);
    },

    async close() {
      await Promise.allSettled([...writing]);
    },
  };
}
