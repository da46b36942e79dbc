/**
 * The key store contract, run against both adapters: the file store on a temporary directory and the
 * PostgreSQL store on a database of this file's own (migrated with `migrate`). Keys are random and shown
 * once, only an HMAC is stored, two stores on one backing store (two replicas, or a server and
 * `loupe keys`) see each other's keys and revocations within MAX_STALENESS_MS, concurrent writes lose
 * nothing, and every way a key stops working is reported. Then what only the database store does.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { expect, it } from "vitest";
import { hashApiKey, isWellFormedApiKey, secretFingerprint } from "../../src/auth/api-key.ts";
import { parseExpiry } from "../../src/auth/expiry.ts";
import { createFileKeyStore, KEYS_FILE } from "../../src/auth/file-key-store.ts";
import { KEY_SCOPES, type KeyStore, MAX_STALENESS_MS } from "../../src/auth/key-store.ts";
import { KeyStoreError } from "../../src/auth/key-store-error.ts";
import { openKeyStore } from "../../src/auth/open-key-store.ts";
import { createPgKeyStore } from "../../src/auth/pg-key-store.ts";
import { createDatabasePool, DatabaseError } from "../../src/db/index.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import {
  type ContractAdapter,
  contractDatabase,
  describeContract,
  testDirectory,
} from "../db/contract-adapters.ts";
import { createTestDatabase } from "../db/test-database.ts";

/** Options every adapter takes in these tests. */
interface StoreOptions {
  secret?: string;
  now?: () => Date;
  touchFlushMs?: number;
}

/** One adapter under the contract: how to open a store on the shared backing store, and read its raw form. */
interface Adapter extends ContractAdapter {
  open(options?: StoreOptions): KeyStore;
  /** Everything the adapter wrote about keys, as text (the file, or every row of the tables). */
  rawText(): Promise<string>;
  /** The HMAC stored for a key id. */
  storedHash(id: string): Promise<string | undefined>;
  /** The secret a store without `secret` generated. */
  generatedSecret(): Promise<string>;
}

/** A fresh data directory per test: the file store's keys and the secret either store generates, under `auth/`. */
const directory = testDirectory("loupe-keys-");
const secretDir = () => path.join(directory.path, "auth");
const generatedSecret = async () => (await readFile(path.join(secretDir(), "secret"), "utf8")).trim();

const fileAdapter: Adapter = {
  name: "file",
  reset: directory.reset,
  cleanup: directory.cleanup,
  open: (options = {}) => createFileKeyStore({ dir: secretDir(), tenantPattern: TENANT_PATTERN, ...options }),
  rawText: () => readFile(path.join(secretDir(), KEYS_FILE), "utf8"),
  async storedHash(id) {
    const stored = JSON.parse(await readFile(path.join(secretDir(), KEYS_FILE), "utf8")) as {
      keys: Array<{ id: string; hash: string }>;
    };
    return stored.keys.find((key) => key.id === id)?.hash;
  },
  generatedSecret,
};

const database = contractDatabase({
  empty: "truncate loupe_api_keys; update loupe_key_store set version = 0, secret_fingerprint = null",
});
const pgAdapter: Adapter = {
  name: "postgres",
  async reset() {
    await directory.reset();
    await database.reset();
  },
  async cleanup() {
    await database.cleanup();
    await directory.cleanup();
  },
  open: (options = {}) =>
    createPgKeyStore({
      pool: database.pool,
      secretDir: secretDir(),
      tenantPattern: TENANT_PATTERN,
      ...options,
    }),
  async rawText() {
    const rows = await database.pool.query(
      "select (select json_agg(k) from loupe_api_keys k)::text as keys, (select json_agg(s) from loupe_key_store s)::text as store",
    );
    return JSON.stringify(rows.rows);
  },
  async storedHash(id) {
    const rows = await database.pool.query<{ hash: string }>(
      "select hash from loupe_api_keys where id = $1",
      [id],
    );
    return rows.rows[0]?.hash;
  },
  generatedSecret,
};

async function expectStoreError(promise: Promise<unknown>, code: string): Promise<KeyStoreError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(KeyStoreError);
  expect((error as KeyStoreError).code).toBe(code);
  return error as KeyStoreError;
}

