/**
 * The HTTP client of `src/client/` against a stand-in Loupe: a tiny Hono app answering as the routes do,
 * in-process through `app.request` and over a real socket on 127.0.0.1 through `fetch`.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLoupeClient, LoupeApiError } from "../../src/client/index.ts";
import { AppError } from "../../src/errors.ts";
import type { ChatEvent, ChatResult } from "../../src/rag/types.ts";
import { findFreePort } from "../../src/store/free-port.ts";

const result = {
  answer: "The circle is red.",
  answered: true,
  confidence: 0.9,
  citations: [],
  evidence: [],
  standaloneQuestion: "What color is the circle?",
  composer: "offline",
  model: "loupe-offline",
  verification: { checked: 0, confirmed: 0, contradictions: [], corrected: false },
  timings: { embed: 1, retrieve: 1, ground: 1, compose: 1, verify: 1, total: 5 },
} satisfies ChatResult;

const envelope = (code: string, message: string) => ({ error: { code, message, requestId: "req_1" } });
const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);

/** A response streaming `text` in `size`-byte chunks, splitting lines and UTF-8 sequences as a network may. */
function chunked(text: string, size: number): Response {
  const bytes = new TextEncoder().encode(text);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let offset = 0; offset < bytes.length; offset += size)
        controller.enqueue(bytes.slice(offset, offset + size));
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

/** The stand-in: records what it was sent and answers like Loupe's routes. */
function standIn() {
  const seen: Array<{ path: string; query: string; headers: Record<string, string>; body: unknown }> = [];
  let jobPolls = 0;
  let stream = "";
  const record = (
    c: { req: { path: string; url: string; header(): Record<string, string> } },
    body: unknown,
  ) => seen.push({ path: c.req.path, query: new URL(c.req.url).search, headers: c.req.header(), body });
  const app = new Hono()
    .post("/v1/search", async (c) => {
      const multipart = (c.req.header("content-type") ?? "").startsWith("multipart/");
      if (multipart) {
        const form = await c.req.parseBody();
        const image = form.image as File;
        record(c, { ...form, image: { name: image.name, type: image.type, size: image.size } });
      } else {
        const json = (await c.req.json()) as { topK?: number; text?: string };
        record(c, json);
        if (json.topK === 500) return c.json(envelope("invalid_request", "topK must be at most 100."), 400);
        if (json.text === "proxy") return c.text("<html>Bad gateway</html>", 502);
        if (json.text === "garbled") return c.text("not json", 200);
      }
      return c.json({ items: [{ kind: "image", id: "img_a", score: 0.5 }] });
    })
    .post("/v1/images", async (c) => {
      if ((c.req.header("content-type") ?? "").startsWith("multipart/")) {
        const form = await c.req.parseBody({ all: true });
        const files = ([] as unknown[]).concat(form.files ?? []) as File[];
        const metadata = ([] as unknown[]).concat(form.metadata ?? []) as string[];
        record(c, {
          files: await Promise.all(
            files.map(async (file) => ({
              name: file.name,
              type: file.type,
              bytes: [...new Uint8Array(await file.arrayBuffer())],
            })),
          ),
          metadata: metadata.map((text) => JSON.parse(text) as unknown),
        });
        return c.json(
          {
            ...envelope("all_items_failed", "Every item failed."),
            items: files.map((_, index) => ({
              index,
              status: "failed",
              error: { code: "media_invalid", message: "Not an image." },
            })),
          },
          422,
        );
      }
      record(c, await c.req.json());
      return c.json({ job: { id: "job_1", status: "queued" } }, 202);
    })
    .get("/v1/jobs/:id", (c) => {
      jobPolls += 1;
      const done = jobPolls >= 2;
      return c.json({
        job: {
          id: c.req.param("id"),
          kind: "images",
          status: done ? "done" : "running",
          createdAt: "2025-01-01T00:00:00Z",
          counts: { total: 1, pending: done ? 0 : 1, done: done ? 1 : 0, skipped: 0, failed: 0 },
          items: [
            { index: 0, url: "https://example.com/a.png", status: done ? "stored" : "pending", id: "img_b" },
          ],
        },
      });
    })
    .post("/v1/chat", async (c) => {
      const body = (await c.req.json()) as { stream?: boolean; question: string };
      record(c, body);
      if (body.question === "refused")
        return c.json(envelope("not_ready", "The model pack is not loaded."), 503);
      return body.stream === true ? chunked(stream, 5) : c.json(result);
    });
  return {
    app,
    seen,
    get jobPolls() {
      return jobPolls;
    },
    stream(text: string) {
      stream = text;
    },
  };
}

