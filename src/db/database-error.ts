/** Failures of the PostgreSQL database that shared state lives in, each with a code and an HTTP status. */
import { AppError, type AppErrorOptions } from "../errors.ts";

/** Why a database call failed. */
export type DatabaseErrorCode =
  /** The database could not be reached or refused the connection. 503. */
  | "database_unavailable"
  /** The database lacks migrations this Loupe needs; `loupe migrate` applies them. 503. */
  | "migrations_pending"
  /** The database's migrations are not this Loupe's (newer, or changed since they were applied). 500. */
  | "database_invalid";

const statusByCode: Record<DatabaseErrorCode, number> = {
  database_unavailable: 503,
  migrations_pending: 503,
  database_invalid: 500,
};

/** A database call failed; the message says what and how to fix it. */
export class DatabaseError extends AppError {
  constructor(code: DatabaseErrorCode, message: string, options: AppErrorOptions = {}) {
    super(code, statusByCode[code], message, options);
  }
}
