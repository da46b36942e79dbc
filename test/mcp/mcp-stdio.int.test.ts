/**
 * `loupe mcp` as a desktop agent starts it: the CLI in a child process (run from source with tsx) on a
 * data dir holding a few images, driven by the official MCP client over stdio. It lists every tool
 * (in-process, the local user has the scopes of a server without keys), finds an image by its
 * description, writes nothing but protocol to stdout, and stops its Milvus Lite when the client closes.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { createLogger } from "../../src/logger.ts";
import { createRng, describeScene, renderScene, sampleScene } from "../../src/synth/index.ts";
import { openTestServices } from "../helpers/app.ts";
import { processesMentioning } from "../helpers/processes.ts";

const root = path.join(import.meta.dirname, "..", "..");
const run = promisify(execFile);
/** The CLI from source, as `npm run dev` runs it: no build needed. */
const CLI = ["--import", "tsx", "src/cli/main.ts"];

describe("loupe mcp over stdio", () => {
  let dir: string;
  let env: Record<string, string>;
  const ids: string[] = [];
  const descriptions: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-mcp-stdio-int-"));
    env = {
      LOUPE_DATA_DIR: dir,
      LOUPE_MODEL_PACK: path.join(root, "models", "shapes-world-tiny"),
      LOUPE_VENV_DIR: path.join(root, ".venv"),
    };
    // Indexed through the API of an in-process Loupe, closed before the command takes the data dir.
    const opened = await openTestServices({ env, logger: createLogger({ level: "silent" }) });
    try {
      const rng = createRng(23);
      const form = new FormData();
      for (let index = 0; index < 5; index += 1) {
        const scene = sampleScene(rng);
        descriptions.push(describeScene(scene, rng, { includeSizes: true }).text);
        const { data } = await renderScene(scene, { size: 128, format: "png", seed: index });
        form.append("files", new Blob([new Uint8Array(data)], { type: "image/png" }), `${index}.png`);
      }
      const response = await createApp(opened).request("/v1/images", { method: "POST", body: form });
      expect(response.status).toBe(200);
      for (const item of ((await response.json()) as { items: { id: string }[] }).items) ids.push(item.id);
    } finally {
      await opened.close();
    }
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("lists the tools, searches, keeps stdout for the protocol, and stops when the client closes", async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [...CLI, "mcp"],
      cwd: root,
      env: { ...(process.env as Record<string, string>), ...env },
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const client = new Client({ name: "loupe-test", version: "1.0.0" });
    const protocolErrors: Error[] = [];
    client.onerror = (error) => protocolErrors.push(error);
    try {
      await client.connect(transport);
      expect(client.getServerVersion()?.name).toBe("loupe");
      const { tools } = await client.listTools();
      expect(tools.map((tool) => tool.name)).toEqual([
        "search",
        "ask",
        "vqa",
        "get_item",
        "list_items",
        "ingest_url",
      ]);

      const result = (await client.callTool({
        name: "search",
        arguments: { text: descriptions[2], kinds: ["image"], topK: 3 },
      })) as CallToolResult;
      expect(result.isError, JSON.stringify(result.content).slice(0, 500)).toBeFalsy();
      const { items } = result.structuredContent as { items: Array<{ id: string; mediaUrl: string }> };
      expect(items.map((item) => item.id)).toContain(ids[2]);
      // No server origin in stdio: the URLs stay paths of the API.
      expect(items[0]?.mediaUrl).toBe(`/v1/media/${items[0]?.id}`);
      expect(result.content.some((block) => block.type === "image")).toBe(true);

      const refused = (await client.callTool({ name: "search", arguments: { topK: 0 } })) as CallToolResult;
      expect(refused.isError).toBe(true);
      expect(JSON.stringify(refused.content)).toContain("topK must be an integer from 1 to 100");
    } finally {
      await client.close();
    }
    // Every line on stdout was a protocol message, and the services were closed on the way out.
    expect(protocolErrors, stderr).toEqual([]);
    expect(await processesMentioning(dir)).toEqual([]);
  }, 120_000);

  it("refuses a tenant the store does not accept before opening anything", async () => {
    const failure = await run(process.execPath, [...CLI, "mcp", "--tenant", "no spaces!"], {
      cwd: root,
      env: { ...process.env, ...env },
      timeout: 60_000,
    }).catch((error: { code: number; stdout: string; stderr: string }) => error);
    expect(failure).toMatchObject({ code: 1, stdout: "" });
    expect((failure as { stderr: string }).stderr).toMatch(/^loupe: .*tenant/i);
  }, 60_000);
});