describeContract("the key store contract: $name adapter", [fileAdapter, pgAdapter], (adapter) => {
  it("makes random 256-bit keys, shown once, and stores only an HMAC of them", async () => {
    const store = adapter.open();
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
      rateLimit: null,
      expiresAt: null,
      lastUsedAt: null,
      revokedAt: null,
    });
    expect(first.record.id).toMatch(/^key_[0-9a-f]{16}$/);
    const raw = await adapter.rawText();
    expect(raw).not.toContain(first.key);
    expect(raw).not.toContain(first.key.slice(9, 30));
    expect(await adapter.storedHash(first.record.id)).toBe(
      hashApiKey({ key: first.key, secret: await adapter.generatedSecret() }),
    );
  });

  it("uses the configured secret when given", async () => {
    const secret = "s".repeat(40);
    const store = adapter.open({ secret });
    const { key, record } = await store.create({ tenant: "acme", scopes: ["read"] });
    expect((await store.verify(key)).status).toBe("valid");
    expect(await adapter.storedHash(record.id)).toBe(hashApiKey({ key, secret }));
  });

  it("refuses keys for a bad tenant, without scopes, with unknown scopes, a bad origin, a past expiry, a bad name or rate limit", async () => {
    const store = adapter.open();
    const cases: Array<[Parameters<KeyStore["create"]>[0], string]> = [
      [{ tenant: 'a" or tenant != "b', scopes: ["read"] }, "tenant"],
      [{ tenant: "", scopes: ["read"] }, "tenant"],
      [{ tenant: "acme" }, "scopes are required"],
      [{ tenant: "acme", scopes: [] }, "scopes are required"],
      [{ tenant: "acme", scopes: ["read", "root" as "read"] }, '"root"'],
      [{ tenant: "acme", scopes: ["read"], origins: ["https://a.example/path"] }, "is not an origin"],
      [{ tenant: "acme", scopes: ["read"], expiresAt: new Date(Date.now() - 1000) }, "future"],
      [{ tenant: "acme", scopes: ["read"], name: "x".repeat(101) }, "name"],
      [{ tenant: "acme", scopes: ["read"], rateLimit: { perSecond: 0, burst: 1 } }, "rate limit"],
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

  it("keeps publishable keys read-only with canonical origins, own rate limits and scopes in order", async () => {
    const store = adapter.open();
    const { key, record } = await store.create({
      tenant: "acme",
      publishable: true,
      origins: ["https://App.Example.com:443", "http://localhost:3000/", "https://app.example.com"],
    });
    expect(key).toMatch(/^loupe_pk_/);
    expect(record.scopes).toEqual(["read"]);
    expect(record.origins).toEqual(["https://app.example.com", "http://localhost:3000"]);
    expect(await store.corsOrigins()).toEqual(new Set(["https://app.example.com", "http://localhost:3000"]));
    const limited = await store.create({
      tenant: "acme",
      scopes: ["admin", "read", "admin"],
      rateLimit: { perSecond: 2.5, burst: 10 },
    });
    expect(limited.record.scopes).toEqual(["read", "admin"]);
    expect(limited.record.rateLimit).toEqual({ perSecond: 2.5, burst: 10 });
    expect(await adapter.open().list()).toEqual([record, limited.record]);
    expect([...KEY_SCOPES]).toEqual(["read", "ingest", "delete", "admin"]);
  });

  it("answers valid for a live key and unknown for anything else", async () => {
    const store = adapter.open();
    expect((await store.verify(`loupe_sk_${"A".repeat(43)}`)).status).toBe("unknown");
    const { key, record } = await store.create({ tenant: "acme", scopes: ["read"] });
    expect(await store.verify(key)).toEqual({ status: "valid", record });
    for (const other of [
      "",
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

  it("answers revoked and expired, and drops their origins from CORS", async () => {
    let now = new Date("2030-01-01T00:00:00Z");
    const store = adapter.open({ now: () => now });
    const soon = await store.create({
      tenant: "acme",
      scopes: ["read"],
      origins: ["https://soon.example"],
      expiresAt: parseExpiry("1h", now) as Date,
    });
    const revoked = await store.create({
      tenant: "acme",
      scopes: ["read"],
      origins: ["https://gone.example"],
    });
    await store.revoke(revoked.record.id);
    expect((await store.verify(revoked.key)).status).toBe("revoked");
    expect((await store.verify(soon.key)).status).toBe("valid");
    expect(await store.corsOrigins()).toEqual(new Set(["https://soon.example"]));
    now = new Date("2030-01-01T01:00:01Z");
    expect((await store.verify(soon.key)).status).toBe("expired");
    expect(await store.corsOrigins()).toEqual(new Set());
    expect(soon.record.expiresAt).toBe("2030-01-01T01:00:00.000Z");
  });

  it("reports keys made with another secret instead of calling every key unknown", async () => {
    const store = adapter.open({ secret: "a".repeat(40) });
    await store.create({ tenant: "acme", scopes: ["read"] });
    const other = adapter.open({ secret: "b".repeat(40) });
    const error = await expectStoreError(other.hasKeys(), "key_store_invalid");
    expect(error.message).toContain("another key secret");
    await expectStoreError(other.create({ tenant: "acme", scopes: ["read"] }), "key_store_invalid");
  });

  it("sees a key made or revoked by another store within MAX_STALENESS_MS (a second here)", async () => {
    const server = adapter.open();
    const cli = adapter.open();
    expect(await server.hasKeys()).toBe(false);
    const { key, record } = await cli.create({ tenant: "acme", scopes: ["read"] });
    const madeAt = Date.now();
    while ((await server.verify(key)).status !== "valid") {
      expect(Date.now() - madeAt).toBeLessThan(1_500);
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

  it("loses no key when two stores write at once", async () => {
    const left = adapter.open();
    const right = adapter.open();
    const made = await Promise.all(
      Array.from({ length: 12 }, (_, index) =>
        (index % 2 === 0 ? left : right).create({ tenant: `t${index}`, scopes: ["read"] }),
      ),
    );
    const listed = await adapter.open().list();
    expect(listed.map((record) => record.id).sort()).toEqual(made.map((entry) => entry.record.id).sort());
    const fresh = adapter.open();
    for (const { key } of made) expect((await fresh.verify(key)).status).toBe("valid");
  });

  it("records last use in batches, and close() writes what is pending", async () => {
    const server = adapter.open({ touchFlushMs: 60_000 });
    const { key, record } = await server.create({ tenant: "acme", scopes: ["read"] });
    expect((await server.verify(key)).status).toBe("valid");
    server.touch(record.id);
    expect((await adapter.open().list())[0]?.lastUsedAt).toBeNull();
    await server.close();
    const lastUsedAt = (await adapter.open().list())[0]?.lastUsedAt;
    expect(lastUsedAt).not.toBeNull();
    expect(Date.now() - Date.parse(lastUsedAt as string)).toBeLessThan(10_000);
  });

  it("revokes by id, keeps the first revocation time, and scopes both to a tenant when asked", async () => {
    const store = adapter.open();
    const alpha = await store.create({ tenant: "alpha", scopes: ["read"] });
    const beta = await store.create({ tenant: "beta", scopes: ["read"] });
    await expectStoreError(store.revoke(beta.record.id, { tenant: "alpha" }), "key_not_found");
    await expectStoreError(store.revoke("key_0000000000000000"), "key_not_found");
    expect((await store.verify(beta.key)).status).toBe("valid");
    const first = await store.revoke(alpha.record.id, { tenant: "alpha" });
    expect(first.revokedAt).not.toBeNull();
    await sleep(5);
    expect((await store.revoke(alpha.record.id)).revokedAt).toBe(first.revokedAt);
    expect((await store.list({ tenant: "beta" })).map((record) => record.id)).toEqual([beta.record.id]);
    expect(await store.list()).toHaveLength(2);
  });
});

describeContract("the PostgreSQL key store across processes", [pgAdapter], (adapter) => {
  it("two stores on separate pools (two replicas) see each other's revocation within 5 s", async () => {
    // Each on a pool of its own, as two processes would be.
    const pools = [database.ownPool(), database.ownPool()];
    const secret = "r".repeat(40);
    const [left, right] = pools.map((replicaPool) =>
      createPgKeyStore({
        pool: replicaPool,
        secret,
        secretDir: secretDir(),
        tenantPattern: TENANT_PATTERN,
      }),
    ) as [KeyStore, KeyStore];
    try {
      const fromLeft = await left.create({ tenant: "acme", scopes: ["read"] });
      const fromRight = await right.create({ tenant: "acme", scopes: ["admin"] });
      expect((await left.verify(fromRight.key)).status).toBe("valid");
      expect((await right.verify(fromLeft.key)).status).toBe("valid");

      await right.revoke(fromLeft.record.id);
      const revokedAt = Date.now();
      while ((await left.verify(fromLeft.key)).status !== "revoked") {
        expect(Date.now() - revokedAt).toBeLessThan(MAX_STALENESS_MS);
        await sleep(50);
      }
      const seenAfter = Date.now() - revokedAt;
      expect(seenAfter).toBeLessThan(1_500);
      expect((await left.verify(fromRight.key)).status).toBe("valid");
    } finally {
      await left.close();
      await right.close();
    }
  });

  it("keeps the secret's fingerprint, never the secret, and refuses a store without any secret", async () => {
    const secret = "q".repeat(40);
    const store = createPgKeyStore({
      pool: database.pool,
      secret,
      secretDir: secretDir(),
      tenantPattern: TENANT_PATTERN,
    });
    await store.create({ tenant: "acme", scopes: ["read"] });
    expect(await adapter.rawText()).not.toContain(secret);
    const head = await database.pool.query<{ fingerprint: string }>(
      "select secret_fingerprint as fingerprint from loupe_key_store",
    );
    expect(head.rows[0]?.fingerprint).toBe(secretFingerprint(secret));
    await store.close();
    const without = createPgKeyStore({
      pool: database.pool,
      secretDir: path.join(secretDir(), "elsewhere"),
      tenantPattern: TENANT_PATTERN,
    });
    const error = await expectStoreError(without.hasKeys(), "key_store_invalid");
    expect(error.message).toContain("LOUPE_KEY_SECRET");
    await without.close();
  });

  it("reports a database that is not migrated as a typed error, not a crash", async () => {
    const bare = await createTestDatabase();
    const barePool = createDatabasePool({ url: bare.url });
    try {
      const store = createPgKeyStore({
        pool: barePool,
        secretDir: secretDir(),
        tenantPattern: TENANT_PATTERN,
      });
      const error = await store.hasKeys().then(
        () => undefined,
        (failure: unknown) => failure as Error,
      );
      expect(error?.message).toContain("loupe_key_store");
      await store.close();
    } finally {
      await barePool.end();
      await bare.drop();
    }
  });

  it("openKeyStore opens the file store without a database URL and the database's with one", async () => {
    const dataDir = directory.path;
    const secret = "o".repeat(40);
    const embedded = await openKeyStore({ dataDir, secret, tenantPattern: TENANT_PATTERN });
    const inFile = await embedded.create({ tenant: "acme", scopes: ["read"] });
    await embedded.close();
    expect(existsSync(path.join(dataDir, "auth", KEYS_FILE))).toBe(true);
    expect(await adapter.storedHash(inFile.record.id)).toBeUndefined();

    const url = database.url;
    const shared = await openKeyStore({ databaseUrl: url, dataDir, secret, tenantPattern: TENANT_PATTERN });
    const inDatabase = await shared.create({ tenant: "acme", scopes: ["read"] });
    await shared.close();
    await shared.close();
    expect(await adapter.storedHash(inDatabase.record.id)).toBe(hashApiKey({ key: inDatabase.key, secret }));

    const bare = await createTestDatabase();
    try {
      const error = await openKeyStore({
        databaseUrl: bare.url,
        dataDir,
        secret,
        tenantPattern: TENANT_PATTERN,
      }).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(error).toBeInstanceOf(DatabaseError);
      expect((error as DatabaseError).code).toBe("migrations_pending");
      // The refused store ended its pool: no connection to that database is left (a closed one may
      // take a moment to leave pg_stat_activity).
      const connections = async () =>
        Number(
          (
            await database.pool.query<{ count: string }>(
              "select count(*) as count from pg_stat_activity where datname = $1",
              [bare.name],
            )
          ).rows[0]?.count,
        );
      const endedAt = Date.now();
      while ((await connections()) > 0) {
        expect(Date.now() - endedAt).toBeLessThan(2_000);
        await sleep(20);
      }
    } finally {
      await bare.drop();
    }
  });
});
