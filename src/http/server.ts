/**
 * The Node HTTP server around the app's `fetch`: listening with clear errors for a taken port or a
 * foreign address, and a graceful close that lets in-flight requests finish within a bound.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { ConfigError } from "../errors.ts";

/** Options of {@link startHttpServer}. */
export interface StartHttpServerOptions {
  /** The app's request handler (`app.fetch`). */
  fetch: (request: Request) => Response | Promise<Response>;
  /** Interface to bind (`HOST`). */
  host: string;
  /** Port to bind (`PORT`); 0 picks a free one. */
  port: number;
}

/** Outcome of {@link HttpServer.close}. */
export interface HttpCloseResult {
  /** True when every in-flight request finished before the deadline. */
  drained: boolean;
  /** Requests whose connections were cut at the deadline. */
  abandoned: number;
}

/** A listening server. */
export interface HttpServer {
  /** Base URL, e.g. `http://127.0.0.1:8080` (a wildcard host is shown as loopback). */
  url: string;
  /** The bound port (the chosen one when `port` was 0). */
  port: number;
  /** Requests whose responses have not finished. */
  readonly inFlight: number;
  /**
   * Stops accepting connections, closes idle keep-alive connections, waits up to `timeoutMs` for
   * in-flight requests, then closes every remaining connection. Resolves once the server is closed.
   */
  close(options: { timeoutMs: number }): Promise<HttpCloseResult>;
}

/**
 * Listens on `host:port`.
 *
 * @throws {ConfigError} when the port is taken or the host is not an address of this machine.
 */
export async function startHttpServer({ fetch, host, port }: StartHttpServerOptions): Promise<HttpServer> {
  // createAdaptorServer without http2/https options makes a node:http Server.
  const server = createAdaptorServer({ fetch }) as Server;
  const inFlight = new Set<ServerResponse>();
  server.on("request", (_request: IncomingMessage, response: ServerResponse) => {
    inFlight.add(response);
    response.once("close", () => inFlight.delete(response));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => reject(listenError({ error, host, port })));
    server.listen(port, host, () => resolve());
  });
  const boundPort = (server.address() as AddressInfo).port;

  let closing: Promise<HttpCloseResult> | undefined;
  const close = async ({ timeoutMs }: { timeoutMs: number }): Promise<HttpCloseResult> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const deadline = Date.now() + timeoutMs;
    // Polling keeps this independent of how responses end (finish, client abort, socket error).
    while (inFlight.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const abandoned = inFlight.size;
    // Keep-alive connections stay open after their last response; close them so `closed` can resolve.
    server.closeAllConnections();
    await closed;
    return { drained: abandoned === 0, abandoned };
  };

  return {
    url: `http://${displayHost(host)}:${boundPort}`,
    port: boundPort,
    get inFlight() {
      return inFlight.size;
    },
    close(options) {
      closing ??= close(options);
      return closing;
    },
  };
}

function listenError({
  error,
  host,
  port,
}: {
  error: NodeJS.ErrnoException;
  host: string;
  port: number;
}): Error {
  if (error.code === "EADDRINUSE") {
    return new ConfigError(
      `Port ${port} on ${host} is already in use. Stop the other process or set PORT to a free port (PORT=0 picks one).`,
      { cause: error, context: { port, host } },
    );
  }
  if (error.code === "EADDRNOTAVAIL" || error.code === "ENOTFOUND" || error.code === "EAI_AGAIN") {
    return new ConfigError(
      `HOST=${host} is not an address of this machine. Set HOST to 127.0.0.1 or 0.0.0.0.`,
      {
        cause: error,
        context: { host },
      },
    );
  }
  if (error.code === "EACCES") {
    return new ConfigError(
      `Not allowed to listen on port ${port} (ports below 1024 need privileges). Set PORT to 1024 or above.`,
      { cause: error, context: { port, host } },
    );
  }
  return error;
}

function displayHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
