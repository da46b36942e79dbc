/**
 * Builds the browser UI from `web/src/` into `assets/web/` (served by Loupe, shipped in the package):
 * `widget.js` (the embeddable assistant), `chat.js` (the chat page's script) and `chat.html` (the page's
 * markup, rendered from the same layout the widget builds at run time). Bundled and minified with
 * esbuild, for browsers of the last few years; prints each script's size raw and gzipped.
 * Run by `scripts/build.sh`; `tsx scripts/build-web.ts` alone rebuilds just these.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { en } from "../web/src/i18n.ts";
import { pageSkeleton, renderHtml } from "../web/src/layout.ts";

const root = path.join(import.meta.dirname, "..");
/** Where the built files go. */
export const WEB_ASSETS_DIR = path.join(root, "assets", "web");

/** The marker in chat.html the server replaces with its limits (an attribute value, HTML-escaped JSON). */
export const PAGE_LIMITS_MARKER = "__LOUPE_LIMITS__";

/** The chat page: markup only, one script from the same origin, nothing inline. */
function chatPage(): string {
  return [
    "<!doctype html>",
    `<html lang="en" data-limits="${PAGE_LIMITS_MARKER}">`,
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="color-scheme" content="light dark">',
    "<title>Ask Loupe</title>",
    '<script src="/chat.js" defer></script>',
    "</head>",
    `<body>${renderHtml(pageSkeleton(), en)}</body>`,
    "</html>",
    "",
  ].join("\n");
}

/** Builds every file; returns each script's raw and gzipped size in bytes. */
export async function buildWeb(): Promise<Record<string, { raw: number; gzip: number }>> {
  await mkdir(WEB_ASSETS_DIR, { recursive: true });
  const sizes: Record<string, { raw: number; gzip: number }> = {};
  for (const [entry, out] of [
    ["widget.ts", "widget.js"],
    ["page.ts", "chat.js"],
  ] as const) {
    const outfile = path.join(WEB_ASSETS_DIR, out);
    await build({
      entryPoints: [path.join(root, "web", "src", entry)],
      outfile,
      bundle: true,
      minify: true,
      format: "iife",
      target: ["chrome111", "firefox111", "safari16.4"],
      legalComments: "none",
      charset: "utf8",
      logLevel: "warning",
    });
    const bytes = await readFile(outfile);
    sizes[out] = { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  }
  await writeFile(path.join(WEB_ASSETS_DIR, "chat.html"), chatPage());
  return sizes;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === import.meta.filename) {
  const sizes = await buildWeb();
  for (const [name, size] of Object.entries(sizes)) {
    console.log(
      `build: assets/web/${name} ${(size.raw / 1024).toFixed(1)} KB, ${(size.gzip / 1024).toFixed(1)} KB gzipped`,
    );
  }
}
