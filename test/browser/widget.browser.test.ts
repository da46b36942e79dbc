/**
 * The embeddable widget in a real headless Chromium against a real Loupe with API keys on: a host page,
 * served from another origin under a strict CSP of its own (Loupe's origin allowed, no `unsafe-inline`),
 * embeds `widget.js` with a publishable key for that origin. From there the widget answers with thumbnails
 * that load, takes a pasted screenshot, opens a cited video at its segment's start, answers through its
 * JS API, talks to no origin but Loupe's and the host's, violates no CSP, survives hostile host CSS
 * (`* { all: unset }`, `button { display: none }`) and has no serious or critical axe-core violations;
 * from an origin the key does not list it shows the refusal sentence. Screenshots (light, dark, Chinese)
 * are written for the README.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
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

/** Styles a careless (or hostile) host page might have; they must not reach into the widget. */
const HOSTILE_CSS = "* { all: unset !important; } button { display: none !important; }";

const escapeAttribute = (text: string): string =>
  text.replaceAll("&", "&amp;").replaceAll('"', "&quot;").replaceAll("<", "&lt;");

/**
 * A support tool's page on its own origin: `/?theme=&lang=&title=&hostile=1` embeds the widget with those
 * `data-` attributes (and the hostile stylesheet); `/host.css` is that stylesheet. Its CSP allows
 * scripts, connections, images and media from itself and Loupe only, and no inline code or style.
 */
