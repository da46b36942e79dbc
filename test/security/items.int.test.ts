/**
 * Bad items fail alone, and nothing is left behind, over a real Milvus Lite and the bundled pack: a lone
 * UTF-16 surrogate (which Milvus cannot store) in an image's metadata, a triple's question, answer or
 * metadata fails that item with a 400-class error naming the field while the others are stored; a
 * video's metadata is refused before any work; a batch the store refuses one record of stores the rest;
 * and when Milvus goes away mid-upsert the blobs written for the batch are released. After each, the
 * blob store's files, its reference index and the records agree. Error bodies never name Milvus's
 * address.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { ValidationError } from "../../src/errors.ts";
import { storeRecords } from "../../src/ingest/store-records.ts";
import { blobRef } from "../../src/media/blob-store.ts";
import { assembleServices } from "../../src/services.ts";
import {
  createVectorStore,
  type ImageRecord,
  type MilvusVectorStore,
  type RecordKind,
  recordId,
  type VectorStore,
} from "../../src/store/index.ts";
import { uniquePrefix } from "../helpers/milvus-lite.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness } from "../ingest/harness.ts";
import { expectBlobsAgree } from "./items-consistency.ts";

const TENANT = "default";

interface ItemResult {
  index: number;
  status: "stored" | "skipped" | "failed";
  id?: string;
  error?: { code: string; message: string; field?: string };
}

/** A JSON text whose string holds a lone surrogate: JSON.stringify writes it as a `\ud800` escape. */
const json = (value: unknown) => JSON.stringify(value);

const dataUrl = (bytes: Uint8Array) => `data:image/jpeg;base64,${Buffer.from(bytes).toString("base64")}`;

/** Fails when a body names an address: `127.0.0.1`, a `host:port`, the Milvus address itself. */
function expectNoAddress(body: string, address: string): void {
  expect(body).not.toContain(address);
  expect(body).not.toMatch(/127\.0\.0\.1|localhost:\d|\b\d{1,3}(\.\d{1,3}){3}\b/);
  expect(body).not.toMatch(new RegExp(`:${address.split(":").at(-1)}\\b`));
}

