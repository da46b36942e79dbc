/**
 * The generated OpenAPI document against the routes with the real Milvus Lite and the real model pack,
 * where they answer 200: every documented operation is called, in an order that ingests before it
 * queries, with requests its documented schemas accept (JSON, multipart, streams, jobs) and one they
 * reject; every answer must be documented, status, content type and body. Streamed answers are checked
 * event by event against the schemas the document gives them (ChatResponse, ChatCompletionChunk).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { type IngestHarness, renderShapes, startIngestHarness } from "../ingest/harness.ts";
import { documentSchemas, type OpenApiDocumentShape, type WalkCase, walkDocument } from "./contract-walk.ts";

let harness: IngestHarness;
let workDir: string;
let images: Buffer[];
let video: Buffer;

beforeAll(async () => {
  harness = await startIngestHarness({ name: "contract", env: { LOUPE_INGEST_SYNC_MAX_ITEMS: "8" } });
  workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-contract-"));
  images = await renderShapes({ count: 4, seed: 11, format: "png" });
  const videoPath = await makeTestVideo({
    outPath: path.join(workDir, "clip.mp4"),
    source: "testsrc=size=160x120:rate=8:duration=2",
  });
  video = await readFile(videoPath);
}, 180_000);

afterAll(async () => {
  await harness?.dispose();
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
});

/** The named events of an SSE body (comments skipped). */
function sseEvents(text: string): Array<{ event: string; data: unknown }> {
  return text
    .split("\n\n")
    .filter((block) => block.includes("data: "))
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((line) => line.startsWith("event: "))?.slice(7) ?? "";
      const data = lines.find((line) => line.startsWith("data: "))?.slice(6) ?? "null";
      return { event, data: data === "[DONE]" ? data : (JSON.parse(data) as unknown) };
    });
}

