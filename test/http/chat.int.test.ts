/**
 * The chat endpoints over real HTTP against a real Loupe (embedded Milvus Lite, the bundled model pack)
 * holding a few generated Shapes World images, its LLM being a local OpenAI-compatible test server: the
 * official `openai` client lists the models, gets an offline answer citing stored images, streams an
 * answer about an attached image (from the LLM, and offline) whose chunks add up to the answer with
 * citations in the `loupe` field, sees the fallback when the LLM fails before or during its answer, and
 * reads Loupe's error messages; POST /v1/chat streams its events in order.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ANSWER_RESET_NOTE } from "../../src/http/routes/chat-completions.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import type { ChatResult, Citation } from "../../src/rag/types.ts";
import { generateDataset, readJsonl } from "../../src/synth/index.ts";
import { messageText, type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";

const root = path.join(import.meta.dirname, "..", "..");
const IMAGE_COUNT = 12;
const LLM_MODEL = "test-llm";

interface VqaLine {
  image: string;
  question: string;
  answer: string;
  type: string;
}
interface SceneLine {
  id: string;
  file: string;
}

interface LoupeExtra {
  citations: Citation[];
  confidence: number;
  answered: boolean;
  composer: string;
  model: string;
  verification: { checked: number };
  answer?: string;
  fallback?: { reason: string; code: string };
}

const CITATION_KEYS = [
  "answer",
  "end",
  "id",
  "kind",
  "mediaUrl",
  "question",
  "score",
  "start",
  "thumbnailUrl",
];

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

function expectCitationShape(citation: Citation): void {
  // `boxes`: the objects the answer is about, when the detection head backs it.
  expect(
    Object.keys(citation)
      .filter((key) => key !== "boxes")
      .sort(),
  ).toEqual(CITATION_KEYS);
  for (const { box, label, score } of citation.boxes ?? []) {
    expect(label.length).toBeGreaterThan(0);
    expect(score).toBeGreaterThan(0);
    expect(
      0 <= box.x0 && box.x0 < box.x1 && box.x1 <= 1 && 0 <= box.y0 && box.y0 < box.y1 && box.y1 <= 1,
    ).toBe(true);
  }
  expect(["image", "video_segment", "triple"]).toContain(citation.kind);
  expect(citation.score).toBeGreaterThanOrEqual(0);
  expect(citation.score).toBeLessThanOrEqual(1);
}

describe("chat endpoints on a running Loupe", () => {
  let workDir: string;
  let loupe: RunningLoupe;
  let llm: OpenAiTestServer;
  let client: OpenAI;
  let storedIds: Set<string>;
  let attached: { dataUrl: string; question: string };

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-chat-int-"));
    const dataset = path.join(workDir, "synth");
    await generateDataset({
      outDir: dataset,
      seed: 2718,
      images: IMAGE_COUNT,
      size: 256,
      format: "png",
      questionsPerType: 1,
      triples: 0,
    });
    llm = await startOpenAiTestServer({ models: [LLM_MODEL] });
    loupe = await startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: path.join(workDir, "data"),
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_LLM_MODEL: LLM_MODEL,
        OPENAI_BASE_URL: llm.url,
        OPENAI_API_KEY: "test-key",
        LOUPE_LLM_MAX_RETRIES: "0",
      },
      cwd: root,
      logger: createLogger({ level: "silent" }),
    });
    const scenes = await readJsonl<SceneLine>(path.join(dataset, "scenes.jsonl"));
    const form = new FormData();
    for (const scene of scenes) {
      form.append(
        "files",
        new File([await readFile(path.join(dataset, scene.file))], `${scene.id}.png`, { type: "image/png" }),
      );
    }
    const ingested = await fetch(`${loupe.url}/v1/images`, { method: "POST", body: form });
    const body = (await ingested.json()) as { items: Array<{ id: string }> };
    expect(ingested.status, JSON.stringify(body).slice(0, 300)).toBe(200);
    storedIds = new Set(body.items.map((item) => item.id));
    expect(storedIds.size).toBe(IMAGE_COUNT);

    const vqa = await readJsonl<VqaLine>(path.join(dataset, "vqa.jsonl"));
    const colorQuestion = vqa.find((line) => line.type === "color");
    if (colorQuestion === undefined) throw new Error("the dataset has a color question");
    const scene = scenes.find((line) => line.id === colorQuestion.image);
    if (scene === undefined) throw new Error(`no scene ${colorQuestion.image}`);
    const bytes = await readFile(path.join(dataset, scene.file));
    attached = {
      dataUrl: `data:image/png;base64,${bytes.toString("base64")}`,
      question: colorQuestion.question,
    };

    client = new OpenAI({ apiKey: "unused", baseURL: `${loupe.url}/v1`, maxRetries: 0 });
  }, 300_000);

  afterAll(async () => {
    await loupe?.stop();
    await llm?.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("the openai client lists the model names", async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(["loupe", "loupe-offline"]);
  });

  it("the openai client gets an offline answer about the corpus that cites stored images", async () => {
    const completion = await client.chat.completions.create({
      model: "loupe-offline",
      messages: [
        { role: "system", content: "Answer briefly." },
        { role: "user", content: "Which images show a circle?" },
      ],
    });
    const answer = completion.choices[0]?.message.content ?? "";
    expect(answer.length).toBeGreaterThan(0);
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.model).toBe("loupe-offline");
    const extra = (completion as unknown as { loupe: LoupeExtra }).loupe;
    expect(extra.composer).toBe("offline");
    expect(extra.model).toBe("loupe-offline");
    expect(extra.citations.length).toBeGreaterThan(0);
    for (const citation of extra.citations) {
      expectCitationShape(citation);
      expect(storedIds.has(citation.id)).toBe(true);
      expect(answer).toContain(`[${citation.id}]`);
      expect(citation.mediaUrl).toBe(`/v1/media/${citation.id}`);
    }
  });

  const attachedMessages = (): OpenAI.ChatCompletionMessageParam[] => [
    {
      role: "user",
      content: [
        { type: "text", text: attached.question },
        { type: "image_url", image_url: { url: attached.dataUrl } },
      ],
    },
  ];

  /** Streams a completion with the openai client; returns the text, the chunk count and the loupe field. */
  async function streamCompletion(model: string, extra: { include_usage?: boolean } = {}) {
    const stream = await client.chat.completions.create({
      model,
      stream: true,
      messages: attachedMessages(),
      ...(extra.include_usage === true ? { stream_options: { include_usage: true } } : {}),
    });
    let text = "";
    let chunks = 0;
    let loupeField: LoupeExtra | undefined;
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      chunks += 1;
      expect(chunk.object).toBe("chat.completion.chunk");
      expect(chunk.model).toBe(model);
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
      const found = (chunk as unknown as { loupe?: LoupeExtra }).loupe;
      if (found !== undefined) loupeField = found;
    }
    expect(finish).toBe("stop");
    if (loupeField === undefined) throw new Error("no chunk carried the loupe field");
    for (const citation of loupeField.citations) expectCitationShape(citation);
    return { text, chunks, loupe: loupeField, usage };
  }

  it("the openai client streams the LLM's answer about an attached image, citations in loupe", async () => {
    llm.reset();
    const deltas = ["The hexagon ", "in the image ", "is shown [att_1]."];
    llm.reply({ deltas, usage: { promptTokens: 120, completionTokens: 9 } });
    const streamed = await streamCompletion("loupe", { include_usage: true });
    expect(streamed.chunks).toBeGreaterThanOrEqual(deltas.length + 2);
    // The LLM's deltas arrive as they are; a note the verify step appends follows them.
    expect(streamed.text.startsWith(deltas.join(""))).toBe(true);
    expect(streamed.loupe.answer).toBeUndefined();
    expect(streamed.loupe.composer).toBe("llm");
    expect(streamed.loupe.model).toBe(LLM_MODEL);
    expect(streamed.loupe.citations.find((citation) => citation.id === "att_1")).toMatchObject({
      kind: "image",
      mediaUrl: null,
      score: 1,
    });
    expect(streamed.usage).toEqual({ prompt_tokens: 120, completion_tokens: 9, total_tokens: 129 });
    const sent = llm.chatRequests.at(-1)?.body?.messages ?? [];
    expect(sent.map((message) => messageText(message)).join("\n")).toContain(attached.question);
  });

  it("the openai client streams an offline answer about an attached image that adds up to the whole answer", async () => {
    const streamed = await streamCompletion("loupe-offline");
    expect(streamed.loupe.composer).toBe("offline");
    expect(streamed.loupe.answer).toBeUndefined();
    expect(streamed.text).toContain("[att_1]");
    // The same turn without streaming gives the same text (the offline composer is deterministic).
    const whole = await client.chat.completions.create({
      model: "loupe-offline",
      messages: attachedMessages(),
    });
    expect(streamed.text).toBe(whole.choices[0]?.message.content);
  });

  it("an LLM failure before its answer: the offline answer, with the fallback in loupe", async () => {
    llm.reset();
    llm.reply({ status: 500, errorMessage: "the model is overloaded" });
    const completion = await client.chat.completions.create({ model: "loupe", messages: attachedMessages() });
    const extra = (completion as unknown as { loupe: LoupeExtra }).loupe;
    expect(extra.composer).toBe("offline");
    expect(extra.fallback?.code).toMatch(/^llm_/);
    const offline = await client.chat.completions.create({
      model: "loupe-offline",
      messages: attachedMessages(),
    });
    expect(completion.choices[0]?.message.content).toBe(offline.choices[0]?.message.content);
  });

  it("an LLM failure mid-answer: the stream says so, the offline answer follows, loupe.answer holds it", async () => {
    llm.reset();
    llm.reply({ deltas: ["The hexagon ", "is ", "never finished"], dropAfterDeltas: 2 });
    const streamed = await streamCompletion("loupe");
    const offline = await client.chat.completions.create({
      model: "loupe-offline",
      messages: attachedMessages(),
    });
    const offlineText = offline.choices[0]?.message.content ?? "";
    expect(streamed.loupe.composer).toBe("offline");
    expect(streamed.loupe.fallback).toBeDefined();
    expect(streamed.loupe.answer).toBe(offlineText);
    expect(streamed.text).toBe(`The hexagon is ${ANSWER_RESET_NOTE}${offlineText}`);
  });

  it("the openai client reads Loupe's error messages", async () => {
    const refused = client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "q" }],
    });
    await expect(refused).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(refused).rejects.toThrow(
      /Model "gpt-4o" is not served here; allowed models: loupe, loupe-offline/,
    );
    const noText = client.chat.completions.create({
      model: "loupe",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: attached.dataUrl } }] }],
    });
    await expect(noText).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(noText).rejects.toThrow(/has no text/);
  });

  it("POST /v1/chat with stream: true sends retrieval → grounding → citation* → answer-delta+ → done", async () => {
    const response = await fetch(`${loupe.url}/v1/chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        question: attached.question,
        images: [attached.dataUrl],
        stream: true,
        composer: "offline",
      }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = parseSse(await response.text());
    const names = events.map((event) => event.event).join(" ");
    expect(names).toMatch(/^retrieval grounding( citation)*( answer-delta)+ done$/);
    const done = events.at(-1)?.data as ChatResult;
    const deltas = events
      .filter((event) => event.event === "answer-delta")
      .map((event) => (event.data as { text: string }).text)
      .join("");
    expect(deltas).toBe(done.answer);
    const cited = events
      .filter((event) => event.event === "citation")
      .map((event) => (event.data as Citation).id);
    expect(cited.sort()).toEqual(done.citations.map((citation) => citation.id).sort());
    for (const citation of done.citations) expectCitationShape(citation);
  });

  it("POST /v1/chat as multipart with an uploaded image answers one JSON", async () => {
    const form = new FormData();
    form.append("question", attached.question);
    const bytes = Buffer.from(attached.dataUrl.slice("data:image/png;base64,".length), "base64");
    form.append("files", new File([bytes], "attached.png", { type: "image/png" }));
    form.append("payload", JSON.stringify({ kinds: ["image"], topK: 3, composer: "offline" }));
    const response = await fetch(`${loupe.url}/v1/chat`, { method: "POST", body: form });
    const result = (await response.json()) as ChatResult;
    expect(response.status, JSON.stringify(result).slice(0, 300)).toBe(200);
    expect(result.answer.length).toBeGreaterThan(0);
    expect(result.evidence.some((evidence) => evidence.attachment && evidence.citation.id === "att_1")).toBe(
      true,
    );
    expect(
      result.evidence
        .filter((evidence) => !evidence.attachment)
        .every((evidence) => evidence.citation.kind === "image"),
    ).toBe(true);
  });
});
