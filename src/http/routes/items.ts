/**
 * GET /v1/items — pages through every item of the caller's tenant, in id order, each exactly once:
 * `kind` (one kind, or all of image, video_segment and triple in turn), `filter` (the JSON filter of
 * /v1/search), `limit` (1–1000, default 100) and `cursor` (the `nextCursor` of the previous page).
 *
 * DELETE /v1/items/{id} — deletes an item of the caller's tenant: an image (`img_…`), a video segment
 * (`seg_…`), a triple (`tri_…`) or a whole video (`vid_…`, all its segments). Its vectors go, and each
 * blob it used goes too unless another record (of any tenant) still refers to it. 200 with what was
 * removed; 404 when the tenant has no such item.
 */
import { z } from "@hono/zod-openapi";
import type { AuditLog } from "../../audit/audit-log.ts";
import { ValidationError } from "../../errors.ts";
import { deleteItem } from "../../ingest/items.ts";
import type { BlobStore } from "../../media/blob-store.ts";
import {
  type FilterSpec,
  ITEM_KINDS,
  isValidRecordId,
  MAX_LIST_LIMIT,
  parseFilterSpec,
  RECORD_KINDS,
  type RecordKind,
  type StoredRecord,
  type VectorStore,
} from "../../store/index.ts";
import { recordWrite } from "../batch-outcome.ts";
import { mediaRouteUrls } from "../media-urls.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
} from "../openapi.ts";
import { searchResultItemSchema } from "./search.ts";

/** Body of a 200 from `DELETE /v1/items/{id}`. */
export const deleteItemResponseSchema = z.object({
  deleted: z.object({
    id: z.string(),
    kind: z.enum(["image", "video_segment", "triple", "region", "video"]),
    records: z.number().int().describe("records removed from the store (a video: its segments)"),
    blobsRemoved: z.number().int().describe("stored files removed because nothing refers to them any more"),
  }),
});

// The store owns the page limit; the MCP adapter declares it in its list_items tool too.
export { MAX_LIST_LIMIT } from "../../store/index.ts";

/** Default page size of `GET /v1/items`. */
export const DEFAULT_LIST_LIMIT = 100;

const kindsText = RECORD_KINDS.join(", ");

