/**
 * The Prometheus adapter of the metrics port, on `prom-client`. Each instance has its own `Registry`,
 * never prom-client's global one, so several Loupes in one process (tests, a library user's app) keep
 * their series apart. Process and Node.js metrics (`process_*`, `nodejs_*`, under their usual names so
 * that stock dashboards find them) are collected on the same registry from the first scrape on. Queue
 * depths and whether Milvus Lite runs are read when the registry is scraped, so they cost nothing
 * between scrapes.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type {
  ChainStep,
  InferenceObservation,
  IngestKind,
  IngestStatus,
  LlmCallObservation,
  RequestObservation,
  ScrapableMetrics,
  StoreCallObservation,
  WatchedQueue,
} from "./metrics.ts";

/** Options of {@link createPrometheusMetrics}. */
export interface PrometheusMetricsOptions {
  /** Also collect process and Node.js metrics (CPU, memory, event loop lag, GC, handles); on by default. */
  processMetrics?: boolean;
}

/** HTTP methods kept as label values; any other (a client may send anything) is counted as `OTHER`. */
const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** An error code as a label value: a code of Loupe's errors, or `other` for anything else. */
const ERROR_CODE = /^[a-z][a-z0-9_]{0,47}$/;

/** Largest batch size named in `batch_size`; larger batches are counted together. */
const LARGEST_BATCH_LABEL = 256;

/**
 * The `batch_size` label of a batch: its size rounded up to a power of two (1, 2, 4, … 256), then
 * `>256`, so a few series cover every size a caller may send.
 */
export function batchSizeLabel(size: number): string {
  if (!Number.isFinite(size) || size <= 1) return "1";
  if (size > LARGEST_BATCH_LABEL) return `>${LARGEST_BATCH_LABEL}`;
  return String(2 ** Math.ceil(Math.log2(size)));
}

function methodLabel(method: string): string {
  const upper = method.toUpperCase();
  return KNOWN_METHODS.has(upper) ? upper : "OTHER";
}

function codeLabel(code: string): string {
  return ERROR_CODE.test(code) ? code : "other";
}

/** A count a caller passes, as a non-negative whole number (prom-client throws on a negative increment). */
function countOf(value: number | undefined): number {
  return value === undefined || !Number.isFinite(value) || value <= 0 ? 0 : Math.floor(value);
}

