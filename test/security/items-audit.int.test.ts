/**
 * The audit trail over HTTP, with a real API key, Milvus Lite and the bundled pack: image, triple and
 * video ingests, a job (stored items recorded when the job stores them, for the request that made it), a
 * job resume (recorded, and the items it then stores recorded for the resumer) and an item delete each
 * leave JSON lines in `<dataDir>/audit.log` with the time, the key's id (never the key), the tenant, the
 * route, the request id and the item ids.
 *
 * Deletes go through the app as `createApp` builds it. The ingest routes are mounted here behind the
 * same authentication middleware and given the audit log, as `createApp` has to mount them.
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import type { OpenAPIHono } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEntry } from "../../src/audit/audit-log.ts";
import { authenticate } from "../../src/http/auth/authenticate.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { handleError } from "../../src/http/errors.ts";
import { createRouter } from "../../src/http/openapi.ts";
import { createImagesRoute } from "../../src/http/routes/images.ts";
import { createJobsRoute } from "../../src/http/routes/jobs.ts";
import { createTriplesRoute } from "../../src/http/routes/triples.ts";
import { createVideosRoute } from "../../src/http/routes/videos.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness } from "../ingest/harness.ts";

const TENANT = "acme";

describe("the audit trail of writes, deletes and job resumes", () => {
  let harness: IngestHarness;
  let app: OpenAPIHono<AppEnv>;
  let images: Buffer[];
  let key: string;
  let keyId: string;
  let server: Server;
  let baseUrl: string;
  let flakyServed = 0;
  let workDir: string;

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "audit", env: { LOUPE_URL_ALLOW_HOSTS: "127.0.0.1" } });
    images = await renderShapes({ count: 6, seed: 313 });
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-audit-"));
    const created = await harness.services.keys.create({
      tenant: TENANT,
      scopes: ["read", "ingest", "delete"],
      name: "audit test",
    });
    key = created.key;
    keyId = created.record.id;

    // Serves images; /flaky.jpg fails its first request, so a job has an item to resume.
    server = createServer((request, response) => {
      const index = request.url === "/flaky.jpg" ? 4 : 3;
      if (request.url === "/flaky.jpg" && flakyServed++ === 0) {
        response.writeHead(500).end("not now");
        return;
      }
      response.writeHead(200, { "content-type": "image/jpeg" }).end(images[index]);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const { services, config } = harness;
    const logger = services.logger;
    app = createRouter();
    app.use(requestId({ limitLength: 128 }));
    app.use(async (c, next) => {
      c.set("logger", logger);
      await next();
    });
    app.use(
      authenticate({
        keys: services.keys,
        auth: config.auth,
        resolveTenant: services.resolveTenant,
        defaultTenant: config.defaultTenant,
        logger,
      }),
    );
    const audit = services.audit;
    app.route("/", createImagesRoute({ images: services.images, jobs: services.jobs, config, audit }));
    app.route("/", createTriplesRoute({ triples: services.triples, jobs: services.jobs, config, audit }));
    app.route("/", createVideosRoute({ videos: services.videos, jobs: services.jobs, config, audit }));
    app.route("/", createJobsRoute({ jobs: services.jobs }));
    app.onError(handleError);
  }, 180_000);

  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await harness?.dispose();
    await rm(workDir, { recursive: true, force: true });
  });

  const authorized = (init: RequestInit = {}): RequestInit => ({
    ...init,
    headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${key}` },
  });

  async function auditLines(): Promise<AuditEntry[]> {
    const text = await readFile(path.join(harness.dataDir, "audit.log"), "utf8");
    expect(text).not.toContain(key);
    return text
      .split("\n")
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as AuditEntry);
  }

  /** The one line for `requestId` and `action`, with every field checked. */
  async function lineFor(request: string, action: AuditEntry["action"]): Promise<AuditEntry> {
    const lines = (await auditLines()).filter((line) => line.requestId === request && line.action === action);
    expect(lines, `${action} lines of request ${request}`).toHaveLength(1);
    const line = lines[0] as AuditEntry;
    expect(Object.keys(line).sort()).toEqual(
      ["action", "detail", "itemIds", "keyId", "requestId", "route", "tenant", "time"].sort(),
    );
    expect(Number.isNaN(Date.parse(line.time ?? ""))).toBe(false);
    expect(line.keyId).toBe(keyId);
    expect(line.tenant).toBe(TENANT);
    return line;
  }

  it("records a sync image ingest with the stored ids", async () => {
    const response = await app.request(
      "/v1/images",
      authorized({
        method: "POST",
        body: multipart({
          files: images.slice(0, 2).map((bytes, index) => ({ name: `${index}.jpg`, bytes })),
        }),
      }),
    );
    const body = (await response.json()) as { items: Array<{ id: string; status: string }> };
    expect(response.status, JSON.stringify(body)).toBe(200);
    const line = await lineFor(response.headers.get("x-request-id") ?? "", "ingest");
    expect(line.route).toBe("POST /v1/images");
    expect([...line.itemIds].sort()).toEqual(body.items.map((item) => item.id).sort());
    expect(line.detail).toMatchObject({ kind: "images" });
    const mode = (await stat(path.join(harness.dataDir, "audit.log"))).mode & 0o777;
    expect(mode).toBe(0o600);
  });

  it("records a triple ingest and a video ingest", async () => {
    const triples = await app.request(
      "/v1/triples",
      authorized({
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          items: [
            {
              image: `data:image/jpeg;base64,${(images[2] as Buffer).toString("base64")}`,
              question: "How many objects are there?",
              answer: "3",
            },
          ],
        }),
      }),
    );
    const tripleBody = (await triples.json()) as { items: Array<{ id: string }> };
    expect(triples.status).toBe(200);
    const tripleLine = await lineFor(triples.headers.get("x-request-id") ?? "", "ingest");
    expect(tripleLine).toMatchObject({ route: "POST /v1/triples", itemIds: [tripleBody.items[0]?.id] });

    const file = await makeTestVideo({
      outPath: path.join(workDir, "clip.mp4"),
      source: "testsrc=size=96x96:rate=4:duration=2",
    });
    const form = new FormData();
    form.append("file", new File([await readFile(file)], "clip.mp4", { type: "video/mp4" }));
    const video = await app.request("/v1/videos", authorized({ method: "POST", body: form }));
    const videoBody = (await video.json()) as { items: Array<{ id: string; segments: unknown[] }> };
    expect(video.status, JSON.stringify(videoBody)).toBe(200);
    const videoLine = await lineFor(video.headers.get("x-request-id") ?? "", "ingest");
    expect(videoLine).toMatchObject({ route: "POST /v1/videos", itemIds: [videoBody.items[0]?.id] });
    expect(videoLine.detail).toMatchObject({ kind: "videos", segments: videoBody.items[0]?.segments.length });
  }, 60_000);

  it("records what a job stores for the request that made it, and a resume for its resumer", async () => {
    const created = await app.request(
      "/v1/images?async=true",
      authorized({
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ urls: [`${baseUrl}/good.jpg`, `${baseUrl}/flaky.jpg`] }),
      }),
    );
    expect(created.status).toBe(202);
    const createdId = created.headers.get("x-request-id") ?? "";
    const { job } = (await created.json()) as { job: { id: string } };
    const first = await harness.jobs.wait({ id: job.id, tenant: TENANT });
    expect(first.items.map((item) => item.status)).toEqual(["stored", "failed"]);
    const stored = await lineFor(createdId, "ingest");
    expect(stored).toMatchObject({ route: "POST /v1/images", itemIds: [first.items[0]?.id] });
    expect(stored.detail).toMatchObject({ jobId: job.id, kind: "images" });

    const resumed = await app.request(`/v1/jobs/${job.id}/resume`, authorized({ method: "POST" }));
    expect(resumed.status).toBe(202);
    const resumeId = resumed.headers.get("x-request-id") ?? "";
    const second = await harness.jobs.wait({ id: job.id, tenant: TENANT });
    expect(second.items.map((item) => item.status)).toEqual(["stored", "stored"]);
    const resume = await lineFor(resumeId, "job.resume");
    expect(resume).toMatchObject({ route: "POST /v1/jobs/{id}/resume", itemIds: [job.id] });
    // The resumed run's writes are the resumer's.
    const rerun = await lineFor(resumeId, "ingest");
    expect(rerun).toMatchObject({ route: "POST /v1/jobs/{id}/resume", itemIds: [second.items[1]?.id] });
  }, 60_000);

  it("records a delete made through the app", async () => {
    const lines = await auditLines();
    const id = lines.find((line) => line.route === "POST /v1/images")?.itemIds[0] ?? "";
    const response = await harness.app.request(`/v1/items/${id}`, authorized({ method: "DELETE" }));
    expect(response.status, await response.clone().text()).toBe(200);
    const line = await lineFor(response.headers.get("x-request-id") ?? "", "delete");
    expect(line).toMatchObject({ route: "DELETE /v1/items/{id}", itemIds: [id] });
    expect(line.detail).toMatchObject({ kind: "image", records: 1 });
  });

  it("writes nothing a key could be rebuilt from", async () => {
    const text = await readFile(path.join(harness.dataDir, "audit.log"), "utf8");
    expect(text).not.toContain(key);
    expect(text).not.toMatch(/authorization|bearer/i);
    for (const line of await auditLines()) expect(line.keyId).toMatch(/^key_[0-9a-f]{16}$/);
  });
});
