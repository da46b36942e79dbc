/**
 * Loupe's structured logger: pino writing one JSON object per line. Request handlers use a child of it
 * that carries the request id (see `src/http/context.ts`), so every line of one request can be found.
 */
import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";

export type { Logger } from "pino";

/** Options of {@link createLogger}. */
export interface CreateLoggerOptions {
  /** Least severe level written (pino level name). */
  level?: LoggerOptions["level"];
  /** Where lines go; stdout when absent. Tests pass a stream to read them back. */
  destination?: DestinationStream;
}

/**
 * The process-wide logger. Credentials never reach the log: `token`, `authorization` and `apiKey`
 * fields and the `authorization` and `x-api-key` headers are redacted, at the top of a line and up to
 * two objects down (the configuration is logged through `redactConfig`, which hides every setting
 * marked secret).
 */
export function createLogger({ level = "info", destination }: CreateLoggerOptions = {}): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: "loupe" },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        "token",
        "*.token",
        "authorization",
        "*.authorization",
        "headers.authorization",
        "*.headers.authorization",
        "*.*.headers.authorization",
        'headers["x-api-key"]',
        '*.headers["x-api-key"]',
        '*.*.headers["x-api-key"]',
        '["x-api-key"]',
        '*["x-api-key"]',
        "apiKey",
        "*.apiKey",
      ],
      censor: "(hidden)",
    },
    serializers: { err: pino.stdSerializers.errWithCause, error: pino.stdSerializers.errWithCause },
  };
  return destination ? pino(options, destination) : pino(options);
}
