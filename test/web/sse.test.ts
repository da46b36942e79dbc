import { describe, expect, it } from "vitest";
import { createSseParser } from "../../web/src/sse.ts";

/** Feeds `text` in pieces of `size` characters and collects every event. */
function parseInPieces(text: string, size: number) {
  const parser = createSseParser();
  const events = [];
  for (let index = 0; index < text.length; index += size)
    events.push(...parser.push(text.slice(index, index + size)));
  events.push(...parser.end());
  return events;
}

const STREAM =
  'event: retrieval\ndata: {"items":[]}\n\n' +
  ": a comment\n" +
  'event: answer-delta\ndata: {"text":"It is "}\n\n' +
  'event: answer-delta\r\ndata: {"text":"red [img_1]."}\r\n\r\n' +
  "data: line one\ndata: line two\n\n" +
  'event: done\rdata: {"answer":"It is red."}\r\r';

describe("createSseParser", () => {
  it("reads named events, comments, CRLF and CR line ends and multi-line data, whatever the chunking", () => {
    const expected = [
      { event: "retrieval", data: '{"items":[]}' },
      { event: "answer-delta", data: '{"text":"It is "}' },
      { event: "answer-delta", data: '{"text":"red [img_1]."}' },
      { event: "message", data: "line one\nline two" },
      { event: "done", data: '{"answer":"It is red."}' },
    ];
    for (const size of [1, 2, 3, 7, 64, STREAM.length]) {
      expect(parseInPieces(STREAM, size), `pieces of ${size}`).toEqual(expected);
    }
  });

  it("does not split a CRLF that arrives in two pieces into two line ends", () => {
    const parser = createSseParser();
    expect(parser.push("data: a\r")).toEqual([]);
    // Had the CR ended the line, the LF would be an empty line that dispatches "a" here.
    expect(parser.push("\ndata: b\n")).toEqual([]);
    expect(parser.push("\n")).toEqual([{ event: "message", data: "a\nb" }]);
  });

  it("drops an event cut off before its blank line, and fields it does not know", () => {
    const parser = createSseParser();
    expect(parser.push('id: 7\nretry: 10\nevent: done\ndata: {"answer":"half')).toEqual([]);
    expect(parser.end()).toEqual([]);
  });

  it("keeps a value's spaces after the first, and a field without a colon", () => {
    const parser = createSseParser();
    expect(parser.push("data:  two spaces\ndata\n\n")).toEqual([{ event: "message", data: " two spaces\n" }]);
  });
});
