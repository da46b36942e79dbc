/**
 * The browser UI's built files (`assets/web/`, made from `web/src/` by `scripts/build-web.ts`) as the
 * routes serve them: read once, with the server's chat limits written in where the build left a marker
 * (so the UI states and checks the limits this server enforces), and answered with a strong ETag so a
 * browser revalidates cheaply (304) instead of downloading them again.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../config.ts";
import { INSTALL_DIR } from "../config.ts";
import { AppError } from "../errors.ts";
import type { AppContext } from "./context.ts";

/** Where the build puts the UI's files. */
export const WEB_ASSETS_DIR = path.join(INSTALL_DIR, "assets", "web");

/** The marker the build leaves where the limits go. */
const LIMITS_MARKER = "__LOUPE_LIMITS__";

/** The limits the UI is told about. */
export type WebLimitsConfig = Pick<
  Config,
  "chatMaxImages" | "maxImageBytes" | "maxJsonBytes" | "chatMaxTurns"
>;

/** A built file ready to serve. */
export interface WebAsset {
  body: Uint8Array;
  etag: string;
  contentType: string;
}

/** How the limits are written into a file of `kind`: a JS string literal, or an HTML attribute value. */
function limitsText(limits: WebLimitsConfig, kind: "js" | "html"): string {
  const json = JSON.stringify({
    maxImages: limits.chatMaxImages,
    maxImageBytes: limits.maxImageBytes,
    maxJsonBytes: limits.maxJsonBytes,
    maxTurns: limits.chatMaxTurns,
  });
  return kind === "js" ? JSON.stringify(json).slice(1, -1) : json.replaceAll('"', "&quot;");
}

/**
 * A loader of `name` from {@link WEB_ASSETS_DIR}, read on first use and kept. A missing file (a checkout
 * that was never built) is a 503 naming the fix, not a 500.
 */
export function webAsset({
  name,
  contentType,
  limits,
  dir = WEB_ASSETS_DIR,
}: {
  name: string;
  contentType: string;
  limits: WebLimitsConfig;
  dir?: string;
}): () => Promise<WebAsset> {
  let loaded: Promise<WebAsset> | undefined;
  const kind = name.endsWith(".html") ? "html" : "js";
  return () => {
    loaded ??= readFile(path.join(dir, name), "utf8").then(
      (text) => {
        const body = new TextEncoder().encode(text.replaceAll(LIMITS_MARKER, limitsText(limits, kind)));
        const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
        return { body, etag, contentType };
      },
      (error: unknown) => {
        loaded = undefined;
        throw new AppError(
          "not_ready",
          503,
          `The browser UI is not built (assets/web/${name} is missing). Run \`npm run build\`.`,
          { cause: error },
        );
      },
    );
    return loaded;
  };
}

/** Whether the request's `If-None-Match` names `etag` (so a 304 answers it). */
function notModified(c: AppContext, etag: string): boolean {
  const header = c.req.header("if-none-match");
  if (header === undefined) return false;
  return header.trim() === "*" || header.split(",").some((tag) => tag.trim().replace(/^W\//, "") === etag);
}

/** Answers `asset` with its type, ETag and `cache-control`, or 304 when the browser has it. */
export function serveAsset(c: AppContext, asset: WebAsset, headers: Record<string, string> = {}): Response {
  const common = {
    etag: asset.etag,
    "cache-control": "public, max-age=300",
    "x-content-type-options": "nosniff",
    ...headers,
  };
  if (notModified(c, asset.etag)) return c.body(null, 304, common);
  return c.body(asset.body.slice(), 200, { ...common, "content-type": asset.contentType });
}
