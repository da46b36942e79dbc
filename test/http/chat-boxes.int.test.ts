/**
 * Boxes in answers through every way a client reads one, over a real Milvus Lite with the bundled pack: the
 * `citation` and `done` events of POST /v1/chat, the `loupe` field of /v1/chat/completions (one JSON and
 * the streamed stop chunk) and of /v1/responses, and the MCP `ask` tool's result all carry the boxes of the
 * objects the answer is about, with the disagreement between the detection head and the VQA head in the
 * verification; `kinds: ["region"]` is accepted by chat and its region hits are cited with their box.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatResult, Citation, Verification } from "../../src/rag/types.ts";
import { createRng, deriveSeed, renderScene, type Scene, sampleScene } from "../../src/synth/index.ts";
import { type IngestHarness, multipart, startIngestHarness } from "../ingest/harness.ts";

/** Scene 8 of seed 4711: three objects, which the VQA head reads as two and the detection head finds all of. */
const DISAGREEING_SCENE = 8;

interface LoupeExtra {
  citations: Citation[];
  verification: Verification;
  answer?: string;
}

/** Named SSE events of a response body, in order (comments skipped). */
function parseSse(text: string): Array<{ event: string; data: unknown }> {
  return text
    .split("\n\n")
    .filter((block) => block.trim().length > 0 && !block.startsWith(":"))
    .map((block) => {
      const lines = block.split("\n");
      return {
        event: lines.find((line) => line.startsWith("event: "))?.slice(7) ?? "",
        data: JSON.parse(lines.find((line) => line.startsWith("data: "))?.slice(6) ?? "null") as unknown,
      };
    });
}

/** The `data:` payloads of an OpenAI-style stream, without `[DONE]`. */
function dataEvents(text: string): unknown[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith("data: ") && line !== "data: [DONE]")
    .map((line) => JSON.parse(line.slice(6)) as unknown);
}

