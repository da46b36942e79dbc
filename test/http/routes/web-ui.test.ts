/**
 * The browser UI's files as the server serves them: GET /widget.js, /chat, /chat.js and / — types,
 * caching (ETag, 304), the page's CSP, the server's limits written in, and no key needed while keys are
 * on. The UI itself is driven in Chromium by test/browser/.
 */
import { access } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWeb, WEB_ASSETS_DIR } from "../../../scripts/build-web.ts";
import { WEB_ASSETS_DIR as SERVED_DIR } from "../../../src/http/web-assets.ts";
import { makeTestApp } from "../../helpers/app.ts";
import { type AuthTestApp, makeAuthTestApp } from "../auth-fixtures.ts";

let keyed: AuthTestApp;

beforeAll(async () => {
  // The files are build output; a checkout that was never built gets them here (esbuild, about a second).
  const built = await Promise.all(
    ["widget.js", "chat.js", "chat.html"].map((name) =>
      access(path.join(WEB_ASSETS_DIR, name)).then(
        () => true,
        () => false,
      ),
    ),
  );
  if (built.includes(false)) await buildWeb();
  keyed = await makeAuthTestApp();
  await keyed.createKey({ tenant: "acme", scopes: ["read"] });
}, 60_000);

afterAll(async () => {
  await keyed?.dispose();
});

describe("the browser UI's routes", () => {
  it("serves from the directory the build writes", () => {
    expect(SERVED_DIR).toBe(WEB_ASSETS_DIR);
  });

  it("serves /widget.js as JavaScript, loadable from any origin, with an ETag that answers 304", async () => {
    const app = makeTestApp({ env: { LOUPE_CHAT_MAX_IMAGES: "3", LOUPE_MAX_IMAGE_BYTES: "1048576" } });
    const response = await app.request("/widget.js");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/javascript; charset=utf-8");
    expect(response.headers.get("cross-origin-resource-policy")).toBe("cross-origin");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("cache-control")).toMatch(/max-age=\d+/);
    const body = await response.text();
    expect(body).toContain("loupe-widget-host");
    expect(body).toContain("attachShadow");
    // The server's own limits, as a JSON string literal the script parses.
    expect(body).not.toContain("__LOUPE_LIMITS__");
    expect(body).toContain('\\"maxImages\\":3');
    expect(body).toContain('\\"maxImageBytes\\":1048576');

    const etag = response.headers.get("etag");
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await app.request("/widget.js", { headers: { "if-none-match": etag ?? "" } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    const stale = await app.request("/widget.js", { headers: { "if-none-match": '"other"' } });
    expect(stale.status).toBe(200);
  });

  it("serves /chat as HTML under a strict CSP, with its markup, one same-origin script and no inline code", async () => {
    const app = makeTestApp({ env: { LOUPE_CHAT_MAX_IMAGES: "2" } });
    const response = await app.request("/chat");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = response.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("img-src 'self' blob: data:");
    expect(csp).toContain("media-src 'self' blob:");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(response.headers.get("etag")).toMatch(/^"[\w-]+"$/);
    const html = await response.text();
    expect(html).toContain('data-testid="input"');
    expect(html).toContain('data-testid="search-input"');
    expect(html).toContain("&quot;maxImages&quot;:2");
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.map((match) => [match[1]?.trim(), match[2]])).toEqual([['src="/chat.js" defer', ""]]);
    expect(html).not.toMatch(/<style|\sstyle=|\son\w+=/i);

    const script = await app.request("/chat.js");
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toBe("application/javascript; charset=utf-8");
  });

  it("redirects / to /chat", async () => {
    const response = await makeTestApp().request("/");
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("/chat");
  });

  it("needs no key while keys are on, and the API behind them still does", async () => {
    for (const route of ["/widget.js", "/chat", "/chat.js"]) {
      const response = await keyed.app.request(route);
      expect(response.status, route).toBe(200);
    }
    expect((await keyed.app.request("/")).status).toBe(302);
    const chat = await keyed.app.request("/v1/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "hello" }),
    });
    expect(chat.status).toBe(401);
  });
});
