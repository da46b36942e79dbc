/**
 * GET /v1/media/{id} and GET /v1/media/{id}/thumbnail — an item's stored original, or its thumbnail
 * (a video segment's or video's keyframe), streamed with its content type. The item is looked up for
 * the caller's tenant first, so another tenant's item answers 404 like one that does not exist. Blobs
 * are content-addressed, so the sha256 is a strong ETag and the bytes behind a URL never change. A
 * signed link from a chat answer (`exp`, `kid`, `sig`) opens without a key; the authentication
 * middleware checks it (`../auth/signed-media.ts`).
 *
 * Both answer single byte ranges (`Range: bytes=…`, with `If-Range` on the ETag) with 206 and only the
 * bytes asked for, read from that offset of the file, so a `<video>` seeks into a long video without
 * the whole of it being read (`../byte-range.ts` says which headers are served how). HEAD answers the
 * headers of GET and opens no file.
 */
import { z } from "@hono/zod-openapi";
import { findMedia, type MediaVariant } from "../../ingest/items.ts";
import type { BlobStore } from "../../media/blob-store.ts";
import type { VectorStore } from "../../store/index.ts";
import { ifRangeHolds, parseRange } from "../byte-range.ts";
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

/** The query of a signed link; checked before the route by the authentication middleware. */
const signedLinkQuerySchema = z.object({
  exp: z.string().max(20).optional().describe("Signed links: the expiry, in Unix seconds."),
  kid: z.string().max(40).optional().describe("Signed links: the id of the key the link was made for."),
  sig: z.string().max(100).optional().describe("Signed links: the signature."),
});

const binary = { schema: z.string().meta({ contentMediaType: "application/octet-stream" }) };

/** The responses of both variants. */
function mediaResponses(variant: string) {
  return {
    200: {
      description: `The ${variant}, with its own content type, a strong ETag, \`Accept-Ranges: bytes\` and \`Cache-Control: private\`. Also the answer to a \`Range\` of more than one range, of another unit or that cannot be read, and to one whose \`If-Range\` is not the current ETag.`,
      content: { "image/*": binary, "video/*": binary },
    },
    206: {
      description:
        "One byte range (`Range: bytes=a-b`, `bytes=a-` or `bytes=-n`): only those bytes, with `Content-Range: bytes a-b/size`.",
      headers: z.object({
        "Content-Range": z.string().describe("`bytes <first>-<last>/<size>`."),
      }),
      content: { "image/*": binary, "video/*": binary },
    },
    304: { description: "Not modified: `If-None-Match` names the current ETag." },
    400: invalidRequestResponse,
    401: {
      ...errorResponse(
        "No API key, or one that is unknown, revoked or expired (code `unauthorized` or `invalid_api_key`); or a signed link that was altered, has expired, or whose key is no longer active (code `invalid_media_link`). Only while at least one key exists and LOUPE_AUTH is not `none`.",
      ),
      headers: z.object({
        "WWW-Authenticate": z.string().describe('Always `Bearer realm="loupe"`.'),
      }),
    },
    404: errorResponse(`No item with that id for the caller, or it has no stored ${variant}.`),
    416: {
      description:
        "The range starts at or past the end of the file (or asks for an empty suffix): no body, `Content-Range: bytes */<size>`.",
      headers: z.object({
        "Content-Range": z.string().describe("`bytes */<size>`."),
      }),
    },
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
    description:
      "The stored original, with the content type it was stored with. While API keys are on, a signed link (the `url_citation` URLs of chat answers, with `exp`, `kid` and `sig`) opens it without a key until it expires or its key is revoked.",
    request: { params: mediaParamsSchema, query: signedLinkQuerySchema },
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
    description:
      "The thumbnail image; for video segments and videos, the keyframe. Opens with a signed link like GET /v1/media/{id}.",
    request: { params: mediaParamsSchema, query: signedLinkQuerySchema },
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
      "accept-ranges": "bytes",
      // Per-tenant content: never kept by shared caches.
      "cache-control": "private, max-age=86400",
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; sandbox",
      "content-disposition": "inline",
    };
    if (c.req.header("if-none-match") === etag) return c.body(null, 304, headers);
    // Hono answers HEAD with GET's handler and drops the body: no file is opened for it.
    const head = c.req.method === "HEAD";
    const range = ifRangeHolds(c.req.header("if-range"), etag)
      ? parseRange(c.req.header("range"), blob.size)
      : ({ kind: "whole" } as const);
    if (range.kind === "unsatisfiable") {
      return c.body(null, 416, { ...headers, "content-range": `bytes */${blob.size}` });
    }
    headers["content-type"] = blob.contentType;
    if (range.kind === "partial") {
      const { start, end } = range;
      headers["content-length"] = String(end - start + 1);
      headers["content-range"] = `bytes ${start}-${end}/${blob.size}`;
      return head ? c.body(null, 206, headers) : c.body(blob.stream({ start, end }), 206, headers);
    }
    headers["content-length"] = String(blob.size);
    return head ? c.body(null, 200, headers) : c.body(blob.stream(), 200, headers);
  };
  return createRouter()
    .openapi(mediaRoute, (c) => serve(c, c.req.valid("param").id, "original"))
    .openapi(thumbnailRoute, (c) => serve(c, c.req.valid("param").id, "thumbnail"));
}
