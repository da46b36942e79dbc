/**
 * The file key store on a real directory: keys made random and shown once, only an HMAC stored, the
 * file and the secret owner-only and written whole, two stores (as a server and `loupe keys` would be)
 * on one file seeing each other's keys and revocations within the refresh interval, and every way a
 * key stops working.
 */
import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hashApiKey, isWellFormedApiKey } from "../../src/auth/api-key.ts";
import { parseExpiry } from "../../src/auth/expiry.ts";
import { createFileKeyStore, type FileKeyStoreOptions, KEYS_FILE } from "../../src/auth/file-key-store.ts";
import { KEY_SCOPES, type KeyStore, MAX_STALENESS_MS } from "../../src/auth/key-store.ts";
import { KeyStoreError } from "../../src/auth/key-store-error.ts";
import { normalizeOrigin } from "../../src/auth/origins.ts";
import { SCOPES } from "../../src/http/context.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { testDirectory } from "../db/contract-adapters.ts";

let dir: string;
const stores: KeyStore[] = [];

function openStore(options: Partial<FileKeyStoreOptions> = {}): KeyStore {
  const store = createFileKeyStore({ dir, tenantPattern: TENANT_PATTERN, ...options });
  stores.push(store);
  return store;
}

async function expectStoreError(promise: Promise<unknown>, code: string): Promise<KeyStoreError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(KeyStoreError);
  expect((error as KeyStoreError).code).toBe(code);
  return error as KeyStoreError;
}

/** A fresh data directory per test; the store's keys and secret go under its `auth/`. */
const directory = testDirectory("loupe-keys-");

beforeEach(async () => {
  await directory.reset();
  dir = path.join(directory.path, "auth");
});

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  await directory.cleanup();
});

describe("making keys", () => {
  it("makes random 256-bit keys, shown once, and stores only an HMAC of them", async () => {
    const store = openStore();
    const first = await store.create({ tenant: "acme", scopes: ["read", "ingest"], name: "ci" });
    const second = await store.create({ tenant: "acme", scopes: ["read"] });
    expect(first.key).toMatch(/^loupe_sk_[A-Za-z0-9_-]{43}$/);
    expect(isWellFormedApiKey(first.key)).toBe(true);
    expect(first.key).not.toBe(second.key);
    expect(first.record).toMatchObject({
      tenant: "acme",
      scopes: ["read", "ingest"],
      name: "ci",
      publishable: false,
      origins: [],
      expiresAt: null,
      lastUsedAt: null,
      revokedAt: null,
    });
    expect(first.record.id).toMatch(/^key_[0-9a-f]{16}$/);
    expect(JSON.stringify(first.record)).not.toContain(first.key);

    const text = await readFile(path.join(dir, KEYS_FILE), "utf8");
    expect(text).not.toContain(first.key);
    expect(text).not.toContain(first.key.slice(9, 30));
    const secret = (await readFile(path.join(dir, "secret"), "utf8")).trim();
    const stored = JSON.parse(text) as { keys: Array<{ id: string; hash: string }> };
    expect(stored.keys.find((key) => key.id === first.record.id)?.hash).toBe(
      hashApiKey({ key: first.key, secret }),
    );
  });

  it("keeps the file, the secret and their directory readable by the owner only, and leaves no temporary files", async () => {
    const store = openStore();
    await store.create({ tenant: "acme", scopes: ["read"] });
    await store.create({ tenant: "acme", scopes: ["admin"] });
    expect((await stat(path.join(dir, KEYS_FILE))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, "secret"))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await readdir(dir)).sort()).toEqual([KEYS_FILE, "secret"]);
  });

  it("uses LOUPE_KEY_SECRET when given, writing no secret file", async () => {
    const secret = "s".repeat(40);
    const store = openStore({ secret });
    const { key } = await store.create({ tenant: "acme", scopes: ["read"] });
    expect(await readdir(dir)).toEqual([KEYS_FILE]);
    expect((await store.verify(key)).status).toBe("valid");
    const text = await readFile(path.join(dir, KEYS_FILE), "utf8");
    expect(text).toContain(hashApiKey({ key, secret }));
  });

  it("refuses keys for a bad tenant, without scopes, with unknown scopes, a bad origin, a past expiry or a bad name", async () => {
    const store = openStore();
    const cases: Array<[Parameters<KeyStore["create"]>[0], string]> = [
      [{ tenant: 'a" or tenant != "b', scopes: ["read"] }, "tenant"],
      [{ tenant: "", scopes: ["read"] }, "tenant"],
      [{ tenant: "acme" }, "scopes are required"],
      [{ tenant: "acme", scopes: [] }, "scopes are required"],
      [{ tenant: "acme", scopes: ["read", "root" as "read"] }, '"root"'],
      [{ tenant: "acme", scopes: ["read"], origins: ["https://a.example/path"] }, "is not an origin"],
      [{ tenant: "acme", scopes: ["read"], origins: ["null"] }, "is not an origin"],
      [{ tenant: "acme", scopes: ["read"], expiresAt: new Date(Date.now() - 1000) }, "future"],
      [{ tenant: "acme", scopes: ["read"], name: "x".repeat(101) }, "name"],
      [{ tenant: "acme", publishable: true }, "needs the origins"],
      [
        { tenant: "acme", publishable: true, scopes: ["ingest"], origins: ["https://a.example"] },
        "read-only",
      ],
    ];
    for (const [input, text] of cases) {
      const error = await expectStoreError(store.create(input), "invalid_key_request");
      expect(error.status).toBe(400);
      expect(error.message).toContain(text);
    }
    expect(await store.hasKeys()).toBe(false);
  });

  it("makes publishable keys read-only with their origins in canonical form", async () => {
    const store = openStore();
    const { key, record } = await store.create({
      tenant: "acme",
      publishable: true,
      origins: ["https://App.Example.com:443", "http://localhost:3000/", "https://app.example.com"],
    });
    expect(key).toMatch(/^loupe_pk_/);
    expect(record.scopes).toEqual(["read"]);
    expect(record.origins).toEqual(["https://app.example.com", "http://localhost:3000"]);
    expect(await store.corsOrigins()).toEqual(new Set(["https://app.example.com", "http://localhost:3000"]));
  });

  it("orders scopes as listed and drops repeats", async () => {
    const store = openStore();
    const { record } = await store.create({ tenant: "acme", scopes: ["admin", "read", "admin"] });
    expect(record.scopes).toEqual(["read", "admin"]);
    expect([...KEY_SCOPES]).toEqual([...SCOPES]);
  });
});