/** Seconds as an observation; a clock that went backwards reads as zero. */
function secondsOf(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/** Loupe's metrics on a registry of their own. */
export function createPrometheusMetrics({
  processMetrics = true,
}: PrometheusMetricsOptions = {}): ScrapableMetrics {
  const registry = new Registry();
  // The process collectors start monitors of their own (event loop delay, a GC observer) that run until
  // the process ends, so they are started by the first scrape: services that are never scraped (the
  // CLI, tests) start none.
  let processCollected = !processMetrics;
  const registers = [registry];

  const httpRequests = new Counter({
    name: "loupe_http_requests_total",
    help: "HTTP requests answered, by method, route pattern and status.",
    labelNames: ["method", "route", "status"] as const,
    registers,
  });
  const httpDuration = new Histogram({
    name: "loupe_http_request_duration_seconds",
    help: "Time from a request's arrival to its answer's headers, by method and route pattern.",
    labelNames: ["method", "route"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  const shed = new Counter({
    name: "loupe_requests_shed_total",
    help: "Requests refused to protect the server: overloaded (queue full or start deadline passed), rate_limited, too_many_concurrent_requests.",
    labelNames: ["reason"] as const,
    registers,
  });
  const queues = new Set<WatchedQueue>();
  const sumByQueue = (field: "running" | "waiting") => {
    const sums = new Map<string, number>();
    for (const queue of queues) sums.set(queue.name, (sums.get(queue.name) ?? 0) + queue.stats()[field]);
    return sums;
  };
  new Gauge({
    name: "loupe_queue_waiting",
    help: "Heavy requests waiting for a slot, by queue (the kind of request: chat, images, …).",
    labelNames: ["queue"] as const,
    registers,
    collect() {
      this.reset();
      for (const [queue, value] of sumByQueue("waiting")) this.set({ queue }, value);
    },
  });
  new Gauge({
    name: "loupe_queue_running",
    help: "Heavy requests running, by queue (the kind of request: chat, images, …).",
    labelNames: ["queue"] as const,
    registers,
    collect() {
      this.reset();
      for (const [queue, value] of sumByQueue("running")) this.set({ queue }, value);
    },
  });
  const chainSteps = new Histogram({
    name: "loupe_chat_step_duration_seconds",
    help: "Time of each step of the chat chain (understand, embed, retrieve, ground, compose, verify).",
    labelNames: ["step"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const llmFallbacks = new Counter({
    name: "loupe_llm_fallbacks_total",
    help: "Chat answers written by the offline composer because the LLM failed, by the LLM error's code.",
    labelNames: ["code"] as const,
    registers,
  });
  const llmDuration = new Histogram({
    name: "loupe_llm_request_duration_seconds",
    help: "Time of each call to the LLM endpoint, retries and streaming included, by model and outcome.",
    labelNames: ["model", "outcome"] as const,
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
    registers,
  });
  const llmErrors = new Counter({
    name: "loupe_llm_request_errors_total",
    help: "Failed calls to the LLM endpoint, by model and error code.",
    labelNames: ["model", "code"] as const,
    registers,
  });
  const llmTokens = new Counter({
    name: "loupe_llm_tokens_total",
    help: "Tokens the LLM endpoint reported, by model and type (prompt or completion).",
    labelNames: ["model", "type"] as const,
    registers,
  });
  const llmRetries = new Counter({
    name: "loupe_llm_retries_total",
    help: "Requests to the LLM endpoint repeated after a failure, by model.",
    labelNames: ["model"] as const,
    registers,
  });
  const inference = new Histogram({
    name: "loupe_inference_duration_seconds",
    help: "Time of each ONNX model run, by model file and batch size (rounded up to a power of two).",
    labelNames: ["model", "batch_size"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const storeDuration = new Histogram({
    name: "loupe_milvus_request_duration_seconds",
    help: "Time of each vector store (Milvus) call, by call and outcome (ok or error).",
    labelNames: ["call", "outcome"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const storeErrors = new Counter({
    name: "loupe_milvus_request_errors_total",
    help: "Failed vector store (Milvus) calls, by call and error code.",
    labelNames: ["call", "code"] as const,
    registers,
  });
  const ingestItems = new Counter({
    name: "loupe_ingest_items_total",
    help: "Items ingested, by kind (image, video, triple) and status (stored, skipped, failed).",
    labelNames: ["kind", "status"] as const,
    registers,
  });
  const liteRestarts = new Counter({
    name: "loupe_milvus_lite_restarts_total",
    help: "Starts of embedded Milvus Lite after it exited, by outcome (started or failed).",
    labelNames: ["outcome"] as const,
    registers,
  });
  let liteUp: (() => boolean) | undefined;

  return {
    contentType: registry.contentType,
    render: () => {
      if (!processCollected) {
        processCollected = true;
        collectDefaultMetrics({ register: registry });
      }
      return registry.metrics();
    },

    observeRequest({ method, route, status, seconds }: RequestObservation) {
      const labels = { method: methodLabel(method), route };
      httpRequests.inc({ ...labels, status: String(status) });
      httpDuration.observe(labels, secondsOf(seconds));
    },
    countShed(reason: string) {
      shed.inc({ reason: codeLabel(reason) });
    },
    watchQueue(queue: WatchedQueue) {
      queues.add(queue);
    },
    observeChainStep(step: ChainStep, seconds: number) {
      chainSteps.observe({ step }, secondsOf(seconds));
    },
    countLlmFallback(code: string) {
      llmFallbacks.inc({ code: codeLabel(code) });
    },
    observeLlmCall({
      model,
      errorCode,
      seconds,
      promptTokens,
      completionTokens,
      attempts,
    }: LlmCallObservation) {
      llmDuration.observe({ model, outcome: errorCode === undefined ? "ok" : "error" }, secondsOf(seconds));
      if (errorCode !== undefined) llmErrors.inc({ model, code: codeLabel(errorCode) });
      const prompt = countOf(promptTokens);
      const completion = countOf(completionTokens);
      if (prompt > 0) llmTokens.inc({ model, type: "prompt" }, prompt);
      if (completion > 0) llmTokens.inc({ model, type: "completion" }, completion);
      const retries = countOf((attempts ?? 1) - 1);
      if (retries > 0) llmRetries.inc({ model }, retries);
    },
    observeInference({ model, batchSize, seconds }: InferenceObservation) {
      inference.observe({ model, batch_size: batchSizeLabel(batchSize) }, secondsOf(seconds));
    },
    observeStoreCall({ call, errorCode, seconds }: StoreCallObservation) {
      storeDuration.observe({ call, outcome: errorCode === undefined ? "ok" : "error" }, secondsOf(seconds));
      if (errorCode !== undefined) storeErrors.inc({ call, code: codeLabel(errorCode) });
    },
    countIngestItems(kind: IngestKind, status: IngestStatus, count = 1) {
      const items = countOf(count);
      if (items > 0) ingestItems.inc({ kind, status }, items);
    },
    countLiteRestart(outcome: "started" | "failed") {
      liteRestarts.inc({ outcome });
    },
    watchLite(isUp: () => boolean) {
      // Registered on first use, so a Loupe on an external Milvus shows no Lite that is "down".
      if (liteUp === undefined) {
        new Gauge({
          name: "loupe_milvus_lite_up",
          help: "1 while embedded Milvus Lite runs, 0 while it is down or restarting.",
          registers,
          collect() {
            this.set(liteUp?.() === true ? 1 : 0);
          },
        });
      }
      liteUp = isUp;
    },
  };
}
