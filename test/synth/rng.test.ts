import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { createRng, deriveSeed } from "../../src/synth/index.ts";

describe("createRng", () => {
  it("repeats the same stream for the same seed and differs across seeds", () => {
    const draw = (seed: number) => Array.from({ length: 20 }, createRng(seed).uint32);
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(2 ** 40 + 1)).not.toEqual(draw(1));
  });

  it("draws within the asked ranges", () => {
    const rng = createRng(7);
    const ints = new Set<number>();
    for (let i = 0; i < 5000; i++) {
      const value = rng.next();
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1);
      const int = rng.int(-2, 3);
      expect(Number.isInteger(int) && int >= -2 && int <= 3).toBe(true);
      ints.add(int);
      const float = rng.float(0.06, 0.09);
      expect(float >= 0.06 && float < 0.09).toBe(true);
    }
    expect([...ints].sort()).toEqual([-1, -2, 0, 1, 2, 3]);
  });

  it("is roughly uniform", () => {
    const rng = createRng(1);
    const buckets = new Array(10).fill(0);
    for (let i = 0; i < 20_000; i++) buckets[Math.floor(rng.next() * 10)]++;
    for (const bucket of buckets) expect(Math.abs(bucket - 2000)).toBeLessThan(200);
  });

  it("forks streams that do not depend on how much the parent consumed", () => {
    const a = createRng(5);
    const b = createRng(5);
    b.uint32();
    b.uint32();
    expect(a.fork("image", 3).uint32()).toBe(b.fork("image", 3).uint32());
    expect(a.fork("image", 3).uint32()).not.toBe(a.fork("image", 4).uint32());
    expect(deriveSeed(5, "x")).toBe(deriveSeed(5, "x"));
    expect(deriveSeed(5, "x")).not.toBe(deriveSeed(5, "y"));
  });

  it("shuffles into a permutation and picks members", () => {
    const rng = createRng(9);
    const items = [1, 2, 3, 4, 5, 6];
    expect(rng.shuffle(items).sort()).toEqual(items);
    expect(items).toContain(rng.pick(items));
    expect(() => rng.pick([])).toThrow(ValidationError);
  });

  it("rejects seeds that are not non-negative safe integers", () => {
    expect(() => createRng(-1)).toThrow(ValidationError);
    expect(() => createRng(1.5)).toThrow(/Seed 1.5 is not valid/);
  });
});
