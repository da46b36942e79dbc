import { Writable } from "node:stream";
import { HTTPException } from "hono/http-exception";
import { describe, expect, it } from "vitest";
import { NotFoundError, StoreError, ValidationError } from "../src/errors.ts";
import { errorEnvelopeSchema, internalErrorMessage } from "../src/http/errors.ts";
import type { DependencyCheck } from "../src/http/routes/readyz.ts";
import { createLogger } from "../src/logger.ts";
import type { StoreHealth, VectorStore } from "../src/store/index.ts";
import { makeTestApp } from "./helpers/app.ts";

/**
 * Stands in for the store in these HTTP-only tests: only `health()` is reachable from the routes under
 * test. The real store is exercised by test/main.int.test.ts and the store's own tests.
 */
class HealthOnlyStore implements VectorStore {
  constructor(readonly check: () => Promise<StoreHealth>) {}
  health() {
    return this.check();
  }
  async close() {}
  upsert(): never {
    throw new Error("not used by these tests");
  }
  search(): never {
    throw new Error("not used by these tests");
  }
  query(): never {
    throw new Error("not used by these tests");
  }
  get(): never {
    throw new Error("not used by these tests");
  }
  list(): never {
    throw new Error("not used by these tests");
  }
  delete(): never {
    throw new Error("not used by these tests");
  }
  count(): never {
    throw new Error("not used by these tests");
  }
  textSearch(): never {
    throw new Error("not used by these tests");
  }
  hybridSearch(): never {
    throw new Error("not used by these tests");
  }
  update(): never {
    throw new Error("not used by these tests");
  }
}

function makeApp({ health = async (): Promise<StoreHealth> => ({ ok: true }), timeoutMs = "1000" } = {}) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const app = makeTestApp({
    env: { MILVUS_TIMEOUT_MS: timeoutMs },
    logger: createLogger({ level: "debug", destination }),
    store: new HealthOnlyStore(health),
  });
  // Routes that fail in each way the error handler distinguishes.
  app.get("/test/validation", () => {
    throw new ValidationError('Field "topK" is 5000; the limit is 1024.');
  });
  app.get("/test/not-found", () => {
    throw new NotFoundError("Image img_1 does not exist.");
  });
  app.get("/test/store", () => {
    throw new StoreError("Milvus at 10.0.0.5:19530 is unreachable.");
  });
  app.get("/test/http-exception", () => {
    throw new HTTPException(413, { message: "Body is larger than 10 MiB." });
  });
  app.get("/test/bug", () => {
    throw new TypeError("Cannot read properties of undefined (reading 'secret internals')");
  });
  app.get("/test/tenant", (c) => c.json({ tenant: c.get("tenant") }));
  return { app, lines };
}

async function envelope(response: Response) {
  return errorEnvelopeSchema.parse(await response.json()).error;
}

