/**
 * The feedback store contract, run against both adapters: the file store on a temporary directory and
 * the PostgreSQL store on a database of this file's own (migrated with `migrate`). Feedback is kept whole,
 * proposals come back per tenant, oldest first (ties by id), a decision is final (the first approval
 * stays, the other decision is refused), two stores on one backing store (two replicas) see each other's
 * proposals, and a new store (a restart) finds everything. Then what only the database store does.
 */
import { expect, it } from "vitest";
import { ConflictError, ValidationError } from "../../src/errors.ts";
import {
  createFileFeedbackStore,
  type FeedbackEntry,
  type FeedbackStore,
  type Proposal,
} from "../../src/feedback/feedback-store.ts";
import { createPgFeedbackStore } from "../../src/feedback/pg-feedback-store.ts";
import { type ContractAdapter, describeContract, onDatabase, onDirectory } from "../db/contract-adapters.ts";

const hex = (index: number) => index.toString(16).padStart(32, "0");

function proposal(tenant: string, index: number, createdAt = "2026-03-01T10:00:00.000Z"): Proposal {
  return {
    id: `fbp_${hex(index)}`,
    tenant,
    status: "pending",
    createdAt,
    feedbackId: `fb_${hex(index)}`,
    proposedBy: "key_0123456789abcdef",
    rating: "down",
    corrected: true,
    question: "What colour is the car?",
    answer: "Red.",
    image: { sha256: "a".repeat(64), contentType: "image/png", size: 1234, itemId: "img_1" },
  };
}

function feedback(tenant: string, index: number): FeedbackEntry {
  return {
    id: `fb_${hex(index)}`,
    time: `2026-03-01T10:00:0${index % 10}.000Z`,
    tenant,
    keyId: null,
    requestId: `req_${index}`,
    rating: "up",
    question: "How many cats?",
    answer: "Two [1].",
    citations: ["img_1"],
    conversationId: "conv_1",
  };
}

/** One adapter under the contract. */
interface Adapter extends ContractAdapter {
  open(): FeedbackStore;
  /** Every feedback recorded, in the order recorded. */
  recorded(): Promise<FeedbackEntry[]>;
}

const fileAdapter: Adapter = onDirectory("loupe-feedback-", (directory) => ({
  open: () => createFileFeedbackStore({ dir: directory.path }),
  recorded: () => directory.readJsonLines<FeedbackEntry>("feedback.jsonl"),
}));

const pgAdapter = onDatabase<Adapter>(
  { empty: "truncate loupe_feedback, loupe_feedback_proposals" },
  (database) => ({
    // Each store gets a pool of its own, as two processes would.
    open: () => createPgFeedbackStore({ pool: database.ownPool() }),
    async recorded() {
      const rows = await database.pool.query<{ entry: FeedbackEntry }>(
        "select entry from loupe_feedback order by seq",
      );
      return rows.rows.map((row) => row.entry);
    },
  }),
);

