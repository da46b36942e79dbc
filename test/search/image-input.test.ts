import { describe, expect, it } from "vitest";
import { parseImageReference } from "../../src/search/index.ts";

const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");

describe("parseImageReference", () => {
  it("reads base64, base64url and data URLs", () => {
    for (const value of [
      png.toString("base64"),
      png.toString("base64url"),
      `data:image/png;base64,${png.toString("base64")}`,
      `  ${png.toString("base64").replace(/(.{8})/g, "$1\n")}  `,
    ]) {
      const reference = parseImageReference({ value, maxBytes: 1000 });
      expect("bytes" in reference && Buffer.from(reference.bytes).equals(png), value).toBe(true);
    }
  });

  it("reads item ids", () => {
    expect(parseImageReference({ value: "img_0123456789abcdef0123456789abcdef", maxBytes: 10 })).toEqual({
      id: "img_0123456789abcdef0123456789abcdef",
    });
    expect(parseImageReference({ value: "tri_00ff", maxBytes: 10 })).toEqual({ id: "tri_00ff" });
  });

  it("takes URLs only where allowed", () => {
    expect(parseImageReference({ value: "https://example.com/a.png", allowUrl: true, maxBytes: 10 })).toEqual(
      {
        url: "https://example.com/a.png",
      },
    );
    expect(() => parseImageReference({ value: "http://127.0.0.1/a.png", maxBytes: 10 })).toThrow(
      /is a URL, which this endpoint does not fetch/,
    );
  });

  it("refuses what is none of the accepted forms, naming them", () => {
    expect(() => parseImageReference({ value: "", maxBytes: 10 })).toThrow(/image is empty/);
    expect(() =>
      parseImageReference({ value: "not base64!", field: "items[2].image", maxBytes: 10 }),
    ).toThrow(/items\[2\]\.image is not valid base64 and not an item id .*data URL/);
    expect(() => parseImageReference({ value: "data:image/png,rawbytes", maxBytes: 10 })).toThrow(
      /without base64 encoding/,
    );
    expect(() => parseImageReference({ value: "file:///etc/passwd", maxBytes: 10 })).toThrow(
      /not valid base64/,
    );
  });

  it("refuses a payload over the byte limit before decoding it", () => {
    expect(() => parseImageReference({ value: "A".repeat(4000), maxBytes: 1000 })).toThrow(
      /about 3000 bytes; the limit is 1000 bytes/,
    );
  });
});
