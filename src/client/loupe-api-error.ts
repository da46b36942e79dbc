/**
 * The error of a request Loupe refused or failed: the JSON error envelope
 * `{ "error": { "code", "message", "requestId" } }` (of an error response, or of an `error` event in a
 * stream) as an {@link AppError} with the server's code, status and message.
 */
import { AppError, type AppErrorOptions } from "../errors.ts";

/** Loupe answered with its error envelope; `code`, `status` and `message` are the server's. */
export class LoupeApiError extends AppError {
  /** The request's id on the server (also in its log), when the envelope carried one. */
  readonly requestId: string | undefined;
  /** The request that failed, e.g. `POST /v1/search`. */
  readonly request: string;

  constructor({
    code,
    status,
    message,
    requestId,
    request,
    ...options
  }: AppErrorOptions & {
    code: string;
    status: number;
    message: string;
    requestId?: string;
    request: string;
  }) {
    super(code, status, message, { ...options, context: { requestId, request, ...options.context } });
    this.requestId = requestId;
    this.request = request;
  }
}

/** The envelope's fields, when `body` is Loupe's error envelope. */
function envelopeOf(body: unknown): { code: string; message: string; requestId?: string } | undefined {
  const error = (body as { error?: unknown } | null | undefined)?.error;
  if (typeof error !== "object" || error === null) return undefined;
  const { code, message, requestId } = error as Record<string, unknown>;
  if (typeof code !== "string" || typeof message !== "string") return undefined;
  return { code, message, ...(typeof requestId === "string" ? { requestId } : {}) };
}

/**
 * Seconds a `Retry-After` header asks to wait: a number of seconds, or an HTTP date; undefined when
 * absent or unreadable.
 */
export function retryAfterSecondsOf(header: string | null | undefined, now = Date.now()): number | undefined {
  const text = header?.trim();
  if (text === undefined || text === "") return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  // An HTTP date names its weekday and month; anything else (a signed number, a word) is unreadable.
  if (!/^[A-Za-z]{3}, /.test(text)) return undefined;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}

/**
 * The error for a failed answer: the envelope's code and message with the response's status, or, for
 * a body that is not the envelope (a proxy's page, an older server), `unexpected_response` quoting it.
 * `retryAfter` is the response's `Retry-After` header, kept as `retryAfterSeconds`.
 */
export function apiErrorOf({
  status,
  body,
  request,
  retryAfter,
}: {
  status: number;
  body: unknown;
  request: string;
  retryAfter?: string | null;
}): LoupeApiError {
  const retryAfterSeconds = retryAfterSecondsOf(retryAfter);
  const retry = retryAfterSeconds === undefined ? {} : { retryAfterSeconds };
  const envelope = envelopeOf(body);
  if (envelope !== undefined) return new LoupeApiError({ ...envelope, status, request, ...retry });
  const shown = typeof body === "string" ? body : JSON.stringify(body);
  return new LoupeApiError({
    code: "unexpected_response",
    status,
    message: `${request} answered HTTP ${status} without Loupe's error envelope: ${(shown ?? "").slice(0, 200)}`,
    request,
    ...retry,
  });
}
