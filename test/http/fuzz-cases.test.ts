/**
 * What the schema-driven fuzz (`scripts/fuzz-api.sh`, Schemathesis against /openapi.json) found, kept as
 * fast in-process cases: each request it sent that got an answer the document did not promise, with its
 * status, its error envelope and the document's word on it asserted together. The real model pack decodes
 * the images (its sessions are never opened); no route here reaches the store.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { errorEnvelopeSchema } from "../../src/http/errors.ts";
import { serverSentEventSchema } from "../../src/http/openapi.ts";
import { startHttpServer } from "../../src/http/server.ts";
import { loadModelPack } from "../../src/inference/model-pack.ts";
import { makeTestApp } from "../helpers/app.ts";
import { documentSchemas, type OpenApiDocumentShape, readEventStream } from "./contract-walk.ts";

type App = ReturnType<typeof makeTestApp>;

interface OperationShape {
  responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }>;
}
interface DocumentShape {
  paths: Record<string, Record<string, OperationShape>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
}

let app: App;
let document: DocumentShape;

beforeAll(async () => {
  const models = await loadModelPack({ dir: "models/shapes-world-tiny", sessions: "lazy" });
  app = makeTestApp({ models });
  document = (await (await app.request("/openapi.json")).json()) as DocumentShape;
}, 60_000);

/** The operation `method path` of the served document. */
function operation(method: string, path: string): OperationShape {
  const found = document.paths[path]?.[method.toLowerCase()];
  if (found === undefined) throw new Error(`The document has no ${method} ${path}.`);
  return found;
}

/** Sends a JSON body; the answer's status, its parsed body and its request id header. */
async function postJson(path: string, body: unknown) {
  const response = await app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { response, body: (await response.json()) as unknown };
}

/** Asserts the answer is the error envelope with `status` and `code`, and that the document lists it. */
function expectDocumentedError(
  { response, body }: Awaited<ReturnType<typeof postJson>>,
  { method, path, status, code }: { method: string; path: string; status: number; code: string },
) {
  expect(response.status).toBe(status);
  const envelope = errorEnvelopeSchema.strict().parse(body);
  expect(envelope.error.code).toBe(code);
  expect(envelope.error.requestId).toBe(response.headers.get("x-request-id"));
  const documented = operation(method, path).responses[String(status)];
  expect(documented, `${method} ${path} documents ${status}`).toBeDefined();
  expect(documented?.content?.["application/json"]?.schema?.$ref).toBe("#/components/schemas/Error");
  return envelope;
}

/** Two bytes that are no image format at all, as the fuzzer sent them (base64 `00`). */
const NOT_AN_IMAGE = "00";
/** A PNG signature and the start of a header, cut off: a known format that cannot be decoded. */
const TRUNCATED_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB";

