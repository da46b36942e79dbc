/**
 * POST /v1/responses route logic against a scripted chain: how Responses `input` becomes the chain's
 * request (string or messages, input_text and input_image parts, output_text history), what it refuses
 * (files, audio, tool items, stored-state parameters), the response object with its url_citation
 * annotations, and the event sequence of a stream, on the wire and through the official `openai` client.
 */
import { Hono } from "hono";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { MediaError } from "../../../src/errors.ts";
import { SOURCES_HEADING } from "../../../src/http/chat-sources.ts";
import type { AppEnv } from "../../../src/http/context.ts";
import { createResponsesRoute } from "../../../src/http/routes/responses.ts";
import type { ChatResult } from "../../../src/rag/types.ts";
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

function responsesApp(chain: ScriptedChain, env: Record<string, string> = {}): Hono<AppEnv> {
  return routeApp(new Hono<AppEnv>().route("/", createResponsesRoute({ chain, config: testConfig(env) })));
}

function post(app: Hono<AppEnv>, body: unknown) {
  return app.request("http://loupe.test/v1/responses", {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "req-3" },
    body: JSON.stringify(body),
  });
}

function openaiClient(app: Hono<AppEnv>): OpenAI {
  return new OpenAI({
    apiKey: "unused",
    baseURL: "http://loupe.test/v1",
    maxRetries: 0,
    fetch: (url, init) => Promise.resolve(app.request(String(url), init as RequestInit)),
  });
}

/** The events of a Responses stream: the `event:` name and the parsed `data:`. */
function events(text: string): Array<{ event: string; data: Record<string, unknown> }> {
  return text
    .split("\n\n")
    .filter((block) => block.startsWith("event: "))
    .map((block) => {
      const [eventLine, dataLine] = block.split("\n");
      return {
        event: (eventLine as string).slice(7),
        data: JSON.parse((dataLine as string).slice(6)) as Record<string, unknown>,
      };
    });
}

const result = sampleResult(`A red circle [${STORED_ID}].`);
const mark = `[${STORED_ID}]`;

