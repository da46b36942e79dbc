import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  buildFilterExpression,
  filterSpecSchema,
  MAX_FILTER_CONDITIONS,
  parseFilterSpec,
  quoteExpressionString,
} from "../../src/store/filter.ts";

const build = (filter: unknown, kind?: "image" | "video_segment" | "triple") =>
  buildFilterExpression({ tenant: "acme", filter, ...(kind ? { kind } : {}) });

function nest(depth: number): unknown {
  let item: unknown = { field: "source", op: "eq", value: "x" };
  for (let level = 0; level < depth; level += 1) item = { any: [item] };
  return [item];
}

describe("buildFilterExpression", () => {
  it("is the tenant predicate alone without a filter", () => {
    expect(build(undefined)).toBe('tenant == "acme"');
    expect(build([])).toBe('tenant == "acme"');
  });

  it("puts the tenant predicate first and parenthesises every item", () => {
    expect(
      build([
        { field: "source", op: "eq", value: "upload" },
        { field: "created_at", op: "gte", value: 1700000000000 },
      ]),
    ).toBe('tenant == "acme" and (source == "upload") and (created_at >= 1700000000000)');
  });

  it("writes each operator", () => {
    expect(build([{ field: "model_id", op: "ne", value: "m" }])).toContain('(model_id != "m")');
    expect(build([{ field: "source", op: "in", value: ["a", "b"] }])).toContain('(source in ["a", "b"])');
    expect(build([{ field: "source", op: "nin", value: ["a"] }])).toContain('(source not in ["a"])');
    expect(build([{ field: "start_s", op: "lt", value: 2.5 }])).toContain("(start_s < 2.5)");
    expect(build([{ field: "end_s", op: "lte", value: 3 }])).toContain("(end_s <= 3)");
    expect(build([{ field: "created_at", op: "gt", value: 5 }])).toContain("(created_at > 5)");
    expect(build([{ field: "text", op: "contains", value: "red cat" }])).toContain('(text like "%red cat%")');
    expect(build([{ field: "metadata.tags", op: "contains", value: "red" }])).toContain(
      '(json_contains(metadata["tags"], "red"))',
    );
    expect(build([{ field: "metadata.camera", op: "exists" }])).toContain('(exists metadata["camera"])');
    expect(build([{ field: "metadata.camera", op: "exists", value: false }])).toContain(
      '(not (exists metadata["camera"]))',
    );
    expect(build([{ field: "metadata.flag", op: "eq", value: true }])).toContain(
      '(metadata["flag"] == true)',
    );
  });

  it("expands in / nin on metadata keys into comparisons (Lite has no `in` on JSON paths)", () => {
    expect(build([{ field: "metadata.color", op: "in", value: ["red", "blue"] }])).toContain(
      '((metadata["color"] == "red" or metadata["color"] == "blue"))',
    );
    expect(build([{ field: "metadata.n", op: "nin", value: [1, 2] }])).toContain(
      '((metadata["n"] != 1 and metadata["n"] != 2))',
    );
  });

  it("writes any / all groups", () => {
    expect(
      build([
        {
          any: [
            { field: "source", op: "eq", value: "a" },
            {
              all: [
                { field: "source", op: "eq", value: "b" },
                { field: "text", op: "contains", value: "c" },
              ],
            },
          ],
        },
      ]),
    ).toBe('tenant == "acme" and ((source == "a") or ((source == "b") and (text like "%c%")))');
  });

  it("escapes quotes and backslashes in values", () => {
    expect(build([{ field: "source", op: "eq", value: '") or true or ("' }])).toBe(
      'tenant == "acme" and (source == "\\") or true or (\\"")',
    );
    expect(build([{ field: "source", op: "eq", value: "a\\" }])).toContain('(source == "a\\\\")');
    expect(quoteExpressionString('x" || tenant != "y')).toBe('"x\\" || tenant != \\"y"');
    expect(quoteExpressionString('\\" or 1==1 or \\"')).toBe('"\\\\\\" or 1==1 or \\\\\\""');
  });

  it("keeps unicode as is", () => {
    expect(build([{ field: "text", op: "eq", value: "é ☃ 猫 🐈" }])).toContain('(text == "é ☃ 猫 🐈")');
  });

  it("refuses fields a record kind lacks", () => {
    expect(build([{ field: "video_id", op: "eq", value: "v" }], "video_segment")).toContain(
      '(video_id == "v")',
    );
    expect(() => build([{ field: "video_id", op: "eq", value: "v" }], "image")).toThrow(
      /does not exist on image/,
    );
    expect(() => build([{ field: "question", op: "eq", value: "q" }], "video_segment")).toThrow(
      ValidationError,
    );
  });

  it("refuses an invalid tenant", () => {
    expect(() => buildFilterExpression({ tenant: 'a" or true or "' })).toThrow(ValidationError);
    expect(() => buildFilterExpression({ tenant: "" })).toThrow(ValidationError);
  });
});

