/**
 * Reading a request body within a byte limit while it arrives: a declared `Content-Length` over the
 * limit is refused before a byte is read, and a body without one is counted chunk by chunk and refused
 * as soon as the count passes the limit, its stream cancelled; nothing past the limit is ever held.
 */
import type { Context } from "hono";
import { AppError, MediaError } from "../../errors.ts";

/** What a body over the limit is told, besides the numbers. */
export interface BodyLimitAdvice {
  /** The setting that holds the limit, e.g. `LOUPE_MAX_JSON_BYTES`. */
  setting: string;
  /** What to do instead. */
  fix: string;
}

/** The 413 of a body over `limit` bytes; `size` when the request declared it. */
export function payloadTooLarge({
  limit,
  size,
  advice,
}: {
  limit: number;
  size?: number;
  advice: BodyLimitAdvice;
}): MediaError {
  const what = size === undefined ? `is over ${limit} bytes` : `is ${size} bytes`;
  return new MediaError(
    `The request body ${what}; the limit is ${limit} bytes (${advice.setting}). ${advice.fix}`,
    { status: 413, code: "payload_too_large", context: { limit, size } },
  );
}

/** The declared `Content-Length` of a request, when it is a plain decimal number. */
export function declaredLength(c: Context): number | undefined {
  const header = c.req.header("content-length");
  return header !== undefined && /^\d{1,16}$/.test(header.trim()) ? Number(header.trim()) : undefined;
}

/** A failure of the body stream itself (the client went away, the server's request timeout cut it). */
export function bodyReadError(cause: unknown): AppError {
  if (cause instanceof AppError) return cause;
  return new AppError(
    "request_incomplete",
    400,
    "The request body did not arrive whole: the connection was closed or timed out while it was being sent.",
    { cause },
  );
}

/**
 * The body of the request, at most `limit` bytes, read from the stream as it arrives.
 *
 * @throws {MediaError} 413 `payload_too_large` when `Content-Length` or the bytes read pass `limit`.
 */
export async function readBodyWithin(
  c: Context,
  { limit, advice }: { limit: number; advice: BodyLimitAdvice },
): Promise<Uint8Array> {
  const size = declaredLength(c);
  if (size !== undefined && size > limit) throw payloadTooLarge({ limit, size, advice });
  const body = c.req.raw.body;
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        // Cancelling stops reading the socket; the server discards or cuts the rest.
        reader.cancel().catch(() => {});
        throw payloadTooLarge({ limit, advice });
      }
      chunks.push(value);
    }
  } catch (error) {
    throw bodyReadError(error);
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** Whether the request carries no body bytes, reading at most its first chunk. */
export async function bodyIsEmpty(c: Context): Promise<boolean> {
  const size = declaredLength(c);
  if (size !== undefined) return size === 0;
  const body = c.req.raw.body;
  if (body === null) return true;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return true;
      if (value.byteLength > 0) {
        reader.cancel().catch(() => {});
        return false;
      }
    }
  } catch (error) {
    throw bodyReadError(error);
  } finally {
    reader.releaseLock();
  }
}
