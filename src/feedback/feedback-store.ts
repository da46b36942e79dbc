/**
 * Where feedback on answers and the triples it proposes are kept. {@link FeedbackStore} is the port;
 * {@link createFileFeedbackStore} keeps them under `<LOUPE_DATA_DIR>/feedback/`:
 *
 * - `feedback.jsonl`: one JSON line per feedback, with its tenant (like the audit log: appended whole, one
 *   `write` each in append mode, mode 0600, so a server and a CLI command never interleave lines). Every
 *   field is bounded by the route's limits, so a line stays under about 100 KB; the file itself grows
 *   with the feedback received (each call costs a chat turn's rate), so rotate it like any log.
 * - `proposals/t_<tenant>/<id>.json`: one file per proposed triple, replaced atomically when it is
 *   approved or rejected. The `t_` prefix keeps a tenant named `.` or `..` a plain folder name. Saves
 *   of one tenant's proposals run one at a time in this process, so a cap on pending ones holds.
 *
 * With `LOUPE_DATABASE_URL` they are the database's instead (`pg-feedback-store.ts`).
 *
 * A proposal's image lives in the blob store, held by the proposal's own reference (`<tenant>/<id>`,
 * see `feedback-service.ts`), never in the corpus until the proposal is approved.
 */
import { mkdir, open, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "../auth/atomic-file.ts";
import { createKeyedLock } from "../auth/keyed-lock.ts";
import { ConflictError } from "../errors.ts";

/** How an answer was rated. */
export type FeedbackRating = "up" | "down";

/** The image feedback was about: kept in the blob store (bytes sent) or a stored image of the tenant. */
export interface FeedbackImage {
  sha256: string;
  contentType: string;
  size: number;
  /** The stored image the feedback named, when it named one (`img_…`). */
  itemId?: string;
}

/** One feedback on an answer, as recorded. */
export interface FeedbackEntry {
  /** `fb_` and 32 hex digits. */
  id: string;
  /** When it was received (ISO 8601). */
  time: string;
  tenant: string;
  /** The API key that sent it (its public id); `null` with authentication off. */
  keyId: string | null;
  requestId: string | null;
  rating: FeedbackRating;
  question: string;
  answer: string;
  citations: string[];
  correction?: string;
  conversationId?: string;
  image?: FeedbackImage;
  /** The triple it proposed, when it proposed one. */
  proposalId?: string;
}

/** Where a proposal stands. */
export type ProposalStatus = "pending" | "approved" | "rejected";

/** An image-question-answer triple proposed by feedback, waiting for a key with the `ingest` scope. */
export interface Proposal {
  /** `fbp_` and 32 hex digits, derived from the tenant, the image and the texts. */
  id: string;
  tenant: string;
  status: ProposalStatus;
  /** When it was proposed (ISO 8601). */
  createdAt: string;
  /** The feedback that proposed it (the first, when the same triple was proposed again). */
  feedbackId: string;
  /** The key that sent that feedback; `null` with authentication off. */
  proposedBy: string | null;
  rating: FeedbackRating;
  /** Whether the answer is the caller's correction rather than the one Loupe gave. */
  corrected: boolean;
  question: string;
  answer: string;
  image: FeedbackImage;
  /** When it was approved or rejected. */
  decidedAt?: string;
  /** The key that approved or rejected it; `null` with authentication off or from the CLI. */
  decidedBy?: string | null;
  /** The stored triple, once approved. */
  tripleId?: string;
}

/**
 * What {@link FeedbackStore.saveProposal} did: `saved` it, `kept` the one already there (see
 * {@link decideSave}), or `refused` a new pending proposal because the tenant had `pending` (at least
 * `maxPending`) waiting already.
 */
export type ProposalSave = { outcome: "saved" | "kept" } | { outcome: "refused"; pending: number };

/** The feedback port. */
export interface FeedbackStore {
  /** Appends one feedback. */
  record(entry: FeedbackEntry): Promise<void>;
  /**
   * Stores a proposal, replacing the one with its id and tenant, except where {@link decideSave} keeps
   * that one: a decision is final, and a proposal made again keeps the first. With `maxPending`, a new
   * pending proposal is refused when the tenant has that many pending already; the count and the write
   * are one step, so concurrent saves (in this process or in other replicas) never go past the cap.
   *
   * @throws {ConflictError} when it would turn an approved proposal into a rejected one, or back.
   */
  saveProposal(proposal: Proposal, options?: { maxPending?: number }): Promise<ProposalSave>;
  /** The tenant's proposal with this id; undefined when there is none (or it is another tenant's). */
  getProposal(request: { tenant: string; id: string }): Promise<Proposal | undefined>;
  /** Every proposal of the tenant, oldest first (ties by id). */
  listProposals(request: { tenant: string }): Promise<Proposal[]>;
  close(): Promise<void>;
}

/** Ids of proposals: `fbp_` and 32 lowercase hex digits. */
export const PROPOSAL_ID_PATTERN = /^fbp_[0-9a-f]{32}$/;

/**
 * What saving `next` over the stored `existing` proposal of the same id does: `replace` it, or `keep` it.
 * A decided proposal keeps its first decision (approving an approved one again, from another replica,
 * changes nothing); a pending one saved over any other keeps the first (the same triple proposed twice
 * at once). A pending proposal is decided by replacing it.
 *
 * @throws {ConflictError} when `next` decides otherwise than `existing` already was.
 */
export function decideSave({ existing, next }: { existing: Proposal; next: Proposal }): "replace" | "keep" {
  if (next.status === "pending") return "keep";
  if (existing.status === "pending") return "replace";
  if (existing.status === next.status) return "keep";
  throw new ConflictError(
    `Proposal ${existing.id} was ${existing.status} already${existing.tripleId === undefined ? "" : ` as ${existing.tripleId}`}; it cannot be ${next.status} now.`,
    { context: { id: existing.id, status: existing.status } },
  );
}

/** The folder of a tenant's proposals: a prefix, so that no tenant name is a special path. */
function tenantFolder(dir: string, tenant: string): string {
  return path.join(dir, "proposals", `t_${tenant}`);
}

/** Orders proposals oldest first, ties by id: the order pages are cut in. */
export function compareProposals(a: Proposal, b: Proposal): number {
  return a.createdAt === b.createdAt ? a.id.localeCompare(b.id) : a.createdAt.localeCompare(b.createdAt);
}

/** Proposal saves of one tenant's folder, one at a time in this process, whichever store instance makes them. */
const tenantLock = createKeyedLock();

/** The file {@link FeedbackStore} under `dir` (`<LOUPE_DATA_DIR>/feedback`). */
export function createFileFeedbackStore({ dir }: { dir: string }): FeedbackStore {
  const file = path.join(dir, "feedback.jsonl");
  let handle: ReturnType<typeof open> | undefined;
  const opened = () => {
    handle ??= mkdir(dir, { recursive: true, mode: 0o700 }).then(() => open(file, "a", 0o600));
    return handle;
  };
  const readProposal = async (location: string): Promise<Proposal | undefined> => {
    let text: string;
    try {
      text = await readFile(location, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    return JSON.parse(text) as Proposal;
  };
  const listIn = async (tenant: string): Promise<Proposal[]> => {
    const folder = tenantFolder(dir, tenant);
    let names: string[];
    try {
      names = await readdir(folder);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
    const proposals: Proposal[] = [];
    for (const name of names) {
      if (!name.endsWith(".json") || !PROPOSAL_ID_PATTERN.test(name.slice(0, -5))) continue;
      const proposal = await readProposal(path.join(folder, name));
      if (proposal?.tenant === tenant) proposals.push(proposal);
    }
    return proposals.sort(compareProposals);
  };
  return {
    async record(entry) {
      await (await opened()).write(`${JSON.stringify(entry)}\n`);
    },
    async saveProposal(proposal, { maxPending } = {}) {
      if (!PROPOSAL_ID_PATTERN.test(proposal.id)) throw new Error(`Not a proposal id: ${proposal.id}`);
      const folder = tenantFolder(dir, proposal.tenant);
      const location = path.join(folder, `${proposal.id}.json`);
      return tenantLock(path.resolve(folder), async (): Promise<ProposalSave> => {
        const existing = await readProposal(location);
        if (existing !== undefined && decideSave({ existing, next: proposal }) === "keep")
          return { outcome: "kept" };
        if (existing === undefined && proposal.status === "pending" && maxPending !== undefined) {
          const pending = (await listIn(proposal.tenant)).filter(
            (found) => found.status === "pending",
          ).length;
          if (pending >= maxPending) return { outcome: "refused", pending };
        }
        await mkdir(folder, { recursive: true, mode: 0o700 });
        await writeFileAtomic(location, JSON.stringify(proposal));
        return { outcome: "saved" };
      });
    },
    async getProposal({ tenant, id }) {
      // The pattern keeps the id a plain file name; the folder keeps it the tenant's own.
      if (!PROPOSAL_ID_PATTERN.test(id)) return undefined;
      const proposal = await readProposal(path.join(tenantFolder(dir, tenant), `${id}.json`));
      return proposal?.tenant === tenant ? proposal : undefined;
    },
    listProposals: ({ tenant }) => listIn(tenant),
    async close() {
      if (handle !== undefined) await (await handle).close();
      handle = undefined;
    },
  };
}