const hostile: Array<[string, unknown]> = [
  ["a raw expression string", 'source == "x" or true'],
  ["an object instead of a list", { field: "source", op: "eq", value: "x" }],
  ["the tenant field", [{ field: "tenant", op: "eq", value: "other" }]],
  ["the tenant field inside a group", [{ any: [{ field: "tenant", op: "ne", value: "acme" }] }]],
  ["the primary key field", [{ field: "pk", op: "eq", value: "x" }]],
  ["a vector field", [{ field: "vector", op: "eq", value: 1 }]],
  ["an unknown field", [{ field: "nope", op: "eq", value: "x" }]],
  ["an expression as field", [{ field: "source == 'x' or true", op: "eq", value: "x" }]],
  ["an unknown operator", [{ field: "source", op: "like", value: "%" }]],
  ["an operator as raw text", [{ field: "source", op: "== 'x' or true or", value: "x" }]],
  [
    "a metadata key that closes the bracket",
    [{ field: 'metadata.a"] or true or metadata["b', op: "eq", value: 1 }],
  ],
  ["a bracketed metadata key", [{ field: 'metadata["a"] or true', op: "eq", value: 1 }]],
  ["a nested metadata path", [{ field: "metadata.a.b", op: "eq", value: 1 }]],
  ["a metadata key starting with a digit", [{ field: "metadata.1a", op: "eq", value: 1 }]],
  ["a metadata key of 65 characters", [{ field: `metadata.${"k".repeat(65)}`, op: "eq", value: 1 }]],
  ["an extra key on a condition", [{ field: "source", op: "eq", value: "x", expr: "true" }]],
  ["a tenant key on a condition", [{ field: "source", op: "eq", value: "x", tenant: "other" }]],
  ["NaN", [{ field: "created_at", op: "gt", value: Number.NaN }]],
  ["Infinity", [{ field: "created_at", op: "lt", value: Number.POSITIVE_INFINITY }]],
  ["-Infinity", [{ field: "metadata.n", op: "gt", value: Number.NEGATIVE_INFINITY }]],
  ["a number beyond the bound", [{ field: "metadata.n", op: "gt", value: 1e300 }]],
  ["a fractional integer field", [{ field: "created_at", op: "eq", value: 1.5 }]],
  ["a string for a number field", [{ field: "created_at", op: "gt", value: "0 or true" }]],
  ["a number for a string field", [{ field: "source", op: "eq", value: 1 }]],
  ["a boolean for a string field", [{ field: "source", op: "eq", value: true }]],
  ["an object value", [{ field: "metadata.a", op: "eq", value: { $ne: 1 } }]],
  ["null value", [{ field: "metadata.a", op: "eq", value: null }]],
  ["a 10k-character string", [{ field: "text", op: "eq", value: "x".repeat(10_000) }]],
  ["a newline", [{ field: "source", op: "eq", value: 'a"\n or true' }]],
  ["a NUL character", [{ field: "source", op: "eq", value: "a\u0000" }]],
  ["a lone surrogate", [{ field: "source", op: "eq", value: "a\uD800" }]],
  ["a list for eq", [{ field: "source", op: "eq", value: ["a", "b"] }]],
  ["a scalar for in", [{ field: "source", op: "in", value: "a" }]],
  ["an empty in list", [{ field: "source", op: "in", value: [] }]],
  ["a mixed in list", [{ field: "metadata.a", op: "in", value: ["a", 1] }]],
  [
    "a 101-value in list",
    [{ field: "source", op: "in", value: Array.from({ length: 101 }, (_, i) => `v${i}`) }],
  ],
  ["gt on a string field", [{ field: "source", op: "gt", value: "a" }]],
  ["exists on a top-level field", [{ field: "source", op: "exists" }]],
  ["a missing value", [{ field: "source", op: "eq" }]],
  ["contains with %", [{ field: "text", op: "contains", value: "%" }]],
  ["contains with _", [{ field: "text", op: "contains", value: "a_b" }]],
  ["contains with a backslash", [{ field: "text", op: "contains", value: "a\\" }]],
  ["contains with an empty string", [{ field: "text", op: "contains", value: "" }]],
  ["a group with two keys", [{ any: [{ field: "source", op: "eq", value: "a" }], all: [] }]],
  ["a group mixed with a condition", [{ any: [{ field: "source", op: "eq", value: "a" }], field: "source" }]],
  ["an empty group", [{ any: [] }]],
  ["a depth bomb of 4 groups", nest(4)],
  ["a depth bomb of 10,000 groups", nest(10_000)],
  ["too many items", Array.from({ length: 33 }, () => ({ field: "source", op: "eq", value: "a" }))],
  [
    "too many conditions",
    Array.from({ length: 3 }, () => ({
      any: Array.from({ length: 32 }, () => ({ field: "source", op: "eq", value: "a" })),
    })),
  ],
  ["a string item", ["source == 'x'"]],
  ["a null item", [null]],
];

describe("hostile filters", () => {
  it.each(hostile)("rejects %s with a ValidationError", (_name, filter) => {
    expect(() => build(filter)).toThrow(ValidationError);
    expect(filterSpecSchema.safeParse(filter).success).toBe(false);
  });

  it("accepts groups nested three deep", () => {
    expect(build(nest(3))).toBe('tenant == "acme" and ((((source == "x"))))');
  });

  it("names the problem and what is allowed", () => {
    expect(() => parseFilterSpec([{ field: "tenant", op: "eq", value: "x" }])).toThrow(
      /filter\[0\]: field "tenant" is not filterable; allowed: id, source/,
    );
    expect(() => parseFilterSpec("true")).toThrow(/expression strings are not accepted/);
    expect(() => parseFilterSpec([{ field: "source", op: "resembles", value: "x" }])).toThrow(
      /filter\[0\]\[op\].*\(got "resembles"\)/,
    );
    expect(() => parseFilterSpec([{ field: "source", op: "x".repeat(500), value: "x" }])).toThrow(
      /\(got "x{60}…"\)/,
    );
    expect(() => parseFilterSpec(nest(4))).toThrow(/groups nest at most 3 deep/);
    expect(() => parseFilterSpec(hostile.find(([name]) => name === "too many conditions")?.[1])).toThrow(
      new RegExp(`limit is ${MAX_FILTER_CONDITIONS}`),
    );
  });
});
