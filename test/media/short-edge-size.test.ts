import { describe, expect, it } from "vitest";
import { shortEdgeSize } from "../../src/media/short-edge-size.ts";

describe("shortEdgeSize (Hugging Face shortest_edge)", () => {
  it("keeps the aspect ratio and truncates the long side", () => {
    expect(shortEdgeSize({ width: 300, height: 200, shortestEdge: 128 })).toEqual({
      width: 192,
      height: 128,
    });
    expect(shortEdgeSize({ width: 97, height: 151, shortestEdge: 128 })).toEqual({
      width: 128,
      height: 199,
    });
    expect(shortEdgeSize({ width: 256, height: 256, shortestEdge: 224 })).toEqual({
      width: 224,
      height: 224,
    });
  });

  it("gives video frames the image processor's geometry", () => {
    expect(shortEdgeSize({ width: 200, height: 100, shortestEdge: 32 })).toEqual({ width: 64, height: 32 });
    expect(shortEdgeSize({ width: 99, height: 151, shortestEdge: 128 })).toEqual({ width: 128, height: 195 });
  });
});
