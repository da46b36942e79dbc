/**
 * Feedback on answers, and the triples it proposes:
 *
 * - `POST /v1/feedback` (scope `read`, also for publishable keys from their origins; costs what a chat
 *   turn costs): a rating of an answer, with the question, the answer, its citations and an optional
 *   correction and image. An `up`, or a correction, about an image proposes a triple.
 * - `GET /v1/feedback/proposals`, `GET /v1/feedback/proposals/{id}/image`,
 *   `POST /v1/feedback/proposals/{id}/approve` and `…/reject` (scope `ingest`, never publishable keys):
 *   the tenant's proposals; approving ingests the triple, which is the only way feedback reaches the
 *   corpus.
 *
 * The work is `feedback/feedback-service.ts`'s; this file reads requests and writes answers.
 */
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { AuditLog } from "../../audit/audit-log.ts";
import type { Config } from "../../config.ts";
import { MediaError } from "../../errors.ts";
import type { FeedbackInput, FeedbackService } from "../../feedback/feedback-service.ts";
import type { Proposal } from "../../feedback/feedback-store.ts";
import { assertStorableText } from "../../ingest/storable-text.ts";
import { MAX_ANSWER_LENGTH } from "../../ingest/triple-ingest.ts";
import { MAX_CHAT_QUESTION_LENGTH } from "../../rag/chain.ts";
import { parseImageReference } from "../../search/index.ts";
import { recordWrite } from "../batch-outcome.ts";
import type { AppContext } from "../context.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  imageInputResponses,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
} from "../openapi.ts";

/** Longest answer feedback may quote (an LLM answer can be long; a triple's is cut at 2000). */
export const MAX_FEEDBACK_ANSWER_LENGTH = 20_000;
/** Most citations one feedback may list. */
export const MAX_FEEDBACK_CITATIONS = 100;
/** Most proposals one page lists. */
export const MAX_PROPOSALS_PAGE = 100;
/** Room for the texts of a feedback body beside its image. */
const FEEDBACK_TEXT_ALLOWANCE_BYTES = 256 * 1024;

const ID_TEXT = /^[A-Za-z0-9_.:-]{1,200}$/;

const feedbackBodySchema = z
  .object({
    rating: z
      .enum(["up", "down"], { error: 'rating must be "up" or "down"' })
      .describe("Whether the answer was right (`up`) or not (`down`)."),
    question: z
      .string({ error: "question must be a string" })
      .trim()
      .min(1, "question must not be empty")
      .max(MAX_CHAT_QUESTION_LENGTH, `question must be at most ${MAX_CHAT_QUESTION_LENGTH} characters`)
      .describe("The question the answer was to."),
    answer: z
      .string({ error: "answer must be a string" })
      .max(MAX_FEEDBACK_ANSWER_LENGTH, `answer must be at most ${MAX_FEEDBACK_ANSWER_LENGTH} characters`)
      .describe("The answer as Loupe gave it."),
    citations: z
      .array(z.string().regex(ID_TEXT, "each citation must be an item id of at most 200 characters"), {
        error: "citations must be a list of item ids",
      })
      .max(MAX_FEEDBACK_CITATIONS, `citations may list at most ${MAX_FEEDBACK_CITATIONS} ids`)
      .default([])
      .describe("The ids the answer cited."),
    correction: z
      .string({ error: "correction must be a string" })
      .trim()
      .min(1, "correction must not be empty when given")
      .max(MAX_ANSWER_LENGTH, `correction must be at most ${MAX_ANSWER_LENGTH} characters`)
      .optional()
      .describe("The right answer, in the caller's words. With an image, it proposes a triple."),
    image: z
      .string({ error: "image must be a string" })
      .optional()
      .describe(
        "The image the question was about: a data URL (`data:image/png;base64,…`) or a stored image's id (`img_…`). With `up` or a correction, it proposes a triple.",
      ),
    conversationId: z
      .string({ error: "conversationId must be a string" })
      .regex(/^[A-Za-z0-9_.:-]{1,128}$/, "conversationId must be 1–128 characters from A–Z a–z 0–9 _ . : -")
      .optional()
      .describe("The client's id of the conversation, to group feedback."),
  })
  .strict()
  .meta({ id: "FeedbackRequest" });

const proposalStatusSchema = z.enum(["pending", "approved", "rejected"]);

const proposalSchema = z
  .object({
    id: z.string().describe("`fbp_…`"),
    status: proposalStatusSchema,
    createdAt: z.string().describe("When it was proposed (ISO 8601)."),
    feedbackId: z.string().describe("The feedback that proposed it."),
    proposedBy: z.string().nullable().describe("The key that sent that feedback; null without keys."),
    rating: z.enum(["up", "down"]),
    corrected: z.boolean().describe("Whether the answer is the caller's correction."),
    question: z.string(),
    answer: z
      .string()
      .describe("The triple's answer: the correction, else the answer without citation marks."),
    image: z.object({
      sha256: z.string(),
      contentType: z.string(),
      size: z.number().int(),
      itemId: z.string().optional().describe("The stored image the feedback named, if it named one."),
    }),
    imageUrl: z.string().describe("Where a reviewer sees the image (scope `ingest`)."),
    decidedAt: z.string().optional(),
    decidedBy: z.string().nullable().optional(),
    tripleId: z.string().optional().describe("The stored triple, once approved."),
  })
  .meta({ id: "FeedbackProposal" });