describe("an image Loupe cannot read is a documented 415 or 422, in the envelope", () => {
  const unreadable = [
    ["POST", "/v1/vqa", { image: NOT_AN_IMAGE, question: "0", topK: 1 }],
    ["POST", "/v1/search", { image: NOT_AN_IMAGE }],
    ["POST", "/v1/classify", { image: NOT_AN_IMAGE, labels: ["a"] }],
    ["POST", "/v1/chat", { question: "0", images: [NOT_AN_IMAGE] }],
    [
      "POST",
      "/v1/chat",
      { question: "0", history: [{ role: "user", content: "", images: [NOT_AN_IMAGE], citations: [] }] },
    ],
    [
      "POST",
      "/v1/chat/completions",
      {
        model: "loupe",
        messages: [
          {
            role: "user",
            content: [
              { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
              { type: "text", text: "hi" },
            ],
          },
        ],
      },
    ],
  ] as const;

  it.each(unreadable)(
    "%s %s with bytes of no image format → 415 media_unsupported",
    async (method, path, body) => {
      const envelope = expectDocumentedError(await postJson(path, body), {
        method,
        path,
        status: 415,
        code: "media_unsupported",
      });
      expect(envelope.error.message).toMatch(/allowed: jpeg, png, webp, gif/);
    },
  );

  it.each([
    ["POST", "/v1/vqa", { image: TRUNCATED_PNG, question: "0", topK: 1 }],
    ["POST", "/v1/search", { image: TRUNCATED_PNG }],
    ["POST", "/v1/classify", { image: TRUNCATED_PNG, labels: ["a"] }],
    ["POST", "/v1/chat", { question: "0", images: [TRUNCATED_PNG] }],
  ] as const)("%s %s with a truncated PNG → 422 media_invalid", async (method, path, body) => {
    const envelope = expectDocumentedError(await postJson(path, body), {
      method,
      path,
      status: 422,
      code: "media_invalid",
    });
    expect(envelope.error.message).toMatch(/Could not decode the image.*Send an uncorrupted/);
  });
});

describe("event streams are documented event by event", () => {
  it.each([
    ["POST", "/v1/chat"],
    ["POST", "/v1/chat/completions"],
    ["GET", "/v1/jobs/{id}/events"],
  ])("%s %s describes each event as a ServerSentEvent, not the stream as a string", (method, path) => {
    const content = operation(method, path).responses["200"]?.content?.["text/event-stream"];
    expect(content?.schema?.$ref).toBe("#/components/schemas/ServerSentEvent");
    const event = document.components.schemas.ServerSentEvent;
    expect(Object.keys(event?.properties ?? {}).sort()).toEqual(["data", "event", "id"]);
    expect(event?.required?.sort()).toEqual(["data", "event"]);
  });

  it("a job's progress stream matches the event schema, event by event", async () => {
    // A job whose every URL is refused (not a public address) fails, as the fuzzer's did.
    const accepted = await postJson("/v1/images?async=true", {
      urls: ["http://127.0.0.1:9/a.png", "http://127.0.0.1:9/b.png", "http://127.0.0.1:9/c.png"],
    });
    expect(accepted.response.status).toBe(202);
    const { job } = accepted.body as { job: { id: string } };
    const response = await app.request(`/v1/jobs/${job.id}/events`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = readEventStream(await response.text());
    expect(events.map((event) => event.event)).toContain("done");
    for (const event of events) {
      expect(serverSentEventSchema.strict().safeParse(event).success, JSON.stringify(event)).toBe(true);
      expect(() => JSON.parse(event.data as string)).not.toThrow();
    }
  });
});

/** Sends a multipart form of text fields. */
async function postForm(path: string, fields: Array<[string, string]>) {
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value);
  const response = await app.request(path, { method: "POST", body: form });
  return { response, body: (await response.json()) as unknown };
}

describe("a form field of the wrong kind is named with what is allowed", () => {
  it.each([
    [
      "/v1/vqa",
      [
        ["question", "0"],
        ["topK", "null"],
      ],
      /topK must be an integer from 1 to 22 \(got null\)/,
    ],
    ["/v1/vqa", [["question", ""]], /question must not be empty/],
    [
      "/v1/chat",
      [
        ["question", "0"],
        ["files", ""],
      ],
      /files must be uploaded image files/,
    ],
    [
      "/v1/chat",
      [
        ["question", "0"],
        ["files", ""],
        ["files", "x"],
      ],
      /files must be uploaded image files/,
    ],
  ] as Array<[string, Array<[string, string]>, RegExp]>)(
    "POST %s %j → 400",
    async (path, fields, message) => {
      const envelope = expectDocumentedError(await postForm(path, fields), {
        method: "POST",
        path,
        status: 400,
        code: "invalid_request",
      });
      expect(envelope.error.message).toMatch(message);
      expect(envelope.error.message).not.toMatch(/Invalid input|NaN|Too small/);
    },
  );
});

describe("a JSON field of the wrong kind is named with what is allowed, not zod's default", () => {
  it.each([
    ["/v1/images", {}, /urls must be a list of image URLs/],
    [
      "/v1/images",
      { urls: [0] },
      /each entry of urls is an http\(s\) URL of 1 to 2048 characters, or \{ url, metadata\? \}/,
    ],
    ["/v1/images", { urls: [] }, /urls must hold at least one URL/],
    ["/v1/triples", {}, /items must be a list of triples/],
    [
      "/v1/classify",
      { image: NOT_AN_IMAGE, template: "x".repeat(201) },
      /template must be at most 200 characters/,
    ],
    [
      "/v1/classify",
      { image: NOT_AN_IMAGE, autoTag: { k: "3" } },
      /autoTag.k must be an integer from 1 to 100/,
    ],
    [
      "/v1/search",
      { text: "a", filter: [{ field: "source", op: "eq", value: {} }] },
      /filter\[0\]\[value\]: value must be a string, a number, a boolean, or a list of 1 to 100 strings/,
    ],
  ] as Array<[string, unknown, RegExp]>)("POST %s %j → 400", async (path, body, message) => {
    const envelope = expectDocumentedError(await postJson(path, body), {
      method: "POST",
      path,
      status: 400,
      code: "invalid_request",
    });
    expect(envelope.error.message).toMatch(message);
    expect(envelope.error.message).not.toMatch(/Invalid input|Too big|Too small|expected array/);
  });

  it.each([
    ["GET", "/v1/media/{id}"],
    ["GET", "/v1/media/{id}/thumbnail"],
    ["GET", "/v1/jobs/{id}"],
    ["POST", "/v1/similar/{id}"],
  ])("%s %s with an id over 200 characters → 400 naming the limit", async (method, path) => {
    const response = await app.request(path.replace("{id}", "0".repeat(201)), {
      method,
      ...(method === "POST" ? { headers: { "content-type": "application/json" }, body: "{}" } : {}),
    });
    const envelope = expectDocumentedError(
      { response, body: await response.json() },
      { method, path, status: 400, code: "invalid_request" },
    );
    expect(envelope.error.message).toMatch(/id must be at most 200 characters/);
  });
});

describe("what the server answers before any route is documented on every operation", () => {
  it("every operation lists 408 and 431 with the envelope", () => {
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, { responses }] of Object.entries(methods)) {
        for (const status of ["408", "431"]) {
          expect(
            responses[status]?.content?.["application/json"]?.schema?.$ref,
            `${method.toUpperCase()} ${path} documents ${status}`,
          ).toBe("#/components/schemas/Error");
        }
      }
    }
  });

  it("a query string that takes the request over 16 KiB → 431 headers_too_large, over HTTP", async () => {
    // The fuzzer's case: GET /v1/items with a filter of thousands of characters.
    const server = await startHttpServer({ fetch: app.fetch, host: "127.0.0.1", port: 0 });
    try {
      const response = await fetch(`${server.url}/v1/media/img_0?filter=${"0".repeat(17_000)}`);
      expect(response.status).toBe(431);
      const envelope = errorEnvelopeSchema.strict().parse(await response.json());
      expect(envelope.error.code).toBe("headers_too_large");
      expect(envelope.error.message).toMatch(/16 KiB/);
      expect(envelope.error.requestId).toBe(response.headers.get("x-request-id"));
    } finally {
      await server.close({ timeoutMs: 0 });
    }
  });
});

