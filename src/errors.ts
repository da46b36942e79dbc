/**
 * Loupe's error types. Every failure the service knows about is an {@link AppError} with a stable
 * `code`, an HTTP `status`, an optional `cause` and structured `context`. SDK and system failures are
 * turned into one of these at the adapter that meets them; the HTTP layer maps them to one envelope.
 * {@link invalidInput} is the one place a zod failure becomes a message for the caller.
 */
import type { z } from "zod";

/** Options shared by every {@link AppError} subclass. */
export interface AppErrorOptions {
  /** The lower-level error that caused this one, kept for logs. */
  cause?: unknown;
  /** Structured facts about the failure (offending value, limits, ids), logged and never secret. */
  context?: Record<string, unknown>;
  /**
   * Seconds after which a retry may succeed (a store restarting, a full work queue); the HTTP layer
   * sends it as `Retry-After`.
   */
  retryAfterSeconds?: number;
}

/** Base class of every error Loupe raises on purpose. */
export class AppError extends Error {
  /** Stable, machine-readable error code (snake_case). */
  readonly code: string;
  /** HTTP status the error maps to. */
  readonly status: number;
  /** Structured facts about the failure. */
  readonly context: Record<string, unknown>;
  /** Seconds after which a retry may succeed; sent as `Retry-After`. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: string, status: number, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.context = options.context ?? {};
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** A setting is missing or has a value outside what is allowed. Stops start-up. */
export class ConfigError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("config_invalid", 500, message, options);
  }
}

/** The caller sent something malformed or outside the allowed range. */
export class ValidationError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("invalid_request", 400, message, options);
  }
}

/** The requested thing does not exist (or is not visible to the caller's tenant). */
export class NotFoundError extends AppError {
  constructor(message: string, options: AppErrorOptions & { code?: string } = {}) {
    super(options.code ?? "not_found", 404, message, options);
  }
}

/** The vector store could not be reached, or answered with an error status. */
export class StoreError extends AppError {
  constructor(message: string, options: AppErrorOptions & { status?: number; code?: string } = {}) {
    super(options.code ?? "store_error", options.status ?? 503, message, options);
  }
}

/** A dependency the service needs is not ready (Milvus down, collections not loaded). */
export class NotReadyError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("not_ready", 503, message, options);
  }
}

/**
 * A bounded work queue is full (too much work of one kind is already waiting): answered 503 with
 * `Retry-After`, instead of queueing without limit.
 */
export class OverloadedError extends AppError {
  constructor(message: string, options: AppErrorOptions & { retryAfterSeconds: number }) {
    super("overloaded", 503, message, options);
  }
}

/** A model pack is missing, corrupt, or does not match the expected layout. */
export class ModelPackError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("model_pack_invalid", 500, message, options);
  }
}

/** Running a model failed (bad tensor shapes, runtime error). */
export class InferenceError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("inference_failed", 500, message, options);
  }
}

/** Media bytes could not be decoded or exceed a limit. */
export class MediaError extends AppError {
  constructor(message: string, options: AppErrorOptions & { status?: number; code?: string } = {}) {
    super(options.code ?? "media_invalid", options.status ?? 422, message, options);
  }
}

/** A download from another host failed: unreachable (offline), an HTTP error, or content that fails its checksum. */
export class DownloadError extends AppError {
  constructor(message: string, options: AppErrorOptions & { status?: number } = {}) {
    super("download_failed", options.status ?? 502, message, options);
  }
}

/**
 * A URL the caller gave could not be fetched, or was refused before any connection: a scheme other
 * than http/https, credentials in the URL, an address that is not public, too many redirects, a body
 * over the byte limit (413), a content type outside the allow-list (415), a timeout or an upstream error.
 */
export class UrlFetchError extends AppError {
  constructor(message: string, options: AppErrorOptions & { status?: number; code?: string } = {}) {
    super(options.code ?? "url_fetch_failed", options.status ?? 422, message, options);
  }
}

/** The request conflicts with the current state of what it names (e.g. resuming a job that is running). */
export class ConflictError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("conflict", 409, message, options);
  }
}

/**
 * The LLM endpoint failed: unreachable, timed out, refused the key, or answered with an error status or
 * something that is not a chat completion. The chain answers with the offline composer instead and says so.
 */
export class LlmError extends AppError {
  constructor(message: string, options: AppErrorOptions & { status?: number; code?: string } = {}) {
    super(options.code ?? "llm_failed", options.status ?? 502, message, options);
  }
}

/**
 * ` (got "…")` for a scalar value a caller sent, cut to 60 characters, for messages that must show the
 * offending value; empty for anything else (objects, lists and absent values are not shown).
 */
export function shownValue(value: unknown): string {
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") return "";
  const text = typeof value === "string" && value.length > 60 ? `${value.slice(0, 60)}…` : value;
  return ` (got ${JSON.stringify(text)})`;
}

/** Where an issue sits: `topK`, `history[0][role]`, `filter[1][any][0][value]` (`root` goes first when given). */
function issuePath(path: readonly PropertyKey[], root: string | undefined): string {
  let where = root ?? "";
  for (const part of path) where += where === "" ? String(part) : `[${String(part)}]`;
  return where;
}

/** The value at `path` inside `input`, when there is one. */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const part of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

/** zod's own wording of unknown keys, replaced by a shorter one; a schema's custom message is kept. */
const ZOD_UNKNOWN_KEYS_MESSAGE = /^Unrecognized keys?: /;

/** Options of {@link describeZodIssues} and {@link invalidInput}. */
export interface ZodIssueOptions {
  /** What was validated, so that issues can show the offending value when zod did not record it. */
  input?: unknown;
  /** Name the paths start from (`filter`, `metadata`); issues at the root are then named by it. */
  root?: string;
}

/**
 * The issues of a failed zod parse as one line for the caller, the first five of them:
 * `topK: topK must be an integer from 1 to 100 (got 0); unknown field "model"`. Each names where it
 * is, what is wrong (the schema's own message, which names what is allowed) and the offending scalar.
 */
export function describeZodIssues(error: z.ZodError, { input, root }: ZodIssueOptions = {}): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const where = issuePath(issue.path, root);
      if (issue.code === "unrecognized_keys" && ZOD_UNKNOWN_KEYS_MESSAGE.test(issue.message)) {
        const keys = issue.keys.map((key) => JSON.stringify(key.slice(0, 80))).join(", ");
        const unknown = `unknown field${issue.keys.length > 1 ? "s" : ""} ${keys}`;
        return where === "" ? unknown : `${where}: ${unknown}`;
      }
      const offending = (issue as { input?: unknown }).input ?? valueAt(input, issue.path);
      const shown = issue.code === "unrecognized_keys" ? "" : shownValue(offending);
      return where === "" ? `${issue.message}${shown}` : `${where}: ${issue.message}${shown}`;
    })
    .join("; ");
}

/**
 * The {@link ValidationError} of a failed zod parse: `Invalid <subject>: <issues>.` with the issues
 * (without their inputs, which may be megabytes of base64) in its context for the log.
 */
export function invalidInput(
  error: z.ZodError,
  { subject = "request", ...options }: ZodIssueOptions & { subject?: string } = {},
): ValidationError {
  return new ValidationError(`Invalid ${subject}: ${describeZodIssues(error, options)}.`, {
    context: { issues: error.issues.slice(0, 10).map(({ input: _input, ...issue }) => issue) },
  });
}
