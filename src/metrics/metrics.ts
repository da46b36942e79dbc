/**
 * The metrics port: what the layers report for an operator to watch (requests, the chat chain's steps,
 * model runs, Milvus calls, ingested items, the LLM, queues, Milvus Lite restarts). The layers call
 * {@link LoupeMetrics}; the Prometheus adapter (`prometheus-metrics.ts`) turns the calls into series, and
 * {@link noopMetrics} drops them where metrics are off. It is built once in `services.ts` and handed
 * down, like every port.
 *
 * Every label value a layer passes is one of a small, fixed set (a route's pattern, a step, a model
 * file, a store method, an error code): never a tenant, a raw path, an item id or text from a request,
 * so the number of series stays bounded whatever the traffic.
 */

/** The chat chain's steps, in the order they run (`rag/chain.ts`). */
export const CHAIN_STEPS = ["understand", "embed", "retrieve", "ground", "compose", "verify"] as const;

/** One of {@link CHAIN_STEPS}. */
export type ChainStep = (typeof CHAIN_STEPS)[number];

/** What is ingested, one item at a time. */
export type IngestKind = "image" | "video" | "triple";

/** The outcome of one ingested item: written now, already stored, or refused with a reason. */
export type IngestStatus = "stored" | "skipped" | "failed";

/** One HTTP request, once it was answered. */
export interface RequestObservation {
  method: string;
  /** The pattern of the route that answered (`/v1/media/:id`), `unmatched` for none: never the raw path. */
  route: string;
  status: number;
  /** Time until the answer's headers; a streamed body goes on after it. */
  seconds: number;
}

/** One run of an ONNX model. */
export interface InferenceObservation {
  /** The model file, as the pack names it (`onnx/vision_model.onnx`). */
  model: string;
  /** Size of the batch's first axis (images, texts, text lines). */
  batchSize: number;
  seconds: number;
}

/** One call to the vector store (Milvus). */
export interface StoreCallObservation {
  /** The store method (`search`, `upsert`, `health`, …). */
  call: string;
  /** The error's code when the call failed (`store_unavailable`, `not_ready`, …); absent on success. */
  errorCode?: string;
  seconds: number;
}

/** One call to the LLM endpoint, retries included. */
export interface LlmCallObservation {
  /** The configured model name (`LOUPE_LLM_MODEL`), not what the endpoint reports. */
  model: string;
  /** The error's code when the call failed (`llm_timeout`, `llm_unavailable`, …); absent on success. */
  errorCode?: string;
  seconds: number;
  promptTokens?: number;
  completionTokens?: number;
  /** Requests made, the first included. */
  attempts?: number;
}

/** A queue whose depth is read when metrics are collected (no work per task). */
export interface WatchedQueue {
  /** The kind of request it holds (`chat`, `images`, …). */
  readonly name: string;
  stats(): { running: number; waiting: number };
}

/** What the layers report. Every method is cheap and never throws. */
export interface LoupeMetrics {
  /** An HTTP request was answered. */
  observeRequest(observation: RequestObservation): void;
  /**
   * A request was refused to protect the server: its queue was full or it waited past its deadline
   * (`overloaded`), its caller's rate limit was spent (`rate_limited`), or its tenant ran the most heavy
   * requests allowed (`too_many_concurrent_requests`).
   */
  countShed(reason: string): void;
  /** Starts reporting the depth of a queue, read at each collection. */
  watchQueue(queue: WatchedQueue): void;
  /** A step of the chat chain ended (successfully or not). */
  observeChainStep(step: ChainStep, seconds: number): void;
  /** The chat chain answered with the offline composer because the LLM failed (`code`: the LLM's error). */
  countLlmFallback(code: string): void;
  /** An LLM call ended. */
  observeLlmCall(observation: LlmCallObservation): void;
  /** An ONNX model ran one batch. */
  observeInference(observation: InferenceObservation): void;
  /** A vector store call ended. */
  observeStoreCall(observation: StoreCallObservation): void;
  /** Items were ingested with this outcome. */
  countIngestItems(kind: IngestKind, status: IngestStatus, count?: number): void;
  /** Embedded Milvus Lite was started again after it exited; `failed` when that start failed. */
  countLiteRestart(outcome: "started" | "failed"): void;
  /** Starts reporting whether embedded Milvus Lite runs, read at each collection. */
  watchLite(isUp: () => boolean): void;
}

/** The metrics as text for a scraper. */
export interface MetricsExposition {
  /** The exposition's content type (`text/plain; version=0.0.4; charset=utf-8`). */
  readonly contentType: string;
  /** Every series, in the Prometheus text format. */
  render(): Promise<string>;
}

/** Metrics that are collected and can be scraped. */
export type ScrapableMetrics = LoupeMetrics & MetricsExposition;

/**
 * The code a failure is counted under: an `AppError`'s `code` (`store_unavailable`, `llm_timeout`, …),
 * else `unknown`. The adapter counts a code that is not a plain identifier as `other`.
 */
export function errorCodeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.length > 0 ? code : "unknown";
}

/** Metrics that record nothing: what layers get when none are handed in, or `LOUPE_METRICS=off`. */
export const noopMetrics: LoupeMetrics = {
  observeRequest() {},
  countShed() {},
  watchQueue() {},
  observeChainStep() {},
  countLlmFallback() {},
  observeLlmCall() {},
  observeInference() {},
  observeStoreCall() {},
  countIngestItems() {},
  countLiteRestart() {},
  watchLite() {},
};
