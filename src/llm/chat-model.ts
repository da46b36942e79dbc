/**
 * The chat model port and its one adapter: any OpenAI-compatible chat completions endpoint (OpenAI,
 * Azure OpenAI's `/openai/v1`, Ollama, vLLM) through LangChain's `@langchain/openai`.
 *
 * The adapter always streams, and owns the policies LangChain and the SDK would otherwise decide:
 * - one deadline per call (`timeoutMs`) that covers connecting, every retry and the whole stream;
 * - bounded retries with exponential backoff and jitter, only on connection errors, 408, 429 and 5xx,
 *   and only while no text has been handed on (a relayed delta cannot be taken back);
 * - every failure becomes an {@link LlmError} naming the endpoint's host (never the key), the status
 *   and what to check.
 *
 * It uses `ChatOpenAICompletions` rather than `ChatOpenAI`: the latter switches some model names to
 * OpenAI's Responses API, which OpenAI-compatible servers do not offer. LangChain's own retries are
 * off (`maxRetries: 0`): they would retry statuses such as 422 and back off for seconds regardless of
 * the deadline.
 */
import { AIMessage, type BaseMessage, HumanMessage, SystemMessage } from "@langchain/core/messages";
import { ChatOpenAICompletions } from "@langchain/openai";
import { LlmError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { errorCodeOf, type LoupeMetrics } from "../metrics/metrics.ts";

/** One part of a multimodal message. */
export type ChatContentPart =
  | { type: "text"; text: string }
  /** An image as a URL; Loupe sends `data:` URLs so the endpoint needs no access to Loupe's storage. */
  | { type: "image"; url: string; detail?: "low" | "high" | "auto" };

/** One message of a chat completion request. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string | readonly ChatContentPart[];
}

/** Token counts an endpoint reported. */
export interface ChatUsage {
  promptTokens: number;
  completionTokens: number;
}

/** One chat completion call. */
export interface ChatModelRequest {
  messages: readonly ChatMessage[];
  /** Overrides the model's default temperature for this call. */
  temperature?: number;
  /** Most tokens to write; capped at the model's configured maximum. */
  maxTokens?: number;
  /** Aborts the call (the client went away). */
  signal?: AbortSignal;
}

/** Events of a streamed call: text deltas in order, then one `done`. */
export type ChatModelEvent =
  | { type: "delta"; text: string }
  | {
      type: "done";
      /** The model name the endpoint reported (the configured one when it reported none). */
      model: string;
      usage?: ChatUsage;
      /** The endpoint's `finish_reason` (`stop`; `length` when the answer hit the token limit). */
      finishReason: string;
      /** Requests made, retries included. */
      attempts: number;
    };

/** The whole answer of a call. */
export interface ChatModelResult {
  text: string;
  model: string;
  usage?: ChatUsage;
  finishReason: string;
  attempts: number;
}

/** A chat model the composers can call. */
export interface ChatModel {
  /** The configured model name. */
  readonly model: string;
  /** Host (and port) of the endpoint, for messages and logs. */
  readonly endpoint: string;
  /**
   * Streams one completion.
   *
   * @throws {LlmError} when the endpoint fails, times out or the call is aborted (code `llm_aborted`).
   */
  stream(request: ChatModelRequest): AsyncIterable<ChatModelEvent>;
  /**
   * Runs one completion to its end, handing each delta to `onDelta` as it arrives.
   *
   * @throws {LlmError} as {@link ChatModel.stream}.
   */
  complete(request: ChatModelRequest & { onDelta?: (text: string) => void }): Promise<ChatModelResult>;
}

/** Options of {@link createChatModel}. */
export interface CreateChatModelOptions {
  /** Model name at the endpoint (`LOUPE_LLM_MODEL`). */
  model: string;
  /** Base URL of the API, e.g. `http://localhost:11434/v1` (`OPENAI_BASE_URL`). */
  baseUrl?: string;
  /** Bearer token (`OPENAI_API_KEY`); local servers usually accept any value. */
  apiKey?: string;
  /** Deadline of one call, retries and streaming included, in milliseconds (`LOUPE_LLM_TIMEOUT_MS`). */
  timeoutMs?: number;
  /** Retries after the first request (`LOUPE_LLM_MAX_RETRIES`). */
  maxRetries?: number;
  /** Default sampling temperature (`LOUPE_LLM_TEMPERATURE`). */
  temperature?: number;
  /** Most tokens one answer may have (`LOUPE_LLM_MAX_TOKENS`); requests may ask for fewer. */
  maxTokens?: number;
  /** First retry delay in milliseconds; each later one doubles, up to `retryMaxDelayMs`, with jitter. */
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  logger?: Logger;
  /** Where each call's time, outcome, tokens and retries are reported; nowhere when absent. */
  metrics?: Pick<LoupeMetrics, "observeLlmCall">;
}

const defaultBaseUrl = "https://api.openai.com/v1";
/** Longest text taken from an endpoint's error body into a message. */
const maxDetailLength = 240;

/** Builds the OpenAI-compatible chat model. Nothing is sent until the first call. */
export function createChatModel({
  model,
  baseUrl = defaultBaseUrl,
  apiKey,
  timeoutMs = 30_000,
  maxRetries = 2,
  temperature = 0.2,
  maxTokens = 512,
  retryBaseDelayMs = 500,
  retryMaxDelayMs = 8000,
  logger,
  metrics,
}: CreateChatModelOptions): ChatModel {
  const endpoint = endpointHost(baseUrl);
  // The SDK refuses to start without a key; local servers ignore it, and a real endpoint answers 401.
  const key = apiKey ?? "not-set";
  const clients = new Map<string, ChatOpenAICompletions>();

  const clientFor = (options: { temperature: number; maxTokens: number }): ChatOpenAICompletions => {
    const cacheKey = `${options.temperature}|${options.maxTokens}`;
    let client = clients.get(cacheKey);
    if (client === undefined) {
      // Temperature and token limit are fields of the LangChain model, not call options.
      if (clients.size >= 16) clients.delete(clients.keys().next().value as string);
      client = new ChatOpenAICompletions({
        model,
        apiKey: key,
        // null keeps the SDK from reading OPENAI_ORG_ID / OPENAI_PROJECT_ID: main.ts alone reads the environment.
        configuration: { baseURL: baseUrl, organization: null, project: null },
        temperature: options.temperature,
        maxTokens: options.maxTokens,
        timeout: timeoutMs,
        maxRetries: 0,
        onFailedAttempt: (error: unknown) => {
          throw error;
        },
        streaming: true,
        streamUsage: true,
      });
      clients.set(cacheKey, client);
    }
    return client;
  };

  async function* stream(request: ChatModelRequest): AsyncGenerator<ChatModelEvent> {
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = request.signal === undefined ? deadline : AbortSignal.any([request.signal, deadline]);
    const client = clientFor({
      temperature: request.temperature ?? temperature,
      maxTokens: Math.min(request.maxTokens ?? maxTokens, maxTokens),
    });
    const messages = request.messages.map(toLangChainMessage);
    const started = performance.now();
    let emitted = false;

    for (let attempt = 1; ; attempt++) {
      try {
        const iterable = await raceAbort(client.stream(messages, { signal }), signal);
        const iterator = iterable[Symbol.asyncIterator]();
        let usage: ChatUsage | undefined;
        let finishReason: string | undefined;
        let reportedModel: string | undefined;
        try {
          while (true) {
            const next = await raceAbort(iterator.next(), signal);
            if (next.done === true) break;
            const chunk = next.value;
            const text = typeof chunk.content === "string" ? chunk.content : chunk.text;
            if (chunk.usage_metadata !== undefined) {
              usage = {
                promptTokens: chunk.usage_metadata.input_tokens,
                completionTokens: chunk.usage_metadata.output_tokens,
              };
            }
            const metadata = chunk.response_metadata as { finish_reason?: unknown; model_name?: unknown };
            if (typeof metadata.finish_reason === "string") finishReason = metadata.finish_reason;
            if (typeof metadata.model_name === "string" && metadata.model_name !== "") {
              reportedModel = metadata.model_name;
            }
            if (text !== "") {
              emitted = true;
              yield { type: "delta", text };
            }
          }
        } finally {
          // Releases the connection when the deadline or the caller stopped the stream early.
          void Promise.resolve(iterator.return?.()).catch(() => undefined);
        }
        if (finishReason === undefined) throw new IncompleteStreamError();
        yield { type: "done", model: reportedModel ?? model, usage, finishReason, attempts: attempt };
        return;
      } catch (error) {
        const failure = classify({ error, signal: request.signal, deadline, apiKey });
        const elapsedMs = performance.now() - started;
        const delayMs = failure.retryAfterMs ?? backoffDelay({ attempt, retryBaseDelayMs, retryMaxDelayMs });
        if (failure.retryable && !emitted && attempt <= maxRetries && elapsedMs + delayMs < timeoutMs) {
          logger?.warn(
            {
              endpoint,
              model,
              attempt,
              status: failure.status,
              retryInMs: Math.round(delayMs),
              reason: failure.detail,
            },
            "LLM call failed; retrying",
          );
          if (await sleep(delayMs, signal)) continue;
          // The deadline or the caller ended the wait: report that instead of the earlier failure.
          throw toLlmError({
            failure: classify({ error: signal.reason, signal: request.signal, deadline, apiKey }),
            endpoint,
            model,
            timeoutMs,
            attempts: attempt,
            elapsedMs: performance.now() - started,
          });
        }
        throw toLlmError({ failure, endpoint, model, timeoutMs, attempts: attempt, elapsedMs, emitted });
      }
    }
  }

  /** {@link stream}, with each call's outcome reported to `metrics`. */
  async function* observed(request: ChatModelRequest): AsyncGenerator<ChatModelEvent> {
    const started = performance.now();
    try {
      for await (const event of stream(request)) {
        if (event.type === "done") {
          metrics?.observeLlmCall({
            model,
            seconds: (performance.now() - started) / 1000,
            attempts: event.attempts,
            ...(event.usage === undefined
              ? {}
              : { promptTokens: event.usage.promptTokens, completionTokens: event.usage.completionTokens }),
          });
        }
        yield event;
      }
    } catch (error) {
      metrics?.observeLlmCall({
        model,
        errorCode: errorCodeOf(error),
        seconds: (performance.now() - started) / 1000,
      });
      throw error;
    }
  }
  const streamCall = metrics === undefined ? stream : observed;

  return {
    model,
    endpoint,
    stream: streamCall,
    async complete({ onDelta, ...request }) {
      let text = "";
      for await (const event of streamCall(request)) {
        if (event.type === "delta") {
          text += event.text;
          onDelta?.(event.text);
        } else {
          return {
            text,
            model: event.model,
            usage: event.usage,
            finishReason: event.finishReason,
            attempts: event.attempts,
          };
        }
      }
      // The generator ends with `done` or throws; reaching this line is a bug in `stream`.
      throw new LlmError(`The LLM call to ${endpoint} ended without a result.`, {
        context: { endpoint, model },
      });
    },
  };
}

/** The endpoint's host and port; never its path, query or credentials. */
function endpointHost(baseUrl: string): string {
  try {
    return new URL(baseUrl).host;
  } catch {
    throw new LlmError(
      `The LLM base URL is not a URL. Set OPENAI_BASE_URL to e.g. http://localhost:11434/v1.`,
    );
  }
}

function toLangChainMessage(message: ChatMessage): BaseMessage {
  if (typeof message.content === "string") {
    if (message.role === "system") return new SystemMessage(message.content);
    if (message.role === "assistant") return new AIMessage(message.content);
    return new HumanMessage(message.content);
  }
  const parts = message.content.map((part) =>
    part.type === "text"
      ? { type: "text" as const, text: part.text }
      : {
          type: "image_url" as const,
          image_url: { url: part.url, ...(part.detail ? { detail: part.detail } : {}) },
        },
  );
  if (message.role === "user") return new HumanMessage({ content: parts });
  // System and assistant messages carry text only in the chat completions API.
  const text = parts.map((part) => (part.type === "text" ? part.text : "")).join("\n");
  return message.role === "system" ? new SystemMessage(text) : new AIMessage(text);
}

/** The stream closed without a chunk carrying `finish_reason`: the answer may be cut short. */
class IncompleteStreamError extends Error {
  constructor() {
    super("the stream ended before a finish_reason");
    this.name = "IncompleteStreamError";
  }
}

interface Failure {
  kind: "aborted" | "timeout" | "status" | "connection" | "malformed" | "incomplete" | "unknown";
  status?: number;
  retryable: boolean;
  retryAfterMs?: number;
  /** Short, key-free description from the error or the endpoint's error body. */
  detail: string;
}

function classify({
  error,
  signal,
  deadline,
  apiKey,
}: {
  error: unknown;
  signal: AbortSignal | undefined;
  deadline: AbortSignal;
  apiKey: string | undefined;
}): Failure {
  const clean = (text: string) => cleanDetail(text, apiKey);
  if (signal?.aborted === true) return { kind: "aborted", retryable: false, detail: "aborted by the caller" };
  if (deadline.aborted) return { kind: "timeout", retryable: false, detail: "deadline reached" };
  if (error instanceof IncompleteStreamError)
    return { kind: "incomplete", retryable: false, detail: error.message };
  const record = (typeof error === "object" && error !== null ? error : {}) as {
    status?: unknown;
    name?: unknown;
    message?: unknown;
    code?: unknown;
    error?: { message?: unknown; code?: unknown };
    headers?: { get?: (name: string) => string | null };
  };
  const name = typeof record.name === "string" ? record.name : "";
  const message = typeof record.message === "string" ? record.message : String(error);
  if (typeof record.status === "number") {
    const status = record.status;
    const bodyMessage = typeof record.error?.message === "string" ? record.error.message : message;
    const quotaExhausted =
      record.code === "insufficient_quota" || record.error?.code === "insufficient_quota";
    const retryable = !quotaExhausted && (status === 408 || status === 429 || status >= 500);
    return {
      kind: "status",
      status,
      retryable,
      retryAfterMs: retryAfter(record.headers),
      detail: clean(bodyMessage),
    };
  }
  if (name === "TimeoutError" || name === "APIConnectionTimeoutError") {
    return { kind: "timeout", retryable: false, detail: clean(message) };
  }
  if (name === "AbortError" || name === "APIUserAbortError") {
    return { kind: "aborted", retryable: false, detail: clean(message) };
  }
  if (error instanceof SyntaxError || /could not parse|unexpected token|json/i.test(message)) {
    return { kind: "malformed", retryable: false, detail: clean(message) };
  }
  const code = deepestCode(error);
  if (
    name === "APIConnectionError" ||
    code !== undefined ||
    /terminated|socket|fetch failed|ECONN|other side closed|network/i.test(message)
  ) {
    return { kind: "connection", retryable: true, detail: clean(code ?? message) };
  }
  return { kind: "unknown", retryable: false, detail: clean(message) };
}

/** The innermost `code` along an error's cause chain (`ECONNREFUSED`, `UND_ERR_SOCKET`, …). */
function deepestCode(error: unknown): string | undefined {
  let found: string | undefined;
  let current: unknown = error;
  for (let depth = 0; depth < 6 && typeof current === "object" && current !== null; depth++) {
    const { code, cause } = current as { code?: unknown; cause?: unknown };
    if (typeof code === "string" && /^[A-Z][A-Z0-9_]+$/.test(code)) found = code;
    current = cause;
  }
  return found;
}

function retryAfter(headers: { get?: (name: string) => string | null } | undefined): number | undefined {
  if (typeof headers?.get !== "function") return undefined;
  const milliseconds = Number(headers.get("retry-after-ms") ?? Number.NaN);
  if (Number.isFinite(milliseconds) && milliseconds >= 0) return milliseconds;
  const header = headers.get("retry-after");
  if (header === null || header === undefined) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Removes LangChain's troubleshooting suffix and the key, flattens whitespace and caps the length. */
function cleanDetail(text: string, apiKey: string | undefined): string {
  let detail = text.replace(/\s*Troubleshooting URL:.*$/s, "");
  if (apiKey !== undefined && apiKey.length >= 4) detail = detail.split(apiKey).join("(hidden)");
  detail = detail.replace(/\s+/g, " ").trim();
  return detail.length > maxDetailLength ? `${detail.slice(0, maxDetailLength)}…` : detail;
}

function backoffDelay({
  attempt,
  retryBaseDelayMs,
  retryMaxDelayMs,
}: {
  attempt: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
}): number {
  const ceiling = Math.min(retryMaxDelayMs, retryBaseDelayMs * 2 ** (attempt - 1));
  // Jitter spreads the retries of many requests that failed together.
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function toLlmError({
  failure,
  endpoint,
  model,
  timeoutMs,
  attempts,
  elapsedMs,
  emitted = false,
}: {
  failure: Failure;
  endpoint: string;
  model: string;
  timeoutMs: number;
  attempts: number;
  elapsedMs: number;
  emitted?: boolean;
}): LlmError {
  const tries = attempts > 1 ? ` after ${attempts} attempts` : "";
  const context = {
    endpoint,
    model,
    status: failure.status,
    attempts,
    elapsedMs: Math.round(elapsedMs),
    kind: failure.kind,
  };
  const { status, detail } = failure;
  switch (failure.kind) {
    case "aborted":
      return new LlmError(`The LLM call to ${endpoint} was aborted by the caller.`, {
        code: "llm_aborted",
        status: 499,
        context,
      });
    case "timeout":
      return new LlmError(
        `The LLM endpoint ${endpoint} did not finish answering within ${timeoutMs} ms (LOUPE_LLM_TIMEOUT_MS)${tries}. Check that the server is up and model "${model}" is loaded, or raise LOUPE_LLM_TIMEOUT_MS.`,
        { code: "llm_timeout", status: 504, context },
      );
    case "status":
      if (status === 401 || status === 403) {
        return new LlmError(
          `The LLM endpoint ${endpoint} refused the API key (HTTP ${status}: ${detail}). Check OPENAI_API_KEY.`,
          { code: "llm_unauthorized", context },
        );
      }
      if (status === 404) {
        return new LlmError(
          `The LLM endpoint ${endpoint} answered HTTP 404 for model "${model}" (${detail}). Check LOUPE_LLM_MODEL, and that OPENAI_BASE_URL is the API root (usually ending in /v1).`,
          { code: "llm_not_found", context },
        );
      }
      if (status === 429) {
        return new LlmError(
          `The LLM endpoint ${endpoint} is rate limiting or out of quota (HTTP 429: ${detail})${tries}. Check the account's limits; LOUPE_LLM_MAX_RETRIES sets how often Loupe retries.`,
          { code: "llm_rate_limited", status: 503, context },
        );
      }
      if (status !== undefined && status >= 500) {
        return new LlmError(
          `The LLM endpoint ${endpoint} failed with HTTP ${status} (${detail})${tries}. Check the server's logs and that model "${model}" runs there.`,
          { code: "llm_failed", context },
        );
      }
      return new LlmError(
        `The LLM endpoint ${endpoint} rejected the request with HTTP ${status} (${detail}). Check that model "${model}" exists there and, if the request carried images, that it accepts them (otherwise set LOUPE_LLM_VISION=false).`,
        { code: "llm_rejected", context },
      );
    case "connection":
      return new LlmError(
        emitted
          ? `The connection to the LLM endpoint ${endpoint} broke while the answer was streaming (${detail}). Check the server's logs and any proxy between Loupe and it.`
          : `Could not reach the LLM endpoint ${endpoint} (${detail})${tries}. Check OPENAI_BASE_URL and that the server is running.`,
        { code: "llm_unreachable", context },
      );
    case "malformed":
      return new LlmError(
        `The LLM endpoint ${endpoint} sent something that is not an OpenAI chat completion (${detail}). Check that OPENAI_BASE_URL points at an OpenAI-compatible API (usually ending in /v1).`,
        { code: "llm_bad_response", context },
      );
    case "incomplete":
      return new LlmError(
        `The LLM endpoint ${endpoint} closed the stream before the model finished (no finish_reason). Check the server's logs and any proxy between Loupe and it.`,
        { code: "llm_bad_response", context },
      );
    default:
      return new LlmError(
        `The LLM call to ${endpoint} failed (${detail}). Check OPENAI_BASE_URL, LOUPE_LLM_MODEL and the server's logs.`,
        { context },
      );
  }
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => undefined);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
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