describeContract("the feedback store contract: $name adapter", [fileAdapter, pgAdapter], (adapter) => {
  it("keeps each feedback whole, in the order recorded", async () => {
    const store = adapter.open();
    const entries = [
      feedback("acme", 1),
      { ...feedback("other", 2), proposalId: `fbp_${hex(2)}` },
      feedback("acme", 3),
    ];
    for (const entry of entries) await store.record(entry);
    await store.close();
    expect(await adapter.recorded()).toEqual(entries);
  });

  it("gives back a tenant's proposals only, and nothing for an unknown or malformed id", async () => {
    const store = adapter.open();
    await store.saveProposal(proposal("acme", 1));
    await store.saveProposal(proposal("other", 2));
    expect(await store.getProposal({ tenant: "acme", id: `fbp_${hex(1)}` })).toEqual(proposal("acme", 1));
    expect(await store.getProposal({ tenant: "other", id: `fbp_${hex(1)}` })).toBeUndefined();
    expect(await store.getProposal({ tenant: "acme", id: `fbp_${hex(9)}` })).toBeUndefined();
    expect(await store.getProposal({ tenant: "acme", id: "../../etc/passwd" })).toBeUndefined();
    expect(await store.listProposals({ tenant: "acme" })).toEqual([proposal("acme", 1)]);
    expect(await store.listProposals({ tenant: "nobody" })).toEqual([]);
  });

  it("lists oldest first, ties by id", async () => {
    const store = adapter.open();
    await store.saveProposal(proposal("acme", 3, "2026-03-01T10:00:00.000Z"));
    await store.saveProposal(proposal("acme", 1, "2026-03-02T10:00:00.000Z"));
    await store.saveProposal(proposal("acme", 2, "2026-03-01T10:00:00.000Z"));
    await store.saveProposal(proposal("acme", 4, "2026-02-28T23:59:59.999Z"));
    expect((await store.listProposals({ tenant: "acme" })).map((found) => found.id)).toEqual(
      [4, 2, 3, 1].map((index) => `fbp_${hex(index)}`),
    );
  });

  it("decides a pending proposal once: the first decision stays, the other decision is refused", async () => {
    const store = adapter.open();
    await store.saveProposal(proposal("acme", 1));
    const approved: Proposal = {
      ...proposal("acme", 1),
      status: "approved",
      decidedAt: "2026-03-02T00:00:00.000Z",
      decidedBy: null,
      tripleId: "tri_1",
    };
    await store.saveProposal(approved);
    expect(await store.getProposal({ tenant: "acme", id: approved.id })).toEqual(approved);
    // Approved again (another replica): the first approval stays.
    await store.saveProposal({ ...approved, decidedAt: "2026-03-03T00:00:00.000Z", decidedBy: "key_x" });
    expect(await store.getProposal({ tenant: "acme", id: approved.id })).toEqual(approved);
    await expect(store.saveProposal({ ...approved, status: "rejected" })).rejects.toBeInstanceOf(
      ConflictError,
    );
    // Proposed again: the proposal already there is kept.
    await store.saveProposal(proposal("acme", 1, "2027-01-01T00:00:00.000Z"));
    expect(await store.getProposal({ tenant: "acme", id: approved.id })).toEqual(approved);
    await expect(store.saveProposal({ ...proposal("acme", 1), id: "fbp_nothex" })).rejects.toThrow(
      /proposal id/,
    );
  });

  it("shows one replica's proposals and decisions to another, and everything after a restart", async () => {
    const first = adapter.open();
    const second = adapter.open();
    await first.saveProposal(proposal("acme", 1));
    expect(await second.getProposal({ tenant: "acme", id: `fbp_${hex(1)}` })).toEqual(proposal("acme", 1));
    const rejected: Proposal = {
      ...proposal("acme", 1),
      status: "rejected",
      decidedAt: "2026-03-02T00:00:00.000Z",
    };
    await second.saveProposal(rejected);
    expect(await first.listProposals({ tenant: "acme" })).toEqual([rejected]);
    await first.close();
    await second.close();
    expect(await adapter.open().listProposals({ tenant: "acme" })).toEqual([rejected]);
  });

  it("keeps the first of a proposal saved by several replicas at once", async () => {
    const replicas = [adapter.open(), adapter.open(), adapter.open()];
    const versions = replicas.map((_replica, index) => ({
      ...proposal("acme", 1),
      question: `version ${index}`,
    }));
    await Promise.all(
      versions.map((version, index) => (replicas[index] as FeedbackStore).saveProposal(version)),
    );
    const stored = await adapter.open().listProposals({ tenant: "acme" });
    expect(stored).toHaveLength(1);
    expect(versions).toContainEqual(stored[0]);
  });
  it("keeps at most maxPending pending proposals per tenant when two replicas propose at once", async () => {
    const replicas = [adapter.open(), adapter.open()];
    const decided: Proposal = {
      ...proposal("acme", 100),
      status: "approved",
      decidedAt: "2026-03-02T00:00:00.000Z",
      tripleId: "tri_1",
    };
    // A decided proposal and another tenant's pending one do not count against acme's cap.
    await replicas[0]?.saveProposal(decided);
    await replicas[0]?.saveProposal(proposal("other", 200));
    expect(await replicas[1]?.saveProposal(proposal("acme", 0), { maxPending: 5 })).toEqual({
      outcome: "saved",
    });
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, (_value, index) =>
        (replicas[index % 2] as FeedbackStore).saveProposal(proposal("acme", index + 1), { maxPending: 5 }),
      ),
    );
    expect(outcomes.filter((outcome) => outcome.outcome === "saved")).toHaveLength(4);
    expect(outcomes.filter((outcome) => outcome.outcome === "refused")).toEqual(
      Array.from({ length: 12 }, () => ({ outcome: "refused", pending: 5 })),
    );
    const listed = await adapter.open().listProposals({ tenant: "acme" });
    const pending = listed.filter((found) => found.status === "pending");
    expect(pending).toHaveLength(5);
    expect(listed).toHaveLength(6);

    // At the cap: a proposal made again is kept, a decision is saved, and then one more new one fits.
    const first = pending[0] as Proposal;
    expect(await replicas[0]?.saveProposal(first, { maxPending: 5 })).toEqual({ outcome: "kept" });
    expect(
      await replicas[1]?.saveProposal(
        { ...first, status: "rejected", decidedAt: "2026-03-03T00:00:00.000Z" },
        { maxPending: 5 },
      ),
    ).toEqual({ outcome: "saved" });
    expect(await replicas[0]?.saveProposal(proposal("acme", 50), { maxPending: 5 })).toEqual({
      outcome: "saved",
    });
    expect(await replicas[1]?.saveProposal(proposal("acme", 51), { maxPending: 5 })).toEqual({
      outcome: "refused",
      pending: 5,
    });
    expect(await replicas[1]?.saveProposal(proposal("other", 201), { maxPending: 5 })).toEqual({
      outcome: "saved",
    });
  });
});

