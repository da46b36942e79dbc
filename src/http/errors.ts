/**
 * The one JSON error envelope of the HTTP API, `{ "error": { "code", "message", "requestId" } }`, and
 * the one builder of it: thrown errors (the app's `onError`), unknown routes, failures in the middle of
 * an event stream and batches whose every item failed all answer through {@link errorEnvelope}.
 */
import { z } from "@hono/zod-openapi";
import type { ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { AppError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { AppEnv } from "./context.ts";

/** Schema of every error response body (`Error` in the OpenAPI document). */
export const errorEnvelopeSchema = z
  .object({
    error: z.object({
      code: z
        .string()
        .describe(
          "Stable, machine-readable code (snake_case), e.g. `not_found`, `not_ready`, `internal_error`.",
        ),
      message: z.string().describe("What failed and what is allowed, for people."),
      requestId: z
        .string()
        .describe(
          "Id of the request, also in the `x-request-id` response header; quote it when reporting a problem.",
        ),
    }),
  })
  .meta({ id: "Error" });

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

/** Builds an error envelope: the one place an error body is made. */
export function errorEnvelope(options: { code: string; message: string; requestId: string }): ErrorEnvelope {
  return { error: { code: options.code, message: options.message, requestId: options.requestId } };
}

/** What a failure answers: its status, code and caller-facing message. */
export interface FailureAnswer {
  status: ContentfulStatusCode;
  code: string;
  message: string;
}

/**
 * How a failure is answered, logged on the way. An {@link AppError} keeps its status, code and message
 * (they are written for the caller); Hono's `HTTPException` (malformed input) keeps its status; anything
 * else is logged whole and answered 500 with {@link internalErrorMessage}.
 */
export function describeFailure(error: unknown, logger: Logger | undefined): FailureAnswer {
  if (error instanceof AppError) {
    const status = error.status as ContentfulStatusCode;
    logger?.[status >= 500 ? "error" : "info"]({ err: error }, "request failed");
    return { status, code: error.code, message: error.message };
  }
  if (error instanceof HTTPException) {
    const status = error.status;
    logger?.[status >= 500 ? "error" : "info"]({ err: error }, "request failed");
    return {
      status,
      code: codeByStatus[status] ?? (status >= 500 ? "internal_error" : "invalid_request"),
      message: error.message || `Request failed with HTTP ${status}.`,
    };
  }
  logger?.error({ err: error }, "unexpected error");
  return { status: 500, code: "internal_error", message: internalErrorMessage };
}

/**
 * The envelope of a failure that cannot change the status any more: an `error` event of a stream that
 * has begun, answered with the same code and message an HTTP error would carry.
 */
export function failureEnvelope({
  error,
  requestId,
  logger,
}: {
  error: unknown;
  requestId: string;
  logger: Logger | undefined;
}): ErrorEnvelope {
  const { code, message } = describeFailure(error, logger);
  return errorEnvelope({ code, message, requestId });
}

/** The app's one `onError`: every thrown error becomes the envelope with its status. */
export const handleError: ErrorHandler<AppEnv> = (error, c) => {
  const { status, code, message } = describeFailure(error, c.get("logger"));
  if (error instanceof AppError && error.retryAfterSeconds !== undefined) {
    c.header("Retry-After", String(Math.max(1, Math.ceil(error.retryAfterSeconds))));
  }
  return c.json(errorEnvelope({ code, message, requestId: c.get("requestId") ?? "unknown" }), status);
};

/** The app's 404 for unknown routes, in the same envelope. */
export const handleNotFound: NotFoundHandler<AppEnv> = (c) => {
  const message = `No route for ${c.req.method} ${c.req.path}. See the HTTP API section of the README.`;
  return c.json(
    errorEnvelope({ code: "not_found", message, requestId: c.get("requestId") ?? "unknown" }),
    404,
  );
};
