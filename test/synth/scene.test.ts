import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { createRng, type Scene, sampleScene, sceneSchema } from "../../src/synth/index.ts";
import { EPS, gap, inBand, insideWithMargin, SPEC_COLORS, SPEC_SHAPES, SPEC_SIZES } from "./spec.ts";

const SEEDS = Array.from({ length: 600 }, (_v, index) => index);

function specProblems(scene: Scene): string[] {
  const problems: string[] = [];
  if (!Number.isInteger(scene.background) || scene.background < 70 || scene.background > 150) {
    problems.push(`background ${scene.background}`);
  }
  if (scene.objects.length < 1 || scene.objects.length > 4) problems.push(`${scene.objects.length} objects`);
  scene.objects.forEach((object, index) => {
    if (!SPEC_SHAPES.includes(object.shape)) problems.push(`shape ${object.shape}`);
    if (!(object.color in SPEC_COLORS)) problems.push(`color ${object.color}`);
    const band = SPEC_SIZES[object.size];
    if (band === undefined || object.r < band[0] - EPS || object.r > band[1] + EPS) {
      problems.push(`object ${index}: r ${object.r} outside the ${object.size} band`);
    }
    if (object.rotation < -20 || object.rotation > 20) problems.push(`rotation ${object.rotation}`);
    if (object.shape === "circle" && object.rotation !== 0) problems.push("rotated circle");
    if (!insideWithMargin(object)) problems.push(`object ${index} outside the margin`);
    if (inBand(object.x) || inBand(object.y)) problems.push(`object ${index} center in a band`);
    for (const other of scene.objects.slice(index + 1)) {
      if (gap(object, other) < 0.02 - EPS) problems.push(`gap ${gap(object, other)}`);
    }
  });
  return problems;
}

describe("sampleScene", () => {
  it("follows the spec on 600 seeds", () => {
    const counts = new Set<number>();
    const shapes = new Set<string>();
    const colors = new Set<string>();
    for (const seed of SEEDS) {
      const scene = sampleScene(createRng(seed));
      expect(specProblems(scene), `seed ${seed}`).toEqual([]);
      expect(sceneSchema.parse(JSON.parse(JSON.stringify(scene)))).toEqual(scene);
      expect(Object.keys(scene)).toEqual(["background", "objects"]);
      expect(Object.keys(scene.objects[0] ?? {})).toEqual([
        "shape",
        "color",
        "size",
        "x",
        "y",
        "r",
        "rotation",
      ]);
      counts.add(scene.objects.length);
      for (const object of scene.objects) {
        shapes.add(object.shape);
        colors.add(object.color);
      }
    }
    expect([...counts].sort()).toEqual([1, 2, 3, 4]);
    expect(shapes.size).toBe(5);
    expect(colors.size).toBe(6);
  });

  it("packs four large objects when asked", () => {
    for (const seed of SEEDS.slice(0, 100)) {
      const scene = sampleScene(createRng(seed), { objectCount: 4, sizes: ["large"] });
      expect(scene.objects).toHaveLength(4);
      expect(specProblems(scene), `seed ${seed}`).toEqual([]);
    }
  });

  it("is deterministic per seed", () => {
    for (const seed of [0, 1, 99, 2 ** 32 + 5]) {
      expect(JSON.stringify(sampleScene(createRng(seed)))).toBe(JSON.stringify(sampleScene(createRng(seed))));
    }
    expect(sampleScene(createRng(1))).not.toEqual(sampleScene(createRng(2)));
  });

  it("honours caller constraints", () => {
    for (const seed of SEEDS.slice(0, 50)) {
      const limited = sampleScene(createRng(seed), {
        objectCount: 3,
        shapes: ["star"],
        colors: ["red", "blue"],
      });
      expect(limited.objects).toHaveLength(3);
      for (const object of limited.objects) {
        expect(object.shape).toBe("star");
        expect(["red", "blue"]).toContain(object.color);
      }
      const forced = sampleScene(createRng(seed), {
        objects: [{ shape: "circle", color: "red", size: "large" }, { color: "green" }],
        background: 100,
      });
      expect(forced.background).toBe(100);
      expect(forced.objects[0]).toMatchObject({ shape: "circle", color: "red", size: "large" });
      expect(forced.objects[1]?.color).toBe("green");
      expect(specProblems(forced)).toEqual([]);
    }
  });

  it("rejects constraints outside the spec", () => {
    expect(() => sampleScene(createRng(1), { objectCount: 5 })).toThrow(ValidationError);
    expect(() => sampleScene(createRng(1), { objectCount: 0 })).toThrow(/objectCount is 0/);
    expect(() => sampleScene(createRng(1), { background: 200 })).toThrow(/background is 200/);
    expect(() => sampleScene(createRng(1), { shapes: [] })).toThrow(/shapes must be a non-empty list/);
    expect(() => sampleScene(createRng(1), { objectCount: 2, objects: [{}] })).toThrow(/agree/);
  });
});
