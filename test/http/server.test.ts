import { request } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { type HttpServer, type StartHttpServerOptions, startHttpServer } from "../../src/http/server.ts";

const open: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((server) => server.close({ timeoutMs: 0 })));
});

async function serve(
  fetch: (request: Request) => Response | Promise<Response>,
  port = 0,
  limits: Omit<StartHttpServerOptions, "fetch" | "host" | "port"> = {},
) {
  const server = await startHttpServer({ fetch, host: "127.0.0.1", port, ...limits });
  open.push(server);
  return server;
}

/** A GET on a fresh connection (no pooled sockets); resolves with the status and body, or the socket error. */
function get(url: string): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false }, (response) => {
      let body = "";
      response.setEncoding("utf8").on("data", (chunk: string) => {
        body += chunk;
      });
      response.on("end", () => resolve({ status: response.statusCode, body }));
      response.on("error", (error) => resolve({ error: error.message }));
    });
    req.on("error", (error) => resolve({ error: error.message }));
    req.end();
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("startHttpServer", () => {
  it("serves on a free port and reports its URL", async () => {
    const server = await serve(() => new Response("hello"));
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
    expect(await get(`${server.url}/`)).toEqual({ status: 200, body: "hello" });
  });

  it("refuses a taken port with a ConfigError naming PORT", async () => {
    const first = await serve(() => new Response("first"));
    const error = await startHttpServer({
      fetch: () => new Response(),
      host: "127.0.0.1",
      port: first.port,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(
      `Port ${first.port} on 127.0.0.1 is already in use. Stop the other process or set PORT to a free port (PORT=0 picks one).`,
    );
  });

  it("close() lets an in-flight request finish, then stops accepting", async () => {
    const server = await serve(async () => {
      await sleep(300);
      return new Response("slow but complete");
    });
    const pending = get(`${server.url}/`);
    await sleep(50);
    expect(server.inFlight).toBe(1);
    const result = await server.close({ timeoutMs: 5000 });
    expect(result).toEqual({ drained: true, abandoned: 0 });
    expect(await pending).toEqual({ status: 200, body: "slow but complete" });
    expect((await get(`${server.url}/`)).error).toMatch(/ECONNREFUSED/);
  });

  it("close() cuts requests still running at the deadline", async () => {
    const server = await serve(() => new Promise<Response>(() => {}));
    const pending = get(`${server.url}/`);
    await sleep(50);
    const started = performance.now();
    const result = await server.close({ timeoutMs: 200 });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(result).toEqual({ drained: false, abandoned: 1 });
    expect((await pending).error).toBeDefined();
  });
});

/** Writes `text` on a raw connection and resolves with everything the server sends until it closes. */
function rawExchange(
  url: string,
  text: string,
  { keepOpenMs = 5000 }: { keepOpenMs?: number } = {},
): Promise<{ reply: string; closedAfterMs: number }> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect(Number(port), "127.0.0.1");
    let reply = "";
    const timer = setTimeout(() => socket.destroy(), keepOpenMs);
    socket.setEncoding("utf8").on("data", (chunk: string) => {
      reply += chunk;
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ reply, closedAfterMs: performance.now() - started });
    });
    socket.write(text);
  });
}

/** The status and JSON body of a raw HTTP/1.1 reply. */
function parseReply(reply: string): { status: number; headers: string; body: unknown } {
  const [head = "", body = ""] = reply.split("\r\n\r\n");
  return {
    status: Number(head.split(" ")[1]),
    headers: head,
    body: body === "" ? undefined : JSON.parse(body),
  };
}

const envelopeShape = {
  error: { code: expect.any(String), message: expect.any(String), requestId: expect.any(String) },
};

