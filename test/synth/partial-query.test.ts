import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  createRng,
  generatePartialQueries,
  isRelevant,
  PARTIAL_QUERY_KINDS,
  type PartialQuery,
  PHRASING,
  partialQueryKey,
  partialQueryKind,
  phrasePartialQuery,
  type Scene,
  samplePartialQuery,
  sampleScene,
} from "../../src/synth/index.ts";
import { objectPhrases, templatePattern } from "./spec.ts";

/** Relevance by brute force, written from the spec. */
function bruteForce(query: PartialQuery, scene: Scene): boolean {
  let matches = 0;
  for (const o of scene.objects) {
    if (query.size && o.size !== query.size) continue;
    if (query.color && o.color !== query.color) continue;
    if (query.shape && o.shape !== query.shape) continue;
    matches++;
  }
  return query.count === undefined ? matches > 0 : matches === query.count;
}

const scenes = Array.from({ length: 300 }, (_v, seed) => sampleScene(createRng(seed)));

describe("partial queries", () => {
  it("draws queries that their scene is relevant to, of every kind, worded from phrasing.json", () => {
    const pattern = templatePattern(PHRASING.partialTemplates);
    const kinds = new Set<string>();
    scenes.forEach((scene, seed) => {
      const rng = createRng(seed).fork("query");
      for (let i = 0; i < 4; i++) {
        const sampled = samplePartialQuery(rng, { scene });
        if (sampled === undefined) throw new Error("no query for a scene");
        kinds.add(sampled.kind);
        expect(bruteForce(sampled.query, scene), JSON.stringify(sampled)).toBe(true);
        expect(sampled.text).toMatch(pattern);
        const [phrase, ...rest] = objectPhrases(sampled.text);
        expect(rest, sampled.text).toEqual([]);
        expect(phrase?.count ?? 0).toBe(sampled.query.count ?? 1);
        expect(phrase?.size).toBe(sampled.query.size);
        expect(phrase?.color).toBe(sampled.query.color);
        expect(phrase?.noun).toBe(sampled.query.shape ?? "object");
        const named = ["size", "color", "shape", "count"].filter(
          (f) => sampled.query[f as keyof PartialQuery] !== undefined,
        );
        expect(named.length >= 1 && named.length <= 2).toBe(true);
      }
    });
    expect([...kinds].sort()).toEqual([...PARTIAL_QUERY_KINDS].sort());
  });

  it("agrees with a brute-force count on random queries", () => {
    const rng = createRng(77);
    let relevant = 0;
    for (let i = 0; i < 3000; i++) {
      const sampled = samplePartialQuery(rng);
      if (sampled === undefined) throw new Error("no query");
      const scene = rng.pick(scenes);
      const expected = bruteForce(sampled.query, scene);
      expect(isRelevant(sampled.query, scene), JSON.stringify({ q: sampled.query, scene })).toBe(expected);
      if (expected) relevant++;
    }
    expect(relevant).toBeGreaterThan(100);
  });

  it("reads 'two squares', 'three green objects', 'a small object', 'a blue object', 'a star'", () => {
    const rng = createRng(1);
    const phraseOf = (query: PartialQuery) => objectPhrases(phrasePartialQuery(query, rng))[0]?.phrase;
    expect(phraseOf({ count: 2, shape: "square" })).toBe("two squares");
    expect(phraseOf({ count: 3, color: "green" })).toBe("three green objects");
    expect(phraseOf({ size: "small" })).toBe("a small object");
    expect(phraseOf({ color: "blue" })).toBe("a blue object");
    expect(phraseOf({ shape: "star" })).toBe("a star");
    expect(phraseOf({ color: "orange", shape: "circle" })).toBe("an orange circle");
    expect(phraseOf({ size: "large", color: "orange" })).toBe("a large orange object");
  });

  it("checks relevance by exact count", () => {
    const scene = sceneFor({ count: 2, shape: "square" });
    expect(isRelevant({ count: 2, shape: "square" }, scene)).toBe(true);
    expect(isRelevant({ count: 3, shape: "square" }, scene)).toBe(false);
    expect(isRelevant({ shape: "square" }, scene)).toBe(true);
    expect(isRelevant({ shape: "star" }, scene)).toBe(false);
  });

  it("lists every relevant gallery item for each generated query", () => {
    const gallery = scenes.slice(0, 200).map((scene, index) => ({ id: `img-${index}`, ...scene }));
    const queries = generatePartialQueries(createRng(5), { gallery, count: 60 });
    expect(queries.length).toBe(60);
    expect(new Set(queries.map((q) => partialQueryKey(q.query))).size).toBe(60);
    for (const query of queries) {
      const expected = gallery.filter((item) => bruteForce(query.query, item)).map((item) => item.id);
      expect(query.relevantIds).toEqual(expected);
      expect(expected.length).toBeGreaterThan(0);
    }
  });

  it("refuses queries that are not one of the eight kinds", () => {
    const bad: PartialQuery[] = [
      {},
      { size: "small", color: "red", shape: "star" },
      { count: 2, size: "small" },
      { count: 5, shape: "star" },
      { count: 1, shape: "star" },
      { count: 2, color: "red", shape: "star" },
    ];
    for (const query of bad) {
      expect(() => partialQueryKind(query), JSON.stringify(query)).toThrow(ValidationError);
      expect(() => phrasePartialQuery(query, createRng(1))).toThrow(/not valid/);
    }
    expect(partialQueryKind({ count: 2, shape: "star" })).toBe("count+shape");
    expect(partialQueryKind({ size: "large", color: "red" })).toBe("size+color");
  });
});

/** A scene that satisfies the query and nothing with other values of its attributes. */
function sceneFor(query: PartialQuery): Scene {
  const objects = Array.from({ length: query.count ?? 1 }, (_v, index) => ({
    shape: query.shape ?? "hexagon",
    color: query.color ?? "purple",
    size: query.size ?? "small",
    x: index % 2 === 0 ? 0.2 : 0.8,
    y: index < 2 ? 0.2 : 0.8,
    r: 0.07,
    rotation: 0,
  }));
  return { background: 100, objects };
}
