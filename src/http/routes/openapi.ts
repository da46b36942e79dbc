/**
 * GET /openapi.json — the OpenAPI 3.1 description of the API, built once from the routes' zod schemas;
 * GET /docs — a static HTML page listing it (no scripts, nothing fetched from elsewhere).
 */
import { readFileSync } from "node:fs";
import { Hono } from "hono";
import type { AppEnv } from "../context.ts";
import { buildOpenApiDocument, renderDocsPage } from "../openapi.ts";

const packageVersion = (
  JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** The /openapi.json and /docs routes; `version` defaults to the package's. */
export function createOpenApiRoute({ version = packageVersion }: { version?: string } = {}): Hono<AppEnv> {
  // Built on first request: the document never changes while the process runs.
  let document: Record<string, unknown> | undefined;
  let page: string | undefined;
  const getDocument = () => {
    document ??= buildOpenApiDocument({ version });
    return document;
  };
  return new Hono<AppEnv>()
    .get("/openapi.json", (c) => c.json(getDocument(), 200))
    .get("/docs", (c) => {
      page ??= renderDocsPage(getDocument());
      c.header("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'");
      return c.html(page, 200);
    });
}
