/**
 * VQA questions about scenes: the six question types with the spec's "asked only when" rules, wording
 * from `phrasing.json`, and answers from the 22-word vocabulary.
 */
import { type Answer, COLORS, type Color, POSITION_SPLIT, type Scene, SHAPES, type Shape } from "./domain.ts";
import { fillTemplate, PHRASING, plural } from "./phrasing.ts";
import type { Rng } from "./rng.ts";

/** The six question types. */
export const QUESTION_TYPES = ["color", "shape", "count", "exist", "size", "position"] as const;
/** A question type. */
export type QuestionType = (typeof QUESTION_TYPES)[number];

/** Question variants: the types, with `count` split by what is counted. Keys of `questionTemplates`. */
export const QUESTION_VARIANTS = [
  "color",
  "shape",
  "count_shape",
  "count_color",
  "count_all",
  "exist",
  "size",
  "position",
] as const;
/** A question variant. */
export type QuestionVariant = (typeof QUESTION_VARIANTS)[number];

/** What a question is about, before wording. */
export interface QuestionSpec {
  variant: QuestionVariant;
  /** `shape` for color and count_shape; `color` for shape and count_color; both for exist, size, position. */
  params: { shape?: Shape; color?: Color };
}

/** A worded question with its answer. */
export interface Question extends QuestionSpec {
  type: QuestionType;
  question: string;
  answer: Answer;
}

/** The type of a variant. */
export function questionType(variant: QuestionVariant): QuestionType {
  return variant.startsWith("count") ? "count" : (variant as QuestionType);
}

/** Objects of the scene that the question's params select (all objects when it names none). */
function selected(spec: QuestionSpec, scene: Pick<Scene, "objects">): Scene["objects"] {
  return scene.objects.filter(
    (object) =>
      (spec.params.shape === undefined || object.shape === spec.params.shape) &&
      (spec.params.color === undefined || object.color === spec.params.color),
  );
}

/** The params each variant takes, in the order `color`, `shape`. */
const PARAMS: Record<QuestionVariant, ReadonlyArray<"shape" | "color">> = {
  color: ["shape"],
  shape: ["color"],
  count_shape: ["shape"],
  count_color: ["color"],
  count_all: [],
  exist: ["color", "shape"],
  size: ["color", "shape"],
  position: ["color", "shape"],
};

function checkParams(spec: QuestionSpec): void {
  const wanted = PARAMS[spec.variant];
  const given = (["color", "shape"] as const).filter((field) => spec.params[field] !== undefined);
  if (wanted === undefined || given.join() !== wanted.join()) {
    throw new RangeError(
      `Question ${JSON.stringify(spec)} needs exactly the params ${JSON.stringify(wanted)}.`,
    );
  }
}

/**
 * Whether the spec allows asking this question about the scene: color/shape questions need exactly one
 * object with that shape/color; size and position need exactly one object of that color and shape;
 * count and exist are always allowed.
 */
export function isAskable(spec: QuestionSpec, scene: Pick<Scene, "objects">): boolean {
  checkParams(spec);
  switch (spec.variant) {
    case "color":
    case "shape":
    case "size":
    case "position":
      return selected(spec, scene).length === 1;
    default:
      return true;
  }
}

/** The answer to a question about a scene, or `undefined` when the question may not be asked. */
export function answerQuestion(spec: QuestionSpec, scene: Pick<Scene, "objects">): Answer | undefined {
  if (!isAskable(spec, scene)) return undefined;
  const matches = selected(spec, scene);
  const only = matches[0];
  switch (spec.variant) {
    case "color":
      return only?.color;
    case "shape":
      return only?.shape;
    case "size":
      return only?.size;
    case "position":
      return only === undefined ? undefined : only.x < POSITION_SPLIT ? "left" : "right";
    case "exist":
      return matches.length > 0 ? "yes" : "no";
    case "count_shape":
    case "count_color":
    case "count_all":
      return String(matches.length) as Answer;
  }
}

