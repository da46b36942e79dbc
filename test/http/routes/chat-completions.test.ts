/**
 * POST /v1/chat/completions and GET /v1/models route logic against a scripted chain: how OpenAI
 * messages become the chain's request (history, images from data URLs and fetched http URLs), model
 * names, limits, the completion and chunk formats with `[DONE]`, the `loupe` extra field, and errors —
 * checked on the wire and through the official `openai` client. The real chain is exercised in
 * test/http/chat.int.test.ts.
 */
import { Hono } from "hono";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaError } from "../../../src/errors.ts";
import type { AppEnv } from "../../../src/http/context.ts";
import { ANSWER_RESET_NOTE, createChatCompletionsRoute } from "../../../src/http/routes/chat-completions.ts";
import { createModelsRoute } from "../../../src/http/routes/models.ts";
import type { ChatResult } from "../../../src/rag/types.ts";
import { type HostileServer, startHostileServer } from "../../helpers/hostile-servers.ts";
import {
  PNG_BYTES,
  PNG_DATA_URL,
  routeApp,
  ScriptedChain,
  STORED_ID,
  sampleEvents,
  sampleResult,
  testConfig,
} from "./chat-fixtures.ts";

function completionsApp(chain: ScriptedChain, env: Record<string, string> = {}): Hono<AppEnv> {
  const route = new Hono<AppEnv>()
    .route("/", createChatCompletionsRoute({ chain, config: testConfig(env) }))
    .route("/", createModelsRoute({ chain }));
  return routeApp(route);
}

function post(app: Hono<AppEnv>, body: unknown) {
  return app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "req-2" },
    body: JSON.stringify(body),
  });
}

/** The `data:` payloads of an OpenAI stream, `[DONE]` kept as a string. */
function dataLines(text: string): unknown[] {
  return text
    .split("\n\n")
    .filter((block) => block.startsWith("data: "))
    .map((block) => block.slice(6))
    .map((data) => (data === "[DONE]" ? data : (JSON.parse(data) as unknown)));
}

interface ChunkShape {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: Array<{ index: number; delta: { role?: string; content?: string }; finish_reason: string | null }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  loupe?: { citations: unknown[]; confidence: number; answer?: string };
}

function openaiClient(app: Hono<AppEnv>): OpenAI {
  return new OpenAI({
    apiKey: "unused",
    baseURL: "http://loupe.test/v1",
    maxRetries: 0,
    fetch: (url, init) => Promise.resolve(app.request(String(url), init as RequestInit)),
  });
}

const result = sampleResult("A red circle [img_0123456789abcdef0123456789abcdef].");

