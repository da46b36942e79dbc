/**
 * The gates `defineRoute` puts in front of a route, in-process: the cost taken from the caller's bucket
 * (and the RateLimit fields), the tenant's cap on heavy requests, and the JSON body read within
 * LOUPE_MAX_JSON_BYTES as it arrives. Over real HTTP they are exercised in limits-http.test.ts.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config.ts";
import { addressBucket } from "../../../src/http/limits/client-address.ts";
import { createMemoryRateLimiter } from "../../../src/http/limits/memory-rate-limiter.ts";
import { DEFAULT_MAX_JSON_BYTES } from "../../../src/http/limits/request-limits.ts";
import { buildOpenApiDocument } from "../../../src/http/openapi.ts";
import { gateApp } from "./gate-app.ts";

/** Bindings as @hono/node-server gives them: the connection's peer address. */
const from = (remoteAddress: string) => ({ incoming: { socket: { remoteAddress } } });

async function errorOf(response: Response): Promise<{ code: string; message: string }> {
  return ((await response.json()) as { error: { code: string; message: string } }).error;
}

describe("costGate", () => {
  it("11 calls of a client limited to 10 per second: the 11th is 429 rate_limited with Retry-After", async () => {
    const app = gateApp();
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let index = 0; index < 11; index += 1) {
      const response = await app.request("/read", {}, from("192.0.2.1"));
      statuses.push(response.status);
      if (response.status === 429) refused = response;
    }
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(200));
    expect(statuses[10]).toBe(429);
    expect(refused?.headers.get("retry-after")).toBe("1");
    expect(refused?.headers.get("ratelimit-policy")).toBe('"default";q=10;w=1');
    expect(refused?.headers.get("ratelimit")).toBe('"default";r=0;t=1');
    const error = await errorOf(refused as Response);
    expect(error.code).toBe("rate_limited");
    expect(error.message).toMatch(
      /costs 1 of a bucket of 10 refilled at 10 per second \(LOUPE_RATE_LIMIT_PER_SECOND\)/,
    );
  });

  it("every limited answer carries the RateLimit fields", async () => {
    const response = await gateApp().request("/read", {}, from("192.0.2.1"));
    expect(response.status).toBe(200);
    expect(response.headers.get("ratelimit")).toBe('"default";r=9;t=1');
    const stream = await gateApp().request("/stream", {}, from("192.0.2.1"));
    expect(stream.headers.get("ratelimit")).toBe('"default";r=5;t=1');
    await stream.text();
  });

  it("a key's own rate overrides the default, and its bucket is the key's, wherever it calls from", async () => {
    const app = gateApp({ principal: { keyId: "key_1", rateLimit: { perSecond: 1, burst: 2 } }, burst: 100 });
    expect((await app.request("/read", {}, from("192.0.2.1"))).status).toBe(200);
    expect((await app.request("/read", {}, from("192.0.2.2"))).status).toBe(200);
    const refused = await app.request("/read", {}, from("192.0.2.3"));
    expect(refused.status).toBe(429);
    expect(refused.headers.get("ratelimit-policy")).toBe('"key";q=2;w=2');
    expect((await errorOf(refused)).message).toMatch(/this API key's rate/);
  });

  it("heavy routes cost more: a bucket of 10 admits two calls costing 5", async () => {
    const app = gateApp({ maxHeavyPerTenant: 0 });
    const call = () =>
      app.request(
        "/heavy",
        { method: "POST", headers: { "content-type": "application/json" }, body: "{}" },
        from("192.0.2.1"),
      );
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(429);
  });

  it("clients are bucketed apart by address; an IPv6 client by its /64", async () => {
    const app = gateApp({ burst: 1, perSecond: 0.01 });
    expect((await app.request("/read", {}, from("192.0.2.1"))).status).toBe(200);
    expect((await app.request("/read", {}, from("192.0.2.2"))).status).toBe(200);
    expect((await app.request("/read", {}, from("2001:db8:1:2::1"))).status).toBe(200);
    expect((await app.request("/read", {}, from("2001:db8:1:2:ffff::9"))).status).toBe(429);
    expect(addressBucket("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(addressBucket("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
  });

  it("no limit for in-process calls without a key, or with LOUPE_RATE_LIMIT_PER_SECOND=0", async () => {
    const inProcess = gateApp({ burst: 1 });
    for (let index = 0; index < 5; index += 1) expect((await inProcess.request("/read")).status).toBe(200);
    const off = gateApp({ burst: 1, perSecond: 0 });
    for (let index = 0; index < 5; index += 1) {
      const response = await off.request("/read", {}, from("192.0.2.1"));
      expect(response.status).toBe(200);
      expect(response.headers.get("ratelimit")).toBeNull();
    }
  });
});

describe("heavyGate", () => {
  it("a tenant's heavy requests over the cap → 429 too_many_concurrent_requests; a slot frees when one ends", async () => {
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const app = gateApp({ maxHeavyPerTenant: 1, heavyGate: gate, burst: 100 });
    const post = () =>
      app.request("/heavy", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: '{"text":"a"}',
      });
    const first = post();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = await post();
    expect(second.status).toBe(429);
    expect(second.headers.get("retry-after")).toBe("1");
    const error = await errorOf(second);
    expect(error.code).toBe("too_many_concurrent_requests");
    expect(error.message).toMatch(/LOUPE_MAX_HEAVY_PER_TENANT/);
    open();
    expect((await first).status).toBe(200);
    expect((await post()).status).toBe(200);
  });

  it("another tenant is not held by the first one's slots", async () => {
    const limiter = createMemoryRateLimiter();
    const held = await limiter.acquire({ key: "tenant:tenant-a", max: 1, ttlMs: 60_000 });
    expect(held).toBeDefined();
    const body = { method: "POST", headers: { "content-type": "application/json" }, body: "{}" };
    expect((await gateApp({ limiter, maxHeavyPerTenant: 1 }).request("/heavy", body)).status).toBe(429);
    const other = gateApp({ limiter, maxHeavyPerTenant: 1, principal: { tenant: "tenant-b" } });
    expect((await other.request("/heavy", body)).status).toBe(200);
  });

  it("an event stream holds its slot until it is read to the end", async () => {
    const app = gateApp({ maxHeavyPerTenant: 1, burst: 100 });
    const stream = await app.request("/stream");
    expect(stream.status).toBe(200);
    expect((await app.request("/stream")).status).toBe(429);
    expect(await stream.text()).toBe("data: 1\n\ndata: 2\n\ndata: 3\n\n");
    const next = await app.request("/stream");
    expect(next.status).toBe(200);
    await next.body?.cancel();
    expect((await app.request("/stream")).status).toBe(200);
  });

  it("a multipart body is read whole before a slot is taken, and the handler still gets it", async () => {
    const form = new FormData();
    form.set("text", "from a form");
    const response = await gateApp({ maxHeavyPerTenant: 1 }).request("/heavy", {
      method: "POST",
      body: form,
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ text: "from a form" });
  });
});

