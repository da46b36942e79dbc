/**
 * POST /v1/recommend — items like the positives and unlike the negatives, never the inputs themselves.
 * Body: `{ positive: [ids], negative?: [ids], kinds?, topK?, filter?, diversity? }`.
 */
import { z } from "@hono/zod-openapi";
import type { RecommendService } from "../../recommend/index.ts";
import { MAX_NEGATIVE_IDS, MAX_POSITIVE_IDS, RECOMMEND_KINDS } from "../../recommend/index.ts";
import { MAX_SEARCH_TOP_K } from "../../search/index.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
} from "../openapi.ts";
import { filterSchema, searchResponseSchema } from "./search.ts";

const kindsText = RECOMMEND_KINDS.join(", ");
const topKMessage = `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}`;
const diversityMessage = "diversity must be a number from 0 (off) to 1";

const itemIdSchema = z
  .string({ error: "an item id must be a string (img_…, seg_…, tri_…)" })
  .min(1, "an item id must not be empty")
  .max(200, "an item id is at most 200 characters")
  .describe("An item id (img_…, seg_…, tri_…).");

/** `kinds`, `topK`, `filter` and `diversity`: the options every recommendation takes. */
export const recommendOptionsShape = {
  kinds: z
    .array(
      z.enum(RECOMMEND_KINDS as [string, ...string[]], {
        error: (issue) =>
          `unknown kind ${JSON.stringify(String(issue.input).slice(0, 40))}; allowed kinds: ${kindsText}`,
      }),
      { error: `kinds must be a list of ${kindsText}` },
    )
    .min(1, `kinds must list at least one of ${kindsText}`)
    .optional()
    .describe(`Kinds to recommend (${kindsText}); all of them when absent.`),
  topK: z
    .number({ error: topKMessage })
    .int(topKMessage)
    .min(1, topKMessage)
    .max(MAX_SEARCH_TOP_K, topKMessage)
    .optional()
    .describe(`Results wanted, 1–${MAX_SEARCH_TOP_K} (default 10).`),
  filter: filterSchema.optional(),
  diversity: z
    .number({ error: diversityMessage })
    .min(0, diversityMessage)
    .max(1, diversityMessage)
    .optional()
    .describe(
      "0 or absent: by relevance alone. d in (0, 1]: re-ranked by maximal marginal relevance (λ = 1 − d/2), and no two results have a cosine above 1 − 0.2·d unless the candidates (the 4·topK nearest, at least 40) hold fewer such items than topK.",
    ),
};

/** Body of POST /v1/recommend. */
export const recommendRequestSchema = z
  .object({
    positive: z
      .array(itemIdSchema, { error: `positive must be a list of 1–${MAX_POSITIVE_IDS} item ids` })
      .min(1, "positive must list at least one item id")
      .max(MAX_POSITIVE_IDS, `positive takes at most ${MAX_POSITIVE_IDS} ids`)
      .describe(`Items the results should be like, 1–${MAX_POSITIVE_IDS}.`),
    negative: z
      .array(itemIdSchema, { error: `negative must be a list of at most ${MAX_NEGATIVE_IDS} item ids` })
      .max(MAX_NEGATIVE_IDS, `negative takes at most ${MAX_NEGATIVE_IDS} ids`)
      .optional()
      .describe(`Items the results should be unlike, at most ${MAX_NEGATIVE_IDS}.`),
    ...recommendOptionsShape,
  })
  .strict()
  .meta({ id: "RecommendRequest" });

/** POST /v1/recommend. */
export const recommendRoute = defineRoute(
  {
    method: "post",
    path: "/v1/recommend",
    operationId: "recommend",
    tags: ["recommendations"],
    summary: "Items like these and unlike those",
    description:
      "The caller's items nearest to a Rocchio query (the positives' image centroid minus half the negatives'), blended, when the model pack detects objects, with the cosine of their objects to the object the positives share; optionally diversified. No input is ever among the results. See docs/recommendations.md.",
    request: {
      body: { content: { "application/json": { schema: recommendRequestSchema } }, required: true },
    },
    responses: {
      200: jsonResponse("Results, best first.", searchResponseSchema),
      400: invalidRequestResponse,
      404: errorResponse("An id names no item of the caller's tenant."),
      503: notReadyResponse,
    },
  },
  { access: { scope: "read", cost: 2 } },
);

/** The /v1/recommend route. */
export function createRecommendRoute({ recommend }: { recommend: RecommendService }) {
  return createRouter().openapi(recommendRoute, async (c) => {
    const body = c.req.valid("json");
    const result = await recommend.recommend({
      tenant: c.get("tenant"),
      positive: body.positive,
      negative: body.negative ?? [],
      kinds: body.kinds,
      topK: body.topK,
      filter: body.filter,
      diversity: body.diversity,
    });
    return c.json(result, 200);
  });
}
