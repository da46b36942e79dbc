/**
 * Seeded pseudo-random numbers for the generator. Everything random in Shapes World goes through an
 * {@link Rng}, so a seed fixes every scene, text, pixel and clip.
 */
import { ValidationError } from "../errors.ts";

/** A deterministic random stream (sfc32 seeded through splitmix32). */
export interface Rng {
  /** The 32-bit seed this stream started from. */
  readonly seed: number;
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform unsigned 32-bit integer. */
  uint32(): number;
  /** Uniform float in [min, max). */
  float(min: number, max: number): number;
  /** Uniform integer in [min, max], both ends included. */
  int(min: number, max: number): number;
  /** `true` with probability `p`. */
  bool(p?: number): boolean;
  /** One element, uniformly. Throws on an empty list. */
  pick<T>(items: readonly T[]): T;
  /** A shuffled copy (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[];
  /**
   * An independent stream derived from this stream's seed and `labels`. It does not depend on how much
   * of this stream was consumed, so items generated in any order or concurrency stay reproducible.
   */
  fork(...labels: ReadonlyArray<string | number>): Rng;
}

const UINT32 = 0x1_0000_0000;

function splitmix32(state: number): { value: number; state: number } {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return { value: z >>> 0, state: next };
}

function mix(hash: number, value: number): number {
  let h = Math.imul(hash ^ value, 0x5bd1e995);
  h ^= h >>> 15;
  return splitmix32(h).value;
}

/**
 * Hashes a seed and any labels into a 32-bit seed. Used to give every image, clip and render its own
 * stream: `deriveSeed(seed, "image", 42)`.
 */
export function deriveSeed(seed: number, ...labels: ReadonlyArray<string | number>): number {
  assertSeed(seed);
  let hash = mix(0x2545f491, seed >>> 0);
  hash = mix(hash, Math.floor(seed / UINT32) >>> 0);
  for (const label of labels) {
    if (typeof label === "number") {
      hash = mix(hash ^ 0x6e756d, label >>> 0);
      hash = mix(hash, Math.floor(label / UINT32) >>> 0);
    } else {
      hash = mix(hash, 0x737472 ^ label.length);
      for (let i = 0; i < label.length; i++) hash = mix(hash, label.charCodeAt(i));
    }
  }
  return hash >>> 0;
}

function assertSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new ValidationError(
      `Seed ${seed} is not valid; use an integer from 0 to ${Number.MAX_SAFE_INTEGER}.`,
      {
        context: { seed },
      },
    );
  }
}

/**
 * Creates a deterministic random stream. Equal seeds give equal streams on every platform.
 *
 * @param seed - a non-negative safe integer
 */
export function createRng(seed: number): Rng {
  const start = deriveSeed(seed);
  let sm = start | 0;
  const words: number[] = [];
  for (let i = 0; i < 4; i++) {
    const step = splitmix32(sm);
    sm = step.state;
    words.push(step.value | 0);
  }
  let [a = 0, b = 0, c = 0, d = 1] = words;

  const uint32 = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  // sfc32 needs a few rounds before its output is well mixed.
  for (let i = 0; i < 12; i++) uint32();

  const next = (): number => uint32() / UINT32;

  return {
    seed: start,
    next,
    uint32,
    float: (min, max) => min + (max - min) * next(),
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    bool: (p = 0.5) => next() < p,
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new ValidationError("Cannot pick from an empty list.");
      return items[Math.floor(next() * items.length)] as T;
    },
    shuffle<T>(items: readonly T[]): T[] {
      const copy = [...items];
      for (let i = copy.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
      }
      return copy;
    },
    fork: (...labels) => createRng(deriveSeed(start, ...labels)),
  };
}
