/**
 * POST /v1/similar/{id} — recommendation: the caller's items most like the item `id` (its media embedded
 * again), never including the item itself. Body (optional, JSON): `{ kinds?, topK?, filter? }`.
 */
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { MediaError } from "../../errors.ts";
import type { SearchService } from "../../search/index.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
  payloadTooLargeResponse,
} from "../openapi.ts";
import { searchOptionsShape, searchResponseSchema } from "./search.ts";

/** Largest body: it holds options only, and 64 KiB is plenty for the largest filter. */
const MAX_SIMILAR_BODY_BYTES = 64 * 1024;

/** Body of POST /v1/similar/{id}; an empty body means the defaults. */
export const similarRequestSchema = z
  .object({ ...searchOptionsShape })
  .strict()
  .meta({ id: "SimilarRequest" });

/** The /v1/similar/{id} route. */
export function createSimilarRoute({ search }: { search: SearchService }) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/similar/{id}",
      operationId: "similar",
      tags: ["search"],
      summary: "Items like this one",
      description:
        "Recommendation: the caller's items nearest to the item's own embedding, excluding the item. The body is optional; empty, it means the defaults.",
      middleware: [
        bodyLimit({
          maxSize: MAX_SIMILAR_BODY_BYTES,
          onError: () => {
            throw new MediaError("The request body is over 64 KiB; it holds only kinds, topK and filter.", {
              status: 413,
              code: "payload_too_large",
            });
          },
        }),
      ],
      request: {
        params: z.object({
          id: z
            .string()
            .min(1, "id must not be empty")
            .max(200, "id must be at most 200 characters")
            .describe("An item id (img_…, seg_…, tri_…)."),
        }),
        body: { content: { "application/json": { schema: similarRequestSchema } } },
      },
      responses: {
        200: jsonResponse("Results, best first.", searchResponseSchema),
        400: invalidRequestResponse,
        404: errorResponse("No item with that id for the caller."),
        413: payloadTooLargeResponse("64 KiB"),
        503: notReadyResponse,
      },
    },
    { access: { scope: "read", cost: 1 }, emptyJsonIsObject: true },
  );
  return createRouter().openapi(route, async (c) => {
    const body = c.req.valid("json");
    const result = await search.similar({
      tenant: c.get("tenant"),
      id: c.req.valid("param").id,
      kinds: body.kinds,
      topK: body.topK,
      filter: body.filter,
    });
    return c.json(result, 200);
  });
}
