/**
 * Full descriptions of scenes (captions and whole-scene text queries) and the canonical key that says
 * when two descriptions, or a description and a scene, mean the same.
 */
import type { Color, ObjectKind, ObjectSet, Shape, Size } from "./domain.ts";
import { joinList, objectPhrase, PHRASING, phraseFrom } from "./phrasing.ts";
import type { Rng } from "./rng.ts";

/** Options of {@link describeScene}. */
export interface DescribeSceneOptions {
  /** Name the size of every object (`true`) or of none (`false`). Random when unset. */
  includeSizes?: boolean;
}

/** A full description of a scene. */
export interface Description {
  text: string;
  /** Whether the text names sizes; without them, objects that differ only in size are counted together. */
  includeSizes: boolean;
  /** Canonical key of what the text means; see {@link sceneKey}. */
  key: string;
}

/** Objects of one kind counted together, as a description names them. */
export interface ObjectGroup {
  count: number;
  /** Absent when sizes are not named. */
  size?: Size;
  color: Color;
  shape: Shape;
}

/**
 * Groups objects of the same size, color and shape (or color and shape, without sizes), in order of
 * first appearance.
 */
export function groupObjects(
  objects: ReadonlyArray<ObjectKind>,
  options: { includeSizes?: boolean } = {},
): ObjectGroup[] {
  const { includeSizes = true } = options;
  const groups = new Map<string, ObjectGroup>();
  for (const { size, color, shape } of objects) {
    const id = includeSizes ? `${size} ${color} ${shape}` : `${color} ${shape}`;
    const group = groups.get(id);
    if (group) group.count++;
    else groups.set(id, includeSizes ? { count: 1, size, color, shape } : { count: 1, color, shape });
  }
  return [...groups.values()];
}

/**
 * The canonical key of a scene's meaning: the sorted multiset of its objects' `size color shape`
 * (or `color shape` without sizes), joined by `, `. Two scenes, or a scene and a description, mean the
 * same exactly when their keys with the same `includeSizes` are equal. Keys with and without sizes never
 * collide.
 *
 * @example sceneKey(scene) === "large red circle, small blue star, small blue star"
 */
export function sceneKey(scene: ObjectSet, options: { includeSizes?: boolean } = {}): string {
  const { includeSizes = true } = options;
  return scene.objects
    .map(({ size, color, shape }) => (includeSizes ? `${size} ${color} ${shape}` : `${color} ${shape}`))
    .sort()
    .join(", ");
}

/**
 * Describes every object of a scene with `phrasing.json`: identical objects counted (`two red circles`),
 * groups in random order, a random template (`a photo of …`) and list joiner. Sizes are named on all
 * objects or on none.
 *
 * @example describeScene(scene, rng, { includeSizes: true }).text === "a photo of a large orange star and two small red circles"
 */
export function describeScene(scene: ObjectSet, rng: Rng, options: DescribeSceneOptions = {}): Description {
  const includeSizes = options.includeSizes ?? rng.bool();
  const phrases = rng
    .shuffle(groupObjects(scene.objects, { includeSizes }))
    .map((group) => objectPhrase(group));
  const objects = joinList(phrases, rng.pick(PHRASING.listJoiners));
  return {
    text: phraseFrom(rng, PHRASING.descriptionTemplates, { objects }),
    includeSizes,
    key: sceneKey(scene, { includeSizes }),
  };
}
