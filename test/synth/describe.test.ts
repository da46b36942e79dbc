import { describe, expect, it } from "vitest";
import {
  createRng,
  describeScene,
  PHRASING,
  type Scene,
  sampleScene,
  sceneKey,
} from "../../src/synth/index.ts";
import { objectPhrases, templatePattern } from "./spec.ts";

/** The multiset of (size?) color shape a scene holds, computed here from the ground truth. */
function expectedKinds(scene: Scene, includeSizes: boolean): string[] {
  return scene.objects
    .map((o) => (includeSizes ? `${o.size} ${o.color} ${o.shape}` : `${o.color} ${o.shape}`))
    .sort();
}

describe("describeScene", () => {
  it("names every object, counts identical ones, and parses back to the scene (500 seeds)", () => {
    const descriptionPattern = templatePattern(PHRASING.descriptionTemplates);
    const seenCounts = new Set<number>();
    for (let seed = 0; seed < 500; seed++) {
      const scene = sampleScene(createRng(seed));
      for (const includeSizes of [true, false]) {
        const rng = createRng(seed).fork("text", String(includeSizes));
        const description = describeScene(scene, rng, { includeSizes });
        const context = `seed ${seed}: "${description.text}"`;
        expect(description.text, context).toMatch(descriptionPattern);
        expect(description.includeSizes).toBe(includeSizes);
        const phrases = objectPhrases(description.text);
        const parsed: string[] = [];
        const groups = new Set<string>();
        for (const phrase of phrases) {
          expect(phrase.color, context).toBeDefined();
          expect(phrase.noun, context).not.toBe("object");
          expect(phrase.size !== undefined, `${context}: size words on all or none`).toBe(includeSizes);
          expect(phrase.isPlural, context).toBe(phrase.count > 1);
          if (phrase.count === 1) {
            const next = phrase.phrase.split(" ")[1] as string;
            expect(phrase.article, context).toBe(/^[aeiou]/.test(next) ? "an" : "a");
          }
          const kind = [phrase.size, phrase.color, phrase.noun].filter(Boolean).join(" ");
          expect(groups.has(kind), `${context}: ${kind} named twice instead of counted`).toBe(false);
          groups.add(kind);
          seenCounts.add(phrase.count);
          for (let i = 0; i < phrase.count; i++) parsed.push(kind);
        }
        expect(parsed.sort(), context).toEqual(expectedKinds(scene, includeSizes));
        expect(description.key).toBe(expectedKinds(scene, includeSizes).join(", "));
      }
    }
    expect([...seenCounts].sort()).toEqual([1, 2, 3, 4]);
  });

  it("reads 'an orange star' and 'a large orange star'", () => {
    const scene: Scene = {
      background: 90,
      objects: [{ shape: "star", color: "orange", size: "large", x: 0.2, y: 0.2, r: 0.15, rotation: 0 }],
    };
    const texts = new Set<string>();
    const rng = createRng(1);
    for (let i = 0; i < 60; i++) {
      texts.add(describeScene(scene, rng, { includeSizes: false }).text);
      texts.add(describeScene(scene, rng, { includeSizes: true }).text);
    }
    expect(texts).toContain("an orange star");
    expect(texts).toContain("a large orange star");
    expect([...texts].some((text) => text.startsWith("a photo of "))).toBe(true);
  });

  it("counts objects that differ only in size together when sizes are omitted", () => {
    const scene: Scene = {
      background: 90,
      objects: [
        { shape: "circle", color: "red", size: "large", x: 0.2, y: 0.2, r: 0.15, rotation: 0 },
        { shape: "circle", color: "red", size: "small", x: 0.8, y: 0.8, r: 0.07, rotation: 0 },
      ],
    };
    const text = describeScene(scene, createRng(2), { includeSizes: false }).text;
    expect(text).toContain("two red circles");
    expect(sceneKey(scene, { includeSizes: false })).toBe("red circle, red circle");
    expect(sceneKey(scene)).toBe("large red circle, small red circle");
  });

  it("gives scenes with the same objects elsewhere the same key, and others a different one", () => {
    const a = sampleScene(createRng(3), {
      objects: [
        { shape: "star", color: "blue", size: "small" },
        { shape: "square", color: "red", size: "large" },
      ],
    });
    const b = sampleScene(createRng(4), {
      objects: [
        { shape: "square", color: "red", size: "large" },
        { shape: "star", color: "blue", size: "small" },
      ],
    });
    const c = sampleScene(createRng(5), {
      objects: [
        { shape: "square", color: "red", size: "small" },
        { shape: "star", color: "blue", size: "small" },
      ],
    });
    expect(sceneKey(a)).toBe(sceneKey(b));
    expect(sceneKey(a)).not.toBe(sceneKey(c));
    expect(sceneKey(a, { includeSizes: false })).toBe(sceneKey(c, { includeSizes: false }));
  });
});
