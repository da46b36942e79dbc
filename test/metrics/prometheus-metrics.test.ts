import { describe, expect, it } from "vitest";
import { CHAIN_STEPS, errorCodeOf } from "../../src/metrics/metrics.ts";
import { batchSizeLabel, createPrometheusMetrics } from "../../src/metrics/prometheus-metrics.ts";
import { parseMetrics, samplesOf, sampleValue } from "../helpers/metrics-text.ts";

async function scrape(metrics: ReturnType<typeof createPrometheusMetrics>) {
  return parseMetrics(await metrics.render());
}

describe("the Prometheus metrics adapter", () => {
  it("exposes the Prometheus text format 0.0.4", () => {
    expect(createPrometheusMetrics({ processMetrics: false }).contentType).toBe(
      "text/plain; version=0.0.4; charset=utf-8",
    );
  });

  it("counts requests by method, route pattern and status, with a latency histogram per route", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    metrics.observeRequest({ method: "POST", route: "/v1/search", status: 200, seconds: 0.02 });
    metrics.observeRequest({ method: "POST", route: "/v1/search", status: 200, seconds: 0.3 });
    metrics.observeRequest({ method: "POST", route: "/v1/search", status: 400, seconds: 0.001 });
    const samples = await scrape(metrics);
    const search = { method: "POST", route: "/v1/search" };
    expect(sampleValue(samples, "loupe_http_requests_total", { ...search, status: "200" })).toBe(2);
    expect(sampleValue(samples, "loupe_http_requests_total", { ...search, status: "400" })).toBe(1);
    expect(sampleValue(samples, "loupe_http_request_duration_seconds_count", search)).toBe(3);
    expect(sampleValue(samples, "loupe_http_request_duration_seconds_sum", search)).toBeCloseTo(0.321, 6);
    expect(
      sampleValue(samples, "loupe_http_request_duration_seconds_bucket", { ...search, le: "0.025" }),
    ).toBe(2);
    expect(
      sampleValue(samples, "loupe_http_request_duration_seconds_bucket", { ...search, le: "+Inf" }),
    ).toBe(3);
  });

  it("keeps label values bounded: any unknown HTTP method is OTHER, an odd error code is other", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    metrics.observeRequest({ method: "BREW", route: "unmatched", status: 404, seconds: 0.001 });
    metrics.observeRequest({ method: "PROPFIND", route: "unmatched", status: 404, seconds: 0.001 });
    metrics.observeRequest({ method: "get", route: "/healthz", status: 200, seconds: 0.001 });
    metrics.observeStoreCall({ call: "search", errorCode: 'x"} 1\nfake_total 9', seconds: 0.01 });
    metrics.countShed("ECONNRESET");
    const text = await metrics.render();
    const samples = parseMetrics(text);
    expect(
      sampleValue(samples, "loupe_http_requests_total", {
        method: "OTHER",
        route: "unmatched",
        status: "404",
      }),
    ).toBe(2);
    expect(sampleValue(samples, "loupe_http_requests_total", { method: "GET", route: "/healthz" })).toBe(1);
    expect(sampleValue(samples, "loupe_milvus_request_errors_total", { call: "search", code: "other" })).toBe(
      1,
    );
    expect(sampleValue(samples, "loupe_requests_shed_total", { reason: "other" })).toBe(1);
    expect(text).not.toContain("fake_total");
  });

  it("records chain steps, model runs by batch size, store calls, ingest items, LLM calls and fallbacks", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    for (const step of CHAIN_STEPS) metrics.observeChainStep(step, 0.01);
    metrics.observeInference({ model: "onnx/vision_model.onnx", batchSize: 3, seconds: 0.05 });
    metrics.observeInference({ model: "onnx/vision_model.onnx", batchSize: 4, seconds: 0.05 });
    metrics.observeInference({ model: "onnx/text_model.onnx", batchSize: 1, seconds: 0.002 });
    metrics.observeStoreCall({ call: "upsert", seconds: 0.01 });
    metrics.observeStoreCall({ call: "search", errorCode: "store_unavailable", seconds: 0.5 });
    metrics.countIngestItems("image", "stored", 3);
    metrics.countIngestItems("image", "failed");
    metrics.countIngestItems("triple", "skipped", 0);
    metrics.observeLlmCall({
      model: "m",
      seconds: 1.2,
      promptTokens: 120,
      completionTokens: 30,
      attempts: 2,
    });
    metrics.observeLlmCall({ model: "m", errorCode: "llm_timeout", seconds: 30 });
    metrics.countLlmFallback("llm_timeout");
    metrics.countLiteRestart("started");
    metrics.countLiteRestart("failed");
    const samples = await scrape(metrics);

    for (const step of CHAIN_STEPS) {
      expect(sampleValue(samples, "loupe_chat_step_duration_seconds_count", { step })).toBe(1);
    }
    expect(
      sampleValue(samples, "loupe_inference_duration_seconds_count", {
        model: "onnx/vision_model.onnx",
        batch_size: "4",
      }),
    ).toBe(2);
    expect(
      sampleValue(samples, "loupe_inference_duration_seconds_count", {
        model: "onnx/text_model.onnx",
        batch_size: "1",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, "loupe_milvus_request_duration_seconds_count", { call: "upsert", outcome: "ok" }),
    ).toBe(1);
    expect(
      sampleValue(samples, "loupe_milvus_request_duration_seconds_count", {
        call: "search",
        outcome: "error",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, "loupe_milvus_request_errors_total", {
        call: "search",
        code: "store_unavailable",
      }),
    ).toBe(1);
    expect(sampleValue(samples, "loupe_ingest_items_total", { kind: "image", status: "stored" })).toBe(3);
    expect(sampleValue(samples, "loupe_ingest_items_total", { kind: "image", status: "failed" })).toBe(1);
    expect(samplesOf(samples, "loupe_ingest_items_total", { kind: "triple" })).toEqual([]);
    expect(sampleValue(samples, "loupe_llm_tokens_total", { model: "m", type: "prompt" })).toBe(120);
    expect(sampleValue(samples, "loupe_llm_tokens_total", { model: "m", type: "completion" })).toBe(30);
    expect(sampleValue(samples, "loupe_llm_retries_total", { model: "m" })).toBe(1);
    expect(
      sampleValue(samples, "loupe_llm_request_duration_seconds_count", { model: "m", outcome: "ok" }),
    ).toBe(1);
    expect(sampleValue(samples, "loupe_llm_request_errors_total", { model: "m", code: "llm_timeout" })).toBe(
      1,
    );
    expect(sampleValue(samples, "loupe_llm_fallbacks_total", { code: "llm_timeout" })).toBe(1);
    expect(sampleValue(samples, "loupe_milvus_lite_restarts_total", { outcome: "started" })).toBe(1);
    expect(sampleValue(samples, "loupe_milvus_lite_restarts_total", { outcome: "failed" })).toBe(1);
  });

  it("ignores counts that are not positive numbers instead of throwing", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    metrics.countIngestItems("video", "stored", -2);
    metrics.countIngestItems("video", "stored", Number.NaN);
    metrics.observeLlmCall({ model: "m", seconds: -1, promptTokens: -5, attempts: 0 });
    const samples = await scrape(metrics);
    expect(samplesOf(samples, "loupe_ingest_items_total")).toEqual([]);
    expect(samplesOf(samples, "loupe_llm_tokens_total")).toEqual([]);
    expect(sampleValue(samples, "loupe_llm_request_duration_seconds_sum", { model: "m" })).toBe(0);
  });

  it("reads queue depths at each scrape, summing queues of one kind", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    let waiting = 3;
    metrics.watchQueue({ name: "chat", stats: () => ({ running: 2, waiting }) });
    metrics.watchQueue({ name: "chat", stats: () => ({ running: 1, waiting: 1 }) });
    metrics.watchQueue({ name: "images", stats: () => ({ running: 0, waiting: 0 }) });
    let samples = await scrape(metrics);
    expect(sampleValue(samples, "loupe_queue_waiting", { queue: "chat" })).toBe(4);
    expect(sampleValue(samples, "loupe_queue_running", { queue: "chat" })).toBe(3);
    expect(sampleValue(samples, "loupe_queue_waiting", { queue: "images" })).toBe(0);
    waiting = 0;
    samples = await scrape(metrics);
    expect(sampleValue(samples, "loupe_queue_waiting", { queue: "chat" })).toBe(1);
  });

  it("shows whether Milvus Lite runs only once it is watched", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    expect(samplesOf(await scrape(metrics), "loupe_milvus_lite_up")).toEqual([]);
    let up = true;
    metrics.watchLite(() => up);
    expect(sampleValue(await scrape(metrics), "loupe_milvus_lite_up")).toBe(1);
    up = false;
    expect(sampleValue(await scrape(metrics), "loupe_milvus_lite_up")).toBe(0);
  });

  it("keeps each instance's series apart (no global registry)", async () => {
    const first = createPrometheusMetrics();
    const second = createPrometheusMetrics();
    first.countIngestItems("image", "stored", 5);
    expect(sampleValue(await scrape(first), "loupe_ingest_items_total", { kind: "image" })).toBe(5);
    expect(samplesOf(await scrape(second), "loupe_ingest_items_total")).toEqual([]);
  });

  it("adds the process and Node.js metrics from the first scrape on", async () => {
    const samples = await scrape(createPrometheusMetrics());
    expect(samplesOf(samples, "process_cpu_user_seconds_total").length).toBe(1);
    expect(samplesOf(samples, "nodejs_eventloop_lag_seconds").length).toBe(1);
    const bare = await scrape(createPrometheusMetrics({ processMetrics: false }));
    expect(samplesOf(bare, "process_cpu_user_seconds_total")).toEqual([]);
  });
});

describe("batchSizeLabel", () => {
  it("rounds a batch size up to a power of two, up to 256", () => {
    expect([0, 1, 2, 3, 4, 5, 8, 9, 31, 32, 33, 256, 257, 10_000].map(batchSizeLabel)).toEqual([
      "1",
      "1",
      "2",
      "4",
      "4",
      "8",
      "8",
      "16",
      "32",
      "32",
      "64",
      "256",
      ">256",
      ">256",
    ]);
  });
});

describe("the metrics port", () => {
  it("names an AppError's code, and unknown for anything else", () => {
    expect(errorCodeOf(Object.assign(new Error("down"), { code: "store_unavailable" }))).toBe(
      "store_unavailable",
    );
    expect(errorCodeOf(new Error("plain"))).toBe("unknown");
    expect(errorCodeOf(undefined)).toBe("unknown");
    expect(errorCodeOf("text")).toBe("unknown");
  });
});
