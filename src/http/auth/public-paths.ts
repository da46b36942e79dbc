/**
 * The paths that need no key whatever the settings: the probes orchestrators poll, and the API's own
 * description (the document and its reference page with the page's script), and the browser UI's files (the
 * chat page, its script, the embeddable widget: they hold no data; their API calls need a key). Every other path, known
 * route or not, needs a key once keys exist, so a route added outside `/v1` is closed until declared here.
 */

const PUBLIC_PATHS = new Set([
  "/healthz",
  "/readyz",
  "/openapi.json",
  "/docs",
  "/",
  "/chat",
  "/chat.js",
  "/widget.js",
]);

/** Whether `path` is served without a key. */
export function isPublicPath(path: string): boolean {
  return PUBLIC_PATHS.has(path) || path.startsWith("/docs/");
}
