/**
 * Tenant isolation of the chat endpoints over the app (real Milvus Lite, the bundled pack): a tenant's
 * chat never retrieves, cites or grounds on another tenant's items, and attaching another tenant's
 * item id is answered as if it did not exist.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatResult } from "../../src/rag/types.ts";
import {
  type IngestHarness,
  multipart,
  renderShapes,
  startIngestHarness,
  TENANT_HEADER,
} from "../ingest/harness.ts";

describe("chat keeps tenants apart", () => {
  let harness: IngestHarness;
  let alphaIds: string[] = [];
  let betaIds: string[] = [];

  const chat = (tenant: string, body: unknown) =>
    harness.app.request("/v1/chat", {
      method: "POST",
      headers: { "content-type": "application/json", [TENANT_HEADER]: tenant },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "chattenants" });
    const upload = async (tenant: string, seed: number) => {
      const images = await renderShapes({ count: 6, seed, size: 128 });
      const response = await harness.app.request("/v1/images", {
        method: "POST",
        headers: { [TENANT_HEADER]: tenant },
        body: multipart({ files: images.map((bytes, index) => ({ name: `${tenant}-${index}.jpg`, bytes })) }),
      });
      expect(response.status).toBe(200);
      return ((await response.json()) as { items: Array<{ id: string }> }).items.map((item) => item.id);
    };
    alphaIds = await upload("alpha", 101);
    betaIds = await upload("beta", 202);
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  it("retrieves and cites only the caller's items", async () => {
    for (const question of [
      "Is there an image with a red circle?",
      "show me a blue square",
      "How many stars are there?",
    ]) {
      const response = await chat("beta", { question });
      const result = (await response.json()) as ChatResult;
      expect(response.status, JSON.stringify(result).slice(0, 300)).toBe(200);
      const seen = [
        ...result.evidence.map((entry) => entry.citation.id),
        ...result.citations.map((citation) => citation.id),
      ];
      expect(seen.length).toBeGreaterThan(0);
      for (const id of seen) expect(alphaIds, `${question}: ${id}`).not.toContain(id);
      expect(seen.some((id) => betaIds.includes(id))).toBe(true);
    }
  }, 120_000);

  it("answers another tenant's item id attached to a question as not found", async () => {
    const foreign = alphaIds[0] as string;
    const response = await chat("beta", { question: "What color is the circle?", images: [foreign] });
    expect(response.status).toBe(404);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.message).toContain(foreign);
    const own = await chat("alpha", { question: "What color is the circle?", images: [foreign] });
    expect(own.status).toBe(200);
    expect(((await own.json()) as ChatResult).citations.map((citation) => citation.id)).toContain(foreign);
  }, 60_000);
});
