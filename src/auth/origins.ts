/**
 * Browser origins as keys list them and requests send them: `scheme://host[:port]`, lower case, the
 * scheme's default port left out, nothing else (no path, query, credentials or wildcard).
 */

/**
 * The canonical form of an origin, or `undefined` when `text` is not one (`null`, a URL with a path,
 * a scheme other than http or https).
 */
export function normalizeOrigin(text: string): string | undefined {
  const trimmed = text.trim();
  if (trimmed.length === 0 || trimmed.length > 300) return undefined;
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") return undefined;
  if (url.pathname !== "/" || /^[a-z]+:\/\/[^/]+\/.+/i.test(trimmed)) return undefined;
  return url.origin;
}
