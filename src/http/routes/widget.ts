/**
 * GET /widget.js — the embeddable assistant (built from `web/src/widget.ts` into `assets/web/`). Public:
 * a page loads it with a plain `<script src>` before any key is in play; the key it is given then
 * travels with its API calls. It may be loaded from any origin (`Cross-Origin-Resource-Policy:
 * cross-origin`, and CORS `*` without credentials, so a host can pin it with Subresource Integrity).
 */
import { createRouter } from "../openapi.ts";
import { serveAsset, type WebLimitsConfig, webAsset } from "../web-assets.ts";

/** The path the widget is served at. */
export const WIDGET_PATH = "/widget.js";

/** Options of {@link createWidgetRoute}. */
export interface WidgetRouteOptions {
  /** The chat limits written into the script, which it shows and checks before sending. */
  config: WebLimitsConfig;
  /** Where the built files are (tests); default `assets/web` of the install. */
  assetsDir?: string;
}

/** The /widget.js route. */
export function createWidgetRoute({ config, assetsDir }: WidgetRouteOptions) {
  const script = webAsset({
    name: "widget.js",
    contentType: "application/javascript; charset=utf-8",
    limits: config,
    ...(assetsDir === undefined ? {} : { dir: assetsDir }),
  });
  const router = createRouter();
  router.get(WIDGET_PATH, async (c) =>
    serveAsset(c, await script(), {
      "cross-origin-resource-policy": "cross-origin",
      "access-control-allow-origin": "*",
    }),
  );
  return router;
}
