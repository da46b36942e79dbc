/**
 * A compact index of the objects of many scenes: 4 bytes of object codes and 8 bytes of meaning keys per
 * scene, so that relevance sets over a large dataset can be computed after its lines were streamed out.
 */
import { COLORS, OBJECT_COUNT_RANGE, type ObjectKind, SHAPES, SIZES } from "./domain.ts";
import type { Gallery, GalleryItem } from "./partial-query.ts";

const KINDS: readonly ObjectKind[] = SHAPES.flatMap((shape) =>
  COLORS.flatMap((color) => SIZES.map((size) => Object.freeze({ shape, color, size }))),
);
const CODES = new Map(KINDS.map((kind, index) => [`${kind.size} ${kind.color} ${kind.shape}`, index + 1]));
const SLOTS = OBJECT_COUNT_RANGE.max;

function codeOf(kind: ObjectKind): number {
  const code = CODES.get(`${kind.size} ${kind.color} ${kind.shape}`);
  if (code === undefined) throw new RangeError(`Unknown object kind ${JSON.stringify(kind)}.`);
  return code;
}

/**
 * A number that two scenes share exactly when they hold the same multiset of kinds: (size, color,
 * shape), or (color, shape) without sizes. Sorted codes in base 61 fit in 32 bits for four objects.
 */
export function packedKey(objects: readonly ObjectKind[], options: { includeSizes?: boolean } = {}): number {
  const { includeSizes = true } = options;
  const codes = objects
    .map((kind) => {
      const code = codeOf(kind);
      // Without sizes, small and large codes of one color and shape collapse (sizes are the last digit).
      return includeSizes ? code : Math.floor((code - 1) / SIZES.length) + 1;
    })
    .sort((a, b) => a - b);
  return codes.reduce((key, code) => key * (KINDS.length + 1) + code, 0);
}

/** Object kinds of many scenes, appended in order; item ids come from `idOf(index)`. */
export class SceneIndex implements Gallery {
  #codes = new Uint8Array(SLOTS * 1024);
  #keys = new Uint32Array(1024);
  #keysWithoutSizes = new Uint32Array(1024);
  #length = 0;
  readonly #idOf: (index: number) => string;

  constructor(options: { idOf: (index: number) => string }) {
    this.#idOf = options.idOf;
  }

  get length(): number {
    return this.#length;
  }

  /** Appends a scene's object kinds (1–4). */
  add(objects: readonly ObjectKind[]): void {
    if (objects.length > SLOTS)
      throw new RangeError(`A scene has at most ${SLOTS} objects; got ${objects.length}.`);
    if (this.#length === this.#keys.length) {
      const grow = <T extends Uint8Array | Uint32Array>(array: T, make: (size: number) => T): T => {
        const bigger = make(array.length * 2);
        bigger.set(array);
        return bigger;
      };
      this.#codes = grow(this.#codes, (size) => new Uint8Array(size));
      this.#keys = grow(this.#keys, (size) => new Uint32Array(size));
      this.#keysWithoutSizes = grow(this.#keysWithoutSizes, (size) => new Uint32Array(size));
    }
    objects.forEach((kind, slot) => {
      this.#codes[this.#length * SLOTS + slot] = codeOf(kind);
    });
    this.#keys[this.#length] = packedKey(objects);
    this.#keysWithoutSizes[this.#length] = packedKey(objects, { includeSizes: false });
    this.#length++;
  }

  /** The item at `index`, decoded; `undefined` outside the index. */
  at(index: number): GalleryItem | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.#length) return undefined;
    const objects: ObjectKind[] = [];
    for (let slot = 0; slot < SLOTS; slot++) {
      const code = this.#codes[index * SLOTS + slot] ?? 0;
      const kind = KINDS[code - 1];
      if (kind !== undefined) objects.push(kind);
    }
    return { id: this.#idOf(index), objects };
  }

  /** The packed meaning key of the item at `index` (see {@link packedKey}). */
  keyAt(index: number, options: { includeSizes?: boolean } = {}): number | undefined {
    if (index < 0 || index >= this.#length) return undefined;
    return (options.includeSizes ?? true) ? this.#keys[index] : this.#keysWithoutSizes[index];
  }
}
