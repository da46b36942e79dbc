/**
 * The limits over real HTTP on loopback: Loupe's app (over the route-test services) behind the server of
 * `src/http/server.ts`. A caller limited to 10 calls a second gets 429 on the 11th; a 200 MB JSON body
 * is refused within a second while the server's memory barely moves (measured in a server process of
 * its own); a body trickled at 1 byte a second is cut at the request timeout. Every loop here is bounded
 * and stops by itself.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config.ts";
import { type HttpServer, startHttpServer } from "../../../src/http/server.ts";
import { makeTestApp } from "../../helpers/app.ts";
import { gateApp } from "./gate-app.ts";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let dataDir: string;
const servers: HttpServer[] = [];
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), "loupe-limits-http-"));
});
afterAll(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close({ timeoutMs: 0 })));
  await rm(dataDir, { recursive: true, force: true });
});

/** Loupe's app configured by `env`, behind the real server, in this process. */
async function serveLoupe(env: Record<string, string>): Promise<HttpServer> {
  const full = { LOUPE_DATA_DIR: dataDir, ...env };
  const config = parseConfig({ env: full });
  const server = await startHttpServer({
    fetch: makeTestApp({ env: full }).fetch,
    host: "127.0.0.1",
    port: 0,
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
  });
  servers.push(server);
  return server;
}

interface PipelinedAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * `count` GETs of `path` written at once on one connection (HTTP/1.1 pipelining), so that they reach the
 * server within a few milliseconds however busy the machine; resolves with the answers in order, or
 * with those that came within 5 s.
 */
function pipelined(url: string, pathname: string, count: number): Promise<PipelinedAnswer[]> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(url).port), "127.0.0.1");
    const answers: PipelinedAnswer[] = [];
    let buffer = "";
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answers);
    };
    const timer = setTimeout(finish, 5000);
    socket.on("error", finish);
    socket.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      for (;;) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end === -1) break;
        const [statusLine = "", ...lines] = buffer.slice(0, end).split("\r\n");
        const headers = Object.fromEntries(
          lines.map((line) => [
            line.slice(0, line.indexOf(":")).toLowerCase(),
            line.slice(line.indexOf(":") + 1).trim(),
          ]),
        );
        const length = Number(headers["content-length"] ?? 0);
        if (buffer.length < end + 4 + length) break;
        answers.push({
          status: Number(statusLine.split(" ")[1]),
          headers,
          body: buffer.slice(end + 4, end + 4 + length),
        });
        buffer = buffer.slice(end + 4 + length);
      }
      if (answers.length >= count) finish();
    });
    socket.write(`GET ${pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`.repeat(count));
  });
}

describe("rate limits over HTTP", () => {
  it("11 requests in a second from a client limited to 10 per second → at least one 429 with Retry-After", async () => {
    const server = await serveLoupe({ LOUPE_RATE_LIMIT_PER_SECOND: "10", LOUPE_RATE_LIMIT_BURST: "10" });
    const answers = await pipelined(server.url, "/v1/jobs/job_unknown", 11);
    expect(answers).toHaveLength(11);
    const refused = answers.filter((answer) => answer.status === 429);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(answers.filter((answer) => answer.status === 404).length).toBeGreaterThanOrEqual(9);
    const [first] = refused;
    expect(Number(first?.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(first?.headers["ratelimit-policy"]).toBe('"default";q=10;w=1');
    expect(first?.headers.ratelimit).toMatch(/^"default";r=0;t=\d+$/);
    expect(JSON.parse(first?.body ?? "")).toMatchObject({ error: { code: "rate_limited" } });
  });

  it("11 requests in a second with a key limited to 10 per second (its own rate) → at least one 429", async () => {
    const app = gateApp({
      principal: { keyId: "key_0123456789abcdef", rateLimit: { perSecond: 10, burst: 10 } },
      perSecond: 1000,
      burst: 1000,
    });
    const server = await startHttpServer({ fetch: app.fetch, host: "127.0.0.1", port: 0 });
    servers.push(server);
    const answers = await pipelined(server.url, "/read", 11);
    expect(answers).toHaveLength(11);
    const refused = answers.filter((answer) => answer.status === 429);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0]?.headers["retry-after"]).toBe("1");
    expect(refused[0]?.headers["ratelimit-policy"]).toBe('"key";q=10;w=1');
  });
});