const receiptSchema = z
  .object({
    id: z.string().describe("The feedback's id (`fb_…`)."),
    proposal: z
      .object({ id: z.string(), status: proposalStatusSchema })
      .nullable()
      .describe("The triple it proposed (or had proposed before); null when none."),
    notProposed: z.string().optional().describe("Why feedback about an image proposed no triple."),
  })
  .meta({ id: "FeedbackReceipt" });

const proposalParamsSchema = z.object({
  id: z.string().min(1, "id must not be empty").max(100, "id must be at most 100 characters"),
});

const listQuerySchema = z.object({
  status: z
    .enum(["pending", "approved", "rejected", "all"], {
      error: "status must be pending, approved, rejected or all",
    })
    .optional()
    .describe("Which proposals; `pending` by default."),
  limit: z
    .string()
    .regex(/^[0-9]{1,3}$/, `limit must be an integer from 1 to ${MAX_PROPOSALS_PAGE}`)
    .refine(
      (value) => Number(value) >= 1 && Number(value) <= MAX_PROPOSALS_PAGE,
      `limit must be an integer from 1 to ${MAX_PROPOSALS_PAGE}`,
    )
    .optional()
    .describe(`At most this many (1–${MAX_PROPOSALS_PAGE}, default 50).`),
  cursor: z.string().max(500, "cursor must be at most 500 characters").optional(),
});

const notFound = errorResponse("No proposal with that id for the caller's tenant.");
const conflict = errorResponse("The proposal was decided the other way (code `conflict`).");

/** Body limit of POST /v1/feedback: one image as base64 and the texts, answered in the error envelope. */
function feedbackBodyLimit({ maxImageBytes }: Pick<Config, "maxImageBytes">) {
  const maxSize = Math.ceil((maxImageBytes * 4) / 3) + FEEDBACK_TEXT_ALLOWANCE_BYTES;
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new MediaError(
        `The request body is over ${maxSize} bytes: feedback carries at most one image of LOUPE_MAX_IMAGE_BYTES; send a smaller one or a stored image's id.`,
        { status: 413, code: "payload_too_large", context: { limit: maxSize } },
      );
    },
  });
}

