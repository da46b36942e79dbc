/**
 * The parts of an image a question can ask about ("what is in the top-left?"), and which objects lie in
 * each. An object lies where the centre of its box lies, so every object is in exactly one quadrant and
 * one half of each axis:
 *
 * - `left` / `right`: the centre's x is below / at least 0.5 (the same rule as left/right answers);
 * - `top` / `bottom`: the centre's y is below / at least 0.5 (y grows downwards);
 * - `top-left`, `top-right`, `bottom-left`, `bottom-right`: both of the above;
 * - `center`: the centre lies in the middle third of both axes (x and y in [1/3, 2/3]), so an object
 *   can be in the center and in a quadrant at once.
 */
import type { CitedBox } from "./types.ts";

/** A part of an image, by the centre of each object's box. */
export type ImageArea =
  | "top-left"
  | "top-right"
  | "bottom-left"
  | "bottom-right"
  | "left"
  | "right"
  | "top"
  | "bottom"
  | "center";

/** Every area, in the order the docs list them. */
export const IMAGE_AREAS: readonly ImageArea[] = [
  "top-left",
  "top-right",
  "bottom-left",
  "bottom-right",
  "left",
  "right",
  "top",
  "bottom",
  "center",
];

const VERTICAL: Record<string, "top" | "bottom"> = {
  top: "top",
  upper: "top",
  bottom: "bottom",
  lower: "bottom",
};

/** `top left`, `upper right corner`, `lower left quadrant`, … */
const CORNER = /\b(top|upper|bottom|lower) (left|right)\b/;
/** `on the left`, `in the top half`, `at the bottom`, `in the middle`, `about the right side`, … */
const SIDE =
  /\b(?:in|on|at|to|along|near|about) (?:the )?(?:very )?(left|right|top|upper|bottom|lower|center|centre|middle)\b/;

/**
 * The area a question names, read from its normalized text (lower case, punctuation as spaces): a corner
 * (`top left`, `lower right`) wherever it stands, else a side or the middle after a preposition (`on the
 * left`, `in the bottom half`, `in the centre`). Undefined when it names none.
 */
export function areaNamed(normalized: string): ImageArea | undefined {
  const corner = CORNER.exec(normalized);
  if (corner !== null) return `${VERTICAL[corner[1] as string]}-${corner[2]}` as ImageArea;
  const side = SIDE.exec(normalized)?.[1];
  if (side === undefined) return undefined;
  if (side === "center" || side === "centre" || side === "middle") return "center";
  return (VERTICAL[side] ?? side) as ImageArea;
}

/** Whether a box, normalized to its image, lies in an area (by its centre; see the module's comment). */
export function inArea(area: ImageArea, box: CitedBox["box"]): boolean {
  const x = (box.x0 + box.x1) / 2;
  const y = (box.y0 + box.y1) / 2;
  switch (area) {
    case "left":
      return x < 0.5;
    case "right":
      return x >= 0.5;
    case "top":
      return y < 0.5;
    case "bottom":
      return y >= 0.5;
    case "top-left":
      return x < 0.5 && y < 0.5;
    case "top-right":
      return x >= 0.5 && y < 0.5;
    case "bottom-left":
      return x < 0.5 && y >= 0.5;
    case "bottom-right":
      return x >= 0.5 && y >= 0.5;
    case "center":
      return x >= 1 / 3 && x <= 2 / 3 && y >= 1 / 3 && y <= 2 / 3;
  }
}

/** `in the top-left`, `on the left`, `at the top`, `in the center`: an area as an answer says it. */
export function areaPhrase(area: ImageArea): string {
  if (area === "left" || area === "right") return `on the ${area}`;
  if (area === "top" || area === "bottom") return `at the ${area}`;
  return `in the ${area}`;
}

/** The canonical question about an area: `What is in the top-left?`. */
export function areaQuestion(area: ImageArea): string {
  return `What is ${areaPhrase(area)}?`;
}