/** Query parameters of `GET /v1/items`. */
export const listItemsQuerySchema = z.object({
  kind: z
    .enum(RECORD_KINDS as unknown as [RecordKind, ...RecordKind[]], {
      error: (issue) => `unknown kind ${JSON.stringify(issue.input)}; allowed kinds: ${kindsText}`,
    })
    .optional()
    .describe(
      `One kind to list (${kindsText}); ${ITEM_KINDS.join(", ")} in that order when absent (regions, the objects found in images, only when named).`,
    ),
  filter: z
    .string()
    // Percent-encoded, a longer filter could pass Node's 16 KiB limit on the request line (431).
    .max(
      4096,
      "filter is at most 4096 characters of JSON (a longer query string would pass the 16 KiB request-line limit)",
    )
    .optional()
    .describe("The filter as JSON (see SearchRequest.filter); only matching items are listed."),
  limit: z
    .string()
    .regex(/^[0-9]{1,4}$/, `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
    .refine((value) => {
      const limit = Number(value);
      return limit >= 1 && limit <= MAX_LIST_LIMIT;
    }, `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
    .optional()
    .describe(`Most items in the page, 1–${MAX_LIST_LIMIT} (default ${DEFAULT_LIST_LIMIT}).`),
  cursor: z
    .string()
    .max(512)
    .optional()
    .describe("The nextCursor of the previous page; absent for the first page. Opaque."),
});

/** One listed item. */
export const listedItemSchema = searchResultItemSchema
  .omit({ score: true, thumbnailUrl: true, textMatches: true })
  .extend({
    kind: z.enum(RECORD_KINDS as unknown as [RecordKind, ...RecordKind[]]),
    modelId: z.string().describe("The model pack that embedded it."),
  })
  .meta({ id: "ListedItem" });

/** Body of a 200 from `GET /v1/items`. */
export const listItemsResponseSchema = z
  .object({
    items: z.array(listedItemSchema),
    nextCursor: z
      .string()
      .optional()
      .describe("Pass it as cursor for the next page; absent on the last page. A page may be empty."),
  })
  .meta({ id: "ItemList" });

/** Where a listing stands: the kind being listed and the last id returned of it. */
interface ListPosition {
  kind: RecordKind;
  after?: string;
}

const CURSOR_VERSION = 1;

/** The opaque cursor of a position: base64url of a small JSON object. */
export function encodeListCursor({ kind, after }: ListPosition): string {
  return Buffer.from(
    JSON.stringify({ v: CURSOR_VERSION, k: kind, ...(after === undefined ? {} : { a: after }) }),
  ).toString("base64url");
}

/**
 * The position a cursor names. Only the position travels in it: the tenant is always the caller's, so a
 * cursor made for another tenant lists the caller's own items, never the other tenant's.
 *
 * @throws ValidationError when the cursor is not one this server made.
 */
export function decodeListCursor(cursor: string): ListPosition {
  const invalid = () =>
    new ValidationError(
      "The cursor is malformed: pass the nextCursor of the previous page unchanged, or omit cursor to start over.",
      { context: { cursor: cursor.slice(0, 80) } },
    );
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  if (typeof decoded !== "object" || decoded === null || Array.isArray(decoded)) throw invalid();
  const { v, k, a, ...rest } = decoded as Record<string, unknown>;
  if (
    v !== CURSOR_VERSION ||
    Object.keys(rest).length > 0 ||
    !RECORD_KINDS.includes(k as RecordKind) ||
    (a !== undefined && (typeof a !== "string" || !isValidRecordId(a)))
  ) {
    throw invalid();
  }
  return a === undefined ? { kind: k as RecordKind } : { kind: k as RecordKind, after: a as string };
}

function parseFilterParameter(filter: string | undefined): FilterSpec | undefined {
  if (filter === undefined || filter === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(filter);
  } catch {
    throw new ValidationError(
      `filter must be JSON (a list of conditions, as in /v1/search); got ${JSON.stringify(filter.slice(0, 80))}.`,
    );
  }
  return parseFilterSpec(parsed);
}

function listedItem(record: StoredRecord): z.infer<typeof listedItemSchema> {
  const item = {
    kind: record.kind,
    id: record.id,
    mediaUrl: mediaRouteUrls.media(record.id),
    source: record.source,
    modelId: record.modelId,
    createdAt: record.createdAt,
    text: record.text,
    ocrText: record.ocrText ?? "",
    metadata: record.metadata,
  };
  if (record.kind === "video_segment") {
    return { ...item, videoId: record.videoId, start: record.startS, end: record.endS };
  }
  if (record.kind === "triple") return { ...item, question: record.question, answer: record.answer };
  if (record.kind === "region") {
    const { parentId, parentKind, box, label, attributes, score } = record;
    return { ...item, region: { parentId, parentKind, box, label, attributes, score } };
  }
  return item;
}

/** GET /v1/items. */
export const listItemsRoute = defineRoute(
  {
    method: "get",
    path: "/v1/items",
    operationId: "listItems",
    tags: ["items"],
    summary: "List items",
    description:
      "Every item of the caller's tenant, page by page in id order, each exactly once: follow nextCursor until it is absent. Items written while paging appear if their id sorts after the page in hand.",
    request: { query: listItemsQuerySchema },
    responses: {
      200: jsonResponse("One page of items.", listItemsResponseSchema),
      400: invalidRequestResponse,
      503: notReadyResponse,
    },
  },
  { access: { scope: "read", cost: 1 } },
);

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
  return createRouter()
    .openapi(listItemsRoute, async (c) => {
      const query = c.req.valid("query");
      const tenant = c.get("tenant");
      const filter = parseFilterParameter(query.filter);
      const limit = query.limit === undefined ? DEFAULT_LIST_LIMIT : Number(query.limit);
      const kinds: readonly RecordKind[] = query.kind === undefined ? ITEM_KINDS : [query.kind];
      const start: ListPosition =
        query.cursor === undefined ? { kind: kinds[0] ?? "image" } : decodeListCursor(query.cursor);
      const first = kinds.indexOf(start.kind);
      if (first === -1) {
        throw new ValidationError(
          `The cursor continues a listing of ${start.kind} items, not of ${kinds.join(", ")}: keep the kind of the first page, or omit cursor to start over.`,
          { context: { cursorKind: start.kind, kind: query.kind } },
        );
      }
      const items: StoredRecord[] = [];
      let next: ListPosition | undefined;
      for (let index = first; index < kinds.length; index += 1) {
        const kind = kinds[index] as RecordKind;
        if (items.length === limit) {
          next = { kind };
          break;
        }
        const page = await store.list({
          kind,
          tenant,
          filter,
          limit: limit - items.length,
          ...(index === first && start.after !== undefined ? { after: start.after } : {}),
        });
        items.push(...page.rows);
        if (page.nextAfter !== undefined) {
          next = { kind, after: page.nextAfter };
          break;
        }
      }
      return c.json(
        {
          items: items.map(listedItem),
          ...(next === undefined ? {} : { nextCursor: encodeListCursor(next) }),
        },
        200,
      );
    })
    .openapi(deleteItemRoute, async (c) => {
      const deleted = await deleteItem({
        store,
        blobs,
        tenant: c.get("tenant"),
        id: c.req.valid("param").id,
      });
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