describe("startHttpServer refusals in the error envelope", () => {
  it("headers over Node's limit → 431 headers_too_large", async () => {
    const server = await serve(() => new Response("never"));
    const { reply } = await rawExchange(
      server.url,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
    );
    const parsed = parseReply(reply);
    expect(parsed.status).toBe(431);
    expect(parsed.body).toEqual(envelopeShape);
    expect((parsed.body as { error: { code: string } }).error.code).toBe("headers_too_large");
    expect(parsed.headers).toMatch(/x-request-id: [0-9a-f-]{36}/);
  });

  it("a malformed request line → 400 invalid_request", async () => {
    const server = await serve(() => new Response("never"));
    const parsed = parseReply((await rawExchange(server.url, "NOT A REQUEST\r\n\r\n")).reply);
    expect(parsed.status).toBe(400);
    expect(parsed.body).toMatchObject({ error: { code: "invalid_request" } });
    expect((parsed.body as { error: { message: string } }).error.message).toMatch(/^Malformed HTTP request/);
  });

  it("a request without a Host header → 400 invalid_request from the adapter, in the envelope", async () => {
    const server = await serve(() => new Response("never"));
    const parsed = parseReply(
      (await rawExchange(server.url, "GET / HTTP/1.1\r\n\r\n", { keepOpenMs: 1000 })).reply,
    );
    expect(parsed.status).toBe(400);
    expect(parsed.body).toMatchObject({
      error: { code: "invalid_request", message: "Malformed request: Missing host header." },
    });
  });

  it("headers trickled past the headers timeout → 408 request_timeout, connection closed", async () => {
    const server = await serve(() => new Response("never"), 0, {
      headersTimeoutMs: 300,
      requestTimeoutMs: 1000,
    });
    const { reply, closedAfterMs } = await rawExchange(server.url, "GET / HTTP/1.1\r\nHost: x\r\n");
    const parsed = parseReply(reply);
    expect(parsed.status).toBe(408);
    expect(parsed.body).toMatchObject({ error: { code: "request_timeout" } });
    expect((parsed.body as { error: { message: string } }).error.message).toMatch(/LOUPE_HEADERS_TIMEOUT_MS/);
    expect(closedAfterMs).toBeGreaterThanOrEqual(250);
    expect(closedAfterMs).toBeLessThan(1500);
  });

  it("a body trickled at 1 byte per 100 ms is cut at the request timeout with 408", async () => {
    let bodyError: unknown;
    const server = await serve(
      async (request) => {
        try {
          await request.text();
        } catch (error) {
          bodyError = error;
        }
        return new Response("read");
      },
      0,
      { headersTimeoutMs: 300, requestTimeoutMs: 800 },
    );
    const { port } = new URL(server.url);
    const started = performance.now();
    const socket = connect(Number(port), "127.0.0.1");
    let reply = "";
    socket.setEncoding("utf8").on("data", (chunk: string) => {
      reply += chunk;
    });
    socket.on("error", () => {});
    socket.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n");
    // One byte every 100 ms; the loop ends by itself when the socket closes or after 40 bytes.
    let sent = 0;
    while (!socket.destroyed && !socket.writableEnded && sent < 40) {
      socket.write("a");
      sent += 1;
      await sleep(100);
      if (reply !== "") break;
    }
    await new Promise<void>((resolve) => (socket.closed ? resolve() : socket.once("close", () => resolve())));
    const cutAfterMs = performance.now() - started;
    expect(parseReply(reply)).toMatchObject({ status: 408, body: { error: { code: "request_timeout" } } });
    expect(cutAfterMs).toBeGreaterThanOrEqual(700);
    expect(cutAfterMs).toBeLessThan(2000);
    expect(sent).toBeLessThan(20);
    await sleep(50);
    expect(bodyError).toBeDefined();
  });

  it("an event stream answering longer than the request timeout is not cut", async () => {
    const server = await serve(
      () =>
        new Response(
          new ReadableStream({
            async start(controller) {
              for (let index = 0; index < 6; index += 1) {
                controller.enqueue(new TextEncoder().encode(`data: ${index}\n\n`));
                await sleep(250);
              }
              controller.close();
            },
          }),
          { headers: { "content-type": "text/event-stream" } },
        ),
      0,
      { headersTimeoutMs: 300, requestTimeoutMs: 500 },
    );
    const started = performance.now();
    const result = await get(`${server.url}/`);
    expect(performance.now() - started).toBeGreaterThan(1200);
    expect(result.status).toBe(200);
    expect(result.body?.match(/data: \d/g)).toHaveLength(6);
  });

  it("an idle keep-alive connection is closed after the keep-alive timeout", async () => {
    const server = await serve(() => new Response("ok"), 0, { keepAliveTimeoutMs: 300 });
    const { reply, closedAfterMs } = await rawExchange(server.url, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(reply).toMatch(/^HTTP\/1.1 200/);
    expect(closedAfterMs).toBeGreaterThanOrEqual(250);
    expect(closedAfterMs).toBeLessThan(2000);
  });

  it("connections over the cap are closed on arrival; the ones held keep working", async () => {
    const server = await serve(() => new Response("ok"), 0, { maxConnections: 2 });
    const { port } = new URL(server.url);
    const held = [connect(Number(port), "127.0.0.1"), connect(Number(port), "127.0.0.1")];
    await Promise.all(held.map((socket) => new Promise((resolve) => socket.once("connect", resolve))));
    await sleep(50);
    const third = await rawExchange(server.url, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", { keepOpenMs: 2000 });
    expect(third.reply).toBe("");
    expect(third.closedAfterMs).toBeLessThan(1000);
    const first = held[0];
    const answered = new Promise<string>((resolve) => {
      let reply = "";
      first?.setEncoding("utf8").on("data", (chunk: string) => {
        reply += chunk;
        if (reply.includes("ok")) resolve(reply);
      });
    });
    first?.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(await answered).toMatch(/^HTTP\/1.1 200/);
    for (const socket of held) socket.destroy();
  });
});
