/**
 * `widget.js`: the assistant a page embeds with one script tag. It finds Loupe's origin from its own
 * `src` (never from the host page), renders a launcher and a panel inside an open shadow root on
 * `<div id="loupe-widget-host">` (host styles cannot reach in, its styles cannot leak out), talks only
 * to that origin, and exposes `window.Loupe`: `open()`, `close()`, `ask(text, { images })`, `on(event,
 * handler)` with `answer`, `open`, `close` and `error`.
 */
import { mountChat } from "./chat-ui.ts";
import { LoupeClient } from "./client.ts";
import { applyStrings, renderDom } from "./dom.ts";
import { pickLanguage, stringsFor } from "./i18n.ts";
import { widgetSkeleton } from "./layout.ts";
import { parseLimits } from "./limits.ts";
import { constructedSheet } from "./styles.ts";

/** Replaced by the server with its limits as JSON when it serves the file. */
const SERVED_LIMITS = "__LOUPE_LIMITS__";

type Handler = (value: unknown) => void;

/** The `window.Loupe` API. */
export interface LoupeWidgetApi {
  open(): void;
  close(): void;
  ask(text: string, options?: { images?: Blob[] }): Promise<unknown>;
  on(event: "answer" | "open" | "close" | "error", handler: Handler): () => void;
}

function start(script: HTMLScriptElement): LoupeWidgetApi {
  const base = new URL(script.src, document.baseURI).origin;
  const data = script.dataset;
  const strings = stringsFor(pickLanguage(data.lang, navigator.languages ?? [navigator.language]));
  let context: Record<string, unknown> = {};
  try {
    const parsed: unknown = data.context ? JSON.parse(data.context) : {};
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      // Only retrieval options: a host cannot slip in the question, images or history.
      for (const key of ["filter", "kinds", "topK"]) {
        if (key in parsed) context[key] = (parsed as Record<string, unknown>)[key];
      }
    }
  } catch {
    context = {};
  }

  const host = document.createElement("div");
  host.id = "loupe-widget-host";
  if (data.theme === "light" || data.theme === "dark") host.dataset.theme = data.theme;
  const shadow = host.attachShadow({ mode: "open" });
  shadow.adoptedStyleSheets = [constructedSheet(":host")];
  const ui = renderDom(widgetSkeleton(), document);
  ui.lang = strings === stringsFor("zh") ? "zh" : "en";
  applyStrings(ui, strings);
  if (data.title) {
    const title = ui.querySelector('[data-part="title"]');
    if (title !== null) title.textContent = data.title;
  }
  shadow.append(ui);
  document.body.append(host);

  const launcher = ui.querySelector('[data-testid="launcher"]') as HTMLButtonElement;
  const panel = ui.querySelector('[data-testid="panel"]') as HTMLElement;
  const closeButton = ui.querySelector('[data-part="close"]') as HTMLButtonElement;

  const handlers = new Map<string, Set<Handler>>();
  const emit = (event: string, value?: unknown): void => {
    for (const handler of handlers.get(event) ?? []) {
      try {
        handler(value);
      } catch (error) {
        console.error("Loupe: an event handler failed", error);
      }
    }
  };

  const chat = mountChat({
    root: panel,
    client: new LoupeClient({ base, apiKey: data.key }),
    strings,
    limits: parseLimits(SERVED_LIMITS),
    context,
    emit: (event, ...args) => emit(event, args[0]),
  });

  const open = (): void => {
    if (!panel.hidden) return;
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    chat.focus();
    emit("open");
  };
  const close = (): void => {
    if (panel.hidden) return;
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
    emit("close");
  };
  launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", (event) => {
    // With a source open, Escape closes that first (the dialog handles it).
    if (event.key === "Escape" && !chat.viewerOpen()) {
      event.preventDefault();
      close();
    }
  });

  return {
    open,
    close,
    ask(text, options = {}) {
      open();
      return chat.ask(text, options.images ?? []);
    },
    on(event, handler) {
      const set = handlers.get(event) ?? new Set<Handler>();
      set.add(handler);
      handlers.set(event, set);
      return () => set.delete(handler);
    },
  };
}

const script = document.currentScript;
if (script instanceof HTMLScriptElement && (window as { Loupe?: unknown }).Loupe === undefined) {
  const boot = (): void => {
    (window as unknown as { Loupe: LoupeWidgetApi }).Loupe = start(script);
  };
  if (document.body === null) document.addEventListener("DOMContentLoaded", boot, { once: true });
  else boot();
}
