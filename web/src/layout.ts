/**
 * The UI's fixed structure, described once as data and rendered two ways: into DOM nodes by the widget
 * (no `innerHTML`, so a host page's Trusted Types policy is no obstacle) and into HTML by the build for
 * the chat page, whose markup is then served as it is and wired up by its script. Words are not in
 * the structure: elements name a string key (`data-i18n`, `data-i18n-label`, `data-i18n-placeholder`)
 * and `applyStrings` (`dom.ts`) fills them in the UI's language. No DOM types here: the build renders it in Node.
 */
import type { StringKey, Strings } from "./i18n.ts";

/** An element: tag, attributes, children. */
export interface Node {
  tag: string;
  attrs: Record<string, string>;
  children: Node[];
}

/** Builds a {@link Node}. */
export function h(tag: string, attrs: Record<string, string> = {}, children: Node[] = []): Node {
  return { tag, attrs, children };
}

const text = (key: StringKey): Record<string, string> => ({ "data-i18n": key });
const label = (key: StringKey): Record<string, string> => ({ "data-i18n-label": key });

/** The conversation: messages, status, composer. `idPrefix` keeps ids unique on a page. */
export function chatSkeleton(idPrefix: string): Node {
  return h("div", { class: "chat" }, [
    h("div", {
      class: "messages",
      "data-part": "messages",
      role: "log",
      "aria-live": "off",
      tabindex: "0",
      ...label("title"),
    }),
    h("div", { class: "status", "data-testid": "status", role: "status", "aria-live": "polite" }),
    h("div", { class: "error", "data-part": "error", hidden: "" }, [
      h("p", { "data-testid": "error-message", role: "alert" }),
      h("button", { type: "button", class: "secondary", "data-testid": "retry", ...text("retry") }),
    ]),
    h("form", { class: "composer", "data-part": "composer", novalidate: "" }, [
      h("div", { class: "attachments", "data-part": "attachments" }),
      h("p", { class: "problem", "data-part": "problem", role: "alert", hidden: "" }),
      h("label", { class: "sr-only", for: `${idPrefix}-input`, ...text("input") }),
      h("textarea", {
        id: `${idPrefix}-input`,
        "data-testid": "input",
        rows: "2",
        maxlength: "4000",
        "aria-describedby": `${idPrefix}-limits`,
        "data-i18n-placeholder": "placeholder",
        ...label("input"),
      }),
      h("div", { class: "row" }, [
        h("button", { type: "button", class: "icon", "data-testid": "attach", ...label("attach") }, [
          h("span", { "aria-hidden": "true", "data-glyph": "+" }),
        ]),
        h("input", {
          type: "file",
          class: "sr-only",
          tabindex: "-1",
          accept: "image/png,image/jpeg,image/webp,image/gif",
          multiple: "",
          "data-testid": "file-input",
          ...label("attach"),
        }),
        h("p", { class: "limits", id: `${idPrefix}-limits`, "data-part": "limits" }),
        h("button", {
          type: "button",
          class: "secondary",
          "data-testid": "stop",
          hidden: "",
          ...text("stop"),
        }),
        h("button", { type: "submit", class: "primary", "data-testid": "send", ...text("send") }),
      ]),
    ]),
  ]);
}

/** The full page: header with the corpus search, results, and the conversation. */
export function pageSkeleton(): Node {
  return h("div", { class: "loupe page" }, [
    h("header", { class: "top" }, [
      h("h1", { ...text("title") }),
      h("form", { class: "search", role: "search", "data-part": "search", novalidate: "" }, [
        h("label", { class: "sr-only", for: "loupe-search", ...text("searchLabel") }),
        h("input", {
          id: "loupe-search",
          type: "search",
          "data-testid": "search-input",
          maxlength: "1000",
          "data-i18n-placeholder": "searchPlaceholder",
          ...label("searchLabel"),
        }),
        h("button", { type: "button", class: "icon", "data-part": "search-image", ...label("searchImage") }, [
          h("span", { "aria-hidden": "true", "data-glyph": "+" }),
        ]),
        h("input", {
          type: "file",
          class: "sr-only",
          tabindex: "-1",
          accept: "image/png,image/jpeg,image/webp,image/gif",
          "data-part": "search-file",
          ...label("searchImage"),
        }),
        h("button", {
          type: "submit",
          class: "primary",
          "data-testid": "search-submit",
          ...text("searchSubmit"),
        }),
      ]),
    ]),
    h("main", { class: "columns" }, [
      h("section", { class: "results", "data-part": "results", ...label("searchLabel") }, [
        h("p", {
          class: "results-status",
          "data-part": "results-status",
          "aria-live": "polite",
          ...text("searchHint"),
        }),
        h("ul", { class: "grid", "data-part": "grid" }),
      ]),
      h("section", { class: "conversation", ...label("title") }, [chatSkeleton("loupe-page")]),
    ]),
  ]);
}

/** The widget: launcher and panel. */
export function widgetSkeleton(): Node {
  return h("div", { class: "loupe widget" }, [
    h(
      "button",
      {
        type: "button",
        class: "launcher",
        "data-testid": "launcher",
        "aria-expanded": "false",
        "aria-controls": "loupe-panel",
        ...label("open"),
      },
      [h("span", { "aria-hidden": "true", "data-glyph": "?" })],
    ),
    h(
      "div",
      {
        id: "loupe-panel",
        class: "panel",
        "data-testid": "panel",
        role: "dialog",
        "aria-labelledby": "loupe-title",
        hidden: "",
      },
      [
        h("div", { class: "panel-head" }, [
          h("h2", { id: "loupe-title", "data-part": "title", ...text("title") }),
          h("button", { type: "button", class: "icon", "data-part": "close", ...label("close") }, [
            h("span", { "aria-hidden": "true", "data-glyph": "×" }),
          ]),
        ]),
        chatSkeleton("loupe-widget"),
      ],
    ),
  ]);
}

const escapeHtml = (value: string): string =>
  value.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

const VOID = new Set(["input", "br", "img", "meta", "link"]);

/** The HTML of `node` (used by the build for the chat page; glyphs become text). */
export function renderHtml(node: Node, strings?: Strings): string {
  const named: Record<string, string> = { ...node.attrs };
  if (strings !== undefined) {
    const labelKey = node.attrs["data-i18n-label"] as StringKey | undefined;
    const placeholderKey = node.attrs["data-i18n-placeholder"] as StringKey | undefined;
    if (labelKey !== undefined) named["aria-label"] = strings[labelKey];
    if (placeholderKey !== undefined) named.placeholder = strings[placeholderKey];
  }
  const attrs = Object.entries(named)
    .map(([name, value]) => (value === "" ? ` ${name}` : ` ${name}="${escapeHtml(value)}"`))
    .join("");
  if (VOID.has(node.tag)) return `<${node.tag}${attrs}>`;
  const glyph = node.attrs["data-glyph"] ?? "";
  const key = node.attrs["data-i18n"] as StringKey | undefined;
  const inner = key !== undefined && strings !== undefined ? strings[key] : glyph;
  return `<${node.tag}${attrs}>${escapeHtml(inner)}${node.children.map((child) => renderHtml(child, strings)).join("")}</${node.tag}>`;
}