describeContract("the PostgreSQL feedback store", [pgAdapter], (adapter) => {
  it("approves once when replicas decide one proposal at the same moment", async () => {
    const replicas = [adapter.open(), adapter.open(), adapter.open(), adapter.open()];
    await (replicas[0] as FeedbackStore).saveProposal(proposal("acme", 1));
    const decisions = replicas.map((replica, index) =>
      replica.saveProposal({
        ...proposal("acme", 1),
        status: index % 2 === 0 ? "approved" : "rejected",
        decidedAt: `2026-03-02T00:00:0${index}.000Z`,
        decidedBy: `key_${index}`,
      }),
    );
    const outcomes = await Promise.allSettled(decisions);
    const stored = await (replicas[0] as FeedbackStore).getProposal({
      tenant: "acme",
      id: `fbp_${hex(1)}`,
    });
    const refused = outcomes.filter((outcome) => outcome.status === "rejected");
    // Every save of the other decision than the one that stayed was refused with a conflict; none of its kind.
    expect(refused).toHaveLength(2);
    for (const outcome of refused)
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect(["approved", "rejected"]).toContain(stored?.status);
    const rows = await adapter.database.pool.query<{ status: string }>(
      "select status from loupe_feedback_proposals",
    );
    expect(rows.rows).toEqual([{ status: stored?.status }]);
  });

  it("keeps a retried feedback once, and refuses a tenant outside the pattern with a ValidationError", async () => {
    const store = adapter.open();
    await store.record(feedback("acme", 1));
    await store.record(feedback("acme", 1));
    expect(await adapter.recorded()).toEqual([feedback("acme", 1)]);
    const error = await store.record(feedback("no/slash", 2)).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ValidationError);
    await store.close();
  });
});
