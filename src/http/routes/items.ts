/**
 * DELETE /v1/items/{id} — deletes an item of the caller's tenant: an image (`img_…`), a video segment
 * (`seg_…`), a triple (`tri_…`) or a whole video (`vid_…`, all its segments). Its vectors go, and each
 * blob it used goes too unless another record (of any tenant) still refers to it. 200 with what was
 * removed; 404 when the tenant has no such item.
 */
import { Hono } from "hono";
import { z } from "zod";
import { deleteItem } from "../../ingest/items.ts";
import type { BlobStore } from "../../media/blob-store.ts";
import type { VectorStore } from "../../store/index.ts";
import type { AppEnv } from "../context.ts";

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
}

/** The /v1/items routes. */
export function createItemsRoute({ store, blobs }: ItemsRouteOptions): Hono<AppEnv> {
  return new Hono<AppEnv>().delete("/v1/items/:id", async (c) => {
    const deleted = await deleteItem({
      store,
      blobs,
      tenant: c.get("tenant"),
      id: c.req.param("id"),
    });
    c.get("logger").info({ deleted }, "item deleted");
    return c.json({ deleted } satisfies z.infer<typeof deleteItemResponseSchema>, 200);
  });
}