describe("the heavy-request cap over HTTP", () => {
  it("an event stream holds its tenant's slot until it ends, or until its client leaves", async () => {
    const app = gateApp({ maxHeavyPerTenant: 1, burst: 1000 });
    const server = await startHttpServer({ fetch: app.fetch, host: "127.0.0.1", port: 0 });
    servers.push(server);
    const first = await fetch(`${server.url}/stream`);
    expect(await first.text()).toBe("data: 1\n\ndata: 2\n\ndata: 3\n\n");
    const slow = await fetch(`${server.url}/slow-stream`);
    expect(slow.status).toBe(200);
    const reader = slow.body?.getReader();
    await reader?.read();
    const held = await fetch(`${server.url}/stream`);
    expect(held.status).toBe(429);
    await held.body?.cancel();
    // The client leaves mid-stream: the server cancels the stream, which frees the slot.
    await reader?.cancel();
    let status = 0;
    for (let attempt = 0; attempt < 20 && status !== 200; attempt += 1) {
      await sleep(50);
      const next = await fetch(`${server.url}/stream`);
      status = next.status;
      await next.body?.cancel();
    }
    expect(status).toBe(200);
  });
});

describe("JSON bodies within the limit, over HTTP", () => {
  /** A POST of `text` as JSON, streamed without Content-Length (chunked) or with it. */
  async function post(url: string, text: string, chunked: boolean) {
    const bytes = new TextEncoder().encode(text);
    const body = chunked
      ? new ReadableStream<Uint8Array>({
          start(controller) {
            for (let offset = 0; offset < bytes.length; offset += 1000) {
              controller.enqueue(bytes.slice(offset, offset + 1000));
            }
            controller.close();
          },
        })
      : bytes;
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    return {
      status: response.status,
      error: ((await response.json()) as { error?: { message: string } }).error,
    };
  }

  it("reach the route, chunked or not, and the route's own (smaller) limit still counts them", async () => {
    // The query routes' own limit: 4/3 of the image limit plus 64 KiB, here 68 KiB.
    const server = await serveLoupe({ LOUPE_MAX_IMAGE_BYTES: "3000" });
    for (const chunked of [false, true]) {
      // No model pack: a search that got through every gate is answered 503 by the search service.
      const small = await post(`${server.url}/v1/search`, JSON.stringify({ text: "a red circle" }), chunked);
      expect(small.status, `chunked: ${chunked}`).toBe(503);
      const large = await post(
        `${server.url}/v1/search`,
        JSON.stringify({ text: "a", pad: "x".repeat(80_000) }),
        chunked,
      );
      expect(large.status, `chunked: ${chunked}: ${large.error?.message}`).toBe(413);
      expect(large.error?.message).toMatch(/LOUPE_MAX_IMAGE_BYTES/);
    }
  });
});

describe("a body trickled in", () => {
  it("at 1 byte a second is cut at LOUPE_REQUEST_TIMEOUT_MS with a 408 envelope", async () => {
    const server = await serveLoupe({ LOUPE_REQUEST_TIMEOUT_MS: "1500", LOUPE_HEADERS_TIMEOUT_MS: "1000" });
    const socket = connect(Number(new URL(server.url).port), "127.0.0.1");
    let reply = "";
    socket.setEncoding("utf8").on("data", (chunk: string) => {
      reply += chunk;
    });
    socket.on("error", () => {});
    const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now())));
    const started = performance.now();
    socket.write(
      "POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    );
    let sent = 0;
    // At most 10 bytes, one a second; the loop ends as soon as the server has cut the connection.
    while (sent < 10 && !socket.destroyed && reply === "") {
      socket.write(sent === 0 ? "{" : " ");
      sent += 1;
      await Promise.race([sleep(1000), closed]);
    }
    const cutAfterMs = (await closed) - started;
    expect(reply).toMatch(/^HTTP\/1.1 408 /);
    expect(JSON.parse(reply.split("\r\n\r\n")[1] ?? "")).toMatchObject({
      error: { code: "request_timeout" },
    });
    // The deadline, plus Node's check interval (a quarter of the headers timeout, at most 1 s).
    expect(cutAfterMs).toBeGreaterThanOrEqual(1400);
    expect(cutAfterMs).toBeLessThan(1500 + 250 + 1000);
    expect(sent).toBeLessThanOrEqual(3);
  });
});

/** Peak and current resident memory of a process, in MiB, from /proc. */
async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(status.match(new RegExp(`${name}:\\s+(\\d+) kB`))?.[1]) / 1024;
  return { rss: field("VmRSS"), peak: field("VmHWM") };
}

