/**
 * Reading `text/event-stream`: an incremental parser that takes text as it arrives, split anywhere (in a
 * line, between `\r` and `\n`, inside a UTF-8 sequence when read through {@link readSseMessages}), and
 * gives back each event once its blank line has come.
 */

/** One server-sent event as read off the wire: its name and its data lines joined by newlines. */
export interface SseMessage {
  event: string;
  data: string;
}

/**
 * An incremental parser of `text/event-stream`: feed it text as it arrives, get back the events it
 * completes. `event:` names the event (default `message`), `data:` lines accumulate, a blank line ends
 * the event, lines starting with `:` are comments (keep-alives) and are dropped.
 */
export function createSseParser(): { push(text: string): SseMessage[]; end(): SseMessage[] } {
  let buffer = "";
  let event = "";
  let data: string[] = [];
  const take = (line: string, out: SseMessage[]) => {
    if (line === "") {
      if (data.length > 0) out.push({ event: event === "" ? "message" : event, data: data.join("\n") });
      event = "";
      data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  };
  return {
    push(text) {
      buffer += text;
      const out: SseMessage[] = [];
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        // A lone `\r` at the end may be the first half of `\r\n`: wait for the next chunk.
        if (match === null || (match[0] === "\r" && match.index === buffer.length - 1)) break;
        take(buffer.slice(0, match.index), out);
        buffer = buffer.slice(match.index + match[0].length);
      }
      return out;
    },
    end() {
      const out: SseMessage[] = [];
      if (buffer !== "") take(buffer.replace(/\r$/, ""), out);
      buffer = "";
      // An event the stream cut off before its blank line is incomplete and is dropped, as browsers do.
      return out;
    },
  };
}

/**
 * Reads a byte stream of server-sent events, yielding each event as it completes. Stopping early (a
 * `break` or `return` in the consumer) cancels the stream, which tells the server the client went away.
 */
export async function* readSseMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const parser = createSseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    yield* parser.push(decoder.decode());
    yield* parser.end();
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}
