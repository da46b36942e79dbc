/**
 * `loupe ask "<question>" [--image file]... [--kinds image,video_segment,triple] [--top-k n] [--filter json]
 * [--offline] [--url http://127.0.0.1:8080] [--tenant t] [--json]`: asks Loupe one question and streams
 * the answer to stdout as it is written, then lists the citations and the confidence. Like
 * `loupe search`, it runs the chain in-process against the configured store by default (so not while a
 * `loupe serve` holds `LOUPE_DATA_DIR`), or asks a running Loupe (`POST /v1/chat`, server-sent events)
 * with `--url`.
 */
import type { Command } from "commander";
import { AppError, ValidationError } from "../../errors.ts";
import type { ChatEvent, ChatRequest, ChatResult } from "../../rag/types.ts";
import {
  listOption,
  parseFilterOption,
  readImageFile,
  serverUnreachable,
  wholeNumber,
} from "../command-inputs.ts";

/** Options of {@link runAsk}. */
export interface RunAskOptions {
  /** Base URL of a running Loupe; absent: answer in-process. */
  url?: string;
  /** In-process only: the tenant to ask (default `LOUPE_DEFAULT_TENANT`). */
  tenant?: string;
  /** In-process only: the environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  question?: string;
  /** Paths of image files attached to the question (cited as `att_1`, `att_2`, … in order). */
  imagePaths?: readonly string[];
  kinds?: string[];
  topK?: number;
  /** The filter, as JSON text. */
  filter?: string;
  /** Write the answer with the offline composer even when an LLM is configured. */
  offline?: boolean;
  /** Called with each event of the turn as it arrives, `done` last. */
  onEvent?: (event: ChatEvent) => void;
  /** The fetch to use (tests pass the app's own). */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
}

/** One server-sent event as read off the wire: its name and its data lines joined by newlines. */
export interface SseMessage {
  event: string;
  data: string;
}

/**
 * An incremental parser of `text/event-stream`: feed it text as it arrives, get back the events it
 * completes. `event:` names the event (default `message`), `data:` lines accumulate, a blank line ends
 * the event, lines starting with `:` are comments (keep-alives) and are dropped.
 */
export function createSseParser(): { push(text: string): SseMessage[]; end(): SseMessage[] } {
  let buffer = "";
  let event = "";
  let data: string[] = [];
  const take = (line: string, out: SseMessage[]) => {
    if (line === "") {
      if (data.length > 0) out.push({ event: event === "" ? "message" : event, data: data.join("\n") });
      event = "";
      data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  };
  return {
    push(text) {
      buffer += text;
      const out: SseMessage[] = [];
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        // A lone `\r` at the end may be the first half of `\r\n`: wait for the next chunk.
        if (match === null || (match[0] === "\r" && match.index === buffer.length - 1)) break;
        take(buffer.slice(0, match.index), out);
        buffer = buffer.slice(match.index + match[0].length);
      }
      return out;
    },
    end() {
      const out: SseMessage[] = [];
      if (buffer !== "") take(buffer.replace(/\r$/, ""), out);
      buffer = "";
      // An event the stream cut off before its blank line is incomplete and is dropped, as browsers do.
      return out;
    },
  };
}

/** Reads a byte stream of server-sent events, yielding each event as it completes. */
export async function* readSseMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const parser = createSseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
    yield* parser.push(decoder.decode());
    yield* parser.end();
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

const KNOWN_EVENTS = new Set(["retrieval", "grounding", "citation", "answer-delta", "answer-reset", "done"]);

/** An `error` event's or error response's envelope as an AppError with the server's code and message. */
function serverError(status: number, body: unknown): AppError {
  const envelope = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof envelope?.code === "string" ? envelope.code : "chat_failed";
  const message =
    typeof envelope?.message === "string" ? envelope.message : `The server answered HTTP ${status}.`;
  return new AppError(code, status, `Ask failed (${status} ${code}): ${message}`);
}

