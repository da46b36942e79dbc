import { describe, expect, it } from "vitest";
import { createRng, objectKinds, sampleScene, sceneKey } from "../../src/synth/index.ts";
import { packedKey, SceneIndex } from "../../src/synth/scene-index.ts";

describe("SceneIndex", () => {
  const scenes = Array.from({ length: 3000 }, (_v, seed) => sampleScene(createRng(seed)));

  it("gives back every scene's object kinds, past its initial capacity", () => {
    const index = new SceneIndex({ idOf: (position) => `img-${position}` });
    for (const scene of scenes) index.add(scene.objects);
    expect(index.length).toBe(3000);
    for (const position of [0, 1023, 1024, 2999]) {
      expect(index.at(position)).toEqual({
        id: `img-${position}`,
        objects: objectKinds(scenes[position] ?? { objects: [] }),
      });
    }
    expect(index.at(3000)).toBeUndefined();
  });

  it("packs keys that are equal exactly when the canonical keys are", () => {
    for (const includeSizes of [true, false]) {
      const byPacked = new Map<number, string>();
      for (const scene of scenes) {
        const packed = packedKey(scene.objects, { includeSizes });
        const key = sceneKey(scene, { includeSizes });
        expect(packed).toBeLessThan(2 ** 32);
        expect(byPacked.get(packed) ?? key).toBe(key);
        byPacked.set(packed, key);
      }
      expect(new Set(byPacked.values()).size).toBe(byPacked.size);
    }
  });
});
