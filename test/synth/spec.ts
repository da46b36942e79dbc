/**
 * Shapes World v1 facts restated from the spec for the tests, so that the generator is checked against
 * the spec and not against its own constants.
 */

export const SPEC_SHAPES = ["circle", "square", "triangle", "star", "hexagon"];
export const SPEC_COLORS: Record<string, [number, number, number]> = {
  red: [220, 40, 40],
  green: [40, 180, 60],
  blue: [40, 80, 220],
  yellow: [240, 220, 40],
  purple: [150, 60, 190],
  orange: [245, 140, 30],
};
export const SPEC_SIZES: Record<string, [number, number]> = { small: [0.06, 0.09], large: [0.14, 0.2] };
export const SPEC_PLURALS: Record<string, string> = {
  circle: "circles",
  square: "squares",
  triangle: "triangles",
  star: "stars",
  hexagon: "hexagons",
  object: "objects",
};
export const SPEC_COUNT_WORDS: Record<string, number> = { two: 2, three: 3, four: 4 };
export const SPEC_ACTIONS = [
  "moving left",
  "moving right",
  "moving up",
  "moving down",
  "growing",
  "shrinking",
];
export const SPEC_VOCABULARY =
  "red green blue yellow purple orange circle square triangle star hexagon 0 1 2 3 4 yes no small large left right".split(
    " ",
  );

/** Allowance for geometry stored with four decimals. */
export const EPS = 1e-9;

export interface TestObject {
  shape: string;
  color: string;
  size: string;
  x: number;
  y: number;
  r: number;
  rotation: number;
}

export function inBand(value: number): boolean {
  return value > 0.45 && value < 0.55;
}

export function insideWithMargin(object: Pick<TestObject, "x" | "y" | "r">): boolean {
  return [object.x, object.y].every(
    (value) => value - object.r >= 0.02 - EPS && value + object.r <= 0.98 + EPS,
  );
}

export function gap(a: Pick<TestObject, "x" | "y" | "r">, b: Pick<TestObject, "x" | "y" | "r">): number {
  return Math.sqrt((a.x - b.x) ** 2 + (a.y - b.y) ** 2) - a.r - b.r;
}

/** Escapes a string for use inside a RegExp. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A RegExp that matches any filling of one of the templates (each placeholder matches any text). */
export function templatePattern(templates: readonly string[]): RegExp {
  const alternatives = templates.map((template) =>
    template
      .split(/(\{\w+\})/)
      .map((part) => (/^\{\w+\}$/.test(part) ? ".+" : escapeRegExp(part).replace(/\ba /gi, "an? ")))
      .join(""),
  );
  return new RegExp(`^(?:${alternatives.join("|")})$`);
}

export interface ObjectPhrase {
  phrase: string;
  article: string;
  count: number;
  size?: string;
  color?: string;
  /** Singular noun: a shape or `object`. */
  noun: string;
  isPlural: boolean;
}

/**
 * Every object phrase in a text: `a red circle`, `an orange star`, `two small blue squares`,
 * `three green objects`, with the count its article or count word means.
 */
export function objectPhrases(text: string): ObjectPhrase[] {
  const colors = Object.keys(SPEC_COLORS).join("|");
  const sizes = Object.keys(SPEC_SIZES).join("|");
  const nouns = Object.entries(SPEC_PLURALS).flat().join("|");
  const pattern = new RegExp(`\\b(a|an|two|three|four) (?:(${sizes}) )?(?:(${colors}) )?(${nouns})\\b`, "g");
  return [...text.matchAll(pattern)]
    .filter((match) => match[2] !== undefined || match[3] !== undefined || match[4] !== "object")
    .map((match) => {
      const article = match[1] as string;
      const plural = Object.entries(SPEC_PLURALS).find(([, value]) => value === match[4]);
      return {
        phrase: match[0],
        article,
        count: SPEC_COUNT_WORDS[article] ?? 1,
        ...(match[2] === undefined ? {} : { size: match[2] }),
        ...(match[3] === undefined ? {} : { color: match[3] }),
        noun: plural ? plural[0] : (match[4] as string),
        isPlural: plural !== undefined,
      };
    });
}