describe("bad items fail alone", () => {
  let harness: IngestHarness;
  let images: Buffer[];

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "items" });
    images = await renderShapes({ count: 12, seed: 97 });
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const post = (route: string, body: FormData | object) =>
    harness.app.request(route, {
      method: "POST",
      ...(body instanceof FormData
        ? { body }
        : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    });

  it("two images, one with a lone surrogate in its metadata: 200, one stored, one failed naming the field", async () => {
    const form = new FormData();
    for (const [index, bytes] of images.slice(0, 3).entries()) {
      form.append("files", new File([new Uint8Array(bytes)], `shape-${index}.jpg`, { type: "image/jpeg" }));
    }
    form.append("metadata", json({ title: "fine", tags: ["ok"] }));
    form.append("metadata", json({ title: "bro\ud800ken" }));
    form.append("metadata", json({ "ke\udc00y": 1 }));
    const response = await harness.app.request("/v1/images", { method: "POST", body: form });
    const body = (await response.json()) as { items: ItemResult[]; counts: Record<string, number> };
    expect(response.status, JSON.stringify(body)).toBe(200);
    expect(body.items.map((item) => item.status)).toEqual(["stored", "failed", "failed"]);
    expect(body.items[1]?.error).toMatchObject({ code: "invalid_request", field: "metadata.title" });
    expect(body.items[1]?.error?.message).toMatch(/^metadata\.title holds a lone UTF-16 surrogate \(U\+D800/);
    expect(body.items[2]?.error?.field).toMatch(/^metadata key/);
    expect(body.counts).toMatchObject({ done: 1, failed: 2 });
    const [stored] = await harness.store.get({
      kind: "image",
      tenant: TENANT,
      ids: [body.items[0]?.id ?? ""],
    });
    expect(stored?.metadata.title).toBe("fine");
    await expectBlobsAgree({ blobs: harness.blobs, store: harness.store });
  });

  it("the same for URLs given JSON metadata, and a URL holding a surrogate", async () => {
    const response = await post("/v1/images", {
      urls: [{ url: "https://example.invalid/a.jpg", metadata: { title: "x\udbff" } }],
    });
    const body = (await response.json()) as { items: ItemResult[] };
    expect(response.status).toBe(422);
    expect(body.items[0]?.error?.field).toBe("metadata.title");
    // Refused before any fetch: the URL's own text is checked first.
    const bad = await post("/v1/images", { urls: ["https://example.invalid/\udc00.jpg"] });
    expect(((await bad.json()) as { items: ItemResult[] }).items[0]?.error?.field).toBe("url");
  });

  it("triples with a lone surrogate in the question, the answer or the metadata fail alone", async () => {
    const item = (index: number, patch: object) => ({
      image: dataUrl(images[3 + index] as Buffer),
      question: "What color is the circle?",
      answer: "red",
      ...patch,
    });
    const response = await post("/v1/triples", {
      items: [
        item(0, {}),
        item(1, { question: "What color is the \ud800circle?" }),
        item(2, { answer: "re\udfffd" }),
        item(3, { metadata: { tags: ["ok", "b\ud83dad"] } }),
        item(4, { answer: "blue" }),
      ],
    });
    const body = (await response.json()) as { items: ItemResult[] };
    expect(response.status, JSON.stringify(body)).toBe(200);
    expect(body.items.map((entry) => entry.status)).toEqual([
      "stored",
      "failed",
      "failed",
      "failed",
      "stored",
    ]);
    expect(body.items.map((entry) => entry.error?.field)).toEqual([
      undefined,
      "question",
      "answer",
      "metadata.tags[1]",
      undefined,
    ]);
    for (const failed of body.items.filter((entry) => entry.status === "failed")) {
      expect(failed.error?.code).toBe("invalid_request");
    }
    await expectBlobsAgree({ blobs: harness.blobs, store: harness.store });
  });

  it("a video whose metadata holds a lone surrogate is refused before anything is written", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-items-video-"));
    try {
      const file = await makeTestVideo({
        outPath: path.join(dir, "clip.mp4"),
        source: "testsrc=size=96x96:rate=4:duration=2",
      });
      const before = (await harness.blobs.inventory()).blobs.length;
      const form = new FormData();
      form.append("file", new File([await readFile(file)], "clip.mp4", { type: "video/mp4" }));
      form.append("metadata", json({ title: "clip \ud800" }));
      const response = await harness.app.request("/v1/videos", { method: "POST", body: form });
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(response.status).toBe(400);
      expect(body.error.message).toMatch(/^metadata\.title holds a lone UTF-16 surrogate/);
      // The ingester checks too, for callers other than the route.
      await expect(
        harness.services.videos.ingest({
          tenant: TENANT,
          bytes: await readFile(file),
          source: "upload",
          metadata: { note: "x\udc00" },
        }),
      ).rejects.toThrow(/metadata\.note holds a lone UTF-16 surrogate/);
      expect((await harness.blobs.inventory()).blobs.length).toBe(before);
      await expectBlobsAgree({ blobs: harness.blobs, store: harness.store });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("a batch the store refuses one record of stores the others and releases that record's blobs", async () => {
    const [vector] = await harness.models.imageEmbedder.embed({ images: [images[9] as Buffer] });
    const records: ImageRecord[] = [];
    const added = [];
    for (const [position, bytes] of images.slice(9, 12).entries()) {
      const id = recordId({
        kind: "image",
        tenant: TENANT,
        contentSha256: `${position}`.padStart(64, "e"),
        modelId: "m",
      });
      const owner = `${TENANT}/${id}`;
      const { sha256 } = await harness.blobs.put({ bytes, contentType: "image/jpeg", owner });
      added.push({ recordId: id, ref: sha256, owner });
      records.push({
        id,
        modelId: "m",
        mediaRef: blobRef(sha256),
        source: "test",
        text: "",
        // The pipelines would refuse this earlier; the store's own check is the last line.
        metadata: position === 1 ? { title: "x\ud800" } : {},
        vector: vector as Float32Array,
      });
    }
    const outcome = await storeRecords({
      store: harness.store,
      kind: "image",
      tenant: TENANT,
      records,
      added,
      release: ({ ref, owner }) => harness.blobs.release({ sha256: ref, owner }),
    });
    expect(outcome.failure).toBeUndefined();
    expect(outcome.stored.sort()).toEqual([records[0]?.id, records[2]?.id].sort());
    const rejection = outcome.rejected.get(records[1]?.id ?? "");
    expect(rejection).toBeInstanceOf(ValidationError);
    expect(rejection?.message).toMatch(/metadata\.title holds a lone UTF-16 surrogate/);
    expect(await harness.blobs.has(added[1]?.ref ?? "")).toBe(false);
    await expectBlobsAgree({ blobs: harness.blobs, store: harness.store });
  });
});

/** The store, stopping Milvus just before the first upsert of `kind`: the upsert then really fails. */
function stopBeforeUpsert(store: VectorStore, kind: RecordKind, stop: () => Promise<void>): VectorStore {
  return {
    async upsert(request) {
      if (request.kind === kind) await stop();
      return store.upsert(request);
    },
    search: (request) => store.search(request),
    query: (request) => store.query(request),
    get: (request) => store.get(request),
    list: (request) => store.list(request),
    delete: (request) => store.delete(request),
    count: (request) => store.count(request),
    textSearch: (request) => store.textSearch(request),
    hybridSearch: (request) => store.hybridSearch(request),
    update: (request) => store.update(request),
    health: () => store.health(),
    close: () => store.close(),
  };
}

describe("when Milvus goes away mid-upsert", () => {
  let harness: IngestHarness;
  let images: Buffer[];
  const prefix = uniquePrefix("itemsdown");
  let store: MilvusVectorStore | undefined;
  let stopped = false;
  /** The address Milvus was last started on (the test helper forgets it once Milvus is stopped). */
  let address = "";

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "itemsdownh" });
    images = await renderShapes({ count: 4, seed: 131 });
  }, 180_000);

  afterAll(async () => {
    await store?.close();
    await harness?.dispose();
  });

  const stop = async () => {
    stopped = true;
    await harness.milvus.stop();
  };

  async function openStore(): Promise<MilvusVectorStore> {
    if (stopped) {
      await harness.milvus.restart();
      stopped = false;
    }
    address = harness.milvus.address;
    return createVectorStore({ address, collectionPrefix: prefix, dimension: harness.models.dimension });
  }

  /** The app over a fresh store on a running Milvus, whose first upsert of `kind` stops Milvus. */
  async function appFailingAt(kind: RecordKind) {
    await store?.close();
    store = await openStore();
    const failing = stopBeforeUpsert(store, kind, stop);
    return createApp(assembleServices({ ...harness.services, store: failing }));
  }

  it("releases the blobs written for an image batch and answers 503 without Milvus's address", async () => {
    const app = await appFailingAt("image");
    const response = await app.request("/v1/images", {
      method: "POST",
      body: multipart({
        files: images.slice(0, 2).map((bytes, index) => ({ name: `${index}.jpg`, bytes })),
      }),
    });
    const text = await response.text();
    expect(response.status, text).toBe(503);
    expectNoAddress(text, address);
    expect((await harness.blobs.inventory()).blobs).toEqual([]);
    const reopened = await openStore();
    try {
      expect(await reopened.count({ kind: "image", tenant: TENANT })).toBe(0);
      await expectBlobsAgree({ blobs: harness.blobs, store: reopened });
    } finally {
      await reopened.close();
    }
  }, 120_000);

  it("releases the blobs of triples whose upsert failed, each failing with a message free of addresses", async () => {
    const app = await appFailingAt("triple");
    const response = await app.request("/v1/triples", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        items: images.slice(2, 4).map((bytes) => ({
          image: dataUrl(bytes),
          question: "How many objects are there?",
          answer: "2",
        })),
      }),
    });
    const text = await response.text();
    expect(response.status, text).toBe(422);
    expectNoAddress(text, address);
    const body = JSON.parse(text) as { items: ItemResult[] };
    expect(body.items.map((item) => item.error?.code)).toEqual(["store_unavailable", "store_unavailable"]);
    expect((await harness.blobs.inventory()).blobs).toEqual([]);
  }, 120_000);

  it("releases a video's original and keyframes when its segments cannot be stored", async () => {
    const app = await appFailingAt("video_segment");
    const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-items-down-"));
    try {
      const file = await makeTestVideo({
        outPath: path.join(dir, "clip.mp4"),
        source: "testsrc=size=96x96:rate=4:duration=3",
      });
      const form = new FormData();
      form.append("file", new File([await readFile(file)], "clip.mp4", { type: "video/mp4" }));
      const response = await app.request("/v1/videos", { method: "POST", body: form });
      const text = await response.text();
      expect(response.status, text).toBe(503);
      expectNoAddress(text, address);
      expect((await harness.blobs.inventory()).blobs).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("answers the routes with Milvus down without naming where it lives", async () => {
    // Milvus was stopped by the last upsert; this store still points at it.
    const app = createApp(assembleServices({ ...harness.services, store: store as VectorStore }));
    const calls: Array<[string, RequestInit]> = [
      ["/readyz", { method: "GET" }],
      [
        "/v1/search",
        {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: "a red circle" }),
        },
      ],
      [
        "/v1/images",
        { method: "POST", body: multipart({ files: [{ name: "a.jpg", bytes: images[0] as Buffer }] }) },
      ],
      ["/v1/items/img_0123456789abcdef0123456789abcdef", { method: "DELETE" }],
    ];
    for (const [route, init] of calls) {
      const response = await app.request(route, init);
      const text = await response.text();
      expect(response.status, `${route}: ${text}`).toBe(503);
      expectNoAddress(text, address);
    }
  }, 120_000);
});
