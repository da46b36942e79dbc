/**
 * Metrics of a real Loupe (embedded Milvus Lite, the bundled model pack, a local OpenAI-compatible test
 * server as its LLM): requests drive it (an ingest, searches, chat answers from the LLM and one that
 * falls back to the offline composer), and a scrape of GET /metrics shows the counters and histograms
 * moved; a Milvus Lite killed and restarted is counted. Once an API key exists the scrape needs one with
 * the admin scope; with LOUPE_METRICS_PORT the metrics are served on that port, without a key, and not
 * on the API's port.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileKeyStore, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { AppError } from "../../src/errors.ts";
import { createLogger } from "../../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../../src/main.ts";
import { CHAIN_STEPS } from "../../src/metrics/metrics.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { generateDataset, readJsonl } from "../../src/synth/index.ts";
import { type MetricSample, parseMetrics, samplesOf, sampleValue } from "../helpers/metrics-text.ts";
import { type OpenAiTestServer, startOpenAiTestServer } from "../helpers/openai-server.ts";

const root = path.join(import.meta.dirname, "..", "..");
const quiet = createLogger({ level: "silent" });
const IMAGE_COUNT = 4;
const LLM_MODEL = "test-llm";
const PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Scrapes `url`'s /metrics and parses it; fails unless it answered 200 in the Prometheus format. */
async function scrape(url: string, headers: Record<string, string> = {}): Promise<MetricSample[]> {
  const response = await fetch(`${url}/metrics`, { headers });
  const text = await response.text();
  expect(response.status, text.slice(0, 300)).toBe(200);
  expect(response.headers.get("content-type")).toBe(PROMETHEUS_TYPE);
  return parseMetrics(text);
}

/** Total count of a histogram's observations over the samples whose labels include `labels`. */
function observations(samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}) {
  return samplesOf(samples, `${name}_count`, labels).reduce((sum, sample) => sum + sample.value, 0);
}

async function chat(url: string, question: string): Promise<{ loupe: { composer: string } }> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "loupe", messages: [{ role: "user", content: question }] }),
  });
  const body = (await response.json()) as { loupe: { composer: string } };
  expect(response.status, JSON.stringify(body).slice(0, 300)).toBe(200);
  return body;
}

