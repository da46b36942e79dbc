import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { type HttpServer, startHttpServer } from "../../src/http/server.ts";

const open: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((server) => server.close({ timeoutMs: 0 })));
});

async function serve(fetch: (request: Request) => Response | Promise<Response>, port = 0) {
  const server = await startHttpServer({ fetch, host: "127.0.0.1", port });
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
