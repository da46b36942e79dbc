/**
 * Loupe's MCP tools. Each one's input schema is built from the zod schemas of the HTTP route it calls
 * (so the two validate alike and describe alike), and each call goes to that route through an
 * {@link ApiDispatch}. A result carries the route's JSON as structured content and, serialized, as
 * text; media URLs are made absolute; search, ask and get_item add a few thumbnails as image content.
 * A route's error envelope becomes a tool error (`isError: true`) with its message and code.
 */
import { z } from "@hono/zod-openapi";
import type { CallToolResult, ImageContent, ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import type { Scope } from "../http/context.ts";
import { mediaRouteUrls } from "../http/media-urls.ts";
import { chatRequestSchema } from "../http/routes/chat.ts";
import { imagesJsonRequestSchema } from "../http/routes/images.ts";
import { listItemsQuerySchema, MAX_LIST_LIMIT } from "../http/routes/items.ts";
import { filterSchema, imageFieldSchema, searchRequestSchema } from "../http/routes/search.ts";
import { vqaRequestSchema } from "../http/routes/vqa.ts";
import type { ApiCall, ApiDispatch } from "./api-dispatch.ts";

/** Most thumbnails one result carries as image content. */
export const MAX_THUMBNAILS = 3;
/** Largest thumbnail sent as image content, in bytes; a larger one is left out (its URL is in the JSON). */
export const MAX_THUMBNAIL_BYTES = 256 * 1024;

/** What a tool call runs with. */
export interface ToolContext {
  /** Sends the call's requests to the HTTP API, as the caller. */
  api: ApiDispatch;
  /**
   * The URL media paths are made absolute under (`LOUPE_PUBLIC_URL`, else the address the MCP request
   * was sent to); absent (stdio): they stay paths of the API, valid on a `loupe serve` over the same data.
   */
  mediaBaseUrl?: string;
  /** Cancels the call. */
  signal: AbortSignal;
}

/** One tool: its declaration and what a call does. */
export interface LoupeTool {
  name: string;
  title: string;
  description: string;
  /** A zod object: the MCP SDK validates arguments with it and lists it as JSON Schema. */
  inputSchema: z.ZodObject;
  /** The scope a caller needs for the tool to be listed (its route checks the same scope again). */
  scope: Scope;
  annotations: ToolAnnotations;
  /** Runs a call whose arguments the SDK has validated against {@link LoupeTool.inputSchema}. */
  call(args: unknown, context: ToolContext): Promise<CallToolResult>;
}

function defineTool<Schema extends z.ZodObject>(tool: {
  name: string;
  title: string;
  description: string;
  inputSchema: Schema;
  scope: Scope;
  annotations: ToolAnnotations;
  call(args: z.output<Schema>, context: ToolContext): Promise<CallToolResult>;
}): LoupeTool {
  // The SDK parses the arguments with `inputSchema` before the call, so they have its output type.
  return { ...tool, call: (args, context) => tool.call(args as z.output<Schema>, context) };
}

/** A route's answer: its JSON body, or the tool error its error envelope becomes. */
type ApiAnswer = { ok: true; body: Record<string, unknown> } | { ok: false; result: CallToolResult };

async function callApi(context: ToolContext, call: Omit<ApiCall, "signal">): Promise<ApiAnswer> {
  const response = await context.api({ ...call, signal: context.signal });
  const text = await response.text();
  let body: unknown;
  try {
    body = text === "" ? {} : JSON.parse(text);
  } catch {
    body = undefined;
  }
  const object = isRecord(body) ? body : undefined;
  if (response.ok && object !== undefined) return { ok: true, body: object };
  return { ok: false, result: apiErrorResult(response.status, object) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A route's error envelope (with whatever it carries besides, e.g. a batch's items) as a tool error. */
function apiErrorResult(status: number, body: Record<string, unknown> | undefined): CallToolResult {
  const envelope = isRecord(body?.error) ? body.error : {};
  const code = typeof envelope.code === "string" ? envelope.code : "unexpected_response";
  const message =
    typeof envelope.message === "string"
      ? envelope.message
      : `Loupe's API answered ${status} without its error envelope.`;
  return {
    isError: true,
    content: [{ type: "text", text: `${message} (${status} ${code})` }],
    structuredContent: { ...body, error: { ...envelope, code, message }, status },
  };
}

/** A tool error of the adapter's own (not a route's), in the same shape as {@link apiErrorResult}. */
export function toolErrorResult(code: string, message: string): CallToolResult {
  return {
    isError: true,
    content: [{ type: "text", text: `${message} (${code})` }],
    structuredContent: { error: { code, message } },
  };
}

/** The JSON as structured content, the same serialized as text, then any images with their labels. */
function jsonResult(body: Record<string, unknown>, images: LabelledImage[] = []): CallToolResult {
  return {
    content: [
      { type: "text", text: JSON.stringify(body) },
      ...images.flatMap(({ label, image }) => [{ type: "text" as const, text: label }, image]),
    ],
    structuredContent: body,
  };
}

const URL_FIELDS = new Set(["mediaUrl", "thumbnailUrl"]);

/**
 * `value` with every `mediaUrl` and `thumbnailUrl` that is a path put under `baseUrl`, which may have a
 * path of its own (Loupe served under a prefix by a proxy). Items' `metadata` is the caller's own and
 * is left as it is.
 */
export function withAbsoluteUrls<Value>(value: Value, baseUrl: string | undefined): Value {
  if (baseUrl === undefined) return value;
  const base = baseUrl.replace(/\/+$/, "");
  const visit = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(visit);
    if (!isRecord(node)) return node;
    return Object.fromEntries(
      Object.entries(node).map(([key, child]) => [
        key,
        URL_FIELDS.has(key) && typeof child === "string" && child.startsWith("/")
          ? `${base}${child}`
          : key === "metadata"
            ? child
            : visit(child),
      ]),
    );
  };
  return visit(value) as Value;
}

interface LabelledImage {
  label: string;
  image: ImageContent;
}

/**
 * The thumbnails of the first {@link MAX_THUMBNAILS} `ids`, read through the media route as the caller.
 * One that cannot be had (no image, over {@link MAX_THUMBNAIL_BYTES}, the caller's rate spent) is left
 * out: the result's URLs still lead to it.
 */
async function thumbnails(context: ToolContext, ids: readonly string[]): Promise<LabelledImage[]> {
  const read = await Promise.all(
    [...new Set(ids)].slice(0, MAX_THUMBNAILS).map(async (id): Promise<LabelledImage | undefined> => {
      const response = await context.api({
        method: "GET",
        path: mediaRouteUrls.thumbnail(id),
        signal: context.signal,
      });
      const mimeType = (response.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
      const declared = Number(response.headers.get("content-length") ?? "0");
      if (!response.ok || !mimeType.startsWith("image/") || declared > MAX_THUMBNAIL_BYTES) {
        await response.body?.cancel();
        return undefined;
      }
      const bytes = Buffer.from(await response.arrayBuffer());
      if (bytes.length > MAX_THUMBNAIL_BYTES) return undefined;
      return {
        label: `Thumbnail of ${id}:`,
        image: { type: "image", data: bytes.toString("base64"), mimeType },
      };
    }),
  );
  return read.filter((image): image is LabelledImage => image !== undefined);
}

/** The ids of a list of result items (search results, citations of stored items). */
function idsOf(items: unknown, { stored = false }: { stored?: boolean } = {}): string[] {
  if (!Array.isArray(items)) return [];
  return items.flatMap((item) =>
    isRecord(item) && typeof item.id === "string" && (!stored || typeof item.mediaUrl === "string")
      ? [item.id]
      : [],
  );
}

const readOnly: ToolAnnotations = { readOnlyHint: true, openWorldHint: false };

const searchTool = defineTool({
  name: "search",
  title: "Search images, video segments and triples",
  description:
    "Searches the caller's indexed images, video segments and triples by a text query, an image (base64, a data URL, or a stored item's id to find similar ones), or both. Returns items best first, each with its id (use it with get_item, ask's images or vqa), score, kind, media and thumbnail URLs, OCR text and metadata; the first results' thumbnails follow as images. Same as POST /v1/search.",
  inputSchema: z.strictObject(searchRequestSchema.shape),
  scope: "read",
  annotations: { ...readOnly, title: "Search" },
  async call(args, context) {
    const answer = await callApi(context, { method: "POST", path: "/v1/search", body: args });
    if (!answer.ok) return answer.result;
    const images = await thumbnails(context, idsOf(answer.body.items));
    return jsonResult(withAbsoluteUrls(answer.body, context.mediaBaseUrl), images);
  },
});

// The chat route's request without `stream`: a tool call answers once.
const { stream: _stream, ...askShape } = chatRequestSchema.shape;

const askTool = defineTool({
  name: "ask",
  title: "Ask a question (cited answer)",
  description:
    "Answers a question from the caller's indexed images, video segments and triples and any images attached (base64, data URLs or stored items' ids): retrieves evidence, checks it with the VQA model, and writes an answer citing it as [id]. Returns the answer, whether the corpus answered it, a confidence, the citations (ids, media URLs, scores, and `boxes`: where the objects the answer is about are, normalized to the image, as the detection head found them) and the evidence considered; the verification lists where the detection head and the VQA head disagreed on a count or a side. The cited items' thumbnails follow as images. Same as POST /v1/chat.",
  inputSchema: z.strictObject(askShape),
  scope: "read",
  annotations: { ...readOnly, title: "Ask" },
  async call(args, context) {
    const answer = await callApi(context, { method: "POST", path: "/v1/chat", body: args });
    if (!answer.ok) return answer.result;
    const images = await thumbnails(context, idsOf(answer.body.citations, { stored: true }));
    return jsonResult(withAbsoluteUrls(answer.body, context.mediaBaseUrl), images);
  },
});

const vqaTool = defineTool({
  name: "vqa",
  title: "Answer a question about one image",
  description:
    "Runs the model pack's visual question answering head on one image (base64, a data URL, or a stored item's id) without retrieval: the most probable answers with their probabilities. Same as POST /v1/vqa.",
  inputSchema: z.strictObject({
    ...vqaRequestSchema.shape,
    // Required here: the route also takes a multipart upload, which a tool call cannot send.
    image: imageFieldSchema.describe(
      "The image: base64 bytes, a data URL (data:image/png;base64,…) or a stored item's id (img_…, seg_…, tri_…).",
    ),
  }),
  scope: "read",
  annotations: { ...readOnly, title: "Visual question answering" },
  async call(args, context) {
    const answer = await callApi(context, { method: "POST", path: "/v1/vqa", body: args });
    return answer.ok ? jsonResult(answer.body) : answer.result;
  },
});

/** Longest item id accepted (the item routes' limit). */
const MAX_ITEM_ID_LENGTH = 200;

const getItemTool = defineTool({
  name: "get_item",
  title: "Get an item",
  description:
    "One stored item of the caller by its id (img_…, seg_…, tri_…, as search and list_items return): kind, source, text, OCR text, metadata (tags, OCR lines), a video segment's video and span, a triple's question and answer, and its media and thumbnail URLs; its thumbnail follows as an image. Reads GET /v1/items with an id filter.",
  inputSchema: z.strictObject({
    id: z
      .string()
      .min(1)
      .max(MAX_ITEM_ID_LENGTH)
      .describe("An item id: img_…, seg_… or tri_…. A video's segments are listed by list_items."),
  }),
  scope: "read",
  annotations: { ...readOnly, title: "Get item" },
  async call({ id }, context) {
    const answer = await callApi(context, {
      method: "GET",
      path: "/v1/items",
      query: { filter: JSON.stringify([{ field: "id", op: "eq", value: id }]), limit: "1" },
    });
    if (!answer.ok) return answer.result;
    const [item] = Array.isArray(answer.body.items) ? answer.body.items : [];
    if (!isRecord(item)) {
      return toolErrorResult(
        "not_found",
        `No item with id ${JSON.stringify(id)} for this caller. Item ids (img_…, seg_…, tri_…) come from search and list_items; a video's segments are listed by list_items with the filter [{"field":"video_id","op":"eq","value":"vid_…"}].`,
      );
    }
    const withThumbnail = { ...item, thumbnailUrl: mediaRouteUrls.thumbnail(id) };
    return jsonResult(
      withAbsoluteUrls({ item: withThumbnail }, context.mediaBaseUrl),
      await thumbnails(context, [id]),
    );
  },
});

const listItemsTool = defineTool({
  name: "list_items",
  title: "List items",
  description:
    "Pages through the caller's stored items in id order, each exactly once: optionally one kind and a filter (the filter language of search). Pass the answer's nextCursor as cursor for the next page; it is absent on the last page. Same as GET /v1/items.",
  inputSchema: z.strictObject({
    kind: listItemsQuerySchema.shape.kind,
    filter: filterSchema.optional(),
    limit: z
      .number({ error: `limit must be an integer from 1 to ${MAX_LIST_LIMIT}` })
      .int(`limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
      .min(1, `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
      .max(MAX_LIST_LIMIT, `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
      .optional()
      .describe(listItemsQuerySchema.shape.limit.description ?? ""),
    cursor: listItemsQuerySchema.shape.cursor,
  }),
  scope: "read",
  annotations: { ...readOnly, title: "List items" },
  async call({ kind, filter, limit, cursor }, context) {
    const answer = await callApi(context, {
      method: "GET",
      path: "/v1/items",
      query: {
        kind,
        filter: filter === undefined ? undefined : JSON.stringify(filter),
        limit: limit === undefined ? undefined : String(limit),
        cursor,
      },
    });
    return answer.ok ? jsonResult(withAbsoluteUrls(answer.body, context.mediaBaseUrl)) : answer.result;
  },
});

const ingestUrlTool = defineTool({
  name: "ingest_url",
  title: "Ingest images from URLs",
  description:
    "Fetches images from http(s) URLs (public addresses only, within the server's size and type limits) and indexes them for the caller, each with optional metadata (tags, title, …). Returns one item per URL in order with its id and status (stored, skipped when already indexed, failed with the reason); many URLs run as a job. Same as POST /v1/images with JSON urls. Offered only to keys with the ingest scope.",
  inputSchema: z.strictObject(imagesJsonRequestSchema.shape),
  scope: "ingest",
  annotations: {
    title: "Ingest URLs",
    readOnlyHint: false,
    destructiveHint: false,
    idempotentHint: true,
    openWorldHint: true,
  },
  async call(args, context) {
    const answer = await callApi(context, { method: "POST", path: "/v1/images", body: args });
    return answer.ok ? jsonResult(answer.body) : answer.result;
  },
});

/** Every tool, in the order they are listed. */
export const LOUPE_TOOLS: readonly LoupeTool[] = [
  searchTool,
  askTool,
  vqaTool,
  getItemTool,
  listItemsTool,
  ingestUrlTool,
];