describe("POST /v1/responses: requests", () => {
  it("a string input is the question", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(responsesApp(chain), { model: "loupe", input: "What color is the circle?" });
    expect(response.status).toBe(200);
    expect(chain.requests[0]).toMatchObject({ question: "What color is the circle?", tenant: "tenant-a" });
    expect(chain.requests[0]?.history).toBeUndefined();
  });

  it("messages: input_text and input_image parts, output_text history; instructions and unknown fields ignored", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(responsesApp(chain), {
      model: "loupe-offline",
      instructions: "You are a pirate.",
      store: true,
      reasoning: { effort: "low" },
      tools: [{ type: "web_search" }],
      text: { format: { type: "text" } },
      metadata: { chat: "1" },
      user: "ada",
      max_output_tokens: 64,
      temperature: 0.1,
      input: [
        { role: "developer", content: "Be brief." },
        {
          type: "message",
          role: "user",
          content: [
            { type: "input_text", text: "What is in this picture?" },
            { type: "input_image", image_url: PNG_DATA_URL, detail: "low" },
          ],
        },
        {
          type: "message",
          role: "assistant",
          id: "msg_1",
          status: "completed",
          content: [{ type: "output_text", text: `A red circle ${mark}.`, annotations: [] }],
        },
        {
          role: "user",
          content: [
            { type: "input_text", text: "Is this one bigger?" },
            { type: "input_image", image_url: STORED_ID },
          ],
        },
      ],
    });
    expect(response.status).toBe(200);
    expect(chain.requests[0]).toMatchObject({
      question: "Is this one bigger?",
      images: [{ id: STORED_ID }],
      composer: "offline",
      maxTokens: 64,
      temperature: 0.1,
      history: [
        { role: "user", content: "What is in this picture?", images: [{ bytes: new Uint8Array(PNG_BYTES) }] },
        { role: "assistant", content: `A red circle ${mark}.`, citations: [STORED_ID] },
      ],
    });
  });

  const user = (content: unknown) => ({ role: "user", content });
  it.each([
    ["no input", { model: "loupe" }, /input must be a string or a list of messages/],
    ["an empty input", { model: "loupe", input: "" }, /input is empty/],
    [
      "a file part",
      {
        model: "loupe",
        input: [user([{ type: "input_file", file_data: "data:application/pdf;base64,JVBE" }])],
      },
      /content part type "input_file" is not supported; use "input_text" or "input_image".*Loupe reads no files/,
    ],
    [
      "an image by file id",
      { model: "loupe", input: [user([{ type: "input_image", file_id: "file-1" }])] },
      /input: at \[0\]\[content\]: part 0: input_image needs image_url: a data URL, an http\(s\) URL or a stored item's id \(file_id is not supported\)/,
    ],
    [
      "a tool call item",
      {
        model: "loupe",
        input: [user("q"), { type: "function_call_output", call_id: "c", output: "x" }],
      },
      /input item type "function_call_output" is not supported/,
    ],
    [
      "previous_response_id",
      { model: "loupe", input: "q", previous_response_id: "resp_1" },
      /previous_response_id is not supported\. Loupe keeps no responses or conversations: send the whole conversation in input/,
    ],
    [
      "an assistant last",
      { model: "loupe", input: [user("q"), { role: "assistant", content: "a" }] },
      /last message must be the user's question/,
    ],
    [
      "an image without text",
      { model: "loupe", input: [user([{ type: "input_image", image_url: PNG_DATA_URL }])] },
      /input\[0\] has no text/,
    ],
    [
      "an assistant image",
      {
        model: "loupe",
        input: [{ role: "assistant", content: [{ type: "input_image", image_url: STORED_ID }] }, user("q")],
      },
      /input\[0\] is an assistant message with images/,
    ],
    [
      "max_output_tokens 0",
      { model: "loupe", input: "q", max_output_tokens: 0 },
      /max_output_tokens must be an integer from 1/,
    ],
  ])("%s → 400", async (_name, body, message) => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const response = await post(responsesApp(chain), body);
    const json = (await response.json()) as { error: { code: string; message: string } };
    expect(response.status, json.error.message).toBe(400);
    expect(json.error.message).toMatch(message);
    expect(chain.requests).toHaveLength(0);
  });

  it("an unknown model → 404 model_not_found", async () => {
    const response = await post(responsesApp(new ScriptedChain({ events: sampleEvents(result, ["x"]) })), {
      model: "gpt-4.1",
      input: "q",
    });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("model_not_found");
  });
});