describe("request ids", () => {
  it("generates one when none is sent and echoes it", async () => {
    const { app } = makeApp();
    const response = await app.request("/healthz");
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("keeps a sane incoming id", async () => {
    const { app, lines } = makeApp();
    const response = await app.request("/healthz", { headers: { "x-request-id": "trace-42_A=" } });
    expect(response.headers.get("x-request-id")).toBe("trace-42_A=");
    expect(lines.at(-1)).toMatchObject({ requestId: "trace-42_A=", msg: "request completed" });
  });

  it.each([
    ["spaces and quotes", 'x" injected="1'],
    ["markup", "<script>alert(1)</script>"],
    ["too many characters", "a".repeat(129)],
  ])("replaces an id with %s", async (_label, id) => {
    const { app } = makeApp();
    const response = await app.request("/healthz", { headers: { "x-request-id": id } });
    expect(response.headers.get("x-request-id")).not.toBe(id);
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("routes", () => {
  it("GET /healthz answers 200 ok", async () => {
    const { app } = makeApp();
    const response = await app.request("/healthz");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok" });
    expect(response.headers.get("cache-control")).toBe("no-store");
  });

  it("GET /readyz answers 200 when the store is healthy", async () => {
    const { app } = makeApp();
    const response = await app.request("/readyz");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ready" });
  });

  it("GET /readyz answers 503 with the store's reason", async () => {
    const { app } = makeApp({
      health: async () => ({ ok: false, reason: "collection loupe_images is not loaded" }),
    });
    const response = await app.request("/readyz", { headers: { "x-request-id": "probe-1" } });
    expect(response.status).toBe(503);
    expect(await envelope(response)).toEqual({
      code: "not_ready",
      message: "Not ready: collection loupe_images is not loaded.",
      requestId: "probe-1",
    });
  });

  it("GET /readyz answers 503 when the health check throws", async () => {
    const { app } = makeApp({
      health: async () => {
        throw new Error("socket hang up");
      },
    });
    const response = await app.request("/readyz");
    expect(response.status).toBe(503);
    expect((await envelope(response)).message).toBe(
      "Not ready: the vector store health check failed: socket hang up.",
    );
  });

  it("GET /readyz answers 503 within MILVUS_TIMEOUT_MS when the health check hangs", async () => {
    const { app } = makeApp({ health: () => new Promise<StoreHealth>(() => {}), timeoutMs: "200" });
    const started = performance.now();
    const response = await app.request("/readyz");
    expect(performance.now() - started).toBeLessThan(2000);
    expect(response.status).toBe(503);
    expect((await envelope(response)).message).toBe(
      "Not ready: the vector store did not answer its health check within 200 ms.",
    );
  });

  it("GET /readyz checks the shared dependencies: a required one failing is 503, a degraded one is listed", async () => {
    const ok = async () => ({ ok: true });
    const withDependencies = (dependencies: DependencyCheck[]) =>
      makeTestApp({ store: new HealthOnlyStore(async () => ({ ok: true })), dependencies });
    const redisDown: DependencyCheck = {
      name: "Redis",
      required: false,
      check: async () => ({ ok: false, reason: "Redis cannot be reached: rate limits are kept in memory" }),
    };
    const ready = await withDependencies([
      { name: "PostgreSQL", required: true, check: ok },
      redisDown,
    ]).request("/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: "ready",
      degraded: [{ dependency: "Redis", reason: "Redis cannot be reached: rate limits are kept in memory" }],
    });

    const pgDown = await withDependencies([
      {
        name: "PostgreSQL",
        required: true,
        check: async () => {
          throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
        },
      },
      redisDown,
    ]).request("/readyz");
    expect(pgDown.status).toBe(503);
    expect((await envelope(pgDown)).message).toBe(
      "Not ready: PostgreSQL health check failed: connect ECONNREFUSED 127.0.0.1:5432.",
    );
  });

  it("requests act for the default tenant, whatever they ask for", async () => {
    const { app } = makeApp();
    const response = await app.request("/test/tenant?tenant=other", { headers: { "x-tenant": "other" } });
    expect(await response.json()).toEqual({ tenant: "default" });
  });
});

describe("errors", () => {
  it("answers unknown routes 404 in the envelope", async () => {
    const { app } = makeApp();
    const response = await app.request("/nope", { method: "POST", headers: { "x-request-id": "r-404" } });
    expect(response.status).toBe(404);
    expect(response.headers.get("x-request-id")).toBe("r-404");
    expect(await envelope(response)).toEqual({
      code: "not_found",
      message: "No route for POST /nope. See the HTTP API section of the README.",
      requestId: "r-404",
    });
  });

  it.each([
    ["/test/validation", 400, "invalid_request", 'Field "topK" is 5000; the limit is 1024.'],
    ["/test/not-found", 404, "not_found", "Image img_1 does not exist."],
    ["/test/store", 503, "store_error", "Milvus at 10.0.0.5:19530 is unreachable."],
    ["/test/http-exception", 413, "payload_too_large", "Body is larger than 10 MiB."],
  ])("maps a thrown error on %s to status %i and code %s", async (route, status, code, message) => {
    const { app } = makeApp();
    const response = await app.request(route, { headers: { "x-request-id": "r-1" } });
    expect(response.status).toBe(status);
    expect(response.headers.get("x-request-id")).toBe("r-1");
    expect(await envelope(response)).toEqual({ code, message, requestId: "r-1" });
  });

  it("answers an unknown error 500 with a fixed message and logs it whole", async () => {
    const { app, lines } = makeApp();
    const response = await app.request("/test/bug", { headers: { "x-request-id": "r-500" } });
    expect(response.status).toBe(500);
    const body = await envelope(response);
    expect(body).toEqual({ code: "internal_error", message: internalErrorMessage, requestId: "r-500" });
    expect(JSON.stringify(body)).not.toContain("secret internals");
    const logged = lines.find((line) => line.msg === "unexpected error");
    expect(logged).toMatchObject({ level: 50, requestId: "r-500", err: { type: "TypeError" } });
    expect(JSON.stringify(logged)).toContain("secret internals");
    expect(JSON.stringify(logged)).toContain("at ");
  });

  it("writes one access-log line per request, probes at debug", async () => {
    const { app, lines } = makeApp();
    await app.request("/healthz");
    await app.request("/nope");
    const access = lines.filter((line) => line.msg === "request completed");
    expect(access).toMatchObject([
      { level: 20, req: { method: "GET", path: "/healthz" }, res: { status: 200 } },
      { level: 30, req: { method: "GET", path: "/nope" }, res: { status: 404 } },
    ]);
  });
});
