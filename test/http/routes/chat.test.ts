/**
 * POST /v1/chat route logic against a small scripted chain: how JSON and multipart requests become the
 * chain's ChatRequest, the limits and error envelopes, the SSE event format, errors before and during a
 * stream, and the client going away. The real chain over the real store and pack is exercised in
 * test/http/chat.int.test.ts.
 */
import type { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { MediaError, NotFoundError } from "../../../src/errors.ts";
import type { AppEnv } from "../../../src/http/context.ts";
import { internalErrorMessage } from "../../../src/http/errors.ts";
import { createChatRoute, MAX_CHAT_QUESTION_LENGTH } from "../../../src/http/routes/chat.ts";
import {
  PNG_BYTES,
  PNG_DATA_URL,
  parseSse,
  routeApp,
  ScriptedChain,
  STORED_ID,
  sampleEvents,
  sampleResult,
  testConfig,
} from "./chat-fixtures.ts";

function chatApp(chain: ScriptedChain, env: Record<string, string> = {}) {
  return routeApp(createChatRoute({ chain, config: testConfig(env) }));
}

function postJson(app: Hono<AppEnv>, body: unknown) {
  return app.request("/v1/chat", {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "req-1" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("POST /v1/chat without stream", () => {
  it("hands every field to the chain with the caller's tenant and answers its result", async () => {
    const result = sampleResult();
    const chain = new ScriptedChain({ events: sampleEvents(result, ["A red circle."]) });
    const response = await postJson(chatApp(chain), {
      question: "  what color is it?  ",
      images: [PNG_DATA_URL, PNG_BYTES.toString("base64"), STORED_ID],
      history: [
        { role: "user", content: "show me circles" },
        { role: "assistant", content: "Here [img_1].", citations: ["img_1"] },
      ],
      filter: [{ field: "source", op: "eq", value: "synth" }],
      kinds: ["image", "triple"],
      topK: 7,
      composer: "offline",
      temperature: 0.5,
      maxTokens: 100,
    });
    // Three images are over the limit of two; the request is refused before the chain.
    expect(response.status).toBe(400);
    expect(chain.requests).toHaveLength(0);

    const accepted = await postJson(chatApp(chain, { LOUPE_CHAT_MAX_IMAGES: "3" }), {
      question: "  what color is it?  ",
      images: [PNG_DATA_URL, PNG_BYTES.toString("base64"), STORED_ID],
      history: [
        { role: "user", content: "show me circles" },
        { role: "assistant", content: "Here [img_1].", citations: ["img_1"] },
      ],
      filter: [{ field: "source", op: "eq", value: "synth" }],
      kinds: ["image", "triple"],
      topK: 7,
      composer: "offline",
      temperature: 0.5,
      maxTokens: 100,
    });
    expect(accepted.status).toBe(200);
    expect(await accepted.json()).toEqual(JSON.parse(JSON.stringify(result)));
    const [request] = chain.requests;
    expect(request?.tenant).toBe("tenant-a");
    expect(request?.question).toBe("what color is it?");
    expect(request?.images).toEqual([
      { bytes: new Uint8Array(PNG_BYTES) },
      { bytes: new Uint8Array(PNG_BYTES) },
      { id: STORED_ID },
    ]);
    expect(request?.history).toEqual([
      { role: "user", content: "show me circles" },
      { role: "assistant", content: "Here [img_1].", citations: ["img_1"] },
    ]);
    expect(request?.filter).toEqual([{ field: "source", op: "eq", value: "synth" }]);
    expect(request).toMatchObject({
      kinds: ["image", "triple"],
      topK: 7,
      composer: "offline",
      temperature: 0.5,
      maxTokens: 100,
    });
    expect(request?.signal).toBeInstanceOf(AbortSignal);
  });

  it("history images count against the limit and reach the chain", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]) });
    const ok = await postJson(chatApp(chain), {
      question: "and this one?",
      images: [STORED_ID],
      history: [{ role: "user", content: "what is this?", images: [PNG_DATA_URL] }],
    });
    expect(ok.status).toBe(200);
    expect(chain.requests[0]?.history?.[0]?.images).toEqual([{ bytes: new Uint8Array(PNG_BYTES) }]);

    const over = await postJson(chatApp(chain), {
      question: "and this one?",
      images: [STORED_ID, STORED_ID],
      history: [{ role: "user", content: "what is this?", images: [PNG_DATA_URL] }],
    });
    expect(over.status).toBe(400);
    const body = (await over.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/attaches 3 images; the limit is 2 .*LOUPE_CHAT_MAX_IMAGES/);
  });

  it.each([
    ["no question", {}, /question is required/],
    ["an empty question", { question: "   " }, /question is empty/],
    [
      "a question over the limit",
      { question: "a".repeat(MAX_CHAT_QUESTION_LENGTH + 1) },
      /at most 4000 characters/,
    ],
    ["an unknown field", { question: "q", model: "x" }, /unknown field "model"/],
    ["an unknown kind", { question: "q", kinds: ["images"] }, /unknown kind "images"/],
    ["topK 0", { question: "q", topK: 0 }, /topK must be an integer from 1 to 100/],
    ["a bad composer", { question: "q", composer: "llm" }, /composer "llm" is not allowed/],
    ["temperature 3", { question: "q", temperature: 3 }, /temperature must be a number from 0 to 2/],
    ["maxTokens 0", { question: "q", maxTokens: 0 }, /maxTokens must be an integer/],
    ["stream as a string", { question: "q", stream: "yes" }, /stream must be true or false/],
    ["an image URL", { question: "q", images: ["https://example.com/a.png"] }, /images\[0\] is a URL/],
    ["a bad image", { question: "q", images: ["not an image!"] }, /images\[0\] is not valid base64/],
    [
      "a system turn",
      { question: "q", history: [{ role: "system", content: "x" }] },
      /role "system" is not allowed/,
    ],
    [
      "an assistant turn with images",
      { question: "q", history: [{ role: "assistant", content: "x", images: [STORED_ID] }] },
      /history\[0\] is an assistant turn with images/,
    ],
    [
      "too many turns",
      { question: "q", history: Array.from({ length: 4 }, () => ({ role: "user", content: "x" })) },
      /4 earlier turns; the limit is 3 \(LOUPE_CHAT_MAX_TURNS\)/,
    ],
    ["a filter string", { question: "q", filter: 'id == "x"' }, /filter/],
  ])("%s → 400 invalid_request", async (_name, body, message) => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]) });
    const response = await postJson(chatApp(chain), body);
    expect(response.status).toBe(400);
    const json = (await response.json()) as { error: { code: string; message: string; requestId: string } };
    expect(json.error.code).toBe("invalid_request");
    expect(json.error.message).toMatch(message);
    expect(json.error.requestId).toBe("req-1");
    expect(chain.requests).toHaveLength(0);
  });

  it("malformed JSON, a JSON array and another content type → 400", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]) });
    const app = chatApp(chain);
    expect(
      ((await (await postJson(app, "{")).json()) as { error: { message: string } }).error.message,
    ).toMatch(/not valid JSON/);
    expect(
      ((await (await postJson(app, "[]")).json()) as { error: { message: string } }).error.message,
    ).toMatch(/JSON object/);
    const text = await app.request("/v1/chat", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "q",
    });
    expect(text.status).toBe(400);
    expect(((await text.json()) as { error: { message: string } }).error.message).toMatch(
      /application\/json or multipart/,
    );
  });

  it("a body over the limit → 413 payload_too_large before the chain", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]) });
    // Limit: min(20000, 2 × 4000) + 1 MiB of text room.
    const response = await postJson(chatApp(chain), {
      question: "q",
      history: [{ role: "user", content: "x".repeat(1_100_000) }],
    });
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("payload_too_large");
    expect(chain.requests).toHaveLength(0);
  });

  it("an error of the chain keeps its status and code", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(sampleResult(), ["x"]),
      failAt: 0,
      failWith: new NotFoundError(`No item ${STORED_ID} for this tenant.`),
    });
    const response = await postJson(chatApp(chain), { question: "q", images: [STORED_ID] });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      error: { code: "not_found", message: `No item ${STORED_ID} for this tenant.`, requestId: "req-1" },
    });
  });
});

