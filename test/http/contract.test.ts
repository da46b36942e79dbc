/**
 * The generated OpenAPI document against the routes, in-process, with Milvus down and no model pack:
 * every documented operation is called with a request its documented schema accepts and one it
 * rejects, and every answer (mostly 503s and 4xx here) must be documented, status, content type and
 * body. Authentication is on: every request carries an API key with every scope, and the admin routes
 * make, list and revoke a key. The same walk with the real store and pack, where the routes answer 200, is in
 * contract.int.test.ts.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileKeyStore, keyStoreDir } from "../../src/auth/file-key-store.ts";
import { StoreError } from "../../src/errors.ts";
import { TENANT_PATTERN, type VectorStore } from "../../src/store/index.ts";
import { makeTestApp } from "../helpers/app.ts";
import { type WalkCase, type WalkRequestSource, walkDocument } from "./contract-walk.ts";

/** A vector store that answers every call as Milvus down would. */
const downStore = new Proxy({} as VectorStore, {
  get(_target, property) {
    // Not a thenable: awaiting the store itself must not call it.
    if (property === "then") return undefined;
    return async () => {
      throw new StoreError("Milvus at 127.0.0.1:19530 is unreachable.");
    };
  },
});

const PNG_BYTES = new Uint8Array(
  Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC",
    "base64",
  ),
);
const IMAGE_ID = "img_0123456789abcdef0123456789abcdef";
const LONG_ID = "x".repeat(201);

const notReady = [503];

/** What the admin cases keep between them. */
const kept = { keyId: "" };

