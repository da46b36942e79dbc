/**
 * Migrations on a real PostgreSQL (a database of this file's own): applied to an empty database and to
 * one at an older version, once under concurrency, never twice, all or nothing; a database with pending,
 * unknown or changed migrations refuses start-up with a message that names the fix.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type pg from "pg";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runMigrate } from "../../src/cli/commands/migrate.ts";
import { parseConfig } from "../../src/config.ts";
import {
  assertMigrated,
  createDatabasePool,
  DatabaseError,
  MIGRATIONS,
  type Migration,
  migrate,
  migrationChecksum,
  migrationStatus,
  openDatabase,
} from "../../src/db/index.ts";
import { ConfigError } from "../../src/errors.ts";
import { createLogger } from "../../src/logger.ts";
import { createLoupeServices } from "../../src/services.ts";
import { createTestDatabase, type TestDatabase } from "./test-database.ts";

const databases: TestDatabase[] = [];
const pools: pg.Pool[] = [];

/** A fresh, empty database for one test. */
async function emptyDatabase(): Promise<{ url: string; pool: pg.Pool }> {
  const database = await createTestDatabase();
  databases.push(database);
  const pool = createDatabasePool({ url: database.url });
  pools.push(pool);
  return { url: database.url, pool };
}

async function expectDatabaseError(promise: Promise<unknown>, code: string): Promise<DatabaseError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(DatabaseError);
  expect((error as DatabaseError).code).toBe(code);
  return error as DatabaseError;
}

async function tables(pool: pg.Pool): Promise<string[]> {
  const result = await pool.query<{ name: string }>(
    "select tablename as name from pg_tables where schemaname = 'public' order by tablename",
  );
  return result.rows.map((row) => row.name);
}

const extra: Migration = {
  version: MIGRATIONS.length + 1,
  name: "test-notes",
  sql: "create table loupe_test_notes (id integer primary key, note text not null);",
};

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.end();
});

afterAll(async () => {
  for (const database of databases.splice(0)) await database.drop();
});

describe("migrate", () => {
  it("applies every migration to an empty database once, records them, and then finds nothing pending", async () => {
    const { pool } = await emptyDatabase();
    expect((await migrationStatus({ pool })).every((state) => state.appliedAt === null)).toBe(true);
    await expectDatabaseError(assertMigrated({ pool }), "migrations_pending");

    const applied = await migrate({ pool });
    expect(applied.map((state) => [state.version, state.name])).toEqual(
      MIGRATIONS.map((migration) => [migration.version, migration.name]),
    );
    expect(MIGRATIONS.map((migration) => migration.version)).toEqual(MIGRATIONS.map((_, index) => index + 1));
    expect(await tables(pool)).toEqual([
      "loupe_api_keys",
      "loupe_audit_log",
      "loupe_blob_ref_imports",
      "loupe_blob_refs",
      "loupe_classifiers",
      "loupe_feedback",
      "loupe_feedback_proposals",
      "loupe_job_items",
      "loupe_jobs",
      "loupe_key_store",
      "loupe_migrations",
      "loupe_user_events",
    ]);
    const recorded = await pool.query<{ version: number; checksum: string }>(
      "select version, checksum from loupe_migrations order by version",
    );
    expect(recorded.rows).toEqual(
      MIGRATIONS.map((migration) => ({ version: migration.version, checksum: migrationChecksum(migration) })),
    );

    expect(await migrate({ pool })).toEqual([]);
    await assertMigrated({ pool });
    const status = await migrationStatus({ pool });
    expect(status.map((state) => state.appliedAt)).toEqual(applied.map((state) => state.appliedAt));
  });

  it("brings a database at the previous version up to date, applying only the newer migration", async () => {
    const { pool } = await emptyDatabase();
    await migrate({ pool });
    const next = [...MIGRATIONS, extra];
    const pending = await expectDatabaseError(
      assertMigrated({ pool, migrations: next }),
      "migrations_pending",
    );
    expect(pending.message).toContain(`${extra.version} ${extra.name}`);
    expect(pending.message).toContain("loupe migrate");

    expect((await migrate({ pool, migrations: next })).map((state) => state.version)).toEqual([
      extra.version,
    ]);
    expect(await tables(pool)).toContain("loupe_test_notes");
    await assertMigrated({ pool, migrations: next });
  });

  it("applies each migration once when several processes migrate at once", async () => {
    const { url } = await emptyDatabase();
    const racers = Array.from({ length: 4 }, () => createDatabasePool({ url, maxConnections: 1 }));
    pools.push(...racers);
    const results = await Promise.all(racers.map((pool) => migrate({ pool })));
    const applied = results.flat().map((state) => state.version);
    expect(applied.sort()).toEqual(MIGRATIONS.map((migration) => migration.version));
    // One racer did everything; the others waited on the lock and found nothing left.
    expect(results.filter((result) => result.length > 0)).toHaveLength(1);
    const count = await racers[0]?.query<{ count: string }>("select count(*) as count from loupe_migrations");
    expect(Number(count?.rows[0]?.count)).toBe(MIGRATIONS.length);
  });

  it("applies nothing when one pending migration fails", async () => {
    const { pool } = await emptyDatabase();
    const broken: Migration = {
      version: extra.version,
      name: "broken",
      sql: "create table loupe_api_keys (x int);",
    };
    const error = await expectDatabaseError(
      migrate({ pool, migrations: [...MIGRATIONS, broken] }),
      "database_invalid",
    );
    expect(error.message).toContain(`Migration ${broken.version} (broken) failed`);
    expect(await tables(pool)).toEqual([]);
    expect(await migrate({ pool })).toHaveLength(MIGRATIONS.length);
  });

  it("refuses a database migrated by a newer Loupe, or with a migration changed since it was applied", async () => {
    const { pool } = await emptyDatabase();
    await migrate({ pool, migrations: [...MIGRATIONS, extra] });
    const newer = await expectDatabaseError(assertMigrated({ pool }), "database_invalid");
    expect(newer.message).toContain(`migration ${extra.version} (${extra.name})`);
    expect(newer.message).toContain("newer Loupe");
    await expectDatabaseError(migrate({ pool }), "database_invalid");

    const edited = { ...extra, sql: `${extra.sql}\n-- edited` };
    const changed = await expectDatabaseError(
      migrationStatus({ pool, migrations: [...MIGRATIONS, edited] }),
      "database_invalid",
    );
    expect(changed.message).toContain("never edited");
  });

  it("reports a database that cannot be reached, naming where it looked and not the password", async () => {
    const pool = createDatabasePool({
      url: "postgres://loupe:pa55word@127.0.0.1:1/loupe",
      connectTimeoutMs: 2_000,
    });
    pools.push(pool);
    const error = await expectDatabaseError(migrate({ pool }), "database_unavailable");
    expect(error.message).toContain("127.0.0.1:1/loupe");
    expect(error.message).toContain("LOUPE_DATABASE_URL");
    expect(error.message).not.toContain("pa55word");
    await expectDatabaseError(
      openDatabase({ url: "postgres://loupe@127.0.0.1:1/loupe" }),
      "database_unavailable",
    );
  });
});