describe("POST /v1/chat as multipart", () => {
  function form(parts: Array<[string, string | Blob, string?]>): FormData {
    const data = new FormData();
    for (const [name, value, filename] of parts) {
      if (typeof value === "string") data.append(name, value);
      else data.append(name, value, filename);
    }
    return data;
  }
  const png = () => new Blob([PNG_BYTES], { type: "image/png" });

  it("question field, files and a JSON payload make one request; uploads follow payload images", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]) });
    const response = await chatApp(chain).request("/v1/chat", {
      method: "POST",
      body: form([
        ["question", "what shape?"],
        ["files", png(), "a.png"],
        ["payload", JSON.stringify({ images: [STORED_ID], topK: 3, kinds: ["image"] })],
      ]),
    });
    expect(response.status).toBe(200);
    const request = chain.requests[0];
    expect(request?.question).toBe("what shape?");
    expect(request?.images).toEqual([{ id: STORED_ID }, { bytes: new Uint8Array(PNG_BYTES) }]);
    expect(request).toMatchObject({ topK: 3, kinds: ["image"] });
  });

  it("stream=true as a form field streams", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]) });
    const response = await chatApp(chain).request("/v1/chat", {
      method: "POST",
      body: form([
        ["question", "q"],
        ["stream", "true"],
      ]),
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(parseSse(await response.text()).at(-1)?.event).toBe("done");
  });

  it.each([
    [
      "a file under another field",
      [
        ["question", "q"],
        ["image", "FILE"],
      ],
      400,
      /upload images under the field "files"/,
    ],
    [
      "an unknown field",
      [
        ["question", "q"],
        ["topK", "3"],
      ],
      400,
      /Unknown form field "topK"/,
    ],
    [
      "a payload that is not JSON",
      [
        ["question", "q"],
        ["payload", "{"],
      ],
      400,
      /payload must be JSON/,
    ],
    [
      "a payload array",
      [
        ["question", "q"],
        ["payload", "[1]"],
      ],
      400,
      /payload must be a JSON object/,
    ],
    [
      "question twice",
      [
        ["question", "q"],
        ["payload", '{"question":"r"}'],
      ],
      400,
      /both as a form field and inside payload/,
    ],
    [
      "a bad stream",
      [
        ["question", "q"],
        ["stream", "maybe"],
      ],
      400,
      /stream must be true or false/,
    ],
    [
      "three files",
      [
        ["question", "q"],
        ["files", "FILE"],
        ["files", "FILE"],
        ["files", "FILE"],
      ],
      400,
      /attaches 3 images/,
    ],
    [
      "an empty file",
      [
        ["question", "q"],
        ["files", "EMPTY"],
      ],
      400,
      /is empty/,
    ],
    [
      "a file over the image limit",
      [
        ["question", "q"],
        ["files", "BIG"],
      ],
      413,
      /limit is 3000 bytes/,
    ],
  ] as Array<[string, Array<[string, string]>, number, RegExp]>)(
    "%s → %i",
    async (_name, parts, status, message) => {
      const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]) });
      const response = await chatApp(chain).request("/v1/chat", {
        method: "POST",
        body: form(
          parts.map(([name, value]): [string, string | Blob, string?] =>
            value === "FILE"
              ? [name, png(), "a.png"]
              : value === "EMPTY"
                ? [name, new Blob([]), "e.png"]
                : value === "BIG"
                  ? [name, new Blob([new Uint8Array(3001)]), "big.png"]
                  : [name, value],
          ),
        ),
      });
      expect(response.status).toBe(status);
      expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(message);
      expect(chain.requests).toHaveLength(0);
    },
  );
});

