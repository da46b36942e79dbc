/**
 * GET /v1/items over a real Milvus Lite: paging through 330 items of three kinds with small pages gets
 * each exactly once, in id order, also across a flush and with writes between pages; filters; one kind;
 * malformed cursors and parameters answer 400 in the error envelope; another tenant's cursor lists only
 * the caller's own items.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLoupeClient } from "../../../src/client/index.ts";
import { encodeListCursor } from "../../../src/http/routes/items.ts";
import {
  collectionName,
  createMilvusClient,
  createVectorStore,
  type ImageRecord,
  type MilvusVectorStore,
  type TripleRecord,
  type VideoSegmentRecord,
} from "../../../src/store/index.ts";
import { makeTestApp } from "../../helpers/app.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../../helpers/milvus-lite.ts";

const DIM = 8;
const TENANT_HEADER = "x-test-tenant";
const IMAGES = 200;
const SEGMENTS = 70;
const TRIPLES = 60;

interface ListedItem {
  kind: string;
  id: string;
  mediaUrl: string;
  metadata: Record<string, unknown>;
  videoId?: string;
  question?: string;
}
interface ListBody {
  items: ListedItem[];
  nextCursor?: string;
}
interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

const vector = (seed: number) => Array.from({ length: DIM }, (_, axis) => Math.cos(seed * 0.37 + axis));
const hex = (index: number) => index.toString(16).padStart(32, "0");
const base = { modelId: "test", mediaRef: "none", source: "test" };

function images(count: number, start = 0): ImageRecord[] {
  return Array.from({ length: count }, (_, offset) => {
    const index = start + offset;
    return { ...base, id: `img_${hex(index)}`, vector: vector(index), metadata: { parity: index % 2 } };
  });
}

let lite: TestMilvusLite;
let store: MilvusVectorStore;
let app: ReturnType<typeof makeTestApp>;
const prefix = uniquePrefix("items");

beforeAll(async () => {
  lite = await startTestMilvusLite();
  // Flushes every 128 rows, so the listing crosses sealed segments and the growing one.
  store = await createVectorStore({
    address: lite.address,
    collectionPrefix: prefix,
    dimension: DIM,
    flushEveryRows: 128,
  });
  // Written in three batches in reverse order, so insertion order is not id order.
  const all = images(IMAGES).reverse();
  for (let start = 0; start < all.length; start += 70) {
    await store.upsert({ kind: "image", tenant: "alpha", records: all.slice(start, start + 70) });
  }
  const segments: VideoSegmentRecord[] = Array.from({ length: SEGMENTS }, (_, index) => ({
    ...base,
    id: `seg_${hex(index)}`,
    vector: vector(1000 + index),
    videoId: `vid_${hex(index % 7)}`,
    startS: index,
    endS: index + 1,
    metadata: { parity: index % 2 },
  }));
  await store.upsert({ kind: "video_segment", tenant: "alpha", records: segments });
  const triples: TripleRecord[] = Array.from({ length: TRIPLES }, (_, index) => ({
    ...base,
    id: `tri_${hex(index)}`,
    imageVector: vector(2000 + index),
    questionVector: vector(3000 + index),
    question: `question ${index}`,
    answer: "yes",
    metadata: { parity: index % 2 },
  }));
  await store.upsert({ kind: "triple", tenant: "alpha", records: triples });
  // Another tenant with ids that interleave alpha's.
  await store.upsert({
    kind: "image",
    tenant: "beta",
    records: images(40, 100).map((r) => ({ ...r, metadata: { beta: 1 } })),
  });
  app = makeTestApp({ store, resolveTenant: (c) => c.req.header(TENANT_HEADER) ?? "alpha" });
}, 60_000);

afterAll(async () => {
  await store?.close();
  await lite?.dispose();
});

async function list(tenant: string, query: Record<string, string>): Promise<Response> {
  return app.request(`/v1/items?${new URLSearchParams(query).toString()}`, {
    headers: { [TENANT_HEADER]: tenant },
  });
}

/** Follows nextCursor from the first page to the last, returning every item and the page count. */
async function listAll(
  tenant: string,
  query: Record<string, string>,
  between?: (page: number) => Promise<void>,
): Promise<{ items: ListedItem[]; pages: number }> {
  const items: ListedItem[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const response = await list(tenant, cursor === undefined ? query : { ...query, cursor });
    expect(response.status).toBe(200);
    const body = (await response.json()) as ListBody;
    expect(body.items.length).toBeLessThanOrEqual(Number(query.limit ?? 100));
    items.push(...body.items);
    cursor = body.nextCursor;
    pages += 1;
    await between?.(pages);
    if (pages > 1000) throw new Error("the listing does not end");
  } while (cursor !== undefined);
  return { items, pages };
}