/** POST /v1/feedback, with the body limit of `config`. */
export const feedbackRouteFor = (config: Pick<Config, "maxImageBytes">) =>
  defineRoute(
    {
      method: "post",
      middleware: [feedbackBodyLimit(config)],
      path: "/v1/feedback",
      operationId: "sendFeedback",
      tags: ["chat"],
      summary: "Rate an answer",
      description:
        "Records a rating of an answer (tenant, key, time, question, answer, citations, correction). An `up`, or a correction, about an image proposes that image-question-answer triple; it is stored in the corpus only when a key with the `ingest` scope approves it. Publishable keys may call this from their origins.",
      request: { body: { content: { "application/json": { schema: feedbackBodySchema } }, required: true } },
      responses: {
        201: jsonResponse("Recorded.", receiptSchema),
        400: invalidRequestResponse,
        404: errorResponse("`image` names no stored image of the caller."),
        413: errorResponse(
          "The body is over the limit (one image's LOUPE_MAX_IMAGE_BYTES as base64, plus the texts).",
        ),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    { access: { scope: "read", cost: 5 } },
  );

/** GET /v1/feedback/proposals. */
export const listProposalsRoute = defineRoute(
  {
    method: "get",
    path: "/v1/feedback/proposals",
    operationId: "listFeedbackProposals",
    tags: ["ingest"],
    summary: "Triples proposed by feedback",
    description: "The tenant's proposals, oldest first, a page at a time (`nextCursor`).",
    request: { query: listQuerySchema },
    responses: {
      200: jsonResponse(
        "A page of proposals.",
        z.object({ proposals: z.array(proposalSchema), nextCursor: z.string().optional() }),
      ),
      400: invalidRequestResponse,
    },
  },
  { access: { scope: "ingest", cost: 1 } },
);

/** GET /v1/feedback/proposals/{id}/image. */
export const proposalImageRoute = defineRoute(
  {
    method: "get",
    path: "/v1/feedback/proposals/{id}/image",
    operationId: "getFeedbackProposalImage",
    tags: ["ingest"],
    summary: "A proposal's image",
    description: "The image of a proposed triple, for a reviewer.",
    request: { params: proposalParamsSchema },
    responses: {
      200: {
        description: "The image, with its content type.",
        content: { "image/*": { schema: z.string().meta({ contentMediaType: "application/octet-stream" }) } },
      },
      400: invalidRequestResponse,
      404: notFound,
    },
  },
  { access: { scope: "ingest", cost: 1 } },
);

const decisionResponses = (verb: string) => ({
  200: jsonResponse(
    `The proposal, ${verb}; \`changed\` is false when it already was.`,
    z.object({ proposal: proposalSchema, changed: z.boolean() }),
  ),
  400: invalidRequestResponse,
  404: notFound,
  409: conflict,
});

/** POST /v1/feedback/proposals/{id}/approve. */
export const approveProposalRoute = defineRoute(
  {
    method: "post",
    path: "/v1/feedback/proposals/{id}/approve",
    operationId: "approveFeedbackProposal",
    tags: ["ingest"],
    summary: "Approve a proposed triple",
    description:
      "Ingests the triple (embedded, stored, searchable; its id is `tripleId`). Approving it again changes nothing.",
    request: { params: proposalParamsSchema },
    responses: {
      ...decisionResponses("approved"),
      422: errorResponse("The triple ingester refused the triple; the message says why."),
      503: notReadyResponse,
    },
  },
  { access: { scope: "ingest", cost: 5 } },
);

/** POST /v1/feedback/proposals/{id}/reject. */
export const rejectProposalRoute = defineRoute(
  {
    method: "post",
    path: "/v1/feedback/proposals/{id}/reject",
    operationId: "rejectFeedbackProposal",
    tags: ["ingest"],
    summary: "Reject a proposed triple",
    description: "Marks it rejected and lets go of its image. Rejecting it again changes nothing.",
    request: { params: proposalParamsSchema },
    responses: decisionResponses("rejected"),
  },
  { access: { scope: "ingest", cost: 1 } },
);

/** What the routes use. */
export interface FeedbackRouteOptions {
  feedback: FeedbackService;
  config: Pick<Config, "maxImageBytes">;
  /** Approvals are recorded as `ingest` lines (and `proposal.approve`), rejections as `proposal.reject`. */
  audit?: AuditLog;
}

/** A proposal as the API shows it: with where its image is. */
function proposalToJson(proposal: Proposal) {
  return { ...proposal, imageUrl: `/v1/feedback/proposals/${proposal.id}/image` };
}

/** The /v1/feedback routes. */
export function createFeedbackRoute({ feedback, config, audit }: FeedbackRouteOptions) {
  const actor = (c: AppContext) => c.get("principal")?.keyId ?? null;
  return createRouter()
    .openapi(feedbackRouteFor(config), async (c) => {
      const body = c.req.valid("json");
      assertStorableText(body.question, "question");
      assertStorableText(body.answer, "answer");
      if (body.correction !== undefined) assertStorableText(body.correction, "correction");
      const image =
        body.image === undefined
          ? undefined
          : (parseImageReference({
              value: body.image,
              maxBytes: config.maxImageBytes,
            }) as FeedbackInput["image"]);
      const input: FeedbackInput = {
        rating: body.rating,
        question: body.question,
        answer: body.answer,
        citations: body.citations,
        ...(body.correction === undefined ? {} : { correction: body.correction }),
        ...(image === undefined ? {} : { image }),
        ...(body.conversationId === undefined ? {} : { conversationId: body.conversationId }),
      };
      const receipt = await feedback.submit({
        tenant: c.get("tenant"),
        keyId: actor(c),
        requestId: c.get("requestId") ?? null,
        input,
      });
      return c.json(receipt, 201);
    })
    .openapi(listProposalsRoute, async (c) => {
      const query = c.req.valid("query");
      const page = await feedback.listProposals({
        tenant: c.get("tenant"),
        status: query.status ?? "pending",
        limit: query.limit === undefined ? 50 : Number(query.limit),
        ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
      });
      return c.json({ ...page, proposals: page.proposals.map(proposalToJson) }, 200);
    })
    .openapi(proposalImageRoute, async (c) => {
      const blob = await feedback.proposalImage({ tenant: c.get("tenant"), id: c.req.valid("param").id });
      return c.body(blob.stream(), 200, {
        "content-type": blob.contentType,
        "content-length": String(blob.size),
        "cache-control": "private, no-store",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
      });
    })
    .openapi(approveProposalRoute, async (c) => {
      const id = c.req.valid("param").id;
      const { proposal, created } = await feedback.approve({ tenant: c.get("tenant"), id, keyId: actor(c) });
      if (created && proposal.tripleId !== undefined) {
        await recordWrite({
          c,
          log: audit,
          action: "proposal.approve",
          route: "POST /v1/feedback/proposals/{id}/approve",
          itemIds: [proposal.tripleId],
          detail: { proposalId: id, feedbackId: proposal.feedbackId },
        });
      }
      return c.json({ proposal: proposalToJson(proposal), changed: created }, 200);
    })
    .openapi(rejectProposalRoute, async (c) => {
      const id = c.req.valid("param").id;
      const { proposal, changed } = await feedback.reject({ tenant: c.get("tenant"), id, keyId: actor(c) });
      if (changed) {
        await recordWrite({
          c,
          log: audit,
          action: "proposal.reject",
          route: "POST /v1/feedback/proposals/{id}/reject",
          itemIds: [id],
        });
      }
      return c.json({ proposal: proposalToJson(proposal), changed }, 200);
    });
}
