/**
 * The maths of recommendations: Rocchio's query, MMR under a similarity ceiling, and profiles with decay.
 */
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  blendScores,
  buildProfile,
  candidatePoolSize,
  DEFAULT_EVENT_HALF_LIFE_MS,
  diversify,
  dotProduct,
  eventWeight,
  maxCosineFor,
  regionQuery,
  rocchioQuery,
  weightedCentroid,
} from "../../src/recommend/index.ts";

const unit = (...values: number[]) => {
  const norm = Math.hypot(...values);
  return Float32Array.from(values.map((value) => value / norm));
};

describe("rocchioQuery", () => {
  it("is the unit centroid of the positives without negatives", () => {
    const query = rocchioQuery({
      positives: [
        { vector: unit(1, 0, 0), weight: 1 },
        { vector: unit(0, 1, 0), weight: 1 },
      ],
    });
    expect(query[0]).toBeCloseTo(Math.SQRT1_2, 5);
    expect(query[1]).toBeCloseTo(Math.SQRT1_2, 5);
    expect(query[2]).toBe(0);
  });

  it("weights positives by their weight", () => {
    const query = rocchioQuery({
      positives: [
        { vector: unit(1, 0), weight: 3 },
        { vector: unit(0, 1), weight: 1 },
      ],
    });
    expect(query[0]).toBeCloseTo(3 / Math.hypot(3, 1), 5);
  });

  it("moves the query away from the negatives", () => {
    const positives = [{ vector: unit(1, 1, 0), weight: 1 }];
    const negative = unit(0, 1, 0);
    const without = rocchioQuery({ positives });
    const withNegative = rocchioQuery({ positives, negatives: [{ vector: negative, weight: 1 }] });
    expect(dotProduct(withNegative, negative)).toBeLessThan(dotProduct(without, negative));
    expect(Math.hypot(...withNegative)).toBeCloseTo(1, 5);
  });

  it("refuses no positive, and negatives that cancel the positives", () => {
    expect(() => rocchioQuery({ positives: [] })).toThrow(ValidationError);
    expect(() =>
      rocchioQuery({
        positives: [{ vector: unit(1, 0), weight: 1 }],
        negatives: [{ vector: unit(1, 0), weight: 1 }],
        weights: { positive: 1, negative: 1 },
      }),
    ).toThrow(/cancel/);
  });

  it("refuses vectors of different sizes and skips weights that are not above 0", () => {
    expect(() =>
      weightedCentroid([
        { vector: unit(1, 0), weight: 1 },
        { vector: unit(1, 0, 0), weight: 1 },
      ]),
    ).toThrow(/different sizes/);
    expect(weightedCentroid([{ vector: unit(1, 0), weight: 0 }])).toBeUndefined();
  });
});

describe("diversify", () => {
  // Five near-copies of one direction, then items spread around the circle.
  const angle = (degrees: number) =>
    unit(Math.cos((degrees * Math.PI) / 180), Math.sin((degrees * Math.PI) / 180));
  const candidates = [
    ...[0, 1, 2, 3, 4].map((degrees) => ({ item: `copy${degrees}`, vector: angle(degrees) })),
    ...[40, 80, 120, 160, 200].map((degrees) => ({ item: `far${degrees}`, vector: angle(degrees) })),
  ].map(({ item, vector }) => ({ item, vector, relevance: dotProduct(vector, angle(0)) }));

  it("keeps relevance order with diversity 0", () => {
    const ranked = diversify({ candidates, topK: 3, diversity: 0 });
    expect(ranked.map(({ item }) => item)).toEqual(["copy0", "copy1", "copy2"]);
  });

  it("keeps every pair under the ceiling while candidates allow it", () => {
    const diversity = 1;
    const ranked = diversify({ candidates, topK: 5, diversity });
    const ceiling = maxCosineFor(diversity);
    expect(ranked).toHaveLength(5);
    for (const [index, left] of ranked.entries()) {
      for (const right of ranked.slice(index + 1)) {
        const leftVector = candidates.find((candidate) => candidate.item === left.item)
          ?.vector as Float32Array;
        const rightVector = candidates.find((candidate) => candidate.item === right.item)
          ?.vector as Float32Array;
        expect(dotProduct(leftVector, rightVector)).toBeLessThanOrEqual(ceiling + 1e-6);
      }
    }
    expect(ranked[0]?.item).toBe("copy0");
    expect(ranked.filter(({ item }) => item.startsWith("copy"))).toHaveLength(1);
  });

  it("fills with the nearest only once no candidate keeps the ceiling, and reports how close", () => {
    const ranked = diversify({ candidates, topK: 10, diversity: 1 });
    expect(ranked).toHaveLength(10);
    const ceiling = maxCosineFor(1);
    const firstOver = ranked.findIndex(({ maxCosine }) => maxCosine > ceiling);
    expect(firstOver).toBe(6);
    expect(ranked.slice(firstOver).every(({ maxCosine }) => maxCosine > ceiling)).toBe(true);
    expect(ranked.slice(0, firstOver).every(({ maxCosine }) => maxCosine <= ceiling)).toBe(true);
  });

  it("refuses a diversity outside 0–1", () => {
    expect(() => diversify({ candidates, topK: 3, diversity: 1.5 })).toThrow(/from 0 \(off\) to 1/);
    expect(() => diversify({ candidates, topK: 3, diversity: Number.NaN })).toThrow(ValidationError);
  });

  it("searches a wider pool when diversifying", () => {
    expect(candidatePoolSize({ topK: 10, diversity: 0 })).toBe(10);
    expect(candidatePoolSize({ topK: 10, diversity: 0.5 })).toBe(40);
    expect(candidatePoolSize({ topK: 50, diversity: 0.5 })).toBe(200);
  });
});