function expectEachOnce(items: readonly ListedItem[], expected: readonly string[]): void {
  const ids = items.map((item) => item.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual([...expected].sort());
}

const ids = (kind: string, count: number) =>
  Array.from({ length: count }, (_, index) => `${kind}_${hex(index)}`);

describe("GET /v1/items", () => {
  it("pages through all 330 items of the tenant, every kind in turn, each exactly once and in id order", async () => {
    const { items, pages } = await listAll("alpha", { limit: "7" });
    expectEachOnce(items, [...ids("img", IMAGES), ...ids("seg", SEGMENTS), ...ids("tri", TRIPLES)]);
    expect(pages).toBeGreaterThanOrEqual(Math.ceil(330 / 7));
    // image, then video_segment, then triple; ids ascending within each kind.
    const kinds = items.map((item) => item.kind);
    expect(kinds.indexOf("video_segment")).toBe(IMAGES);
    expect(kinds.indexOf("triple")).toBe(IMAGES + SEGMENTS);
    for (const kind of ["image", "video_segment", "triple"]) {
      const ofKind = items.filter((item) => item.kind === kind).map((item) => item.id);
      expect(ofKind).toEqual([...ofKind].sort());
    }
    const segment = items.find((item) => item.kind === "video_segment");
    expect(segment?.videoId).toMatch(/^vid_/);
    expect(items.find((item) => item.kind === "triple")?.question).toMatch(/^question /);
    expect(items[0]?.mediaUrl).toBe(`/v1/media/${items[0]?.id}`);
    // Nothing of the other tenant, whose ids interleave.
    expect(items.some((item) => item.metadata.beta !== undefined)).toBe(false);
  });

  it("lists one kind, with a filter, and stays exact when items are written between pages", async () => {
    const even = await listAll("alpha", {
      kind: "image",
      limit: "9",
      filter: JSON.stringify([{ field: "metadata.parity", op: "eq", value: 0 }]),
    });
    expectEachOnce(
      even.items,
      ids("img", IMAGES).filter((_, index) => index % 2 === 0),
    );
    expect(even.items.every((item) => item.kind === "image")).toBe(true);

    // Rewriting every listed item (a new row version each) and a flush between pages change nothing in it.
    const rewritten = await listAll("alpha", { kind: "video_segment", limit: "11" }, async (page) => {
      if (page === 2) {
        const again = await store.get({ kind: "video_segment", tenant: "alpha", ids: ids("seg", SEGMENTS) });
        expect(again).toHaveLength(SEGMENTS);
        await store.upsert({
          kind: "video_segment",
          tenant: "alpha",
          records: again.map((row, index) => ({
            ...row,
            vector: vector(5000 + index),
            metadata: { rewritten: 1 },
          })),
        });
        const client = createMilvusClient({ address: lite.address });
        await client.flushSync({ collection_names: [collectionName({ prefix, kind: "video_segment" })] });
        await client.closeConnection();
      }
    });
    expectEachOnce(rewritten.items, ids("seg", SEGMENTS));
  });

  it("the client's allItems follows the cursor to the end: every triple once, the filter applied", async () => {
    // The app's tenant when no header says otherwise is alpha.
    const client = createLoupeClient({ request: (path, init) => app.request(path, init) });
    const seen: string[] = [];
    for await (const item of client.allItems({ kind: "triple", limit: 8 })) seen.push(item.id);
    expectEachOnce(
      seen.map((id) => ({ id }) as ListedItem),
      ids("tri", TRIPLES),
    );
    const odd = await client.listItems({
      kind: "triple",
      limit: 1000,
      filter: [{ field: "metadata.parity", op: "eq", value: 1 }],
    });
    expect(odd.nextCursor).toBeUndefined();
    expect(odd.items.map((item) => item.id)).toEqual(
      ids("tri", TRIPLES).filter((_, index) => index % 2 === 1),
    );
  });

  it("answers 400 in the error envelope for a malformed cursor, a cursor of another kind, a bad limit or filter", async () => {
    const bad: Array<Record<string, string>> = [
      { cursor: "not a cursor!" },
      { cursor: Buffer.from("{}").toString("base64url") },
      { cursor: Buffer.from(JSON.stringify({ v: 1, k: "image", a: "../x" })).toString("base64url") },
      { cursor: Buffer.from(JSON.stringify({ v: 1, k: "audio" })).toString("base64url") },
      { kind: "triple", cursor: encodeListCursor({ kind: "image", after: `img_${hex(3)}` }) },
      { limit: "0" },
      { limit: "1001" },
      { limit: "ten" },
      { kind: "audio" },
      { filter: "{not json" },
      { filter: JSON.stringify([{ field: "tenant", op: "eq", value: "beta" }]) },
    ];
    for (const query of bad) {
      const response = await list("alpha", query);
      expect(response.status, JSON.stringify(query)).toBe(400);
      const body = (await response.json()) as ErrorBody;
      expect(body.error.code).toBe("invalid_request");
      expect(body.error.requestId).toBeTruthy();
    }
    const malformed = (await (await list("alpha", { cursor: "not a cursor!" })).json()) as ErrorBody;
    expect(malformed.error.message).toMatch(/cursor is malformed/);
  });

  it("gives another tenant's cursor no view of that tenant: it lists the caller's own items", async () => {
    const first = (await (await list("beta", { kind: "image", limit: "5" })).json()) as ListBody;
    expect(first.items.map((item) => item.id)).toEqual(ids("img", 140).slice(100, 105));
    const cursor = first.nextCursor ?? "";
    // alpha continuing beta's listing sees only alpha's images after that id.
    const asAlpha = (await (await list("alpha", { kind: "image", limit: "5", cursor })).json()) as ListBody;
    expect(asAlpha.items.map((item) => item.id)).toEqual(ids("img", 110).slice(105, 110));
    expect(asAlpha.items.every((item) => item.metadata.beta === undefined)).toBe(true);
    // beta sees its own 40 images and nothing else.
    const { items } = await listAll("beta", { limit: "16" });
    expectEachOnce(items, ids("img", 140).slice(100));
    // A tenant with nothing stored gets an empty last page.
    const empty = (await (await list("gamma", {})).json()) as ListBody;
    expect(empty).toEqual({ items: [] });
  });
});
