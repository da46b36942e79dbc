/**
 * Test helper: a real headless Chromium driven by `playwright-core`. The browser is the system's
 * (Debian's `chromium` package, which `npm run setup` installs when it runs as root with apt-get), at
 * `LOUPE_CHROMIUM_PATH` or `/usr/bin/chromium`; Playwright's own browser downloads are never used. A
 * machine without it fails the browser tests with a sentence naming what to install: they are never
 * skipped.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { type Browser, chromium, type Page, type Request } from "playwright-core";

/** Where Chromium is looked for when `LOUPE_CHROMIUM_PATH` is not set. */
export const DEFAULT_CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * The Chromium executable to drive: `LOUPE_CHROMIUM_PATH`, else {@link DEFAULT_CHROMIUM_PATH}. Throws a
 * sentence saying how to install one when it is not an executable file.
 */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.LOUPE_CHROMIUM_PATH?.trim();
  const candidate = configured !== undefined && configured !== "" ? configured : DEFAULT_CHROMIUM_PATH;
  try {
    accessSync(candidate, constants.X_OK);
  } catch {
    throw new Error(
      `The browser tests need Chromium, and ${candidate} is not an executable file` +
        `${configured ? " (from LOUPE_CHROMIUM_PATH)" : ""}. Install Debian's chromium package ` +
        "(`apt-get install chromium`, which `npm run setup` does when run as root) or set " +
        "LOUPE_CHROMIUM_PATH to a Chromium or Chrome executable.",
    );
  }
  return candidate;
}

/** Launches headless Chromium; close it with `browser.close()` in `afterAll`. */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    timeout: 60_000,
    // Root (CI containers) cannot use Chromium's sandbox; /dev/shm is tiny in containers.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

const require = createRequire(import.meta.url);

/** The source of axe-core's browser build, to evaluate in a page. */
export function axeSource(): string {
  return readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
}

/** The file axe-core's browser build is in (for a page that loads it by URL). */
export function axePath(): string {
  return require.resolve("axe-core/axe.min.js");
}

/** One accessibility rule axe found broken, as the tests report it. */
export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

/**
 * Runs axe-core in `page` (injecting it unless `window.axe` exists) and returns the violations of impact
 * `serious` or `critical`. Open shadow roots are checked too.
 */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  const present = await page.evaluate(() => typeof (window as { axe?: unknown }).axe === "object");
  // Evaluated through the debugging protocol, so a page's strict CSP does not stop it.
  if (!present) await page.evaluate(axeSource());
  return page.evaluate(async () => {
    interface AxeResult {
      violations: Array<{
        id: string;
        impact: string | null;
        help: string;
        nodes: Array<{ target: unknown[] }>;
      }>;
    }
    const axe = (
      window as unknown as { axe: { run(context: Document, options: object): Promise<AxeResult> } }
    ).axe;
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((violation) => violation.impact === "serious" || violation.impact === "critical")
      .map((violation) => ({
        id: violation.id,
        impact: violation.impact,
        help: violation.help,
        targets: violation.nodes.map((node) => JSON.stringify(node.target)),
      }));
  });
}

/** Every request a page made, in order, for checks of where a page talks to. */
export function recordRequests(page: Page): Request[] {
  const requests: Request[] = [];
  page.on("request", (request) => requests.push(request));
  return requests;
}

/**
 * The origin a request went to: `http(s)://host:port` (a `blob:` URL's creator origin), or the scheme
 * for `data:` URLs, which go nowhere.
 */
export function requestOrigin(url: string): string {
  if (url.startsWith("data:")) return "data:";
  return new URL(url.startsWith("blob:") ? url.slice("blob:".length) : url).origin;
}

const repoRoot = path.join(import.meta.dirname, "..", "..");

/**
 * Saves a screenshot the README shows. Written to `docs/screenshots/<name>.png` when
 * `LOUPE_UPDATE_SCREENSHOTS=1`, else to `.tmp/screenshots/` (so a test run leaves the committed ones
 * alone); returns the path written.
 */
export async function saveScreenshot(name: string, png: Buffer): Promise<string> {
  const dir =
    process.env.LOUPE_UPDATE_SCREENSHOTS === "1"
      ? path.join(repoRoot, "docs", "screenshots")
      : path.join(repoRoot, ".tmp", "screenshots");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await writeFile(file, png);
  return file;
}