describe("profiles", () => {
  const now = Date.UTC(2026, 0, 31);
  const halfLife = DEFAULT_EVENT_HALF_LIFE_MS;

  it("weighs each type and halves every half-life", () => {
    expect(eventWeight({ type: "like", at: now, now })).toBe(1);
    expect(eventWeight({ type: "dislike", at: now, now })).toBe(-1);
    expect(eventWeight({ type: "select", at: now, now })).toBe(0.5);
    expect(eventWeight({ type: "view", at: now, now })).toBeCloseTo(0.1);
    expect(eventWeight({ type: "like", at: now - halfLife, now })).toBeCloseTo(0.5);
    expect(eventWeight({ type: "like", at: now - 2 * halfLife, now })).toBeCloseTo(0.25);
    // An event dated after now counts as now, never more.
    expect(eventWeight({ type: "like", at: now + 60_000, now })).toBe(1);
  });

  it("sums an item's events: net positive, net negative, and every item seen", () => {
    const profile = buildProfile({
      now,
      events: [
        { item: "img_a", type: "like", at: now },
        { item: "img_b", type: "like", at: now - 3 * halfLife },
        { item: "img_b", type: "view", at: now },
        { item: "img_c", type: "dislike", at: now },
        { item: "img_d", type: "like", at: now - halfLife },
        { item: "img_d", type: "dislike", at: now },
      ],
    });
    expect(profile.positives.map(({ item }) => item)).toEqual(["img_a", "img_b"]);
    expect(profile.positives[1]?.weight).toBeCloseTo(0.125 + 0.1);
    expect(profile.negatives).toEqual([
      { item: "img_c", weight: 1 },
      { item: "img_d", weight: 0.5 },
    ]);
    expect([...profile.seen].sort()).toEqual(["img_a", "img_b", "img_c", "img_d"]);
  });

  it("keeps the heaviest items only", () => {
    const events = Array.from({ length: 8 }, (_value, index) => ({
      item: `img_${index}`,
      type: "like" as const,
      at: now - index * halfLife,
    }));
    const profile = buildProfile({ now, events, maxItems: 3 });
    expect(profile.positives.map(({ item }) => item)).toEqual(["img_0", "img_1", "img_2"]);
    expect(profile.seen.size).toBe(8);
  });
});

describe("regionQuery", () => {
  // Four object kinds as axes: the liked items share a star (axis 0), each with another object.
  const star = unit(1, 0, 0, 0);
  const square = unit(0, 1, 0, 0);
  const circle = unit(0, 0, 1, 0);
  const hexagon = unit(0, 0, 0, 1);

  it("stands for each liked item by the object the others share", () => {
    const query = regionQuery({
      positives: [
        { regions: [square, star], weight: 1 },
        { regions: [star, circle], weight: 1 },
        { regions: [hexagon, unit(0.95, 0, 0, 0.3)], weight: 1 },
      ],
    }) as Float32Array;
    expect(dotProduct(query, star)).toBeGreaterThan(0.99);
    for (const other of [square, circle, hexagon]) expect(dotProduct(query, other)).toBeLessThan(0.2);
  });

  it("subtracts each disliked item's object nearest to the query", () => {
    const positives = [
      { regions: [unit(1, 0.3, 0, 0), square], weight: 1 },
      { regions: [unit(1, 0.3, 0, 0), circle], weight: 1 },
    ];
    const without = regionQuery({ positives }) as Float32Array;
    const withNegative = regionQuery({
      positives,
      negatives: [{ regions: [unit(0, 1, 0, 0), hexagon], weight: 1 }],
    });
    expect(dotProduct(withNegative as Float32Array, square)).toBeLessThan(dotProduct(without, square));
  });

  it("needs two liked items with regions", () => {
    expect(regionQuery({ positives: [{ regions: [star], weight: 1 }] })).toBeUndefined();
    expect(
      regionQuery({
        positives: [
          { regions: [star], weight: 1 },
          { regions: [], weight: 1 },
        ],
      }),
    ).toBeUndefined();
  });
});

describe("blendScores", () => {
  it("weighs the two sides, an item missing from one getting that side's lowest score", () => {
    const blended = blendScores({
      image: new Map([
        ["a", 0.9],
        ["b", 0.5],
      ]),
      region: new Map([
        ["a", 0.2],
        ["c", 0.8],
      ]),
      regionWeight: 0.5,
    });
    expect(blended.get("a")).toBeCloseTo(0.55);
    expect(blended.get("b")).toBeCloseTo(0.35);
    expect(blended.get("c")).toBeCloseTo(0.65);
  });
});
