import { describe, expect, it } from "vitest";
import { describeFailure } from "../../web/src/errors.ts";
import { en, zh } from "../../web/src/i18n.ts";

describe("describeFailure", () => {
  it("says in English what went wrong, with the words the browser tests look for", () => {
    const cases: Array<[Parameters<typeof describeFailure>[0], string, boolean]> = [
      [{ status: 401, code: "unauthorized" }, "not allowed", false],
      [{ status: 403, code: "forbidden" }, "not allowed", false],
      [{ status: 403, code: "origin_not_allowed" }, "not allowed", false],
      [{ refused: true }, "not allowed", false],
      [{ status: 429, code: "rate_limited" }, "too many", true],
      [{ status: 413, code: "payload_too_large" }, "too large", false],
      [{ offline: true }, "offline", true],
      [{}, "offline", true],
      [{ status: 503, code: "store_unavailable" }, "busy", true],
      [{ status: 502 }, "busy", true],
      [{ status: 500, code: "internal_error" }, "went wrong", true],
    ];
    for (const [facts, words, retryable] of cases) {
      const failure = describeFailure(facts, en);
      expect(failure.sentence.toLowerCase(), JSON.stringify(facts)).toContain(words);
      expect(failure.retryable, JSON.stringify(facts)).toBe(retryable);
    }
  });

  it("passes a 400's message on (it names what to fix), cut to a readable length", () => {
    const failure = describeFailure({ status: 400, message: `question is too long${"!".repeat(1000)}` }, en);
    expect(failure.sentence).toContain("question is too long");
    expect(failure.sentence.length).toBeLessThan(400);
    expect(failure.retryable).toBe(false);
  });

  it("speaks Chinese with the Chinese table", () => {
    expect(describeFailure({ status: 429 }, zh).sentence).toBe(zh.errorTooMany);
    expect(describeFailure({ refused: true }, zh).sentence).toBe(zh.errorNotAllowed);
  });
});