describe("start-up and `loupe migrate`", () => {
  it("refuses to start over a database with pending migrations, naming `loupe migrate`", async () => {
    const { url } = await emptyDatabase();
    await expectDatabaseError(openDatabase({ url }), "migrations_pending");
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-db-"));
    try {
      const started = Date.now();
      const error = await expectDatabaseError(
        createLoupeServices({
          config: parseConfig({ env: { LOUPE_DATABASE_URL: url, LOUPE_DATA_DIR: dataDir } }),
          logger: createLogger({ level: "silent" }),
        }),
        "migrations_pending",
      );
      expect(error.message).toContain("Run `loupe migrate`");
      // Refused before the vector store or the model pack were started.
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("applies, reports and lists migrations, and is idempotent", async () => {
    const { url } = await emptyDatabase();
    const env = { LOUPE_DATABASE_URL: url };
    let out = "";
    const write = (text: string) => {
      out += text;
    };

    await runMigrate({ env, status: true, write });
    expect(out).toMatch(/^version\s+name\s+applied\n1\s+api-keys\s+pending\n/);
    expect(out).toContain(`${MIGRATIONS.length} pending; \`loupe migrate\` applies them.`);

    out = "";
    const applied = await runMigrate({ env, write });
    expect(applied.map((line) => line.version)).toEqual(MIGRATIONS.map((migration) => migration.version));
    expect(out).toContain("applied 1 api-keys\n");
    expect(out).toContain(`${MIGRATIONS.length} migration`);
    expect(out).not.toContain(url);

    out = "";
    expect(await runMigrate({ env, write })).toEqual([]);
    expect(out).toContain("is up to date; nothing applied.");

    out = "";
    await runMigrate({ env, status: true, json: true, write });
    const listed = JSON.parse(out) as { migrations: Array<{ version: number; appliedAt: string | null }> };
    expect(listed.migrations.map((line) => line.version)).toEqual(
      MIGRATIONS.map((migration) => migration.version),
    );
    expect(listed.migrations.every((line) => line.appliedAt !== null)).toBe(true);
  });

  it("runs once when two `loupe migrate` start at once", async () => {
    const { url } = await emptyDatabase();
    const env = { LOUPE_DATABASE_URL: url };
    const outputs = ["", ""];
    const results = await Promise.all(
      outputs.map((_, index) =>
        runMigrate({
          env,
          write: (text) => {
            outputs[index] += text;
          },
        }),
      ),
    );
    expect(results.map((result) => result.length).sort()).toEqual([0, MIGRATIONS.length]);
    expect(outputs.filter((text) => text.includes("nothing applied"))).toHaveLength(1);
  });

  it("needs LOUPE_DATABASE_URL", async () => {
    const error = await runMigrate({ env: {}, write: () => undefined }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain("LOUPE_DATABASE_URL");
  });
});
