/**
 * The chat page (`GET /chat`) in a real headless Chromium against a real Loupe (Milvus Lite, the bundled
 * pack, a generated corpus of images, a screenshot and a video; keyless on loopback): it is served under a
 * strict CSP that it does not violate, answers a question with citation chips whose thumbnails load, opens
 * a cited video segment at its start, searches the corpus, talks to no origin but Loupe's, has no serious
 * or critical axe-core violations, follows the browser's colour scheme and language, and its screenshots
 * (light, dark, Chinese) are written for the README.
 */
import type { Browser, BrowserContext, Page, Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  launchBrowser,
  recordRequests,
  requestOrigin,
  saveScreenshot,
  seriousAxeViolations,
} from "../helpers/browser.ts";
import { startUiLoupe, type UiLoupe } from "../helpers/ui-loupe.ts";
import {
  ANSWER_START,
  askAndWait,
  backgroundOf,
  byTestId,
  expectVideoAtSegmentStart,
  hasChinese,
  luminance,
  thumbnailWidths,
} from "./ui-checks.ts";

const QUESTION = "Which images show a red shape, and which clip?";

describe("the chat page in Chromium", () => {
  let browser: Browser;
  let ui: UiLoupe;
  const contexts: BrowserContext[] = [];

  /** A page in a fresh context at 1100×760 (or `options`), with its requests and CSP complaints recorded. */
  async function openChat(
    options: { colorScheme?: "light" | "dark"; locale?: string; width?: number } = {},
  ): Promise<{ page: Page; requests: Request[]; cspErrors: string[] }> {
    const context = await browser.newContext({
      viewport: { width: options.width ?? 1100, height: 760 },
      colorScheme: options.colorScheme ?? "light",
      locale: options.locale ?? "en-US",
    });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    const requests = recordRequests(page);
    const cspErrors: string[] = [];
    page.on("console", (message) => {
      if (/Content Security Policy/i.test(message.text())) cspErrors.push(message.text());
    });
    const response = await page.goto(`${ui.url}/chat`);
    expect(response?.status()).toBe(200);
    await page.locator(byTestId("input")).waitFor({ state: "visible" });
    return { page, requests, cspErrors };
  }

  beforeAll(async () => {
    browser = await launchBrowser();
    ui = await startUiLoupe();
  }, 300_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await ui?.stop();
  });

  it("is served as HTML under a strict CSP, and / leads to it", async () => {
    const response = await fetch(`${ui.url}/chat`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    const csp = response.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).not.toContain("unsafe-eval");
    const root = await fetch(`${ui.url}/`, { redirect: "follow" });
    expect(root.status).toBe(200);
    expect(await root.text()).toContain('data-testid="input"');
  });

  it("answers a question with citation chips whose thumbnails load, a video opening at its segment's start", async () => {
    const { page, requests, cspErrors } = await openChat();
    const message = await askAndWait(page, QUESTION);
    expect(await message.locator(byTestId("answer-text")).textContent()).toContain(ANSWER_START);
    expect(await page.locator(byTestId("message-user")).last().textContent()).toContain(QUESTION);

    const chips = message.locator(byTestId("citation-chip"));
    const ids = await chips.evaluateAll((elements) =>
      elements.map((element) => element.getAttribute("data-id")),
    );
    expect(ids).toContain(ui.citedSegment.id);
    expect(ids.some((id) => id !== null && ui.images.concat(ui.screenshot).includes(id))).toBe(true);
    const widths = await thumbnailWidths(message);
    expect(widths.length).toBeGreaterThan(0);
    for (const width of widths) expect(width).toBeGreaterThan(0);

    await expectVideoAtSegmentStart(page, message, ui.citedSegment);
    await page.keyboard.press("Escape");
    await page.locator(byTestId("viewer")).waitFor({ state: "hidden", timeout: 5_000 });

    const origins = new Set(requests.map((request) => requestOrigin(request.url())));
    origins.delete("data:");
    expect([...origins]).toEqual([ui.url]);
    expect(cspErrors).toEqual([]);
  });

  it("searches the corpus and shows the results as a grid with scores and kinds", async () => {
    const { page } = await openChat();
    await page.locator(byTestId("search-input")).fill("red circle");
    await page.locator(byTestId("search-submit")).click();
    const results = page.locator(byTestId("search-result"));
    await results.first().waitFor({ state: "visible" });
    const items = await results.evaluateAll((elements) =>
      elements.map((element) => ({
        id: element.getAttribute("data-id"),
        kind: element.getAttribute("data-kind"),
        score: Number(element.getAttribute("data-score")),
      })),
    );
    expect(items.length).toBeGreaterThan(0);
    for (const item of items) {
      expect(item.id).toMatch(/^(img|seg|tri)_[0-9a-f]{32}$/);
      expect(["image", "video_segment", "triple"]).toContain(item.kind);
      expect(Number.isFinite(item.score)).toBe(true);
    }
  });

  it("has no serious or critical axe-core violations, before and after an answer", async () => {
    const { page } = await openChat();
    expect(await seriousAxeViolations(page)).toEqual([]);
    await askAndWait(page, QUESTION);
    expect(await seriousAxeViolations(page)).toEqual([]);
  });

  it("follows the colour scheme and language of the browser, at 320 px too; screenshots for the README", async () => {
    const light = await openChat({ colorScheme: "light" });
    await askAndWait(light.page, QUESTION);
    const dark = await openChat({ colorScheme: "dark" });
    await askAndWait(dark.page, QUESTION);
    const chinese = await openChat({ colorScheme: "light", locale: "zh-CN" });
    await askAndWait(chinese.page, "哪些图片里有红色的形状？");

    const lightBackground = luminance(await backgroundOf(light.page.locator(byTestId("input"))));
    const darkBackground = luminance(await backgroundOf(dark.page.locator(byTestId("input"))));
    expect(lightBackground).toBeGreaterThan(0.5);
    expect(darkBackground).toBeLessThan(0.2);
    expect(hasChinese((await light.page.locator("body").textContent()) ?? "")).toBe(false);
    expect(hasChinese(await chinese.page.locator(byTestId("send")).evaluate(labelOf))).toBe(true);

    // Nothing overflows sideways at 320 px, the narrowest phone width.
    const narrow = await openChat({ width: 320 });
    await askAndWait(narrow.page, QUESTION);
    const overflow = await narrow.page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);

    for (const [name, shot] of [
      ["chat-light", light],
      ["chat-dark", dark],
      ["chat-zh", chinese],
    ] as const) {
      const png = await shot.page.screenshot({ type: "png" });
      expect(png.length).toBeGreaterThan(10_000);
      await saveScreenshot(name, png);
    }
  });
});

/** An element's accessible label as a person would meet it: `aria-label`, `title` or text. */
function labelOf(element: Element): string {
  return `${element.getAttribute("aria-label") ?? ""} ${element.getAttribute("title") ?? ""} ${element.textContent ?? ""}`;
}
