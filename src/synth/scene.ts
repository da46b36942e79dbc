/**
 * Scene sampling: object kinds, radii, rotations and a placement that keeps the spec's margins, gaps
 * and center bands, by rejection sampling with bounded retries.
 */
import { ValidationError } from "../errors.ts";
import {
  BACKGROUND_RANGE,
  CANVAS_MARGIN,
  CENTER_BAND,
  COLORS,
  type Color,
  OBJECT_COUNT_RANGE,
  OBJECT_GAP,
  type ObjectKind,
  ROTATION_RANGE,
  type Scene,
  type SceneObject,
  SHAPES,
  type Shape,
  SIZE_RADIUS,
  SIZES,
  type Size,
} from "./domain.ts";
import type { Rng } from "./rng.ts";
import { checkChoices, checkInteger } from "./validate.ts";

/** Tolerance of geometric checks, for values stored with four decimals. */
export const GEOMETRY_EPSILON = 1e-9;

/** Constraints a caller may put on a sampled scene. Unset fields follow the spec's distributions. */
export interface SampleSceneOptions {
  /** Number of objects, 1–4; uniform when unset. */
  objectCount?: number;
  /**
   * Objects to include, one entry per object; each unset attribute is sampled. Sets the object count.
   * Example: `[{ shape: "circle", color: "red" }, {}]`.
   */
  objects?: ReadonlyArray<Partial<ObjectKind>>;
  /** Shapes to sample from (default all five). */
  shapes?: readonly Shape[];
  /** Colors to sample from (default all six). */
  colors?: readonly Color[];
  /** Sizes to sample from (default both). */
  sizes?: readonly Size[];
  /** Background gray level, 70–150; uniform when unset. */
  background?: number;
  /**
   * Probability that an object repeats the kind (size, color, shape) of an earlier one, so that counted
   * groups (`two red circles`) occur often enough to be learned and tested. Default 0.2.
   */
  repeatProbability?: number;
  /** Whole-scene placement attempts before giving up. Default 200. */
  maxAttempts?: number;
}

/** Rounds to four decimals, the precision of stored geometry. */
export function roundCoordinate(value: number): number {
  return Math.round(value * 10_000) / 10_000;
}

/** Gap between two bounding circles (negative when they overlap). */
export function circleGap(
  a: Pick<SceneObject, "x" | "y" | "r">,
  b: Pick<SceneObject, "x" | "y" | "r">,
): number {
  return Math.hypot(a.x - b.x, a.y - b.y) - a.r - b.r;
}

/** Whether a bounding circle lies inside the canvas with the spec's margin. */
export function isInsideCanvas(object: Pick<SceneObject, "x" | "y" | "r">, margin = CANVAS_MARGIN): boolean {
  const low = margin + object.r - GEOMETRY_EPSILON;
  const high = 1 - margin - object.r + GEOMETRY_EPSILON;
  return object.x >= low && object.x <= high && object.y >= low && object.y <= high;
}

/** Whether a coordinate lies strictly inside the center band. */
export function isInCenterBand(value: number): boolean {
  return value > CENTER_BAND.min && value < CENTER_BAND.max;
}

/** Whether a bounding circle keeps the spec's gap to every other one. */
export function isClearOf(
  object: Pick<SceneObject, "x" | "y" | "r">,
  others: ReadonlyArray<Pick<SceneObject, "x" | "y" | "r">>,
): boolean {
  return others.every((other) => circleGap(object, other) >= OBJECT_GAP - GEOMETRY_EPSILON);
}

/**
 * Lists the placement rules a set of objects breaks (empty when all hold): canvas margin, pairwise gap,
 * center bands.
 */
export function placementViolations(objects: ReadonlyArray<Pick<SceneObject, "x" | "y" | "r">>): string[] {
  const violations: string[] = [];
  objects.forEach((object, index) => {
    if (!isInsideCanvas(object)) violations.push(`object ${index} is not inside the canvas margin`);
    if (isInCenterBand(object.x)) violations.push(`object ${index} has x=${object.x} in the center band`);
    if (isInCenterBand(object.y)) violations.push(`object ${index} has y=${object.y} in the center band`);
    for (let other = index + 1; other < objects.length; other++) {
      if (!isClearOf(object, [objects[other] as SceneObject])) {
        violations.push(`objects ${index} and ${other} are closer than the gap`);
      }
    }
  });
  return violations;
}

/**
 * Samples a center coordinate uniformly over `[low, high]` minus the center band, or returns `undefined`
 * when nothing is left. `low` and `high` default to the canvas limits for radius `r`.
 */
export function sampleAxis(
  rng: Rng,
  options: { r: number; low?: number; high?: number },
): number | undefined {
  const low = Math.max(options.low ?? 0, CANVAS_MARGIN + options.r);
  const high = Math.min(options.high ?? 1, 1 - CANVAS_MARGIN - options.r);
  const left = Math.max(0, Math.min(high, CENTER_BAND.min) - low);
  const right = Math.max(0, high - Math.max(low, CENTER_BAND.max));
  if (left + right <= 0) return undefined;
  const u = rng.float(0, left + right);
  return u < left ? low + u : Math.max(low, CENTER_BAND.max) + (u - left);
}

