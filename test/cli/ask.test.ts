import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAnswerPrinter, formatAskFooter, runAsk } from "../../src/cli/commands/ask.ts";
import { AppError, ValidationError } from "../../src/errors.ts";
import type { ChatEvent, ChatResult, Citation } from "../../src/rag/types.ts";
import { findFreePort } from "../../src/store/free-port.ts";

const citation = (fields: Partial<Citation> & Pick<Citation, "id" | "kind" | "score">): Citation => ({
  mediaUrl: null,
  thumbnailUrl: null,
  start: null,
  end: null,
  question: null,
  answer: null,
  ...fields,
});

const result: ChatResult = {
  answer: "The circle is red [att_1].",
  answered: true,
  confidence: 0.8765,
  citations: [
    citation({ id: "att_1", kind: "image", score: 1 }),
    citation({ id: "seg_abcdef", kind: "video_segment", score: 0.41234, start: 2, end: 4.5 }),
  ],
  evidence: [],
  standaloneQuestion: "What color is the circle?",
  composer: "offline",
  model: "loupe-offline",
  verification: { checked: 0, confirmed: 0, contradictions: [], corrected: false },
  timings: { embed: 1, retrieve: 1, ground: 1, compose: 1, verify: 1, total: 5 },
};

const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** A stand-in /v1/chat that records the JSON it gets and answers the frames given, in small chunks. */
function streamingServer(frames: string, status = 200) {
  const seen: unknown[] = [];
  const app = new Hono().post("/v1/chat", async (c) => {
    seen.push(await c.req.json());
    if (status !== 200) {
      return c.json(
        { error: { code: "invalid_request", message: "filter[0].op is not allowed.", requestId: "r" } },
        400,
      );
    }
    const bytes = new TextEncoder().encode(frames);
    // Seven-byte chunks split lines, event names and UTF-8 sequences, as a network may.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let offset = 0; offset < bytes.length; offset += 7)
          controller.enqueue(bytes.slice(offset, offset + 7));
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  return { seen, fetch: async (input: string, init: RequestInit) => app.request(input, init) };
}

describe("loupe ask", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-ask-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("says how to fix a missing question, a bad filter, a missing image and an unreachable server", async () => {
    await expect(runAsk({})).rejects.toThrow(ValidationError);
    await expect(runAsk({ question: "   " })).rejects.toThrow(/loupe ask needs a question/);
    await expect(runAsk({ question: "x", filter: "tenant == 'a'" })).rejects.toThrow(
      /--filter must be JSON.*got "tenant == 'a'"/,
    );
    const missing = path.join(dir, "missing.png");
    await expect(runAsk({ question: "x", imagePaths: [missing] })).rejects.toThrow(
      `Cannot read the image ${missing}`,
    );
    const url = `http://127.0.0.1:${await findFreePort()}`;
    const unreachable = await runAsk({ url, question: "x" }).catch((error: unknown) => error);
    expect(unreachable).toBeInstanceOf(AppError);
    expect((unreachable as AppError).code).toBe("server_unreachable");
    expect((unreachable as AppError).message).toMatch(/Cannot reach Loupe at .*loupe serve/);
    await expect(runAsk({ url, question: "x", tenant: "t" })).rejects.toThrow(
      /--tenant applies in-process only/,
    );
  });

  it("posts a streamed JSON request with images as data URLs, and passes each event on", async () => {
    const file = path.join(dir, "query.png");
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47]), Buffer.alloc(20, 7)]);
    await writeFile(file, png);
    const server = streamingServer(
      [
        ": keep-alive\n\n",
        frame("retrieval", { standaloneQuestion: "q", items: [], ms: 1 }),
        frame("answer-delta", { text: "The circle is " }),
        frame("some-future-event", { ignored: true }),
        frame("answer-delta", { text: "red — é [att_1]." }),
        frame("done", result),
      ].join(""),
    );
    const events: ChatEvent[] = [];
    const final = await runAsk({
      url: "http://loupe.test/",
      question: "What color is the circle?",
      imagePaths: [file],
      kinds: ["image"],
      topK: 3,
      filter: '[{"field":"metadata.tags","op":"contains","value":"red"}]',
      offline: true,
      onEvent: (event) => events.push(event),
      fetch: server.fetch,
    });
    expect(final).toEqual(result);
    expect(server.seen[0]).toEqual({
      question: "What color is the circle?",
      images: [`data:image/png;base64,${png.toString("base64")}`],
      filter: [{ field: "metadata.tags", op: "contains", value: "red" }],
      kinds: ["image"],
      topK: 3,
      composer: "offline",
      stream: true,
    });
    expect(events.map((event) => event.type)).toEqual(["retrieval", "answer-delta", "answer-delta", "done"]);
    expect(events[2]).toEqual({ type: "answer-delta", data: { text: "red — é [att_1]." } });
  });

  it("turns an error response, an error event and a cut-off stream into errors with the server's words", async () => {
    const refused = await runAsk({
      url: "http://loupe.test",
      question: "x",
      fetch: streamingServer("", 400).fetch,
    }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).code).toBe("invalid_request");
    expect((refused as AppError).message).toBe(
      "Ask failed (400 invalid_request): filter[0].op is not allowed.",
    );

    const failing = streamingServer(
      frame("answer-delta", { text: "The" }) +
        frame("error", {
          error: { code: "model_unavailable", message: "The model pack is not loaded.", requestId: "r" },
        }),
    );
    const failed = await runAsk({ url: "http://loupe.test", question: "x", fetch: failing.fetch }).catch(
      (error: unknown) => error,
    );
    expect((failed as AppError).code).toBe("model_unavailable");
    expect((failed as AppError).message).toContain("The model pack is not loaded.");

    const cut = streamingServer(frame("answer-delta", { text: "The" }));
    await expect(runAsk({ url: "http://loupe.test", question: "x", fetch: cut.fetch })).rejects.toThrow(
      /without a done event/,
    );
  });
});

describe("the answer printer", () => {
  it("streams deltas, notes a reset, then lists citations and the confidence", () => {
    let out = "";
    const print = createAnswerPrinter((text) => {
      out += text;
    });
    print({ type: "retrieval", data: { standaloneQuestion: "q", items: [], ms: 1 } });
    print({ type: "answer-delta", data: { text: "The circ" } });
    print({ type: "answer-reset", data: { reason: "LLM timed out after 30000 ms" } });
    print({ type: "answer-delta", data: { text: "The circle is red [att_1]." } });
    print({ type: "done", data: { ...result, fallback: { reason: "timeout", code: "llm_timeout" } } });
    expect(out).toBe(
      [
        "The circ",
        "[The LLM failed (LLM timed out after 30000 ms); the offline answer follows.]",
        "The circle is red [att_1].",
        "",
        "Citations:",
        "  [att_1] image score 1.0000",
        "  [seg_abcdef] video_segment 2.0–4.5s score 0.4123",
        "Confidence: 0.88 (offline answer: timeout)",
        "",
      ].join("\n"),
    );
  });

  it("says when nothing is cited and the question went unanswered", () => {
    expect(formatAskFooter({ ...result, citations: [], answered: false, confidence: 0 })).toBe(
      "\nNo citations.\nConfidence: 0.00, not answered\n",
    );
  });
});