describe("boxes in chat answers over HTTP and MCP (real Lite, the bundled pack)", () => {
  let harness: IngestHarness;
  let scene: Scene;
  let dataUrl: string;
  let storedId: string;
  let mcp: Client;

  const post = async (route: string, body: unknown): Promise<Response> =>
    harness.app.request(route, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  const json = async <T>(response: Response): Promise<T> => {
    const text = await response.text();
    expect(response.status, text.slice(0, 400)).toBe(200);
    return JSON.parse(text) as T;
  };

  /** The boxes are the scene's three objects, normalized to the image. */
  const expectSceneBoxes = (citation: Citation | undefined) => {
    expect(citation?.id).toBe("att_1");
    const boxes = citation?.boxes ?? [];
    expect(boxes).toHaveLength(scene.objects.length);
    for (const { box, label, attributes, score } of boxes) {
      expect(
        0 <= box.x0 && box.x0 < box.x1 && box.x1 <= 1 && 0 <= box.y0 && box.y0 < box.y1 && box.y1 <= 1,
      ).toBe(true);
      const centre = { x: (box.x0 + box.x1) / 2, y: (box.y0 + box.y1) / 2 };
      const nearest = scene.objects.reduce((best, object) =>
        Math.hypot(object.x - centre.x, object.y - centre.y) <
        Math.hypot(best.x - centre.x, best.y - centre.y)
          ? object
          : best,
      );
      expect(Math.hypot(nearest.x - centre.x, nearest.y - centre.y)).toBeLessThan(nearest.r / 2);
      expect(attributes.color).toBe(nearest.color);
      expect(label.length).toBeGreaterThan(0);
      expect(score).toBeGreaterThan(0);
    }
  };

  const expectDisagreement = (verification: Verification | undefined) => {
    expect(verification?.disagreements).toEqual([
      expect.objectContaining({
        question: "How many objects are there?",
        evidenceId: "att_1",
        detector: expect.objectContaining({ answer: "3" }),
        vqa: expect.objectContaining({ answer: "2" }),
        followed: "detector",
      }),
    ]);
  };

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "chat-boxes" });
    scene = sampleScene(createRng(deriveSeed(4711, "scene", DISAGREEING_SCENE)));
    const rendered = await renderScene(scene, {
      size: 256,
      format: "jpeg",
      seed: deriveSeed(4711, "render", DISAGREEING_SCENE),
    });
    dataUrl = `data:image/jpeg;base64,${Buffer.from(rendered.data).toString("base64")}`;
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      body: multipart({
        files: [{ name: "scene.jpg", bytes: Buffer.from(rendered.data), type: "image/jpeg" }],
      }),
    });
    storedId = (await json<{ items: Array<{ id: string }> }>(response)).items[0]?.id ?? "";
    mcp = new Client({ name: "loupe-test", version: "1.0.0" });
    await mcp.connect(
      new StreamableHTTPClientTransport(new URL("http://localhost/mcp"), {
        fetch: async (url, init) => harness.app.fetch(new Request(url, init)),
      }),
    );
  }, 300_000);

  afterAll(async () => {
    await mcp?.close();
    await harness?.dispose();
  });

  it("POST /v1/chat streams the boxes in the citation event and the disagreement in done", async () => {
    const response = await post("/v1/chat", {
      question: "How many objects are there?",
      images: [dataUrl],
      stream: true,
    });
    expect(response.status).toBe(200);
    const events = parseSse(await response.text());
    const citation = events.find((event) => event.event === "citation")?.data as Citation | undefined;
    expectSceneBoxes(citation);
    const done = events.at(-1);
    expect(done?.event).toBe("done");
    const result = done?.data as ChatResult;
    expect(result.answer).toMatch(/^There are 3 objects \[att_1\]\./);
    expect(result.citations[0]?.boxes).toEqual(citation?.boxes);
    expectDisagreement(result.verification);
    // The grounding event shows the finding's source and both heads' answers.
    const grounding = events.find((event) => event.event === "grounding")?.data as {
      findings: Array<{ source: string; disagreement?: { vqa: { answer: string } } }>;
    };
    expect(grounding.findings[0]).toMatchObject({
      source: "detector",
      disagreement: { vqa: { answer: "2" } },
    });
  }, 60_000);

  it("/v1/chat/completions carries the boxes in its loupe field, in one JSON and on the stop chunk", async () => {
    const messages = [
      {
        role: "user",
        content: [
          { type: "text", text: "How many objects are there?" },
          { type: "image_url", image_url: { url: dataUrl } },
        ],
      },
    ];
    const completion = await json<{ loupe: LoupeExtra }>(
      await post("/v1/chat/completions", { model: "loupe-offline", messages }),
    );
    expectSceneBoxes(completion.loupe.citations[0]);
    expectDisagreement(completion.loupe.verification);

    const streamed = await post("/v1/chat/completions", { model: "loupe-offline", messages, stream: true });
    expect(streamed.status).toBe(200);
    const chunks = dataEvents(await streamed.text()) as Array<{
      choices: Array<{ finish_reason: string | null }>;
      loupe?: LoupeExtra;
    }>;
    const stop = chunks.find((chunk) => chunk.choices[0]?.finish_reason === "stop");
    expectSceneBoxes(stop?.loupe?.citations[0]);
    expect(stop?.loupe?.citations[0]?.boxes).toEqual(completion.loupe.citations[0]?.boxes);
  }, 60_000);

  it("/v1/responses carries the boxes in its loupe field", async () => {
    const body = await json<{ loupe: LoupeExtra }>(
      await post("/v1/responses", {
        model: "loupe-offline",
        input: [
          {
            role: "user",
            content: [
              { type: "input_text", text: "What is in the top-left?" },
              { type: "input_image", image_url: dataUrl },
            ],
          },
        ],
      }),
    );
    const [citation] = body.loupe.citations;
    expect(citation?.id).toBe("att_1");
    const truth = scene.objects.filter((object) => object.x < 0.5 && object.y < 0.5);
    expect(citation?.boxes ?? []).toHaveLength(truth.length);
    for (const { box } of citation?.boxes ?? []) {
      expect((box.x0 + box.x1) / 2).toBeLessThan(0.5);
      expect((box.y0 + box.y1) / 2).toBeLessThan(0.5);
    }
  }, 60_000);

  it("the MCP ask tool's result carries the boxes and the disagreement", async () => {
    const result = (await mcp.callTool({
      name: "ask",
      arguments: { question: "How many objects are there?", images: [dataUrl] },
    })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    const answer = result.structuredContent as unknown as ChatResult;
    expectSceneBoxes(answer.citations[0]);
    expectDisagreement(answer.verification);
  }, 60_000);

  it("chat takes kinds [region] and cites the region hits with their box and parent", async () => {
    const [object] = scene.objects as [Scene["objects"][number]];
    const result = await json<ChatResult>(
      await post("/v1/chat", {
        question: `Find a ${object.size} ${object.color} ${object.shape}`,
        kinds: ["region"],
      }),
    );
    const region = result.citations[0];
    expect(region).toMatchObject({ kind: "region", parentId: storedId, mediaUrl: `/v1/media/${region?.id}` });
    expect(region?.boxes?.[0]).toMatchObject({
      label: object.shape,
      attributes: { color: object.color, size: object.size },
    });
    // The region's media is its parent's image.
    const media = await harness.app.request(region?.mediaUrl ?? "");
    expect(media.status).toBe(200);
    expect(media.headers.get("content-type")).toBe("image/jpeg");

    const refused = await post("/v1/chat", { question: "Find a star", kinds: ["regions"] });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain("region");
  }, 60_000);
});
