/**
 * Text the store can keep: lone surrogates found in strings, keys and nested values, named by field;
 * pairs (emoji, rare CJK) pass.
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { parseImageMetadata } from "../../src/ingest/image-ingest.ts";
import { assertStorableText, findMalformedText, toStorableText } from "../../src/ingest/storable-text.ts";

describe("findMalformedText", () => {
  it("passes well-formed text, surrogate pairs included", () => {
    expect(
      findMalformedText({ title: "Dunes 😀", tags: ["𠮷", "é"], n: 3, nested: { a: [null] } }, "metadata"),
    ).toBe(undefined);
  });

  it("names the field of a lone surrogate, high or low, in values, arrays and keys", () => {
    expect(findMalformedText("ab\ud800", "question")).toEqual({
      field: "question",
      codeUnit: "U+D800",
      at: 2,
    });
    expect(findMalformedText({ tags: ["ok", "\udfff"] }, "metadata")).toMatchObject({
      field: "metadata.tags[1]",
      codeUnit: "U+DFFF",
    });
    expect(findMalformedText({ a: { "b-c": "x\ud83d" } }, "metadata")?.field).toBe('metadata.a["b-c"]');
    // A reversed pair is two lone surrogates.
    expect(findMalformedText("\ude00\ud83d", "answer")?.at).toBe(0);
    expect(findMalformedText({ "k\udc00": 1 }, "metadata")?.field).toBe('metadata key "k\ufffd"');
  });
});

describe("assertStorableText", () => {
  it("throws a ValidationError whose message and context name the field", () => {
    let thrown: unknown;
    try {
      assertStorableText({ title: "x\ud800" }, "metadata");
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as ValidationError).status).toBe(400);
    expect((thrown as ValidationError).context).toMatchObject({ field: "metadata.title" });
    expect((thrown as Error).message).toMatch(
      /^metadata\.title holds a lone UTF-16 surrogate \(U\+D800 at position 1\)/,
    );
  });

  it("is what parseImageMetadata applies", () => {
    expect(() => parseImageMetadata({ value: { title: "ok", extra: ["\udc00"] }, maxBytes: 4096 })).toThrow(
      /metadata\.extra\[0\] holds a lone UTF-16 surrogate/,
    );
  });
});

describe("toStorableText", () => {
  it("replaces lone surrogates and keeps pairs", () => {
    expect(toStorableText("a\ud800b😀\udfff")).toBe("a\ufffdb😀\ufffd");
  });
});
