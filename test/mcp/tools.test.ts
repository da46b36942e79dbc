/** The MCP tools' pure pieces: media URLs made absolute under the server's URL. */
import { describe, expect, it } from "vitest";
import { LOUPE_TOOLS, withAbsoluteUrls } from "../../src/mcp/tools.ts";

describe("withAbsoluteUrls", () => {
  const answer = {
    citations: [
      { id: "img_a", mediaUrl: "/v1/media/img_a", thumbnailUrl: "/v1/media/img_a/thumbnail" },
      { id: "att_1", mediaUrl: null, thumbnailUrl: null },
    ],
    evidence: [{ citation: { id: "img_a", mediaUrl: "/v1/media/img_a" } }],
    items: [{ id: "img_b", mediaUrl: "/v1/media/img_b", metadata: { mediaUrl: "/kept/as/is" } }],
  };

  it("puts every media path under the base URL, at any depth, and leaves the rest alone", () => {
    expect(withAbsoluteUrls(answer, "https://loupe.example.com")).toEqual({
      citations: [
        {
          id: "img_a",
          mediaUrl: "https://loupe.example.com/v1/media/img_a",
          thumbnailUrl: "https://loupe.example.com/v1/media/img_a/thumbnail",
        },
        { id: "att_1", mediaUrl: null, thumbnailUrl: null },
      ],
      evidence: [{ citation: { id: "img_a", mediaUrl: "https://loupe.example.com/v1/media/img_a" } }],
      items: [
        {
          id: "img_b",
          mediaUrl: "https://loupe.example.com/v1/media/img_b",
          metadata: { mediaUrl: "/kept/as/is" },
        },
      ],
    });
  });

  it("keeps a base URL's path prefix, and leaves paths as they are without a base", () => {
    const prefixed = withAbsoluteUrls(answer, "https://example.com/loupe/");
    expect(prefixed.citations[0]?.mediaUrl).toBe("https://example.com/loupe/v1/media/img_a");
    expect(withAbsoluteUrls(answer, undefined)).toBe(answer);
  });
});

describe("LOUPE_TOOLS", () => {
  it("has one tool per name, each needing read but ingest_url, which needs ingest", () => {
    expect(LOUPE_TOOLS.map((tool) => [tool.name, tool.scope])).toEqual([
      ["search", "read"],
      ["ask", "read"],
      ["vqa", "read"],
      ["get_item", "read"],
      ["list_items", "read"],
      ["ingest_url", "ingest"],
    ]);
  });
});
