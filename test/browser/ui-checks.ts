/**
 * Checks shared by the browser tests of the chat page and the widget. Selectors use the UI's
 * `data-testid`s; Playwright's CSS selectors pierce the widget's open shadow root, so the same checks
 * work on both.
 */
import type { Locator, Page } from "playwright-core";
import { expect } from "vitest";
import type { StoredSegment } from "../helpers/ui-loupe.ts";

/** `[data-testid="<id>"]`. */
export const byTestId = (id: string): string => `[data-testid="${id}"]`;

/** The text the LLM test server's answers start with. */
export const ANSWER_START = "It is shown";

/**
 * Types `question` into the input, sends it with Enter and waits until the new assistant message is done
 * (`aria-busy="false"`). Returns that message; fails at once with the UI's sentence when an error is shown
 * instead (so call it with no error on screen).
 */
export async function askAndWait(page: Page, question: string, timeout = 45_000): Promise<Locator> {
  const messages = page.locator(byTestId("message-assistant"));
  const before = await messages.count();
  const input = page.locator(byTestId("input"));
  await input.fill(question);
  await input.press("Enter");
  const outcome = await page.waitForFunction(
    ({ messageSelector, errorSelector, index }) => {
      // Walks open shadow roots too: the widget's messages are inside one.
      const find = (selector: string): Element[] => {
        const found: Element[] = [];
        const visit = (root: Document | ShadowRoot): void => {
          found.push(...root.querySelectorAll(selector));
          for (const element of root.querySelectorAll("*")) if (element.shadowRoot) visit(element.shadowRoot);
        };
        visit(document);
        return found;
      };
      // The error element may exist all along, hidden; it counts once it is rendered with a sentence.
      const shown = find(errorSelector).find(
        (element) => element.getClientRects().length > 0 && (element.textContent ?? "").trim() !== "",
      );
      if (shown !== undefined) return `error: ${shown.textContent}`;
      return find(messageSelector)[index]?.getAttribute("aria-busy") === "false" ? "done" : false;
    },
    {
      messageSelector: byTestId("message-assistant"),
      errorSelector: byTestId("error-message"),
      index: before,
    },
    { timeout, polling: 100 },
  );
  const result = await outcome.jsonValue();
  if (result !== "done")
    throw new Error(`asking "${question}" showed an error instead of an answer: ${result}`);
  return messages.nth(before);
}

/** Waits until every citation thumbnail in `scope` has loaded, and returns their natural widths. */
export async function thumbnailWidths(scope: Locator): Promise<number[]> {
  const thumbs = scope.locator(byTestId("citation-thumb"));
  const count = await thumbs.count();
  const widths: number[] = [];
  for (let index = 0; index < count; index += 1) {
    const thumb = thumbs.nth(index);
    await expect
      .poll(() => thumb.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0), {
        timeout: 15_000,
        interval: 100,
      })
      .toBe(true);
    widths.push(await thumb.evaluate((img: HTMLImageElement) => img.naturalWidth));
  }
  return widths;
}

/**
 * Clicks the chip citing `segment` in `scope`, and checks that the viewer opens with a video that has
 * loaded and stands at the segment's start (within 0.5 s).
 */
export async function expectVideoAtSegmentStart(
  page: Page,
  scope: Locator,
  segment: StoredSegment,
): Promise<void> {
  // A segment at 0 would pass even if the player never sought.
  expect(segment.startS).toBeGreaterThan(0);
  const chip = scope.locator(`${byTestId("citation-chip")}[data-id="${segment.id}"]`);
  expect(await chip.getAttribute("data-kind")).toBe("video_segment");
  await chip.click();
  const viewer = page.locator(byTestId("viewer"));
  await viewer.waitFor({ state: "visible", timeout: 10_000 });
  const video = viewer.locator(byTestId("viewer-video"));
  await video.waitFor({ state: "visible", timeout: 10_000 });
  await expect
    .poll(() => video.evaluate((element: HTMLVideoElement) => element.readyState >= 1 && !element.seeking), {
      timeout: 20_000,
      interval: 100,
    })
    .toBe(true);
  const state = await video.evaluate((element: HTMLVideoElement) => ({
    currentTime: element.currentTime,
    duration: element.duration,
    error: element.error?.code ?? null,
  }));
  expect(state.error).toBeNull();
  expect(state.duration).toBeGreaterThan(segment.startS);
  expect(Math.abs(state.currentTime - segment.startS)).toBeLessThanOrEqual(0.5);
}

/** Relative luminance (0 black – 1 white) of a CSS `rgb()`/`rgba()` colour. */
export function luminance(color: string): number {
  const [r = 0, g = 0, b = 0] = (color.match(/[\d.]+/g) ?? []).map(Number);
  const channel = (value: number): number => {
    const c = value / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

/** The first non-transparent background colour of `locator`'s element or its ancestors (shadow hosts included). */
export function backgroundOf(locator: Locator): Promise<string> {
  return locator.evaluate((start: Element) => {
    let element: Element | null = start;
    while (element !== null) {
      const color = getComputedStyle(element).backgroundColor;
      if (color !== "transparent" && color !== "rgba(0, 0, 0, 0)") return color;
      element =
        element.parentElement ?? ((element.getRootNode() as ShadowRoot).host as Element | undefined) ?? null;
    }
    return "rgb(255, 255, 255)";
  });
}

/** Whether a text has Chinese characters. */
export const hasChinese = (text: string): boolean => /[\u4e00-\u9fff]/u.test(text);
