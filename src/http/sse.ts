/**
 * Server-sent events over a Web `ReadableStream`. Every event is named (`event:` line) and carries
 * one JSON document (`data:` line); a comment line is sent at an interval so proxies do not close an
 * idle stream. When the client goes away the source iterator is closed, which unsubscribes it.
 */
import type { Logger } from "../logger.ts";
import { failureEnvelope } from "./errors.ts";

/** One named event. */
export interface SseEvent {
  /** Event name, e.g. `progress`, `item`, `done`, `error`. */
  event: string;
  /** Serialized as JSON on one `data:` line. */
  data: unknown;
  /** Optional `id:` line. */
  id?: string;
}

const EVENT_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/** One event in the wire format: `event: <name>\ndata: <json>\n\n`. */
export function formatSseEvent({ event, data, id }: SseEvent): string {
  if (!EVENT_NAME.test(event)) throw new Error(`Invalid SSE event name ${JSON.stringify(event)}.`);
  // JSON.stringify escapes newlines inside strings, so the document always fits on one data line.
  const lines = [`event: ${event}`];
  if (id !== undefined) lines.push(`id: ${id.replace(/[\r\n]/g, "")}`);
  lines.push(`data: ${JSON.stringify(data)}`);
  return `${lines.join("\n")}\n\n`;
}

/** Options of {@link sseResponse}. */
export interface SseResponseOptions {
  /**
   * Makes the events to send, in order; the stream ends when they do. `signal` aborts when the client
   * goes away, so a source waiting for its next event can stop at once.
   */
  events: (signal: AbortSignal) => AsyncIterable<SseEvent>;
  /** Interval of keep-alive comments, in milliseconds (0: none). */
  keepAliveMs?: number;
  /** Response headers besides the SSE ones. */
  headers?: Record<string, string>;
  /** Id of the request, carried by the `error` event sent when the source throws. */
  requestId: string;
  /** Logs a failure of the source. */
  logger?: Logger;
}

/** Options of {@link eventStreamResponse}. */
export interface EventStreamOptions {
  /** Makes the wire frames to send, in order (each ends with a blank line); `signal` aborts when the client goes away. */
  frames: (signal: AbortSignal) => AsyncIterator<string>;
  /** Frame sent when the source throws, before the stream ends. */
  failureFrame?: (error: unknown) => string;
  /** Comment sent first, so proxies and clients see the stream open at once. */
  openComment?: boolean;
  /** Interval of keep-alive comments, in milliseconds (0: none). */
  keepAliveMs?: number;
  /** Response headers besides the SSE ones. */
  headers?: Record<string, string>;
}

/**
 * A `text/event-stream` response of wire frames: keep-alive comments at an interval, the source closed
 * (its `return` called) when the client goes away, the stream closed once the source ends. Both Loupe's
 * named events ({@link sseResponse}) and OpenAI's `data:` chunks are written through it.
 */
export function eventStreamResponse({
  frames,
  failureFrame,
  openComment = false,
  keepAliveMs = 15_000,
  headers = {},
}: EventStreamOptions): Response {
  const encoder = new TextEncoder();
  const abort = new AbortController();
  const iterator = frames(abort.signal);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const send = (text: string) => {
        if (!closed) controller.enqueue(encoder.encode(text));
      };
      if (keepAliveMs > 0) timer = setInterval(() => send(": keep-alive\n\n"), keepAliveMs);
      if (openComment) send(": stream open\n\n");
      void (async () => {
        try {
          while (!closed) {
            const next = await iterator.next();
            if (next.done === true) break;
            send(next.value);
          }
        } catch (error) {
          if (failureFrame !== undefined) send(failureFrame(error));
        } finally {
          clearInterval(timer);
          if (!closed) {
            closed = true;
            controller.close();
          }
        }
      })();
    },
    async cancel() {
      closed = true;
      clearInterval(timer);
      abort.abort();
      await iterator.return?.();
    },
  });
  return new Response(stream, {
    status: 200,
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      "x-accel-buffering": "no",
      ...headers,
    },
  });
}

/**
 * A `text/event-stream` response streaming `events`. An error thrown by the source ends the stream
 * after an `error` event holding the error envelope (an unexpected error is logged and answered with
 * the fixed internal message).
 */
export function sseResponse({
  events,
  keepAliveMs = 15_000,
  headers = {},
  requestId,
  logger,
}: SseResponseOptions): Response {
  return eventStreamResponse({
    frames: (signal) => {
      const source = events(signal)[Symbol.asyncIterator]();
      return {
        next: async () => {
          const next = await source.next();
          return next.done === true
            ? { done: true, value: undefined }
            : { done: false, value: formatSseEvent(next.value) };
        },
        return: async () => {
          await source.return?.();
          return { done: true, value: undefined };
        },
      };
    },
    failureFrame: (error) =>
      formatSseEvent({ event: "error", data: failureEnvelope({ error, requestId, logger }) }),
    openComment: true,
    keepAliveMs,
    headers,
  });
}