describe("GET /v1/models", () => {
  it("lists the chain's model names in OpenAI's list format", async () => {
    const response = await completionsApp(new ScriptedChain({ events: [] })).request("/v1/models");
    expect(response.status).toBe(200);
    const body = (await response.json()) as { object: string; data: Array<Record<string, unknown>> };
    expect(body.object).toBe("list");
    expect(body.data.map((model) => model.id)).toEqual(["loupe", "loupe-offline"]);
    for (const model of body.data) {
      expect(model).toMatchObject({ object: "model", owned_by: "loupe" });
      expect(Number.isInteger(model.created)).toBe(true);
    }
  });

  it("retrieves one model, and answers 404 model_not_found for another", async () => {
    const app = completionsApp(new ScriptedChain({ events: [] }));
    expect(((await (await app.request("/v1/models/loupe-offline")).json()) as { id: string }).id).toBe(
      "loupe-offline",
    );
    const missing = await app.request("/v1/models/gpt-4o");
    expect(missing.status).toBe(404);
    const body = (await missing.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("model_not_found");
    expect(body.error.message).toBe(
      'Model "gpt-4o" is not served here; allowed models: loupe, loupe-offline.',
    );
  });

  it("the openai client lists them", async () => {
    const client = openaiClient(completionsApp(new ScriptedChain({ events: [] })));
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(["loupe", "loupe-offline"]);
  });
});

describe("POST /v1/chat/completions: requests", () => {
  it("the last user message is the question; earlier turns are history with their images and cited ids", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(completionsApp(chain), {
      model: "loupe",
      messages: [
        { role: "system", content: "You are a pirate." },
        {
          role: "user",
          content: [
            { type: "text", text: "What is in" },
            { type: "text", text: "this picture?" },
            { type: "image_url", image_url: { url: PNG_DATA_URL, detail: "low" } },
          ],
        },
        { role: "assistant", content: `A red circle [${STORED_ID}] next to [att_1].` },
        {
          role: "user",
          content: [
            { type: "text", text: "Is it bigger than this one?" },
            { type: "image_url", image_url: { url: STORED_ID } },
          ],
        },
      ],
      temperature: 0.3,
      max_tokens: 50,
      top_p: 0.9,
      user: "someone",
      loupe: { kinds: ["image"], topK: 5, filter: [{ field: "source", op: "eq", value: "synth" }] },
    });
    expect(response.status).toBe(200);
    const request = chain.requests[0];
    expect(request?.tenant).toBe("tenant-a");
    expect(request?.composer).toBe("auto");
    expect(request?.question).toBe("Is it bigger than this one?");
    expect(request?.images).toEqual([{ id: STORED_ID }]);
    expect(request?.history).toEqual([
      { role: "user", content: "What is in\nthis picture?", images: [{ bytes: new Uint8Array(PNG_BYTES) }] },
      {
        role: "assistant",
        content: `A red circle [${STORED_ID}] next to [att_1].`,
        citations: [STORED_ID, "att_1"],
      },
    ]);
    expect(request).toMatchObject({
      temperature: 0.3,
      maxTokens: 50,
      kinds: ["image"],
      topK: 5,
      filter: [{ field: "source", op: "eq", value: "synth" }],
    });
  });

  it("loupe-offline asks for the offline composer; max_completion_tokens wins over max_tokens", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    await post(completionsApp(chain), {
      model: "loupe-offline",
      messages: [{ role: "user", content: "q" }],
      max_tokens: 10,
      max_completion_tokens: 20,
    });
    expect(chain.requests[0]).toMatchObject({ composer: "offline", maxTokens: 20 });
  });

  it("an unknown model → 404 model_not_found naming the allowed models", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(completionsApp(chain), {
      model: "gpt-4o",
      messages: [{ role: "user", content: "q" }],
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      error: {
        code: "model_not_found",
        message: 'Model "gpt-4o" is not served here; allowed models: loupe, loupe-offline.',
        requestId: "req-2",
      },
    });
    expect(chain.requests).toHaveLength(0);
  });

  const user = (content: unknown) => ({ role: "user", content });
  it.each([
    ["no model", { messages: [user("q")] }, /model is required: a name from GET \/v1\/models/],
    ["no messages", { model: "loupe", messages: [] }, /at least one user message/],
    [
      "a tool message",
      { model: "loupe", messages: [user("q"), { role: "tool", content: "x" }] },
      /role "tool" is not supported/,
    ],
    [
      "an assistant last",
      { model: "loupe", messages: [user("q"), { role: "assistant", content: "a" }] },
      /last message must be the user's question; got role "assistant"/,
    ],
    [
      "a system message last",
      { model: "loupe", messages: [user("q"), { role: "system", content: "s" }] },
      /got role "system"/,
    ],
    [
      "an image without text",
      { model: "loupe", messages: [user([{ type: "image_url", image_url: { url: PNG_DATA_URL } }])] },
      /messages\[0\] has no text/,
    ],
    [
      "an audio part",
      {
        model: "loupe",
        messages: [user([{ type: "input_audio", input_audio: { data: "", format: "wav" } }])],
      },
      /content part type "input_audio" is not supported; use "text" or "image_url"/,
    ],
    ["n = 2", { model: "loupe", messages: [user("q")], n: 2 }, /n must be 1/],
    ["temperature 5", { model: "loupe", messages: [user("q")], temperature: 5 }, /temperature must be 0–2/],
    ["a long question", { model: "loupe", messages: [user("a".repeat(4001))] }, /at most 4000/],
    [
      "a bad data URL",
      {
        model: "loupe",
        messages: [
          user([
            { type: "text", text: "q" },
            { type: "image_url", image_url: { url: "data:image/png,abc" } },
          ]),
        ],
      },
      /messages\[0\] image 0 is a data URL without base64/,
    ],
    [
      "an image too large",
      {
        model: "loupe",
        messages: [
          user([
            { type: "text", text: "q" },
            {
              type: "image_url",
              image_url: { url: `data:image/png;base64,${Buffer.alloc(3100).toString("base64")}` },
            },
          ]),
        ],
      },
      /the limit is 3000 bytes/,
    ],
    [
      "an assistant image",
      {
        model: "loupe",
        messages: [
          { role: "assistant", content: [{ type: "image_url", image_url: { url: STORED_ID } }] },
          user("q"),
        ],
      },
      /assistant message with images/,
    ],
    [
      "too many images",
      {
        model: "loupe",
        messages: [
          user([
            { type: "text", text: "q" },
            ...Array.from({ length: 3 }, () => ({ type: "image_url", image_url: { url: STORED_ID } })),
          ]),
        ],
      },
      /attaches 3 images; the limit is 2/,
    ],
    [
      "too many turns",
      { model: "loupe", messages: [user("a"), user("b"), user("c"), user("d"), user("q")] },
      /4 earlier turns; the limit is 3/,
    ],
    [
      "an unknown loupe option",
      { model: "loupe", messages: [user("q")], loupe: { tenant: "b" } },
      /loupe: unknown field "tenant"; loupe takes only filter, kinds and topK/,
    ],
  ])("%s → 400", async (_name, body, message) => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(completionsApp(chain), body);
    expect(response.status).toBe(400);
    const json = (await response.json()) as { error: { code: string; message: string } };
    expect(json.error.message).toMatch(message);
    expect(chain.requests).toHaveLength(0);
  });

  it("system and developer messages do not count as turns", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(completionsApp(chain), {
      model: "loupe",
      messages: [
        { role: "system", content: "a" },
        { role: "developer", content: "b" },
        { role: "system", content: "c" },
        { role: "system", content: "d" },
        user("q"),
      ],
    });
    expect(response.status).toBe(200);
    expect(chain.requests[0]?.history).toBeUndefined();
  });
});

