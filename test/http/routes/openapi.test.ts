import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import { makeTestApp as makeApp } from "../../helpers/app.ts";

/** No route under test touches the store: the document is generated from the route declarations. */

type Json = Record<string, unknown>;

/** Every `$ref` anywhere in a JSON value. */
function refsIn(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) {
    for (const item of value) refsIn(item, found);
  } else if (typeof value === "object" && value !== null) {
    for (const [key, inner] of Object.entries(value)) {
      if (key === "$ref" && typeof inner === "string") found.push(inner);
      else refsIn(inner, found);
    }
  }
  return found;
}

async function loadDocument(): Promise<Json> {
  const response = await makeApp().request("/openapi.json");
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/application\/json/);
  return (await response.json()) as Json;
}

describe("GET /openapi.json", () => {
  it("validates as OpenAPI 3.1", async () => {
    const document = await loadDocument();
    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("describes every route with unique operation ids, path parameters and resolvable schemas", async () => {
    const document = await loadDocument();
    expect(document.openapi).toBe("3.1.0");
    const info = document.info as Json;
    expect(info.title).toBe("Loupe API");
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);

    const paths = document.paths as Record<string, Record<string, Json>>;
    for (const [route, method] of [
      ["/healthz", "get"],
      ["/readyz", "get"],
      ["/v1/search", "post"],
      ["/v1/similar/{id}", "post"],
      ["/v1/classify", "post"],
      ["/v1/vqa", "post"],
      ["/v1/detect", "post"],
      ["/v1/chat", "post"],
      ["/v1/chat/completions", "post"],
      ["/v1/models", "get"],
      ["/v1/models/{model}", "get"],
      ["/v1/triples", "post"],
      ["/v1/images", "post"],
      ["/v1/videos", "post"],
      ["/v1/jobs/{id}", "get"],
      ["/v1/jobs/{id}/events", "get"],
      ["/v1/jobs/{id}/resume", "post"],
      ["/v1/media/{id}", "get"],
      ["/v1/media/{id}/thumbnail", "get"],
      ["/v1/items/{id}", "delete"],
      ["/openapi.json", "get"],
      ["/docs", "get"],
    ] as const) {
      const operation = paths[route]?.[method];
      expect(operation, `${method} ${route}`).toBeDefined();
      expect(typeof operation?.operationId).toBe("string");
      expect(Object.keys(operation?.responses as Json).length).toBeGreaterThan(0);
    }
    const operationIds = Object.values(paths).flatMap((methods) =>
      Object.values(methods).map((operation) => operation.operationId),
    );
    expect(new Set(operationIds).size).toBe(operationIds.length);
    // Path parameters are declared for every {param} in a path.
    for (const [route, methods] of Object.entries(paths)) {
      const names = [...route.matchAll(/\{(\w+)\}/g)].map((match) => match[1]);
      for (const operation of Object.values(methods)) {
        const declared = ((operation.parameters as Json[] | undefined) ?? [])
          .filter((parameter) => parameter.in === "path")
          .map((parameter) => parameter.name);
        expect(declared.sort()).toEqual(names.sort());
      }
    }

    const schemas = (document.components as { schemas: Record<string, Json> }).schemas;
    for (const name of [
      "SearchRequest",
      "SearchResponse",
      "ClassifyRequest",
      "TriplesRequest",
      "ChatRequest",
      "ChatCompletionChunk",
      "Filter",
      "Error",
    ]) {
      expect(schemas[name], name).toBeDefined();
      expect(schemas[name]?.$schema).toBeUndefined();
    }
    for (const ref of refsIn(document)) {
      expect(ref).toMatch(/^#\/components\/schemas\//);
      expect(schemas[ref.replace("#/components/schemas/", "")], ref).toBeDefined();
    }

    const search = schemas.SearchRequest as {
      properties: Record<string, Json>;
      additionalProperties: unknown;
    };
    expect(search.additionalProperties).toBe(false);
    expect(search.properties.topK).toMatchObject({ type: "integer", minimum: 1, maximum: 100 });
    expect((search.properties.kinds?.items as Json | undefined)?.enum).toEqual([
      "image",
      "video_segment",
      "triple",
      "region",
    ]);
    expect(search.properties.filter?.$ref).toBe("#/components/schemas/Filter");
    expect(schemas.Filter?.type).toBe("array");
    const searchBody = paths["/v1/search"]?.post?.requestBody as { content: Record<string, Json> };
    expect(Object.keys(searchBody.content).sort()).toEqual(["application/json", "multipart/form-data"]);
    // The envelope of every error carries the request id.
    expect((schemas.Error?.properties as Record<string, Json> | undefined)?.error).toMatchObject({
      required: ["code", "message", "requestId"],
    });
  });
});

describe("GET /docs", () => {
  it("is the API reference page, its script served by Loupe, nothing loaded from elsewhere", async () => {
    const app = makeApp();
    const response = await app.request("/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/text\/html/);
    const policy = response.headers.get("content-security-policy") ?? "";
    expect(policy).toMatch(/default-src 'self'/);
    expect(policy).toMatch(/script-src 'self' 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
    expect(policy).toMatch(/connect-src 'self'/);
    // Every source the policy allows is this server, an inline script's hash, or data/blob URLs.
    for (const source of policy.split(/[;\s]+/).filter((part) => /^(https?:|\*|[\w-]+\.)/.test(part))) {
      throw new Error(`The policy allows another origin: ${source}`);
    }
    const html = await response.text();
    expect(html).toContain('src="/docs/assets/api-reference.js"');
    expect(html).toContain('"url": "/openapi.json"');
    expect(html).toContain('"withDefaultFonts": false');
    // Nothing is loaded from elsewhere: no external src or href.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);

    const script = await app.request("/docs/assets/api-reference.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toMatch(/^text\/javascript/);
    const source = await script.text();
    expect(source.length).toBeGreaterThan(100_000);
    expect(source).toContain("createApiReference");
  });
});
