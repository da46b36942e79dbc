/** VQAv2 accuracy and normalization against values worked out by hand from the official script's rules. */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../../src/errors.ts";
import {
  answerAccuracy,
  normalizeVqaAnswer,
  plainVqaAccuracy,
  processDigitArticle,
  processPunctuation,
  vqaAccuracy,
} from "../../../src/eval/metrics/vqa-accuracy.ts";

const repeat = (answer: string, times: number): string[] => Array.from({ length: times }, () => answer);

describe("processPunctuation", () => {
  it("deletes a mark that touches a space and turns a lone one into a space", () => {
    expect(processPunctuation("red, blue")).toBe("red blue");
    expect(processPunctuation("red,blue")).toBe("red blue");
    expect(processPunctuation("e - mail")).toBe("e  mail");
    expect(processPunctuation("black-and-white")).toBe("black and white");
    expect(processPunctuation("yes!")).toBe("yes ");
  });

  it("deletes every mark when a comma sits between two digits", () => {
    expect(processPunctuation("1,000")).toBe("1000");
    // The digit rule removes the other marks too: "-" is deleted, not spaced.
    expect(processPunctuation("1,000 well-known")).toBe("1000 wellknown");
  });

  it("deletes periods not followed by a digit and keeps decimal points", () => {
    expect(processPunctuation("3.5")).toBe("3.5");
    expect(processPunctuation("1.5.")).toBe("1.5");
    expect(processPunctuation("Mr. Smith")).toBe("Mr Smith");
    expect(processPunctuation("2.")).toBe("2");
  });

  it("deletes at most 32 periods, as the official call's count argument does", () => {
    // 33 periods, none before a digit: the first 32 go, the last stays.
    expect(processPunctuation("x.".repeat(33))).toBe(`${"x".repeat(33)}.`);
  });

  it("leaves apostrophes, colons and other marks outside the official list", () => {
    expect(processPunctuation("what's: 50%")).toBe("what's: 50%");
  });
});

describe("processDigitArticle", () => {
  it("lowercases, maps number words none…ten to digits and drops articles", () => {
    expect(processDigitArticle("The Two cats")).toBe("2 cats");
    expect(processDigitArticle("none")).toBe("0");
    expect(processDigitArticle("zero")).toBe("0");
    expect(processDigitArticle("ten")).toBe("10");
    expect(processDigitArticle("eleven")).toBe("eleven");
    expect(processDigitArticle("an apple a day")).toBe("apple day");
    expect(processDigitArticle("A")).toBe("");
  });

  it("restores contractions from the official table", () => {
    expect(processDigitArticle("dont")).toBe("don't");
    expect(processDigitArticle("isnt")).toBe("isn't");
    expect(processDigitArticle("Whats that")).toBe("what's that");
    expect(processDigitArticle("couldnt've")).toBe("couldn't've");
    // The table's capitalized keys ("Im") never match a lowercased word.
    expect(processDigitArticle("Im")).toBe("im");
  });
});

describe("normalizeVqaAnswer", () => {
  it("cleans whitespace, then punctuation, then digits and articles", () => {
    expect(normalizeVqaAnswer("\tTwo dogs.\n")).toBe("2 dogs");
    expect(normalizeVqaAnswer("(2)")).toBe("2");
    expect(normalizeVqaAnswer("T-Shirt")).toBe("t shirt");
    expect(normalizeVqaAnswer("1,000")).toBe("1000");
    expect(normalizeVqaAnswer("The   dog")).toBe("dog");
  });
});

describe("vqaAccuracy", () => {
  it("scores 1 when every leave-one-out subset has 3 or more matches", () => {
    // 10 unanimous "2"; "two" normalizes to "2": each subset has 9 matches → min(9/3, 1) = 1.
    expect(vqaAccuracy({ prediction: "two", references: repeat("2", 10) })).toBe(1);
  });

  it("averages min(matches/3, 1) over the 10 leave-one-out subsets", () => {
    const references = [...repeat("2", 3), ...repeat("3", 7)];
    // Leaving out a "2": 2 matches → 2/3 (3 subsets); leaving out a "3": 3 matches → 1 (7 subsets).
    // (3 · 2/3 + 7 · 1) / 10 = 9/10.
    expect(vqaAccuracy({ prediction: "2", references })).toBeCloseTo(0.9, 12);
    // "3" has 7 matches: every subset keeps at least 6 → 1.
    expect(vqaAccuracy({ prediction: "3", references })).toBe(1);
    // Not among the answers: 0.
    expect(vqaAccuracy({ prediction: "4", references })).toBe(0);
  });

  it("gives 0.3 for one matching human and 0.6 for two", () => {
    // One "2": left out → 0; the 9 others each leave 1 match → 1/3. 9 · 1/3 / 10 = 0.3.
    expect(vqaAccuracy({ prediction: "2", references: ["2", ...repeat("3", 9)] })).toBeCloseTo(0.3, 12);
    // Two "2": left out → 1/3 (2 subsets); others → 2/3 (8 subsets). (2/3 + 16/3) / 10 = 0.6.
    expect(vqaAccuracy({ prediction: "2", references: ["2", "2", ...repeat("3", 8)] })).toBeCloseTo(0.6, 12);
  });

  it("normalizes references only when the humans disagree, and then only their punctuation", () => {
    // Disagreeing: "t-shirt" becomes "t shirt"; the prediction "T-Shirt" normalizes to "t shirt".
    // 4 matches: left-out "t-shirt" → 3 → 1 (4 subsets); left-out "tshirt" → 4 → 1 (6 subsets). = 1.
    const disagreeing = [...repeat("t-shirt", 4), ...repeat("tshirt", 6)];
    expect(vqaAccuracy({ prediction: "T-Shirt", references: disagreeing })).toBe(1);
    // Unanimous references are used raw, so the normalized "t shirt" never equals "t-shirt": 0.
    expect(vqaAccuracy({ prediction: "t-shirt", references: repeat("t-shirt", 10) })).toBe(0);
    // The prediction is always lowercased; unanimous references are not.
    expect(vqaAccuracy({ prediction: "yes", references: repeat("Yes", 10) })).toBe(0);
    expect(vqaAccuracy({ prediction: "Yes.", references: repeat("yes", 10) })).toBe(1);
  });

  it("rejects an empty reference list", () => {
    expect(() => vqaAccuracy({ prediction: "2", references: [] })).toThrow(ValidationError);
  });
});

describe("plain accuracy with one reference", () => {
  it("compares fully normalized prediction and reference", () => {
    expect(plainVqaAccuracy({ prediction: "Two.", reference: "2" })).toBe(1);
    expect(plainVqaAccuracy({ prediction: "the circle", reference: "Circle" })).toBe(1);
    expect(plainVqaAccuracy({ prediction: "2 dogs", reference: "2" })).toBe(0);
  });

  it("answerAccuracy picks plain accuracy for one reference and the official one for more", () => {
    expect(answerAccuracy({ prediction: "Red", references: ["red"] })).toBe(1);
    expect(answerAccuracy({ prediction: "2", references: ["2", ...repeat("3", 9)] })).toBeCloseTo(0.3, 12);
    expect(() => answerAccuracy({ prediction: "2", references: [] })).toThrow(/at least one reference/);
  });
});
