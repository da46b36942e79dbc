/**
 * The Node HTTP server around the app's `fetch`: listening with clear errors for a taken port or a
 * foreign address, a graceful close that lets in-flight requests finish within a bound, and the limits
 * that keep slow or hostile clients from holding it: a deadline for a request's headers and one for the
 * whole request (a body trickled in is cut there), an idle keep-alive timeout and a cap on open
 * connections. Requests Node refuses before the app sees them (malformed, headers too large, too slow)
 * are answered in the app's error envelope while the connection can still take an answer.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { getRequestListener, RequestError } from "@hono/node-server";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { errorEnvelope, internalErrorMessage } from "./errors.ts";

/** Options of {@link startHttpServer}. */
export interface StartHttpServerOptions {
  /** The app's request handler (`app.fetch`); it gets Node's request and response as its bindings. */
  fetch: (request: Request, env: { incoming: IncomingMessage; outgoing: ServerResponse }) => unknown;
  /** Interface to bind (`HOST`). */
  host: string;
  /** Port to bind (`PORT`); 0 picks a free one. */
  port: number;
  /** The setting that chose the port, named when it cannot be bound; `PORT` by default. */
  portSetting?: string;
  /** Time a client has to send a request's headers (`LOUPE_HEADERS_TIMEOUT_MS`); capped by `requestTimeoutMs`. */
  headersTimeoutMs?: number;
  /** Time a client has to send a whole request, body included (`LOUPE_REQUEST_TIMEOUT_MS`). */
  requestTimeoutMs?: number;
  /** How long an idle keep-alive connection waits for its next request (`LOUPE_KEEP_ALIVE_TIMEOUT_MS`). */
  keepAliveTimeoutMs?: number;
  /** Most open connections; further ones are closed on arrival (`LOUPE_MAX_CONNECTIONS`). */
  maxConnections?: number;
  /** Where refused requests and dropped connections are logged. */
  logger?: Logger;
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

/** How often dropped connections are logged at most, as one line with their count. */
const DROP_LOG_INTERVAL_MS = 10_000;

/**
 * Listens on `host:port`.
 *
 * @throws {ConfigError} when the port is taken or the host is not an address of this machine.
 */
export async function startHttpServer({
  fetch,
  host,
  port,
  portSetting = "PORT",
  headersTimeoutMs = 20_000,
  requestTimeoutMs = 300_000,
  keepAliveTimeoutMs = 5_000,
  maxConnections = 512,
  logger,
}: StartHttpServerOptions): Promise<HttpServer> {
  // Node refuses a headers timeout longer than the request timeout.
  const headersTimeout = Math.min(headersTimeoutMs, requestTimeoutMs);
  const server = createServer(
    {
      headersTimeout,
      requestTimeout: requestTimeoutMs,
      keepAliveTimeout: keepAliveTimeoutMs,
      // Node would answer a missing Host with a bare 400; the adapter answers it in the envelope.
      requireHostHeader: false,
      // Node checks both deadlines on this interval (30 s by default), so a short one is overshot by
      // up to this much.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
    },
    getRequestListener(fetch as Parameters<typeof getRequestListener>[0], {
      errorHandler: (error) => requestFailure(error, logger),
    }),
  );
  server.keepAliveTimeout = keepAliveTimeoutMs;
  server.maxConnections = maxConnections;
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) =>
    answerClientError({ error, socket, headersTimeout, requestTimeoutMs, logger }),
  );
  let dropped = 0;
  let lastDropLog = Number.NEGATIVE_INFINITY;
  server.on("drop", () => {
    dropped += 1;
    const now = performance.now();
    if (now - lastDropLog < DROP_LOG_INTERVAL_MS) return;
    lastDropLog = now;
    logger?.warn(
      { dropped, maxConnections },
      "connections refused: the server holds LOUPE_MAX_CONNECTIONS open connections",
    );
    dropped = 0;
  });
  const inFlight = new Set<ServerResponse>();
  server.prependListener("request", (request: IncomingMessage, response: ServerResponse) => {
    inFlight.add(response);
    response.once("close", () => inFlight.delete(response));
    lingerOnEarlyAnswer(request, response);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(listenError({ error, host, port, portSetting })),
    );
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

/**
 * Keeps the connection of a request with a body open after its answer although the client asked to
 * close it. Node would close it as soon as the answer is out; when the app answered before reading the
 * body (413, 429, 401), the client is still sending, and closing a socket with unread bytes resets the
 * connection, which can destroy the answer before the client reads it. Kept open, the rest of the body is
 * read and discarded by @hono/node-server (at most 64 MiB or 500 ms, then the connection is closed) and
 * the client closes once it has the answer, as it said it would.
 */
function lingerOnEarlyAnswer(request: IncomingMessage, response: ServerResponse): void {
  const hasBody =
    request.headers["content-length"] !== undefined || request.headers["transfer-encoding"] !== undefined;
  const wantsClose = request.headers.connection?.toLowerCase() === "close";
  if (!hasBody || !wantsClose || request.httpVersion !== "1.1") return;
  response.shouldKeepAlive = true;
  response.once("finish", () => {
    // A body read whole: the usual close, once the answer is out.
    if (request.complete) request.socket.destroySoon();
  });
}

/** An error answer written straight to a socket: status, code and message of the envelope. */
interface RawAnswer {
  status: number;
  code: string;
  message: string;
}

/** What a request Node refused is answered; undefined when the client is gone (nothing to answer). */
export function clientErrorAnswer({
  code,
  headersTimeout,
  requestTimeoutMs,
}: {
  code: string | undefined;
  headersTimeout: number;
  requestTimeoutMs: number;
}): RawAnswer | undefined {
  switch (code) {
    // The client went away (a reset, or an end in the middle of its request): no one to answer.
    case "ECONNRESET":
    case "EPIPE":
    case "HPE_INVALID_EOF_STATE":
      return undefined;
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return {
        status: 408,
        code: "request_timeout",
        message: `The request did not arrive in time: headers must arrive within ${headersTimeout} ms (LOUPE_HEADERS_TIMEOUT_MS) and the whole request, body included, within ${requestTimeoutMs} ms (LOUPE_REQUEST_TIMEOUT_MS). Send it faster, or split large uploads over several requests.`,
      };
    case "HPE_HEADER_OVERFLOW":
      return {
        status: 431,
        code: "headers_too_large",
        message:
          "The request's headers are larger than the server accepts (16 KiB unless Node's --max-http-header-size says otherwise). Send fewer or shorter headers and cookies.",
      };
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return {
        status: 413,
        code: "payload_too_large",
        message:
          "The request's chunk extensions are larger than the server accepts. Send the body without them.",
      };
    default:
      return {
        status: 400,
        code: "invalid_request",
        message: `Malformed HTTP request (${(code ?? "unknown").replace(/[^A-Z0-9_]/gi, "").slice(0, 40)}); send a well-formed HTTP/1.1 request.`,
      };
  }
}

/**
 * Answers a request Node refused before the app saw it, in the envelope, when nothing of another answer
 * has gone out on the connection; then closes the connection.
 */
function answerClientError({
  error,
  socket,
  headersTimeout,
  requestTimeoutMs,
  logger,
}: {
  error: NodeJS.ErrnoException;
  socket: Duplex;
  headersTimeout: number;
  requestTimeoutMs: number;
  logger: Logger | undefined;
}): void {
  const answer = clientErrorAnswer({ code: error.code, headersTimeout, requestTimeoutMs });
  // A request in flight on this connection whose response has begun cannot be answered again.
  const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (answer === undefined || !socket.writable || inFlight?.headersSent === true) {
    socket.destroy();
    return;
  }
  const requestId = randomUUID();
  logger?.info({ requestId, code: error.code, status: answer.status }, "request refused by the server");
  const body = JSON.stringify(errorEnvelope({ code: answer.code, message: answer.message, requestId }));
  const head = [
    `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ""}`,
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
    `x-request-id: ${requestId}`,
    "Connection: close",
  ].join("\r\n");
  socket.end(`${head}\r\n\r\n${body}`, () => socket.destroy());
  // A client that reads nothing would keep the answer unsent; the connection is closed regardless.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** The envelope of a request @hono/node-server could not turn into a Fetch request (or a handler crash). */
function requestFailure(error: unknown, logger: Logger | undefined): Response {
  const requestId = randomUUID();
  const malformed = error instanceof RequestError;
  if (malformed) logger?.info({ requestId, err: error }, "malformed request");
  else logger?.error({ requestId, err: error }, "unexpected error");
  const envelope = malformed
    ? errorEnvelope({
        code: "invalid_request",
        message: `Malformed request: ${error.message}.`,
        requestId,
      })
    : errorEnvelope({ code: "internal_error", message: internalErrorMessage, requestId });
  return new Response(JSON.stringify(envelope), {
    status: malformed ? 400 : 500,
    headers: { "content-type": "application/json", "x-request-id": requestId },
  });
}

function listenError({
  error,
  host,
  port,
  portSetting,
}: {
  error: NodeJS.ErrnoException;
  host: string;
  port: number;
  portSetting: string;
}): Error {
  if (error.code === "EADDRINUSE") {
    return new ConfigError(
      `Port ${port} on ${host} is already in use. Stop the other process or set ${portSetting} to a free port (${portSetting}=0 picks one).`,
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
      `Not allowed to listen on port ${port} (ports below 1024 need privileges). Set ${portSetting} to 1024 or above.`,
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