describe("POST /v1/chat/completions: http(s) image URLs", () => {
  let server: HostileServer;
  beforeAll(async () => {
    server = await startHostileServer({ host: "127.0.0.1" });
  });
  afterAll(async () => {
    await server.close();
  });

  const ask = (url: string) => ({
    model: "loupe",
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "q" },
          { type: "image_url", image_url: { url } },
        ],
      },
    ],
  });

  it("are fetched when the host is allowed, and reach the chain as bytes", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(
      completionsApp(chain, { LOUPE_URL_ALLOW_HOSTS: "127.0.0.1" }),
      ask(`${server.url}/png`),
    );
    expect(response.status).toBe(200);
    expect(chain.requests[0]?.images).toEqual([{ bytes: new Uint8Array(server.png) }]);
  });

  it("to a private address are refused before any connection", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const before = server.connections();
    const response = await post(completionsApp(chain), ask(`${server.url}/png`));
    expect(response.status).toBe(400);
    const json = (await response.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toBe("url_address_refused");
    expect(json.error.message).toMatch(/only public addresses are fetched/);
    expect(server.connections()).toBe(before);
    expect(chain.requests).toHaveLength(0);
  });

  it("that are not images are refused", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(
      completionsApp(chain, { LOUPE_URL_ALLOW_HOSTS: "127.0.0.1" }),
      ask(`${server.url}/html`),
    );
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(chain.requests).toHaveLength(0);
  });
});