describe("POST /v1/responses: answers", () => {
  it("without stream: a completed response whose output_text carries url_citation annotations", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents({ ...result, usage: { promptTokens: 20, completionTokens: 5 } }, ["x"]),
    });
    const response = await post(responsesApp(chain), { model: "loupe", input: "q" });
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown> & {
      output: Array<{ content: Array<{ text: string; annotations: unknown[] }> }>;
      loupe: { citations: unknown[] };
    };
    expect(body.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(body).toMatchObject({
      object: "response",
      status: "completed",
      model: "loupe",
      usage: { input_tokens: 20, output_tokens: 5, total_tokens: 25 },
      store: false,
      output: [{ type: "message", role: "assistant", status: "completed" }],
    });
    const [part] = body.output[0]?.content ?? [];
    expect(part?.text).toBe(result.answer);
    expect(part?.annotations).toEqual([
      {
        type: "url_citation",
        url: `http://loupe.test/v1/media/${STORED_ID}`,
        title: `Image ${STORED_ID}`,
        start_index: result.answer.indexOf(mark),
        end_index: result.answer.indexOf(mark) + mark.length,
      },
    ]);
    expect(body.loupe.citations).toEqual(result.citations);
  });

  it("loupe.sources markdown appends the Sources list", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["x"]) });
    const client = openaiClient(responsesApp(chain));
    const response = await client.responses.create({
      model: "loupe",
      input: "q",
      loupe: { sources: "markdown" },
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(response.output_text).toBe(
      `${result.answer}\n\n${SOURCES_HEADING}\n\n1. [Image ${STORED_ID}](http://loupe.test/v1/media/${STORED_ID})`,
    );
  });

  it("with stream: the Responses events in order, deltas adding up to the text, annotations on the done part", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["A red ", `circle ${mark}.`]) });
    const text = await (await post(responsesApp(chain), { model: "loupe", input: "q", stream: true })).text();
    const all = events(text);
    expect(all.map((event) => event.event)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.annotation.added",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    for (const [index, event] of all.entries()) {
      expect(event.data.type).toBe(event.event);
      expect(event.data.sequence_number).toBe(index);
    }
    const deltas = all
      .filter((event) => event.event === "response.output_text.delta")
      .map((event) => event.data.delta)
      .join("");
    expect(deltas).toBe(result.answer);
    expect(all[7]?.data.text).toBe(result.answer);
    const completed = all.at(-1)?.data.response as {
      status: string;
      output: Array<{ content: Array<{ text: string; annotations: Array<{ url: string }> }> }>;
      loupe: { citations: unknown[] };
    };
    expect(completed.status).toBe("completed");
    expect(completed.output[0]?.content[0]?.annotations[0]?.url).toBe(
      `http://loupe.test/v1/media/${STORED_ID}`,
    );
    expect(completed.loupe.citations).toEqual(result.citations);
    expect((all[0]?.data.response as { status: string } | undefined)?.status).toBe("in_progress");
  });

  it("an error mid-stream is an error event carrying Loupe's envelope", async () => {
    const chain = new ScriptedChain({
      events: sampleEvents(result, ["x", "y"]),
      failAt: 4,
      failWith: new MediaError("Attached image 1 could not be decoded."),
    });
    const all = events(
      await (await post(responsesApp(chain), { model: "loupe", input: "q", stream: true })).text(),
    );
    expect(all.at(-1)).toMatchObject({
      event: "error",
      data: {
        type: "error",
        code: "media_invalid",
        message: "Attached image 1 could not be decoded.",
        param: null,
        error: { code: "media_invalid", requestId: "req-3" },
      },
    });
    expect(all.some((event) => event.event === "response.completed")).toBe(false);
  });

  it("the official openai client reads the text and annotations, streamed and not", async () => {
    const chain = new ScriptedChain({ events: sampleEvents(result, ["A red ", `circle ${mark}.`]) });
    const client = openaiClient(responsesApp(chain));
    const response = await client.responses.create({ model: "loupe", input: "What color is the circle?" });
    expect(response.output_text).toBe(result.answer);
    const message = response.output[0] as OpenAI.Responses.ResponseOutputMessage;
    const part = message.content[0] as OpenAI.Responses.ResponseOutputText;
    expect(part.annotations[0]).toMatchObject({ type: "url_citation", title: `Image ${STORED_ID}` });

    const stream = await client.responses.create({ model: "loupe", input: "q", stream: true });
    let streamed = "";
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") streamed += event.delta;
      if (event.type === "response.completed") completed = event.response;
    }
    expect(streamed).toBe(result.answer);
    expect(completed?.status).toBe("completed");
  });

  it("the openai client raises a mid-stream error with Loupe's message", async () => {
    const failing = new ScriptedChain({
      events: sampleEvents(result, ["x", "y"]),
      failAt: 4,
      failWith: new MediaError("Attached image 1 could not be decoded."),
    });
    const stream = await openaiClient(responsesApp(failing)).responses.create({
      model: "loupe",
      input: "q",
      stream: true,
    });
    const consume = async () => {
      for await (const _event of stream) {
        // Drains the stream until the error.
      }
    };
    await expect(consume()).rejects.toThrow("Attached image 1 could not be decoded.");
  });

  it("an answer reset keeps the deltas and the done text equal; loupe.answer holds the final answer", async () => {
    const fallback: ChatResult = { ...result, fallback: { reason: "timeout", code: "llm_timeout" } };
    const script = sampleEvents(fallback, [result.answer]);
    script.splice(
      3,
      0,
      { type: "answer-delta", data: { text: "The circle is" } },
      { type: "answer-reset", data: { reason: "timeout" } },
    );
    const all = events(
      await (
        await post(responsesApp(new ScriptedChain({ events: script })), {
          model: "loupe",
          input: "q",
          stream: true,
        })
      ).text(),
    );
    const deltas = all
      .filter((event) => event.event === "response.output_text.delta")
      .map((event) => event.data.delta)
      .join("");
    expect(all.find((event) => event.event === "response.output_text.done")?.data.text).toBe(deltas);
    const completed = all.at(-1)?.data.response as { loupe: { answer?: string } };
    expect(completed.loupe.answer).toBe(result.answer);
  });
});
