/**
 * A local OpenAI-compatible server for tests: `POST /v1/chat/completions` (streamed and not) and
 * `GET /v1/models`, on 127.0.0.1 and a free port. It records every request and answers each chat
 * completion with the next scripted reply: fixed text, text in given deltas, a delay, an error status,
 * a connection dropped mid-stream, or malformed JSON.
 *
 * ```ts
 * const llm = await startOpenAiTestServer();
 * llm.reply({ text: "The circle is red [img_1]." });       // the next chat completion
 * llm.reply({ status: 500 }, { text: "Recovered." });      // queued: a 500, then an answer
 * llm.setDefault((request) => ({ text: `Seen ${request.body?.messages?.length} messages.` }));
 * // … OPENAI_BASE_URL=llm.url …
 * llm.chatRequests[0]?.body?.messages;                     // what was sent
 * await llm.close();
 * ```
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What the server does with one chat completion request. */
export interface ScriptedReply {
  /** The answer (default `"OK"`), streamed word by word unless `deltas` is given. */
  text?: string;
  /** The streamed deltas, in order (their concatenation is the answer). */
  deltas?: readonly string[];
  /** Wait before sending the status line, in milliseconds (for timeouts). */
  delayMs?: number;
  /** Wait between streamed chunks, in milliseconds. */
  deltaDelayMs?: number;
  /** Answer with this HTTP status and an OpenAI error body instead of a completion (e.g. 401, 429, 500). */
  status?: number;
  /** Message of the error body when `status` is set. */
  errorMessage?: string;
  /** Extra response headers (e.g. `{ "retry-after": "0" }`). */
  headers?: Readonly<Record<string, string>>;
  /** Streamed requests: destroy the connection after this many content deltas. */
  dropAfterDeltas?: number;
  /** Send a chunk (streamed) or body (not streamed) that is not valid JSON. */
  malformed?: boolean;
  /**
   * Token counts to report. Default: estimated from the request and the deltas. `null` reports none.
   * Streamed requests get a usage chunk only when they ask with `stream_options.include_usage`.
   */
  usage?: { promptTokens: number; completionTokens: number } | null;
  /** `finish_reason` of the last chunk or choice (default `"stop"`); `null` ends a stream without one. */
  finishReason?: string | null;
  /** Model name in the response (default: the requested one). */
  model?: string;
}

/** A reply, or a function choosing one from the request. */
export type ReplyScript = ScriptedReply | ((request: RecordedRequest) => ScriptedReply);

/** A message as sent in a chat completion request. */
export interface RecordedMessage {
  role: string;
  content: string | Array<{ type: string; text?: string; image_url?: { url: string; detail?: string } }>;
}

/** The JSON body of a chat completion request (fields Loupe's tests look at; the rest stays in `raw`). */
export interface ChatCompletionBody {
  model?: string;
  messages?: RecordedMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  temperature?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  [key: string]: unknown;
}

/** One request the server received. */
export interface RecordedRequest {
  method: string;
  /** Path with query, e.g. `/v1/chat/completions`. */
  path: string;
  /** Request headers, lower-case names; the authorization value is replaced by `(hidden)`. */
  headers: Record<string, string>;
  /** `valid`/`invalid` against the server's `apiKey`; `unchecked` when it has none; `missing` without a bearer token. */
  authorization: "valid" | "invalid" | "missing" | "unchecked";
  /** The parsed JSON body, when there was one and it parsed. */
  body: ChatCompletionBody | undefined;
  rawBody: string;
  /** `Date.now()` when the request arrived. */
  receivedAt: number;
}

/** Options of {@link startOpenAiTestServer}. */
export interface StartOpenAiTestServerOptions {
  /** When set, requests without `Authorization: Bearer <apiKey>` get a 401 and no script is used. */
  apiKey?: string;
  /** Reply used when no queued reply is left (default `{ text: "OK" }`). */
  defaultReply?: ReplyScript;
  /** Model ids `GET /v1/models` lists (default `["loupe-test-model"]`). */
  models?: readonly string[];
}

