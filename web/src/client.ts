/**
 * Loupe's HTTP API as the UI calls it: `/v1/chat` streamed (server-sent events over `fetch`, so the
 * key can travel in the `Authorization` header), `/v1/search`, `/v1/feedback`, and media read with the
 * key into `blob:` URLs (an `<img>` cannot send a header). Every failure becomes a {@link RequestFailure}
 * carrying what `errors.ts` needs for its sentence.
 */
import type { FailureFacts } from "./errors.ts";
import { createSseParser } from "./sse.ts";

/** A citation as `/v1/chat` sends it. */
export interface Citation {
  id: string;
  kind: "image" | "video_segment" | "triple" | string;
  mediaUrl: string | null;
  thumbnailUrl: string | null;
  start: number | null;
  end: number | null;
  question: string | null;
  answer: string | null;
  score: number;
}

/** The `done` event's result (the fields the UI reads; the rest is passed on as it came). */
export interface ChatResult {
  answer: string;
  answered?: boolean;
  confidence?: number;
  citations: Citation[];
  [field: string]: unknown;
}

/** One earlier turn. */
export interface HistoryTurn {
  role: "user" | "assistant";
  content: string;
  /** A user turn's images (data URLs), so a follow-up can still be about them. */
  images?: string[];
  citations?: string[];
}

/** A request that failed, with what is known of why. */
export class RequestFailure extends Error {
  constructor(readonly facts: FailureFacts) {
    super(facts.message ?? `request failed${facts.status === undefined ? "" : ` (${facts.status})`}`);
    this.name = "RequestFailure";
  }
}

/** Where Loupe is and how to authenticate. */
export interface ClientOptions {
  /** Loupe's origin, e.g. `https://loupe.example.com`. */
  base: string;
  /** A publishable (or secret) key; absent while Loupe runs without keys. */
  apiKey?: string | undefined;
}

/** What a streamed chat reports as it goes. */
export interface ChatHandlers {
  onRetrieval?(): void;
  onCitation?(citation: Citation): void;
  onDelta?(text: string): void;
  /** The LLM failed after it began; the text so far is to be discarded. */
  onReset?(): void;
}

/** The body of a chat request. */
export interface ChatRequest {
  question: string;
  images?: string[];
  history?: HistoryTurn[];
  [option: string]: unknown;
}

/** The API client. */
export class LoupeClient {
  constructor(private readonly options: ClientOptions) {}

  /** An absolute URL of `path` on Loupe. */
  url(path: string): string {
    return new URL(path, this.options.base).toString();
  }

  /** Whether media requests need the key (so must go through `fetch` and `blob:` URLs). */
  get keyed(): boolean {
    return this.options.apiKey !== undefined && this.options.apiKey !== "";
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.keyed ? { authorization: `Bearer ${this.options.apiKey}`, ...extra } : extra;
  }

