/**
 * DELETE /v1/items/{id} — deletes an item of the caller's tenant: an image (`img_…`), a video segment
 * (`seg_…`), a triple (`tri_…`) or a whole video (`vid_…`, all its segments). Its vectors go, and each
 * blob it used goes too unless another record (of any tenant) still refers to it. 200 with what was
 * removed; 404 when the tenant has no such item.
 */
import { z } from "@hono/zod-openapi";
import type { AuditLog } from "../../audit/audit-log.ts";
import { deleteItem } from "../../ingest/items.ts";
import type { BlobStore } from "../../media/blob-store.ts";
import type { VectorStore } from "../../store/index.ts";
import { recordWrite } from "../batch-outcome.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
} from "../openapi.ts";

/** Body of a 200 from `DELETE /v1/items/{id}`. */
export const deleteItemResponseSchema = z.object({
  deleted: z.object({
    id: z.string(),
    kind: z.enum(["image", "video_segment", "triple", "video"]),
    records: z.number().int().describe("records removed from the store (a video: its segments)"),
    blobsRemoved: z.number().int().describe("stored files removed because nothing refers to them any more"),
  }),
});

/** What the route uses. */
export interface ItemsRouteOptions {
  store: VectorStore;
  blobs: BlobStore;
  /** The audit trail: each delete is recorded as a `delete` line. */
  audit?: AuditLog;
}

/** DELETE /v1/items/{id}. */
export const deleteItemRoute = defineRoute(
  {
    method: "delete",
    path: "/v1/items/{id}",
    operationId: "deleteItem",
    tags: ["items"],
    summary: "Delete an item",
    description:
      "Removes the vectors and, once nothing refers to them, the blobs; a video id (vid_…) removes all its segments.",
    request: {
      params: z.object({
        id: z.string().min(1).max(200).describe("An item id (img_…, seg_…, tri_…) or a video id (vid_…)."),
      }),
    },
    responses: {
      200: jsonResponse("What was removed.", deleteItemResponseSchema),
      400: invalidRequestResponse,
      404: errorResponse("No such item for the caller."),
      503: notReadyResponse,
    },
  },
  { access: { scope: "delete", cost: 1 } },
);

/** The /v1/items routes. */
export function createItemsRoute({ store, blobs, audit }: ItemsRouteOptions) {
  return createRouter().openapi(deleteItemRoute, async (c) => {
    const deleted = await deleteItem({ store, blobs, tenant: c.get("tenant"), id: c.req.valid("param").id });
    c.get("logger").info({ deleted }, "item deleted");
    await recordWrite({
      c,
      log: audit,
      action: "delete",
      route: "DELETE /v1/items/{id}",
      itemIds: [deleted.id],
      detail: { kind: deleted.kind, records: deleted.records, blobsRemoved: deleted.blobsRemoved },
    });
    return c.json({ deleted }, 200);
  });
}
