/**
 * Request checks of the search, similar, classify and triples routes that answer before any embedding
 * or store call: the store and the model pack here fail on any use, so a 4xx proves the request was
 * refused up front. Behaviour with the real store and pack is in test/search/search.int.test.ts.
 */
import { describe, expect, it } from "vitest";
import { makeTestApp } from "../../helpers/app.ts";

function makeApp() {
  return makeTestApp({
    env: { LOUPE_MAX_IMAGE_BYTES: "3000", LOUPE_MAX_UPLOAD_BYTES: "20000", LOUPE_MAX_ITEMS_PER_REQUEST: "3" },
  });
}

async function call(
  url: string,
  body: string | FormData,
  /** null: let the body (FormData) set it. */
  contentType: string | null = "application/json",
): Promise<{ status: number; code?: string; message?: string }> {
  const response = await makeApp().request(url, {
    method: "POST",
    body,
    headers: contentType === null ? {} : { "content-type": contentType },
  });
  const json = (await response.json()) as { error?: { code: string; message: string } };
  return { status: response.status, code: json.error?.code, message: json.error?.message };
}

describe("POST /v1/search refuses bad requests before embedding", () => {
  it.each([
    ["malformed JSON", "{", /not valid JSON/],
    ["a JSON array", "[]", /must be a JSON object/],
    ["topK 0", '{"text":"a","topK":0}', /topK must be an integer from 1 to 100/],
    ["a string topK", '{"text":"a","topK":"5"}', /topK must be an integer from 1 to 100/],
    ["an unknown kind", '{"text":"a","kinds":["images"]}', /unknown kind "images"; allowed kinds/],
    ["a filter string", '{"text":"a","filter":"id == \\"x\\""}', /expression strings are not accepted/],
    ["a tenant filter", '{"text":"a","filter":[{"field":"tenant","op":"eq","value":"b"}]}', /not filterable/],
    [
      "a metadata key breakout",
      '{"text":"a","filter":[{"field":"metadata.a\\"]","op":"eq","value":1}]}',
      /not filterable/,
    ],
    ["no query", "{}", /needs a text, an image, or both/],
    ["a text over 1000 characters", JSON.stringify({ text: "a".repeat(1001) }), /text/],
    ["an image URL", '{"image":"http://169.254.169.254/latest"}', /does not fetch/],
  ])("%s → 400", async (_name, body, message) => {
    const result = await call("/v1/search", body);
    expect(result.status).toBe(400);
    expect(result.code).toBe("invalid_request");
    expect(result.message).toMatch(message);
  });

  it("an unsupported content type → 400 naming the accepted ones", async () => {
    const result = await call("/v1/search", "text=a", "text/plain");
    expect(result.status).toBe(400);
    expect(result.message).toMatch(/application\/json or multipart\/form-data/);
  });

  it("no body and no content type → 400; bytes without a content type → 400", async () => {
    const app = makeApp();
    const empty = await app.request("/v1/search", { method: "POST" });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: { message: string } }).error.message).toMatch(
      /Unsupported content type "\(none\)"; send application\/json or multipart\/form-data/,
    );
    const bytes = await app.request("/v1/search", {
      method: "POST",
      body: new TextEncoder().encode('{"text":"a"}'),
    });
    expect(bytes.status).toBe(400);
  });

  it("an inline image over LOUPE_MAX_IMAGE_BYTES → 400 with the limit", async () => {
    const result = await call("/v1/search", JSON.stringify({ image: Buffer.alloc(3500).toString("base64") }));
    expect(result.status).toBe(400);
    expect(result.message).toMatch(/the limit is 3000 bytes/);
  });

  it("an uploaded image over the limit → 413", async () => {
    const form = new FormData();
    form.set("image", new Blob([new Uint8Array(3500)]), "big.png");
    const result = await call("/v1/search", form, null);
    expect(result.status, result.message).toBe(413);
    expect(result.code).toBe("payload_too_large");
  });

  it("a body over the query limit → 413 before it is read", async () => {
    const result = await call("/v1/search", JSON.stringify({ text: "a", pad: "x".repeat(80_000) }));
    expect(result.status).toBe(413);
    expect(result.message).toMatch(/LOUPE_MAX_IMAGE_BYTES/);
  });

  it("a well-formed search reaches the pack (here: not ready → 503)", async () => {
    const result = await call("/v1/search", '{"text":"a red circle"}');
    expect(result.status).toBe(503);
    expect(result.code).toBe("not_ready");
  });
});

