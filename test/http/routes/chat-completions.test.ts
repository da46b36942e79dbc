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
import { createMediaLinkSigner, type MediaLinkSigner } from "../../../src/auth/media-link-signer.ts";
import { MediaError } from "../../../src/errors.ts";
import { SOURCES_HEADING } from "../../../src/http/chat-sources.ts";
import type { AppEnv } from "../../../src/http/context.ts";
import {
  ANSWER_RESET_NOTE,
  callerLabels,
  createChatCompletionsRoute,
} from "../../../src/http/routes/chat-completions.ts";
import { createModelsRoute } from "../../../src/http/routes/models.ts";
import { createLogger } from "../../../src/logger.ts";
import type { ChatResult, Citation } from "../../../src/rag/types.ts";
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

function completionsApp(
  chain: ScriptedChain,
  env: Record<string, string> = {},
  { mediaLinks, keyId }: { mediaLinks?: MediaLinkSigner; keyId?: string } = {},
): Hono<AppEnv> {
  const route = new Hono<AppEnv>();
  if (keyId !== undefined) {
    // As the authentication middleware sets it for a request that carried a key.
    route.use(async (c, next) => {
      c.set("principal", { keyId, tenant: "tenant-a", scopes: new Set(["read"]), publishable: false });
      await next();
    });
  }
  route
    .route("/", createChatCompletionsRoute({ chain, config: testConfig(env), mediaLinks }))
    .route("/", createModelsRoute({ chain }));
  return routeApp(route);
}

function post(app: Hono<AppEnv>, body: unknown, headers: Record<string, string> = {}) {
  return app.request("http://loupe.test/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "req-2", ...headers },
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
      /content part type "input_audio" is not supported; use "text" or "image_url" \(an image as a data URL, an http\(s\) URL or a stored item's id\)\. Loupe hears no audio: send a transcript as a text part/,
    ],
    [
      "a file part",
      {
        model: "loupe",
        messages: [
          user([
            { type: "text", text: "summarize" },
            { type: "file", file: { file_data: "data:application/pdf;base64,JVBERi0=", filename: "a.pdf" } },
          ]),
        ],
      },
      /content part type "file" is not supported; use "text" or "image_url" .*Loupe reads no files: send a document's text as a text part/,
    ],
    [
      "a bad loupe.sources",
      { model: "loupe", messages: [user("q")], loupe: { sources: "footnotes" } },
      /sources must be annotations or markdown/,
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
      /loupe: unknown field "tenant"; loupe takes only filter, kinds, topK and sources/,
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

describe("POST /v1/chat/completions: requests as chat UIs send them", () => {
  it("unknown top-level, message and part fields (user, seed, metadata, reasoning, cache_control, …) are ignored", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(completionsApp(chain), {
      model: "loupe",
      user: "user-42",
      seed: 7,
      metadata: { conversation: "c-1" },
      reasoning: { effort: "low" },
      reasoning_effort: "low",
      cache_control: { type: "ephemeral" },
      top_p: 0.5,
      frequency_penalty: 0,
      presence_penalty: 0,
      stop: ["\n\n"],
      logit_bias: {},
      parallel_tool_calls: false,
      response_format: { type: "text" },
      messages: [
        { role: "system", content: "Be brief.", cache_control: { type: "ephemeral" } },
        { role: "user", name: "ada", content: "Earlier question" },
        { role: "assistant", content: "Earlier answer.", tool_calls: [], refusal: null },
        {
          role: "user",
          name: "ada",
          content: [
            { type: "text", text: "What color is it?", cache_control: { type: "ephemeral" } },
            { type: "image_url", image_url: { url: STORED_ID, detail: "high" }, cache_control: {} },
          ],
        },
      ],
    });
    expect(response.status).toBe(200);
    expect(chain.requests).toHaveLength(1);
    expect(chain.requests[0]).toMatchObject({
      question: "What color is it?",
      images: [{ id: STORED_ID }],
      history: [
        { role: "user", content: "Earlier question" },
        { role: "assistant", content: "Earlier answer." },
      ],
    });
  });

  it("an earlier answer comes back without the Sources list Loupe appended to it", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const earlier = `A red circle [${STORED_ID}].`;
    const response = await post(completionsApp(chain), {
      model: "loupe",
      messages: [
        { role: "user", content: "What is shown?" },
        {
          role: "assistant",
          content: `${earlier}\n\n${SOURCES_HEADING}\n\n1. [Image ${STORED_ID}](http://loupe.test/v1/media/${STORED_ID}?exp=1&kid=key_0123456789abcdef&sig=x)`,
        },
        { role: "user", content: "And its size?" },
      ],
    });
    expect(response.status).toBe(200);
    expect(chain.requests[0]?.history?.[1]).toEqual({
      role: "assistant",
      content: earlier,
      citations: [STORED_ID],
    });
  });

  it("callerLabels: the user field and Open WebUI's ids, without control characters, capped at 128 code points", () => {
    const headers: Record<string, string> = {
      "x-openwebui-user-id": "3f2c\u0000-\u202e-uuid",
      "x-openwebui-chat-id": `chat-${"é".repeat(300)}`,
    };
    const labels = callerLabels({ user: "user\n42\u200b", header: (name) => headers[name] });
    expect(labels).toEqual({
      user: "user42",
      openWebUiUserId: "3f2c--uuid",
      openWebUiChatId: `chat-${"é".repeat(123)}`,
    });
    expect(callerLabels({ user: { id: 1 }, header: () => undefined })).toBeUndefined();
    expect(callerLabels({ user: " \u0007 ", header: () => undefined })).toBeUndefined();
  });

  it("records the caller labels on the request's log lines, never as an identity", async () => {
    const lines: string[] = [];
    const logger = createLogger({
      level: "info",
      destination: { write: (line: string) => lines.push(line) } as unknown as NodeJS.WritableStream,
    });
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const app = new Hono<AppEnv>();
    app.use(async (c, next) => {
      c.set("requestId", "req-9");
      c.set("logger", logger);
      c.set("tenant", "tenant-a");
      c.set("principal", { keyId: null, tenant: "tenant-a", scopes: new Set(["read"]), publishable: false });
      await next();
    });
    app.route("/", createChatCompletionsRoute({ chain, config: testConfig() }));
    const response = await app.request("/v1/chat/completions", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-openwebui-user-id": "u-1",
        "x-openwebui-chat-id": "c-1",
      },
      body: JSON.stringify({ model: "loupe", user: "ada", messages: [{ role: "user", content: "q" }] }),
    });
    expect(response.status).toBe(200);
    const logged = lines.map((line) => JSON.parse(line) as { caller?: unknown; msg: string });
    expect(logged.find((line) => line.msg === "chat request from a labelled caller")?.caller).toEqual({
      user: "ada",
      openWebUiUserId: "u-1",
      openWebUiChatId: "c-1",
    });
    expect(chain.requests[0]?.tenant).toBe("tenant-a");
  });
});

