import { describe, expect, it } from "vitest";
import { createSseParser, readSseMessages } from "../../src/client/sse.ts";

describe("the SSE parser", () => {
  it("parses named events, joins data lines, skips comments and handles CRLF split across chunks", () => {
    const parser = createSseParser();
    const text =
      ': hello\r\nevent: a\r\ndata: {"x":1}\r\n\r\ndata: one\ndata:two\n\nevent: b\ndata: last\n\n';
    const out = [];
    // One character at a time: every split point, including between \r and \n.
    for (const char of text) out.push(...parser.push(char));
    out.push(...parser.end());
    expect(out).toEqual([
      { event: "a", data: '{"x":1}' },
      { event: "message", data: "one\ntwo" },
      { event: "b", data: "last" },
    ]);
  });

  it("drops an event the stream cut off before its blank line, and events without data", () => {
    const parser = createSseParser();
    expect(parser.push("event: ping\n\nevent: a\ndata: 1")).toEqual([]);
    expect(parser.end()).toEqual([]);
  });

  it("reads a byte stream with multi-byte characters split across chunks", async () => {
    const bytes = new TextEncoder().encode('event: answer-delta\ndata: {"text":"é€"}\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
        controller.close();
      },
    });
    const messages = [];
    for await (const message of readSseMessages(body)) messages.push(message);
    expect(messages).toEqual([{ event: "answer-delta", data: '{"text":"é€"}' }]);
  });
});