describe("POST /v1/similar/{id}, /v1/classify, /v1/triples refuse bad requests", () => {
  it("similar: no body at all means the defaults", async () => {
    const response = await makeApp().request("/v1/similar/vid_00", { method: "POST" });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(
      /not an item id/,
    );
  });

  it("similar: malformed JSON, bad options and non-ids → 400", async () => {
    expect((await call("/v1/similar/img_00", "{")).message).toMatch(/not valid JSON/);
    expect((await call("/v1/similar/img_00", '{"topK":101}')).message).toMatch(/from 1 to 100/);
    const notAnId = await call("/v1/similar/vid_00", "");
    expect(notAnId.status).toBe(400);
    expect(notAnId.message).toMatch(/not an item id; ids start with img_, seg_ or tri_/);
  });

  it("classify: no image, too many labels, a template without {label}, neither labels nor autoTag → 400", async () => {
    expect((await call("/v1/classify", '{"labels":["red"]}')).message).toMatch(/classify needs an image/);
    const labels = JSON.stringify({
      image: "img_00",
      labels: Array.from({ length: 101 }, (_, i) => `l${i}`),
    });
    expect((await call("/v1/classify", labels)).status).toBe(400);
    expect((await call("/v1/classify", '{"image":"img_00","labels":["a"],"template":"x"}')).message).toMatch(
      /must contain \{label\}/,
    );
    expect((await call("/v1/classify", '{"image":"img_00"}')).message).toMatch(
      /needs labels, autoTag, or both/,
    );
  });

  it("triples: empty, malformed JSONL, too many items, a body over the upload limit", async () => {
    expect((await call("/v1/triples", '{"items":[]}')).status).toBe(400);
    const jsonl = await call(
      "/v1/triples",
      '{"image":"a","question":"q","answer":"a"}\n{oops',
      "application/x-ndjson",
    );
    expect(jsonl.message).toMatch(/Line 2 of the JSONL body is not valid JSON/);
    const many = JSON.stringify({
      items: Array.from({ length: 4 }, () => ({ image: "x", question: "q", answer: "a" })),
    });
    expect((await call("/v1/triples", many)).message).toMatch(
      /at most 3 triples \(LOUPE_MAX_ITEMS_PER_REQUEST\); got 4/,
    );
    const big = await call("/v1/triples", JSON.stringify({ items: [{ image: "A".repeat(30_000) }] }));
    expect(big.status).toBe(413);
    expect(big.message).toMatch(/LOUPE_MAX_UPLOAD_BYTES/);
  });

  it("triples: every item invalid → 422 all_items_failed with each reason, nothing stored", async () => {
    const response = await makeApp().request("/v1/triples", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        items: [
          { image: "not base64!", question: "q", answer: "a" },
          { image: "AAAA", question: "", answer: "a" },
        ],
      }),
    });
    expect(response.status).toBe(422);
    const body = (await response.json()) as {
      error: { code: string; message: string };
      items: { status: string; error: { message: string } }[];
    };
    expect(body.error.code).toBe("all_items_failed");
    expect(body.items.map((item) => item.status)).toEqual(["failed", "failed"]);
    expect(body.items[0]?.error.message).toMatch(/items\[0\]\.image is not valid base64/);
    expect(body.items[1]?.error.message).toMatch(/question/);
  });
});
