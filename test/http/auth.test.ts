/**
 * The trust boundary in-process, over the production wiring with a real key store in a temporary data
 * dir: authentication off and on, 401 and 403 with the error envelope, scopes per route (walked from
 * the OpenAPI document), publishable keys, CORS, the Origin check of state-changing requests and the
 * Host check. The store is down (503) or never reached: every check here happens before a route works.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { createFileKeyStore, KEYS_FILE, keyStoreDir } from "../../src/auth/file-key-store.ts";
import type { KeyScope } from "../../src/auth/key-store.ts";
import { StoreError } from "../../src/errors.ts";
import { TENANT_PATTERN, type VectorStore } from "../../src/store/index.ts";
import { type AuthTestApp, bearer, errorOf, makeAuthTestApp } from "./auth-fixtures.ts";

/** A vector store that answers every call as Milvus down would. */
const downStore = new Proxy({} as VectorStore, {
  get(_target, property) {
    if (property === "then") return undefined;
    return async () => {
      throw new StoreError("Milvus at 127.0.0.1:19530 is unreachable.");
    };
  },
});

const APP_ORIGIN = "https://app.example.com";
const EVIL_ORIGIN = "https://evil.example";

let current: AuthTestApp | undefined;

async function setUp(options: Parameters<typeof makeAuthTestApp>[0] = {}): Promise<AuthTestApp> {
  current = await makeAuthTestApp({ store: downStore, ...options });
  // Who a request acts as, as the routes see it.
  current.app.get("/v1/test/whoami", (c) =>
    c.json({
      tenant: c.get("tenant"),
      keyId: c.get("principal").keyId,
      scopes: [...c.get("principal").scopes],
    }),
  );
  return current;
}

afterEach(async () => {
  await current?.dispose();
  current = undefined;
});

const json = (body: unknown, headers: Record<string, string> = {}) => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body),
});