  /** `fetch` that turns network failures and non-2xx answers into {@link RequestFailure}s. */
  private async send(path: string, init: RequestInit): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(this.url(path), { ...init, credentials: "omit", mode: "cors" });
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw new RequestFailure(await this.whyUnreachable());
    }
    if (!response.ok) throw new RequestFailure(await readEnvelope(response));
    return response;
  }

  /**
   * A `fetch` that fails without an answer is either the network or the browser refusing a cross-origin
   * call that Loupe did not allow (its preflight answer carries no CORS header, so the page cannot read
   * it). A `no-cors` probe of the public `/healthz` tells them apart: it succeeds whenever Loupe is
   * reachable.
   */
  private async whyUnreachable(): Promise<RequestFailure["facts"]> {
    if (typeof navigator !== "undefined" && navigator.onLine === false) return { offline: true };
    try {
      await fetch(this.url("/healthz"), { mode: "no-cors", credentials: "omit", cache: "no-store" });
      return { refused: true };
    } catch {
      return { offline: true };
    }
  }

  /** Asks a question, streaming; resolves with the final result. */
  async chat(request: ChatRequest, handlers: ChatHandlers, signal: AbortSignal): Promise<ChatResult> {
    const response = await this.send("/v1/chat", {
      method: "POST",
      headers: this.headers({ "content-type": "application/json", accept: "text/event-stream" }),
      body: JSON.stringify({ ...request, stream: true }),
      signal,
    });
    if (response.body === null) throw new RequestFailure({ offline: true });
    const parser = createSseParser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let result: ChatResult | undefined;
    const handle = (event: string, data: string): void => {
      let payload: unknown;
      try {
        payload = JSON.parse(data);
      } catch {
        return;
      }
      if (event === "retrieval") handlers.onRetrieval?.();
      else if (event === "citation") handlers.onCitation?.(payload as Citation);
      else if (event === "answer-delta")
        handlers.onDelta?.(String((payload as { text?: unknown }).text ?? ""));
      else if (event === "answer-reset") handlers.onReset?.();
      else if (event === "done") result = payload as ChatResult;
      else if (event === "error") {
        const error = (payload as { error?: { code?: string; message?: string; status?: number } }).error;
        throw new RequestFailure({
          status: error?.status ?? statusOfCode(error?.code),
          ...(error?.code === undefined ? {} : { code: error.code }),
          ...(error?.message === undefined ? {} : { message: error.message }),
        });
      }
    };
    try {
      for (;;) {
        const { done, value } = await reader.read();
        const events = done ? parser.end() : parser.push(value);
        for (const event of events) handle(event.event, event.data);
        if (done) break;
      }
    } catch (error) {
      if (error instanceof RequestFailure || signal.aborted) throw error;
      throw new RequestFailure(await this.whyUnreachable());
    }
    if (result === undefined) throw new RequestFailure({ offline: true });
    return result;
  }

  /** Searches the corpus by text or by an image (a data URL or a stored id). */
  async search(query: { text?: string; image?: string }, signal?: AbortSignal): Promise<SearchItem[]> {
    const response = await this.send("/v1/search", {
      method: "POST",
      headers: this.headers({ "content-type": "application/json" }),
      body: JSON.stringify({ ...query, topK: 24 }),
      ...(signal === undefined ? {} : { signal }),
    });
    return ((await response.json()) as { items?: SearchItem[] }).items ?? [];
  }

  /** Posts a rating or a correction. Resolves `false` when the server has no feedback endpoint. */
  async feedback(body: FeedbackBody): Promise<boolean> {
    try {
      await this.send("/v1/feedback", {
        method: "POST",
        headers: this.headers({ "content-type": "application/json" }),
        body: JSON.stringify(body),
      });
      return true;
    } catch (error) {
      if (error instanceof RequestFailure && (error.facts.status === 404 || error.facts.status === 405)) {
        return false;
      }
      throw error;
    }
  }

  /**
   * A URL an `<img>` or `<video>` can load for `path`: the path itself without a key, else the bytes
   * read with the key as a `blob:` URL (the caller revokes it).
   */
  async mediaSource(path: string, signal?: AbortSignal): Promise<{ url: string; revoke: () => void }> {
    if (!this.keyed) return { url: this.url(path), revoke: () => undefined };
    const response = await this.send(path, {
      headers: this.headers(),
      ...(signal === undefined ? {} : { signal }),
    });
    const url = URL.createObjectURL(await response.blob());
    return { url, revoke: () => URL.revokeObjectURL(url) };
  }
}

/** A search result (the fields the UI reads). */
export interface SearchItem {
  id: string;
  kind: string;
  score: number;
  thumbnailUrl: string;
  mediaUrl: string;
  text?: string;
  start?: number;
  end?: number;
  question?: string;
  answer?: string;
}

/** The body of `POST /v1/feedback`. */
export interface FeedbackBody {
  rating: "up" | "down";
  question: string;
  answer: string;
  citations: string[];
  correction?: string;
  image?: string;
}

/** The HTTP status an error code stands for, for `error` events that carry only the code. */
function statusOfCode(code: string | undefined): number | undefined {
  if (code === undefined) return undefined;
  if (/unavailable|not_ready|overloaded|busy/.test(code)) return 503;
  if (/rate_limited|too_many/.test(code)) return 429;
  if (/too_large/.test(code)) return 413;
  if (/unauthorized|forbidden|not_allowed|invalid_api_key/.test(code)) return 403;
  return 500;
}

/** What an error answer says: its status and, when it is Loupe's envelope, its code and message. */
async function readEnvelope(response: Response): Promise<RequestFailure["facts"]> {
  let code: string | undefined;
  let message: string | undefined;
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not JSON (a proxy's page): the status alone says enough.
  }
  return {
    status: response.status,
    ...(code === undefined ? {} : { code }),
    ...(message === undefined ? {} : { message }),
  };
}
