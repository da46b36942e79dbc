import { describe, expect, it } from "vitest";
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
        const intent = parseQuestion(question);
        expect(intent.type, question).toBe(type);
        expect(canonicalQuestion(intent), question).toBe(expected);
        expect(intent.corpusScope, question).toBe(false);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(400);
  });

  it("gives reworded questions the same meaning key and different questions different keys", () => {
    expect(questionMeaningKey("Which colour is the star?")).toBe(
      questionMeaningKey("Tell me the color of the star."),
    );
    expect(questionMeaningKey("What color is the star?")).not.toBe(
      questionMeaningKey("What color is the circle?"),
    );
    expect(questionMeaningKey("Is the red star on the left or the right?")).toBe(
      questionMeaningKey("On which side is the red star?"),
    );
    expect(questionMeaningKey("Is the red star small or large?")).not.toBe(
      questionMeaningKey("Is the red star on the left or the right?"),
    );
    expect(questionMeaningKey("What is the capital of France?")).toBeUndefined();
  });
});

describe("parseQuestion on corpus and video questions", () => {
  it("reads a corpus existence question with two objects", () => {
    const intent = parseQuestion("Is there an image with a red star and a blue circle?");
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
    const intent = parseQuestion(`When does the green square move left in video ${id}?`);
    expect(intent.type).toBe("when");
    expect(intent.action).toBe("moving left");
    expect(intent.ids).toEqual([id]);
    expect(intent.objects).toEqual([{ color: "green", shape: "square" }]);
    expect(parseQuestion("when is the small red circle growing?").action).toBe("growing");
    expect(parseQuestion("at what time does a star shrink").action).toBe("shrinking");
    expect(parseQuestion("when does the hexagon go up").action).toBe("moving up");
  });

  it("reads counts, sizes and follow-ups", () => {
    expect(extractObjects(normalizeQuestion("two large green triangles and a yellow hexagon"))).toEqual([
      { count: 2, size: "large", color: "green", shape: "triangle" },
      { color: "yellow", shape: "hexagon" },
    ]);
    const followUp = parseQuestion("and how many are blue?");
    expect(followUp.followUp).toBe(true);
    expect(canonicalQuestion(followUp)).toBe("How many blue objects are there?");
    expect(parseQuestion("What about the star?").followUp).toBe(true);
    expect(parseQuestion("How many circles are there?").followUp).toBe(false);
  });

  it("marks questions outside the visual vocabulary", () => {
    const intent = parseQuestion("Who painted the Mona Lisa?");
    expect(intent.type).toBe("unknown");
    expect(intent.inVocabulary).toBe(false);
  });

  it("words objects for answers", () => {
    expect(describeObject({ color: "red", shape: "star" })).toBe("a red star");
    expect(describeObject({ count: 3, color: "blue" })).toBe("3 blue objects");
  });
});
