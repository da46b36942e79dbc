/**
 * POST /v1/feedback and the proposal routes, in-process with keys on, a real blob store and feedback
 * files in a temporary data dir (the store is down: approval, which needs it, is tested in
 * feedback.int.test.ts). Who may call what, hostile bodies, tenancy, proposals and their images' blob
 * references, and what the feedback file records.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { StoreError } from "../../../src/errors.ts";
import { FeedbackService } from "../../../src/feedback/feedback-service.ts";
import { createFileFeedbackStore } from "../../../src/feedback/feedback-store.ts";
import { sweepOrphanBlobs } from "../../../src/ingest/blob-gc.ts";
import { createFsBlobStore, type FsBlobStore, sha256Hex } from "../../../src/media/blob-store.ts";
import type { VectorStore } from "../../../src/store/index.ts";
import { renderShapes } from "../../ingest/harness.ts";
import { type AuthTestApp, bearer, errorOf, makeAuthTestApp } from "../auth-fixtures.ts";

const APP_ORIGIN = "https://app.example.com";
const EVIL_ORIGIN = "https://evil.example";

/** A store that answers as Milvus down would, and records that it was asked. */
const downStore = new Proxy({} as VectorStore, {
  get(_target, property) {
    if (property === "then") return undefined;
    return async () => {
      throw new StoreError("Milvus is unreachable.");
    };
  },
});

let images: Buffer[];
let current: (AuthTestApp & { blobs: FsBlobStore; blobDir: string }) | undefined;

beforeAll(async () => {
  images = await renderShapes({ count: 3, seed: 21, format: "png" });
});

afterEach(async () => {
  if (current !== undefined) {
    await current.dispose();
    await rm(current.blobDir, { recursive: true, force: true });
  }
  current = undefined;
});

async function setUp(env: Record<string, string> = {}) {
  const blobDir = await mkdtemp(path.join(os.tmpdir(), "loupe-feedback-blobs-"));
  const blobs = createFsBlobStore({ dir: blobDir });
  const app = await makeAuthTestApp({ store: downStore, blobs, env });
  current = { ...app, blobs, blobDir };
  return current;
}

const dataUrl = (bytes: Buffer, type = "image/png") => `data:${type};base64,${bytes.toString("base64")}`;

