/**
 * API keys shared through PostgreSQL: `LOUPE_DATABASE_URL` puts the services' key store in the database
 * (and leaving it unset keeps the file store under the data dir), and two API replicas, each with its own
 * pool and data dir, on one database: a key made through one works on the other, and a key revoked
 * through one is refused by the other within 5 s.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyStoreDir } from "../../src/auth/file-key-store.ts";
import { MAX_STALENESS_MS } from "../../src/auth/key-store.ts";
import { createPgKeyStore } from "../../src/auth/pg-key-store.ts";
import { createDatabasePool, migrate } from "../../src/db/index.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { makeTestApp, openTestServices } from "../helpers/app.ts";
import { createTestDatabase, type TestDatabase } from "./test-database.ts";

let database: TestDatabase;
let pool: pg.Pool;
let scratch: string;
/** Every replica of one deployment shares the key secret. */
const secret = "z".repeat(40);

beforeAll(async () => {
  database = await createTestDatabase();
  pool = createDatabasePool({ url: database.url });
  await migrate({ pool });
  scratch = await mkdtemp(path.join(os.tmpdir(), "loupe-shared-keys-"));
});

afterAll(async () => {
  await pool?.end();
  await database?.drop();
  await rm(scratch, { recursive: true, force: true });
});

/** Services as `loupe serve` builds them, without a vector store, a model pack or OCR (none is needed). */
function openServices(env: Record<string, string>) {
  return openTestServices({
    env: {
      LOUPE_MODEL_PACK: path.join(scratch, "no-pack"),
      LOUPE_OCR: "off",
      LOUPE_METRICS: "off",
      ...env,
    },
  });
}

const bearer = (key: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${key}`,
  ...extra,
});

describe("the services' key store", () => {
  it("is the database's when LOUPE_DATABASE_URL is set, and the data dir's file when it is not", async () => {
    const sharedDir = path.join(scratch, "shared");
    const shared = await openServices({
      LOUPE_DATABASE_URL: database.url,
      LOUPE_DATA_DIR: sharedDir,
      LOUPE_KEY_SECRET: secret,
    });
    try {
      const { record } = await shared.keys.create({ tenant: "acme", scopes: ["read"] });
      const rows = await pool.query<{ id: string }>("select id from loupe_api_keys where id = $1", [
        record.id,
      ]);
      expect(rows.rows).toEqual([{ id: record.id }]);
      expect(existsSync(path.join(keyStoreDir(sharedDir), "keys.json"))).toBe(false);
    } finally {
      await shared.close();
    }
    // close() ended the services' pool: no connection but this test's own is left.
    const held = await pool.query<{ count: string }>(
      "select count(*) as count from pg_stat_activity where datname = $1 and application_name = 'loupe' and pid <> pg_backend_pid()",
      [database.name],
    );
    expect(Number(held.rows[0]?.count)).toBe(0);

    const embeddedDir = path.join(scratch, "embedded");
    const embedded = await openServices({ LOUPE_DATA_DIR: embeddedDir });
    try {
      const { record } = await embedded.keys.create({ tenant: "acme", scopes: ["read"] });
      expect(existsSync(path.join(keyStoreDir(embeddedDir), "keys.json"))).toBe(true);
      const rows = await pool.query("select id from loupe_api_keys where id = $1", [record.id]);
      expect(rows.rows).toEqual([]);
    } finally {
      await embedded.close();
    }
  });
});

describe("two API replicas on one database", () => {
  it("a key made through one works on the other; revoked through one, it is refused by the other within 5 s", async () => {
    const replicas = await Promise.all(
      ["a", "b"].map(async (name) => {
        const dataDir = await mkdtemp(path.join(scratch, `replica-${name}-`));
        const replicaPool = createDatabasePool({ url: database.url });
        const keys = createPgKeyStore({
          pool: replicaPool,
          secret,
          secretDir: keyStoreDir(dataDir),
          tenantPattern: TENANT_PATTERN,
        });
        const app = makeTestApp({ env: { LOUPE_DATA_DIR: dataDir, LOUPE_KEY_SECRET: secret }, keys });
        return { app, keys, pool: replicaPool };
      }),
    );
    const [first, second] = replicas as [(typeof replicas)[number], (typeof replicas)[number]];
    try {
      const admin = await first.keys.create({ tenant: "acme", scopes: ["admin"] });
      const created = await first.app.request("/v1/admin/keys", {
        method: "POST",
        headers: bearer(admin.key, { "content-type": "application/json" }),
        body: JSON.stringify({ scopes: ["read"], name: "agent" }),
      });
      expect(created.status).toBe(201);
      const made = (await created.json()) as { id: string; key: string };

      const madeAt = Date.now();
      while ((await second.app.request("/v1/models", { headers: bearer(made.key) })).status !== 200) {
        expect(Date.now() - madeAt).toBeLessThan(MAX_STALENESS_MS);
        await sleep(50);
      }

      const revoked = await first.app.request(`/v1/admin/keys/${made.id}`, {
        method: "DELETE",
        headers: bearer(admin.key),
      });
      expect(revoked.status).toBe(200);
      const revokedAt = Date.now();
      let answer = await second.app.request("/v1/models", { headers: bearer(made.key) });
      while (answer.status === 200) {
        expect(Date.now() - revokedAt).toBeLessThan(MAX_STALENESS_MS);
        await sleep(50);
        answer = await second.app.request("/v1/models", { headers: bearer(made.key) });
      }
      expect(answer.status).toBe(401);
      expect(Date.now() - revokedAt).toBeLessThan(MAX_STALENESS_MS);
    } finally {
      for (const replica of replicas) {
        await replica.keys.close();
        await replica.pool.end();
      }
    }
  });
});
