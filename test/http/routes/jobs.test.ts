import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { StoreError } from "../../../src/errors.ts";
import type { AppEnv } from "../../../src/http/context.ts";
import { handleError, handleNotFound } from "../../../src/http/errors.ts";
import { createJobsRoute, jobResponseSchema } from "../../../src/http/routes/jobs.ts";
import { formatSseEvent } from "../../../src/http/sse.ts";
import { createJobRegistry, type JobRegistry } from "../../../src/ingest/jobs.ts";
import { createLogger } from "../../../src/logger.ts";

/** The jobs routes with the tenant taken from a test header, as the app's resolver would decide it. */
function makeApp(jobs: JobRegistry) {
  const app = new Hono<AppEnv>();
  app.use(async (c, next) => {
    c.set("requestId", "test");
    c.set("logger", createLogger({ level: "silent" }));
    const tenant = c.req.header("x-test-tenant") ?? "a";
    c.set("tenant", tenant);
    // As the authentication middleware sets it while authentication is off.
    c.set("principal", {
      keyId: null,
      tenant,
      scopes: new Set(["read", "ingest", "delete"]),
      publishable: false,
    });
    await next();
  });
  app.route("/", createJobsRoute({ jobs }));
  app.onError(handleError);
  app.notFound(handleNotFound);
  return app;
}

/** Parses an SSE body into `[event, data]` pairs. */
function parseSse(text: string): Array<[string, unknown]> {
  return text
    .split("\n\n")
    .filter((block) => block.includes("event: "))
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((line) => line.startsWith("event: "))?.slice(7) ?? "";
      const data = lines.find((line) => line.startsWith("data: "))?.slice(6) ?? "null";
      return [event, JSON.parse(data)];
    });
}

describe("jobs routes", () => {
  it("GET /v1/jobs/{id} returns the job with items flattened, only to its tenant", async () => {
    const jobs = createJobRegistry();
    const app = makeApp(jobs);
    const created = jobs.create({
      tenant: "a",
      kind: "images",
      items: [
        { describe: { filename: "a.png" }, input: 1 },
        { describe: { url: "https://example.com/b.png" }, input: 2 },
      ],
      run: async ({ items, report }) => {
        for (const { index } of items) {
          if (index === 0) report(index, { status: "stored", id: "img_a" });
          else report(index, { status: "failed", error: { code: "media_invalid", message: "truncated" } });
        }
      },
    });
    await jobs.wait({ id: created.id, tenant: "a" });

    const response = await app.request(`/v1/jobs/${created.id}`);
    expect(response.status).toBe(200);
    const body = jobResponseSchema.parse(await response.json());
    expect(body.job.status).toBe("done");
    expect(body.job.counts).toEqual({ total: 2, pending: 0, done: 1, skipped: 0, failed: 1 });
    expect(body.job.items).toEqual([
      { index: 0, filename: "a.png", status: "stored", id: "img_a" },
      {
        index: 1,
        url: "https://example.com/b.png",
        status: "failed",
        error: { code: "media_invalid", message: "truncated" },
      },
    ]);

    const other = await app.request(`/v1/jobs/${created.id}`, { headers: { "x-test-tenant": "b" } });
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe("not_found");
    expect(
      (await app.request(`/v1/jobs/${created.id}/events`, { headers: { "x-test-tenant": "b" } })).status,
    ).toBe(404);
  });

  it("GET /v1/jobs/{id}/events streams named events ending with done", async () => {
    const jobs = createJobRegistry();
    const app = makeApp(jobs);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const created = jobs.create({
      tenant: "a",
      kind: "images",
      items: [1, 2, 3].map((value) => ({ describe: { filename: `${value}.png` }, input: value })),
      run: async ({ items, report }) => {
        await gate;
        for (const { index, input } of items) report(index, { status: "stored", id: `img_${input}` });
      },
    });
    const response = await app.request(`/v1/jobs/${created.id}/events`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    release();
    const events = parseSse(await response.text());
    const names = events.map(([name]) => name);
    expect(names[0]).toBe("progress");
    expect(names.filter((name) => name === "item")).toHaveLength(3);
    expect(names.at(-1)).toBe("done");
    const item = events.find(([name]) => name === "item")?.[1];
    expect(item).toMatchObject({
      id: created.id,
      item: { filename: "1.png", status: "stored", id: "img_1" },
    });
    expect(events.at(-1)?.[1]).toMatchObject({ status: "done", counts: { done: 3, total: 3 } });
  });

  it("POST /v1/jobs/{id}/resume re-runs what failed; 409 while running", async () => {
    const jobs = createJobRegistry();
    const app = makeApp(jobs);
    let attempts = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const created = jobs.create({
      tenant: "a",
      kind: "images",
      items: [{ describe: { filename: "x.png" }, input: 1 }],
      run: async () => {
        attempts += 1;
        await gate;
        if (attempts === 1) throw new StoreError("store down");
      },
    });
    const busy = await app.request(`/v1/jobs/${created.id}/resume`, { method: "POST" });
    expect(busy.status).toBe(409);
    expect(((await busy.json()) as { error: { message: string } }).error.message).toContain("is running");
    release();
    await jobs.wait({ id: created.id, tenant: "a" });
    const resumed = await app.request(`/v1/jobs/${created.id}/resume`, { method: "POST" });
    expect(resumed.status).toBe(202);
    await jobs.wait({ id: created.id, tenant: "a" });
    expect(attempts).toBe(2);
  });

  it("formats events on one data line, escaping newlines", () => {
    expect(formatSseEvent({ event: "progress", data: { text: "a\nb" } })).toBe(
      'event: progress\ndata: {"text":"a\\nb"}\n\n',
    );
    expect(() => formatSseEvent({ event: "bad\nname", data: null })).toThrow(/Invalid SSE event name/);
  });
});
