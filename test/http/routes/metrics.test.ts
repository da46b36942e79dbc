/**
 * GET /metrics in-process: what it counts (route patterns, never raw paths), who may read it (anyone
 * while authentication is off; a key with the admin scope once keys exist), and the app of the metrics
 * port (no key, the Host check, nothing else served).
 */
import { afterEach, describe, expect, it } from "vitest";
import { createHostPolicy } from "../../../src/auth/host-policy.ts";
import { createMetricsApp } from "../../../src/http/routes/metrics.ts";
import { createLogger } from "../../../src/logger.ts";
import { createPrometheusMetrics } from "../../../src/metrics/prometheus-metrics.ts";
import { makeTestApp } from "../../helpers/app.ts";
import { parseMetrics, samplesOf, sampleValue } from "../../helpers/metrics-text.ts";
import { type AuthTestApp, bearer, errorOf, makeAuthTestApp } from "../auth-fixtures.ts";

const PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

describe("GET /metrics while authentication is off", () => {
  it("serves the Prometheus text, counting requests by route pattern and status", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    const app = makeTestApp({ metrics });
    expect((await app.request("/healthz")).status).toBe(200);
    expect((await app.request("/healthz")).status).toBe(200);
    expect((await app.request(`/v1/media/${"x".repeat(201)}`)).status).toBe(400);
    expect((await app.request("/no/such/path/img_0123")).status).toBe(404);

    const response = await app.request("/metrics");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe(PROMETHEUS_TYPE);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const text = await response.text();
    const samples = parseMetrics(text);
    expect(
      sampleValue(samples, "loupe_http_requests_total", { method: "GET", route: "/healthz", status: "200" }),
    ).toBe(2);
    expect(
      sampleValue(samples, "loupe_http_requests_total", {
        method: "GET",
        route: "/v1/media/:id",
        status: "400",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, "loupe_http_requests_total", { method: "GET", route: "unmatched", status: "404" }),
    ).toBe(1);
    expect(sampleValue(samples, "loupe_http_request_duration_seconds_count", { route: "/healthz" })).toBe(2);
    // Raw paths and ids never become label values.
    expect(text).not.toContain("no/such/path");
    expect(text).not.toContain("x".repeat(201));
  });

  it("counts a request shed by the rate limit under its reason", async () => {
    const metrics = createPrometheusMetrics({ processMetrics: false });
    const app = makeTestApp({
      metrics,
      env: { LOUPE_RATE_LIMIT_PER_SECOND: "0.001", LOUPE_RATE_LIMIT_BURST: "1" },
    });
    // The first read takes the only token; the second finds the bucket empty.
    const statuses = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      // The bindings @hono/node-server gives: a client address, which the bucket is kept for.
      const bindings = { incoming: { socket: { remoteAddress: "192.0.2.1" } } };
      statuses.push((await app.request("/v1/jobs/job_unknown", {}, bindings)).status);
    }
    expect(statuses).toEqual([404, 429]);
    const samples = parseMetrics(await (await app.request("/metrics")).text());
    expect(sampleValue(samples, "loupe_requests_shed_total", { reason: "rate_limited" })).toBe(1);
    expect(sampleValue(samples, "loupe_http_requests_total", { route: "/v1/jobs/:id", status: "429" })).toBe(
      1,
    );
  });

  it("is not served with LOUPE_METRICS=off, nor on the API's port with LOUPE_METRICS_PORT", async () => {
    const off = makeTestApp({ env: { LOUPE_METRICS: "off" } });
    expect((await off.request("/metrics")).status).toBe(404);
    const ownPort = makeTestApp({ env: { LOUPE_METRICS_PORT: "9464" } });
    expect((await ownPort.request("/metrics")).status).toBe(404);
  });

  it("is in the OpenAPI document as a text/plain operation that needs the admin scope", async () => {
    const document = (await (await makeTestApp().request("/openapi.json")).json()) as {
      paths: Record<string, Record<string, Record<string, unknown>>>;
    };
    const operation = document.paths["/metrics"]?.get;
    expect(operation?.["x-loupe-scope"]).toBe("admin");
    expect(operation?.["x-loupe-cost"]).toBe(0);
    expect(
      Object.keys(
        (operation?.responses as Record<string, { content?: object }> | undefined)?.[200]?.content ?? {},
      ),
    ).toEqual(["text/plain"]);
  });
});

describe("GET /metrics once API keys exist", () => {
  let auth: AuthTestApp | undefined;
  afterEach(async () => {
    await auth?.dispose();
    auth = undefined;
  });

  it("needs a key with the admin scope: 401 without a key, 403 for a read key, 200 for an admin key", async () => {
    auth = await makeAuthTestApp({ metrics: createPrometheusMetrics({ processMetrics: false }) });
    const admin = await auth.createKey({ tenant: "ops", scopes: ["admin"], name: "prometheus" });
    const reader = await auth.createKey({ tenant: "ops", scopes: ["read", "ingest", "delete"] });

    const anonymous = await auth.app.request("/metrics");
    expect(anonymous.status).toBe(401);
    expect((await errorOf(anonymous)).code).toBe("unauthorized");

    const read = await auth.app.request("/metrics", { headers: bearer(reader.key) });
    expect(read.status).toBe(403);
    expect((await errorOf(read)).message).toContain("`admin` scope");

    const allowed = await auth.app.request("/metrics", { headers: bearer(admin.key) });
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("content-type")).toBe(PROMETHEUS_TYPE);
    const samples = parseMetrics(await allowed.text());
    expect(sampleValue(samples, "loupe_http_requests_total", { route: "/metrics", status: "401" })).toBe(1);
    expect(sampleValue(samples, "loupe_http_requests_total", { route: "/metrics", status: "403" })).toBe(1);
  });
});

describe("the app of the metrics port", () => {
  const metrics = createPrometheusMetrics({ processMetrics: false });
  metrics.countIngestItems("image", "stored", 2);
  const app = createMetricsApp({
    metrics,
    hostPolicy: createHostPolicy({ allowedHosts: [], boundHost: "127.0.0.1" }),
    logger: createLogger({ level: "silent" }),
  });

  it("serves /metrics without a key", async () => {
    const response = await app.request("http://127.0.0.1:9464/metrics");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe(PROMETHEUS_TYPE);
    const samples = parseMetrics(await response.text());
    expect(sampleValue(samples, "loupe_ingest_items_total", { kind: "image", status: "stored" })).toBe(2);
  });

  it("serves nothing else, in the error envelope", async () => {
    for (const path of ["/", "/v1/search", "/openapi.json", "/healthz"]) {
      const response = await app.request(`http://127.0.0.1:9464${path}`);
      expect(response.status, path).toBe(404);
      expect((await errorOf(response)).code).toBe("not_found");
    }
    expect((await app.request("http://127.0.0.1:9464/metrics", { method: "POST" })).status).toBe(404);
  });

  it("refuses a Host it does not answer to (DNS rebinding)", async () => {
    const response = await app.request("http://127.0.0.1:9464/metrics", {
      headers: { host: "attacker.example" },
    });
    expect(response.status).toBe(421);
    expect((await errorOf(response)).code).toBe("host_not_allowed");
    expect(
      samplesOf(parseMetrics(await (await app.request("/metrics")).text()), "loupe_ingest_items_total"),
    ).toHaveLength(1);
  });
});
