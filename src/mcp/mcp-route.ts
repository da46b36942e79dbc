/**
 * `/mcp`: Loupe's MCP server over Streamable HTTP, stateless. Each POST carries JSON-RPC messages and
 * is served by a fresh server and transport made for the caller the app's middleware authenticated
 * (`WebStandardStreamableHTTPServerTransport` with no session id, answering JSON rather than an event
 * stream), so no state outlives a request and any replica can serve any request. A tool call is sent,
 * in-process, to the HTTP route that does its work with the caller's own credentials (see
 * `api-dispatch.ts`). GET (a server-sent stream) and DELETE (ending a session) have nothing to serve
 * without sessions: 405, which MCP clients expect from a stateless server.
 *
 * The path needs a key once keys exist, like every non-public path, and the key needs the `read` scope
 * (a publishable key is refused: it may only chat, read media, list models and send feedback).
 */
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { Hono } from "hono";
import { scopeGate } from "../http/auth/scope-gate.ts";
import type { AppEnv } from "../http/context.ts";
import { createApiDispatch, forwardedHeaders } from "./api-dispatch.ts";
import { createLoupeMcpServer } from "./mcp-server.ts";

/** Where the MCP endpoint is served. */
export const MCP_PATH = "/mcp";

/** The app the tools' requests go to: the one this route is mounted on. */
export interface McpApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

/** Options of {@link createMcpRoute}. */
export interface McpRouteOptions {
  app: McpApp;
  /** Largest request body, in bytes (`LOUPE_MAX_JSON_BYTES`, the limit of every JSON route). */
  maxBodyBytes: number;
  /**
   * The URL clients reach Loupe under (`LOUPE_PUBLIC_URL`), which media URLs are made absolute against;
   * absent: the address the MCP request was sent to.
   */
  publicUrl?: string | undefined;
}

/** What GET and DELETE answer: a JSON-RPC error, as the SDK answers methods it does not serve. */
const methodNotAllowed = {
  jsonrpc: "2.0",
  error: {
    code: -32000,
    message:
      "Method not allowed: Loupe's MCP endpoint is stateless (no server-sent stream, no session to end); send JSON-RPC messages with POST.",
  },
  id: null,
};

/** The /mcp route. */
export function createMcpRoute({ app, maxBodyBytes, publicUrl }: McpRouteOptions): Hono<AppEnv> {
  return new Hono<AppEnv>()
    .post(MCP_PATH, scopeGate("read"), async (c) => {
      const logger = c.get("logger");
      const origin = new URL(c.req.url).origin;
      const server = createLoupeMcpServer({
        api: createApiDispatch({
          // The connection's bindings go along, so a caller without a key is still charged by address.
          fetch: (request) => app.fetch(request, c.env),
          baseUrl: origin,
          headers: forwardedHeaders(c.req.raw, c.get("requestId")),
          signal: c.req.raw.signal,
        }),
        scopes: c.get("principal").scopes,
        mediaBaseUrl: publicUrl ?? origin,
        logger,
      });
      const transport = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
        maxRequestBodySize: maxBodyBytes,
      });
      // Malformed messages, wrong headers and oversized bodies are answered by the transport itself.
      transport.onerror = (error) => logger.info({ err: error }, "MCP request refused");
      await server.connect(transport);
      try {
        return await transport.handleRequest(c.req.raw);
      } finally {
        await server.close();
      }
    })
    .on(["GET", "DELETE"], MCP_PATH, (c) => c.json(methodNotAllowed, 405, { Allow: "POST" }));
}