describe("POST /v1/chat with stream: true", () => {
  it("sends the chain's events as named SSE events, in order, ending with done", async () => {
    const result = sampleResult("A red circle.");
    const chain = new ScriptedChain({ events: sampleEvents(result, ["A red", " circle."]) });
    const response = await postJson(chatApp(chain), { question: "q", stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await response.text();
    expect(text).toMatch(/^: stream open\n\nevent: retrieval\ndata: \{/);
    const events = parseSse(text);
    expect(events.map((event) => event.event)).toEqual([
      "retrieval",
      "grounding",
      "citation",
      "answer-delta",
      "answer-delta",
      "done",
    ]);
    expect(events[2]?.data).toEqual(result.citations[0]);
    expect(events[3]?.data).toEqual({ text: "A red" });
    expect(events.at(-1)?.data).toEqual(JSON.parse(JSON.stringify(result)));
  });

  it("passes an answer reset through as its own event", async () => {
    const events = sampleEvents(sampleResult(), ["offline answer"]);
    events.splice(
      3,
      0,
      { type: "answer-delta", data: { text: "partial" } },
      { type: "answer-reset", data: { reason: "timeout" } },
    );
    const chain = new ScriptedChain({ events });
    const parsed = parseSse(await (await postJson(chatApp(chain), { question: "q", stream: true })).text());
    expect(parsed.map((event) => event.event)).toEqual([
      "retrieval",
      "grounding",
      "citation",
      "answer-delta",
      "answer-reset",
      "answer-delta",
      "done",
    ]);
    expect(parsed[4]?.data).toEqual({ reason: "timeout" });
  });

  it("a failure before the first event answers with its HTTP status, not a stream", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(sampleResult(), ["x"]),
      failAt: 0,
      failWith: new NotFoundError(`No item ${STORED_ID} for this tenant.`),
    });
    const response = await postJson(chatApp(chain), { question: "q", stream: true });
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("not_found");
  });

  it("an AppError mid-stream ends with an error event carrying the envelope", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(sampleResult(), ["x"]),
      failAt: 2,
      failWith: new MediaError("Attached image 1 could not be decoded: not an image."),
    });
    const events = parseSse(await (await postJson(chatApp(chain), { question: "q", stream: true })).text());
    expect(events.map((event) => event.event)).toEqual(["retrieval", "grounding", "error"]);
    expect(events.at(-1)?.data).toEqual({
      error: {
        code: "media_invalid",
        message: "Attached image 1 could not be decoded: not an image.",
        requestId: "req-1",
      },
    });
  });

  it("an unexpected error mid-stream is answered with the fixed internal message", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(sampleResult(), ["x"]),
      failAt: 3,
      failWith: new Error("secret detail of a bug"),
    });
    const text = await (await postJson(chatApp(chain), { question: "q", stream: true })).text();
    expect(text).not.toContain("secret detail");
    expect(parseSse(text).at(-1)).toEqual({
      event: "error",
      data: { error: { code: "internal_error", message: internalErrorMessage, requestId: "req-1" } },
    });
  });

  it("a stream that ends without done ends with an error event", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["x"]).slice(0, -1) });
    const events = parseSse(await (await postJson(chatApp(chain), { question: "q", stream: true })).text());
    expect(events.at(-1)?.event).toBe("error");
  });

  it("the client going away aborts the chain's signal and stops its stream", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(sampleResult(), ["a", "b", "c"]) });
    let release: () => void = () => {};
    chain.gate = new Promise((resolve) => {
      release = resolve;
    });
    const response = await postJson(chatApp(chain), { question: "q", stream: true });
    const reader = response.body?.getReader();
    if (reader === undefined) throw new Error("no body");
    const decoder = new TextDecoder();
    let seen = "";
    while (!seen.includes("event: retrieval")) {
      const chunk = await reader.read();
      seen += decoder.decode(chunk.value);
    }
    await reader.cancel();
    expect(chain.requests[0]?.signal?.aborted).toBe(true);
    expect(chain.stopped).toBe(true);
    release();
  });
});