function post(app: AuthTestApp["app"], url: string, body: unknown, headers: Record<string, string>) {
  return app.request(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

interface Receipt {
  id: string;
  proposal: { id: string; status: string } | null;
  notProposed?: string;
}

interface ProposalJson {
  id: string;
  status: string;
  question: string;
  answer: string;
  corrected: boolean;
  image: { sha256: string };
  imageUrl: string;
  proposedBy: string | null;
}

const upAboutImage = (image: Buffer, extra: Record<string, unknown> = {}) => ({
  rating: "up",
  question: "What color is the circle?",
  answer: "The circle is red [att_1].",
  citations: ["att_1"],
  image: dataUrl(image),
  ...extra,
});

describe("POST /v1/feedback: who may send it", () => {
  it("takes feedback from a publishable key on its origin, with CORS, and refuses other origins", async () => {
    const { app, createKey, dataDir } = await setUp();
    const { key, record } = await createKey({ tenant: "acme", publishable: true, origins: [APP_ORIGIN] });
    const preflight = await app.request("/v1/feedback", {
      method: "OPTIONS",
      headers: {
        origin: APP_ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(preflight.status).toBe(204);
    const sent = await post(
      app,
      "/v1/feedback",
      { rating: "down", question: "How many stars?", answer: "Two [img_abc].", citations: ["img_abc"] },
      bearer(key, { origin: APP_ORIGIN }),
    );
    expect(sent.status).toBe(201);
    expect(sent.headers.get("access-control-allow-origin")).toBe(APP_ORIGIN);
    const receipt = (await sent.json()) as Receipt;
    expect(receipt.id).toMatch(/^fb_[0-9a-f]{32}$/);
    expect(receipt.proposal).toBeNull();

    const lines = (await readFile(path.join(dataDir, "feedback", "feedback.jsonl"), "utf8"))
      .trim()
      .split("\n");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      id: receipt.id,
      tenant: "acme",
      keyId: record.id,
      rating: "down",
      question: "How many stars?",
      answer: "Two [img_abc].",
      citations: ["img_abc"],
    });

    const foreign = await post(
      app,
      "/v1/feedback",
      { rating: "up", question: "q", answer: "a" },
      bearer(key, { origin: EVIL_ORIGIN }),
    );
    expect(foreign.status).toBe(403);
    expect((await errorOf(foreign)).code).toBe("origin_not_allowed");
  });

  it("keeps the proposal routes to secret keys with the ingest scope", async () => {
    const { app, createKey } = await setUp();
    const publishable = await createKey({ tenant: "acme", publishable: true, origins: [APP_ORIGIN] });
    const reader = await createKey({ tenant: "acme", scopes: ["read"] });
    const ingester = await createKey({ tenant: "acme", scopes: ["ingest"] });
    const id = `fbp_${"0".repeat(32)}`;
    const calls: Array<[string, string]> = [
      ["GET", "/v1/feedback/proposals"],
      ["GET", `/v1/feedback/proposals/${id}/image`],
      ["POST", `/v1/feedback/proposals/${id}/approve`],
      ["POST", `/v1/feedback/proposals/${id}/reject`],
    ];
    for (const [method, url] of calls) {
      for (const headers of [bearer(publishable.key, { origin: APP_ORIGIN }), bearer(reader.key)]) {
        const refused = await app.request(url, { method, headers });
        expect(refused.status, `${method} ${url}`).toBe(403);
        expect((await errorOf(refused)).code).toBe("forbidden");
      }
    }
    expect((await app.request("/v1/feedback/proposals", { headers: bearer(ingester.key) })).status).toBe(200);
    // A read key may send feedback; an ingest-only key lacks `read`.
    const body = { rating: "up", question: "q", answer: "a" };
    expect((await post(app, "/v1/feedback", body, bearer(reader.key))).status).toBe(201);
    expect((await post(app, "/v1/feedback", body, bearer(ingester.key))).status).toBe(403);
  });
});

describe("POST /v1/feedback: hostile bodies", () => {
  it("answers 400, 413 or 415 with a message naming the field", async () => {
    const { app, createKey } = await setUp();
    const { key } = await createKey({ tenant: "acme", scopes: ["read"] });
    const base = { rating: "up", question: "What color?", answer: "Red." };
    const cases: Array<[unknown, number, RegExp]> = [
      [{ ...base, rating: "meh" }, 400, /rating must be "up" or "down"/],
      [{ ...base, question: "x".repeat(4001) }, 400, /question must be at most 4000/],
      [{ ...base, question: "   " }, 400, /question must not be empty/],
      [{ ...base, answer: "x".repeat(20_001) }, 400, /answer must be at most 20000/],
      [{ ...base, correction: "x".repeat(2001) }, 400, /correction must be at most 2000/],
      [{ ...base, citations: Array.from({ length: 101 }, (_, i) => `img_${i}`) }, 400, /at most 100/],
      [{ ...base, citations: ["<script>"] }, 400, /each citation must be an item id/],
      [{ ...base, conversationId: "../../etc" }, 400, /conversationId/],
      [{ ...base, tenant: "other" }, 400, /tenant/],
      [{ ...base, image: "data:image/png,not-base64" }, 400, /without base64/],
      [{ ...base, image: "not an image at all!" }, 400, /not valid base64/],
      [{ ...base, image: "https://example.com/a.png" }, 400, /URL/],
      [{ ...base, image: "tri_0123456789abcdef0123456789abcdef" }, 400, /stored image's id/],
      [{ ...base, image: dataUrl(Buffer.from("GIF89a but not really")) }, 422, /./],
      [{ ...base, image: dataUrl(Buffer.from("plain text, no image here")) }, 415, /JPEG, PNG, WebP or GIF/],
      [{ ...base, question: "bad \ud800 surrogate" }, 400, /question/],
      ["[1, 2]", 400, /JSON object/],
    ];
    for (const [body, status, message] of cases) {
      const response = await post(app, "/v1/feedback", body, bearer(key));
      const label = JSON.stringify(body).slice(0, 80);
      expect(response.status, label).toBe(status);
      expect((await errorOf(response)).message, label).toMatch(message);
    }
  });

  it("refuses a body over one image's worth with 413 before reading it", async () => {
    const { app, createKey } = await setUp({ LOUPE_MAX_IMAGE_BYTES: "10000" });
    const { key } = await createKey({ tenant: "acme", scopes: ["read"] });
    const huge = { rating: "up", question: "q", answer: "a", image: dataUrl(Buffer.alloc(400_000, 1)) };
    const response = await post(app, "/v1/feedback", huge, bearer(key));
    expect(response.status).toBe(413);
    expect((await errorOf(response)).code).toBe("payload_too_large");
  });
});

describe("proposals", () => {
  it("proposes a triple for an up or a correction about an image, once, holding its image", async () => {
    const { app, createKey, blobs } = await setUp();
    const sender = await createKey({ tenant: "acme", scopes: ["read"] });
    const reviewer = await createKey({ tenant: "acme", scopes: ["ingest"] });
    const image = images[0] as Buffer;

    const first = (await (
      await post(app, "/v1/feedback", upAboutImage(image), bearer(sender.key))
    ).json()) as Receipt;
    expect(first.proposal).toEqual({ id: expect.stringMatching(/^fbp_[0-9a-f]{32}$/), status: "pending" });
    const again = (await (
      await post(app, "/v1/feedback", upAboutImage(image), bearer(sender.key))
    ).json()) as Receipt;
    expect(again.id).not.toBe(first.id);
    expect(again.proposal).toEqual(first.proposal);

    const down = (await (
      await post(app, "/v1/feedback", upAboutImage(image, { rating: "down" }), bearer(sender.key))
    ).json()) as Receipt;
    expect(down.proposal).toBeNull();
    expect(down.notProposed).toMatch(/thumbs-down without a correction/);
    const corrected = (await (
      await post(
        app,
        "/v1/feedback",
        upAboutImage(images[1] as Buffer, { rating: "down", correction: "It is blue." }),
        bearer(sender.key),
      )
    ).json()) as Receipt;
    expect(corrected.proposal?.status).toBe("pending");

    const list = await app.request("/v1/feedback/proposals", { headers: bearer(reviewer.key) });
    const { proposals } = (await list.json()) as { proposals: ProposalJson[] };
    expect(proposals.map((proposal) => proposal.id).sort()).toEqual(
      [first.proposal?.id, corrected.proposal?.id].sort(),
    );
    const byId = new Map(proposals.map((proposal) => [proposal.id, proposal]));
    // The citation mark is not part of a triple's answer; a correction is the answer.
    expect(byId.get(first.proposal?.id as string)).toMatchObject({
      question: "What color is the circle?",
      answer: "The circle is red.",
      corrected: false,
      proposedBy: sender.record.id,
      image: { sha256: sha256Hex(image) },
    });
    expect(byId.get(corrected.proposal?.id as string)).toMatchObject({
      answer: "It is blue.",
      corrected: true,
    });

    // The image is held by the proposal's own reference, which the orphan sweep keeps.
    const owner = `acme/${first.proposal?.id}`;
    expect(await blobs.references(sha256Hex(image))).toEqual([owner]);
    const swept = await sweepOrphanBlobs({ blobs, store: downStore, graceSeconds: 0 });
    expect(swept.removed).toEqual([]);
    expect(await blobs.has(sha256Hex(image))).toBe(true);

    const shown = await app.request(byId.get(first.proposal?.id as string)?.imageUrl as string, {
      headers: bearer(reviewer.key),
    });
    expect(shown.status).toBe(200);
    expect(shown.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await shown.arrayBuffer())).toEqual(image);
  });

  it("rejects: releases the image, is idempotent, and cannot then be approved", async () => {
    const { app, createKey, blobs, dataDir } = await setUp();
    const { key } = await createKey({ tenant: "acme", scopes: ["read", "ingest"] });
    const image = images[2] as Buffer;
    const receipt = (await (
      await post(app, "/v1/feedback", upAboutImage(image), bearer(key))
    ).json()) as Receipt;
    const id = receipt.proposal?.id as string;
    const rejected = await post(app, `/v1/feedback/proposals/${id}/reject`, {}, bearer(key));
    expect(rejected.status).toBe(200);
    expect(await rejected.json()).toMatchObject({ proposal: { id, status: "rejected" }, changed: true });
    expect(await blobs.has(sha256Hex(image))).toBe(false);
    const twice = await post(app, `/v1/feedback/proposals/${id}/reject`, {}, bearer(key));
    expect(await twice.json()).toMatchObject({ proposal: { status: "rejected" }, changed: false });
    const approve = await post(app, `/v1/feedback/proposals/${id}/approve`, {}, bearer(key));
    expect(approve.status).toBe(409);
    expect((await errorOf(approve)).message).toMatch(/was rejected/);

    const pending = (await (
      await app.request("/v1/feedback/proposals", { headers: bearer(key) })
    ).json()) as {
      proposals: unknown[];
    };
    expect(pending.proposals).toEqual([]);
    const all = (await (
      await app.request("/v1/feedback/proposals?status=rejected", { headers: bearer(key) })
    ).json()) as { proposals: ProposalJson[] };
    expect(all.proposals.map((proposal) => proposal.id)).toEqual([id]);
    const audit = await readFile(path.join(dataDir, "audit.log"), "utf8");
    expect(audit).toContain('"action":"proposal.reject"');
  });

  it("answers 404 for unknown ids and another tenant's proposals", async () => {
    const { app, createKey } = await setUp();
    const acme = await createKey({ tenant: "acme", scopes: ["read", "ingest"] });
    const globex = await createKey({ tenant: "globex", scopes: ["read", "ingest"] });
    const receipt = (await (
      await post(app, "/v1/feedback", upAboutImage(images[0] as Buffer), bearer(acme.key))
    ).json()) as Receipt;
    const id = receipt.proposal?.id as string;
    for (const target of [id, `fbp_${"f".repeat(32)}`, "..%2F..%2Fauth%2Fkeys", "fbp_x"]) {
      for (const [method, suffix] of [
        ["POST", "approve"],
        ["POST", "reject"],
        ["GET", "image"],
      ] as const) {
        const response = await app.request(`/v1/feedback/proposals/${target}/${suffix}`, {
          method,
          headers: bearer(globex.key),
        });
        expect(response.status, `${target} ${suffix}`).toBe(404);
      }
    }
    const listed = (await (
      await app.request("/v1/feedback/proposals", { headers: bearer(globex.key) })
    ).json()) as {
      proposals: unknown[];
    };
    expect(listed.proposals).toEqual([]);
  });

  it("pages with a cursor and stops proposing at LOUPE_FEEDBACK_MAX_PENDING", async () => {
    const { app, createKey } = await setUp({ LOUPE_FEEDBACK_MAX_PENDING: "2" });
    const { key } = await createKey({ tenant: "acme", scopes: ["read", "ingest"] });
    const receipts: Receipt[] = [];
    for (const image of images) {
      receipts.push(
        (await (await post(app, "/v1/feedback", upAboutImage(image), bearer(key))).json()) as Receipt,
      );
    }
    expect(receipts.slice(0, 2).every((receipt) => receipt.proposal?.status === "pending")).toBe(true);
    expect(receipts[2]?.proposal).toBeNull();
    expect(receipts[2]?.notProposed).toMatch(/LOUPE_FEEDBACK_MAX_PENDING/);

    const first = (await (
      await app.request("/v1/feedback/proposals?limit=1", { headers: bearer(key) })
    ).json()) as { proposals: ProposalJson[]; nextCursor?: string };
    expect(first.proposals).toHaveLength(1);
    expect(first.nextCursor).toBeDefined();
    const second = (await (
      await app.request(`/v1/feedback/proposals?limit=1&cursor=${first.nextCursor}`, { headers: bearer(key) })
    ).json()) as { proposals: ProposalJson[]; nextCursor?: string };
    expect(second.proposals).toHaveLength(1);
    expect(second.nextCursor).toBeUndefined();
    expect(second.proposals[0]?.id).not.toBe(first.proposals[0]?.id);
    for (const query of ["limit=0", "limit=101", "status=maybe", "cursor=bm90LWEtY3Vyc29y"]) {
      const response = await app.request(`/v1/feedback/proposals?${query}`, { headers: bearer(key) });
      expect(response.status, query).toBe(400);
    }
  });
});

describe("the pending cap across replicas", () => {
  it("proposes at most LOUPE_FEEDBACK_MAX_PENDING when two services (two replicas) take feedback at once, holding no image for the rest", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-feedback-replicas-"));
    try {
      const blobs = createFsBlobStore({ dir: path.join(dir, "blobs") });
      const shapes = await renderShapes({ count: 6, seed: 22, format: "png" });
      const replicas = [0, 1].map(
        () =>
          new FeedbackService({
            feedback: createFileFeedbackStore({ dir: path.join(dir, "feedback") }),
            blobs,
            store: downStore,
            triples: {
              ingest: async () => {
                throw new Error("Nothing is approved in this test.");
              },
            },
            maxPending: 2,
            maxImagePixels: 50_000_000,
          }),
      );
      const receipts = await Promise.all(
        shapes.map((bytes, index) =>
          (replicas[index % 2] as FeedbackService).submit({
            tenant: "acme",
            keyId: null,
            requestId: null,
            input: {
              rating: "up",
              question: "What is drawn?",
              answer: "Shapes.",
              citations: [],
              image: { bytes },
            },
          }),
        ),
      );
      expect(receipts.filter((receipt) => receipt.proposal?.status === "pending")).toHaveLength(2);
      const refused = receipts.filter((receipt) => receipt.proposal === null);
      expect(refused.map((receipt) => receipt.notProposed)).toEqual(
        Array.from(
          { length: 4 },
          () =>
            "This tenant already has 2 proposals waiting for approval, the most allowed (LOUPE_FEEDBACK_MAX_PENDING).",
        ),
      );
      const listed = await createFileFeedbackStore({ dir: path.join(dir, "feedback") }).listProposals({
        tenant: "acme",
      });
      expect(listed).toHaveLength(2);
      for (const [index, receipt] of receipts.entries()) {
        const owners = await blobs.references(sha256Hex(shapes[index] as Buffer));
        expect(owners, `feedback ${index}`).toEqual(
          receipt.proposal === null ? [] : [`acme/${receipt.proposal.id}`],
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