describe("verifying keys", () => {
  it("answers valid for a live key, unknown for anything else, without hashing malformed input", async () => {
    const store = openStore();
    const { key, record } = await store.create({ tenant: "acme", scopes: ["read"] });
    expect(await store.verify(key)).toEqual({ status: "valid", record });
    for (const other of [
      "",
      "loupe_sk_",
      `${key}x`,
      key.slice(0, -1),
      `${key.slice(0, -1)}${key.endsWith("A") ? "B" : "A"}`,
      key.replace("loupe_sk_", "loupe_pk_"),
      "x".repeat(10_000),
      `Bearer ${key}`,
    ]) {
      expect((await store.verify(other)).status, other.slice(0, 40)).toBe("unknown");
    }
  });

  it("answers revoked and expired", async () => {
    let now = new Date("2030-01-01T00:00:00Z");
    const store = openStore({ now: () => now });
    const soon = await store.create({
      tenant: "acme",
      scopes: ["read"],
      expiresAt: parseExpiry("1h", now) as Date,
    });
    const revoked = await store.create({ tenant: "acme", scopes: ["read"] });
    await store.revoke(revoked.record.id);
    expect((await store.verify(revoked.key)).status).toBe("revoked");
    expect((await store.verify(soon.key)).status).toBe("valid");
    now = new Date("2030-01-01T01:00:01Z");
    expect((await store.verify(soon.key)).status).toBe("expired");
    expect(await store.corsOrigins()).toEqual(new Set());
  });

  it("reports keys made with another secret instead of calling every key unknown", async () => {
    const store = openStore({ secret: "a".repeat(40) });
    await store.create({ tenant: "acme", scopes: ["read"] });
    const other = openStore({ secret: "b".repeat(40) });
    const error = await expectStoreError(other.hasKeys(), "key_store_invalid");
    expect(error.message).toContain("another key secret");
    await expectStoreError(other.create({ tenant: "acme", scopes: ["read"] }), "key_store_invalid");
  });

  it("reports a missing secret and a corrupt file", async () => {
    const store = openStore();
    await store.create({ tenant: "acme", scopes: ["read"] });
    await rm(path.join(dir, "secret"));
    const missing = await expectStoreError(openStore().hasKeys(), "key_store_invalid");
    expect(missing.message).toContain("LOUPE_KEY_SECRET");
    await writeFile(path.join(dir, KEYS_FILE), "{ not json");
    await expectStoreError(openStore().list(), "key_store_invalid");
    await writeFile(path.join(dir, KEYS_FILE), JSON.stringify({ version: 1, keys: [{ id: "x" }] }));
    await expectStoreError(openStore().list(), "key_store_invalid");
  });
});