describe("authentication off (no key exists)", () => {
  it("serves /v1 without a key, as the default tenant, ignoring a dummy bearer token", async () => {
    const { app } = await setUp({ env: { LOUPE_DEFAULT_TENANT: "solo" } });
    const variants: Record<string, string>[] = [
      {},
      { authorization: "Bearer sk-not-a-loupe-key" },
      { "x-tenant": "other" },
    ];
    for (const headers of variants) {
      const response = await app.request("/v1/test/whoami?tenant=other", { headers });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({
        tenant: "solo",
        keyId: null,
        scopes: ["read", "ingest", "delete"],
      });
    }
    expect((await app.request("/v1/models")).status).toBe(200);
  });

  it("refuses key management: that needs an admin key", async () => {
    const { app } = await setUp();
    const response = await app.request("/v1/admin/keys");
    expect(response.status).toBe(403);
    const error = await errorOf(response);
    expect(error.code).toBe("forbidden");
    expect(error.message).toContain("loupe keys create");
  });

  it("refuses a state-changing request from another web origin (the cross-site multipart POST), before any work", async () => {
    const { app } = await setUp();
    const form = new FormData();
    form.append("files", new Blob([new Uint8Array([0xff, 0xd8, 0xff])], { type: "image/jpeg" }), "x.jpg");
    const response = await app.request("/v1/images", {
      method: "POST",
      body: form,
      headers: { origin: EVIL_ORIGIN },
    });
    expect(response.status).toBe(403);
    const error = await errorOf(response);
    expect(error.code).toBe("origin_not_allowed");
    expect(error.requestId).toBe(response.headers.get("x-request-id"));
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    for (const origin of [
      "null",
      "http://localhost:3000",
      "http://127.0.0.1",
      "http://localhost.evil.example",
    ]) {
      const other = await app.request("/v1/search", json({ text: "a" }, { origin }));
      expect(other.status, origin).toBe(403);
    }
    const deletion = await app.request("/v1/items/img_x", {
      method: "DELETE",
      headers: { origin: EVIL_ORIGIN },
    });
    expect(deletion.status).toBe(403);
  });

  it("lets through requests without Origin, from the server's own origin, and cross-origin reads", async () => {
    const { app } = await setUp();
    expect((await app.request("/v1/search", json({ text: "a circle" }))).status).toBe(503);
    expect(
      (await app.request("/v1/search", json({ text: "a circle" }, { origin: "http://localhost" }))).status,
    ).toBe(503);
    const read = await app.request("/v1/models", { headers: { origin: EVIL_ORIGIN } });
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("answers no preflight: no key lists an origin", async () => {
    const { app } = await setUp();
    const response = await app.request("/v1/chat", {
      method: "OPTIONS",
      headers: { origin: APP_ORIGIN, "access-control-request-method": "POST" },
    });
    expect(response.status).toBe(403);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("authentication on (a key exists)", () => {
  it("keeps the probes, the document and /docs public", async () => {
    const { app, createKey } = await setUp();
    await createKey({ tenant: "acme", scopes: ["read"] });
    for (const path of ["/healthz", "/openapi.json", "/docs"]) {
      expect((await app.request(path)).status, path).toBe(200);
    }
    expect((await app.request("/readyz")).status).toBe(503);
  });

  it("answers 401 with WWW-Authenticate and the envelope without a key, on known and unknown paths alike", async () => {
    const { app, createKey } = await setUp();
    await createKey({ tenant: "acme", scopes: ["read"] });
    for (const [path, init] of [
      ["/v1/models", {}],
      ["/v1/search", json({ text: "a" })],
      ["/v1/no-such-route", {}],
      ["/elsewhere", {}],
      ["/v1/media/img_x?api_key=x", {}],
    ] as const) {
      const response = await app.request(path, init);
      expect(response.status, path).toBe(401);
      expect(response.headers.get("www-authenticate")).toBe('Bearer realm="loupe"');
      const error = await errorOf(response);
      expect(error.code).toBe("unauthorized");
      expect(error.message).toContain("Authorization: Bearer");
      expect(error.requestId).toBe(response.headers.get("x-request-id"));
    }
  });

  it("takes the key as a bearer token or in x-api-key, and refuses other schemes and two different keys", async () => {
    const { app, createKey } = await setUp();
    const { key } = await createKey({ tenant: "acme", scopes: ["read"] });
    const other = await createKey({ tenant: "acme", scopes: ["read"] });
    const accepted: Record<string, string>[] = [
      { authorization: `Bearer ${key}` },
      { authorization: `bearer   ${key}` },
      { "x-api-key": key },
      { authorization: `Bearer ${key}`, "x-api-key": key },
    ];
    for (const headers of accepted) {
      expect((await app.request("/v1/models", { headers })).status).toBe(200);
    }
    const refused: Record<string, string>[] = [
      { authorization: `Basic ${Buffer.from(`user:${key}`).toString("base64")}` },
      { authorization: key },
      { authorization: `Bearer ${key}`, "x-api-key": other.key },
    ];
    for (const headers of refused) {
      const response = await app.request("/v1/models", { headers });
      expect(response.status).toBe(401);
      expect((await errorOf(response)).code).toBe("unauthorized");
    }
  });

  it("answers 401 invalid_api_key for unknown, revoked and expired keys, saying which", async () => {
    let now = Date.now();
    const { app, createKey, keys } = await setUp({ storeOptions: { now: () => new Date(now) } });
    const revoked = await createKey({ tenant: "acme", scopes: ["read"] });
    const expiring = await createKey({ tenant: "acme", scopes: ["read"], expiresAt: new Date(now + 60_000) });
    await keys.revoke(revoked.record.id);
    now += 61_000;
    const cases: Array<[string, string]> = [
      [`loupe_sk_${"A".repeat(43)}`, "not valid"],
      ["sk-proj-1234", "not valid"],
      [revoked.key, "revoked"],
      [expiring.key, "expired"],
    ];
    for (const [key, text] of cases) {
      const response = await app.request("/v1/models", { headers: bearer(key) });
      expect(response.status).toBe(401);
      const error = await errorOf(response);
      expect(error.code).toBe("invalid_api_key");
      expect(error.message).toContain(text);
      expect(error.message).not.toContain(key);
    }
  });

  it("acts for the key's tenant whatever the request names", async () => {
    const { app, createKey } = await setUp();
    const { key, record } = await createKey({ tenant: "acme", scopes: ["read", "ingest"] });
    const response = await app.request("/v1/test/whoami?tenant=other&tenantId=other", {
      headers: bearer(key, { "x-tenant": "other", "x-loupe-tenant": "other", "x-test-tenant": "other" }),
    });
    expect(await response.json()).toEqual({ tenant: "acme", keyId: record.id, scopes: ["read", "ingest"] });
  });

  it("refuses every gated operation to a key without its scope (403), and lets one with it through", async () => {
    const { app, createKey } = await setUp();
    const document = (await (await app.request("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { "x-loupe-scope"?: KeyScope; security?: unknown[] }>>;
    };
    const all: KeyScope[] = ["read", "ingest", "delete", "admin"];
    const keyFor = new Map<string, string>();
    for (const scopes of [
      ...all.map((scope) => [scope]),
      ...all.map((scope) => all.filter((s) => s !== scope)),
    ]) {
      keyFor.set(scopes.join(","), (await createKey({ tenant: "acme", scopes })).key);
    }
    let gated = 0;
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const scope = operation["x-loupe-scope"];
        const url = path.replace(/\{[^}]+\}/g, "x");
        if (scope === undefined) {
          expect(operation.security, `${method} ${path}`).toEqual([]);
          continue;
        }
        expect(operation.security, `${method} ${path}`).toEqual([{ bearerAuth: [] }, { apiKeyHeader: [] }]);
        gated += 1;
        const init = (key: string) => ({
          method: method.toUpperCase(),
          headers: bearer(
            key,
            method === "get" || method === "delete" ? {} : { "content-type": "application/json" },
          ),
          ...(method === "get" || method === "delete" ? {} : { body: "{}" }),
        });
        const without = await app.request(
          url,
          init(keyFor.get(all.filter((s) => s !== scope).join(",")) as string),
        );
        expect(without.status, `${method} ${path} without ${scope}`).toBe(403);
        const error = await errorOf(without);
        expect(error.code).toBe("forbidden");
        expect(error.message).toContain(`\`${scope}\``);
        const withScope = await app.request(url, init(keyFor.get(scope) as string));
        expect([401, 403], `${method} ${path} with ${scope}`).not.toContain(withScope.status);
      }
    }
    expect(gated).toBeGreaterThanOrEqual(20);
  });

  it("never writes a key to the log", async () => {
    const { app, createKey, lines } = await setUp();
    const { key } = await createKey({ tenant: "acme", scopes: ["read"] });
    const revoked = await createKey({ tenant: "acme", scopes: ["read"] });
    await current?.keys.revoke(revoked.record.id);
    await app.request("/v1/models", { headers: bearer(key) });
    await app.request("/v1/models", { headers: { "x-api-key": revoked.key } });
    await app.request("/v1/images", { method: "POST", headers: bearer(key) });
    await app.request("/v1/models", { headers: { authorization: `Basic ${key}` } });
    expect(lines.length).toBeGreaterThan(3);
    const log = lines.join("\n");
    for (const secret of [key, revoked.key, key.slice(9)]) expect(log).not.toContain(secret);
    expect(log).toContain(revoked.record.id);
  });

  it("refuses every /v1 request with 503 when the key store cannot be read, without naming its files", async () => {
    const { app, createKey, dataDir, lines } = await setUp({ storeOptions: { refreshMs: 0 } });
    const { key } = await createKey({ tenant: "acme", scopes: ["read"] });
    expect((await app.request("/v1/models", { headers: bearer(key) })).status).toBe(200);
    await writeFile(path.join(keyStoreDir(dataDir), KEYS_FILE), "{ truncated");
    for (const headers of [bearer(key), {}, bearer(key, { origin: APP_ORIGIN })]) {
      const response = await app.request("/v1/models", { headers });
      expect(response.status).toBe(503);
      const error = await errorOf(response);
      expect(error.code).toBe("auth_unavailable");
      expect(error.message).not.toContain(dataDir);
    }
    expect(lines.some((line) => line.includes("the API key store cannot be read"))).toBe(true);
  });

  it("with LOUPE_AUTH=none asks for no key even when keys exist", async () => {
    const { app, createKey } = await setUp({ env: { LOUPE_AUTH: "none" } });
    await createKey({ tenant: "acme", scopes: ["read"] });
    const response = await app.request("/v1/test/whoami");
    expect(response.status).toBe(200);
    expect(((await response.json()) as { tenant: string }).tenant).toBe("default");
  });

  it("sees a key made and a key revoked by another process within seconds, without a restart", async () => {
    const { app, dataDir } = await setUp({ storeOptions: {} });
    const cli = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
    try {
      expect((await app.request("/v1/models")).status).toBe(200);
      const { key, record } = await cli.create({ tenant: "acme", scopes: ["read"] });
      const waitFor = async (status: number, headers: Record<string, string>) => {
        const started = Date.now();
        while ((await app.request("/v1/models", { headers })).status !== status) {
          expect(Date.now() - started).toBeLessThan(5_000);
          await sleep(50);
        }
        return Date.now() - started;
      };
      await waitFor(401, {});
      expect((await app.request("/v1/models", { headers: bearer(key) })).status).toBe(200);
      await cli.revoke(record.id);
      const took = await waitFor(401, bearer(key));
      expect(took).toBeLessThan(5_000);
    } finally {
      await cli.close();
    }
  });
});

describe("publishable keys", () => {
  it("are accepted only from their listed origins, with CORS for them", async () => {
    const { app, createKey } = await setUp();
    const { key, record } = await createKey({ tenant: "acme", publishable: true, origins: [APP_ORIGIN] });
    const allowed = await app.request("/v1/models", { headers: bearer(key, { origin: APP_ORIGIN }) });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(APP_ORIGIN);
    expect(allowed.headers.get("vary")).toContain("Origin");
    expect(allowed.headers.get("access-control-allow-credentials")).toBeNull();
    for (const headers of [
      bearer(key),
      bearer(key, { origin: EVIL_ORIGIN }),
      bearer(key, { origin: "null" }),
    ]) {
      const response = await app.request("/v1/models", { headers });
      expect(response.status).toBe(403);
      const error = await errorOf(response);
      expect(error.code).toBe("origin_not_allowed");
      expect(error.message).toContain(record.id);
      expect(response.headers.get("access-control-allow-origin")).toBeNull();
    }
  });

  it("may chat, read media and list models, and nothing else", async () => {
    const { app, createKey } = await setUp();
    const { key } = await createKey({ tenant: "acme", publishable: true, origins: [APP_ORIGIN] });
    const headers = bearer(key, { origin: APP_ORIGIN });
    // Allowed routes pass the gates (and reach the store, which is down here).
    expect((await app.request("/v1/chat", json({ question: "what color?" }, headers))).status).toBe(503);
    expect((await app.request("/v1/media/img_x", { headers })).status).toBe(503);
    expect((await app.request("/v1/media/img_x/thumbnail", { headers })).status).toBe(503);
    expect((await app.request("/v1/models/loupe", { headers })).status).toBe(200);
    for (const [path, init] of [
      ["/v1/search", json({ text: "a" }, headers)],
      ["/v1/similar/img_x", json({}, headers)],
      ["/v1/classify", json({ image: "img_x", labels: ["a"] }, headers)],
      ["/v1/vqa", json({ image: "img_x", question: "q" }, headers)],
      ["/v1/detect", json({ image: "img_x" }, headers)],
      ["/v1/images", json({ urls: ["https://example.com/a.png"] }, headers)],
      ["/v1/triples", json({ items: [] }, headers)],
      ["/v1/jobs/job_x", { headers }],
      ["/v1/items/img_x", { method: "DELETE", headers }],
      ["/v1/admin/keys", { headers }],
    ] as const) {
      const response = await app.request(path, init);
      expect(response.status, path).toBe(403);
      expect((await errorOf(response)).code).toBe("forbidden");
      // The page may read why it was refused.
      expect(response.headers.get("access-control-allow-origin")).toBe(APP_ORIGIN);
    }
  });
});

describe("CORS", () => {
  it("answers a preflight from a listed origin, and refuses any other", async () => {
    const { app, createKey } = await setUp();
    await createKey({ tenant: "acme", publishable: true, origins: [APP_ORIGIN] });
    const preflight = await app.request("/v1/chat", {
      method: "OPTIONS",
      headers: {
        origin: APP_ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(APP_ORIGIN);
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");
    expect(preflight.headers.get("access-control-allow-headers")).toContain("authorization");
    expect(preflight.headers.get("access-control-allow-headers")).toContain("x-api-key");
    expect(preflight.headers.get("access-control-allow-credentials")).toBeNull();
    expect(Number(preflight.headers.get("access-control-max-age"))).toBeGreaterThan(0);

    const refused = await app.request("/v1/chat", {
      method: "OPTIONS",
      headers: { origin: EVIL_ORIGIN, "access-control-request-method": "POST" },
    });
    expect(refused.status).toBe(403);
    expect((await errorOf(refused)).code).toBe("origin_not_allowed");
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("gives a key's results no CORS answer for an origin that only another key lists", async () => {
    const { app, createKey } = await setUp();
    await createKey({ tenant: "globex", publishable: true, origins: [APP_ORIGIN] });
    const secret = await createKey({ tenant: "acme", scopes: ["read"] });
    const read = await app.request("/v1/models", { headers: bearer(secret.key, { origin: APP_ORIGIN }) });
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBeNull();
    const refused = await app.request("/v1/models", { headers: { origin: APP_ORIGIN } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe(APP_ORIGIN);
  });

  it("stops answering for an origin once the key listing it is revoked", async () => {
    const { app, createKey, keys } = await setUp();
    await createKey({ tenant: "acme", scopes: ["read"] });
    const { record } = await createKey({ tenant: "acme", publishable: true, origins: [APP_ORIGIN] });
    const preflight = () =>
      app.request("/v1/chat", {
        method: "OPTIONS",
        headers: { origin: APP_ORIGIN, "access-control-request-method": "POST" },
      });
    expect((await preflight()).status).toBe(204);
    await keys.revoke(record.id);
    expect((await preflight()).status).toBe(403);
  });
});

describe("the Origin of state-changing requests, with keys", () => {
  it("refuses a foreign origin for a key that lists none, allows the server's own and a listed one", async () => {
    const { app, createKey } = await setUp();
    const plain = await createKey({ tenant: "acme", scopes: ["read", "ingest"] });
    const web = await createKey({ tenant: "acme", scopes: ["read"], origins: [APP_ORIGIN] });
    const search = (key: string, origin?: string) =>
      app.request("/v1/search", json({ text: "a" }, bearer(key, origin === undefined ? {} : { origin })));
    expect((await search(plain.key)).status).toBe(503);
    expect((await search(plain.key, "http://localhost")).status).toBe(503);
    const refused = await search(plain.key, EVIL_ORIGIN);
    expect(refused.status).toBe(403);
    const error = await errorOf(refused);
    expect(error.code).toBe("origin_not_allowed");
    expect(error.message).toContain(plain.record.id);
    expect((await search(plain.key, APP_ORIGIN)).status).toBe(403);
    expect((await search(web.key, APP_ORIGIN)).status).toBe(503);
    expect((await search(web.key, EVIL_ORIGIN)).status).toBe(403);
    // Reads are not state-changing: a foreign page gets no CORS answer, so it cannot read them anyway.
    const read = await app.request("/v1/models", { headers: bearer(plain.key, { origin: EVIL_ORIGIN }) });
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("the Host check", () => {
  it("answers 421 to a foreign Host on every route, probes included, before authentication", async () => {
    const { app, createKey } = await setUp();
    const { key } = await createKey({ tenant: "acme", scopes: ["read"] });
    for (const path of ["/healthz", "/docs", "/openapi.json", "/v1/models", "/v1/nope"]) {
      for (const request of [
        () => app.request(`http://evil.example${path}`, { headers: bearer(key) }),
        () => app.request(path, { headers: bearer(key, { host: "evil.example:8080" }) }),
      ]) {
        const response = await request();
        expect(response.status, path).toBe(421);
        const error = await errorOf(response);
        expect(error.code).toBe("host_not_allowed");
        expect(error.message).toContain("LOUPE_ALLOWED_HOSTS");
      }
    }
    for (const host of ["localhost:8080", "127.0.0.1:9000", "[::1]:8080"]) {
      expect((await app.request("/healthz", { headers: { host } })).status, host).toBe(200);
    }
  });

  it("follows LOUPE_ALLOWED_HOSTS, and allows IP addresses when bound to every interface", async () => {
    const listed = await setUp({ env: { LOUPE_ALLOWED_HOSTS: "loupe.example.com" } });
    expect((await listed.app.request("http://loupe.example.com/healthz")).status).toBe(200);
    expect((await listed.app.request("http://10.0.0.5/healthz")).status).toBe(421);
    await listed.dispose();
    const wildcard = await setUp({ env: { HOST: "0.0.0.0" } });
    expect((await wildcard.app.request("http://10.0.0.5:8080/healthz")).status).toBe(200);
    expect((await wildcard.app.request("http://loupe.example.com/healthz")).status).toBe(421);
  });
});