describe("POST /v1/chat/completions: answers", () => {
  it("without stream: one chat.completion with the answer, usage and the loupe field", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents({ ...result, usage: { promptTokens: 11, completionTokens: 7 } }, ["x"]),
    });
    const response = await post(completionsApp(chain), {
      model: "loupe",
      messages: [{ role: "user", content: "q" }],
    });
    const body = (await response.json()) as Record<string, unknown> & {
      choices: unknown[];
      loupe: Record<string, unknown>;
    };
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(body).toMatchObject({
      object: "chat.completion",
      model: "loupe",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: result.answer },
          finish_reason: "stop",
          logprobs: null,
        },
      ],
      usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 },
    });
    expect(body.loupe).toEqual({
      citations: result.citations,
      confidence: result.confidence,
      answered: true,
      verification: result.verification,
      composer: "offline",
      model: "loupe-offline",
      standaloneQuestion: result.standaloneQuestion,
      timings: result.timings,
    });
  });

  it("with stream: chunks whose deltas add up to the answer, loupe on the stop chunk, then [DONE]", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(result, ["A red ", "circle ", "[img_0123456789abcdef0123456789abcdef]."]),
    });
    const response = await post(completionsApp(chain), {
      model: "loupe",
      messages: [{ role: "user", content: "q" }],
      stream: true,
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await response.text();
    expect(text).not.toMatch(/^event:/m);
    const lines = dataLines(text);
    expect(lines.at(-1)).toBe("[DONE]");
    const chunks = lines.slice(0, -1) as ChunkShape[];
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    for (const chunk of chunks)
      expect(chunk).toMatchObject({ object: "chat.completion.chunk", model: "loupe" });
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" });
    const streamed = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    expect(streamed).toBe(result.answer);
    const last = chunks.at(-1);
    expect(last?.choices[0]?.finish_reason).toBe("stop");
    expect(last?.loupe?.citations).toEqual(result.citations);
    expect(last?.loupe?.answer).toBeUndefined();
    expect(
      chunks
        .slice(0, -1)
        .every((chunk) => chunk.choices[0]?.finish_reason === null && chunk.loupe === undefined),
    ).toBe(true);
  });

  it("a tail the chain did not stream (a correction note) is sent as a last delta", async () => {
    const corrected: ChatResult = { ...result, answer: `${result.answer}\n\nNote: the circle is blue.` };
    const chain = new ScriptedChain({ events: sampleEvents(corrected, [result.answer]) });
    const text = await (
      await post(completionsApp(chain), {
        model: "loupe",
        messages: [{ role: "user", content: "q" }],
        stream: true,
      })
    ).text();
    const chunks = dataLines(text).slice(0, -1) as ChunkShape[];
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe(corrected.answer);
  });

  it("an answer reset (the LLM failed mid-answer) says so, streams the offline answer and puts the final one in loupe.answer", async () => {
    const fallback: ChatResult = {
      ...result,
      fallback: { reason: "The LLM endpoint timed out.", code: "llm_timeout" },
    };
    const events = sampleEvents(fallback, [result.answer]);
    events.splice(
      3,
      0,
      { type: "answer-delta", data: { text: "The circle is" } },
      { type: "answer-reset", data: { reason: "timeout" } },
    );
    const chain = new ScriptedChain({ events });
    const text = await (
      await post(completionsApp(chain), {
        model: "loupe",
        messages: [{ role: "user", content: "q" }],
        stream: true,
      })
    ).text();
    const chunks = dataLines(text).slice(0, -1) as ChunkShape[];
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe(
      `The circle is${ANSWER_RESET_NOTE}${result.answer}`,
    );
    const last = chunks.at(-1) as ChunkShape & { loupe: { fallback: unknown } };
    expect(last.loupe.answer).toBe(result.answer);
    expect(last.loupe.fallback).toEqual(fallback.fallback);
  });

  it("stream_options.include_usage adds a usage chunk with no choices before [DONE]", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const text = await (
      await post(completionsApp(chain), {
        model: "loupe",
        messages: [{ role: "user", content: "q" }],
        stream: true,
        stream_options: { include_usage: true },
      })
    ).text();
    const lines = dataLines(text);
    expect(lines.at(-1)).toBe("[DONE]");
    expect(lines.at(-2)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    });
  });

  it("an error mid-stream is a data event with the envelope and no [DONE]", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(result, ["x", "y"]),
      failAt: 4,
      failWith: new MediaError("Attached image 1 could not be decoded."),
    });
    const text = await (
      await post(completionsApp(chain), {
        model: "loupe",
        messages: [{ role: "user", content: "q" }],
        stream: true,
      })
    ).text();
    const lines = dataLines(text);
    expect(lines).not.toContain("[DONE]");
    expect(lines.at(-1)).toEqual({
      error: { code: "media_invalid", message: "Attached image 1 could not be decoded.", requestId: "req-2" },
    });
  });
});

describe("the official openai client", () => {
  it("gets a completion with the loupe field", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const client = openaiClient(completionsApp(chain));
    const completion = await client.chat.completions.create({
      model: "loupe",
      messages: [{ role: "user", content: "What color is the circle?" }],
    });
    expect(completion.choices[0]?.message.content).toBe(result.answer);
    expect((completion as unknown as { loupe: { citations: unknown[] } }).loupe.citations).toEqual(
      result.citations,
    );
  });

  it("streams an answer about an attached image", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(result, ["A red ", "circle ", "[img_0123456789abcdef0123456789abcdef]."]),
    });
    const client = openaiClient(completionsApp(chain));
    const stream = await client.chat.completions.create({
      model: "loupe",
      stream: true,
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is this?" },
            { type: "image_url", image_url: { url: PNG_DATA_URL } },
          ],
        },
      ],
    });
    let text = "";
    let citations: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      const extra = (chunk as unknown as { loupe?: { citations: unknown } }).loupe;
      if (extra !== undefined) citations = extra.citations;
    }
    expect(text).toBe(result.answer);
    expect(citations).toEqual(result.citations);
    expect(chain.requests[0]?.images).toEqual([{ bytes: new Uint8Array(PNG_BYTES) }]);
  });

  it("surfaces Loupe's error messages, before and during a stream", async () => {
    const client = openaiClient(completionsApp(new ScriptedChain({ events: sampleEvents(result, ["x"]) })));
    const refused = client.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: "q" }],
    });
    await expect(refused).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(refused).rejects.toThrow(
      /404 Model "gpt-4o" is not served here; allowed models: loupe, loupe-offline/,
    );

    const failing = new ScriptedChain({
      events: sampleEvents(result, ["x", "y"]),
      failAt: 4,
      failWith: new MediaError("Attached image 1 could not be decoded."),
    });
    const stream = await openaiClient(completionsApp(failing)).chat.completions.create({
      model: "loupe",
      stream: true,
      messages: [{ role: "user", content: "q" }],
    });
    const consume = async () => {
      for await (const _chunk of stream) {
        // Drains the stream until the error.
      }
    };
    await expect(consume()).rejects.toThrow("Attached image 1 could not be decoded.");
  });
});