describe("two stores on one file (a server and `loupe keys`)", () => {
  it("a key made or revoked by one is seen by the other within a second (the port allows five)", async () => {
    const server = openStore();
    const cli = openStore();
    expect(await server.hasKeys()).toBe(false);
    const { key, record } = await cli.create({ tenant: "acme", scopes: ["read"] });
    const seenAt = Date.now();
    while ((await server.verify(key)).status !== "valid") {
      expect(Date.now() - seenAt).toBeLessThan(1_500);
      await sleep(20);
    }
    expect(await server.hasKeys()).toBe(true);
    await cli.revoke(record.id);
    const revokedAt = Date.now();
    while ((await server.verify(key)).status === "valid") {
      expect(Date.now() - revokedAt).toBeLessThan(Math.min(1_500, MAX_STALENESS_MS));
      await sleep(20);
    }
    expect((await server.verify(key)).status).toBe("revoked");
    // Revoked keys still count: revoking every key never turns authentication off.
    expect(await server.hasKeys()).toBe(true);
  });

  it("loses no key when both write at once", async () => {
    const left = openStore();
    const right = openStore();
    const made = await Promise.all(
      Array.from({ length: 12 }, (_, index) =>
        (index % 2 === 0 ? left : right).create({ tenant: `t${index}`, scopes: ["read"] }),
      ),
    );
    const listed = await openStore().list();
    expect(listed.map((record) => record.id).sort()).toEqual(made.map((entry) => entry.record.id).sort());
    const fresh = openStore();
    for (const { key } of made) expect((await fresh.verify(key)).status).toBe("valid");
  });

  it("records last use in batches, and close() writes what is pending", async () => {
    const server = openStore({ touchFlushMs: 60_000 });
    const { key, record } = await server.create({ tenant: "acme", scopes: ["read"] });
    expect((await server.verify(key)).status).toBe("valid");
    server.touch(record.id);
    expect((await openStore().list())[0]?.lastUsedAt).toBeNull();
    await server.close();
    const lastUsedAt = (await openStore().list())[0]?.lastUsedAt;
    expect(lastUsedAt).not.toBeNull();
    expect(Date.now() - Date.parse(lastUsedAt as string)).toBeLessThan(10_000);
  });
});

describe("revoking and listing", () => {
  it("revokes by id, keeps the first revocation time, and scopes both to a tenant when asked", async () => {
    const store = openStore();
    const alpha = await store.create({ tenant: "alpha", scopes: ["read"] });
    const beta = await store.create({ tenant: "beta", scopes: ["read"] });
    await expectStoreError(store.revoke(beta.record.id, { tenant: "alpha" }), "key_not_found");
    await expectStoreError(store.revoke("key_0000000000000000"), "key_not_found");
    const first = await store.revoke(alpha.record.id, { tenant: "alpha" });
    expect(first.revokedAt).not.toBeNull();
    await sleep(5);
    expect((await store.revoke(alpha.record.id)).revokedAt).toBe(first.revokedAt);
    expect((await store.list({ tenant: "beta" })).map((record) => record.id)).toEqual([beta.record.id]);
    expect(await store.list()).toHaveLength(2);
  });
});

describe("expiry and origins as typed", () => {
  it("reads durations and dates, and refuses the past and nonsense", () => {
    const now = new Date("2030-01-01T00:00:00Z");
    expect(parseExpiry("30d", now)?.toISOString()).toBe("2030-01-31T00:00:00.000Z");
    expect(parseExpiry("12h", now)?.toISOString()).toBe("2030-01-01T12:00:00.000Z");
    expect(parseExpiry("2w", now)?.toISOString()).toBe("2030-01-15T00:00:00.000Z");
    expect(parseExpiry("2031-02-03", now)?.toISOString()).toBe("2031-02-03T00:00:00.000Z");
    for (const bad of ["", "30", "-1d", "1y", "2029-12-31", "tomorrow", "99999999d"]) {
      expect(parseExpiry(bad, now), bad).toBeUndefined();
    }
  });

  it("normalizes origins and refuses what is not one", () => {
    expect(normalizeOrigin("HTTPS://App.Example.com")).toBe("https://app.example.com");
    expect(normalizeOrigin("http://localhost:80")).toBe("http://localhost");
    expect(normalizeOrigin("http://[::1]:3000")).toBe("http://[::1]:3000");
    for (const bad of ["null", "", "file:///etc", "https://a.example/x", "https://u:p@a.example", "*"]) {
      expect(normalizeOrigin(bad), bad).toBeUndefined();
    }
  });
});
