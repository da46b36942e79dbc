/**
 * Feedback on answers, and the triples it proposes. {@link FeedbackService.submit} records a rating
 * (with the question, the answer, its citations and an optional correction) and, when the feedback
 * confirms an answer about an image (rating `up`) or corrects one, proposes the image-question-answer
 * triple. A proposal is only a file and a blob reference: nothing reaches the corpus until a key with the
 * `ingest` scope approves it ({@link FeedbackService.approve}), which ingests it through the triple
 * ingester, so a visitor with a publishable key can never write into the corpus.
 *
 * A proposal's image is kept in the blob store under the proposal's own reference `<tenant>/<fbp_…>`.
 * The orphan sweep keeps references of that shape (they name no record), so the image survives until the
 * proposal is decided: approving hands it to the triple's record, rejecting releases it.
 */
import { createHash, randomBytes } from "node:crypto";
import { createKeyedLock } from "../auth/keyed-lock.ts";
import { AppError, ConflictError, MediaError, NotFoundError, ValidationError } from "../errors.ts";
import { sniffImageFormat } from "../inference/index.ts";
import { findMedia } from "../ingest/items.ts";
import type { TripleIngester } from "../ingest/triple-ingest.ts";
import { MAX_ANSWER_LENGTH, MAX_QUESTION_LENGTH } from "../ingest/triple-ingest.ts";
import type { Logger } from "../logger.ts";
import type { BlobStore, StoredBlob } from "../media/blob-store.ts";
import type { ImageReference } from "../media/media-port.ts";
import { makeThumbnail } from "../media/thumbnail.ts";
import type { VectorStore } from "../store/index.ts";
import {
  compareProposals,
  type FeedbackImage,
  type FeedbackRating,
  type FeedbackStore,
  type Proposal,
  type ProposalSave,
  type ProposalStatus,
} from "./feedback-store.ts";

/** Feedback as the route hands it over, already checked against its schema. */
export interface FeedbackInput {
  rating: FeedbackRating;
  question: string;
  answer: string;
  citations: readonly string[];
  correction?: string;
  /** The image the question was about: bytes sent with the feedback, or a stored image's id. */
  image?: Exclude<ImageReference, { url: string }>;
  conversationId?: string;
}

/** What {@link FeedbackService.submit} did. */
export interface FeedbackReceipt {
  id: string;
  /** The proposed triple, when the feedback proposed one (an existing proposal when it was proposed before). */
  proposal: { id: string; status: ProposalStatus } | null;
  /** Why feedback about an image proposed no triple. */
  notProposed?: string;
}

/** A page of proposals. */
export interface ProposalPage {
  proposals: Proposal[];
  /** Pass as `cursor` for the next page; absent on the last. */
  nextCursor?: string;
}

/** Options of {@link FeedbackService}. */
export interface FeedbackServiceOptions {
  feedback: FeedbackStore;
  blobs: BlobStore;
  /** To read a stored image named by id, for the caller's tenant only. */
  store: VectorStore;
  triples: Pick<TripleIngester, "ingest">;
  /** Most pending proposals per tenant (`LOUPE_FEEDBACK_MAX_PENDING`); 0: none are made. */
  maxPending: number;
  /** Largest width × height of a proposed image (`LOUPE_MAX_IMAGE_PIXELS`), checked by decoding it. */
  maxImagePixels: number;
  logger?: Logger;
  /** The clock (tests). */
  now?: () => Date;
}

const CONTENT_TYPES: Record<string, string> = {
  jpeg: "image/jpeg",
  png: "image/png",
  gif: "image/gif",
  webp: "image/webp",
};

/** Citation markers of an answer (`[img_…]`, `[reg_…]`, `[att_1]`): a triple's answer is the text alone. */
const CITATION_MARKER = /[ \t]*\[(?:(?:img|seg|tri|reg|vid)_[A-Za-z0-9]+|att_\d+)\]/g;

/** The blob reference that holds a proposal's image: `<tenant>/<proposal id>`. */
export function proposalOwner(proposal: Pick<Proposal, "tenant" | "id">): string {
  return `${proposal.tenant}/${proposal.id}`;
}

/** A proposal's id: the same tenant, image and texts propose the same triple once. */
export function proposalId({
  tenant,
  sha256,
  question,
  answer,
}: {
  tenant: string;
  sha256: string;
  question: string;
  answer: string;
}): string {
  const digest = createHash("sha256")
    .update(JSON.stringify([tenant, sha256, question, answer]))
    .digest("hex");
  return `fbp_${digest.slice(0, 32)}`;
}