/** Words a question: a template of its variant from `phrasing.json`, other than `avoid` when possible. */
export function phraseQuestion(spec: QuestionSpec, rng: Rng, options: { avoid?: string } = {}): string {
  checkParams(spec);
  const values: Record<string, string> = {};
  if (spec.params.shape !== undefined) {
    values.shape = spec.params.shape;
    values.shapes = plural(spec.params.shape);
  }
  if (spec.params.color !== undefined) values.color = spec.params.color;
  const texts = PHRASING.questionTemplates[spec.variant].map((template) => fillTemplate(template, values));
  const others = texts.filter((text) => text !== options.avoid);
  return rng.pick(others.length > 0 ? others : texts);
}

/** The same question in other words: a different template of the same variant. */
export function paraphraseQuestion(question: Question, rng: Rng): string {
  return phraseQuestion(question, rng, { avoid: question.question });
}

/** Options of {@link generateQuestions}. */
export interface GenerateQuestionsOptions {
  /** Types to ask (default all six); a type with nothing askable is skipped. */
  types?: readonly QuestionType[];
  /** Distinct questions per type, at most. Default 1. */
  perType?: number;
  /** Share of exist questions answered `yes`. Default 0.5. */
  existYesRate?: number;
  /** Share of count questions about a shape or color present in the scene (the rest answer `0`). Default 0.75. */
  countPresentRate?: number;
}

function candidates(variant: QuestionVariant, scene: Pick<Scene, "objects">): QuestionSpec[] {
  const pairs = SHAPES.flatMap((shape) => COLORS.map((color) => ({ shape, color })));
  const specs: QuestionSpec[] = {
    color: SHAPES.map((shape) => ({ variant, params: { shape } })),
    shape: COLORS.map((color) => ({ variant, params: { color } })),
    count_shape: SHAPES.map((shape) => ({ variant, params: { shape } })),
    count_color: COLORS.map((color) => ({ variant, params: { color } })),
    count_all: [{ variant, params: {} }],
    exist: pairs.map((params) => ({ variant, params })),
    size: pairs.map((params) => ({ variant, params })),
    position: pairs.map((params) => ({ variant, params })),
  }[variant];
  return specs.filter((spec) => isAskable(spec, scene));
}

function specKey(spec: QuestionSpec): string {
  return `${spec.variant}:${spec.params.color ?? ""}:${spec.params.shape ?? ""}`;
}

/** Chooses one question spec of a type, balancing the answers the options ask to balance. */
function chooseSpec(
  type: QuestionType,
  scene: Pick<Scene, "objects">,
  rng: Rng,
  options: Required<Pick<GenerateQuestionsOptions, "existYesRate" | "countPresentRate">>,
  asked: ReadonlySet<string>,
): QuestionSpec | undefined {
  const variant: QuestionVariant =
    type === "count" ? rng.pick(["count_shape", "count_color", "count_all"] as const) : type;
  const open = candidates(variant, scene).filter((spec) => !asked.has(specKey(spec)));
  if (open.length === 0) return undefined;
  if (variant === "exist" || variant === "count_shape" || variant === "count_color") {
    const present = open.filter((spec) => selected(spec, scene).length > 0);
    const absent = open.filter((spec) => selected(spec, scene).length === 0);
    const wantPresent = rng.bool(variant === "exist" ? options.existYesRate : options.countPresentRate);
    const pool = wantPresent ? present : absent;
    return rng.pick(pool.length > 0 ? pool : open);
  }
  return rng.pick(open);
}

/**
 * Generates worded questions about a scene with their answers, up to `perType` per type, each allowed
 * by the spec's "asked only when" rules.
 *
 * @example generateQuestions(scene, rng, { types: ["exist"], perType: 2 })
 */
export function generateQuestions(
  scene: Pick<Scene, "objects">,
  rng: Rng,
  options: GenerateQuestionsOptions = {},
): Question[] {
  const { types = QUESTION_TYPES, perType = 1, existYesRate = 0.5, countPresentRate = 0.75 } = options;
  const questions: Question[] = [];
  const asked = new Set<string>();
  for (const type of types) {
    let made = 0;
    for (let draw = 0; draw < perType * 4 && made < perType; draw++) {
      const spec = chooseSpec(type, scene, rng, { existYesRate, countPresentRate }, asked);
      if (spec === undefined) continue;
      asked.add(specKey(spec));
      const answer = answerQuestion(spec, scene) as Answer;
      questions.push({ type, ...spec, question: phraseQuestion(spec, rng), answer });
      made++;
    }
  }
  return questions;
}
