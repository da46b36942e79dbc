/**
 * `loupe mcp [--tenant t]`: serves Loupe's MCP tools (search, ask, vqa, get_item, list_items, ingest_url)
 * over stdio, for desktop agents and IDE assistants that start their tools themselves (Claude Desktop,
 * Cursor, VS Code, …). Like `loupe search` in-process, it opens the configured services in this
 * process (the embedded Milvus Lite under `LOUPE_DATA_DIR`, so not while a `loupe serve` holds that
 * directory) and acts for one tenant, as the local user who owns the data: no API key is asked for.
 * The tools run through the same routes as `/mcp` on a server. stdout carries the protocol alone; the
 * log goes to stderr. It runs until the client closes stdin, or SIGINT/SIGTERM, then closes the services.
 */
import type { Readable, Writable } from "node:stream";
import type { Command } from "commander";
import { assertValidTenant } from "../../store/filter.ts";

/** Options of {@link runMcpStdio}. */
export interface RunMcpStdioOptions {
  /** The environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  /** The tenant the tools act for (default `LOUPE_DEFAULT_TENANT`). */
  tenant?: string;
  /** Where the client's messages arrive (default stdin). */
  input?: Readable;
  /** Where the server's messages go (default stdout). */
  output?: Writable;
}

/**
 * Opens the services, serves MCP over `input`/`output` until `input` ends or a signal arrives, and
 * closes the services.
 *
 * @throws ValidationError for a tenant the store does not accept; the services' own start-up errors.
 */
export async function runMcpStdio({
  env = process.env,
  tenant,
  input = process.stdin,
  output = process.stdout,
}: RunMcpStdioOptions = {}): Promise<void> {
  if (tenant !== undefined) assertValidTenant(tenant);
  // Imported on use, like `serve`: the services pull in the Milvus SDK and the models.
  const [{ openLocalServices }, { createApp }, { AUTH_OFF_SCOPES }, { createApiDispatch }, mcp, stdio] =
    await Promise.all([
      import("../local-services.ts"),
      import("../../app.ts"),
      import("../../http/auth/authenticate.ts"),
      import("../../mcp/api-dispatch.ts"),
      import("../../mcp/mcp-server.ts"),
      import("@modelcontextprotocol/sdk/server/stdio.js"),
    ]);
  const services = await openLocalServices({ env });
  try {
    const actingTenant = tenant ?? services.config.defaultTenant;
    assertValidTenant(actingTenant);
    // The local user owns the data dir (and its key store), as with `loupe search` in-process: the
    // tools act for the chosen tenant without a key, with the scopes of a server without keys.
    const app = createApp({
      ...services,
      config: { ...services.config, auth: "none" },
      resolveTenant: () => actingTenant,
    });
    const server = mcp.createLoupeMcpServer({
      api: createApiDispatch({ fetch: (request) => app.fetch(request), baseUrl: "http://localhost" }),
      scopes: AUTH_OFF_SCOPES,
      logger: services.logger,
    });
    const transport = new stdio.StdioServerTransport(input, output);
    transport.onerror = (error) => services.logger.warn({ err: error }, "MCP message refused");
    await server.connect(transport);
    await new Promise<void>((resolve) => {
      const stop = () => {
        input.off("end", stop);
        input.off("close", stop);
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve();
      };
      input.once("end", stop);
      input.once("close", stop);
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    await server.close();
  } finally {
    await services.close();
  }
}

/** Registers `loupe mcp`. */
export function registerMcpCommand(program: Command): void {
  program
    .command("mcp")
    .description(
      "serve Loupe's tools to an MCP client (Claude Desktop, Cursor, VS Code, …) over stdio, in-process",
    )
    .option("--tenant <tenant>", "tenant the tools act for (default: LOUPE_DEFAULT_TENANT)")
    .action(async (flags: { tenant?: string }) => {
      await runMcpStdio({ ...(flags.tenant === undefined ? {} : { tenant: flags.tenant }) });
    });
}