/** The cursor of the page after `proposal`: its time and id, opaque to callers. */
function encodeCursor(proposal: Proposal): string {
  return Buffer.from(JSON.stringify([proposal.createdAt, proposal.id])).toString("base64url");
}

function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown;
    if (Array.isArray(value) && typeof value[0] === "string" && typeof value[1] === "string") {
      return { createdAt: value[0], id: value[1] };
    }
  } catch {
    // Falls through to the refusal below.
  }
  throw new ValidationError("cursor is not one this server gave; pass the nextCursor of the previous page.", {
    context: { field: "cursor" },
  });
}

/** Records feedback and manages the triples it proposes. */
export class FeedbackService {
  readonly #feedback: FeedbackStore;
  readonly #blobs: BlobStore;
  readonly #store: VectorStore;
  readonly #triples: Pick<TripleIngester, "ingest">;
  readonly #maxPending: number;
  readonly #maxImagePixels: number;
  readonly #logger: Logger | undefined;
  readonly #now: () => Date;
  /** Decisions and proposals of one proposal id run one at a time in this process. */
  readonly #withLock = createKeyedLock();

  constructor(options: FeedbackServiceOptions) {
    this.#feedback = options.feedback;
    this.#blobs = options.blobs;
    this.#store = options.store;
    this.#triples = options.triples;
    this.#maxPending = options.maxPending;
    this.#maxImagePixels = options.maxImagePixels;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => new Date());
  }

