/**
 * A server-sent events parser for `fetch` bodies (an `EventSource` cannot send a POST body or an
 * `Authorization` header). Pure: it takes decoded text in pieces of any size and returns whole events,
 * so it is tested without a browser.
 */

/** One event: its `event:` name (`message` when none was sent) and its `data:` lines joined by `\n`. */
export interface SseEvent {
  event: string;
  data: string;
}

/** An incremental parser: `push` text as it arrives, `end` when the stream closes. */
export interface SseParser {
  /** Adds text; returns the events it completed. */
  push(text: string): SseEvent[];
  /** Ends the stream; an event without its closing blank line is dropped, as the standard says. */
  end(): SseEvent[];
}

/** Creates a parser following the WHATWG event-stream rules (CR, LF or CRLF line ends, `:` comments). */
export function createSseParser(): SseParser {
  let buffer = "";
  let eventName = "";
  let dataLines: string[] = [];
  let seenData = false;

  const takeLine = (line: string, out: SseEvent[]): void => {
    if (line === "") {
      if (seenData) out.push({ event: eventName || "message", data: dataLines.join("\n") });
      eventName = "";
      dataLines = [];
      seenData = false;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") eventName = value;
    else if (field === "data") {
      dataLines.push(value);
      seenData = true;
    }
  };

  return {
    push(text) {
      buffer += text;
      const out: SseEvent[] = [];
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        if (match === null) break;
        // A lone CR at the very end may be the first half of a CRLF still in flight.
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        takeLine(buffer.slice(0, match.index), out);
        buffer = buffer.slice(match.index + match[0].length);
      }
      return out;
    },
    end() {
      const out: SseEvent[] = [];
      if (buffer !== "") {
        takeLine(buffer.replace(/\r$/, ""), out);
        buffer = "";
      }
      eventName = "";
      dataLines = [];
      seenData = false;
      return out;
    },
  };
}