describe("the Loupe client in-process", () => {
  it("turns the error envelope into an AppError with the server's code, status, message and request id", async () => {
    const server = standIn();
    const client = createLoupeClient({ request: (path, init) => server.app.request(path, init) });
    expect(client.target).toBe("in-process");
    const error = await client.search({ text: "x", topK: 500 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LoupeApiError);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({
      code: "invalid_request",
      status: 400,
      message: "topK must be at most 100.",
      requestId: "req_1",
      request: "POST /v1/search",
    });

    const proxy = await client.search({ text: "proxy" }).catch((caught: unknown) => caught);
    expect(proxy).toMatchObject({ code: "unexpected_response", status: 502 });
    expect((proxy as Error).message).toContain("<html>Bad gateway</html>");
    await expect(client.search({ text: "garbled" })).rejects.toMatchObject({
      code: "bad_server_response",
      message: expect.stringContaining('body that is not JSON: "not json"'),
    });
  });

  it("searches with JSON, or with multipart when the image is an upload", async () => {
    const server = standIn();
    const client = createLoupeClient({ request: (path, init) => server.app.request(path, init) });
    const items = await client.search({ text: "red", kinds: ["image"], topK: 3, filter: [{ field: "x" }] });
    expect(items).toEqual([{ kind: "image", id: "img_a", score: 0.5 }]);
    expect(server.seen[0]?.body).toEqual({
      text: "red",
      kinds: ["image"],
      topK: 3,
      filter: [{ field: "x" }],
    });
    expect(server.seen[0]?.headers["content-type"]).toBe("application/json");

    await client.search({
      text: "red",
      image: { bytes: png, filename: "query.png" },
      kinds: ["image", "triple"],
    });
    expect(server.seen[1]?.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);
    expect(server.seen[1]?.body).toEqual({
      image: { name: "query.png", type: "image/png", size: png.length },
      text: "red",
      kinds: "image,triple",
    });
  });

  it("uploads images as multipart with one metadata field per file, and hands back a 422's failed items", async () => {
    const server = standIn();
    const client = createLoupeClient({ request: (path, init) => server.app.request(path, init) });
    const answer = await client.ingestImages({
      files: [
        { file: { bytes: png, filename: "a.png" }, metadata: { tags: ["red"] } },
        { file: { bytes: new Uint8Array([1, 2]), filename: "b.bin" } },
      ],
    });
    expect(server.seen[0]?.body).toEqual({
      files: [
        { name: "a.png", type: "image/png", bytes: [...png] },
        { name: "b.bin", type: "application/octet-stream", bytes: [1, 2] },
      ],
      metadata: [{ tags: ["red"] }, {}],
    });
    expect(answer).toEqual({
      kind: "items",
      items: [
        { index: 0, status: "failed", error: { code: "media_invalid", message: "Not an image." } },
        { index: 1, status: "failed", error: { code: "media_invalid", message: "Not an image." } },
      ],
    });
  });

  it("follows a job (202) until it has ended, and asks for one with async", async () => {
    const server = standIn();
    const client = createLoupeClient({
      request: (path, init) => server.app.request(path, init),
      jobPollMs: 1,
    });
    const answer = await client.ingestImages(
      { urls: [{ url: "https://example.com/a.png", metadata: { title: "a" } }], metadata: { tags: ["t"] } },
      { async: true },
    );
    expect(server.seen[0]).toMatchObject({
      query: "?async=true",
      body: {
        urls: [{ url: "https://example.com/a.png", metadata: { title: "a" } }],
        metadata: { tags: ["t"] },
      },
    });
    expect(answer).toEqual({ kind: "job", job: { id: "job_1", status: "queued" } });
    const items = await client.itemsOf(answer);
    expect(items).toEqual([{ index: 0, url: "https://example.com/a.png", status: "stored", id: "img_b" }]);
    expect(server.jobPolls).toBe(2);
  });

  it("streams a chat turn's events from SSE split across chunks, skipping unknown events", async () => {
    const server = standIn();
    server.stream(
      [
        ": stream open\n\n",
        frame("retrieval", { standaloneQuestion: "q", items: [], ms: 1 }),
        frame("answer-delta", { text: "The circle is " }),
        frame("some-future-event", { ignored: true }),
        'event: answer-delta\r\ndata: {"text":"red — é."}\r\n\r\n',
        frame("done", result),
      ].join(""),
    );
    const client = createLoupeClient({ request: (path, init) => server.app.request(path, init) });
    const events: ChatEvent[] = [];
    for await (const event of client.chatEvents({
      question: "What color is the circle?",
      images: [{ bytes: png }, "img_stored"],
      composer: "offline",
    })) {
      events.push(event);
    }
    expect(events.map((event) => event.type)).toEqual(["retrieval", "answer-delta", "answer-delta", "done"]);
    expect(events[2]).toEqual({ type: "answer-delta", data: { text: "red — é." } });
    expect(events[3]).toEqual({ type: "done", data: result });
    expect(server.seen[0]?.headers.accept).toBe("text/event-stream");
    expect(server.seen[0]?.body).toEqual({
      question: "What color is the circle?",
      images: [`data:image/png;base64,${Buffer.from(png).toString("base64")}`, "img_stored"],
      composer: "offline",
      stream: true,
    });
    expect(await client.chat({ question: "again" })).toEqual(result);
  });

  it("fails a chat stream on an error answer, an error event, or an end without done", async () => {
    const server = standIn();
    const client = createLoupeClient({ request: (path, init) => server.app.request(path, init) });
    const drain = async (question: string) => {
      for await (const _event of client.chatEvents({ question })) {
        // Only the failure matters here.
      }
    };
    await expect(drain("refused")).rejects.toMatchObject({ code: "not_ready", status: 503 });

    server.stream(
      frame("answer-delta", { text: "The" }) + frame("error", envelope("llm_failed", "The LLM broke.")),
    );
    const failed = await drain("x").catch((caught: unknown) => caught);
    expect(failed).toBeInstanceOf(LoupeApiError);
    expect(failed).toMatchObject({
      code: "llm_failed",
      status: 502,
      message: "The LLM broke.",
      requestId: "req_1",
    });

    server.stream(frame("answer-delta", { text: "The" }));
    await expect(drain("x")).rejects.toMatchObject({
      code: "bad_server_response",
      message: expect.stringMatching(/without a done event/),
    });
  });
});

describe("the Loupe client over HTTP", () => {
  let server: Server;
  let baseUrl: string;
  const stand = standIn();

  beforeAll(async () => {
    server = createServer(getRequestListener(stand.app.fetch));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("sends to the base URL with the configured headers, and streams over a real socket", async () => {
    const client = createLoupeClient({ baseUrl: `${baseUrl}/`, headers: { authorization: "Bearer k" } });
    expect(client.target).toBe(baseUrl);
    await client.search({ text: "red" });
    expect(stand.seen.at(-1)).toMatchObject({ path: "/v1/search", headers: { authorization: "Bearer k" } });
    stand.stream(frame("answer-delta", { text: "é" }) + frame("done", result));
    const types: string[] = [];
    for await (const event of client.chatEvents({ question: "q" })) types.push(event.type);
    expect(types).toEqual(["answer-delta", "done"]);
    await expect(client.search({ text: "x", topK: 500 })).rejects.toMatchObject({
      code: "invalid_request",
      status: 400,
    });
  });

  it("says when the server cannot be reached", async () => {
    const url = `http://127.0.0.1:${await findFreePort()}`;
    const error = await createLoupeClient({ baseUrl: url })
      .search({ text: "x" })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ code: "server_unreachable", status: 503 });
    expect((error as Error).message).toMatch(
      /^Cannot reach Loupe at http:\/\/127\.0\.0\.1:\d+ \(.*\)\. Start it with `loupe serve`/,
    );
  });
});
