/**
 * Request checks of POST /v1/embeddings that answer before any embedding: the pack here knows only its
 * id and dimension and fails on any other use (503 `not_ready`), so a 4xx proves the request was refused
 * up front. Behaviour with the real store and pack is in test/http/embeddings.int.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  encodeBase64Float32,
  MAX_EMBEDDING_IMAGES,
  MAX_EMBEDDING_INPUTS,
  MAX_EMBEDDING_TEXT_LENGTH,
  MAX_EMBEDDING_TOTAL_CHARACTERS,
} from "../../../src/http/routes/embeddings.ts";
import type { ModelPack } from "../../../src/inference/index.ts";
import { unavailableModelPack } from "../../../src/inference/unavailable-model-pack.ts";
import { makeTestApp } from "../../helpers/app.ts";
import { type AuthTestApp, bearer, errorOf, makeAuthTestApp } from "../auth-fixtures.ts";

const MODEL = "test-pack@1";
const DIMENSION = 8;

/** A pack that answers its id, dimension and text batch size and is otherwise not ready. */
function idOnlyPack(): ModelPack {
  const unavailable = unavailableModelPack("not used by these tests");
  return new Proxy(unavailable, {
    get(target, property, receiver) {
      if (property === "modelId") return MODEL;
      if (property === "dimension") return DIMENSION;
      if (property === "textEmbedder") return { batchSize: 4 };
      return Reflect.get(target, property, receiver);
    },
  });
}

function makeApp() {
  return makeTestApp({ env: { LOUPE_MAX_IMAGE_BYTES: "3000" }, models: idOnlyPack() });
}

