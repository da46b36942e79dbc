import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  DEFAULT_LOGIT_SCALE,
  DEFAULT_SEARCH_KINDS,
  fuseTripleHits,
  kindOfId,
  resolveKinds,
  resolveLogitScale,
  resolveTopK,
  voteTags,
} from "../../src/search/index.ts";
import type { SearchHit } from "../../src/store/index.ts";

function hit(id: string, score: number, tags?: unknown): SearchHit {
  return {
    id,
    score,
    fields: {
      kind: "image",
      id,
      tenant: "t",
      modelId: "m",
      mediaRef: "blob:x",
      source: "test",
      ocrText: "",
      createdAt: 0,
      text: "",
      metadata: tags === undefined ? {} : { tags },
    },
  };
}

describe("resolveKinds", () => {
  it("defaults to every kind and drops duplicates", () => {
    expect(resolveKinds(undefined)).toEqual(["image", "video_segment", "triple"]);
    expect(resolveKinds(["triple", "triple", "image"])).toEqual(["triple", "image"]);
  });
  it("names the unknown kind and the allowed ones", () => {
    expect(() => resolveKinds(["image", "audio"])).toThrow(
      /Unknown kind "audio"; allowed kinds: image, video_segment, triple, region/,
    );
    expect(() => resolveKinds([])).toThrow(ValidationError);
  });
  it("takes regions when named, and refuses them where only whole items are allowed", () => {
    expect(resolveKinds(["region"])).toEqual(["region"]);
    expect(() => resolveKinds(["region"], DEFAULT_SEARCH_KINDS)).toThrow(
      /Unknown kind "region"; allowed kinds: image, video_segment, triple\./,
    );
  });
});

describe("resolveTopK", () => {
  it("accepts 1–100 and defaults to 10", () => {
    expect(resolveTopK(undefined)).toBe(10);
    expect(resolveTopK(1)).toBe(1);
    expect(resolveTopK(100)).toBe(100);
  });
  it.each([0, 101, 2.5, Number.NaN, -3])("refuses %s with the range", (value) => {
    expect(() => resolveTopK(value)).toThrow(/topK must be an integer from 1 to 100/);
  });
});

describe("resolveLogitScale", () => {
  it("exponentiates a Hugging Face log-space value, keeps a trained scale, caps at 100", () => {
    expect(resolveLogitScale(2.6592)).toBeCloseTo(14.285, 2);
    expect(resolveLogitScale(30.987804412841797)).toBeCloseTo(30.9878, 4);
    expect(resolveLogitScale(500)).toBe(100);
    expect(resolveLogitScale(undefined)).toBe(DEFAULT_LOGIT_SCALE);
    expect(resolveLogitScale(-1)).toBe(DEFAULT_LOGIT_SCALE);
  });
});

describe("kindOfId", () => {
  it("reads the kind from the id prefix", () => {
    expect(kindOfId("img_0123")).toBe("image");
    expect(kindOfId("seg_0123")).toBe("video_segment");
    expect(kindOfId("tri_0123")).toBe("triple");
    expect(kindOfId("vid_0123")).toBeUndefined();
    expect(kindOfId("imgx")).toBeUndefined();
  });
});

describe("voteTags", () => {
  it("weights each neighbour's tags by its similarity and counts support", () => {
    const tags = voteTags([
      hit("a", 0.9, ["red", "circle"]),
      hit("b", 0.6, ["red", "star", "red"]),
      hit("c", 0.5, ["blue"]),
      hit("d", 0.4, "not a list"),
    ]);
    const total = 0.9 + 0.6 + 0.5 + 0.4;
    expect(tags[0]).toEqual({ tag: "red", score: expect.closeTo(1.5 / total, 6), support: 2 });
    expect(tags.map((tag) => tag.tag)).toEqual(["red", "circle", "star", "blue"]);
  });
  it("gives no weight to negative similarities", () => {
    expect(voteTags([hit("a", -0.2, ["x"])])).toEqual([{ tag: "x", score: 0, support: 1 }]);
    expect(voteTags([])).toEqual([]);
  });
});

describe("fuseTripleHits", () => {
  it("averages a triple's two scores and fills a missing one with that list's lowest", () => {
    const fused = fuseTripleHits([
      [hit("a", 0.9), hit("b", 0.5)],
      [hit("b", 0.8), hit("c", 0.6)],
    ]);
    const byId = Object.fromEntries(fused.map((entry) => [entry.id, entry.score]));
    expect(byId.a).toBeCloseTo((0.9 + 0.6) / 2, 6);
    expect(byId.b).toBeCloseTo((0.5 + 0.8) / 2, 6);
    expect(byId.c).toBeCloseTo((0.5 + 0.6) / 2, 6);
  });
  it("keeps one list as it is, and stays finite when the other is empty", () => {
    expect(fuseTripleHits([[hit("a", 0.7)]]).map((entry) => entry.score)).toEqual([0.7]);
    expect(fuseTripleHits([[hit("a", 0.7)], []]).map((entry) => entry.score)).toEqual([0.35]);
  });
});
