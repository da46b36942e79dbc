/**
 * Recommendations over a real Milvus Lite and the shipped pack: inputs never returned, negatives push
 * away, the diversity ceiling, events kept across a restart, tenants kept apart, a user's deletion, and
 * the errors callers get.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { createLoupeClient } from "../../src/client/index.ts";
import { createLogger } from "../../src/logger.ts";
import { createFileEventStore, dotProduct, maxCosineFor } from "../../src/recommend/index.ts";
import { assembleServices } from "../../src/services.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../../src/synth/index.ts";
import { type IngestHarness, multipart, startIngestHarness, TENANT_HEADER } from "../ingest/harness.ts";

interface ResultItem {
  id: string;
  score: number;
}

describe("recommendations (real Lite, shipped pack)", () => {
  let harness: IngestHarness;
  /** Item id → its embedding (of the bytes sent, as the server embeds them again). */
  const vectors = new Map<string, Float32Array>();
  /** The ids of five renderings of one scene, differing only in noise (cosine ≈ 0.99). */
  let copies: string[] = [];
  let distinct: string[] = [];

  const call = async (tenant: string, url: string, init: { method?: string; body?: unknown } = {}) => {
    const response = await harness.app.request(url, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers: {
        [TENANT_HEADER]: tenant,
        ...(init.body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const recommend = async (tenant: string, body: Record<string, unknown>) => {
    const { status, body: answer } = await call(tenant, "/v1/recommend", { body });
    expect(status, JSON.stringify(answer)).toBe(200);
    return answer.items as ResultItem[];
  };

  beforeAll(async () => {
    harness = await startIngestHarness({
      name: "recommend",
      env: { LOUPE_OCR: "off" },
    });
    const copyScene = sampleScene(createRng(deriveSeed(5, "copy")));
    const copyBytes = await Promise.all(
      [0, 1, 2, 3, 4].map(
        async (index) =>
          (await renderScene(copyScene, { size: 128, format: "jpeg", seed: 100 + index })).data,
      ),
    );
    const distinctBytes = await Promise.all(
      Array.from({ length: 16 }, async (_value, index) => {
        const scene = sampleScene(createRng(deriveSeed(5, "scene", index)));
        return (await renderScene(scene, { size: 128, format: "jpeg", seed: index })).data;
      }),
    );
    const all = [...copyBytes, ...distinctBytes];
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      headers: { [TENANT_HEADER]: "acme" },
      body: multipart({ files: all.map((bytes, index) => ({ name: `i${index}.jpg`, bytes })) }),
    });
    expect(response.status).toBe(200);
    const ids = ((await response.json()) as { items: Array<{ id: string }> }).items.map(({ id }) => id);
    expect(new Set(ids).size).toBe(all.length);
    const embedded = await harness.models.imageEmbedder.embed({ images: all });
    for (const [index, id] of ids.entries()) vectors.set(id, embedded[index] as Float32Array);
    copies = ids.slice(0, 5);
    distinct = ids.slice(5);
  }, 300_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const cosine = (left: string, right: string) =>
    dotProduct(vectors.get(left) as Float32Array, vectors.get(right) as Float32Array);

  it("never returns the inputs, and scores by cosine to the query", async () => {
    const positive = [copies[0] as string, distinct[0] as string];
    const negative = [distinct[1] as string];
    const items = await recommend("acme", { positive, negative, topK: 100 });
    expect(items).toHaveLength(21 - 3);
    for (const id of [...positive, ...negative]) expect(items.map((item) => item.id)).not.toContain(id);
    const scores = items.map((item) => item.score);
    expect([...scores].sort((left, right) => right - left)).toEqual(scores);
  });

  it("ranks near the positive, and a negative pushes the results away from it", async () => {
    const positive = [distinct[2] as string];
    const near = await recommend("acme", { positive, topK: 5 });
    // The near-copies of a positive come first.
    const fromCopy = await recommend("acme", { positive: [copies[0] as string], topK: 4 });
    expect(fromCopy.map((item) => item.id).sort()).toEqual(copies.slice(1).sort());

    const negative = near[0]?.id as string;
    const pushed = await recommend("acme", { positive, negative: [negative], topK: 5 });
    const meanCosine = (items: ResultItem[]) =>
      items.reduce((sum, item) => sum + cosine(item.id, negative), 0) / items.length;
    expect(pushed.map((item) => item.id)).not.toContain(negative);
    expect(meanCosine(pushed)).toBeLessThan(meanCosine(near.slice(1)));
  });

  it("with diversity, no two results are closer than the documented cosine", async () => {
    const positive = [distinct[3] as string];
    const plain = await recommend("acme", { positive: [copies[0] as string], topK: 10 });
    const pairsOver = (items: ResultItem[], ceiling: number) => {
      let count = 0;
      items.forEach((left, index) => {
        for (const right of items.slice(index + 1))
          if (cosine(left.id, right.id) > ceiling + 1e-4) count += 1;
      });
      return count;
    };
    const diversity = 0.5;
    const ceiling = maxCosineFor(diversity);
    expect(pairsOver(plain, ceiling)).toBeGreaterThan(0);
    const spread = await recommend("acme", { positive: [copies[0] as string], topK: 10, diversity });
    expect(spread).toHaveLength(10);
    expect(pairsOver(spread, ceiling)).toBe(0);
    expect(spread.filter((item) => copies.includes(item.id)).length).toBeLessThanOrEqual(1);
    const other = await recommend("acme", { positive, topK: 10, diversity: 1 });
    expect(pairsOver(other, maxCosineFor(1))).toBe(0);
  });

  it("records events, ranks a user's profile without what they saw, keeps it across a restart, per tenant", async () => {
    const user = "user-1";
    for (const [item, type] of [
      [copies[0], "like"],
      [distinct[4], "view"],
      [distinct[5], "dislike"],
    ] as const) {
      const { status, body } = await call("acme", "/v1/events", { body: { user, item, type } });
      expect(status, JSON.stringify(body)).toBe(201);
      expect((body.event as Record<string, unknown>).type).toBe(type);
    }
    const at = "2026-01-01T00:00:00Z";
    const dated = await call("acme", "/v1/events", { body: { user, item: copies[1], type: "select", at } });
    expect((dated.body.event as Record<string, unknown>).at).toBe("2026-01-01T00:00:00.000Z");

    const first = await call("acme", `/v1/users/${user}/recommendations?topK=5`);
    expect(first.status).toBe(200);
    expect(first.body.profile).toEqual({ events: 4, positives: 3, negatives: 1 });
    const ids = (first.body.items as ResultItem[]).map((item) => item.id);
    expect(ids).toHaveLength(5);
    for (const seen of [copies[0], copies[1], distinct[4], distinct[5]]) expect(ids).not.toContain(seen);
    expect(ids.slice(0, 3).sort()).toEqual(copies.slice(2).sort());

    // Another tenant sees no such user and cannot name acme's items.
    const elsewhere = await call("other", `/v1/users/${user}/recommendations`);
    expect(elsewhere.body).toEqual({ items: [], profile: { events: 0, positives: 0, negatives: 0 } });
    const foreign = await call("other", "/v1/events", { body: { user, item: copies[0], type: "like" } });
    expect(foreign.status).toBe(404);
    expect((foreign.body.error as Record<string, unknown>).code).toBe("not_found");
    const foreignRecommend = await call("other", "/v1/recommend", { body: { positive: [copies[0]] } });
    expect(foreignRecommend.status).toBe(404);

    // A restart: new services over the same data folder.
    await harness.services.eventStore.close();
    const restarted = assembleServices({
      config: harness.config,
      logger: createLogger({ level: "silent" }),
      store: harness.store,
      models: harness.models,
      blobs: harness.blobs,
      jobs: harness.jobs,
      resolveTenant: (c) => c.req.header(TENANT_HEADER) ?? harness.config.defaultTenant,
    });
    const app = createApp(restarted);
    const again = await app.request(`/v1/users/${user}/recommendations?topK=5`, {
      headers: { [TENANT_HEADER]: "acme" },
    });
    const body = (await again.json()) as { items: ResultItem[]; profile: unknown };
    expect(body.profile).toEqual({ events: 4, positives: 3, negatives: 1 });
    expect(body.items.map((item) => item.id)).toEqual(ids);
  });

  it("deletes all of a user's events, from disk and memory", async () => {
    const user = "user-2";
    for (const item of distinct.slice(6, 9)) {
      expect((await call("acme", "/v1/events", { body: { user, item, type: "like" } })).status).toBe(201);
    }
    expect(
      (await call("other-tenant", "/v1/events", { body: { user, item: distinct[6], type: "like" } })).status,
    ).toBe(404);
    const eventsDir = path.join(harness.dataDir, "events");
    const fileOf = `u_${Buffer.from(user).toString("base64url")}.jsonl`;
    expect((await readdir(eventsDir, { recursive: true })).some((name) => name.endsWith(fileOf))).toBe(true);

    const deleted = await call("acme", `/v1/users/${user}`, { method: "DELETE" });
    expect(deleted).toEqual({ status: 200, body: { deleted: 3 } });
    expect((await readdir(eventsDir, { recursive: true })).some((name) => name.endsWith(fileOf))).toBe(false);
    const after = await call("acme", `/v1/users/${user}/recommendations`);
    expect(after.body.profile).toEqual({ events: 0, positives: 0, negatives: 0 });
    // A fresh store over the same folder finds nothing either.
    expect(await createFileEventStore({ dir: eventsDir }).list({ tenant: "acme", user })).toEqual([]);
    // The other user is untouched.
    expect(
      ((await call("acme", "/v1/users/user-1/recommendations")).body.profile as { events: number }).events,
    ).toBe(4);
  });

  it("finds the object several liked images share, among others (regions)", async () => {
    // Six images with a large red star among other objects, ten with neither stars nor red.
    const withStar = await Promise.all(
      Array.from({ length: 6 }, async (_value, index) => {
        const scene = sampleScene(createRng(deriveSeed(11, "star", index)), {
          objects: [{ shape: "star", color: "red", size: "large" }, {}, {}],
          shapes: ["circle", "square", "hexagon"],
          colors: ["blue", "green", "yellow"],
        });
        return (await renderScene(scene, { size: 128, format: "jpeg", seed: index })).data;
      }),
    );
    const without = await Promise.all(
      Array.from({ length: 10 }, async (_value, index) => {
        const scene = sampleScene(createRng(deriveSeed(11, "plain", index)), {
          objectCount: 3,
          shapes: ["circle", "square", "hexagon"],
          colors: ["blue", "green", "yellow"],
        });
        return (await renderScene(scene, { size: 128, format: "jpeg", seed: 50 + index })).data;
      }),
    );
    const all = [...withStar, ...without];
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      headers: { [TENANT_HEADER]: "stars" },
      body: multipart({ files: all.map((bytes, index) => ({ name: `s${index}.jpg`, bytes })) }),
    });
    expect(response.status).toBe(200);
    const ids = ((await response.json()) as { items: Array<{ id: string }> }).items.map(({ id }) => id);
    const stars = ids.slice(0, 6);
    expect(await harness.store.count({ kind: "region", tenant: "stars" })).toBeGreaterThanOrEqual(
      all.length * 2,
    );
    for (const item of stars.slice(0, 3)) {
      expect(
        (await call("stars", "/v1/events", { body: { user: "star-fan", item, type: "like" } })).status,
      ).toBe(201);
    }
    const { body } = await call("stars", "/v1/users/star-fan/recommendations?topK=3");
    expect((body.items as ResultItem[]).map((item) => item.id).sort()).toEqual(stars.slice(3).sort());
    // The same with a filter every item passes: the region side then re-scores what the image side found.
    const filtered = await recommend("stars", {
      positive: stars.slice(0, 3),
      topK: 3,
      filter: [{ field: "source", op: "eq", value: "upload" }],
    });
    expect(filtered.map((item) => item.id).sort()).toEqual(stars.slice(3).sort());
  });

  it("is reachable through the client", async () => {
    const client = createLoupeClient({
      request: (url, init) => harness.app.request(url, init),
      headers: { [TENANT_HEADER]: "acme" },
    });
    const items = await client.recommend({ positive: [copies[0] as string], topK: 4 });
    expect(items.map((item) => item.id).sort()).toEqual(copies.slice(1).sort());
    const event = await client.recordEvent({ user: "client-user", item: copies[0] as string, type: "like" });
    expect(event).toMatchObject({ user: "client-user", item: copies[0], type: "like" });
    const forUser = await client.userRecommendations("client-user", {
      topK: 3,
      kinds: ["image"],
      diversity: 0,
    });
    expect(forUser.profile).toEqual({ events: 1, positives: 1, negatives: 0 });
    expect(forUser.items).toHaveLength(3);
    for (const item of forUser.items) expect(copies.slice(1)).toContain(item.id);
    expect(await client.deleteUser("client-user")).toEqual({ deleted: 1 });
    await expect(
      client.recordEvent({ user: "client-user", item: "img_missing", type: "like" }),
    ).rejects.toMatchObject({
      status: 404,
    });
  });

  it("refuses bad requests with clear 4xx errors", async () => {
    const expectError = async (
      request: Promise<{ status: number; body: Record<string, unknown> }>,
      status: number,
      message: RegExp,
    ) => {
      const { status: got, body } = await request;
      expect(got, JSON.stringify(body)).toBe(status);
      expect((body.error as { message: string }).message).toMatch(message);
    };
    const item = distinct[0] as string;
    await expectError(
      call("acme", "/v1/events", { body: { user: "u", item, type: "love" } }),
      400,
      /unknown event type "love".*view, like, dislike, select/,
    );
    await expectError(
      call("acme", "/v1/events", { body: { user: "a/b", item, type: "like" } }),
      400,
      /user id/,
    );
    await expectError(
      call("acme", "/v1/events", { body: { user: "u", item, type: "like", at: "yesterday" } }),
      400,
      /ISO 8601/,
    );
    await expectError(
      call("acme", "/v1/events", { body: { user: "u", item, type: "like", at: "2999-01-01T00:00:00Z" } }),
      400,
      /clock skew/,
    );
    await expectError(
      call("acme", "/v1/events", { body: { user: "u", item: "img_nope", type: "like" } }),
      404,
      /No item/,
    );
    await expectError(call("acme", "/v1/recommend", { body: { positive: [] } }), 400, /at least one item id/);
    await expectError(call("acme", "/v1/recommend", { body: {} }), 400, /positive/);
    await expectError(
      call("acme", "/v1/recommend", {
        body: { positive: Array.from({ length: 51 }, (_v, index) => `img_${index}`) },
      }),
      400,
      /at most 50/,
    );
    await expectError(
      call("acme", "/v1/recommend", { body: { positive: [item], topK: 0 } }),
      400,
      /topK must be an integer from 1 to 100/,
    );
    await expectError(call("acme", "/v1/recommend", { body: { positive: [item], topK: 101 } }), 400, /topK/);
    await expectError(
      call("acme", "/v1/recommend", { body: { positive: [item], diversity: 2 } }),
      400,
      /diversity/,
    );
    await expectError(
      call("acme", "/v1/recommend", { body: { positive: [item], kinds: ["region"] } }),
      400,
      /unknown kind/,
    );
    await expectError(
      call("acme", "/v1/recommend", { body: { positive: [item], negative: [item] } }),
      400,
      /both positive and negative/,
    );
    await expectError(
      call("acme", "/v1/recommend", { body: { positive: ["vid_1"] } }),
      400,
      /not an item id/,
    );
    await expectError(
      call("acme", "/v1/recommend", {
        body: { positive: [item], filter: [{ field: "nope", op: "eq", value: 1 }] },
      }),
      400,
      /nope/,
    );
    await expectError(call("acme", "/v1/users/u/recommendations?topK=abc"), 400, /topK/);
    await expectError(call("acme", "/v1/users/u/recommendations?filter=%7Bnot"), 400, /filter must be JSON/);
    await expectError(call("acme", "/v1/users/u/recommendations?kinds=region"), 400, /Unknown kind/);
  });
});
