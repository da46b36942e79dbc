/**
 * GET /v1/media/{id} and GET /v1/media/{id}/thumbnail — an item's stored original, or its thumbnail
 * (a video segment's or video's keyframe), streamed with its content type. The item is looked up for
 * the caller's tenant first, so another tenant's item answers 404 like one that does not exist. Blobs
 * are content-addressed, so the sha256 is a strong ETag and the bytes behind a URL never change.
 */
import { z } from "@hono/zod-openapi";
import { findMedia, type MediaVariant } from "../../ingest/items.ts";
import type { BlobStore } from "../../media/blob-store.ts";
import type { VectorStore } from "../../store/index.ts";
import type { AppContext } from "../context.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  notReadyResponse,
} from "../openapi.ts";

/** What the route uses. */
export interface MediaRouteOptions {
  store: VectorStore;
  blobs: BlobStore;
}

const mediaParamsSchema = z.object({
  id: z
    .string()
    .min(1, "id must not be empty")
    .max(200, "id must be at most 200 characters")
    .describe("An item id (img_…, seg_…, tri_…) or a video id (vid_…)."),
});

const binary = { schema: z.string().meta({ contentMediaType: "application/octet-stream" }) };

/** The responses of both variants. */
function mediaResponses(variant: string) {
  return {
    200: {
      description: `The ${variant}, with its own content type, a strong ETag and \`Cache-Control: private\`.`,
      content: { "image/*": binary, "video/*": binary },
    },
    304: { description: "Not modified: `If-None-Match` names the current ETag." },
    400: invalidRequestResponse,
    404: errorResponse(`No item with that id for the caller, or it has no stored ${variant}.`),
    503: notReadyResponse,
  };
}

/** GET /v1/media/{id}. */
export const mediaRoute = defineRoute(
  {
    method: "get",
    path: "/v1/media/{id}",
    operationId: "getMedia",
    tags: ["items"],
    summary: "An item's stored media",
    description: "The stored original, with the content type it was stored with.",
    request: { params: mediaParamsSchema },
    responses: mediaResponses("media"),
  },
  { access: { scope: "read", cost: 1 } },
);

/** GET /v1/media/{id}/thumbnail. */
export const thumbnailRoute = defineRoute(
  {
    method: "get",
    path: "/v1/media/{id}/thumbnail",
    operationId: "getThumbnail",
    tags: ["items"],
    summary: "An item's thumbnail",
    description: "The thumbnail image; for video segments and videos, the keyframe.",
    request: { params: mediaParamsSchema },
    responses: mediaResponses("thumbnail"),
  },
  { access: { scope: "read", cost: 1 } },
);

/** The /v1/media routes. */
export function createMediaRoute({ store, blobs }: MediaRouteOptions) {
  const serve = async (c: AppContext, id: string, variant: MediaVariant) => {
    const blob = await findMedia({ store, blobs, tenant: c.get("tenant"), id, variant });
    const etag = `"${blob.sha256}"`;
    const headers: Record<string, string> = {
      etag,
      // Per-tenant content: never kept by shared caches.
      "cache-control": "private, max-age=86400",
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; sandbox",
      "content-disposition": "inline",
    };
    if (c.req.header("if-none-match") === etag) return c.body(null, 304, headers);
    return c.body(blob.stream(), 200, {
      ...headers,
      "content-type": blob.contentType,
      "content-length": String(blob.size),
    });
  };
  return createRouter()
    .openapi(mediaRoute, (c) => serve(c, c.req.valid("param").id, "original"))
    .openapi(thumbnailRoute, (c) => serve(c, c.req.valid("param").id, "thumbnail"));
}