/**
 * Sends a JSON body of `total` bytes (with or without Content-Length) in 64 KiB chunks until the answer
 * arrives or the body is sent; resolves with the status and the time to the answer.
 */
function sendLargeJson(
  url: string,
  { total, declareLength }: { total: number; declareLength: boolean },
): Promise<{ status?: number; body: string; answeredAfterMs: number }> {
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  return new Promise((resolve) => {
    const started = performance.now();
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (declareLength) headers["content-length"] = String(total);
    const req = request(url, { method: "POST", agent: false, headers }, (response) => {
      const answeredAfterMs = performance.now() - started;
      let body = "";
      response.setEncoding("utf8").on("data", (text: string) => {
        body += text;
      });
      response.on("end", () => {
        req.destroy();
        resolve({ status: response.statusCode, body, answeredAfterMs });
      });
    });
    req.on("error", () => resolve({ body: "", answeredAfterMs: performance.now() - started }));
    let sent = 0;
    const pump = () => {
      while (sent < total && !req.destroyed) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once("drain", pump);
          return;
        }
      }
      if (!req.destroyed) req.end();
    };
    req.write('{"question":"');
    sent += 13;
    pump();
  });
}

describe.runIf(process.platform === "linux")("a 200 MB JSON body, in a server process of its own", () => {
  let child: ChildProcessByStdio<Writable, Readable, null>;
  let url: string;

  beforeAll(async () => {
    child = spawn(process.execPath, ["--import", "tsx", path.join(import.meta.dirname, "serve-app.ts")], {
      env: { ...process.env, LOUPE_DATA_DIR: dataDir, LOUPE_LOG_LEVEL: "silent" },
      stdio: ["pipe", "pipe", "inherit"],
    });
    url = await new Promise<string>((resolve, reject) => {
      child.stdout.once("data", (line: Buffer) => resolve((JSON.parse(String(line)) as { url: string }).url));
      child.once("exit", (code) => reject(new Error(`the server process exited with ${code}`)));
    });
  });
  afterAll(async () => {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.stdin.end();
    await Promise.race([exited, sleep(5000)]);
    if (child.exitCode === null) child.kill("SIGKILL");
  });

  /** The server's peak memory growth (MiB) while `send` runs; its peak is reset to its current size first. */
  async function peakGrowth(send: () => Promise<void>): Promise<number> {
    await writeFile(`/proc/${child.pid}/clear_refs`, "5");
    const before = await memoryOf(child.pid as number);
    await send();
    await sleep(300);
    return (await memoryOf(child.pid as number)).peak - before.peak;
  }

  it("with Content-Length: 413 within 1 s, naming the limit and multipart; the server grows by less than 50 MB", async () => {
    for (const route of ["/v1/chat", "/v1/videos"]) {
      let result: Awaited<ReturnType<typeof sendLargeJson>> | undefined;
      const growth = await peakGrowth(async () => {
        result = await sendLargeJson(`${url}${route}`, { total: 200 * MiB, declareLength: true });
      });
      expect(result?.status, route).toBe(413);
      expect(result?.answeredAfterMs, route).toBeLessThan(1000);
      const { error } = JSON.parse(result?.body ?? "") as { error: { code: string; message: string } };
      expect(error.code).toBe("payload_too_large");
      expect(error.message).toMatch(
        /^The request body is 209715200 bytes; the limit is 33554432 bytes \(LOUPE_MAX_JSON_BYTES\)\. Send images and videos as multipart\/form-data uploads/,
      );
      expect(growth, route).toBeLessThan(50);
    }
  });

  it("without Content-Length (chunked): 413 within 1 s, the server holding no more than the limit", async () => {
    let result: Awaited<ReturnType<typeof sendLargeJson>> | undefined;
    const growth = await peakGrowth(async () => {
      result = await sendLargeJson(`${url}/v1/chat`, { total: 200 * MiB, declareLength: false });
    });
    expect(result?.status).toBe(413);
    expect(result?.answeredAfterMs).toBeLessThan(1000);
    expect(result?.body).toMatch(
      /is over 33554432 bytes; the limit is 33554432 bytes \(LOUPE_MAX_JSON_BYTES\)/,
    );
    // The bytes up to the limit (32 MiB) are held while they are counted, and nothing past them.
    expect(growth).toBeLessThan(32 + 50);
  });
});
