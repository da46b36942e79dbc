/**
 * The cap on what one chat turn spends grounding (LOUPE_CHAT_GROUNDING_MAX_IMAGES,
 * LOUPE_CHAT_GROUNDING_BUDGET_MS), on a real Milvus Lite and the bundled pack: a corpus question checks
 * at most K retrieved images with the VQA head, and once the time budget is spent the images left (after
 * the first, which is always checked) are kept as unchecked evidence that the answer names as not
 * checked, never as verified.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { chatResponseSchema } from "../../src/http/routes/chat.ts";
import { createLoupeChain } from "../../src/rag/chain.ts";
import type { ChatResult } from "../../src/rag/types.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness } from "../ingest/harness.ts";

const TENANT = "default";
const QUESTION = "Is there an image with a red circle and a blue square?";

describe("the chat grounding cap", () => {
  let harness: IngestHarness;

  beforeAll(async () => {
    harness = await startIngestHarness({
      name: "groundcap",
      env: { LOUPE_CHAT_GROUNDING_MAX_IMAGES: "2", LOUPE_CHAT_GROUNDING_BUDGET_MS: "0" },
    });
    const images = await renderShapes({ count: 16, seed: 31 });
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      body: multipart({ files: images.map((bytes, index) => ({ name: `scene-${index}.jpg`, bytes })) }),
    });
    expect(response.status).toBe(200);
  }, 120_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  /** The chain over the harness's services with grounding settings of its own. */
  function chainWith(config: { chatGroundingMaxImages: number; chatGroundingBudgetMs: number }) {
    const { services } = harness;
    return createLoupeChain({
      ...services,
      logger: services.logger,
      config: { ...services.config, ...config },
    });
  }

  const checkedOf = (result: ChatResult) => result.evidence.filter((entry) => entry.match !== undefined);
  const uncheckedOf = (result: ChatResult) => result.evidence.filter((entry) => entry.unchecked === true);

  it("checks at most LOUPE_CHAT_GROUNDING_MAX_IMAGES retrieved images, where the default checks more", async () => {
    const capped = await harness.services.chain.invoke({ tenant: TENANT, question: QUESTION });
    expect(checkedOf(capped).length).toBeGreaterThan(0);
    expect(checkedOf(capped).length).toBeLessThanOrEqual(2);
    expect(uncheckedOf(capped)).toEqual([]);

    const uncapped = await chainWith({ chatGroundingMaxImages: 6, chatGroundingBudgetMs: 0 }).invoke({
      tenant: TENANT,
      question: QUESTION,
    });
    expect(checkedOf(uncapped).length).toBeGreaterThan(2);
  }, 60_000);

  it("once the time budget is spent, checks only the first image and says which were not checked", async () => {
    // 1 ms is spent by the time the images are encoded: the first image is checked all the same (an answer
    // always has verified evidence to cite), the others are not.
    const result = await chainWith({ chatGroundingMaxImages: 6, chatGroundingBudgetMs: 1 }).invoke({
      tenant: TENANT,
      question: QUESTION,
    });
    const unchecked = uncheckedOf(result);
    expect(checkedOf(result)).toHaveLength(1);
    expect(unchecked.length).toBeGreaterThan(0);
    for (const entry of unchecked) {
      expect(entry.findings).toEqual([]);
      expect(entry.match).toBeUndefined();
      expect(result.answer).toContain(entry.citation.id);
    }
    expect(result.answer).toMatch(/Not checked within this turn's grounding budget/);
    // The checked image is cited; nothing unchecked is.
    const cited = new Set(result.citations.map((citation) => citation.id));
    expect(cited.has(checkedOf(result)[0]?.citation.id ?? "")).toBe(true);
    for (const entry of unchecked) expect(cited.has(entry.citation.id)).toBe(false);
  }, 60_000);

  it("/v1/chat answers the unchecked images marked as such, as its document describes them", async () => {
    const app = createApp({
      ...harness.services,
      chain: chainWith({ chatGroundingMaxImages: 6, chatGroundingBudgetMs: 1 }),
    });
    const response = await app.request("/v1/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: QUESTION }),
    });
    expect(response.status).toBe(200);
    const body = chatResponseSchema.strict().parse(await response.json());
    const unchecked = body.evidence.filter((entry) => entry.unchecked === true);
    expect(unchecked.length).toBeGreaterThan(0);
    const cited = new Set(body.citations.map((citation) => citation.id));
    for (const entry of unchecked) expect(cited.has(entry.citation.id)).toBe(false);
  }, 60_000);

  it("within a generous budget checks as many images as without one", async () => {
    const result = await chainWith({ chatGroundingMaxImages: 6, chatGroundingBudgetMs: 60_000 }).invoke({
      tenant: TENANT,
      question: QUESTION,
    });
    expect(uncheckedOf(result)).toEqual([]);
    expect(checkedOf(result).length).toBeGreaterThan(2);
    expect(result.answer).not.toMatch(/Not checked/);
  }, 60_000);
});