/** One case per documented operation. */
const cases: Record<string, WalkCase> = {
  "GET /healthz": { valid: { expect: [200] } },
  "GET /readyz": { valid: { expect: [503] } },
  "GET /v1/jobs/{id}": {
    valid: { path: "/v1/jobs/job_unknown", expect: [404] },
    invalid: { path: `/v1/jobs/${LONG_ID}`, expect: [400] },
  },
  "GET /v1/jobs/{id}/events": {
    valid: { path: "/v1/jobs/job_unknown/events", expect: [404] },
    invalid: { path: `/v1/jobs/${LONG_ID}/events`, expect: [400] },
  },
  "POST /v1/jobs": {
    // Without an OCR engine (these services have none) a backfill is refused as a conflict.
    valid: { json: { kind: "ocr", kinds: ["image"] }, expect: [409] },
    invalid: { json: { kind: "reindex" }, expect: [400] },
  },
  "POST /v1/jobs/{id}/resume": {
    valid: { path: "/v1/jobs/job_unknown/resume", expect: [404] },
    invalid: { path: `/v1/jobs/${LONG_ID}/resume`, expect: [400] },
  },
  "POST /v1/images": {
    valid: {
      form: {
        files: { bytes: PNG_BYTES, filename: "dot.png", type: "image/png" },
        metadata: '{"tags":["dot"]}',
      },
      expect: [422, 503],
    },
    invalid: { json: { urls: [] }, expect: [400] },
  },
  "GET /v1/media/{id}": {
    valid: { path: `/v1/media/${IMAGE_ID}`, expect: notReady },
    also: [
      // A signed link that does not hold, sent without a key (the empty Authorization presents none).
      {
        path: `/v1/media/${IMAGE_ID}`,
        query: { exp: "1", kid: "key_0000000000000000", sig: "x".repeat(43) },
        headers: { authorization: "" },
        expect: [401],
      },
    ],
    invalid: { path: `/v1/media/${LONG_ID}`, expect: [400] },
  },
  "GET /v1/media/{id}/thumbnail": {
    valid: { path: `/v1/media/${IMAGE_ID}/thumbnail`, expect: notReady },
    invalid: { path: `/v1/media/${LONG_ID}/thumbnail`, expect: [400] },
  },
  "GET /v1/items": {
    valid: { query: { kind: "image", limit: "10" }, expect: notReady },
    invalid: { query: { limit: "0" }, expect: [400] },
  },
  "DELETE /v1/items/{id}": {
    valid: { path: `/v1/items/${IMAGE_ID}`, expect: notReady },
    invalid: { path: `/v1/items/${LONG_ID}`, expect: [400] },
  },
  "POST /v1/search": {
    valid: {
      json: {
        text: 'a "red circle"',
        mode: "hybrid",
        kinds: ["image"],
        topK: 5,
        filter: [{ field: "source", op: "eq", value: "x" }],
      },
      expect: notReady,
    },
    invalid: { json: { text: "a", topK: 0 }, expect: [400] },
  },
  "POST /v1/similar/{id}": {
    valid: { path: `/v1/similar/${IMAGE_ID}`, json: { topK: 5 }, expect: notReady },
    invalid: { path: `/v1/similar/${IMAGE_ID}`, json: { topK: 101 }, expect: [400] },
  },
  "POST /v1/recommend": {
    valid: { json: { positive: [IMAGE_ID], negative: [], topK: 5, diversity: 0.5 }, expect: notReady },
    invalid: { json: { positive: [] }, expect: [400] },
  },
  "POST /v1/events": {
    valid: { json: { user: "user-1", item: IMAGE_ID, type: "like" }, expect: notReady },
    invalid: { json: { user: "user-1", item: IMAGE_ID, type: "love" }, expect: [400] },
  },
  "GET /v1/users/{user}/recommendations": {
    // A user without events is answered from the event store alone: no results, no store call.
    valid: { path: "/v1/users/user-1/recommendations", query: { topK: "5" }, expect: [200] },
    invalid: { path: "/v1/users/user-1/recommendations", query: { topK: "0" }, expect: [400] },
  },
  "DELETE /v1/users/{user}": {
    valid: { path: "/v1/users/user-1", expect: [200] },
    invalid: { path: "/v1/users/-user", expect: [400] },
  },
  "POST /v1/classifiers": {
    valid: {
      json: {
        name: "tone",
        labels: [
          { label: "red", examples: [IMAGE_ID] },
          { label: "blue", examples: [`data:image/png;base64,${Buffer.from(PNG_BYTES).toString("base64")}`] },
        ],
      },
      expect: notReady,
    },
    invalid: { json: { name: "9tone", labels: [] }, expect: [400] },
  },
  "GET /v1/classifiers": { valid: { expect: [200] } },
  "GET /v1/classifiers/{name}": {
    valid: { path: "/v1/classifiers/tone", expect: [404] },
    invalid: { path: `/v1/classifiers/${LONG_ID}`, expect: [400] },
  },
  "POST /v1/classifiers/{name}/examples": {
    valid: {
      path: "/v1/classifiers/tone/examples",
      json: { labels: [{ label: "red", examples: [IMAGE_ID] }] },
      expect: [404],
    },
    invalid: { path: "/v1/classifiers/tone/examples", json: { labels: "red" }, expect: [400] },
  },
  "POST /v1/classifiers/{name}/predict": {
    valid: {
      path: "/v1/classifiers/tone/predict",
      form: { image: { bytes: PNG_BYTES, filename: "dot.png", type: "image/png" } },
      expect: [404],
    },
    also: [{ path: "/v1/classifiers/tone/predict", json: { image: IMAGE_ID }, expect: [404] }],
    invalid: { path: "/v1/classifiers/tone/predict", json: { image: 5 }, expect: [400] },
  },
  "DELETE /v1/classifiers/{name}": {
    valid: { path: "/v1/classifiers/tone", expect: [404] },
    invalid: { path: `/v1/classifiers/${LONG_ID}`, expect: [400] },
  },
  "POST /v1/classify": {
    valid: { json: { image: IMAGE_ID, labels: ["red", "blue"] }, expect: notReady },
    invalid: { json: { image: IMAGE_ID, labels: "red" }, expect: [400] },
  },
  "POST /v1/embeddings": {
    valid: { json: { model: "shapes-world-tiny@2", input: ["a red circle"] }, expect: notReady },
    invalid: { json: { model: "shapes-world-tiny@2", input: [1, 2, 3] }, expect: [400] },
  },
  "POST /v1/vqa": {
    valid: {
      form: { image: { bytes: PNG_BYTES, filename: "dot.png", type: "image/png" }, question: "what color?" },
      expect: notReady,
    },
    invalid: { json: { image: IMAGE_ID, question: "q", topK: 23 }, expect: [400] },
  },
  "POST /v1/detect": {
    valid: {
      form: { image: { bytes: PNG_BYTES, filename: "dot.png", type: "image/png" }, query: "a red circle" },
      expect: notReady,
    },
    invalid: { json: { image: IMAGE_ID, threshold: 2 }, expect: [400] },
  },
  "POST /v1/triples": {
    valid: {
      json: {
        items: [{ image: Buffer.from(PNG_BYTES).toString("base64"), question: "what color?", answer: "red" }],
      },
      expect: [422, 503],
    },
    invalid: { json: { items: [] }, expect: [400] },
  },
  "POST /v1/videos": {
    // A private address is refused before any connection: every video fails, with the refusal's status.
    valid: { json: { urls: ["http://127.0.0.1:9/clip.mp4"] }, expect: [400, 422] },
    invalid: { json: { urls: ["http://127.0.0.1:9/clip.mp4"], tenant: "other" }, expect: [400] },
  },
  "POST /v1/chat": {
    valid: { json: { question: "what color is the circle?" }, expect: notReady },
    invalid: { json: { question: "q", topK: 0 }, expect: [400] },
  },
  "POST /v1/chat/completions": {
    valid: {
      json: { model: "loupe", messages: [{ role: "user", content: "what color?" }] },
      expect: notReady,
    },
    invalid: { json: { model: "loupe", messages: [] }, expect: [400] },
  },
  "POST /v1/responses": {
    valid: { json: { model: "loupe", input: "what color?" }, expect: notReady },
    also: [{ json: { model: "loupe", input: "what color?", stream: true }, expect: notReady }],
    invalid: { json: { model: "loupe", input: "q", previous_response_id: "resp_1" }, expect: [400] },
  },
  "GET /v1/models": { valid: { expect: [200] } },
  "GET /v1/models/{model}": {
    valid: { path: "/v1/models/loupe-offline", expect: [200] },
    invalid: { path: "/v1/models/gpt-4o", expect: [404] },
  },
  "POST /v1/admin/keys": {
    valid: {
      json: { scopes: ["read"], name: "walk", expiresIn: "30d", origins: ["https://app.example.com"] },
      expect: [201],
      check: ({ body }) => {
        kept.keyId = (body as { id: string }).id;
      },
    },
    also: [{ json: { publishable: true, origins: ["https://app.example.com"] }, expect: [201] }],
    invalid: { json: { scopes: ["fly"] }, expect: [400] },
  },
  "GET /v1/admin/keys": { valid: { expect: [200] } },
  "DELETE /v1/admin/keys/{id}": {
    valid: () => ({ path: `/v1/admin/keys/${kept.keyId}`, expect: [200] }),
    also: [{ path: "/v1/admin/keys/key_0000000000000000", expect: [404] }],
    invalid: { path: `/v1/admin/keys/${LONG_ID}`, expect: [400] },
  },
  "POST /v1/feedback": {
    valid: {
      json: { rating: "up", question: "What color?", answer: "Red.", citations: [IMAGE_ID] },
      expect: [201],
    },
    // A stored image's id needs the store, which is down.
    also: [
      { json: { rating: "up", question: "What color?", answer: "Red.", image: IMAGE_ID }, expect: notReady },
    ],
    invalid: { json: { rating: "meh", question: "q", answer: "a" }, expect: [400] },
  },
  "GET /v1/feedback/proposals": {
    valid: { query: { status: "all", limit: "10" }, expect: [200] },
    invalid: { query: { limit: "0" }, expect: [400] },
  },
  "GET /v1/feedback/proposals/{id}/image": {
    valid: { path: `/v1/feedback/proposals/fbp_${"0".repeat(32)}/image`, expect: [404] },
    invalid: { path: `/v1/feedback/proposals/${LONG_ID}/image`, expect: [400] },
  },
  "POST /v1/feedback/proposals/{id}/approve": {
    valid: { path: `/v1/feedback/proposals/fbp_${"0".repeat(32)}/approve`, expect: [404] },
    invalid: { path: `/v1/feedback/proposals/${LONG_ID}/approve`, expect: [400] },
  },
  "POST /v1/feedback/proposals/{id}/reject": {
    valid: { path: `/v1/feedback/proposals/fbp_${"0".repeat(32)}/reject`, expect: [404] },
    invalid: { path: `/v1/feedback/proposals/${LONG_ID}/reject`, expect: [400] },
  },
  "GET /metrics": { valid: { expect: [200] } },
  "GET /openapi.json": { valid: { expect: [200] } },
  "GET /docs": { valid: { expect: [200] } },
};