/** A running test server. */
export interface OpenAiTestServer {
  /** Base URL to use as `OPENAI_BASE_URL`, e.g. `http://127.0.0.1:41234/v1`. */
  readonly url: string;
  /** Every request received, in order. */
  readonly requests: readonly RecordedRequest[];
  /** Requests to `/v1/chat/completions`, in order. */
  readonly chatRequests: readonly RecordedRequest[];
  /** Queues replies; each chat completion request takes the next one. */
  reply(...scripts: ReplyScript[]): void;
  /** Sets the reply used when the queue is empty. */
  setDefault(script: ReplyScript): void;
  /** Forgets recorded requests and queued replies; the default reply goes back to `{ text: "OK" }`. */
  reset(): void;
  /** Closes every connection and the server. */
  close(): Promise<void>;
}

/** The text of a recorded message: its string content, or its text parts joined by newlines. */
export function messageText(message: RecordedMessage | undefined): string {
  if (message === undefined) return "";
  if (typeof message.content === "string") return message.content;
  return message.content
    .filter((part) => part.type === "text")
    .map((part) => part.text ?? "")
    .join("\n");
}

/** Starts the server on 127.0.0.1 and a free port. */
export async function startOpenAiTestServer({
  apiKey,
  defaultReply = { text: "OK" },
  models = ["loupe-test-model"],
}: StartOpenAiTestServerOptions = {}): Promise<OpenAiTestServer> {
  const requests: RecordedRequest[] = [];
  const queue: ReplyScript[] = [];
  let fallback: ReplyScript = defaultReply;
  const closing = new AbortController();

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        response.writeHead(500, { "content-type": "application/json" });
        response.end(JSON.stringify({ error: { message: `test server failed: ${String(error)}` } }));
      } else {
        response.destroy();
      }
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const rawBody = await readBody(request);
    const recorded = record({ request, rawBody, apiKey });
    requests.push(recorded);
    const path = recorded.path.split("?")[0];

    if (recorded.authorization === "invalid" || recorded.authorization === "missing") {
      if (apiKey !== undefined) {
        sendError(response, { status: 401, message: "Incorrect API key provided.", code: "invalid_api_key" });
        return;
      }
    }
    if (request.method === "GET" && path === "/v1/models") {
      sendJson(response, 200, {
        object: "list",
        data: models.map((id) => ({ id, object: "model", created: 0, owned_by: "loupe-test" })),
      });
      return;
    }
    if (request.method !== "POST" || path !== "/v1/chat/completions") {
      sendError(response, { status: 404, message: `Unknown route ${request.method} ${recorded.path}.` });
      return;
    }
    if (recorded.body === undefined) {
      sendError(response, { status: 400, message: "The body is not JSON." });
      return;
    }
    const next = queue.shift() ?? fallback;
    const script = typeof next === "function" ? next(recorded) : next;
    await answer({ body: recorded.body, script, response, signal: closing.signal });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    get requests() {
      return requests;
    },
    get chatRequests() {
      return requests.filter((request) => request.path.split("?")[0] === "/v1/chat/completions");
    },
    reply(...scripts: ReplyScript[]) {
      queue.push(...scripts);
    },
    setDefault(script: ReplyScript) {
      fallback = script;
    },
    reset() {
      requests.length = 0;
      queue.length = 0;
      fallback = { text: "OK" };
    },
    async close() {
      closing.abort();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function record({
  request,
  rawBody,
  apiKey,
}: {
  request: IncomingMessage;
  rawBody: string;
  apiKey: string | undefined;
}): RecordedRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue;
    headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  const bearer = /^Bearer (.+)$/.exec(headers.authorization ?? "")?.[1];
  if (headers.authorization !== undefined) headers.authorization = "(hidden)";
  let body: ChatCompletionBody | undefined;
  try {
    const parsed: unknown = rawBody === "" ? undefined : JSON.parse(rawBody);
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed))
      body = parsed as ChatCompletionBody;
  } catch {
    body = undefined;
  }
  return {
    method: request.method ?? "",
    path: request.url ?? "",
    headers,
    authorization:
      bearer === undefined
        ? "missing"
        : apiKey === undefined
          ? "unchecked"
          : bearer === apiKey
            ? "valid"
            : "invalid",
    body,
    rawBody,
    receivedAt: Date.now(),
  };
}

