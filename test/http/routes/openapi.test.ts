import { describe, expect, it } from "vitest";
import { makeTestApp as makeApp } from "../../helpers/app.ts";

/** No route under test touches the store: the description is built from schemas alone. */

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

describe("GET /openapi.json", () => {
  it("is an OpenAPI 3.1 document describing every route with resolvable schemas", async () => {
    const response = await makeApp().request("/openapi.json");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/application\/json/);
    const document = (await response.json()) as Json;
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
      ["/v1/triples", "post"],
      ["/v1/images", "post"],
      ["/v1/videos", "post"],
      ["/v1/jobs/{id}", "get"],
      ["/v1/jobs/{id}/events", "get"],
      ["/v1/media/{id}", "get"],
      ["/v1/media/{id}/thumbnail", "get"],
      ["/v1/items/{id}", "delete"],
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
    for (const name of ["SearchRequest", "SearchResponse", "ClassifyRequest", "TriplesRequest", "Error"]) {
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
    ]);
    expect(search.properties.filter?.type).toBe("array");
    const searchBody = paths["/v1/search"]?.post?.requestBody as { content: Record<string, Json> };
    expect(Object.keys(searchBody.content).sort()).toEqual(["application/json", "multipart/form-data"]);
  });
});

describe("GET /docs", () => {
  it("is a self-contained HTML page listing every operation", async () => {
    const app = makeApp();
    const response = await app.request("/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/text\/html/);
    expect(response.headers.get("content-security-policy")).toMatch(/default-src 'none'/);
    const html = await response.text();
    const document = (await (await app.request("/openapi.json")).json()) as { paths: Record<string, Json> };
    for (const route of Object.keys(document.paths)) expect(html).toContain(route);
    expect(html).not.toMatch(/<script/i);
    // Nothing is loaded from elsewhere: no external src or href.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);
    expect(html).toContain('href="/openapi.json"');
  });
});
