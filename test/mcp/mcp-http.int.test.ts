/**
 * The MCP endpoint of a real Loupe (embedded Milvus Lite, the bundled model pack, API keys on) holding
 * a few generated Shapes World images, driven by the official MCP client over Streamable HTTP: the
 * tools and their input schemas (from the HTTP routes' zod schemas), search and ask with cited items
 * whose media URLs open, get_item, list_items and vqa, MCP errors for an unknown tool, bad arguments
 * and a route's refusal, and the keys: none → 401, a read key sees no ingest_url and cannot call it,
 * an ingest key ingests a URL, and another tenant's key sees none of the items.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileKeyStore, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { MAX_THUMBNAILS } from "../../src/mcp/tools.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { createRng, describeScene, renderScene, sampleScene } from "../../src/synth/index.ts";

const root = path.join(import.meta.dirname, "..", "..");
const IMAGE_COUNT = 8;

interface SearchItem {
  id: string;
  kind: string;
  score: number;
  mediaUrl: string;
  thumbnailUrl: string;
}

/** The result's first text block, which holds the structured content serialized. */
function textOf(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === "text" ? first.text : "";
}

function imagesOf(result: CallToolResult) {
  return result.content.flatMap((block) => (block.type === "image" ? [block] : []));
}

describe("MCP over Streamable HTTP on a running Loupe", () => {
  let workDir: string;
  let loupe: RunningLoupe;
  let imageServer: Server;
  let imageServerUrl: string;
  const keys: Record<"read" | "ingest" | "other", string> = { read: "", ingest: "", other: "" };
  const clients: Client[] = [];
  let reader: Client;
  const stored: Array<{ id: string; description: string; dataUrl: string; shape: string }> = [];
  let extraImage: Buffer;

  async function connect(key: string | undefined): Promise<Client> {
    const client = new Client({ name: "loupe-test", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(`${loupe.url}/mcp`), {
      requestInit: key === undefined ? {} : { headers: { Authorization: `Bearer ${key}` } },
    });
    await client.connect(transport);
    clients.push(client);
    return client;
  }

  async function call(client: Client, name: string, args: Record<string, unknown>) {
    return (await client.callTool({ name, arguments: args })) as CallToolResult;
  }

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-mcp-int-"));
    const dataDir = path.join(workDir, "data");
    const keyStore = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
    keys.read = (await keyStore.create({ tenant: "acme", scopes: ["read"] })).key;
    keys.ingest = (await keyStore.create({ tenant: "acme", scopes: ["read", "ingest"] })).key;
    keys.other = (await keyStore.create({ tenant: "globex", scopes: ["read"] })).key;
    await keyStore.close();

    const rng = createRng(11);
    const form = new FormData();
    const scenes: Array<{ description: string; data: Buffer; shape: string }> = [];
    for (let index = 0; index <= IMAGE_COUNT; index += 1) {
      const scene = sampleScene(rng);
      const description = describeScene(scene, rng, { includeSizes: true }).text;
      const { data } = await renderScene(scene, { size: 160, format: "png", seed: index });
      scenes.push({ description, data: Buffer.from(data), shape: scene.objects[0]?.shape ?? "" });
    }
    // The last one is served over HTTP for ingest_url; the others are uploaded.
    extraImage = (scenes.pop() as { data: Buffer }).data;
    for (const [index, scene] of scenes.entries()) {
      form.append("files", new Blob([new Uint8Array(scene.data)], { type: "image/png" }), `${index}.png`);
    }
    imageServer = createServer((request, response) => {
      if (request.url === "/extra.png") {
        response.writeHead(200, { "content-type": "image/png" }).end(extraImage);
      } else {
        response.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => imageServer.listen(0, "127.0.0.1", resolve));
    imageServerUrl = `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}`;

    loupe = await startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: dataDir,
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_URL_ALLOW_HOSTS: "127.0.0.1",
      },
      cwd: root,
      logger: createLogger({ level: "silent" }),
    });
    const ingested = await fetch(`${loupe.url}/v1/images`, {
      method: "POST",
      headers: { authorization: `Bearer ${keys.ingest}` },
      body: form,
    });
    const body = (await ingested.json()) as { items: Array<{ id: string; status: string }> };
    expect(ingested.status, JSON.stringify(body).slice(0, 300)).toBe(200);
    for (const [index, item] of body.items.entries()) {
      const scene = scenes[index] as (typeof scenes)[number];
      stored.push({
        id: item.id,
        description: scene.description,
        shape: scene.shape,
        dataUrl: `data:image/png;base64,${scene.data.toString("base64")}`,
      });
    }
    expect(new Set(stored.map((item) => item.id)).size).toBe(IMAGE_COUNT);
    reader = await connect(keys.read);
  }, 300_000);

  afterAll(async () => {
    for (const client of clients) await client.close().catch(() => {});
    await loupe?.stop();
    await new Promise((resolve) => imageServer?.close(resolve));
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("lists the read tools to a read key, with the input schemas of their routes", async () => {
    const { tools } = await reader.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(["search", "ask", "vqa", "get_item", "list_items"]);
    const byName = new Map<string, Tool>(tools.map((tool) => [tool.name, tool]));
    const search = byName.get("search")?.inputSchema as Record<string, unknown> & {
      properties: Record<string, Record<string, unknown>>;
    };
    expect(search.type).toBe("object");
    expect(search.additionalProperties).toBe(false);
    expect(Object.keys(search.properties).sort()).toEqual([
      "filter",
      "image",
      "kinds",
      "mode",
      "text",
      "topK",
    ]);
    expect(search.properties.topK).toMatchObject({ type: "integer", minimum: 1, maximum: 100 });
    expect(search.properties.mode).toMatchObject({ enum: ["dense", "text", "hybrid"] });
    expect(search.properties.kinds).toMatchObject({
      type: "array",
      items: { enum: ["image", "video_segment", "triple", "region"] },
    });
    const ask = byName.get("ask")?.inputSchema as { properties: object; required: string[] };
    expect(Object.keys(ask.properties)).toContain("images");
    expect(Object.keys(ask.properties)).not.toContain("stream");
    expect(ask.required).toEqual(["question"]);
    expect([...(byName.get("vqa")?.inputSchema.required ?? [])].sort()).toEqual(["image", "question"]);
    expect(byName.get("list_items")?.inputSchema.properties?.limit).toMatchObject({
      type: "integer",
      maximum: 1000,
    });
    expect(byName.get("search")?.annotations?.readOnlyHint).toBe(true);
  });

  it("search by an image finds it first, with its id, score, absolute media URLs and thumbnails", async () => {
    const target = stored[3] as (typeof stored)[number];
    const result = await call(reader, "search", { image: target.dataUrl, kinds: ["image"], topK: 5 });
    expect(result.isError).toBeFalsy();
    const { items } = result.structuredContent as { items: SearchItem[] };
    expect(items).toHaveLength(5);
    expect(items[0]?.id).toBe(target.id);
    expect(items[0]?.score).toBeGreaterThan(0.99);
    const storedIds = new Set(stored.map((item) => item.id));
    for (const item of items) {
      expect(storedIds.has(item.id)).toBe(true);
      expect(item.mediaUrl).toBe(`${loupe.url}/v1/media/${item.id}`);
      expect(item.thumbnailUrl).toBe(`${loupe.url}/v1/media/${item.id}/thumbnail`);
    }
    expect(JSON.parse(textOf(result))).toEqual(result.structuredContent);
    const media = await fetch(items[0]?.mediaUrl ?? "", {
      headers: { authorization: `Bearer ${keys.read}` },
    });
    expect(media.status).toBe(200);
    expect(media.headers.get("content-type")).toBe("image/png");
    const thumbnails = imagesOf(result);
    expect(thumbnails).toHaveLength(MAX_THUMBNAILS);
    for (const thumbnail of thumbnails) {
      expect(thumbnail.mimeType).toBe("image/webp");
      expect(Buffer.from(thumbnail.data, "base64").subarray(8, 12).toString("latin1")).toBe("WEBP");
    }
    expect(result.content.map((block) => (block.type === "text" ? block.text : "")).slice(1)).toContain(
      `Thumbnail of ${target.id}:`,
    );
  });

  it("search by text returns stored items", async () => {
    const target = stored[1] as (typeof stored)[number];
    const result = await call(reader, "search", { text: target.description, kinds: ["image"], topK: 3 });
    const { items } = result.structuredContent as { items: SearchItem[] };
    expect(items.length).toBeGreaterThan(0);
    expect(items.map((item) => item.id)).toContain(target.id);
  });

  it("ask answers with citations of stored items whose media URLs open", async () => {
    const result = await call(reader, "ask", { question: "Which images show a circle?" });
    expect(result.isError, textOf(result)).toBeFalsy();
    const answer = result.structuredContent as {
      answer: string;
      composer: string;
      citations: Array<{ id: string; mediaUrl: string | null }>;
    };
    expect(answer.composer).toBe("offline");
    expect(answer.citations.length).toBeGreaterThan(0);
    const storedIds = new Set(stored.map((item) => item.id));
    for (const citation of answer.citations) {
      expect(storedIds.has(citation.id)).toBe(true);
      expect(answer.answer).toContain(`[${citation.id}]`);
      expect(citation.mediaUrl).toBe(`${loupe.url}/v1/media/${citation.id}`);
    }
    const cited = answer.citations[0] as { mediaUrl: string };
    const media = await fetch(cited.mediaUrl, { headers: { "x-api-key": keys.read } });
    expect(media.status).toBe(200);
    expect(imagesOf(result).length).toBe(Math.min(MAX_THUMBNAILS, answer.citations.length));
  });

  it("ask about an attached image cites it", async () => {
    const target = stored[0] as (typeof stored)[number];
    const result = await call(reader, "ask", {
      question: `What color is the ${target.shape}?`,
      images: [target.dataUrl],
    });
    expect(result.isError, textOf(result)).toBeFalsy();
    const answer = result.structuredContent as { citations: Array<{ id: string; mediaUrl: string | null }> };
    expect(answer.citations.find((citation) => citation.id === "att_1")).toMatchObject({ mediaUrl: null });
  });

  it("vqa answers a question about a stored item", async () => {
    const target = stored[2] as (typeof stored)[number];
    const result = await call(reader, "vqa", {
      image: target.id,
      question: "How many shapes are there?",
      topK: 2,
    });
    expect(result.isError, textOf(result)).toBeFalsy();
    const answer = result.structuredContent as {
      answer: string;
      probability: number;
      alternatives: unknown[];
    };
    expect(answer.answer.length).toBeGreaterThan(0);
    expect(answer.probability).toBeGreaterThan(0);
    expect(answer.alternatives).toHaveLength(1);
  });

  it("get_item reads a stored item with its thumbnail; an unknown id is a tool error", async () => {
    const target = stored[4] as (typeof stored)[number];
    const result = await call(reader, "get_item", { id: target.id });
    expect(result.isError, textOf(result)).toBeFalsy();
    expect((result.structuredContent as { item: unknown }).item).toMatchObject({
      id: target.id,
      kind: "image",
      mediaUrl: `${loupe.url}/v1/media/${target.id}`,
      thumbnailUrl: `${loupe.url}/v1/media/${target.id}/thumbnail`,
    });
    expect(imagesOf(result)).toHaveLength(1);

    const missing = await call(reader, "get_item", { id: "img_0000000000000000000000000000000000000000" });
    expect(missing.isError).toBe(true);
    expect(textOf(missing)).toContain("No item with id");
    expect(missing.structuredContent).toMatchObject({ error: { code: "not_found" } });
  });

  it("list_items pages through every stored item", async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 10; page += 1) {
      const result = await call(reader, "list_items", {
        kind: "image",
        limit: 3,
        ...(cursor ? { cursor } : {}),
      });
      expect(result.isError, textOf(result)).toBeFalsy();
      const body = result.structuredContent as {
        items: Array<{ id: string; mediaUrl: string }>;
        nextCursor?: string;
      };
      expect(body.items.length).toBeLessThanOrEqual(3);
      for (const item of body.items) expect(item.mediaUrl).toBe(`${loupe.url}/v1/media/${item.id}`);
      seen.push(...body.items.map((item) => item.id));
      cursor = body.nextCursor;
      if (cursor === undefined) break;
    }
    expect(seen.sort()).toEqual(stored.map((item) => item.id).sort());
  });

  it("an unknown tool and bad arguments are MCP errors naming what was wrong", async () => {
    const unknown = await call(reader, "delete_everything", {});
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toContain("delete_everything");

    const tooMany = await call(reader, "search", { text: "a circle", topK: 1000 });
    expect(tooMany.isError).toBe(true);
    expect(textOf(tooMany)).toContain("topK must be an integer from 1 to 100");

    const badKind = await call(reader, "search", { text: "a circle", kinds: ["pdf"] });
    expect(badKind.isError).toBe(true);
    expect(textOf(badKind)).toContain('unknown kind "pdf"');

    const stray = await call(reader, "search", { text: "a circle", limit: 3 });
    expect(stray.isError).toBe(true);
    expect(textOf(stray)).toContain("limit");

    const noQuestion = await call(reader, "ask", {});
    expect(noQuestion.isError).toBe(true);
    expect(textOf(noQuestion)).toContain("question");

    // A refusal of the route behind the tool, in its own words and code.
    const missingImage = await call(reader, "search", {
      image: "img_0000000000000000000000000000000000000000",
    });
    expect(missingImage.isError).toBe(true);
    expect(missingImage.structuredContent).toMatchObject({ status: 404, error: { code: "not_found" } });
  });

  it("a request without a key is refused with 401, and GET /mcp is 405", async () => {
    const response = await fetch(`${loupe.url}/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    await expect(connect(undefined)).rejects.toMatchObject({ code: 401 });
    const get = await fetch(`${loupe.url}/mcp`, {
      headers: { authorization: `Bearer ${keys.read}`, accept: "text/event-stream" },
    });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
  });

  it("a read key cannot call ingest_url; an ingest key lists it and ingests a URL", async () => {
    const refused = await call(reader, "ingest_url", { urls: [`${imageServerUrl}/extra.png`] });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toContain("ingest_url");

    const ingester = await connect(keys.ingest);
    const { tools } = await ingester.listTools();
    const ingestUrl = tools.find((tool) => tool.name === "ingest_url");
    expect(ingestUrl?.inputSchema.required).toEqual(["urls"]);
    const result = await call(ingester, "ingest_url", {
      urls: [`${imageServerUrl}/extra.png`],
      metadata: { tags: ["from-mcp"] },
    });
    expect(result.isError, textOf(result)).toBeFalsy();
    const [item] = (result.structuredContent as { items: Array<{ id: string; status: string }> }).items;
    expect(item?.status).toBe("stored");
    const found = await call(reader, "get_item", { id: item?.id ?? "" });
    expect(
      (found.structuredContent as { item: { metadata: { tags: string[] } } }).item.metadata.tags,
    ).toEqual(["from-mcp"]);

    const unreachable = await call(ingester, "ingest_url", { urls: [`${imageServerUrl}/missing.png`] });
    expect(unreachable.isError).toBe(true);
    expect(unreachable.structuredContent).toMatchObject({ status: 422, items: [{ status: "failed" }] });
  });

  it("another tenant's key finds none of the items", async () => {
    const other = await connect(keys.other);
    const result = await call(other, "search", { image: (stored[0] as { dataUrl: string }).dataUrl });
    expect((result.structuredContent as { items: unknown[] }).items).toEqual([]);
    const listed = await call(other, "list_items", {});
    expect((listed.structuredContent as { items: unknown[] }).items).toEqual([]);
    const item = await call(other, "get_item", { id: (stored[0] as { id: string }).id });
    expect(item.isError).toBe(true);
  });
});
