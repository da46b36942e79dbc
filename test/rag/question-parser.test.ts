import { describe, expect, it } from "vitest";
import { EMPTY_VOCABULARY, type PackVocabulary, vocabularySchema } from "../../src/inference/index.ts";
import {
  canonicalQuestion,
  describeObject,
  extractObjects,
  normalizeQuestion,
  parseQuestion,
  questionMeaningKey,
  vqaQuestionsFor,
} from "../../src/rag/question-parser.ts";
import { COLORS, SHAPES } from "../../src/synth/domain.ts";
import { PHRASING } from "../../src/synth/phrasing.ts";
import { shippedVocabulary } from "./pack-vocabulary.ts";

const vocabulary = await shippedVocabulary();

const templates = PHRASING.questionTemplates as Record<string, string[]>;

function fill(template: string, params: { color?: string; shape?: string }): string {
  return template
    .replaceAll("{color}", params.color ?? "")
    .replaceAll("{shapes}", `${params.shape ?? ""}s`)
    .replaceAll("{shape}", params.shape ?? "");
}

describe("parseQuestion on every wording the generator uses", () => {
  const cases: Array<{ variant: string; type: string; params: { color?: string; shape?: string } }> = [];
  for (const shape of SHAPES) cases.push({ variant: "color", type: "color", params: { shape } });
  for (const color of COLORS) cases.push({ variant: "shape", type: "shape", params: { color } });
  for (const shape of SHAPES) cases.push({ variant: "count_shape", type: "count", params: { shape } });
  for (const color of COLORS) cases.push({ variant: "count_color", type: "count", params: { color } });
  cases.push({ variant: "count_all", type: "count", params: {} });
  for (const color of COLORS) {
    for (const shape of SHAPES) {
      for (const variant of ["exist", "size", "position"])
        cases.push({ variant, type: variant, params: { color, shape } });
    }
  }

  it("recovers the type and the canonical question of each template", () => {
    let checked = 0;
    for (const { variant, type, params } of cases) {
      const canonicalTemplate = templates[variant]?.[0] ?? "";
      const expected = fill(canonicalTemplate, params);
      for (const template of templates[variant] ?? []) {
        const question = fill(template, params);
        const intent = parseQuestion(question, vocabulary);
        expect(intent.type, question).toBe(type);
        expect(canonicalQuestion(intent, { vocabulary }), question).toBe(expected);
        expect(intent.corpusScope, question).toBe(false);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(400);
  });

  it("gives reworded questions the same meaning key and different questions different keys", () => {
    expect(questionMeaningKey("Which colour is the star?", vocabulary)).toBe(
      questionMeaningKey("Tell me the color of the star.", vocabulary),
    );
    expect(questionMeaningKey("What color is the star?", vocabulary)).not.toBe(
      questionMeaningKey("What color is the circle?", vocabulary),
    );
    expect(questionMeaningKey("Is the red star on the left or the right?", vocabulary)).toBe(
      questionMeaningKey("On which side is the red star?", vocabulary),
    );
    expect(questionMeaningKey("Is the red star small or large?", vocabulary)).not.toBe(
      questionMeaningKey("Is the red star on the left or the right?", vocabulary),
    );
    expect(questionMeaningKey("What is the capital of France?", vocabulary)).toBeUndefined();
  });
});

describe("parseQuestion on corpus and video questions", () => {
  it("reads a corpus existence question with two objects", () => {
    const intent = parseQuestion("Is there an image with a red star and a blue circle?", vocabulary);
    expect(intent.type).toBe("exist");
    expect(intent.corpusScope).toBe(true);
    expect(intent.objects).toEqual([
      { color: "red", shape: "star" },
      { color: "blue", shape: "circle" },
    ]);
    expect(vqaQuestionsFor(intent)).toEqual(["Is there a red star?", "Is there a blue circle?"]);
  });

  it("reads when an action happens in a named video", () => {
    const id = `vid_${"ab12".repeat(8)}`;
    const intent = parseQuestion(`When does the green square move left in video ${id}?`, vocabulary);
    expect(intent.type).toBe("when");
    expect(intent.action).toBe("moving left");
    expect(intent.ids).toEqual([id]);
    expect(intent.objects).toEqual([{ color: "green", shape: "square" }]);
    expect(parseQuestion("when is the small red circle growing?", vocabulary).action).toBe("growing");
    expect(parseQuestion("at what time does a star shrink", vocabulary).action).toBe("shrinking");
    expect(parseQuestion("when does the hexagon go up", vocabulary).action).toBe("moving up");
  });

  it("reads counts, sizes and follow-ups", () => {
    expect(
      extractObjects(normalizeQuestion("two large green triangles and a yellow hexagon"), vocabulary),
    ).toEqual([
      { count: 2, size: "large", color: "green", shape: "triangle" },
      { color: "yellow", shape: "hexagon" },
    ]);
    const followUp = parseQuestion("and how many are blue?", vocabulary);
    expect(followUp.followUp).toBe(true);
    expect(canonicalQuestion(followUp)).toBe("How many blue objects are there?");
    expect(parseQuestion("What about the star?", vocabulary).followUp).toBe(true);
    expect(parseQuestion("How many circles are there?", vocabulary).followUp).toBe(false);
  });

  it("marks questions outside the visual vocabulary", () => {
    const intent = parseQuestion("Who painted the Mona Lisa?", vocabulary);
    expect(intent.type).toBe("unknown");
    expect(intent.inVocabulary).toBe(false);
  });

  it("words objects for answers", () => {
    expect(describeObject({ color: "red", shape: "star" })).toBe("a red star");
    expect(describeObject({ count: 3, color: "blue" })).toBe("3 blue objects");
  });
});

describe("parsing with another pack's vocabulary", () => {
  const other: PackVocabulary = vocabularySchema.parse({
    version: 1,
    colors: ["teal"],
    shapes: [{ name: "box", plural: "boxes" }],
    sizes: [{ name: "tall", synonyms: ["high"] }],
    actions: [{ name: "spinning", verb: "spin", patterns: ["\\bspin(s|ning)?\\b"] }],
  });

  it("reads that pack's words, plurals and synonyms, and only those", () => {
    const count = parseQuestion("How many boxes are there?", other);
    expect(count.type).toBe("count");
    expect(count.objects).toEqual([{ shape: "box" }]);
    expect(canonicalQuestion(count, { vocabulary: other })).toBe("How many boxes are there?");
    expect(parseQuestion("Is there a high teal box?", other).objects).toEqual([
      { size: "tall", color: "teal", shape: "box" },
    ]);
    expect(parseQuestion("When does the teal box spin?", other)).toMatchObject({
      type: "when",
      action: "spinning",
    });
    expect(parseQuestion("Is there a red star?", other).objects).toEqual([]);
    expect(describeObject({ count: 2, shape: "box" }, { vocabulary: other })).toBe("2 boxes");
  });
});

describe("parsing with a pack that declares no vocabulary", () => {
  const questions = [
    "What color is the star?",
    "How many objects are there?",
    "Is there an image with a red star and a blue circle?",
    "When does the green square move left?",
    "Is the red star on the left or the right?",
    "Describe the image.",
    "and how many are blue?",
  ];

  it("finds no type, object or action in any question, and rules none out", () => {
    for (const question of questions) {
      const intent = parseQuestion(question, EMPTY_VOCABULARY);
      expect(intent, question).toMatchObject({ type: "unknown", objects: [], inVocabulary: true });
      expect(intent.action, question).toBeUndefined();
      expect(questionMeaningKey(question, EMPTY_VOCABULARY), question).toBeUndefined();
      expect(vqaQuestionsFor(intent), question).toEqual([]);
      expect(extractObjects(normalizeQuestion(question), EMPTY_VOCABULARY), question).toEqual([]);
    }
  });

  it("still reads the ids a question names, corpus scope and follow-ups", () => {
    const intent = parseQuestion("Which images look like img_0123456789abcdef?", EMPTY_VOCABULARY);
    expect(intent.ids).toEqual(["img_0123456789abcdef"]);
    expect(intent.corpusScope).toBe(true);
    expect(parseQuestion("and what about that one?", EMPTY_VOCABULARY).followUp).toBe(true);
  });
});
