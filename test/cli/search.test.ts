import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatSearchTable, runSearch, type SearchResultRow } from "../../src/cli/commands/search.ts";
import { AppError, ValidationError } from "../../src/errors.ts";
import { findFreePort } from "../../src/store/free-port.ts";

const rows: SearchResultRow[] = [
  { kind: "image", id: "img_aaa", score: 0.91234, metadata: { tags: ["red", "circle"] } },
  { kind: "video_segment", id: "seg_bbb", score: 0.5, start: 2, end: 4.5, metadata: {} },
  { kind: "triple", id: "tri_ccc", score: 0.25, question: "What color is the circle?", answer: "red" },
];

/** A stand-in server that records what the CLI sends: the CLI is tested as an HTTP client here. */
function recordingServer() {
  const seen: { contentType: string; json?: unknown; form?: Record<string, unknown> }[] = [];
  const app = new Hono().post("/v1/search", async (c) => {
    const contentType = c.req.header("content-type") ?? "";
    if (contentType.startsWith("multipart/")) {
      const form = await c.req.parseBody();
      const image = form.image;
      seen.push({
        contentType,
        form: { ...form, image: image instanceof File ? (await image.arrayBuffer()).byteLength : image },
      });
    } else {
      const json = (await c.req.json()) as { topK?: number };
      seen.push({ contentType, json });
      if (json.topK === 500) {
        return c.json(
          {
            error: {
              code: "invalid_request",
              message: "topK must be an integer from 1 to 100; got 500.",
              requestId: "r",
            },
          },
          400,
        );
      }
    }
    return c.json({ items: rows });
  });
  return { seen, fetch: async (input: string, init: RequestInit) => app.request(input, init) };
}

describe("loupe search", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-search-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("sends a text search as JSON with kinds, topK and the parsed filter", async () => {
    const server = recordingServer();
    const items = await runSearch({
      url: "http://loupe.test/",
      text: "a red circle",
      kinds: ["image", "triple"],
      topK: 5,
      filter: '[{"field":"metadata.tags","op":"contains","value":"red"}]',
      fetch: server.fetch,
    });
    expect(items).toEqual(rows);
    expect(server.seen[0]?.json).toEqual({
      text: "a red circle",
      kinds: ["image", "triple"],
      topK: 5,
      filter: [{ field: "metadata.tags", op: "contains", value: "red" }],
    });
  });

  it("sends an image file as multipart, with the text beside it", async () => {
    const server = recordingServer();
    const file = path.join(dir, "query.png");
    await writeFile(file, Buffer.alloc(123, 1));
    await runSearch({
      url: "http://loupe.test",
      text: "red",
      imagePath: file,
      kinds: ["image"],
      topK: 3,
      fetch: server.fetch,
    });
    expect(server.seen[0]?.contentType).toMatch(/^multipart\/form-data/);
    expect(server.seen[0]?.form).toEqual({ image: 123, text: "red", kinds: "image", topK: "3" });
  });

  it("reports the server's error code and message", async () => {
    const server = recordingServer();
    const error = await runSearch({
      url: "http://loupe.test",
      text: "x",
      topK: 500,
      fetch: server.fetch,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).message).toBe(
      "Search failed (400 invalid_request): topK must be an integer from 1 to 100; got 500.",
    );
  });

  it("says how to fix a missing query, a bad filter, a missing file and an unreachable server", async () => {
    await expect(runSearch({})).rejects.toThrow(ValidationError);
    await expect(runSearch({ text: "x", filter: "tenant == 'a'" })).rejects.toThrow(/--filter must be JSON/);
    await expect(runSearch({ imagePath: path.join(dir, "missing.png") })).rejects.toThrow(
      /Cannot read the image/,
    );
    const url = `http://127.0.0.1:${await findFreePort()}`;
    await expect(runSearch({ url, text: "x" })).rejects.toThrow(/Cannot reach Loupe at .*loupe serve/);
    await expect(runSearch({ url, text: "x", tenant: "t" })).rejects.toThrow(
      /--tenant applies in-process only/,
    );
  });

  it("prints an aligned table with spans, tags and triple questions", () => {
    const table = formatSearchTable(rows);
    const lines = table.trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^#\s+id\s+kind\s+score\s+start–end\s+text \/ tags \/ question$/);
    expect(lines[1]).toMatch(/^1\s+img_aaa\s+image\s+0\.9123\s+red, circle$/);
    expect(lines[2]).toMatch(/^2\s+seg_bbb\s+video_segment\s+0\.5000\s+2\.0–4\.5s$/);
    expect(lines[3]).toContain("Q: What color is the circle? A: red");
    // Columns line up: every id starts at the same offset.
    expect(new Set(lines.slice(1).map((line) => line.indexOf("_") - 3)).size).toBe(1);
    expect(formatSearchTable([])).toBe("No results.\n");
  });

  it("shows the first OCR line that matched the query, before tags", () => {
    const table = formatSearchTable([
      {
        kind: "image",
        id: "img_ddd",
        score: 0.0328,
        metadata: { tags: ["dialog"] },
        textMatches: [{ text: "E1234: license expired" }, { text: "license" }],
      },
    ]);
    expect(table.trimEnd().split("\n")[1]).toMatch(
      /^1\s+img_ddd\s+image\s+0\.0328\s+“E1234: license expired”$/,
    );
  });
});