async function startHostPage(
  loupe: () => { url: string; key: string },
): Promise<{ origin: string; server: Server }> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://host.invalid");
    if (url.pathname === "/host.css") {
      response.writeHead(200, { "content-type": "text/css" });
      response.end(HOSTILE_CSS);
      return;
    }
    if (url.pathname !== "/") {
      response.writeHead(404).end();
      return;
    }
    const { url: loupeUrl, key } = loupe();
    const attributes = [
      `src="${escapeAttribute(`${loupeUrl}/widget.js`)}"`,
      `data-key="${escapeAttribute(key)}"`,
      `data-title="${escapeAttribute(url.searchParams.get("title") ?? "Ask about your screenshots")}"`,
      ...["theme", "lang"].flatMap((name) => {
        const value = url.searchParams.get(name);
        return value === null ? [] : [`data-${name}="${escapeAttribute(value)}"`];
      }),
    ];
    const hostile = url.searchParams.get("hostile") === "1" ? '<link rel="stylesheet" href="/host.css">' : "";
    response.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": [
        "default-src 'self'",
        `script-src 'self' ${loupeUrl}`,
        `connect-src 'self' ${loupeUrl}`,
        `img-src 'self' ${loupeUrl} blob: data:`,
        `media-src 'self' ${loupeUrl} blob:`,
        `style-src 'self' ${loupeUrl}`,
        `font-src 'self' ${loupeUrl}`,
      ].join("; "),
    });
    response.end(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Helpdesk</title>${hostile}</head>` +
        "<body><main><h1>Ticket 4012</h1><p>The customer attached a screenshot of a failed payment.</p>" +
        `<button id="host-button" type="button">Reply</button></main><script ${attributes.join(" ")} async></script></body></html>`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe("the widget embedded in another origin's page, in Chromium", () => {
  let browser: Browser;
  let ui: UiLoupe;
  let key = "";
  let allowed: { origin: string; server: Server };
  let refused: { origin: string; server: Server };
  const contexts: BrowserContext[] = [];

  /** Opens the host page (`query` as its query string), with its requests and CSP complaints recorded. */
  async function openHost(
    host: { origin: string },
    query = "",
    options: { colorScheme?: "light" | "dark"; locale?: string; width?: number } = {},
  ): Promise<{ page: Page; requests: Request[]; cspErrors: string[] }> {
    const context = await browser.newContext({
      viewport: { width: options.width ?? 1000, height: 760 },
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
    const response = await page.goto(`${host.origin}/${query}`);
    expect(response?.status()).toBe(200);
    await page.locator(byTestId("launcher")).waitFor({ state: "visible" });
    return { page, requests, cspErrors };
  }

  /** Clicks the launcher and waits for the panel and its input. */
  async function openPanel(page: Page): Promise<void> {
    await page.locator(byTestId("launcher")).click();
    await page.locator(byTestId("panel")).waitFor({ state: "visible" });
    await page.locator(byTestId("input")).waitFor({ state: "visible" });
  }

  /** The origins `requests` went to, `data:` URLs left out. */
  function originsOf(requests: Request[]): string[] {
    const origins = new Set(requests.map((request) => requestOrigin(request.url())));
    origins.delete("data:");
    return [...origins].sort();
  }

  beforeAll(async () => {
    browser = await launchBrowser();
    const current = () => ({ url: ui.url, key });
    allowed = await startHostPage(current);
    refused = await startHostPage(current);
    ui = await startUiLoupe();
    key = await ui.createPublishableKey([allowed.origin]);
    expect(key).toMatch(/^loupe_pk_/);
  }, 300_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await ui?.stop();
    for (const host of [allowed, refused]) await new Promise((resolve) => host?.server.close(resolve));
  });

  it("serves widget.js as JavaScript", async () => {
    const response = await fetch(`${ui.url}/widget.js`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^(application|text)\/javascript/);
    expect((await response.text()).length).toBeGreaterThan(1000);
  });

  it("from an allowed origin: answers with thumbnails that load and opens a cited video at its segment's start", async () => {
    const { page, requests, cspErrors } = await openHost(allowed);
    const host = page.locator("#loupe-widget-host");
    expect(await host.evaluate((element) => element.shadowRoot?.mode)).toBe("open");
    await openPanel(page);
    expect(await page.locator(byTestId("panel")).getAttribute("role")).toBe("dialog");

    const message = await askAndWait(page, QUESTION);
    expect(await message.locator(byTestId("answer-text")).textContent()).toContain(ANSWER_START);
    const widths = await thumbnailWidths(message);
    expect(widths.length).toBeGreaterThan(0);
    for (const width of widths) expect(width).toBeGreaterThan(0);
    await expectVideoAtSegmentStart(page, message, ui.citedSegment);

    expect(originsOf(requests)).toEqual([allowed.origin, ui.url].sort());
    expect(cspErrors).toEqual([]);
  });

  it("a pasted screenshot is previewed, sent with the question and answered; thumbs up is recorded", async () => {
    const { page, requests } = await openHost(allowed);
    await openPanel(page);
    await page.locator(byTestId("input")).evaluate((textarea, base64) => {
      const bytes = Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], "screenshot.png", { type: "image/png" }));
      textarea.dispatchEvent(
        new ClipboardEvent("paste", {
          clipboardData: transfer,
          bubbles: true,
          cancelable: true,
          composed: true,
        }),
      );
    }, ui.screenshotBytes.toString("base64"));
    await page.locator(byTestId("attachment-preview")).first().waitFor({ state: "visible" });
    expect(await page.locator(byTestId("attachment-preview")).count()).toBe(1);

    const message = await askAndWait(page, "What does the error in this screenshot say?");
    expect(await message.locator(byTestId("answer-text")).textContent()).toContain(ANSWER_START);
    const chats = requests.filter(
      (request) => request.method() === "POST" && new URL(request.url()).pathname === "/v1/chat",
    );
    expect(chats.length).toBe(1);
    const body = chats[0]?.postDataBuffer() ?? Buffer.alloc(0);
    // The image travels as a data URL in JSON or as a multipart file: PNG, JPEG or WebP either way.
    const carriesImage =
      /data:image\/(png|jpeg|webp);base64,/.test(body.toString("latin1")) ||
      body.includes(Buffer.from("\x89PNG", "latin1")) ||
      body.includes(Buffer.from([0xff, 0xd8, 0xff])) ||
      body.includes(Buffer.from("WEBPVP8", "latin1"));
    expect(carriesImage).toBe(true);
    expect(body.toString("latin1")).toContain("What does the error in this screenshot say?");

    // Thumbs up on that answer is recorded, with the publishable key, from the host's origin.
    const [feedback] = await Promise.all([
      page.waitForResponse((response) => new URL(response.url()).pathname === "/v1/feedback"),
      message.locator(byTestId("feedback-up")).click(),
    ]);
    expect(feedback.status()).toBeLessThan(300);
    const sent = JSON.parse(feedback.request().postData() ?? "{}") as { rating?: string; question?: string };
    expect(sent.rating).toBe("up");
    expect(sent.question).toContain("What does the error in this screenshot say?");
    expect(originsOf(requests)).toEqual([allowed.origin, ui.url].sort());
  });

  it("the JS API asks and reports the answer", async () => {
    const { page } = await openHost(allowed);
    const result = await page.evaluate(async (question) => {
      const api = (
        window as unknown as {
          Loupe: {
            ask(text: string): Promise<unknown>;
            on(event: string, handler: (value: unknown) => void): void;
          };
        }
      ).Loupe;
      const announced = new Promise((resolve) => api.on("answer", resolve));
      const answer = await api.ask(question);
      return { answer: JSON.stringify(answer), announced: JSON.stringify(await announced) };
    }, QUESTION);
    expect(result.answer).toContain(ANSWER_START);
    expect(result.announced).toContain(ANSWER_START);
  });

  it("from an origin the key does not list, shows the refusal sentence", async () => {
    const { page } = await openHost(refused);
    await openPanel(page);
    await page.locator(byTestId("input")).fill(QUESTION);
    await page.locator(byTestId("input")).press("Enter");
    const error = page.locator(byTestId("error-message"));
    await error.waitFor({ state: "visible" });
    expect(((await error.textContent()) ?? "").toLowerCase()).toContain("not allowed");
  });

  it("hostile host CSS does not break it; Escape closes the panel", async () => {
    const { page } = await openHost(allowed, "?hostile=1");
    // The host's stylesheet applies to the host's own page…
    expect(await page.locator("#host-button").isVisible()).toBe(false);
    // …but not inside the widget.
    const launcher = page.locator(byTestId("launcher"));
    const box = await launcher.boundingBox();
    expect(box?.width ?? 0).toBeGreaterThanOrEqual(24);
    expect(box?.height ?? 0).toBeGreaterThanOrEqual(24);
    await openPanel(page);
    const panel = await page.locator(byTestId("panel")).boundingBox();
    expect(panel?.width ?? 0).toBeGreaterThan(200);
    expect(panel?.height ?? 0).toBeGreaterThan(200);
    expect((panel?.x ?? -1) >= 0 && (panel?.y ?? -1) >= 0).toBe(true);
    expect((panel?.x ?? 0) + (panel?.width ?? 0)).toBeLessThanOrEqual(1000);
    expect((panel?.y ?? 0) + (panel?.height ?? 0)).toBeLessThanOrEqual(760);
    expect(await page.locator(byTestId("send")).isVisible()).toBe(true);
    const message = await askAndWait(page, QUESTION);
    expect(await message.locator(byTestId("answer-text")).textContent()).toContain(ANSWER_START);
    await page.keyboard.press("Escape");
    await page.locator(byTestId("panel")).waitFor({ state: "hidden", timeout: 5_000 });
  });

  it("at 320 px wide, the open panel fits the screen", async () => {
    const { page } = await openHost(allowed, "", { width: 320 });
    await openPanel(page);
    await askAndWait(page, QUESTION);
    const panel = await page.locator(byTestId("panel")).boundingBox();
    expect(panel?.x ?? -1).toBeGreaterThanOrEqual(0);
    expect((panel?.x ?? 0) + (panel?.width ?? 1000)).toBeLessThanOrEqual(320);
    expect(await page.locator(byTestId("send")).isVisible()).toBe(true);
  });

  it("has no serious or critical axe-core violations with the panel open and an answer shown", async () => {
    const { page } = await openHost(allowed);
    await openPanel(page);
    expect(await seriousAxeViolations(page)).toEqual([]);
    await askAndWait(page, QUESTION);
    expect(await seriousAxeViolations(page)).toEqual([]);
  });

  it("follows data-theme, the colour scheme and data-lang; screenshots for the README", async () => {
    const shots: Array<[string, Page]> = [];
    for (const [name, query, colorScheme, question] of [
      ["widget-light", "?theme=light", "dark", QUESTION],
      ["widget-dark", "", "dark", QUESTION],
      ["widget-zh", `?lang=zh&title=${encodeURIComponent("询问截图")}`, "light", "哪些图片里有红色的形状？"],
    ] as const) {
      const { page } = await openHost(allowed, query, { colorScheme });
      await openPanel(page);
      await askAndWait(page, question);
      shots.push([name, page]);
    }
    const [light, dark, chinese] = shots.map(([, page]) => page) as [Page, Page, Page];
    // data-theme="light" wins over a dark system scheme; without it the system's dark scheme is followed.
    expect(luminance(await backgroundOf(light.locator(byTestId("panel"))))).toBeGreaterThan(0.5);
    expect(luminance(await backgroundOf(dark.locator(byTestId("panel"))))).toBeLessThan(0.2);
    expect(hasChinese((await light.locator(byTestId("panel")).textContent()) ?? "")).toBe(false);
    expect(hasChinese(await chinese.locator(byTestId("input")).evaluate(placeholderAndLabel))).toBe(true);
    for (const [name, page] of shots) {
      const png = await page.screenshot({ type: "png" });
      expect(png.length).toBeGreaterThan(10_000);
      await saveScreenshot(name, png);
    }
  });
});

/** A text field's placeholder and accessible label. */
function placeholderAndLabel(element: Element): string {
  return `${element.getAttribute("placeholder") ?? ""} ${element.getAttribute("aria-label") ?? ""}`;
}
