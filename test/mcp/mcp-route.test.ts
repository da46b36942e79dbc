/**
 * /mcp in-process, over the production wiring with a real key store in a temporary data dir and a store
 * that is down: the official MCP client lists the tools a caller's scopes allow, gets tool errors (never
 * crashes) for an unknown tool, bad arguments and a route's refusal, and the trust boundary refuses a
 * missing key, a publishable key, a key without `read` and a foreign web origin before any tool runs.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { StoreError } from "../../src/errors.ts";
import type { VectorStore } from "../../src/store/index.ts";
import { type AuthTestApp, bearer, errorOf, makeAuthTestApp } from "../http/auth-fixtures.ts";

/** A vector store that answers every call as Milvus down would. */
const downStore = new Proxy({} as VectorStore, {
  get(_target, property) {
    if (property === "then") return undefined;
    return async () => {
      throw new StoreError("Milvus at 127.0.0.1:19530 is unreachable.");
    };
  },
});

let current: AuthTestApp | undefined;
const clients: Client[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
  await current?.dispose();
  current = undefined;
});

async function setUp(): Promise<AuthTestApp> {
  current = await makeAuthTestApp({ store: downStore });
  return current;
}

/** The official client, talking to the app in this process. */
async function connect(app: AuthTestApp["app"], headers: Record<string, string> = {}): Promise<Client> {
  const client = new Client({ name: "loupe-test", version: "1.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(new URL("http://localhost/mcp"), {
      requestInit: { headers },
      fetch: async (url, init) => app.fetch(new Request(url, init)),
    }),
  );
  clients.push(client);
  return client;
}

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

function textOf(result: CallToolResult): string {
  return result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");
}

const rpc = (method: string, headers: Record<string, string> = {}) => ({
  method: "POST",
  headers: {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    ...headers,
  },
  body: JSON.stringify({ jsonrpc: "2.0", id: 1, method }),
});

describe("/mcp without keys", () => {
  it("lists every tool, ingest_url included, with the scopes of a server without keys", async () => {
    const { app } = await setUp();
    const client = await connect(app);
    expect(client.getServerVersion()).toMatchObject({ name: "loupe" });
    expect(client.getInstructions()).toContain("ingest_url");
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual([
      "search",
      "ask",
      "vqa",
      "get_item",
      "list_items",
      "ingest_url",
    ]);
    for (const tool of tools) expect(tool.inputSchema.type).toBe("object");
  });

  it("answers an unknown tool, bad arguments and a route's refusal with tool errors", async () => {
    const { app } = await setUp();
    const client = await connect(app);

    const unknown = await call(client, "drop_tables", {});
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toContain("Tool drop_tables not found");

    const badTopK = await call(client, "search", { text: "a red circle", topK: 0 });
    expect(badTopK.isError).toBe(true);
    expect(textOf(badTopK)).toContain("topK must be an integer from 1 to 100 at topK");

    const badFilter = await call(client, "list_items", {
      filter: [{ field: "colour", op: "eq", value: "red" }],
    });
    expect(badFilter.isError).toBe(true);
    expect(textOf(badFilter)).toContain("colour");

    const badLimit = await call(client, "list_items", { limit: 5000 });
    expect(badLimit.isError).toBe(true);
    expect(textOf(badLimit)).toContain("limit must be an integer from 1 to 1000");

    const noImage = await call(client, "vqa", { question: "What color is it?" });
    expect(noImage.isError).toBe(true);
    expect(textOf(noImage)).toContain("image");

    // A valid filter, checked by the tool's schema, is sent on as the route's own and passes it too.
    const filtered = await call(client, "list_items", {
      kind: "image",
      filter: [
        { field: "metadata.tags", op: "contains", value: "red" },
        {
          any: [
            { field: "source", op: "eq", value: "upload" },
            { field: "created_at", op: "gt", value: 0 },
          ],
        },
      ],
      limit: 10,
    });
    expect(filtered.structuredContent).toMatchObject({ status: 503 });

    // The store is down: the route's 503 comes back as a tool error with its message and code.
    const down = await call(client, "list_items", {});
    expect(down.isError).toBe(true);
    expect(down.structuredContent).toMatchObject({
      status: 503,
      error: { message: expect.stringContaining("unreachable") },
    });
    expect(textOf(down)).toMatch(/\(503 \w+\)$/);
  });

  it("answers GET and DELETE with 405: the endpoint is stateless", async () => {
    const { app } = await setUp();
    for (const method of ["GET", "DELETE"]) {
      const response = await app.request("/mcp", { method, headers: { accept: "text/event-stream" } });
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("POST");
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain(
        "stateless",
      );
    }
  });

  it("refuses a POST from a foreign web origin before reading it", async () => {
    const { app } = await setUp();
    const response = await app.request("/mcp", rpc("tools/list", { origin: "https://evil.example" }));
    expect(response.status).toBe(403);
    expect((await errorOf(response)).code).toBe("origin_not_allowed");
  });
});

describe("/mcp with keys", () => {
  it("needs a key: none is 401 in the error envelope", async () => {
    const test = await setUp();
    await test.createKey({ tenant: "acme", scopes: ["read"] });
    const response = await test.app.request("/mcp", rpc("tools/list"));
    expect(response.status).toBe(401);
    expect((await errorOf(response)).code).toBe("unauthorized");
  });

  it("lists the read tools to a read key, and refuses its call of ingest_url", async () => {
    const test = await setUp();
    const { key } = await test.createKey({ tenant: "acme", scopes: ["read"] });
    const client = await connect(test.app, bearer(key));
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).not.toContain("ingest_url");
    const refused = await call(client, "ingest_url", { urls: ["https://example.com/a.png"] });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toContain("ingest_url");
  });

  it("lists ingest_url to a key with ingest, also sent as x-api-key", async () => {
    const test = await setUp();
    const { key } = await test.createKey({ tenant: "acme", scopes: ["read", "ingest"] });
    const client = await connect(test.app, { "x-api-key": key });
    expect((await client.listTools()).tools.map((tool) => tool.name)).toContain("ingest_url");
  });

  it("refuses a key without read, and a publishable key, with 403", async () => {
    const test = await setUp();
    const ingestOnly = await test.createKey({ tenant: "acme", scopes: ["ingest"] });
    const refused = await test.app.request("/mcp", rpc("tools/list", bearer(ingestOnly.key)));
    expect(refused.status).toBe(403);
    expect((await errorOf(refused)).message).toContain("`read` scope");

    const publishable = await test.createKey({
      tenant: "acme",
      publishable: true,
      origins: ["https://app.example.com"],
    });
    const fromBrowser = await test.app.request(
      "/mcp",
      rpc("tools/list", bearer(publishable.key, { origin: "https://app.example.com" })),
    );
    expect(fromBrowser.status).toBe(403);
    expect((await errorOf(fromBrowser)).code).toBe("forbidden");
  });
});
