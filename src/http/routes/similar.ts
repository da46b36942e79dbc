/**
 * POST /v1/similar/{id} — recommendation: the caller's items most like the item `id` (its media embedded
 * again), never including the item itself. Body (optional, JSON): `{ kinds?, topK?, filter? }`.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { MediaError, ValidationError } from "../../errors.ts";
import type { SearchService } from "../../search/index.ts";
import type { AppEnv } from "../context.ts";
import { parseRequest, searchOptionsShape, type searchResponseSchema } from "./search.ts";

const tooLarge = (): never => {
  throw new MediaError("The request body is over 64 KiB; it holds only kinds, topK and filter.", {
    status: 413,
    code: "payload_too_large",
  });
};

/** Body of POST /v1/similar/{id}; an empty body means the defaults. */
export const similarRequestSchema = z.object({ ...searchOptionsShape }).strict();

/** The /v1/similar/{id} route. */
export function createSimilarRoute({ search }: { search: SearchService }): Hono<AppEnv> {
  // The body holds options only; 64 KiB is plenty for the largest filter.
  return new Hono<AppEnv>().post(
    "/v1/similar/:id",
    bodyLimit({ maxSize: 64 * 1024, onError: tooLarge }),
    async (c) => {
      const text = await c.req.text();
      let input: unknown = {};
      if (text.trim().length > 0) {
        try {
          input = JSON.parse(text);
        } catch {
          throw new ValidationError(
            "The request body is not valid JSON; send { kinds?, topK?, filter? } or nothing.",
          );
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
    },
  );
}
