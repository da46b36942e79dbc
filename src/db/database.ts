/**
 * The connection pool to the PostgreSQL database that shared state lives in (`LOUPE_DATABASE_URL`), and
 * {@link withTransaction}, the one way Loupe's adapters change several rows at once. Only the adapters
 * under `src/db/` and the `pg-*` adapters of the ports import `pg`.
 */
import pg from "pg";
import { DatabaseError } from "./database-error.ts";

/** Options of {@link createDatabasePool}. */
export interface DatabasePoolOptions {
  /** `postgres://user:password@host:port/database`; never logged. */
  url: string;
  /** Connections held at most. */
  maxConnections?: number;
  /** How long a new connection may take before the call fails. */
  connectTimeoutMs?: number;
  /** Shown in `pg_stat_activity`, so an operator sees which connections are Loupe's. */
  applicationName?: string;
}

/**
 * A pool over `url`. Connects lazily: nothing is sent before the first query, so building the pool
 * never fails on a database that is down. Errors of idle connections (a server restart) are absorbed:
 * the pool drops the connection and the next query opens a new one.
 */
export function createDatabasePool({
  url,
  maxConnections = 10,
  connectTimeoutMs = 5_000,
  applicationName = "loupe",
}: DatabasePoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: maxConnections,
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: applicationName,
  });
  pool.on("error", () => undefined);
  return pool;
}

/** The database's address without credentials, for messages: `host:port/database`. */
export function describeDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname}`;
  } catch {
    return "(unparsable URL)";
  }
}

/** Whether `error` is a connection failure rather than an answer of the server. */
function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (
    typeof code === "string" &&
    /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|57P0[1-3]|08)/.test(code)
  ) {
    return true;
  }
  return (
    error instanceof Error &&
    /timeout exceeded when trying to connect|Connection terminated/i.test(error.message)
  );
}

/**
 * Turns a failure to reach the database into a {@link DatabaseError} naming the database; other errors
 * pass through unchanged.
 */
export function databaseFailure(error: unknown, pool: pg.Pool): unknown {
  if (error instanceof DatabaseError || !isConnectionFailure(error)) return error;
  const options = pool.options as { connectionString?: string };
  const where =
    options.connectionString === undefined ? "" : ` at ${describeDatabaseUrl(options.connectionString)}`;
  return new DatabaseError(
    "database_unavailable",
    `PostgreSQL${where} cannot be reached (${error instanceof Error ? error.message : String(error)}). Check that it runs and that LOUPE_DATABASE_URL names it.`,
    { cause: error, retryAfterSeconds: 5 },
  );
}

/**
 * Runs `work` in one transaction on one connection: committed when it resolves, rolled back when it
 * throws (and the error rethrown).
 */
export async function withTransaction<Result>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<Result>,
): Promise<Result> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw databaseFailure(error, pool);
  }
  let broken = false;
  try {
    await client.query("begin");
    const result = await work(client);
    await client.query("commit");
    return result;
  } catch (error) {
    await client.query("rollback").catch(() => {
      broken = true;
    });
    throw databaseFailure(error, pool);
  } finally {
    client.release(broken);
  }
}
