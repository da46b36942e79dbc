/**
 * GET /v1/media/{id} and GET /v1/media/{id}/thumbnail — an item's stored original, or its thumbnail
 * (a video segment's or video's keyframe), streamed with its content type. The item is looked up for
 * the caller's tenant first, so another tenant's item answers 404 like one that does not exist. Blobs
 * are content-addressed, so the sha256 is a strong ETag and the bytes behind a URL never change.
 */
import { Hono } from "hono";
import { findMedia, type MediaVariant } from "../../ingest/items.ts";
import type { BlobStore } from "../../media/blob-store.ts";
import type { VectorStore } from "../../store/index.ts";
import type { AppContext, AppEnv } from "../context.ts";

/** What the route uses. */
export interface MediaRouteOptions {
  store: VectorStore;
  blobs: BlobStore;
}

/** The /v1/media routes. */
export function createMediaRoute({ store, blobs }: MediaRouteOptions): Hono<AppEnv> {
  const serve = async (c: AppContext, variant: MediaVariant) => {
    const blob = await findMedia({
      store,
      blobs,
      tenant: c.get("tenant"),
      id: c.req.param("id") ?? "",
      variant,
    });
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
  return new Hono<AppEnv>()
    .get("/v1/media/:id", (c) => serve(c, "original"))
    .get("/v1/media/:id/thumbnail", (c) => serve(c, "thumbnail"));
}
