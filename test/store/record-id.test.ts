import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { isValidRecordId, recordId } from "../../src/store/record-id.ts";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");
const image = { kind: "image", tenant: "acme", contentSha256: sha("cat.png"), modelId: "clip-tiny" } as const;

describe("recordId", () => {
  it("is deterministic and prefixed by kind", () => {
    const id = recordId(image);
    expect(id).toBe(recordId({ ...image }));
    expect(id).toMatch(/^img_[0-9a-f]{32}$/);
    expect(isValidRecordId(id)).toBe(true);
  });

  it("pins the derivation, so ids stay stable across releases", () => {
    const parts = ["loupe-record-id-v1", "image", "acme", image.contentSha256, "clip-tiny"];
    const expected = createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
    expect(recordId(image)).toBe(`img_${expected}`);
  });

  it("changes with tenant, content and model", () => {
    const ids = new Set([
      recordId(image),
      recordId({ ...image, tenant: "other" }),
      recordId({ ...image, contentSha256: sha("dog.png") }),
      recordId({ ...image, modelId: "clip-base" }),
    ]);
    expect(ids.size).toBe(4);
  });

  it("treats the content hash case-insensitively", () => {
    expect(recordId({ ...image, contentSha256: image.contentSha256.toUpperCase() })).toBe(recordId(image));
  });

  it("cannot be forged by moving text between parts", () => {
    const a = recordId({ ...image, tenant: "a", modelId: "b_c" });
    const b = recordId({ ...image, tenant: "a_b", modelId: "c" });
    expect(a).not.toBe(b);
  });

  it("identifies video segments by their span, rounded to the millisecond", () => {
    const segment = {
      kind: "video_segment",
      tenant: "acme",
      contentSha256: sha("clip.mp4"),
      modelId: "clip-tiny",
    } as const;
    const first = recordId({ ...segment, startS: 1, endS: 2.5 });
    expect(first).toMatch(/^seg_[0-9a-f]{32}$/);
    expect(recordId({ ...segment, startS: 1.0000001, endS: 2.5 })).toBe(first);
    expect(recordId({ ...segment, startS: 1.001, endS: 2.5 })).not.toBe(first);
    expect(recordId({ ...segment, startS: 2.5, endS: 4 })).not.toBe(first);
  });

  it("identifies triples by their question", () => {
    const triple = {
      kind: "triple",
      tenant: "acme",
      contentSha256: sha("cat.png"),
      modelId: "clip-tiny",
    } as const;
    const color = recordId({ ...triple, question: "What color is the cat?" });
    expect(color).toMatch(/^tri_[0-9a-f]{32}$/);
    expect(recordId({ ...triple, question: "How many cats?" })).not.toBe(color);
  });

  it("rejects malformed input with a ValidationError", () => {
    expect(() => recordId({ ...image, contentSha256: "abc" })).toThrow(ValidationError);
    expect(() => recordId({ ...image, tenant: "" })).toThrow(ValidationError);
    const segment = { kind: "video_segment", tenant: "acme", contentSha256: sha("v"), modelId: "m" } as const;
    expect(() => recordId({ ...segment, startS: 3, endS: 2 })).toThrow(/startS <= endS/);
    expect(() => recordId({ ...segment, startS: Number.NaN, endS: 2 })).toThrow(ValidationError);
    expect(() => recordId({ ...segment, startS: -1, endS: 2 })).toThrow(ValidationError);
  });
});

describe("isValidRecordId", () => {
  it("accepts short printable ids and refuses quotes, spaces and long ids", () => {
    expect(isValidRecordId("img_0123")).toBe(true);
    expect(isValidRecordId('a" or true or "')).toBe(false);
    expect(isValidRecordId("a b")).toBe(false);
    expect(isValidRecordId("")).toBe(false);
    expect(isValidRecordId("x".repeat(65))).toBe(false);
    expect(isValidRecordId(42)).toBe(false);
  });
});
