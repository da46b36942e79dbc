/**
 * Users' events and the recommendations ranked from them:
 *
 * - `POST /v1/events` `{ user, item, type: view|like|dislike|select, at? }` records one interaction;
 * - `GET /v1/users/{user}/recommendations` ranks from the user's profile (`recommend/profile.ts`);
 * - `DELETE /v1/users/{user}` removes every event of the user.
 *
 * API keys are not bound to users: a user id is the application's own name for one of its users, and
 * any secret key of the tenant with the route's scope may act for any user id of the tenant (publishable
 * keys, which run in browsers, may not call these routes). Users of different tenants never meet.
 */
import { z } from "@hono/zod-openapi";
import { ValidationError } from "../../errors.ts";
import type { RecommendService } from "../../recommend/index.ts";
import { EVENT_TYPES, USER_ID_PATTERN } from "../../recommend/index.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
} from "../openapi.ts";
import { searchResultItemSchema } from "./search.ts";

const userMessage = "a user id is 1–128 letters, digits and . _ : @ + -, starting with a letter or digit";
const typesText = EVENT_TYPES.join(", ");

const userIdSchema = z
  .string({ error: userMessage })
  .regex(USER_ID_PATTERN, userMessage)
  .describe("The application's id of the user: 1–128 letters, digits and . _ : @ + -.");

/** Body of POST /v1/events. */
export const eventRequestSchema = z
  .object({
    user: userIdSchema,
    item: z
      .string({ error: "item must be an item id (img_…, seg_…, tri_…)" })
      .min(1, "item must not be empty")
      .max(200, "item is at most 200 characters")
      .describe("The item interacted with (img_…, seg_…, tri_…); one of the caller's tenant."),
    type: z
      .enum(EVENT_TYPES, {
        error: (issue) =>
          issue.input === undefined
            ? `type is required; allowed: ${typesText}`
            : `unknown event type ${JSON.stringify(String(issue.input).slice(0, 40))}; allowed: ${typesText}`,
      })
      .describe(
        "view (+0.1), select (+0.5), like (+1) or dislike (−1): how much the event counts, before decay.",
      ),
    at: z.iso
      .datetime({ offset: true, error: "at must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z" })
      .optional()
      .describe(
        "When it happened (ISO 8601); now when absent. At most 5 minutes ahead of the server's clock.",
      ),
  })
  .strict()
  .meta({ id: "EventRequest" });

const eventSchema = z
  .object({
    user: z.string(),
    item: z.string(),
    type: z.enum(EVENT_TYPES),
    at: z.string().describe("ISO 8601."),
  })
  .meta({ id: "Event" });

const userParamsSchema = z.object({ user: userIdSchema });

const topKMessage = "topK must be an integer from 1 to 100";
const diversityMessage = "diversity must be a number from 0 (off) to 1";

/** Query of GET /v1/users/{user}/recommendations: the options of POST /v1/recommend as parameters. */
const userRecommendationsQuerySchema = z
  .object({
    kinds: z
      .string()
      .max(200, "kinds is at most 200 characters")
      .optional()
      .describe(
        "Comma-separated kinds to recommend (image, video_segment, triple); all of them when absent.",
      ),
    topK: z
      .string()
      .regex(/^[0-9]{1,3}$/, topKMessage)
      .refine((value) => Number(value) >= 1 && Number(value) <= 100, topKMessage)
      .optional()
      .describe("Results wanted, 1–100 (default 10)."),
    filter: z
      .string()
      .max(4096, "filter is at most 4096 characters of JSON")
      .optional()
      .describe("A filter as JSON (see Filter); only matching items are recommended."),
    diversity: z
      .string()
      .regex(/^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$/, diversityMessage)
      .optional()
      .describe("0 (off) to 1; see POST /v1/recommend."),
  })
  .strict();

