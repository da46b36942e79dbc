/**
 * The one JSON error envelope of the HTTP API, and the handlers that produce it for thrown errors
 * and unknown routes: `{ "error": { "code", "message", "requestId" } }`.
 */
import type { ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { AppError } from "../errors.ts";
import type { AppEnv } from "./context.ts";

/** Schema of every error response body. */
export const errorEnvelopeSchema = z.object({
  error: z.object({
    /** Stable, machine-readable code (snake_case), e.g. `not_found`, `not_ready`, `internal_error`. */
    code: z.string(),
    /** What failed, for people. */
    message: z.string(),
    /** Id of the request, also in the `x-request-id` response header; quote it when reporting a problem. */
    requestId: z.string(),
  }),
});

/** Body of every error response. */
export type ErrorEnvelope = z.infer<typeof errorEnvelopeSchema>;

/** Message of every 500 caused by an unexpected error; the details go to the log, never to the caller. */
export const internalErrorMessage =
  "Internal server error. The request id identifies the details in the server log.";

const codeByStatus: Record<number, string> = {
  400: "invalid_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  408: "request_timeout",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "unprocessable_entity",
  429: "too_many_requests",
  503: "not_ready",
};

/** Builds an error envelope. */
export function errorEnvelope(options: { code: string; message: string; requestId: string }): ErrorEnvelope {
  return { error: { code: options.code, message: options.message, requestId: options.requestId } };
}

/**
 * The app's one `onError`. An {@link AppError} keeps its status, code and message (they are written
 * for the caller); Hono's `HTTPException` (body limits, malformed input) keeps its status; anything
 * else is logged whole and answered 500 with {@link internalErrorMessage}.
 */
export const handleError: ErrorHandler<AppEnv> = (error, c) => {
  const requestId = c.get("requestId") ?? "unknown";
  const logger = c.get("logger");
  let status: ContentfulStatusCode = 500;
  let code = "internal_error";
  let message = internalErrorMessage;
  if (error instanceof AppError) {
    status = error.status as ContentfulStatusCode;
    code = error.code;
    message = error.message;
    const level = status >= 500 ? "error" : "info";
    logger?.[level]({ err: error }, "request failed");
  } else if (error instanceof HTTPException) {
    status = error.status;
    code = codeByStatus[status] ?? (status >= 500 ? "internal_error" : "invalid_request");
    message = error.message || `Request failed with HTTP ${status}.`;
    logger?.[status >= 500 ? "error" : "info"]({ err: error }, "request failed");
  } else {
    logger?.error({ err: error }, "unexpected error");
  }
  return c.json(errorEnvelope({ code, message, requestId }), status);
};

/** The app's 404 for unknown routes, in the same envelope. */
export const handleNotFound: NotFoundHandler<AppEnv> = (c) => {
  const message = `No route for ${c.req.method} ${c.req.path}. See the HTTP API section of the README.`;
  return c.json(
    errorEnvelope({ code: "not_found", message, requestId: c.get("requestId") ?? "unknown" }),
    404,
  );
};
