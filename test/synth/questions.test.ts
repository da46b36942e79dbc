import { describe, expect, it } from "vitest";
import {
  ANSWER_VOCABULARY,
  createRng,
  generateQuestions,
  PHRASING,
  paraphraseQuestion,
  type Question,
  type Scene,
  sampleScene,
} from "../../src/synth/index.ts";
import { SPEC_PLURALS, SPEC_VOCABULARY, templatePattern } from "./spec.ts";

/** The answer, recomputed from the ground truth; `undefined` where the spec does not allow the question. */
function expectedAnswer(question: Question, scene: Scene): string | undefined {
  const { shape, color } = question.params;
  const withShape = scene.objects.filter((o) => o.shape === shape);
  const withColor = scene.objects.filter((o) => o.color === color);
  const both = scene.objects.filter((o) => o.shape === shape && o.color === color);
  switch (question.variant) {
    case "color":
      return withShape.length === 1 ? withShape[0]?.color : undefined;
    case "shape":
      return withColor.length === 1 ? withColor[0]?.shape : undefined;
    case "count_shape":
      return String(withShape.length);
    case "count_color":
      return String(withColor.length);
    case "count_all":
      return String(scene.objects.length);
    case "exist":
      return both.length > 0 ? "yes" : "no";
    case "size":
      return both.length === 1 ? both[0]?.size : undefined;
    case "position":
      return both.length === 1 ? ((both[0]?.x ?? 0) < 0.5 ? "left" : "right") : undefined;
  }
}

const patterns = Object.fromEntries(
  Object.entries(PHRASING.questionTemplates).map(([variant, templates]) => [
    variant,
    templatePattern(templates),
  ]),
);

describe("generateQuestions", () => {
  it("exports the 22 answers in the spec's order", () => {
    expect([...ANSWER_VOCABULARY]).toEqual(SPEC_VOCABULARY);
  });

  it("asks only what the spec allows and answers from the ground truth (500 seeds)", () => {
    const types = new Map<string, number>();
    const answers = new Set<string>();
    let exist = 0;
    let existYes = 0;
    for (let seed = 0; seed < 500; seed++) {
      const scene = sampleScene(createRng(seed));
      const questions = generateQuestions(scene, createRng(seed).fork("vqa"), { perType: 2 });
      for (const question of questions) {
        const context = `seed ${seed}: ${question.question} -> ${question.answer}`;
        expect(SPEC_VOCABULARY, context).toContain(question.answer);
        expect(question.answer, context).toBe(expectedAnswer(question, scene));
        expect(question.type, context).toBe(
          question.variant.startsWith("count") ? "count" : question.variant,
        );
        expect(question.question, context).toMatch(patterns[question.variant] as RegExp);
        if (question.params.color) expect(question.question).toContain(question.params.color);
        if (question.params.shape) {
          const word =
            question.variant === "count_shape" ? SPEC_PLURALS[question.params.shape] : question.params.shape;
          expect(question.question).toContain(word);
        }
        expect(question.question, context).not.toMatch(/\ba [aeiou]/i);
        types.set(question.type, (types.get(question.type) ?? 0) + 1);
        answers.add(question.answer);
        if (question.type === "exist") {
          exist++;
          if (question.answer === "yes") existYes++;
        }
      }
      // Types whose condition holds are asked; the others are not.
      const asked = new Set(questions.map((q) => q.type));
      const once = (values: string[]) => values.some((v) => values.indexOf(v) === values.lastIndexOf(v));
      expect(asked.has("color")).toBe(once(scene.objects.map((o) => o.shape)));
      expect(asked.has("shape")).toBe(once(scene.objects.map((o) => o.color)));
      expect(asked.has("size")).toBe(once(scene.objects.map((o) => `${o.color} ${o.shape}`)));
      expect(asked.has("count") && asked.has("exist")).toBe(true);
    }
    expect([...types.keys()].sort()).toEqual(["color", "count", "exist", "position", "shape", "size"]);
    expect([...answers].sort()).toEqual([...SPEC_VOCABULARY].sort());
    expect(existYes / exist).toBeGreaterThan(0.4);
    expect(existYes / exist).toBeLessThan(0.6);
  });

  it("balances exist answers as asked", () => {
    let yes = 0;
    for (let seed = 0; seed < 300; seed++) {
      const scene = sampleScene(createRng(seed));
      const [question] = generateQuestions(scene, createRng(seed), { types: ["exist"], existYesRate: 0.2 });
      if (question?.answer === "yes") yes++;
    }
    expect(yes / 300).toBeGreaterThan(0.12);
    expect(yes / 300).toBeLessThan(0.28);
  });

  it("paraphrases a question with another template of the same meaning", () => {
    for (let seed = 0; seed < 50; seed++) {
      const scene = sampleScene(createRng(seed));
      const rng = createRng(seed);
      for (const question of generateQuestions(scene, rng)) {
        const paraphrase = paraphraseQuestion(question, rng);
        expect(paraphrase).not.toBe(question.question);
        expect(paraphrase).toMatch(patterns[question.variant] as RegExp);
      }
    }
  });

  it("says 'Is there an orange star?'", () => {
    const scene: Scene = {
      background: 80,
      objects: [{ shape: "star", color: "orange", size: "small", x: 0.2, y: 0.7, r: 0.07, rotation: 3 }],
    };
    const texts = new Set<string>();
    const rng = createRng(3);
    for (let i = 0; i < 100; i++) {
      for (const q of generateQuestions(scene, rng, { types: ["exist", "position"], existYesRate: 1 }))
        texts.add(q.question);
    }
    expect(texts).toContain("Is there an orange star?");
    expect(texts).toContain("Is the orange star on the left or the right?");
  });
});
