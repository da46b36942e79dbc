/**
 * The chat page's script (`/chat.js`): the page's markup is served ready (`layout.ts`, rendered by the
 * build), and this wires the conversation onto it, plus the corpus search: by text or by an image,
 * results as a grid of thumbnails with score and kind; choosing one asks about it.
 */
import { mountChat } from "./chat-ui.ts";
import { LoupeClient, RequestFailure, type SearchItem } from "./client.ts";
import { applyStrings } from "./dom.ts";
import { describeFailure } from "./errors.ts";
import { format, pickLanguage, stringsFor } from "./i18n.ts";
import { parseLimits } from "./limits.ts";
import { constructedSheet } from "./styles.ts";

function start(): void {
  const root = document.documentElement;
  const language = pickLanguage(root.dataset.lang, navigator.languages ?? [navigator.language]);
  const strings = stringsFor(language);
  root.lang = language;
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, constructedSheet(":root")];
  const page = document.querySelector(".loupe.page") as HTMLElement;
  applyStrings(page, strings);
  document.title = strings.title;
  // The page is same-origin: no key, unless one was stored for this tab (a keyed server's pages
  // stay usable with a key pasted into sessionStorage under `loupe.key`).
  const client = new LoupeClient({
    base: location.origin,
    apiKey: sessionStorage.getItem("loupe.key") ?? undefined,
  });
  const chat = mountChat({
    root: page.querySelector(".conversation") as HTMLElement,
    client,
    strings,
    limits: parseLimits(root.dataset.limits),
    emit: () => undefined,
  });

  const form = page.querySelector('[data-part="search"]') as HTMLFormElement;
  const input = page.querySelector('[data-testid="search-input"]') as HTMLInputElement;
  const imageButton = page.querySelector('[data-part="search-image"]') as HTMLButtonElement;
  const fileInput = page.querySelector('[data-part="search-file"]') as HTMLInputElement;
  const grid = page.querySelector('[data-part="grid"]') as HTMLElement;
  const resultsStatus = page.querySelector('[data-part="results-status"]') as HTMLElement;
  let searching: AbortController | undefined;
  const revokers: Array<() => void> = [];

  const result = (item: SearchItem): HTMLElement => {
    const cell = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.testid = "search-result";
    button.dataset.id = item.id;
    button.dataset.kind = item.kind;
    button.dataset.score = String(item.score);
    const thumb = document.createElement("img");
    thumb.alt = "";
    client.mediaSource(item.thumbnailUrl).then(
      (source) => {
        revokers.push(source.revoke);
        thumb.src = source.url;
      },
      () => thumb.remove(),
    );
    const meta = document.createElement("span");
    meta.className = "meta";
    const kind = document.createElement("span");
    kind.textContent = item.kind === "video_segment" ? `video ${item.start ?? 0}s` : item.kind;
    const score = document.createElement("span");
    score.textContent = item.score.toFixed(3);
    meta.append(kind, score);
    const name = document.createElement("span");
    name.className = "sr-only";
    name.textContent = format(strings.askAbout, { name: item.id });
    button.append(name, thumb, meta);
    button.addEventListener("click", () => {
      chat.prefill(format(strings.tellMeAbout, { name: item.id }));
    });
    cell.append(button);
    return cell;
  };

  const search = async (query: { text?: string; image?: string }): Promise<void> => {
    searching?.abort();
    const abort = new AbortController();
    searching = abort;
    resultsStatus.textContent = "…";
    try {
      const items = await client.search(query, abort.signal);
      for (const revoke of revokers.splice(0)) revoke();
      grid.replaceChildren(...items.map(result));
      resultsStatus.textContent =
        items.length === 0 ? strings.searchNone : format(strings.searchCount, { n: items.length });
    } catch (error) {
      if (abort.signal.aborted) return;
      const facts = error instanceof RequestFailure ? error.facts : { offline: true };
      resultsStatus.textContent = describeFailure(facts, strings).sentence;
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (text !== "") void search({ text });
  });
  imageButton.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files?.[0];
    fileInput.value = "";
    if (file === undefined) return;
    const reader = new FileReader();
    reader.onload = () => void search({ image: String(reader.result) });
    reader.readAsDataURL(file);
  });
  chat.focus();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start, { once: true });
else start();