function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

function sendError(
  response: ServerResponse,
  {
    status,
    message,
    code,
    headers = {},
  }: { status: number; message: string; code?: string; headers?: Record<string, string> },
) {
  const type =
    status === 401 ? "invalid_request_error" : status === 429 ? "rate_limit_error" : "server_error";
  sendJson(response, status, { error: { message, type, param: null, code: code ?? null } }, headers);
}

/** Resolves after `ms`, or early (false) when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (ms <= 0) return Promise.resolve(!signal.aborted);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function splitIntoDeltas(text: string): string[] {
  const words = text.match(/\s*\S+/g);
  return words === null ? [text] : words;
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

async function answer({
  body,
  script,
  response,
  signal,
}: {
  body: ChatCompletionBody;
  script: ScriptedReply;
  response: ServerResponse;
  signal: AbortSignal;
}): Promise<void> {
  // A client that gave up (its timeout) stops the script, like a real server would notice.
  const gone = new AbortController();
  response.on("close", () => gone.abort());
  const stop = AbortSignal.any([signal, gone.signal]);

  if (!(await sleep(script.delayMs ?? 0, stop))) return;
  const headers = { ...(script.headers ?? {}) };
  if (script.status !== undefined) {
    sendError(response, {
      status: script.status,
      message: script.errorMessage ?? `Scripted error ${script.status}.`,
      headers,
    });
    return;
  }

  const deltas = script.deltas ?? splitIntoDeltas(script.text ?? "OK");
  const text = deltas.join("");
  const model = script.model ?? body.model ?? "loupe-test-model";
  const id = `chatcmpl-test-${Math.random().toString(36).slice(2, 10)}`;
  const created = Math.floor(Date.now() / 1000);
  const finishReason = script.finishReason === undefined ? "stop" : script.finishReason;
  const usage =
    script.usage === null
      ? undefined
      : {
          prompt_tokens: script.usage?.promptTokens ?? estimateTokens(JSON.stringify(body.messages ?? [])),
          completion_tokens: script.usage?.completionTokens ?? deltas.length,
          total_tokens: 0,
        };
  if (usage !== undefined) usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;

  if (body.stream !== true) {
    if (script.malformed === true) {
      response.writeHead(200, { "content-type": "application/json", ...headers });
      response.end('{"id": "chatcmpl-broken", "choices": [');
      return;
    }
    sendJson(
      response,
      200,
      {
        id,
        object: "chat.completion",
        created,
        model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: text },
            finish_reason: finishReason,
            logprobs: null,
          },
        ],
        ...(usage === undefined ? {} : { usage }),
      },
      headers,
    );
    return;
  }

  response.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
    ...headers,
  });
  const chunk = (delta: Record<string, unknown>, finish: string | null) =>
    `data: ${JSON.stringify({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    })}\n\n`;

  // Each write is flushed before the next step, so a scripted drop happens after what was sent arrives.
  const send = (data: string) =>
    new Promise<void>((resolve) => {
      response.write(data, () => resolve());
    });
  await send(chunk({ role: "assistant", content: "" }, null));
  for (const [index, delta] of deltas.entries()) {
    if (script.dropAfterDeltas !== undefined && index >= script.dropAfterDeltas) {
      response.socket?.destroy();
      return;
    }
    if (index > 0 && !(await sleep(script.deltaDelayMs ?? 0, stop))) return;
    if (script.malformed === true && index === Math.floor(deltas.length / 2)) {
      await send('data: {"id": "chatcmpl-broken", "choices": [\n\n');
      continue;
    }
    await send(chunk({ content: delta }, null));
  }
  if (script.dropAfterDeltas !== undefined && script.dropAfterDeltas >= deltas.length) {
    response.socket?.destroy();
    return;
  }
  if (finishReason !== null) await send(chunk({}, finishReason));
  if (usage !== undefined && body.stream_options?.include_usage === true) {
    await send(
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`,
    );
  }
  response.end("data: [DONE]\n\n");
}
