/**
 * Wording of Shapes World texts. All words and templates come from `phrasing.json`, which the Python
 * training scripts read too; this module only validates it and assembles phrases.
 */
import { z } from "zod";
import { ACTIONS, type Color, type Shape, type Size } from "./domain.ts";
import phrasingJson from "./phrasing.json" with { type: "json" };
import type { Rng } from "./rng.ts";

const templates = z.array(z.string().min(1)).min(1);

const phrasingSchema = z.object({
  version: z.literal(1),
  countWords: z.object({ "2": z.string(), "3": z.string(), "4": z.string() }),
  plurals: z.object({
    circle: z.string(),
    square: z.string(),
    triangle: z.string(),
    star: z.string(),
    hexagon: z.string(),
    object: z.string(),
  }),
  descriptionTemplates: templates,
  listJoiners: z.array(z.object({ pair: z.string(), sep: z.string(), last: z.string() })).min(1),
  partialTemplates: templates,
  questionTemplates: z.object({
    color: templates,
    shape: templates,
    count_shape: templates,
    count_color: templates,
    count_all: templates,
    exist: templates,
    size: templates,
    position: templates,
  }),
  videoTemplates: templates,
  actions: z
    .array(z.enum(ACTIONS))
    .refine(
      (actions) => actions.join("|") === ACTIONS.join("|"),
      "actions must list the six actions in order",
    ),
});

/** The validated contents of `phrasing.json`. */
export type Phrasing = z.infer<typeof phrasingSchema>;

/** Shared wording, validated once at load. */
export const PHRASING: Phrasing = phrasingSchema.parse(phrasingJson);

/** A noun that names objects: a shape, or the generic `object`. */
export type Noun = Shape | "object";

/** The attributes and count of one object phrase. */
export interface ObjectPhraseParts {
  /** How many; 1 takes an article, 2–4 a count word and the plural. */
  count?: number;
  size?: Size;
  color?: Color;
  /** The shape; without it the phrase says `object`. */
  shape?: Shape;
}

/** `an` before a vowel-initial word, `a` otherwise. */
export function withArticle(phrase: string): string {
  return /^[aeiou]/i.test(phrase) ? `an ${phrase}` : `a ${phrase}`;
}

/** The word for a count from 2 to 4. */
export function countWord(count: number): string {
  const word = PHRASING.countWords[String(count) as keyof Phrasing["countWords"]];
  if (word === undefined) throw new RangeError(`No count word for ${count}; counts 2 to 4 have one.`);
  return word;
}

/** The plural of a shape or of `object`. */
export function plural(noun: Noun): string {
  return PHRASING.plurals[noun];
}

/**
 * One object phrase: `a red circle`, `an orange star`, `a large blue object`, `two small green squares`.
 * Word order is count/article, size, color, noun.
 */
export function objectPhrase(parts: ObjectPhraseParts): string {
  const count = parts.count ?? 1;
  const noun: Noun = parts.shape ?? "object";
  const words: string[] = [parts.size, parts.color].filter((word) => word !== undefined);
  if (count === 1) return withArticle([...words, noun].join(" "));
  return [countWord(count), ...words, plural(noun)].join(" ");
}

/** A list joiner from `phrasing.json`. */
export type ListJoiner = Phrasing["listJoiners"][number];

/** Joins phrases into one list: `a, b and c`. */
export function joinList(items: readonly string[], joiner: ListJoiner): string {
  if (items.length <= 1) return items[0] ?? "";
  if (items.length === 2) return `${items[0]}${joiner.pair}${items[1]}`;
  return `${items.slice(0, -1).join(joiner.sep)}${joiner.last}${items.at(-1)}`;
}

/**
 * Replaces `{name}` placeholders; an unknown placeholder is a bug in the wording, so it throws. A
 * template's own `a` becomes `an` before a vowel-initial filled word.
 */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const filled = template.replace(/\{(\w+)\}/g, (_match, name: string) => {
    const value = values[name];
    if (value === undefined)
      throw new RangeError(`Template "${template}" needs {${name}}, which was not given.`);
    return value;
  });
  // "Is there a {color} {shape}?" filled with orange must read "Is there an orange …".
  return filled.replace(/\b([Aa]) (?=[aeiouAEIOU])/g, "$1n ");
}

/** Picks a template and fills it. */
export function phraseFrom(
  rng: Rng,
  templateList: readonly string[],
  values: Readonly<Record<string, string>>,
): string {
  return fillTemplate(rng.pick(templateList), values);
}
