/**
 * `createLoupeMcpServer`: an MCP server (the official SDK's `McpServer`) offering Loupe's tools to one
 * caller. It is made per caller — per HTTP request at /mcp, once for `loupe mcp` — so the tools it
 * lists are the ones the caller's scopes allow (`ingest_url` only with `ingest`), and every call runs
 * as that caller through the {@link ApiDispatch} it is given.
 */
import { readFileSync } from "node:fs";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Scope } from "../http/context.ts";
import type { Logger } from "../logger.ts";
import type { ApiDispatch } from "./api-dispatch.ts";
import { LOUPE_TOOLS, toolErrorResult } from "./tools.ts";

const packageVersion = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/**
 * Most array elements and object members one call's arguments may hold: far above any valid call (a
 * filter has at most 64 conditions, a chat at most a few dozen turns and images), so that a hostile
 * payload is refused before it is validated field by field.
 */
export const MAX_TOOL_INPUT_ELEMENTS = 10_000;

const instructions =
  "Loupe indexes images, video segments and (image, question, answer) triples, and answers questions about them with citations. Use `search` to find items by text or image (results carry ids, scores and media URLs), `ask` for a cited answer, `vqa` for a question about one image, `get_item` and `list_items` to read stored items. Image arguments take base64, data URLs, or the id of a stored item. `ingest_url` is offered only to API keys with the ingest scope.";

/** Options of {@link createLoupeMcpServer}. */
export interface LoupeMcpServerOptions {
  /** Sends the tools' requests to the HTTP API as the caller. */
  api: ApiDispatch;
  /** The caller's scopes: which tools are listed. */
  scopes: ReadonlySet<Scope>;
  /** The URL media paths are made absolute under; absent: they stay paths. */
  mediaBaseUrl?: string;
  /** Where a tool's unexpected failure is logged whole. */
  logger: Logger;
}

/** Builds the server with the tools `scopes` allow; connect it to a transport to serve. */
export function createLoupeMcpServer({
  api,
  scopes,
  mediaBaseUrl,
  logger,
}: LoupeMcpServerOptions): McpServer {
  const server = new McpServer(
    { name: "loupe", title: "Loupe", version: packageVersion },
    { instructions, maxToolInputElements: MAX_TOOL_INPUT_ELEMENTS },
  );
  for (const tool of LOUPE_TOOLS) {
    if (!scopes.has(tool.scope)) continue;
    server.registerTool(
      tool.name,
      {
        title: tool.title,
        description: tool.description,
        inputSchema: tool.inputSchema,
        annotations: tool.annotations,
      },
      async (args, extra) => {
        try {
          return await tool.call(args, {
            api,
            signal: extra.signal,
            ...(mediaBaseUrl === undefined ? {} : { mediaBaseUrl }),
          });
        } catch (error) {
          if (extra.signal.aborted) return toolErrorResult("cancelled", "The call was cancelled.");
          // Like a 500: the details go to the log, never to the caller.
          logger.error({ err: error, tool: tool.name }, "MCP tool call failed");
          return toolErrorResult(
            "internal_error",
            `Internal error while running ${tool.name}; the server log has the details.`,
          );
        }
      },
    );
  }
  return server;
}
