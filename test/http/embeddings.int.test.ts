/**
 * POST /v1/embeddings over real HTTP against Loupe's app (real Milvus Lite, the bundled pack), called
 * with the official `openai` client: text and images (data URL, stored item id, http(s) URL) embed to
 * unit vectors of the pack's dimension; the text vector is the one /v1/search embeds a text query into
 * (the search service's own call, and the scores /v1/search returns); float and base64 agree; usage
 * counts the tokenizer's tokens; item ids are read for the caller's tenant only.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HttpServer, startHttpServer } from "../../src/http/server.ts";
import { cosineSimilarity } from "../../src/inference/index.ts";
import {
  type IngestHarness,
  multipart,
  renderShapes,
  startIngestHarness,
  TENANT_HEADER,
} from "../ingest/harness.ts";

const TENANT = "alpha";
const TEXT = "a red circle";

function norm(vector: readonly number[]): number {
  return Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));
}

function dot(left: ArrayLike<number>, right: ArrayLike<number>): number {
  let sum = 0;
  for (let index = 0; index < left.length; index += 1) sum += (left[index] ?? 0) * (right[index] ?? 0);
  return sum;
}

const imagePart = (url: string) => ({ type: "image_url", image_url: { url } });

describe("POST /v1/embeddings with the official openai client", () => {
  let harness: IngestHarness;
  let server: HttpServer;
  let imageServer: http.Server;
  let imageServerUrl: string;
  let client: OpenAI;
  let model: string;
  let images: Buffer[];
  let ids: string[];
  let otherTenantId: string;

  /**
   * The extension's image items are not in the client's types; the client sends the body as given.
   * Without `encoding_format` the client asks for base64 and decodes it into numbers.
   */
  const embedMixed = (input: unknown[], extra: Record<string, unknown> = {}) =>
    client.embeddings.create({ model, input: input as string[], ...extra });

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "embeddings", env: { LOUPE_URL_ALLOW_HOSTS: "127.0.0.1" } });
    model = harness.models.modelId;
    images = await renderShapes({ count: 4, seed: 4242, size: 128 });
    const upload = async (tenant: string, files: Buffer[]) => {
      const response = await harness.app.request("/v1/images", {
        method: "POST",
        headers: { [TENANT_HEADER]: tenant },
        body: multipart({ files: files.map((bytes, index) => ({ name: `${tenant}-${index}.jpg`, bytes })) }),
      });
      const body = (await response.json()) as { items: Array<{ id: string }> };
      expect(response.status, JSON.stringify(body).slice(0, 300)).toBe(200);
      return body.items.map((item) => item.id);
    };
    ids = await upload(TENANT, images);
    [otherTenantId = ""] = await upload("beta", await renderShapes({ count: 1, seed: 99, size: 128 }));

    server = await startHttpServer({ fetch: harness.app.fetch, host: "127.0.0.1", port: 0 });
    imageServer = http.createServer((request, response) => {
      const index = Number(request.url?.slice(1).split(".")[0]);
      const bytes = images[index];
      if (bytes === undefined) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { "content-type": "image/jpeg", "content-length": bytes.length }).end(bytes);
    });
    await new Promise<void>((resolve) => imageServer.listen(0, "127.0.0.1", resolve));
    imageServerUrl = `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}`;
    client = new OpenAI({
      apiKey: "unused",
      baseURL: `${server.url}/v1`,
      maxRetries: 0,
      defaultHeaders: { [TENANT_HEADER]: TENANT },
    });
  }, 300_000);

  afterAll(async () => {
    await server?.close({ timeoutMs: 1000 });
    await new Promise<void>((resolve) => (imageServer ? imageServer.close(() => resolve()) : resolve()));
    await harness?.dispose();
  });

  it("embeds a text into a unit vector of the pack's dimension, with OpenAI's response shape", async () => {
    const response = await client.embeddings.create({ model, input: TEXT, encoding_format: "float" });
    expect(response.object).toBe("list");
    expect(response.model).toBe(model);
    expect(response.data).toHaveLength(1);
    const [first] = response.data;
    expect(first?.object).toBe("embedding");
    expect(first?.index).toBe(0);
    expect(first?.embedding).toHaveLength(harness.models.dimension);
    expect(norm(first?.embedding ?? [])).toBeCloseTo(1, 4);
    const tokens = harness.models.tokenizer.encode({ text: TEXT }).length;
    expect(tokens).toBeGreaterThan(2);
    expect(response.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
  });

  it("gives the vector /v1/search embeds the same text into", async () => {
    const response = await client.embeddings.create({ model, input: TEXT, encoding_format: "float" });
    const vector = response.data[0]?.embedding ?? [];
    // The search service's own call for a text query.
    const searched = await harness.services.search.embedText(TEXT);
    expect(cosineSimilarity(vector, searched)).toBeGreaterThanOrEqual(0.9999);

    // And the scores /v1/search answers: each image's score is its similarity to the query vector.
    const imageVectors = await embedMixed(ids.map(imagePart), { encoding_format: "float" });
    const search = await harness.app.request("/v1/search", {
      method: "POST",
      headers: { "content-type": "application/json", [TENANT_HEADER]: TENANT },
      body: JSON.stringify({ text: TEXT, mode: "dense", kinds: ["image"], topK: ids.length }),
    });
    const results = (await search.json()) as { items: Array<{ id: string; score: number }> };
    expect(results.items.map((item) => item.id).sort()).toEqual([...ids].sort());
    for (const item of results.items) {
      const imageVector = imageVectors.data[ids.indexOf(item.id)]?.embedding ?? [];
      expect(dot(vector, imageVector)).toBeCloseTo(item.score, 3);
    }
  });

  it("embeds images from a data URL, a stored item's id and an http(s) URL alike", async () => {
    const dataUrl = `data:image/jpeg;base64,${images[0]?.toString("base64")}`;
    const response = await embedMixed([
      imagePart(dataUrl),
      imagePart(ids[0] ?? ""),
      imagePart(`${imageServerUrl}/0.jpg`),
      imagePart(ids[1] ?? ""),
    ]);
    const vectors = response.data.map((entry) => entry.embedding);
    expect(response.data.map((entry) => entry.index)).toEqual([0, 1, 2, 3]);
    for (const vector of vectors) {
      expect(vector).toHaveLength(harness.models.dimension);
      expect(norm(vector)).toBeCloseTo(1, 4);
    }
    const [fromDataUrl = [], fromId = [], fromUrl = [], otherImage = []] = vectors;
    expect(cosineSimilarity(fromDataUrl, fromId)).toBeGreaterThanOrEqual(0.9999);
    expect(cosineSimilarity(fromUrl, fromId)).toBeGreaterThanOrEqual(0.9999);
    expect(cosineSimilarity(otherImage, fromId)).toBeLessThan(0.999);
    // The same call search makes for a query image.
    const searched = await harness.services.search.embedImage({
      tenant: TENANT,
      image: { id: ids[0] ?? "" },
    });
    expect(cosineSimilarity(fromId, searched)).toBeGreaterThanOrEqual(0.9999);
    // Images count no tokens.
    expect(response.usage).toEqual({ prompt_tokens: 0, total_tokens: 0 });
  });

  it("keeps the order of a mixed list, each item as it embeds alone", async () => {
    const texts = ["a blue square", "two green triangles"];
    const mixed = await embedMixed([texts[0], imagePart(ids[2] ?? ""), texts[1]], {
      encoding_format: "float",
    });
    expect(mixed.data.map((entry) => entry.index)).toEqual([0, 1, 2]);
    const alone = await Promise.all([
      client.embeddings.create({ model, input: texts[0] ?? "", encoding_format: "float" }),
      embedMixed([imagePart(ids[2] ?? "")], { encoding_format: "float" }),
      client.embeddings.create({ model, input: texts[1] ?? "", encoding_format: "float" }),
    ]);
    alone.forEach((response, index) => {
      expect(
        cosineSimilarity(mixed.data[index]?.embedding ?? [], response.data[0]?.embedding ?? []),
      ).toBeGreaterThanOrEqual(0.9999);
    });
    const tokens = texts.reduce((sum, text) => sum + harness.models.tokenizer.encode({ text }).length, 0);
    expect(mixed.usage.prompt_tokens).toBe(tokens);
    // Each position holds its own item's vector, not a neighbour's.
    expect(cosineSimilarity(mixed.data[0]?.embedding ?? [], mixed.data[2]?.embedding ?? [])).toBeLessThan(
      0.999,
    );
  });

  it("answers base64 (little-endian float32) that decodes to the float vectors", async () => {
    const input = [TEXT, "a yellow star"];
    const floats = await client.embeddings.create({ model, input, encoding_format: "float" });
    // Asked for explicitly, the client hands the base64 string through untouched.
    const raw = await client.embeddings.create({ model, input, encoding_format: "base64" });
    // Not asked for, the client requests base64 and decodes it itself.
    const decoded = await client.embeddings.create({ model, input });
    raw.data.forEach((entry, index) => {
      expect(typeof entry.embedding).toBe("string");
      const bytes = Buffer.from(entry.embedding as unknown as string, "base64");
      expect(bytes.length).toBe(harness.models.dimension * 4);
      const vector = Array.from({ length: harness.models.dimension }, (_, at) => bytes.readFloatLE(at * 4));
      expect(vector).toEqual(floats.data[index]?.embedding.map((value) => Math.fround(value)));
      expect(decoded.data[index]?.embedding).toEqual(vector);
    });
  });

  it("accepts dimensions equal to the pack's and `user`, and refuses others with a clear message", async () => {
    const ok = await client.embeddings.create({
      model,
      input: TEXT,
      dimensions: harness.models.dimension,
      user: "someone",
    });
    expect(ok.data[0]?.embedding).toHaveLength(harness.models.dimension);

    const wrongDimensions = client.embeddings.create({ model, input: TEXT, dimensions: 3 });
    await expect(wrongDimensions).rejects.toMatchObject({ status: 400 });
    await expect(wrongDimensions).rejects.toThrow(/dimensions 3 is not available/);

    const wrongModel = client.embeddings.create({ model: "text-embedding-3-small", input: TEXT });
    await expect(wrongModel).rejects.toMatchObject({ status: 400 });
    await expect(wrongModel).rejects.toThrow(new RegExp(`the embedding model is "${model}"`));

    const tokens = client.embeddings.create({ model, input: [[1, 2, 3]] });
    await expect(tokens).rejects.toThrow(/token ids are not accepted/);
  });

  it("reads stored items for the caller's tenant only, and names bad images", async () => {
    const foreign = embedMixed([imagePart(otherTenantId)]);
    await expect(foreign).rejects.toMatchObject({ status: 404 });
    const missing = embedMixed([TEXT, imagePart(`${imageServerUrl}/9.jpg`)]);
    await expect(missing).rejects.toMatchObject({ status: 422 });
    const notAnImage = embedMixed([
      imagePart(`data:image/png;base64,${Buffer.from("plain text, not an image").toString("base64")}`),
    ]);
    await expect(notAnImage).rejects.toMatchObject({ status: 415 });
  });
});