/** POST /v1/events. */
export const recordEventRoute = defineRoute(
  {
    method: "post",
    path: "/v1/events",
    operationId: "recordEvent",
    tags: ["recommendations"],
    summary: "Record a user's interaction",
    description:
      "Appends one event to the user's history (per tenant, kept across restarts). The item must be one of the caller's tenant. Keys are not bound to users: the caller names the user.",
    request: { body: { content: { "application/json": { schema: eventRequestSchema } }, required: true } },
    responses: {
      201: jsonResponse("The event as recorded.", z.object({ event: eventSchema })),
      400: invalidRequestResponse,
      404: errorResponse("The item is not one of the caller's tenant."),
      503: notReadyResponse,
    },
  },
  { access: { scope: "read", cost: 1 } },
);

/** GET /v1/users/{user}/recommendations. */
export const userRecommendationsRoute = defineRoute(
  {
    method: "get",
    path: "/v1/users/{user}/recommendations",
    operationId: "userRecommendations",
    tags: ["recommendations"],
    summary: "Recommendations for a user",
    description:
      "Ranked from the user's events, each weighted by type and halved every LOUPE_EVENTS_HALF_LIFE_HOURS (7 days by default); never an item the user interacted with. A user without a positive event gets no results.",
    request: { params: userParamsSchema, query: userRecommendationsQuerySchema },
    responses: {
      200: jsonResponse(
        "Results, best first, and what they were ranked from.",
        z
          .object({
            items: z.array(searchResultItemSchema),
            profile: z.object({
              events: z.number().int().describe("Events of the user kept."),
              positives: z.number().int().describe("Items counting for the user (at most 50)."),
              negatives: z.number().int().describe("Items counting against (at most 50)."),
            }),
          })
          .meta({ id: "UserRecommendations" }),
      ),
      400: invalidRequestResponse,
      503: notReadyResponse,
    },
  },
  { access: { scope: "read", cost: 2 } },
);

/** DELETE /v1/users/{user}. */
export const deleteUserRoute = defineRoute(
  {
    method: "delete",
    path: "/v1/users/{user}",
    operationId: "deleteUser",
    tags: ["recommendations"],
    summary: "Delete a user's events",
    description: "Removes every event of the user in the caller's tenant, from disk and memory.",
    request: { params: userParamsSchema },
    responses: {
      200: jsonResponse("How many events were removed.", z.object({ deleted: z.number().int() })),
      400: invalidRequestResponse,
      503: notReadyResponse,
    },
  },
  { access: { scope: "delete", cost: 1 } },
);

/** A filter sent as a query parameter: JSON of a Filter. */
function parseFilterParameter(filter: string | undefined): unknown {
  if (filter === undefined || filter === "") return undefined;
  try {
    return JSON.parse(filter);
  } catch {
    throw new ValidationError(
      `filter must be JSON (a list of conditions, as in /v1/search); got ${JSON.stringify(filter.slice(0, 80))}.`,
    );
  }
}

/** The events and users routes. */
export function createEventsRoute({ recommend }: { recommend: RecommendService }) {
  return createRouter()
    .openapi(recordEventRoute, async (c) => {
      const body = c.req.valid("json");
      const event = await recommend.recordEvent({
        tenant: c.get("tenant"),
        event: {
          user: body.user,
          item: body.item,
          type: body.type,
          ...(body.at === undefined ? {} : { at: Date.parse(body.at) }),
        },
      });
      return c.json({ event: { ...event, at: new Date(event.at).toISOString() } }, 201);
    })
    .openapi(userRecommendationsRoute, async (c) => {
      const query = c.req.valid("query");
      const result = await recommend.userRecommendations({
        tenant: c.get("tenant"),
        user: c.req.valid("param").user,
        kinds: query.kinds?.split(",").map((kind) => kind.trim()),
        topK: query.topK === undefined ? undefined : Number(query.topK),
        filter: parseFilterParameter(query.filter),
        diversity: query.diversity === undefined ? undefined : Number(query.diversity),
      });
      return c.json(result, 200);
    })
    .openapi(deleteUserRoute, async (c) => {
      const result = await recommend.deleteUser({ tenant: c.get("tenant"), user: c.req.valid("param").user });
      c.get("logger").info({ events: result.deleted }, "user events deleted");
      return c.json(result, 200);
    });
}
