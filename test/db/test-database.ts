/**
 * A database of its own for each test file, on the PostgreSQL that CI and development machines run
 * (`LOUPE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`): made with a random
 * name `loupe_test_<hex>`, dropped (connections and all) after.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";

/** The server's maintenance database, which test databases are made from. */
export const ADMIN_URL = process.env.LOUPE_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** A test database: its URL, and how to drop it. */
export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

async function admin<Result>(work: (client: pg.Client) => Promise<Result>): Promise<Result> {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL does not answer at ${ADMIN_URL} (${(error as Error).message}). These tests need it: start it (\`service postgresql start\`, or \`pg_ctlcluster 15 main start\`), or set LOUPE_TEST_POSTGRES_URL.`,
      { cause: error },
    );
  }
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Makes an empty database with a random name. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `loupe_test_${randomBytes(6).toString("hex")}`;
  await admin((client) => client.query(`create database ${name}`));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () =>
      admin((client) => client.query(`drop database if exists ${name} with (force)`)).then(() => undefined),
  };
}