/** The cases with `headers` added to every request. */
function withHeaders(
  all: Record<string, WalkCase>,
  headers: Record<string, string>,
): Record<string, WalkCase> {
  const add =
    (source: WalkRequestSource): WalkRequestSource =>
    () => {
      const request = typeof source === "function" ? source() : source;
      return { ...request, headers: { ...headers, ...request.headers } };
    };
  return Object.fromEntries(
    Object.entries(all).map(([key, walkCase]) => [
      key,
      {
        valid: add(walkCase.valid),
        ...(walkCase.also === undefined ? {} : { also: walkCase.also.map(add) }),
        ...(walkCase.invalid === undefined ? {} : { invalid: add(walkCase.invalid) }),
      },
    ]),
  );
}

let dataDir: string;
let apiKey: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-contract-keys-"));
  const keys = createFileKeyStore({ dir: keyStoreDir(dataDir), tenantPattern: TENANT_PATTERN });
  apiKey = (
    await keys.create({
      tenant: "walker",
      scopes: ["read", "ingest", "delete", "admin"],
      name: "contract walk",
    })
  ).key;
  await keys.close();
});

afterAll(async () => {
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

describe("the OpenAPI document against the routes (store down, no model pack)", () => {
  it("documents every status, content type and body each route answers", async () => {
    const app = makeTestApp({
      store: downStore,
      // The walk sends a few hundred requests with one key: the bucket must not be what answers them.
      env: { LOUPE_CHAT_MAX_IMAGES: "2", LOUPE_DATA_DIR: dataDir, LOUPE_RATE_LIMIT_BURST: "100000" },
    });
    const counts = await walkDocument({
      app,
      cases: withHeaders(cases, { authorization: `Bearer ${apiKey}` }),
    });
    expect(counts.operations).toBe(Object.keys(cases).length);
    console.info(
      `contract walk: ${counts.operations} operations, ${counts.requests} requests, ${counts.bodiesValidated} bodies validated`,
    );
  });
});
