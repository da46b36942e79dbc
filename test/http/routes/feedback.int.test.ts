/**
 * Feedback that grows the corpus, against a real Milvus Lite and the bundled pack: a thumbs-up on an
 * answer about an attached image proposes a triple that search does not find, approval ingests it
 * (embedded, stored, found by search and by id), approving again changes nothing, and the proposal's
 * hold on the image passes to the triple's record. A proposal from a stored image keeps that image.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../../../src/media/blob-store.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness } from "../../ingest/harness.ts";

interface Receipt {
  proposal: { id: string; status: string } | null;
}

interface Decision {
  proposal: { id: string; status: string; tripleId?: string };
  changed: boolean;
}

describe("feedback proposals approved into the corpus", () => {
  let harness: IngestHarness;
  let images: Buffer[];

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "feedback" });
    images = await renderShapes({ count: 2, seed: 31, format: "png" });
  }, 120_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const post = (url: string, body: unknown = {}) =>
    harness.app.request(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  async function searchTriples(text: string): Promise<string[]> {
    // BM25 alone: a hit means the words are stored, not merely that the only triple is nearest.
    const response = await post("/v1/search", { text, mode: "text", kinds: ["triple"], topK: 10 });
    expect(response.status).toBe(200);
    return ((await response.json()) as { items: Array<{ id: string }> }).items.map((result) => result.id);
  }

  it("stores an approved triple, searchable, once", async () => {
    const image = images[0] as Buffer;
    const question = "Which shape does the feedback screenshot show?";
    const sent = await post("/v1/feedback", {
      rating: "up",
      question,
      answer: "It shows a zigzag-violet-kite [att_1] [reg_0a1b2c3d4e5f].",
      citations: ["att_1"],
      image: `data:image/png;base64,${image.toString("base64")}`,
      conversationId: "conv-1",
    });
    expect(sent.status).toBe(201);
    const proposalId = ((await sent.json()) as Receipt).proposal?.id as string;
    expect(proposalId).toMatch(/^fbp_/);
    // Pending: nothing reached the corpus.
    expect(await searchTriples("zigzag-violet-kite")).toEqual([]);

    const approved = await post(`/v1/feedback/proposals/${proposalId}/approve`);
    expect(approved.status).toBe(200);
    const decision = (await approved.json()) as Decision;
    expect(decision.changed).toBe(true);
    expect(decision.proposal.status).toBe("approved");
    const tripleId = decision.proposal.tripleId as string;
    expect(tripleId).toMatch(/^tri_/);

    const [record] = await harness.store.get({ kind: "triple", tenant: "default", ids: [tripleId] });
    expect(record).toMatchObject({ question, answer: "It shows a zigzag-violet-kite.", source: "feedback" });
    expect(await searchTriples("zigzag-violet-kite")).toContain(tripleId);
    const media = await harness.app.request(`/v1/media/${tripleId}`);
    expect(Buffer.from(await media.arrayBuffer())).toEqual(image);
    // The triple's record holds the image now; the proposal's hold is gone.
    expect(await harness.blobs.references(sha256Hex(image))).toEqual([`default/${tripleId}`]);

    const again = (await (await post(`/v1/feedback/proposals/${proposalId}/approve`)).json()) as Decision;
    expect(again).toMatchObject({ changed: false, proposal: { status: "approved", tripleId } });
    expect((await post(`/v1/feedback/proposals/${proposalId}/reject`)).status).toBe(409);
    const count = await harness.store.get({ kind: "triple", tenant: "default", ids: [tripleId] });
    expect(count).toHaveLength(1);
  });

  it("proposes from a stored image by id, and rejecting leaves the stored image alone", async () => {
    const image = images[1] as Buffer;
    const uploaded = await harness.app.request("/v1/images", {
      method: "POST",
      body: multipart({ files: [{ name: "b.png", bytes: image, type: "image/png" }] }),
    });
    const imageId = ((await uploaded.json()) as { items: Array<{ id: string }> }).items[0]?.id as string;
    const sent = await post("/v1/feedback", {
      rating: "down",
      question: "What is in the corner?",
      answer: "Nothing.",
      citations: [imageId],
      correction: "A small green square.",
      image: imageId,
    });
    expect(sent.status).toBe(201);
    const proposalId = ((await sent.json()) as Receipt).proposal?.id as string;
    expect(await harness.blobs.references(sha256Hex(image))).toEqual(
      [`default/${imageId}`, `default/${proposalId}`].sort(),
    );
    expect((await post(`/v1/feedback/proposals/${proposalId}/reject`)).status).toBe(200);
    expect(await harness.blobs.references(sha256Hex(image))).toEqual([`default/${imageId}`]);
    expect((await harness.app.request(`/v1/media/${imageId}`)).status).toBe(200);

    // Another tenant cannot name this image.
    const foreign = await harness.app.request("/v1/feedback", {
      method: "POST",
      headers: { "content-type": "application/json", "x-test-tenant": "globex" },
      body: JSON.stringify({ rating: "up", question: "q", answer: "a", image: imageId }),
    });
    expect(foreign.status).toBe(404);
  });
});
