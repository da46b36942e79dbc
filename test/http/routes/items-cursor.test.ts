/**
 * The cursor of GET /v1/items: a round trip keeps the position; anything the server did not make is
 * refused with a message that says what to do.
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import { decodeListCursor, encodeListCursor } from "../../../src/http/routes/items.ts";

const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("list cursors", () => {
  it("round-trip a kind with and without a last id, as URL-safe text", () => {
    for (const position of [
      { kind: "image" as const, after: `img_${"0".repeat(31)}1` },
      { kind: "video_segment" as const },
      { kind: "triple" as const, after: "tri_abc" },
    ]) {
      const cursor = encodeListCursor(position);
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeListCursor(cursor)).toEqual(position);
    }
  });

  it("refuse what the server did not make", () => {
    const bad = [
      "",
      "a b",
      "%%%",
      Buffer.from("not json").toString("base64url"),
      encode([1, 2]),
      encode(null),
      encode({ v: 2, k: "image" }),
      encode({ v: 1, k: "audio" }),
      encode({ v: 1, k: "image", a: 5 }),
      encode({ v: 1, k: "image", a: "img_x/../y" }),
      encode({ v: 1, k: "image", a: "img_a", tenant: "other" }),
    ];
    for (const cursor of bad) {
      expect(() => decodeListCursor(cursor), cursor).toThrow(ValidationError);
      expect(() => decodeListCursor(cursor)).toThrow(/cursor is malformed.*omit cursor to start over/);
    }
  });
});
