/**
 * HTTP range requests (RFC 9110 §14) for the media routes: which bytes of a stored file a `Range`
 * header asks for. Only single byte ranges are served: `bytes=a-b`, `bytes=a-` and `bytes=-n` (the last
 * n bytes). A header with more than one range is answered with the whole file, which RFC 9110 allows:
 * browsers and media players ask for one range at a time, and a multipart answer to many small or
 * overlapping ranges costs the server more than the file itself. A header Loupe cannot read (another
 * unit, bad syntax) is ignored the same way, as the RFC asks.
 */

/** What a `Range` header asks of a file of a given size. */
export type RangeRequest =
  /** Serve the whole file (no header, one Loupe ignores, or several ranges). */
  | { kind: "whole" }
  /** Serve bytes `start` to `end`, inclusive, with 206. */
  | { kind: "partial"; start: number; end: number }
  /** No byte of the file is in the range: 416 with `Content-Range: bytes *\/size`. */
  | { kind: "unsatisfiable" };

/** Longest `Range` header read; longer ones are ignored (the whole file is served). */
const MAX_RANGE_HEADER_LENGTH = 200;
const SINGLE_RANGE = /^bytes[ \t]*=[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$/i;

/**
 * The range `header` asks of a file of `size` bytes. An end past the file is cut to its last byte; a
 * suffix longer than the file is the whole file; a start at or past the end, or an empty suffix, is
 * unsatisfiable.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined || header.length > MAX_RANGE_HEADER_LENGTH) return { kind: "whole" };
  const match = SINGLE_RANGE.exec(header);
  if (match === null) return { kind: "whole" };
  const [, first = "", last = ""] = match;
  if (first === "" && last === "") return { kind: "whole" };
  if (first === "") {
    // Suffix range: the last n bytes.
    const length = Number(last);
    if (!Number.isSafeInteger(length)) return { kind: "whole" };
    if (length === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "partial", start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Number(last);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return { kind: "whole" };
  // An end before the start makes the header invalid, which is ignored rather than refused.
  if (last !== "" && end < start) return { kind: "whole" };
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "partial", start, end: Math.min(end, size - 1) };
}

/**
 * Whether an `If-Range` precondition lets the range through: only an exact strong ETag of the current
 * file does. A date, a weak tag or another tag means the client's copy may be stale, so it gets the whole
 * file (Loupe's files never change behind an id, but the rule costs nothing and is what caches expect).
 */
export function ifRangeHolds(ifRange: string | undefined, etag: string): boolean {
  return ifRange === undefined || ifRange.trim() === etag;
}
