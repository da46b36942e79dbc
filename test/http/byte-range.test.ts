import { describe, expect, it } from "vitest";
import { ifRangeHolds, parseRange } from "../../src/http/byte-range.ts";

describe("parseRange", () => {
  it("reads the three forms of one byte range, cut to the file", () => {
    expect(parseRange("bytes=0-9", 100)).toEqual({ kind: "partial", start: 0, end: 9 });
    expect(parseRange("bytes=90-", 100)).toEqual({ kind: "partial", start: 90, end: 99 });
    expect(parseRange("bytes=-10", 100)).toEqual({ kind: "partial", start: 90, end: 99 });
    expect(parseRange("bytes=50-1000", 100)).toEqual({ kind: "partial", start: 50, end: 99 });
    expect(parseRange("bytes=-1000", 100)).toEqual({ kind: "partial", start: 0, end: 99 });
    expect(parseRange("Bytes = 1 - 2", 100)).toEqual({ kind: "partial", start: 1, end: 2 });
  });

  it("finds nothing to serve past the end, in an empty suffix or an empty file", () => {
    expect(parseRange("bytes=100-", 100)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=100-200", 100)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=-0", 100)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=0-", 0)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=-5", 0)).toEqual({ kind: "unsatisfiable" });
  });

  it("serves the whole file for what it does not read: none, several, other units, bad syntax", () => {
    for (const header of [
      undefined,
      "bytes=0-1,3-4",
      "bytes=0-1, 0-1, 0-1",
      "items=0-9",
      "bytes=-",
      "bytes=9-3",
      "bytes=a-b",
      "bytes=0x10-",
      `bytes=${"9".repeat(30)}-`,
      `bytes=0-${"1".repeat(300)}`,
    ]) {
      expect(parseRange(header, 100), String(header)).toEqual({ kind: "whole" });
    }
  });
});

describe("ifRangeHolds", () => {
  it("lets a range through only without If-Range or with the exact strong ETag", () => {
    expect(ifRangeHolds(undefined, '"abc"')).toBe(true);
    expect(ifRangeHolds('"abc"', '"abc"')).toBe(true);
    expect(ifRangeHolds('W/"abc"', '"abc"')).toBe(false);
    expect(ifRangeHolds('"abd"', '"abc"')).toBe(false);
    expect(ifRangeHolds("Wed, 21 Oct 2015 07:28:00 GMT", '"abc"')).toBe(false);
  });
});