/** The image's media type from its first bytes, for the data URL (the server sniffs the bytes anyway). */
function imageMediaType(bytes: Uint8Array): string {
  const ascii = (start: number, end: number) => String.fromCharCode(...bytes.subarray(start, end));
  if (bytes[0] === 0x89 && ascii(1, 4) === "PNG") return "image/png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return "image/jpeg";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  if (ascii(0, 4) === "GIF8") return "image/gif";
  return "application/octet-stream";
}

/**
 * Asks one question in-process (no `url`) or on the server at `url`, passes each event of the turn to
 * `onEvent` as it arrives, and returns the final result.
 *
 * @throws ValidationError for a missing question, an unreadable image or a malformed filter; in-process,
 *   the chain's own errors; with `url`, an AppError carrying the server's code and message when it answers
 *   with an error (before or during the stream), or `server_unreachable` when it cannot be reached.
 */
export async function runAsk({
  url,
  tenant,
  env = process.env,
  question,
  imagePaths = [],
  kinds,
  topK,
  filter,
  offline = false,
  onEvent = () => undefined,
  fetch: send = (input, init) => fetch(input, init),
}: RunAskOptions): Promise<ChatResult> {
  if (question === undefined || question.trim() === "") {
    throw new ValidationError(
      'loupe ask needs a question: loupe ask "What color is the circle?" [--image photo.png].',
    );
  }
  const parsedFilter = parseFilterOption(filter);
  const images: Uint8Array[] = [];
  for (const imagePath of imagePaths) images.push(new Uint8Array(await readImageFile(imagePath)));
  const request: Omit<ChatRequest, "tenant"> = {
    question,
    ...(images.length > 0 ? { images: images.map((bytes) => ({ bytes })) } : {}),
    ...(parsedFilter === undefined ? {} : { filter: parsedFilter }),
    ...(kinds === undefined ? {} : { kinds }),
    ...(topK === undefined ? {} : { topK }),
    ...(offline ? { composer: "offline" as const } : {}),
  };
  if (url === undefined) return askInProcess({ env, tenant, request, onEvent });
  if (tenant !== undefined) {
    throw new ValidationError("--tenant applies in-process only; with --url the server decides the tenant.");
  }
  const endpoint = `${url.replace(/\/+$/, "")}/v1/chat`;
  let response: Response;
  try {
    response = await send(endpoint, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({
        question,
        images:
          images.length > 0
            ? images.map(
                (bytes) => `data:${imageMediaType(bytes)};base64,${Buffer.from(bytes).toString("base64")}`,
              )
            : undefined,
        filter: parsedFilter,
        kinds,
        topK,
        composer: offline ? "offline" : undefined,
        stream: true,
      }),
    });
  } catch (error) {
    throw serverUnreachable({ url, error, doing: "ask" });
  }
  if (!response.ok || response.body === null) {
    throw serverError(response.status, await response.json().catch(() => undefined));
  }
  for await (const message of readSseMessages(response.body)) {
    let data: unknown;
    try {
      data = JSON.parse(message.data);
    } catch {
      throw new AppError(
        "bad_server_response",
        502,
        `The server sent a ${message.event} event whose data is not JSON: ${JSON.stringify(message.data.slice(0, 80))}.`,
      );
    }
    if (message.event === "error") throw serverError(response.status, data);
    // Events this client does not know (a newer server's) are skipped rather than fatal.
    if (!KNOWN_EVENTS.has(message.event)) continue;
    const event = { type: message.event, data } as ChatEvent;
    onEvent(event);
    if (event.type === "done") return event.data;
  }
  throw new AppError(
    "bad_server_response",
    502,
    `The server at ${url} ended the answer stream without a done event; the answer is incomplete.`,
  );
}