async function call(body: unknown): Promise<{ status: number; code?: string; message?: string }> {
  const response = await makeApp().request("/v1/embeddings", {
    method: "POST",
    body: typeof body === "string" ? body : JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  const json = (await response.json()) as { error?: { code: string; message: string } };
  return { status: response.status, code: json.error?.code, message: json.error?.message };
}

const image = (url: string) => ({ type: "image_url", image_url: { url } });
const PNG_DATA_URL = `data:image/png;base64,${Buffer.from("not really a png").toString("base64")}`;

describe("POST /v1/embeddings refuses bad requests before embedding", () => {
  it.each<[string, unknown, RegExp]>([
    ["malformed JSON", "{", /not valid JSON/],
    ["no input", { model: MODEL }, /input: required: a string, or/],
    ["no model", { input: "a" }, /model is required: the model pack's id/],
    ["another model", { model: "text-embedding-3-small", input: "a" }, /embedding model is "test-pack@1"/],
    [
      "token ids",
      { model: MODEL, input: [1, 2, 3] },
      /input: token ids are not accepted: Loupe embeds text and images/,
    ],
    ["lists of token ids", { model: MODEL, input: [[1, 2], [3]] }, /token ids/],
    ["one token id", { model: MODEL, input: 7 }, /token ids/],
    ["an empty list", { model: MODEL, input: [] }, /input: an empty list; send 1–2048 items/],
    [
      "too many items",
      { model: MODEL, input: Array.from({ length: MAX_EMBEDDING_INPUTS + 1 }, () => "a") },
      /input: 2049 items; the most is 2048/,
    ],
    ["an empty text", { model: MODEL, input: "  " }, /input: (the )?text is empty; send text to embed/],
    ["an empty text in a list", { model: MODEL, input: ["a", ""] }, /input\[1\]: text is empty/],
    [
      "a text over the limit",
      { model: MODEL, input: ["a", "b".repeat(MAX_EMBEDDING_TEXT_LENGTH + 1)] },
      /input\[1\]: text is over 8192 characters/,
    ],
    [
      "a number among texts",
      { model: MODEL, input: ["a", 3] },
      /input: item 1 is a number; each item is a string, or/,
    ],
    [
      "a file part",
      { model: MODEL, input: ["a", { type: "file" }] },
      /item 1 has type "file"; Loupe embeds text and images/,
    ],
    [
      "an image part without url",
      { model: MODEL, input: [{ type: "image_url", image_url: {} }] },
      /item 0 has no image_url\.url/,
    ],
    ["a bare image part", { model: MODEL, input: image(PNG_DATA_URL) }, /put an image_url part in a list/],
    [
      "encoding_format binary",
      { model: MODEL, input: "a", encoding_format: "binary" },
      /encoding_format "binary" is not supported; use "float" or "base64"/,
    ],
    [
      "other dimensions",
      { model: MODEL, input: "a", dimensions: 4 },
      /dimensions 4 is not available: test-pack@1 makes 8-dimensional vectors/,
    ],
    ["fractional dimensions", { model: MODEL, input: "a", dimensions: 8.5 }, /dimensions must be an integer/],
    [
      "more text than a request takes",
      { model: MODEL, input: Array.from({ length: 130 }, () => "word ".repeat(1600)) },
      new RegExp(
        `input holds 1040000 characters of text; the most is ${MAX_EMBEDDING_TOTAL_CHARACTERS} per request`,
      ),
    ],
    [
      "too many images",
      { model: MODEL, input: Array.from({ length: MAX_EMBEDDING_IMAGES + 1 }, () => image("img_abc")) },
      /17 images; the most is 16 per request/,
    ],
    [
      "an image that is not base64",
      { model: MODEL, input: ["a", image("not an image!")] },
      /input\[1\]\.image_url\.url is not valid base64/,
    ],
    [
      "an image over LOUPE_MAX_IMAGE_BYTES",
      { model: MODEL, input: [image(`data:image/png;base64,${Buffer.alloc(3500).toString("base64")}`)] },
      /the limit is 3000 bytes/,
    ],
    [
      "a data URL without base64",
      { model: MODEL, input: [image("data:image/png,abc")] },
      /without base64 encoding/,
    ],
  ])("%s → 400", async (_name, body, message) => {
    const result = await call(body);
    expect(result.status, result.message).toBe(400);
    expect(result.code).toBe("invalid_request");
    expect(result.message).toMatch(message);
  });

  it("a URL the fetcher refuses (cloud metadata) → 400 before anything is embedded", async () => {
    const result = await call({ model: MODEL, input: [image("http://169.254.169.254/latest/meta-data")] });
    expect(result.status, result.message).toBe(400);
    expect(result.message).toMatch(/169\.254\.169\.254/);
  });

  it("a well-formed request, with unknown fields and `user`, reaches the pack (here: not ready → 503)", async () => {
    const result = await call({
      model: MODEL,
      input: ["a red circle", image(PNG_DATA_URL)],
      encoding_format: "base64",
      dimensions: DIMENSION,
      user: "someone",
      vendor_extra: { anything: true },
    });
    expect(result.status, result.message).toBe(503);
    expect(result.code).toBe("not_ready");
  });
});

describe("POST /v1/embeddings and API keys", () => {
  let auth: AuthTestApp;
  const body = JSON.stringify({ model: MODEL, input: "a red circle" });

  beforeAll(async () => {
    auth = await makeAuthTestApp({ models: idOnlyPack() });
  });
  afterAll(async () => {
    await auth.dispose();
  });

  const post = (headers: Record<string, string>) =>
    auth.app.request("/v1/embeddings", {
      method: "POST",
      body,
      headers: { "content-type": "application/json", ...headers },
    });

  it("needs a key once keys exist, and the read scope", async () => {
    const { key: ingestKey } = await auth.createKey({ tenant: "acme", scopes: ["ingest"] });
    const { key: readKey } = await auth.createKey({ tenant: "acme", scopes: ["read"] });
    expect((await post({})).status).toBe(401);
    const refused = await post(bearer(ingestKey));
    expect(refused.status).toBe(403);
    expect((await errorOf(refused)).message).toMatch(/lacks the `read` scope/);
    // Past the gates: the stand-in pack is not ready.
    expect((await post(bearer(readKey))).status).toBe(503);
  });

  it("refuses publishable keys, which may only chat, read media and list models", async () => {
    const { key } = await auth.createKey({
      tenant: "acme",
      publishable: true,
      origins: ["https://app.example.com"],
    });
    const refused = await post(bearer(key, { origin: "https://app.example.com" }));
    expect(refused.status).toBe(403);
    expect((await errorOf(refused)).message).toMatch(/publishable key may only chat/);
  });
});

describe("encodeBase64Float32", () => {
  it("writes little-endian float32, as OpenAI's base64 encoding", () => {
    const vector = new Float32Array([1, -0.5, 0.1, 3.4e38]);
    const bytes = Buffer.from(encodeBase64Float32(vector), "base64");
    expect(bytes.length).toBe(16);
    expect(bytes.readFloatLE(0)).toBe(1);
    expect(bytes.readFloatLE(4)).toBe(-0.5);
    expect(bytes.readFloatLE(8)).toBe(Math.fround(0.1));
    expect([...bytes.subarray(0, 4)]).toEqual([0x00, 0x00, 0x80, 0x3f]);
    expect(new Float32Array(bytes.buffer, bytes.byteOffset, 4)).toEqual(vector);
  });
});