/** Samples a radius within a size class, rounded to stored precision. */
export function sampleRadius(rng: Rng, size: Size): number {
  const band = SIZE_RADIUS[size];
  return roundCoordinate(rng.float(band.min, band.max));
}

/** Samples a rotation in degrees (0 for circles), rounded to two decimals. */
export function sampleRotation(rng: Rng, shape: Shape): number {
  if (shape === "circle") return 0;
  return Math.round(rng.float(ROTATION_RANGE.min, ROTATION_RANGE.max) * 100) / 100;
}

/**
 * Tries to place a circle of radius `r` clear of `placed` and for which `accept` holds, by rejection
 * sampling. Returns the rounded center, or `undefined` after `tries` failures.
 */
export function placeCircle(
  rng: Rng,
  options: {
    r: number;
    placed: ReadonlyArray<Pick<SceneObject, "x" | "y" | "r">>;
    tries?: number;
    accept?: (center: { x: number; y: number }) => boolean;
  },
): { x: number; y: number } | undefined {
  const { r, placed, tries = 100, accept = () => true } = options;
  for (let attempt = 0; attempt < tries; attempt++) {
    const x = sampleAxis(rng, { r });
    const y = sampleAxis(rng, { r });
    if (x === undefined || y === undefined) return undefined;
    const candidate = { x: roundCoordinate(x), y: roundCoordinate(y), r };
    if (placementViolations([candidate]).length > 0) continue;
    if (isClearOf(candidate, placed) && accept(candidate)) return { x: candidate.x, y: candidate.y };
  }
  return undefined;
}

function sampleKinds(rng: Rng, options: SampleSceneOptions): ObjectKind[] {
  const shapes = checkChoices("shapes", options.shapes, SHAPES);
  const colors = checkChoices("colors", options.colors, COLORS);
  const sizes = checkChoices("sizes", options.sizes, SIZES);
  const repeatProbability = options.repeatProbability ?? 0.2;
  if (!(repeatProbability >= 0 && repeatProbability <= 1)) {
    throw new ValidationError(`repeatProbability is ${repeatProbability}; it must be between 0 and 1.`);
  }
  let count = options.objectCount;
  if (options.objects !== undefined) {
    if (count !== undefined && count !== options.objects.length) {
      throw new ValidationError(
        `objectCount is ${count} but ${options.objects.length} objects were given; drop one or make them agree.`,
      );
    }
    count = options.objects.length;
  }
  count ??= rng.int(OBJECT_COUNT_RANGE.min, OBJECT_COUNT_RANGE.max);
  checkInteger("objectCount", count, OBJECT_COUNT_RANGE);

  const kinds: ObjectKind[] = [];
  for (let index = 0; index < count; index++) {
    const forced = options.objects?.[index];
    if (forced === undefined && kinds.length > 0 && rng.bool(repeatProbability)) {
      kinds.push({ ...rng.pick(kinds) });
      continue;
    }
    kinds.push({
      shape: forced?.shape ?? rng.pick(shapes),
      color: forced?.color ?? rng.pick(colors),
      size: forced?.size ?? rng.pick(sizes),
    });
  }
  return kinds;
}

/**
 * Samples a scene that follows the spec: 1–4 objects of the allowed kinds, radii within their size
 * band, rotations in [-20°, 20°] (0 for circles), placed inside the canvas with margin 0.02, gaps of at
 * least 0.02 and no center in the bands 0.45 < x, y < 0.55. Geometry is rounded to four decimals and the
 * rules are checked on the rounded values.
 *
 * @throws ValidationError when the constraints are invalid or no placement is found.
 */
export function sampleScene(rng: Rng, options: SampleSceneOptions = {}): Scene {
  const kinds = sampleKinds(rng, options);
  const background = options.background ?? rng.int(BACKGROUND_RANGE.min, BACKGROUND_RANGE.max);
  checkInteger("background", background, BACKGROUND_RANGE);
  const maxAttempts = options.maxAttempts ?? 200;

  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const radii = kinds.map((kind) => sampleRadius(rng, kind.size));
    // Largest first: big circles are the hard ones to fit, small ones slip into the gaps.
    const order = radii.map((_r, index) => index).sort((a, b) => (radii[b] ?? 0) - (radii[a] ?? 0));
    const placed: SceneObject[] = [];
    const byIndex = new Map<number, SceneObject>();
    for (const index of order) {
      const kind = kinds[index] as ObjectKind;
      const r = radii[index] as number;
      const center = placeCircle(rng, { r, placed });
      if (center === undefined) break;
      const object: SceneObject = { ...kind, ...center, r, rotation: sampleRotation(rng, kind.shape) };
      placed.push(object);
      byIndex.set(index, object);
    }
    if (placed.length === kinds.length) {
      return { background, objects: kinds.map((_kind, index) => byIndex.get(index) as SceneObject) };
    }
  }
  throw new ValidationError(
    `Could not place ${kinds.length} objects (${kinds.map((kind) => kind.size).join(", ")}) after ${maxAttempts} attempts.`,
    { context: { kinds } },
  );
}

/** The kind of each object of a scene: what texts and relevance speak of. */
export function objectKinds(scene: Pick<Scene, "objects">): ObjectKind[] {
  return scene.objects.map(({ shape, color, size }) => ({ shape, color, size }));
}
