/**
 * What the chat route tests share: a scripted {@link LoupeChain} that records its requests (route logic
 * only; the real chain is tested with the real store and pack), a sample result and its events, the
 * middleware the routes rely on, and an SSE parser.
 */
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { parseConfig } from "../../../src/config.ts";
import type { AppEnv } from "../../../src/http/context.ts";
import { handleError, handleNotFound } from "../../../src/http/errors.ts";
import { createLogger } from "../../../src/logger.ts";
import type { ChatEvent, ChatRequest, ChatResult, LoupeChain } from "../../../src/rag/types.ts";

export const PNG_BYTES = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
export const PNG_DATA_URL = `data:image/png;base64,${PNG_BYTES.toString("base64")}`;
export const STORED_ID = "img_0123456789abcdef0123456789abcdef";

/** A finished turn, as the chain would return it. */
export function sampleResult(answer = "A red circle [img_0123456789abcdef0123456789abcdef]."): ChatResult {
  const citation = {
    id: STORED_ID,
    kind: "image" as const,
    mediaUrl: `/v1/media/${STORED_ID}`,
    thumbnailUrl: `/v1/media/${STORED_ID}/thumbnail`,
    start: null,
    end: null,
    question: null,
    answer: null,
    score: 0.8,
  };
  return {
    answer,
    answered: true,
    confidence: 0.7,
    citations: [citation],
    evidence: [
      {
        citation,
        attachment: false,
        text: "a red circle",
        findings: [
          { question: "what color?", answer: "red", probability: 0.9, alternatives: [], source: "vqa" },
        ],
      },
    ],
    standaloneQuestion: "what color is the circle?",
    composer: "offline",
    model: "loupe-offline",
    verification: { checked: 1, confirmed: 1, contradictions: [], corrected: false },
    timings: { embed: 1, retrieve: 2, ground: 3, compose: 4, verify: 5, total: 15 },
  };
}

/** The events of a streamed turn whose answer arrives in `deltas`. */
export function sampleEvents(result: ChatResult, deltas: string[]): ChatEvent[] {
  const [first] = result.evidence;
  if (first === undefined) throw new Error("the sample has evidence");
  return [
    {
      type: "retrieval",
      data: { standaloneQuestion: result.standaloneQuestion, items: result.citations, ms: 2 },
    },
    {
      type: "grounding",
      data: {
        findings: first.findings.map((finding) => ({ evidenceId: first.citation.id, ...finding })),
        ms: 3,
      },
    },
    ...result.citations.map((citation): ChatEvent => ({ type: "citation", data: citation })),
    ...deltas.map((text): ChatEvent => ({ type: "answer-delta", data: { text } })),
    { type: "done", data: result },
  ];
}

/** A chain that records its requests and plays its script (`events`); `failAt` throws `failWith` before that event. */
export class ScriptedChain implements LoupeChain {
  readonly modelNames = ["loupe", "loupe-offline"] as const;
  readonly requests: ChatRequest[] = [];
  /** The events it plays, in order, ending with `done`. */
  script: ChatEvent[];
  failAt: number | undefined;
  failWith: unknown;
  /** Set when a stream's consumer stops it early. */
  stopped = false;
  /** Waits before each event after the first when set, or until the turn is aborted. */
  gate: Promise<void> | undefined;

  constructor({ events, failAt, failWith }: { events: ChatEvent[]; failAt?: number; failWith?: unknown }) {
    this.script = events;
    this.failAt = failAt;
    this.failWith = failWith;
  }

  async invoke(request: ChatRequest): Promise<ChatResult> {
    this.requests.push(request);
    if (this.failAt !== undefined) throw this.failWith;
    const done = this.script.at(-1);
    if (done?.type !== "done") throw new Error("the script ends with done");
    return done.data;
  }

  async *events(request: ChatRequest): AsyncIterable<ChatEvent> {
    this.requests.push(request);
    let finished = false;
    try {
      for (const [index, event] of this.script.entries()) {
        if (index > 0 && this.gate !== undefined) {
          const signal = request.signal;
          // A chain waiting on its next step stops when the turn is aborted.
          await Promise.race([
            this.gate,
            new Promise<void>((resolve) => {
              if (signal === undefined || signal.aborted) resolve();
              else signal.addEventListener("abort", () => resolve(), { once: true });
            }),
          ]);
        }
        request.signal?.throwIfAborted();
        if (index === this.failAt) throw this.failWith;
        yield event;
      }
      finished = true;
    } finally {
      if (!finished) this.stopped = true;
    }
  }
}

export function testConfig(env: Record<string, string> = {}) {
  return parseConfig({
    env: {
      LOUPE_CHAT_MAX_TURNS: "3",
      LOUPE_CHAT_MAX_IMAGES: "2",
      LOUPE_MAX_IMAGE_BYTES: "3000",
      LOUPE_MAX_UPLOAD_BYTES: "20000",
      ...env,
    },
  });
}

/** The app's middleware that routes rely on (request id, logger, tenant) and its one error handler. */
export function routeApp(route: Hono<AppEnv>): Hono<AppEnv> {
  const logger = createLogger({ level: "silent" });
  const app = new Hono<AppEnv>();
  app.use(requestId());
  app.use(async (c, next) => {
    c.set("logger", logger);
    c.set("tenant", "tenant-a");
    // As the authentication middleware sets it while authentication is off.
    c.set("principal", {
      keyId: null,
      tenant: "tenant-a",
      scopes: new Set(["read", "ingest", "delete"]),
      publishable: false,
    });
    await next();
  });
  app.route("/", route);
  app.onError(handleError);
  app.notFound(handleNotFound);
  return app;
}

/** Parses an SSE body into named events (comments skipped). */
export function parseSse(text: string): Array<{ event: string; data: unknown }> {
  return text
    .split("\n\n")
    .filter((block) => block.trim().length > 0 && !block.startsWith(":"))
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((line) => line.startsWith("event: "))?.slice(7) ?? "";
      const data = lines.find((line) => line.startsWith("data: "))?.slice(6) ?? "null";
      return { event, data: JSON.parse(data) as unknown };
    });
}