/** Opens the configured store, model pack and LLM in this process, runs one turn, and closes them. */
async function askInProcess({
  env,
  tenant,
  request,
  onEvent,
}: {
  env: Record<string, string | undefined>;
  tenant: string | undefined;
  request: Omit<ChatRequest, "tenant">;
  onEvent: (event: ChatEvent) => void;
}): Promise<ChatResult> {
  // Imported on use, like `search`: the store pulls in the Milvus SDK and the chain LangChain.
  const { openLocalServices } = await import("../local-services.ts");
  const services = await openLocalServices({ env });
  try {
    const { chain } = services;
    for await (const event of chain.events({ ...request, tenant: tenant ?? services.config.defaultTenant })) {
      onEvent(event);
      if (event.type === "done") return event.data;
    }
    throw new Error("The chat chain's stream ended without a done event.");
  } finally {
    await services.close();
  }
}

function formatSpan(start: number | null, end: number | null): string {
  return start === null || end === null ? "" : ` ${start.toFixed(1)}–${end.toFixed(1)}s`;
}

/** The lines printed after the answer: the cited evidence, best first, and the confidence. */
export function formatAskFooter(result: ChatResult): string {
  const lines = ["", result.citations.length === 0 ? "No citations." : "Citations:"];
  for (const citation of result.citations) {
    lines.push(
      `  [${citation.id}] ${citation.kind}${formatSpan(citation.start, citation.end)} score ${citation.score.toFixed(4)}`,
    );
  }
  const note = result.fallback === undefined ? "" : ` (offline answer: ${result.fallback.reason})`;
  lines.push(`Confidence: ${result.confidence.toFixed(2)}${result.answered ? "" : ", not answered"}${note}`);
  return `${lines.join("\n")}\n`;
}

/**
 * An `onEvent` that prints the answer as it streams: deltas as they come, a notice when the LLM failed
 * mid-answer and the offline answer follows, then {@link formatAskFooter}.
 */
export function createAnswerPrinter(write: (text: string) => void): (event: ChatEvent) => void {
  let lineOpen = false;
  const endLine = () => {
    if (lineOpen) write("\n");
    lineOpen = false;
  };
  return (event) => {
    if (event.type === "answer-delta") {
      if (event.data.text === "") return;
      write(event.data.text);
      lineOpen = !event.data.text.endsWith("\n");
    } else if (event.type === "answer-reset") {
      endLine();
      write(`[The LLM failed (${event.data.reason}); the offline answer follows.]\n`);
    } else if (event.type === "done") {
      endLine();
      write(formatAskFooter(event.data));
    }
  };
}

/** Registers `loupe ask`. */
export function registerAskCommand(program: Command): void {
  program
    .command("ask")
    .description("ask a question about the corpus (and attached images) and stream the cited answer")
    .argument("[question]", 'the question, e.g. "What color is the circle?"')
    .option(
      "--image <file>",
      "an image file to ask about; repeat for several (cited as att_1, att_2, …)",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option("--kinds <list>", "comma-separated kinds: image, video_segment, triple (default: all)")
    .option("--top-k <n>", "items retrieved per kind, 1–100 (default 10)", wholeNumber("--top-k"))
    .option(
      "--filter <json>",
      'typed filter as JSON, e.g. \'[{"field":"metadata.tags","op":"contains","value":"red"}]\'',
    )
    .option("--offline", "answer with the offline composer even when an LLM is configured", false)
    .option("--url <base>", "ask a running Loupe (e.g. http://127.0.0.1:8080) instead of in-process")
    .option("--tenant <tenant>", "tenant to ask, in-process only (default: LOUPE_DEFAULT_TENANT)")
    .option("--json", "print the final result as JSON instead of streaming the answer", false)
    .action(
      async (
        question: string | undefined,
        flags: {
          image: string[];
          kinds?: string;
          topK?: number;
          filter?: string;
          offline: boolean;
          url?: string;
          tenant?: string;
          json: boolean;
        },
      ) => {
        const result = await runAsk({
          url: flags.url,
          tenant: flags.tenant,
          question,
          imagePaths: flags.image,
          kinds: listOption(flags.kinds),
          topK: flags.topK,
          filter: flags.filter,
          offline: flags.offline,
          onEvent: flags.json ? undefined : createAnswerPrinter((text) => process.stdout.write(text)),
        });
        if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      },
    );
}
