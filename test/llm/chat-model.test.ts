import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LlmError } from "../../src/errors.ts";
import { type CreateChatModelOptions, createChatModel } from "../../src/llm/chat-model.ts";
import { type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";

const apiKey = "sk-test-0123456789abcdef";

describe("OpenAI-compatible chat model against a local server", () => {
  let llm: OpenAiTestServer;

  beforeAll(async () => {
    llm = await startOpenAiTestServer({ apiKey });
  });
  afterAll(async () => {
    await llm.close();
  });
  beforeEach(() => llm.reset());

  const model = (options: Partial<CreateChatModelOptions> = {}) =>
    createChatModel({
      model: "test-model",
      baseUrl: llm.url,
      apiKey,
      timeoutMs: 5000,
      maxRetries: 2,
      temperature: 0.3,
      maxTokens: 64,
      retryBaseDelayMs: 20,
      ...options,
    });

  async function failure(promise: Promise<unknown>): Promise<LlmError> {
    try {
      await promise;
    } catch (error) {
      expect(error).toBeInstanceOf(LlmError);
      return error as LlmError;
    }
    throw new Error("the call succeeded but was expected to fail");
  }

  it("streams the deltas in order and reports usage, model and finish reason", async () => {
    llm.reply({
      deltas: ["The circle ", "is ", "red ", "[img_1]."],
      usage: { promptTokens: 42, completionTokens: 4 },
    });
    const deltas: string[] = [];
    const result = await model().complete({
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "What colour is the circle?" },
      ],
      onDelta: (text) => deltas.push(text),
    });
    expect(deltas).toEqual(["The circle ", "is ", "red ", "[img_1]."]);
    expect(result).toEqual({
      text: "The circle is red [img_1].",
      model: "test-model",
      usage: { promptTokens: 42, completionTokens: 4 },
      finishReason: "stop",
      attempts: 1,
    });

    const [request] = llm.chatRequests;
    expect(request?.authorization).toBe("valid");
    expect(request?.body).toMatchObject({
      model: "test-model",
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.3,
      max_tokens: 64,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "What colour is the circle?" },
      ],
    });
  });

  it("relays each delta as it arrives, before the stream ends", async () => {
    llm.reply({ deltas: ["one ", "two ", "three"], deltaDelayMs: 250 });
    const arrivals: Array<{ type: string; at: number }> = [];
    const started = Date.now();
    for await (const event of model().stream({ messages: [{ role: "user", content: "Count." }] })) {
      arrivals.push({ type: event.type === "delta" ? event.text : "done", at: Date.now() - started });
    }
    expect(arrivals.map((arrival) => arrival.type)).toEqual(["one ", "two ", "three", "done"]);
    const first = arrivals[0]?.at ?? Number.NaN;
    const done = arrivals[3]?.at ?? Number.NaN;
    // Two gaps of 250 ms separate the first delta from the end: it was not buffered until the end.
    expect(done - first).toBeGreaterThanOrEqual(400);
  });

  it("applies a request's temperature and caps its token limit at the configured maximum", async () => {
    await model().complete({
      messages: [{ role: "user", content: "Hi" }],
      temperature: 0,
      maxTokens: 10_000,
    });
    await model().complete({ messages: [{ role: "user", content: "Hi" }], maxTokens: 16 });
    expect(llm.chatRequests.map((request) => [request.body?.temperature, request.body?.max_tokens])).toEqual([
      [0, 64],
      [0.3, 16],
    ]);
  });

  it("sends image parts as image_url content with data URLs", async () => {
    const dataUrl = `data:image/png;base64,${Buffer.from("png bytes").toString("base64")}`;
    await model().complete({
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Image [img_1]:" },
            { type: "image", url: dataUrl },
          ],
        },
      ],
    });
    expect(llm.chatRequests[0]?.body?.messages?.[0]?.content).toEqual([
      { type: "text", text: "Image [img_1]:" },
      { type: "image_url", image_url: { url: dataUrl } },
    ]);
  });

  it("times out a server that does not answer, within a bounded time", async () => {
    llm.reply({ delayMs: 10_000 });
    const started = Date.now();
    const error = await failure(
      model({ timeoutMs: 400 }).complete({ messages: [{ role: "user", content: "Hi" }] }),
    );
    const elapsed = Date.now() - started;
    expect(error.code).toBe("llm_timeout");
    expect(error.message).toContain(new URL(llm.url).host);
    expect(error.message).toContain("LOUPE_LLM_TIMEOUT_MS");
    expect(elapsed).toBeGreaterThanOrEqual(350);
    expect(elapsed).toBeLessThan(2000);
  });

  it("counts streaming in the deadline: a stream that stalls after its first delta times out", async () => {
    llm.reply({ deltas: ["first ", "second"], deltaDelayMs: 5000 });
    const deltas: string[] = [];
    const started = Date.now();
    const error = await failure(
      model({ timeoutMs: 500 }).complete({
        messages: [{ role: "user", content: "Hi" }],
        onDelta: (text) => deltas.push(text),
      }),
    );
    expect(error.code).toBe("llm_timeout");
    expect(deltas).toEqual(["first "]);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it("retries a 500 and answers with the next attempt", async () => {
    llm.reply({ status: 500, errorMessage: "model crashed" }, { text: "Recovered." });
    const result = await model().complete({ messages: [{ role: "user", content: "Hi" }] });
    expect(result.text).toBe("Recovered.");
    expect(result.attempts).toBe(2);
    expect(llm.chatRequests).toHaveLength(2);
  });

  it("retries a 429 after its Retry-After and gives up after the last retry", async () => {
    llm.reply(
      { status: 429, headers: { "retry-after": "0" } },
      { status: 503 },
      { status: 502, errorMessage: "bad gateway upstream" },
      { text: "never sent" },
    );
    const error = await failure(
      model({ maxRetries: 2 }).complete({ messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(llm.chatRequests).toHaveLength(3);
    expect(error.code).toBe("llm_failed");
    expect(error.message).toContain("HTTP 502");
    expect(error.message).toContain("bad gateway upstream");
    expect(error.message).toContain("after 3 attempts");
    expect(error.context).toMatchObject({ status: 502, attempts: 3 });
  });

  it("does not retry a refused key, and never shows the key", async () => {
    const error = await failure(
      model({ apiKey: "sk-wrong-key-987654321" }).complete({ messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(llm.chatRequests).toHaveLength(1);
    expect(llm.chatRequests[0]?.authorization).toBe("invalid");
    expect(error.code).toBe("llm_unauthorized");
    expect(error.message).toContain("HTTP 401");
    expect(error.message).toContain("OPENAI_API_KEY");
    expect(error.message).toContain(new URL(llm.url).host);
    expect(error.message).not.toContain("sk-wrong-key-987654321");
    expect(JSON.stringify(error.context)).not.toContain("sk-wrong");
  });

  it("does not retry a 400, and says what to check", async () => {
    llm.reply({ status: 400, errorMessage: "image input is not supported by this model" });
    const error = await failure(model().complete({ messages: [{ role: "user", content: "Hi" }] }));
    expect(llm.chatRequests).toHaveLength(1);
    expect(error.code).toBe("llm_rejected");
    expect(error.message).toContain("image input is not supported");
    expect(error.message).toContain("LOUPE_LLM_VISION=false");
  });

  it("fails without retrying when the connection drops after deltas were relayed", async () => {
    llm.reply({ deltas: ["partial ", "answer ", "never ", "finished"], dropAfterDeltas: 2 });
    const deltas: string[] = [];
    const error = await failure(
      model().complete({ messages: [{ role: "user", content: "Hi" }], onDelta: (text) => deltas.push(text) }),
    );
    expect(deltas).toEqual(["partial ", "answer "]);
    expect(error.code).toBe("llm_unreachable");
    expect(error.message).toContain("broke while the answer was streaming");
    expect(llm.chatRequests).toHaveLength(1);
  });

  it("retries when the connection drops before any delta", async () => {
    llm.reply({ text: "lost", dropAfterDeltas: 0 }, { text: "Second try." });
    const result = await model().complete({ messages: [{ role: "user", content: "Hi" }] });
    expect(result.text).toBe("Second try.");
    expect(llm.chatRequests).toHaveLength(2);
  });

  it("reports an endpoint that cannot be reached, naming its host", async () => {
    const gone = await startOpenAiTestServer();
    const url = gone.url;
    await gone.close();
    const error = await failure(
      model({ baseUrl: url, maxRetries: 1 }).complete({ messages: [{ role: "user", content: "Hi" }] }),
    );
    expect(error.code).toBe("llm_unreachable");
    expect(error.message).toContain(new URL(url).host);
    expect(error.message).toContain("OPENAI_BASE_URL");
    expect(error.context).toMatchObject({ attempts: 2 });
  });

  it("rejects a stream that is not JSON", async () => {
    llm.reply({ deltas: ["a ", "b ", "c ", "d"], malformed: true });
    const error = await failure(model().complete({ messages: [{ role: "user", content: "Hi" }] }));
    expect(error.code).toBe("llm_bad_response");
    expect(llm.chatRequests).toHaveLength(1);
  });

  it("rejects a stream that closes before the model finished", async () => {
    llm.reply({ deltas: ["cut ", "short"], finishReason: null });
    const error = await failure(model().complete({ messages: [{ role: "user", content: "Hi" }] }));
    expect(error.code).toBe("llm_bad_response");
    expect(error.message).toContain("no finish_reason");
  });

  it("the test server also answers unstreamed completions and lists its models", async () => {
    llm.reply({ text: "Plain answer.", usage: { promptTokens: 5, completionTokens: 2 } });
    const headers = { authorization: `Bearer ${apiKey}`, "content-type": "application/json" };
    const completion = await fetch(`${llm.url}/chat/completions`, {
      method: "POST",
      headers,
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "Hi" }] }),
    });
    expect(await completion.json()).toMatchObject({
      object: "chat.completion",
      model: "m",
      choices: [{ message: { role: "assistant", content: "Plain answer." }, finish_reason: "stop" }],
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
    });
    const models = await fetch(`${llm.url}/models`, { headers });
    expect(await models.json()).toMatchObject({ object: "list", data: [{ id: "loupe-test-model" }] });
    expect(llm.requests.map((request) => `${request.method} ${request.path}`)).toEqual([
      "POST /v1/chat/completions",
      "GET /v1/models",
    ]);
    expect(llm.requests[0]?.headers.authorization).toBe("(hidden)");
  });

  it("stops at once when the caller aborts", async () => {
    llm.reply({ delayMs: 10_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 150);
    const started = Date.now();
    const error = await failure(
      model().complete({ messages: [{ role: "user", content: "Hi" }], signal: controller.signal }),
    );
    expect(error.code).toBe("llm_aborted");
    expect(Date.now() - started).toBeLessThan(1500);
  });
});
