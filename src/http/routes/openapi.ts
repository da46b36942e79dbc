/**
 * GET /openapi.json — the OpenAPI 3.1 document, generated from the route declarations the app was built
 * with; GET /docs — the API reference page (Scalar) over that document. The page's script is served by
 * Loupe itself from the `@scalar/api-reference` bundle the build copies into `assets/` (GET /docs/assets/api-reference.js), and
 * its Content-Security-Policy lets it load nothing from another origin: no CDN, no web fonts, no telemetry.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "@hono/zod-openapi";
import { Scalar } from "@scalar/hono-api-reference";
import { INSTALL_DIR } from "../../config.ts";
import type { AppEnv } from "../context.ts";
import { createRouter, defineRoute, type OpenApiDocument } from "../openapi.ts";

/** Where the page loads the reference's script from: this server. */
export const API_REFERENCE_SCRIPT_PATH = "/docs/assets/api-reference.js";

/**
 * The browser bundle of `@scalar/api-reference`, copied into `<install dir>/assets` by the build
 * (`scripts/build.sh`), so the package is needed to build Loupe, not to run it.
 */
const apiReferenceBundle = path.join(INSTALL_DIR, "assets", "api-reference.js");

/** GET /openapi.json. */
export const openApiDocumentRoute = defineRoute(
  {
    method: "get",
    path: "/openapi.json",
    operationId: "getOpenApiDocument",
    tags: ["reference"],
    summary: "This document",
    description: "The OpenAPI 3.1 description of the API, generated from the routes' declarations.",
    responses: {
      200: {
        description: "The OpenAPI 3.1 document.",
        content: { "application/json": { schema: z.record(z.string(), z.unknown()) } },
      },
    },
  },
  { access: { scope: "public" } },
);

/** GET /docs. */
export const docsRoute = defineRoute(
  {
    method: "get",
    path: "/docs",
    operationId: "getDocs",
    tags: ["reference"],
    summary: "The API reference page",
    description:
      "An HTML page (Scalar) over /openapi.json, with a client to try requests against this server. Everything it loads comes from this server.",
    responses: {
      200: { description: "The page.", content: { "text/html": { schema: z.string() } } },
    },
  },
  { access: { scope: "public" } },
);

/** `'sha256-…'` sources for each inline script of a page, for its Content-Security-Policy. */
function inlineScriptHashes(html: string): string[] {
  return [...html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/gi)].map(
    (match) =>
      `'sha256-${createHash("sha256")
        .update(match[1] ?? "")
        .digest("base64")}'`,
  );
}

/** The page's policy: scripts, styles, images, fonts and requests from this server only. */
function contentSecurityPolicy(html: string): string {
  return [
    "default-src 'self'",
    `script-src 'self' ${inlineScriptHashes(html).join(" ")}`,
    // The reference injects its styles at run time.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** Options of {@link createOpenApiRoute}. */
export interface OpenApiRouteOptions {
  /** The document of every route; built on first request, as it never changes while the process runs. */
  document: () => OpenApiDocument;
}

/** The /openapi.json, /docs and /docs/assets routes. */
export function createOpenApiRoute({ document }: OpenApiRouteOptions) {
  let cached: OpenApiDocument | undefined;
  let page: { html: string; policy: string } | undefined;
  let bundle: Promise<Buffer> | undefined;
  const reference = Scalar<AppEnv>({
    url: "/openapi.json",
    cdn: API_REFERENCE_SCRIPT_PATH,
    pageTitle: "Loupe API reference",
    withDefaultFonts: false,
    telemetry: false,
    showDeveloperTools: "never",
    agent: { disabled: true },
  });
  const router = createRouter()
    .openapi(openApiDocumentRoute, (c) => {
      cached ??= document();
      return c.json(cached as unknown as Record<string, unknown>, 200);
    })
    .openapi(docsRoute, async (c) => {
      if (page === undefined) {
        const rendered = await reference(c, async () => {});
        if (!(rendered instanceof Response)) throw new Error("unreachable: the reference answers its page");
        const html = await rendered.text();
        page = { html, policy: contentSecurityPolicy(html) };
      }
      c.header("content-security-policy", page.policy);
      c.header("x-content-type-options", "nosniff");
      return c.html(page.html, 200);
    });
  router.get(API_REFERENCE_SCRIPT_PATH, async (c) => {
    bundle ??= readFile(apiReferenceBundle);
    return c.body(new Uint8Array(await bundle), 200, {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": "public, max-age=3600",
      "x-content-type-options": "nosniff",
    });
  });
  return router;
}
