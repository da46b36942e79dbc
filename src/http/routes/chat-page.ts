/**
 * GET /chat — the chat page: the assistant full-page, with a search of the corpus (markup built from
 * `web/src/layout.ts`, script `web/src/page.ts`, both in `assets/web/`); GET /chat.js — its script;
 * GET / — a redirect to /chat. Public, like /docs: the page holds no data, and its API calls need a key
 * while keys are on. The page runs under a strict Content-Security-Policy: everything from this
 * server, nothing inline, images and video also from `blob:` URLs (media read with a key).
 */
import { createRouter } from "../openapi.ts";
import { serveAsset, type WebLimitsConfig, webAsset } from "../web-assets.ts";

/** The page's path. */
export const CHAT_PAGE_PATH = "/chat";
/** The page script's path. */
export const CHAT_SCRIPT_PATH = "/chat.js";

/** The policy the page is served with. */
export const CHAT_PAGE_CSP = [
  "default-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Options of {@link createChatPageRoute}. */
export interface ChatPageRouteOptions {
  /** The chat limits written into the page, which it shows and checks before sending. */
  config: WebLimitsConfig;
  /** Where the built files are (tests); default `assets/web` of the install. */
  assetsDir?: string;
}

/** The /, /chat and /chat.js routes. */
export function createChatPageRoute({ config, assetsDir }: ChatPageRouteOptions) {
  const dir = assetsDir === undefined ? {} : { dir: assetsDir };
  const page = webAsset({
    name: "chat.html",
    contentType: "text/html; charset=utf-8",
    limits: config,
    ...dir,
  });
  const script = webAsset({
    name: "chat.js",
    contentType: "application/javascript; charset=utf-8",
    limits: config,
    ...dir,
  });
  const router = createRouter();
  router.get("/", (c) => c.redirect(CHAT_PAGE_PATH, 302));
  router.get(CHAT_PAGE_PATH, async (c) =>
    serveAsset(c, await page(), {
      "content-security-policy": CHAT_PAGE_CSP,
      "referrer-policy": "no-referrer",
      "cache-control": "no-cache",
    }),
  );
  router.get(CHAT_SCRIPT_PATH, async (c) => serveAsset(c, await script()));
  return router;
}