  /** Why no triple is proposed when the tenant has `pending` proposals waiting, at or past the cap. */
  #pendingCapReason(pending: number): string {
    return this.#maxPending === 0
      ? "Feedback proposes no triples on this server (LOUPE_FEEDBACK_MAX_PENDING is 0)."
      : `This tenant already has ${pending} proposals waiting for approval, the most allowed (LOUPE_FEEDBACK_MAX_PENDING).`;
  }

  /**
   * Records feedback for `tenant` and, for an `up` or a correction about an image, proposes the triple
   * (question, the correction or else the answer without its citation markers, the image). The feedback is
   * recorded even when no triple can be proposed; the receipt says why.
   *
   * @throws {MediaError} 415 or 422 when the image is not one Loupe reads; {@link ValidationError} when
   *   it names something other than a stored image of the tenant.
   */
  async submit({
    tenant,
    keyId,
    requestId,
    input,
  }: {
    tenant: string;
    keyId: string | null;
    requestId: string | null;
    input: FeedbackInput;
  }): Promise<FeedbackReceipt> {
    const id = `fb_${randomBytes(16).toString("hex")}`;
    const time = this.#now().toISOString();
    const image = input.image === undefined ? undefined : await this.#readImage(tenant, input.image);
    let proposal: FeedbackReceipt["proposal"] = null;
    let notProposed: string | undefined;
    const wantsProposal = image !== undefined && (input.rating === "up" || input.correction !== undefined);
    if (image !== undefined && wantsProposal) {
      const outcome = await this.#propose({ tenant, keyId, feedbackId: id, time, image, input });
      if ("reason" in outcome) notProposed = outcome.reason;
      else proposal = outcome;
    } else if (image !== undefined) {
      notProposed = "A thumbs-down without a correction proposes no triple.";
    }
    await this.#feedback.record({
      id,
      time,
      tenant,
      keyId,
      requestId,
      rating: input.rating,
      question: input.question,
      answer: input.answer,
      citations: [...input.citations],
      ...(input.correction === undefined ? {} : { correction: input.correction }),
      ...(input.conversationId === undefined ? {} : { conversationId: input.conversationId }),
      ...(image === undefined ? {} : { image: image.info }),
      ...(proposal === null ? {} : { proposalId: proposal.id }),
    });
    return { id, proposal, ...(notProposed === undefined ? {} : { notProposed }) };
  }

  /** The image of feedback: its bytes checked (format, decodable, pixel limit), or a stored image's blob. */
  async #readImage(
    tenant: string,
    reference: NonNullable<FeedbackInput["image"]>,
  ): Promise<{ info: FeedbackImage; bytes?: Uint8Array }> {
    if ("id" in reference) {
      if (!reference.id.startsWith("img_")) {
        throw new ValidationError(
          `image must be a data URL or a stored image's id (img_…); got ${reference.id.slice(0, 80)}.`,
          { context: { field: "image" } },
        );
      }
      const blob = await findMedia({
        store: this.#store,
        blobs: this.#blobs,
        tenant,
        id: reference.id,
        variant: "original",
      });
      return {
        info: { sha256: blob.sha256, contentType: blob.contentType, size: blob.size, itemId: reference.id },
      };
    }
    const { bytes } = reference;
    const format = sniffImageFormat(bytes);
    const contentType = format === undefined ? undefined : CONTENT_TYPES[format];
    if (contentType === undefined) {
      throw new MediaError("image is not JPEG, PNG, WebP or GIF.", {
        status: 415,
        code: "media_unsupported",
        context: { field: "image" },
      });
    }
    // Decoded once here, under the pixel limit, so a proposal never holds an image approval cannot read.
    await makeThumbnail({ bytes, size: 32, maxInputPixels: this.#maxImagePixels });
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    return { info: { sha256, contentType, size: bytes.length }, bytes };
  }

  async #propose({
    tenant,
    keyId,
    feedbackId,
    time,
    image,
    input,
  }: {
    tenant: string;
    keyId: string | null;
    feedbackId: string;
    time: string;
    image: { info: FeedbackImage; bytes?: Uint8Array };
    input: FeedbackInput;
  }): Promise<{ id: string; status: ProposalStatus } | { reason: string }> {
    const question = input.question.trim();
    const answer = (input.correction ?? input.answer.replace(CITATION_MARKER, "")).trim();
    if (question.length > MAX_QUESTION_LENGTH) {
      return { reason: `The question is over ${MAX_QUESTION_LENGTH} characters, the limit of a triple.` };
    }
    if (answer.length === 0 || answer.length > MAX_ANSWER_LENGTH) {
      return {
        reason: `The answer must have 1 to ${MAX_ANSWER_LENGTH} characters to become a triple; send a shorter correction.`,
      };
    }
    const id = proposalId({ tenant, sha256: image.info.sha256, question, answer });
    return this.#withLock(`${tenant}/${id}`, async () => {
      const existing = await this.#feedback.getProposal({ tenant, id });
      if (existing !== undefined) return { id, status: existing.status };
      const pending = (await this.#feedback.listProposals({ tenant })).filter(
        (proposal) => proposal.status === "pending",
      ).length;
      // Refused here before the image is kept; the store counts again as it saves, as one step with the write.
      if (pending >= this.#maxPending) return { reason: this.#pendingCapReason(pending) };
      const owner = proposalOwner({ tenant, id });
      // The image is referenced as it is written, before the proposal exists: the sweep never sees it bare.
      if (image.bytes !== undefined) {
        await this.#blobs.put({ bytes: image.bytes, contentType: image.info.contentType, owner });
      } else {
        await this.#blobs.addReference({ sha256: image.info.sha256, owner });
      }
      const proposal: Proposal = {
        id,
        tenant,
        status: "pending",
        createdAt: time,
        feedbackId,
        proposedBy: keyId,
        rating: input.rating,
        corrected: input.correction !== undefined,
        question,
        answer,
        image: image.info,
      };
      const release = () => this.#blobs.release({ sha256: image.info.sha256, owner }).catch(() => undefined);
      let saved: ProposalSave;
      try {
        saved = await this.#feedback.saveProposal(proposal, { maxPending: this.#maxPending });
      } catch (error) {
        await release();
        throw error;
      }
      if (saved.outcome === "refused") {
        // Other replicas proposed up to the cap since the count above.
        await release();
        return { reason: this.#pendingCapReason(saved.pending) };
      }
      this.#logger?.info({ tenant, proposalId: id, feedbackId }, "feedback proposed a triple");
      return { id, status: "pending" as const };
    });
  }

  /**
   * A page of the tenant's proposals, oldest first: `status` (default `pending`, `all` for every one),
   * `limit` of them after `cursor`.
   */
  async listProposals({
    tenant,
    status = "pending",
    limit = 50,
    cursor,
  }: {
    tenant: string;
    status?: ProposalStatus | "all";
    limit?: number;
    cursor?: string;
  }): Promise<ProposalPage> {
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const all = (await this.#feedback.listProposals({ tenant })).filter(
      (proposal) =>
        (status === "all" || proposal.status === status) &&
        (after === undefined ||
          compareProposals(proposal, { ...proposal, createdAt: after.createdAt, id: after.id }) > 0),
    );
    const proposals = all.slice(0, limit);
    const last = proposals.at(-1);
    return {
      proposals,
      ...(all.length > limit && last !== undefined ? { nextCursor: encodeCursor(last) } : {}),
    };
  }

  /** The tenant's proposal. @throws {NotFoundError} when it has none with this id. */
  async getProposal({ tenant, id }: { tenant: string; id: string }): Promise<Proposal> {
    const proposal = await this.#feedback.getProposal({ tenant, id });
    if (proposal === undefined) {
      throw new NotFoundError(`No proposal ${id}.`, { context: { id } });
    }
    return proposal;
  }

  /** The image of the tenant's proposal. @throws {NotFoundError} when there is none. */
  async proposalImage({ tenant, id }: { tenant: string; id: string }): Promise<StoredBlob> {
    const proposal = await this.getProposal({ tenant, id });
    return this.#blobs.get(proposal.image.sha256);
  }

  /**
   * Approves the tenant's proposal: its triple is ingested (embedded, stored, searchable) and the
   * proposal's hold on the image released, since the triple's record now holds it. Approving an approved
   * proposal again changes nothing and answers the same.
   *
   * @throws {NotFoundError} unknown id; {@link ConflictError} when it was rejected; an `AppError` (422) when
   *   the triple ingester refuses the item; what the store throws when it is down.
   */
  async approve({
    tenant,
    id,
    keyId,
  }: {
    tenant: string;
    id: string;
    keyId: string | null;
  }): Promise<{ proposal: Proposal; created: boolean }> {
    return this.#withLock(`${tenant}/${id}`, async () => {
      const proposal = await this.getProposal({ tenant, id });
      if (proposal.status === "approved") {
        // A crash between saving the decision and releasing the hold is mended here.
        await this.#releaseHold(proposal);
        return { proposal, created: false };
      }
      if (proposal.status === "rejected") {
        throw new ConflictError(`Proposal ${id} was rejected; it cannot be approved.`, { context: { id } });
      }
      const bytes = await (await this.#blobs.get(proposal.image.sha256)).bytes();
      const result = await this.#triples.ingest({
        tenant,
        items: [
          {
            image: { bytes },
            question: proposal.question,
            answer: proposal.answer,
            metadata: { source: "feedback", tags: ["feedback"] },
          },
        ],
        source: "feedback",
      });
      const item = result.items[0];
      if (item === undefined || item.status === "failed" || item.id === undefined) {
        const error = item?.error;
        throw new AppError(
          error?.code ?? "internal_error",
          422,
          `Proposal ${id} could not be stored as a triple: ${error?.message ?? "the ingester gave no outcome"}`,
          { context: { id } },
        );
      }
      const approved: Proposal = {
        ...proposal,
        status: "approved",
        decidedAt: this.#now().toISOString(),
        decidedBy: keyId,
        tripleId: item.id,
      };
      await this.#feedback.saveProposal(approved);
      await this.#releaseHold(approved);
      return { proposal: approved, created: true };
    });
  }

  /**
   * Rejects the tenant's proposal and releases its hold on the image (removed when nothing else uses it).
   * Rejecting a rejected proposal again changes nothing.
   *
   * @throws {NotFoundError} unknown id; {@link ConflictError} when it was approved.
   */
  async reject({
    tenant,
    id,
    keyId,
  }: {
    tenant: string;
    id: string;
    keyId: string | null;
  }): Promise<{ proposal: Proposal; changed: boolean }> {
    return this.#withLock(`${tenant}/${id}`, async () => {
      const proposal = await this.getProposal({ tenant, id });
      if (proposal.status === "rejected") {
        await this.#releaseHold(proposal);
        return { proposal, changed: false };
      }
      if (proposal.status === "approved") {
        throw new ConflictError(
          `Proposal ${id} was approved as ${proposal.tripleId}; delete that item to remove it.`,
          { context: { id } },
        );
      }
      const rejected: Proposal = {
        ...proposal,
        status: "rejected",
        decidedAt: this.#now().toISOString(),
        decidedBy: keyId,
      };
      await this.#feedback.saveProposal(rejected);
      await this.#releaseHold(rejected);
      return { proposal: rejected, changed: true };
    });
  }

  async #releaseHold(proposal: Proposal): Promise<void> {
    await this.#blobs.release({ sha256: proposal.image.sha256, owner: proposalOwner(proposal) });
  }
}