/** A completion's first choice, as the wire has it. */
interface WireMessage {
  content: string;
  annotations: Array<{
    type: string;
    url_citation: { url: string; title: string; start_index: number; end_index: number };
  }>;
}

async function completionMessage(response: Response): Promise<WireMessage> {
  expect(response.status).toBe(200);
  const body = (await response.json()) as { choices: Array<{ message: WireMessage }> };
  return body.choices[0]?.message as WireMessage;
}

const SEGMENT_ID = "seg_00112233445566778899aabbccddeeff";
const segmentCitation: Citation = {
  id: SEGMENT_ID,
  kind: "video_segment",
  mediaUrl: `/v1/media/${SEGMENT_ID}`,
  thumbnailUrl: `/v1/media/${SEGMENT_ID}/thumbnail`,
  start: 72.5,
  end: 78,
  question: null,
  answer: null,
  score: 0.6,
};
const attachment: Citation = {
  id: "att_1",
  kind: "image",
  mediaUrl: null,
  thumbnailUrl: null,
  start: null,
  end: null,
  question: null,
  answer: null,
  score: 1,
};

describe("POST /v1/chat/completions: sources", () => {
  const [stored] = result.citations as [Citation];
  const cited: ChatResult = {
    ...result,
    answer: `The attached image [att_1] looks like [${STORED_ID}]; the clip shows it moving 😀 [${SEGMENT_ID}].`,
    citations: [attachment, stored, segmentCitation],
  };
  const ask = { model: "loupe", messages: [{ role: "user", content: "q" }] };

  it("each cited stored item is a url_citation with an absolute URL, a title and the span of its [id] mark", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(cited, ["x"]) });
    const message = await completionMessage(await post(completionsApp(chain), ask));
    expect(message.content).toBe(cited.answer);
    expect(message.annotations).toEqual([
      {
        type: "url_citation",
        url_citation: {
          url: `http://loupe.test/v1/media/${STORED_ID}`,
          title: `Image ${STORED_ID}`,
          start_index: cited.answer.indexOf(`[${STORED_ID}]`),
          end_index: cited.answer.indexOf(`[${STORED_ID}]`) + STORED_ID.length + 2,
        },
      },
      {
        type: "url_citation",
        url_citation: {
          url: `http://loupe.test/v1/media/${SEGMENT_ID}#t=72.5,78`,
          title: `Video segment ${SEGMENT_ID}, 1:12–1:18`,
          // Counted in code points: the emoji before the mark is one, not two UTF-16 units.
          start_index: cited.answer.indexOf(`[${SEGMENT_ID}]`) - 1,
          end_index: cited.answer.indexOf(`[${SEGMENT_ID}]`) - 1 + SEGMENT_ID.length + 2,
        },
      },
    ]);
    const points = Array.from(message.content);
    const spans = message.annotations.map(({ url_citation }) =>
      points.slice(url_citation.start_index, url_citation.end_index).join(""),
    );
    expect(spans).toEqual([`[${STORED_ID}]`, `[${SEGMENT_ID}]`]);
  });

  it("links go under LOUPE_PUBLIC_URL when it is set, whatever Host the request came with", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const message = await completionMessage(
      await post(completionsApp(chain, { LOUPE_PUBLIC_URL: "https://rag.example.com/loupe/" }), ask, {
        host: "internal:8080",
      }),
    );
    expect(message.annotations[0]?.url_citation.url).toBe(
      `https://rag.example.com/loupe/v1/media/${STORED_ID}`,
    );
  });

  it("with an API key, links are signed for the caller's key and the signer accepts exactly them", async () => {
    const signer = createMediaLinkSigner({ secret: async () => "s".repeat(32), ttlSeconds: 600 });
    const keyId = "key_0123456789abcdef";
    const chain = new ScriptedChain({ events: sampleEvents(cited, ["x"]) });
    const before = Math.floor(Date.now() / 1000);
    const message = await completionMessage(
      await post(completionsApp(chain, {}, { mediaLinks: signer, keyId }), ask),
    );
    expect(message.annotations).toHaveLength(2);
    for (const annotation of message.annotations) {
      const url = new URL(annotation.url_citation.url);
      expect(url.origin).toBe("http://loupe.test");
      expect([...url.searchParams.keys()]).toEqual(["exp", "kid", "sig"]);
      expect(url.searchParams.get("kid")).toBe(keyId);
      const expires = Number(url.searchParams.get("exp"));
      expect(expires).toBeGreaterThanOrEqual(before + 600);
      expect(expires).toBeLessThanOrEqual(before + 601);
      const check = (path: string) =>
        signer.verify({
          path,
          keyId,
          expires: String(expires),
          signature: url.searchParams.get("sig") ?? "",
        });
      expect(await check(url.pathname)).toBe("valid");
      expect(await check(`${url.pathname}/thumbnail`)).toBe("invalid");
    }
    expect(new URL(message.annotations[1]?.url_citation.url ?? "").hash).toBe("#t=72.5,78");
  });

  it("without a key (authentication off) links are plain even when a signer is there", async () => {
    const signer = createMediaLinkSigner({
      secret: async () => {
        throw new Error("the secret is not read while authentication is off");
      },
      ttlSeconds: 600,
    });
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const message = await completionMessage(
      await post(completionsApp(chain, {}, { mediaLinks: signer }), ask),
    );
    expect(message.annotations[0]?.url_citation.url).toBe(`http://loupe.test/v1/media/${STORED_ID}`);
  });

  it("loupe.sources markdown appends a Sources list of the linked items; annotations still point at the marks", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(cited, ["x"]) });
    const message = await completionMessage(
      await post(completionsApp(chain), { ...ask, loupe: { sources: "markdown" } }),
    );
    expect(message.content).toBe(
      `${cited.answer}\n\n${SOURCES_HEADING}\n\n1. [Image ${STORED_ID}](http://loupe.test/v1/media/${STORED_ID})\n2. [Video segment ${SEGMENT_ID}, 1:12–1:18](http://loupe.test/v1/media/${SEGMENT_ID}#t=72.5,78)`,
    );
    expect(message.annotations[0]?.url_citation.start_index).toBe(cited.answer.indexOf(`[${STORED_ID}]`));
  });

  it("LOUPE_CHAT_SOURCES=markdown is the default a request can override", async () => {
    const env = { LOUPE_CHAT_SOURCES: "markdown" };
    const byDefault = await completionMessage(
      await post(completionsApp(new ScriptedChain({ events: sampleEvents(result, ["x"]) }), env), ask),
    );
    expect(byDefault.content).toContain(`\n\n${SOURCES_HEADING}\n\n1. [Image ${STORED_ID}](`);
    const overridden = await completionMessage(
      await post(completionsApp(new ScriptedChain({ events: sampleEvents(result, ["x"]) }), env), {
        ...ask,
        loupe: { sources: "annotations" },
      }),
    );
    expect(overridden.content).toBe(result.answer);
  });

  it("an answer citing only attached images has no annotations and no Sources list", async () => {
    const onlyAttached: ChatResult = { ...result, answer: "A red circle [att_1].", citations: [attachment] };
    const chain = new ScriptedChain({ events: sampleEvents(onlyAttached, ["x"]) });
    const message = await completionMessage(
      await post(completionsApp(chain), { ...ask, loupe: { sources: "markdown" } }),
    );
    expect(message).toMatchObject({ content: "A red circle [att_1].", annotations: [] });
  });

  it("streamed: the Sources list is the last delta and the annotations ride on the stop chunk's delta", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(cited, [cited.answer]) });
    const text = await (
      await post(completionsApp(chain), { ...ask, stream: true, loupe: { sources: "markdown" } })
    ).text();
    const chunks = dataLines(text).slice(0, -1) as Array<
      ChunkShape & { choices: Array<{ delta: { annotations?: WireMessage["annotations"] } }> }
    >;
    const content = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    expect(content.startsWith(`${cited.answer}\n\n${SOURCES_HEADING}\n\n1. [Image`)).toBe(true);
    const stop = chunks.at(-1);
    expect(stop?.choices[0]?.finish_reason).toBe("stop");
    const annotations = stop?.choices[0]?.delta.annotations ?? [];
    expect(annotations.map((annotation) => annotation.url_citation.url)).toEqual([
      `http://loupe.test/v1/media/${STORED_ID}`,
      `http://loupe.test/v1/media/${SEGMENT_ID}#t=72.5,78`,
    ]);
    const points = Array.from(content);
    expect(
      points.slice(annotations[0]?.url_citation.start_index, annotations[0]?.url_citation.end_index).join(""),
    ).toBe(`[${STORED_ID}]`);
    expect(chunks.slice(0, -1).every((chunk) => chunk.choices[0]?.delta.annotations === undefined)).toBe(
      true,
    );
  });

  it("streamed after an answer reset: the spans point into the final answer, not the abandoned one", async () => {
    const events = sampleEvents(result, [result.answer]);
    events.splice(
      3,
      0,
      { type: "answer-delta", data: { text: `Broken [${STORED_ID}] then` } },
      { type: "answer-reset", data: { reason: "timeout" } },
    );
    const chain = new ScriptedChain({ events });
    const text = await (await post(completionsApp(chain), { ...ask, stream: true })).text();
    const chunks = dataLines(text).slice(0, -1) as Array<
      ChunkShape & { choices: Array<{ delta: { annotations?: WireMessage["annotations"] } }> }
    >;
    const content = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    const span = chunks.at(-1)?.choices[0]?.delta.annotations?.[0]?.url_citation;
    const finalStart = content.lastIndexOf(result.answer);
    expect(span?.start_index).toBe(finalStart + result.answer.indexOf(`[${STORED_ID}]`));
  });

  it("the official openai client reads the annotations of a completion", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(cited, ["x"]) });
    const completion = await openaiClient(completionsApp(chain)).chat.completions.create({
      model: "loupe",
      messages: [{ role: "user", content: "q" }],
    });
    expect(completion.choices[0]?.message.annotations?.map((annotation) => annotation.type)).toEqual([
      "url_citation",
      "url_citation",
    ]);
  });
});
