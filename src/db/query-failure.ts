/**
 * Turns what `pg` throws into Loupe's typed errors, for the `pg-*` adapters of the ports: a database
 * that cannot be reached, a row the schema's checks refuse, a table that is missing, a transaction the
 * server gave up on. Errors it does not know pass through unchanged, to be logged whole.
 */
import type pg from "pg";
import { ValidationError } from "../errors.ts";
import { databaseFailure } from "./database.ts";
import { DatabaseError } from "./database-error.ts";

/** What `pg` reports about a failed statement (the fields of a server error that are read here). */
interface ServerError {
  code?: unknown;
  constraint?: unknown;
  table?: unknown;
  message?: unknown;
}

/**
 * The typed error for `error`, thrown by a query of `what` (e.g. `"Saving classifier cats"`):
 *
 * - connection failures: {@link DatabaseError} `database_unavailable` (503, retry after 5 s);
 * - a check, not-null, unique or format violation (SQLSTATE class 22 and 23): {@link ValidationError}
 *   naming the constraint, since the adapters' checks mirror the validation the callers do first;
 * - a missing table or column (42P01, 42703): `migrations_pending`, naming `loupe migrate`;
 * - a serialization failure or deadlock (40001, 40P01): `database_unavailable`, retry after 1 s.
 */
export function queryFailure(error: unknown, { pool, what }: { pool: pg.Pool; what: string }): unknown {
  const unreachable = databaseFailure(error, pool);
  if (unreachable !== error) return unreachable;
  if (error instanceof DatabaseError || typeof error !== "object" || error === null) return error;
  const { code, constraint, table, message } = error as ServerError;
  if (typeof code !== "string") return error;
  const detail = typeof message === "string" ? message : String(code);
  if (code.startsWith("23") || code.startsWith("22")) {
    return new ValidationError(
      `${what} was refused by the database (${detail}); the value breaks ${typeof constraint === "string" ? `the constraint ${constraint}` : "the schema"}${typeof table === "string" ? ` of ${table}` : ""}.`,
      {
        cause: error,
        context: { sqlstate: code, ...(typeof constraint === "string" ? { constraint } : {}) },
      },
    );
  }
  if (code === "42P01" || code === "42703") {
    return new DatabaseError(
      "migrations_pending",
      `${what} failed: the database lacks a table or column this Loupe needs (${detail}). Run \`loupe migrate\` with the same LOUPE_DATABASE_URL.`,
      { cause: error, context: { sqlstate: code } },
    );
  }
  if (code === "40001" || code === "40P01") {
    return new DatabaseError(
      "database_unavailable",
      `${what} collided with another process's transaction (${detail}); try again.`,
      { cause: error, context: { sqlstate: code }, retryAfterSeconds: 1 },
    );
  }
  return error;
}

/**
 * Runs one statement on `pool`, turning its failure into a typed error with {@link queryFailure}.
 */
export async function runQuery<Row extends pg.QueryResultRow>(
  pool: pg.Pool,
  {
    what,
    text,
    values = [],
    client,
  }: { what: string; text: string; values?: unknown[]; client?: pg.PoolClient },
): Promise<pg.QueryResult<Row>> {
  try {
    return await (client ?? pool).query<Row>(text, values);
  } catch (error) {
    throw queryFailure(error, { pool, what });
  }
}