describe("metrics of a running Loupe", () => {
  let workDir: string;
  let loupe: RunningLoupe;
  let llm: OpenAiTestServer;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-metrics-int-"));
    llm = await startOpenAiTestServer({ models: [LLM_MODEL] });
    loupe = await startLoupe({
      env: {
        PORT: "0",
        LOUPE_DATA_DIR: path.join(workDir, "data"),
        LOUPE_VENV_DIR: path.join(root, ".venv"),
        LOUPE_OCR: "off",
        LOUPE_LLM_MODEL: LLM_MODEL,
        OPENAI_BASE_URL: llm.url,
        OPENAI_API_KEY: "test-key",
        LOUPE_LLM_MAX_RETRIES: "0",
      },
      cwd: root,
      logger: quiet,
    });
  }, 300_000);

  afterAll(async () => {
    await loupe?.stop();
    await llm?.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("counts requests by route and status, chain steps, model runs, Milvus calls, ingested items and the LLM", async () => {
    const before = await scrape(loupe.url);

    const dataset = path.join(workDir, "synth");
    await generateDataset({
      outDir: dataset,
      seed: 31,
      images: IMAGE_COUNT,
      size: 128,
      format: "png",
      questionsPerType: 1,
      triples: 0,
    });
    const form = new FormData();
    for (const scene of await readJsonl<{ id: string; file: string }>(path.join(dataset, "scenes.jsonl"))) {
      const bytes = await readFile(path.join(dataset, scene.file));
      form.append("files", new File([bytes], `${scene.id}.png`, { type: "image/png" }));
    }
    const ingested = await fetch(`${loupe.url}/v1/images`, { method: "POST", body: form });
    expect(ingested.status, (await ingested.text()).slice(0, 300)).toBe(200);

    for (const text of ["a red circle", "a blue square"]) {
      const search = await fetch(`${loupe.url}/v1/search`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text }),
      });
      expect(search.status, (await search.text()).slice(0, 300)).toBe(200);
    }
    llm.reply({ text: "A red circle is in the first image." });
    expect((await chat(loupe.url, "Which image shows a red circle?")).loupe.composer).toBe("llm");
    llm.reply({ status: 500, errorMessage: "the model is down" });
    expect((await chat(loupe.url, "Which image shows a blue square?")).loupe.composer).toBe("offline");
    expect((await fetch(`${loupe.url}/v1/no-such-route/img_abc`)).status).toBe(404);

    const after = await scrape(loupe.url);
    const search200 = { method: "POST", route: "/v1/search", status: "200" };
    expect(
      sampleValue(after, "loupe_http_requests_total", search200) -
        sampleValue(before, "loupe_http_requests_total", search200),
    ).toBe(2);
    expect(
      sampleValue(after, "loupe_http_request_duration_seconds_count", {
        method: "POST",
        route: "/v1/search",
      }),
    ).toBe(2);
    expect(
      sampleValue(after, "loupe_http_requests_total", { method: "GET", route: "unmatched", status: "404" }),
    ).toBeGreaterThanOrEqual(1);
    for (const sample of samplesOf(after, "loupe_http_requests_total")) {
      expect(sample.labels.route).not.toContain("no-such-route");
    }

    for (const step of CHAIN_STEPS) {
      expect(sampleValue(after, "loupe_chat_step_duration_seconds_count", { step }), step).toBe(2);
    }
    expect(
      observations(after, "loupe_inference_duration_seconds", { model: "onnx/vision_model.onnx" }),
    ).toBeGreaterThan(0);
    expect(
      observations(after, "loupe_inference_duration_seconds", { model: "onnx/text_model.onnx" }),
    ).toBeGreaterThan(0);
    expect(
      observations(after, "loupe_milvus_request_duration_seconds", { call: "upsert", outcome: "ok" }),
    ).toBeGreaterThan(0);
    expect(
      observations(after, "loupe_milvus_request_duration_seconds", { call: "search", outcome: "ok" }),
    ).toBeGreaterThan(0);
    expect(sampleValue(after, "loupe_ingest_items_total", { kind: "image", status: "stored" })).toBe(
      IMAGE_COUNT,
    );

    expect(
      sampleValue(after, "loupe_llm_tokens_total", { model: LLM_MODEL, type: "completion" }),
    ).toBeGreaterThan(0);
    expect(
      sampleValue(after, "loupe_llm_tokens_total", { model: LLM_MODEL, type: "prompt" }),
    ).toBeGreaterThan(0);
    expect(
      sampleValue(after, "loupe_llm_request_duration_seconds_count", { model: LLM_MODEL, outcome: "ok" }),
    ).toBe(1);
    const errors = samplesOf(after, "loupe_llm_request_errors_total", { model: LLM_MODEL });
    const fallbacks = samplesOf(after, "loupe_llm_fallbacks_total");
    expect(errors.map((sample) => [sample.labels.code, sample.value])).toEqual(
      fallbacks.map((sample) => [sample.labels.code, sample.value]),
    );
    expect(fallbacks.reduce((sum, sample) => sum + sample.value, 0)).toBe(1);

    expect(sampleValue(after, "loupe_milvus_lite_up")).toBe(1);
    expect(sampleValue(after, "loupe_milvus_lite_restarts_total")).toBe(0);
    expect(samplesOf(after, "process_cpu_user_seconds_total")).toHaveLength(1);
    expect(samplesOf(after, "nodejs_heap_size_used_bytes")).toHaveLength(1);
  }, 300_000);

  it("counts a restart of Milvus Lite and shows it up again", async () => {
    const pid = loupe.milvusLitePid as number;
    process.kill(pid, "SIGKILL");
    let samples = await scrape(loupe.url);
    const deadline = Date.now() + 60_000;
    while (
      (sampleValue(samples, "loupe_milvus_lite_up") !== 1 ||
        sampleValue(samples, "loupe_milvus_lite_restarts_total", { outcome: "started" }) !== 1) &&
      Date.now() < deadline
    ) {
      await sleep(250);
      samples = await scrape(loupe.url);
    }
    expect(sampleValue(samples, "loupe_milvus_lite_restarts_total", { outcome: "started" })).toBe(1);
    expect(sampleValue(samples, "loupe_milvus_lite_up")).toBe(1);
    expect(loupe.milvusLitePid).not.toBe(pid);
  }, 90_000);

  it("once an API key exists, needs a key with the admin scope", async () => {
    const keys = createFileKeyStore({
      dir: keyStoreDir(path.join(workDir, "data")),
      tenantPattern: TENANT_PATTERN,
    });
    try {
      const admin = await keys.create({ tenant: "ops", scopes: ["admin"], name: "prometheus" });
      const reader = await keys.create({ tenant: "ops", scopes: ["read"] });
      // The server reads its key store again at most every second.
      let anonymous = 200;
      for (let attempt = 0; attempt < 50 && anonymous !== 401; attempt++) {
        anonymous = (await fetch(`${loupe.url}/metrics`)).status;
        if (anonymous !== 401) await sleep(100);
      }
      expect(anonymous).toBe(401);
      const read = await fetch(`${loupe.url}/metrics`, {
        headers: { authorization: `Bearer ${reader.key}` },
      });
      expect(read.status).toBe(403);
      const samples = await scrape(loupe.url, { authorization: `Bearer ${admin.key}` });
      expect(
        sampleValue(samples, "loupe_http_requests_total", { route: "/metrics", status: "401" }),
      ).toBeGreaterThan(0);
      expect(sampleValue(samples, "loupe_http_requests_total", { route: "/metrics", status: "403" })).toBe(1);
    } finally {
      await keys.close();
    }
  });
});