describe("GET /v1/items refuses a filter longer than its request line can carry", () => {
  it("a 4097-character filter → 400 naming the limit, not a 431 from the server", async () => {
    const filter = encodeURIComponent(`[${" ".repeat(4095)}]`);
    const response = await app.request(`/v1/items?filter=${filter}`);
    const envelope = expectDocumentedError(
      { response, body: await response.json() },
      { method: "GET", path: "/v1/items", status: 400, code: "invalid_request" },
    );
    expect(envelope.error.message).toMatch(/filter is at most 4096 characters/);
  });
});

describe("the document's Filter accepts what the validator accepts, and no more", () => {
  // The fuzzer's "valid" filters, [{}] and objects with both a condition and groups, were refused by
  // every route: the document described an item as an object whose keys are all optional.
  const condition = { field: "source", op: "eq", value: "a.png" };
  it.each([
    [[{}], false],
    [[{ field: "source" }], false],
    [[{ any: [condition], all: [condition] }], false],
    [[{ ...condition, any: [condition] }], false],
    [[{ field: "", op: "eq", value: "" }], false],
    [[{ any: [{ all: [{ any: [{ all: [condition] }] }] }] }], false],
    [[condition], true],
    [[{ field: "metadata.camera", op: "exists" }], true],
    [[{ any: [condition, { all: [{ field: "created_at", op: "gte", value: 2 }] }] }], true],
  ])("%j: documented valid %s, and the route agrees", async (filter, valid) => {
    const validate = documentSchemas(document as unknown as OpenApiDocumentShape)(
      "components",
      "schemas",
      "Filter",
    );
    expect(validate(filter), JSON.stringify(validate.errors?.slice(0, 3))).toBe(valid);
    // The route validates the filter first; a valid one gets past it, to the store (absent here).
    const response = await app.request("/v1/similar/img_0", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ filter }),
    });
    if (valid) expect(response.status).not.toBe(400);
    else
      expectDocumentedError(
        { response, body: await response.json() },
        {
          method: "POST",
          path: "/v1/similar/{id}",
          status: 400,
          code: "invalid_request",
        },
      );
  });
});