describe("the OpenAPI document against the routes (real Milvus Lite and model pack)", () => {
  it("documents every status, content type and body, with the routes answering for real", async () => {
    const { app } = harness;
    const document = (await (await app.request("/openapi.json")).json()) as OpenApiDocumentShape;
    const schemaAt = documentSchemas(document);
    const component = (name: string) => schemaAt("components", "schemas", name);
    const kept = { imageIds: [] as string[], jobId: "", videoId: "", proposalIds: [] as string[] };
    const png = (index: number) => ({
      bytes: new Uint8Array(images[index] as Buffer),
      filename: `shape-${index}.png`,
      type: "image/png",
    });
    const question = "What color is the circle?";

    const cases: Record<string, WalkCase> = {
      "GET /healthz": { valid: { expect: [200] } },
      "GET /readyz": { valid: { expect: [200] } },
      "POST /v1/images": {
        valid: {
          form: { files: [png(0), png(1), png(2)], metadata: '{"tags":["shapes"]}' },
          expect: [200],
          check: ({ body }) => {
            kept.imageIds = (body as { items: { id: string }[] }).items.map((item) => item.id);
          },
        },
        also: [{ query: { async: "true" }, form: { files: png(3) }, expect: [202] }],
        invalid: { json: { urls: [] }, expect: [400] },
      },
      "POST /v1/triples": {
        valid: () => ({
          json: { items: [{ image: kept.imageIds[0], question, answer: "red" }] },
          expect: [200],
        }),
        also: [
          () => ({
            query: { async: "true" },
            json: { items: [{ image: kept.imageIds[1], question, answer: "blue" }] },
            expect: [202],
            check: ({ body, response }) => {
              kept.jobId = (body as { job: { id: string } }).job.id;
              expect(response.headers.get("location")).toBe(`/v1/jobs/${kept.jobId}`);
            },
          }),
        ],
        invalid: { json: { items: [] }, expect: [400] },
      },
      "GET /v1/jobs/{id}": {
        valid: () => ({ path: `/v1/jobs/${kept.jobId}`, expect: [200] }),
        invalid: { path: "/v1/jobs/job_unknown", expect: [404] },
      },
      "GET /v1/jobs/{id}/events": {
        valid: () => ({
          path: `/v1/jobs/${kept.jobId}/events`,
          expect: [200],
          check: ({ body }) => {
            expect(sseEvents(body as string).at(-1)?.event).toBe("done");
          },
        }),
      },
      "POST /v1/jobs": {
        valid: { json: { kind: "ocr", kinds: ["image"] }, expect: [202, 409] },
        invalid: { json: { kind: "ocr", kinds: ["triple"] }, expect: [400] },
      },
      "POST /v1/jobs/{id}/resume": {
        valid: () => ({ path: `/v1/jobs/${kept.jobId}/resume`, expect: [202] }),
        invalid: { path: "/v1/jobs/job_unknown/resume", expect: [404] },
      },
      "POST /v1/videos": {
        valid: () => ({
          form: { file: { bytes: new Uint8Array(video), filename: "clip.mp4", type: "video/mp4" } },
          expect: [200],
          check: ({ body }) => {
            kept.videoId = (body as { items: { id: string }[] }).items[0]?.id ?? "";
          },
        }),
        invalid: { json: { urls: [] }, expect: [400] },
      },
      "POST /v1/search": {
        valid: { json: { text: "a red circle", topK: 5 }, expect: [200] },
        also: [{ form: { image: png(0), kinds: "image,triple", topK: "3" }, expect: [200] }],
        invalid: { json: { text: "a red circle", kinds: ["images"] }, expect: [400] },
      },
      "POST /v1/similar/{id}": {
        valid: () => ({ path: `/v1/similar/${kept.imageIds[0]}`, json: { topK: 3 }, expect: [200] }),
        invalid: () => ({ path: `/v1/similar/${kept.imageIds[0]}`, json: { tenant: "b" }, expect: [400] }),
      },
      "POST /v1/recommend": {
        valid: () => ({ json: { positive: [kept.imageIds[0]], topK: 3, diversity: 0.5 }, expect: [200] }),
        invalid: () => ({ json: { positive: [kept.imageIds[0]], topK: 0 }, expect: [400] }),
      },
      "POST /v1/events": {
        valid: () => ({ json: { user: "user-1", item: kept.imageIds[0], type: "like" }, expect: [201] }),
        invalid: () => ({ json: { user: "user-1", item: kept.imageIds[0], type: "love" }, expect: [400] }),
      },
      "GET /v1/users/{user}/recommendations": {
        valid: { path: "/v1/users/user-1/recommendations", query: { topK: "3" }, expect: [200] },
        invalid: { path: "/v1/users/user-1/recommendations", query: { diversity: "2" }, expect: [400] },
      },
      "DELETE /v1/users/{user}": {
        valid: { path: "/v1/users/user-1", expect: [200] },
        invalid: { path: "/v1/users/-user", expect: [400] },
      },
      "POST /v1/classifiers": {
        valid: () => ({
          json: {
            name: "tone",
            labels: [
              { label: "red", examples: [kept.imageIds[0]] },
              { label: "blue", examples: [kept.imageIds[1]] },
            ],
          },
          expect: [201],
        }),
        invalid: { json: { name: "tone", labels: "red" }, expect: [400] },
      },
      "GET /v1/classifiers": { valid: { expect: [200] } },
      "GET /v1/classifiers/{name}": {
        valid: { path: "/v1/classifiers/tone", expect: [200] },
        invalid: { path: `/v1/classifiers/${"x".repeat(101)}`, expect: [400] },
      },
      "POST /v1/classifiers/{name}/examples": {
        valid: () => ({
          path: "/v1/classifiers/tone/examples",
          json: { labels: [{ label: "red", examples: [kept.imageIds[2]] }] },
          expect: [200],
        }),
        invalid: {
          path: "/v1/classifiers/tone/examples",
          json: { labels: [{ label: "red" }] },
          expect: [400],
        },
      },
      "POST /v1/classifiers/{name}/predict": {
        valid: () => ({
          path: "/v1/classifiers/tone/predict",
          json: { image: kept.imageIds[0] },
          expect: [200],
        }),
        also: [{ path: "/v1/classifiers/tone/predict", form: { image: png(1) }, expect: [200] }],
        invalid: { path: "/v1/classifiers/tone/predict", json: { image: 5 }, expect: [400] },
      },
      "DELETE /v1/classifiers/{name}": {
        valid: { path: "/v1/classifiers/tone", expect: [200] },
        invalid: { path: `/v1/classifiers/${"x".repeat(101)}`, expect: [400] },
      },
      "POST /v1/classify": {
        valid: () => ({
          json: { image: kept.imageIds[0], labels: ["red", "green", "blue"], autoTag: { k: 3 } },
          expect: [200],
        }),
        also: [{ form: { image: png(1), labels: "red,green,blue" }, expect: [200] }],
        invalid: { json: { image: "img_x", autoTag: { k: 0 } }, expect: [400] },
      },
      "POST /v1/embeddings": {
        valid: () => ({
          json: {
            model: harness.models.modelId,
            input: ["a red circle", { type: "image_url", image_url: { url: kept.imageIds[0] } }],
          },
          expect: [200],
        }),
        also: [
          {
            json: { model: harness.models.modelId, input: "a red circle", encoding_format: "base64" },
            expect: [200],
          },
        ],
        invalid: { json: { model: harness.models.modelId, input: [1, 2, 3] }, expect: [400] },
      },
      "POST /v1/vqa": {
        valid: () => ({ json: { image: kept.imageIds[0], question, topK: 2 }, expect: [200] }),
        invalid: { json: { image: "img_x", question, topK: 0 }, expect: [400] },
      },
      "POST /v1/detect": {
        valid: () => ({ json: { image: kept.imageIds[0], query: "a red circle" }, expect: [200] }),
        invalid: { json: { image: "img_x", threshold: -1 }, expect: [400] },
      },
      "POST /v1/chat": {
        valid: { json: { question, composer: "offline" }, expect: [200] },
        also: [
          {
            json: { question, composer: "offline", stream: true },
            expect: [200],
            check: ({ body }) => {
              const events = sseEvents(body as string);
              const done = events.at(-1);
              expect(done?.event).toBe("done");
              const validate = component("ChatResponse");
              expect(validate(done?.data), JSON.stringify(validate.errors)).toBe(true);
            },
          },
          { form: { question, files: png(2), payload: '{"composer":"offline"}' }, expect: [200] },
        ],
        invalid: { json: { question: "" }, expect: [400] },
      },
      "POST /v1/chat/completions": {
        valid: {
          json: { model: "loupe-offline", messages: [{ role: "user", content: question }] },
          expect: [200],
        },
        also: [
          {
            json: { model: "loupe-offline", messages: [{ role: "user", content: question }], stream: true },
            expect: [200],
            check: ({ body }) => {
              const data = sseEvents(body as string).map((event) => event.data);
              expect(data.at(-1)).toBe("[DONE]");
              const validate = component("ChatCompletionChunk");
              for (const chunk of data.slice(0, -1)) {
                expect(validate(chunk), JSON.stringify(validate.errors)).toBe(true);
              }
            },
          },
        ],
        invalid: { json: { model: "loupe", messages: [{ role: "tool", content: "x" }] }, expect: [400] },
      },
      "POST /v1/responses": {
        valid: { json: { model: "loupe-offline", input: question }, expect: [200] },
        also: [
          {
            json: { model: "loupe-offline", input: question, stream: true },
            expect: [200],
            check: ({ body }) => {
              const events = sseEvents(body as string);
              expect(events.at(-1)?.event).toBe("response.completed");
              const validateEvent = component("ResponseStreamEvent");
              for (const event of events) {
                expect(validateEvent(event.data), JSON.stringify(validateEvent.errors)).toBe(true);
              }
              const validate = component("Response");
              const completed = (events.at(-1)?.data as { response: unknown } | undefined)?.response;
              expect(validate(completed), JSON.stringify(validate.errors)).toBe(true);
            },
          },
        ],
        invalid: { json: { model: "loupe", input: [{ role: "tool", content: "x" }] }, expect: [400] },
      },
      "GET /v1/models": { valid: { expect: [200] } },
      "GET /v1/models/{model}": { valid: { path: "/v1/models/loupe", expect: [200] } },
      "GET /v1/media/{id}": {
        valid: () => ({ path: `/v1/media/${kept.imageIds[0]}`, expect: [200] }),
        also: [
          () => ({ path: `/v1/media/${kept.videoId}`, expect: [200] }),
          () => ({ path: `/v1/media/${kept.videoId}`, headers: { range: "bytes=10-19" }, expect: [206] }),
          () => ({
            path: `/v1/media/${kept.imageIds[0]}`,
            headers: { range: "bytes=99999999-" },
            expect: [416],
          }),
        ],
        invalid: { path: "/v1/media/img_00000000000000000000000000000000", expect: [404] },
      },
      "GET /v1/media/{id}/thumbnail": {
        valid: () => ({ path: `/v1/media/${kept.imageIds[0]}/thumbnail`, expect: [200] }),
      },
      "GET /v1/items": {
        valid: { query: { limit: "2" }, expect: [200] },
        also: [
          {
            query: {
              kind: "image",
              filter: JSON.stringify([{ field: "source", op: "eq", value: "upload" }]),
            },
            expect: [200],
          },
        ],
        invalid: { query: { cursor: "not-a-cursor" }, expect: [400] },
      },
      "DELETE /v1/items/{id}": {
        valid: () => ({ path: `/v1/items/${kept.imageIds[2]}`, expect: [200] }),
        also: [() => ({ path: `/v1/items/${kept.videoId}`, expect: [200] })],
        invalid: () => ({ path: `/v1/items/${kept.imageIds[2]}`, expect: [404] }),
      },
      // No key exists here, so authentication is off and key management (admin scope) is refused;
      // test/http/contract.test.ts walks the admin routes with a key.
      "POST /v1/admin/keys": {
        valid: { json: { scopes: ["read"] }, expect: [403] },
        invalid: { json: { scopes: [] }, expect: [403] },
      },
      "GET /v1/admin/keys": { valid: { expect: [403] } },
      "DELETE /v1/admin/keys/{id}": { valid: { path: "/v1/admin/keys/key_0000000000000000", expect: [403] } },
      // Open while authentication is off, unlike key management.
      "POST /v1/feedback": {
        valid: {
          json: {
            rating: "up",
            question,
            answer: "The circle is red [att_1].",
            citations: ["att_1"],
            image: `data:image/png;base64,${Buffer.from(png(3).bytes).toString("base64")}`,
          },
          expect: [201],
          check: ({ body }) => {
            kept.proposalIds.push((body as { proposal: { id: string } }).proposal.id);
          },
        },
        also: [
          () => ({
            json: { rating: "down", question, answer: "Blue.", correction: "Red.", image: kept.imageIds[1] },
            expect: [201],
            check: ({ body }) => {
              kept.proposalIds.push((body as { proposal: { id: string } }).proposal.id);
            },
          }),
        ],
        invalid: { json: { rating: "up", question, answer: "a", extra: true }, expect: [400] },
      },
      "GET /v1/feedback/proposals": {
        valid: { expect: [200] },
        invalid: { query: { status: "maybe" }, expect: [400] },
      },
      "GET /v1/feedback/proposals/{id}/image": {
        valid: () => ({ path: `/v1/feedback/proposals/${kept.proposalIds[0]}/image`, expect: [200] }),
        invalid: { path: `/v1/feedback/proposals/fbp_${"0".repeat(32)}/image`, expect: [404] },
      },
      "POST /v1/feedback/proposals/{id}/approve": {
        valid: () => ({ path: `/v1/feedback/proposals/${kept.proposalIds[0]}/approve`, expect: [200] }),
        invalid: { path: `/v1/feedback/proposals/fbp_${"0".repeat(32)}/approve`, expect: [404] },
      },
      "POST /v1/feedback/proposals/{id}/reject": {
        valid: () => ({ path: `/v1/feedback/proposals/${kept.proposalIds[1]}/reject`, expect: [200] }),
        // The approved one cannot be rejected.
        invalid: () => ({ path: `/v1/feedback/proposals/${kept.proposalIds[0]}/reject`, expect: [409] }),
      },
      "GET /metrics": { valid: { expect: [200] } },
      "GET /openapi.json": { valid: { expect: [200] } },
      "GET /docs": { valid: { expect: [200] } },
    };
    const counts = await walkDocument({ app, cases });
    expect(counts.operations).toBe(Object.keys(cases).length);
    console.info(
      `contract walk (real store and pack): ${counts.operations} operations, ${counts.requests} requests, ${counts.bodiesValidated} bodies validated`,
    );
  }, 300_000);
});