describe("a Loupe with LOUPE_METRICS_PORT", () => {
  /** A Loupe that starts in a moment: no model pack, so no embedding dimension and no store. */
  function fastEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
    return {
      PORT: "0",
      LOUPE_DATA_DIR: dataDir,
      LOUPE_MODEL_PACK: path.join(dataDir, "no-such-pack"),
      LOUPE_OCR: "off",
      ...extra,
    };
  }

  it("serves the metrics there without a key, and not on the API's port", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-metrics-port-"));
    const loupe = await startLoupe({
      env: fastEnv(dataDir, { LOUPE_METRICS_PORT: "0" }),
      cwd: root,
      logger: quiet,
    });
    try {
      const metricsUrl = loupe.metricsUrl as string;
      expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(metricsUrl).not.toBe(loupe.url);
      expect((await fetch(`${loupe.url}/metrics`)).status).toBe(404);
      expect((await fetch(`${loupe.url}/readyz`)).status).toBe(503);
      expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(404);

      const keys = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
      await keys.create({ tenant: "ops", scopes: ["admin"] });
      await keys.close();
      let status = 404;
      for (let attempt = 0; attempt < 50 && status !== 401; attempt++) {
        status = (await fetch(`${loupe.url}/metrics`)).status;
        if (status !== 401) await sleep(100);
      }
      expect(status).toBe(401);

      const samples = await scrape(metricsUrl);
      expect(sampleValue(samples, "loupe_http_requests_total", { route: "/readyz", status: "503" })).toBe(1);
      // /readyz asked the store, which is not there: a failed health call.
      expect(
        sampleValue(samples, "loupe_milvus_request_errors_total", { call: "health", code: "unhealthy" }),
      ).toBe(1);
      // The scrapes of the metrics port are not requests to the API.
      expect(samplesOf(samples, "loupe_http_requests_total", { route: "/metrics", status: "200" })).toEqual(
        [],
      );
    } finally {
      await loupe.stop();
    }
    await expect(fetch(`${loupe.metricsUrl}/metrics`)).rejects.toThrow();
    await rm(dataDir, { recursive: true, force: true });
  }, 120_000);

  it("refuses to start when LOUPE_METRICS_PORT is PORT", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-metrics-port-"));
    try {
      const failure = await startLoupe({
        env: fastEnv(dataDir, { PORT: "18431", LOUPE_METRICS_PORT: "18431" }),
        cwd: root,
        logger: quiet,
      }).then(
        async (started) => {
          await started.stop();
          throw new Error("start-up succeeded");
        },
        (error: unknown) => error,
      );
      expect(failure).toBeInstanceOf(AppError);
      expect((failure as AppError).message).toContain("LOUPE_METRICS_PORT=18431 is the API's PORT");
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