/** A body stream of `total` bytes in chunks of `size`, counting what was pulled from it. */
function countedBody(total: number, size = 256) {
  const state = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (state.pulled >= total) {
          controller.close();
          return;
        }
        const chunk = new Uint8Array(Math.min(size, total - state.pulled)).fill(0x20);
        state.pulled += chunk.byteLength;
        controller.enqueue(chunk);
      },
      cancel() {
        state.cancelled = true;
      },
    },
    // Nothing is pulled until someone reads.
    { highWaterMark: 0 },
  );
  return { stream, state };
}

describe("the JSON body gate", () => {
  it("defaults, without the limits middleware, to LOUPE_MAX_JSON_BYTES's default", () => {
    expect(DEFAULT_MAX_JSON_BYTES).toBe(parseConfig({ env: {} }).maxJsonBytes);
  });

  it("a Content-Length over LOUPE_MAX_JSON_BYTES → 413 before a byte is read, naming the limit and multipart", async () => {
    const { stream, state } = countedBody(5000);
    const response = await gateApp().request("/heavy", {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": "5000" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(413);
    const error = await errorOf(response);
    expect(error.code).toBe("payload_too_large");
    expect(error.message).toBe(
      "The request body is 5000 bytes; the limit is 1024 bytes (LOUPE_MAX_JSON_BYTES). Send images and videos as multipart/form-data uploads instead of base64 or data URLs in JSON, or raise LOUPE_MAX_JSON_BYTES.",
    );
    expect(state.pulled).toBe(0);
  });

  it("a body without Content-Length is cut as soon as its bytes pass the limit, its stream cancelled", async () => {
    const { stream, state } = countedBody(1_000_000);
    const response = await gateApp().request("/heavy", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(response.status).toBe(413);
    expect((await errorOf(response)).message).toMatch(
      /^The request body is over 1024 bytes; the limit is 1024/,
    );
    // What was pulled: the limit, one chunk past it, and what the stream's queue had asked for.
    expect(state.pulled).toBeLessThan(1024 + 4 * 256);
    expect(state.cancelled).toBe(true);
  });

  it("a body within the limit reaches the validator and the handler", async () => {
    const response = await gateApp().request("/heavy", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "x".repeat(900) }),
    });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { text: string }).text).toHaveLength(900);
  });

  it("the route's own body limit still counts the bytes after the JSON gate read them", async () => {
    // A string body has no Content-Length here, so the route's limit counts the bytes.
    const response = await gateApp().request("/limited", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "x".repeat(400) }),
    });
    expect(response.status).toBe(413);
    expect((await errorOf(response)).message).toBe("The route's own limit of 100 bytes.");
    const small = await gateApp().request("/limited", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"text":"ok"}',
    });
    expect(await small.json()).toEqual({ text: "ok" });
  });
});

describe("the document", () => {
  it("documents 429 with its headers on every route with a cost, and the JSON limit in 413", () => {
    const document = buildOpenApiDocument({ router: gateApp() });
    const read = document.paths?.["/read"]?.get?.responses as Record<
      string,
      { description: string; headers?: object }
    >;
    expect(read["429"]?.headers).toHaveProperty("Retry-After");
    expect(read["429"]?.headers).toHaveProperty("RateLimit");
    expect(read["413"]).toBeUndefined();
    const limited = document.paths?.["/limited"]?.post?.responses as Record<string, { description: string }>;
    expect(limited["413"]?.description).toMatch(/LOUPE_MAX_JSON_BYTES/);
  });
});
