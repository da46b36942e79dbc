import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobResponseSchema } from "../../src/http/routes/jobs.ts";
import { startHttpServer } from "../../src/http/server.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness, TENANT_HEADER } from "./harness.ts";

interface ImagesBody {
  items: Array<{ index: number; filename?: string; id?: string; status: string }>;
  counts: { total: number; done: number; skipped: number; failed: number };
}

/** Parses an SSE body into `[event, data]` pairs. */
function parseSse(text: string): Array<[string, Record<string, unknown>]> {
  return text
    .split("\n\n")
    .filter((block) => block.includes("event: "))
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((line) => line.startsWith("event: "))?.slice(7) ?? "";
      const data = lines.find((line) => line.startsWith("data: "))?.slice(6) ?? "{}";
      return [event, JSON.parse(data) as Record<string, unknown>];
    });
}

describe("image ingestion end to end (real Milvus Lite, real pack)", () => {
  let harness: IngestHarness;
  let images: Buffer[];

  beforeAll(async () => {
    harness = await startIngestHarness({
      name: "image_ingest",
      env: { LOUPE_URL_ALLOW_HOSTS: "127.0.0.1", LOUPE_INGEST_SYNC_MAX_ITEMS: "100" },
    });
    images = await renderShapes({ count: 300, seed: 42, size: 128 });
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const post = (form: FormData, { tenant = "corpus", query = "" } = {}) =>
    harness.app.request(`/v1/images${query}`, {
      method: "POST",
      headers: { [TENANT_HEADER]: tenant },
      body: form,
    });

  async function ingestAll(tenant: string): Promise<ImagesBody[]> {
    const answers: ImagesBody[] = [];
    for (let start = 0; start < images.length; start += 100) {
      const files = images
        .slice(start, start + 100)
        .map((bytes, offset) => ({ name: `img-${start + offset}.jpg`, bytes }));
      const response = await post(multipart({ files }), { tenant });
      expect(response.status).toBe(200);
      answers.push((await response.json()) as ImagesBody);
    }
    return answers;
  }

  it("300 images through HTTP: all stored and findable by id; re-ingesting adds zero records", async () => {
    const started = performance.now();
    const first = await ingestAll("corpus");
    const seconds = (performance.now() - started) / 1000;
    const items = first.flatMap((answer) => answer.items);
    expect(items).toHaveLength(300);
    expect(items.every((item) => item.status === "stored")).toBe(true);
    expect(items.map((item) => item.filename)).toEqual(images.map((_, index) => `img-${index}.jpg`));
    const ids = items.map((item) => item.id as string);
    expect(new Set(ids).size).toBe(300);
    expect(await harness.store.count({ kind: "image", tenant: "corpus" })).toBe(300);
    const found = await harness.store.get({ kind: "image", tenant: "corpus", ids });
    expect(new Set(found.map((record) => record.id))).toEqual(new Set(ids));
    // The stored vector is the image's embedding: each image is its own nearest neighbour.
    const [probe] = await harness.models.imageEmbedder.embed({ images: [images[123] as Buffer] });
    const hits = await harness.store.search({
      kind: "image",
      tenant: "corpus",
      vector: probe as Float32Array,
      topK: 1,
    });
    expect(hits[0]?.id).toBe(ids[123]);
    const media = await harness.app.request(`/v1/media/${ids[299]}`, {
      headers: { [TENANT_HEADER]: "corpus" },
    });
    expect(Buffer.from(await media.arrayBuffer())).toEqual(images[299]);
    console.info(
      `ingested 300 images over HTTP in ${seconds.toFixed(1)} s (${(300 / seconds).toFixed(0)} images/s)`,
    );

    const again = await ingestAll("corpus");
    const repeated = again.flatMap((answer) => answer.items);
    expect(repeated.every((item) => item.status === "skipped")).toBe(true);
    expect(repeated.map((item) => item.id)).toEqual(ids);
    expect(await harness.store.count({ kind: "image", tenant: "corpus" })).toBe(300);
  }, 240_000);

  it("an async ingest is a job with SSE progress; a job over stored images counts them as skipped", async () => {
    const files = images.slice(0, 6).map((bytes, index) => ({ name: `sse-${index}.jpg`, bytes }));
    // Half of them stored first, so the job skips them.
    await post(multipart({ files: files.slice(0, 3) }), { tenant: "jobs" });
    const accepted = await post(multipart({ files }), { tenant: "jobs", query: "?async=true" });
    expect(accepted.status).toBe(202);
    const { job } = (await accepted.json()) as { job: { id: string } };
    const events = await harness.app.request(`/v1/jobs/${job.id}/events`, {
      headers: { [TENANT_HEADER]: "jobs" },
    });
    expect(events.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const parsed = parseSse(await events.text());
    const names = parsed.map(([name]) => name);
    expect(names[0]).toBe("progress");
    expect(names.at(-1)).toBe("done");
    expect(names.filter((name) => name === "item")).toHaveLength(6);
    expect(parsed.at(-1)?.[1]).toMatchObject({
      status: "done",
      counts: { total: 6, pending: 0, done: 3, skipped: 3, failed: 0 },
    });

    const status = jobResponseSchema.parse(
      await (
        await harness.app.request(`/v1/jobs/${job.id}`, { headers: { [TENANT_HEADER]: "jobs" } })
      ).json(),
    );
    expect(status.job.items.map((item) => item.status)).toEqual([
      "skipped",
      "skipped",
      "skipped",
      "stored",
      "stored",
      "stored",
    ]);
    expect(
      (await harness.app.request(`/v1/jobs/${job.id}`, { headers: { [TENANT_HEADER]: "other" } })).status,
    ).toBe(404);
  });

  it("over a real HTTP server: uploads answer, and SSE streams while the job runs and stops when the client leaves", async () => {
    const http = await startHttpServer({ fetch: harness.app.fetch, host: "127.0.0.1", port: 0 });
    try {
      const files = images.slice(10, 30).map((bytes, index) => ({ name: `net-${index}.jpg`, bytes }));
      const headers = { [TENANT_HEADER]: "network" };
      const sync = await fetch(`${http.url}/v1/images`, {
        method: "POST",
        headers,
        body: multipart({ files: files.slice(0, 2) }),
      });
      expect(sync.status).toBe(200);
      expect(((await sync.json()) as ImagesBody).counts).toMatchObject({ done: 2 });

      const accepted = await fetch(`${http.url}/v1/images?async=true`, {
        method: "POST",
        headers,
        body: multipart({ files }),
      });
      const { job } = (await accepted.json()) as { job: { id: string } };
      // A client that reads the first event and leaves.
      const leaving = new AbortController();
      const early = await fetch(`${http.url}/v1/jobs/${job.id}/events`, { headers, signal: leaving.signal });
      const reader = early.body?.getReader();
      const first = new TextDecoder().decode((await reader?.read())?.value);
      expect(first).toMatch(/^: stream open|event: progress/);
      leaving.abort();

      const full = await fetch(`${http.url}/v1/jobs/${job.id}/events`, { headers });
      const events = parseSse(await full.text());
      expect(events.at(-1)?.[0]).toBe("done");
      expect(events.at(-1)?.[1]).toMatchObject({ counts: { total: 20, done: 18, skipped: 2, failed: 0 } });
      expect((await fetch(`${http.url}/readyz`)).status).toBe(200);
    } finally {
      await http.close({ timeoutMs: 1000 });
    }
  });

  describe("resume", () => {
    let server: Server;
    let base: string;
    let flaky = true;

    beforeAll(async () => {
      server = createServer((request, response) => {
        const match = /^\/(\d+)\.jpg$/.exec(request.url ?? "");
        const index = match === null ? -1 : Number(match[1]);
        if (flaky && index % 2 === 1) {
          response.writeHead(503).end();
          return;
        }
        response.writeHead(200, { "content-type": "image/jpeg" }).end(images[index]);
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    afterAll(() => {
      server?.close();
    });

    it("re-runs only the items that failed, and the stored ones stay counted as done", async () => {
      const urls = [200, 201, 202, 203].map((index) => `${base}/${index}.jpg`);
      const accepted = await harness.app.request("/v1/images?async=true", {
        method: "POST",
        headers: { [TENANT_HEADER]: "resume", "content-type": "application/json" },
        body: JSON.stringify({ urls }),
      });
      const { job } = (await accepted.json()) as { job: { id: string } };
      const first = await harness.jobs.wait({ id: job.id, tenant: "resume" });
      expect(first.counts).toEqual({ total: 4, pending: 0, done: 2, skipped: 0, failed: 2 });
      expect(first.items[1]?.error?.message).toContain("503");

      flaky = false;
      const resumed = await harness.app.request(`/v1/jobs/${job.id}/resume`, {
        method: "POST",
        headers: { [TENANT_HEADER]: "resume" },
      });
      expect(resumed.status).toBe(202);
      const second = await harness.jobs.wait({ id: job.id, tenant: "resume" });
      expect(second.status).toBe("done");
      expect(second.counts).toEqual({ total: 4, pending: 0, done: 4, skipped: 0, failed: 0 });
      expect(await harness.store.count({ kind: "image", tenant: "resume" })).toBe(4);
    });
  });
});
