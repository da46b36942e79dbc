/**
 * POST /v1/similar/{id} — recommendation: the caller's items most like the item `id` (its media embedded
 * again), never including the item itself. Body (optional, JSON): `{ kinds?, topK?, filter? }`.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { SearchService } from "../../search/index.ts";
import type { AppEnv } from "../context.ts";
import { parseRequest, queryBodyLimit, searchOptionsShape, type searchResponseSchema } from "./search.ts";

/** Body of POST /v1/similar/{id}; an empty body means the defaults. */
export const similarRequestSchema = z.object({ ...searchOptionsShape }).strict();

/** The /v1/similar/{id} route. */
export function createSimilarRoute({ search }: { search: SearchService }): Hono<AppEnv> {
  return new Hono<AppEnv>().post("/v1/similar/:id", queryBodyLimit, async (c) => {
    const text = await c.req.text();
    let input: unknown = {};
    if (text.trim().length > 0) {
      try {
        input = JSON.parse(text);
      } catch {
        input = undefined;
      }
    }
    const body = parseRequest(similarRequestSchema, input);
    const result = await search.similar({
      tenant: c.get("tenant"),
      id: c.req.param("id"),
      kinds: body.kinds,
      topK: body.topK,
      filter: body.filter,
    });
    return c.json(result satisfies z.infer<typeof searchResponseSchema>, 200);
  });
}
