/**
 * The browser side of `layout.ts`: its nodes made into DOM elements, and the UI's words set on them.
 */
import type { StringKey, Strings } from "./i18n.ts";
import type { Node } from "./layout.ts";

/** DOM nodes of `node`, made in `document`. */
export function renderDom(node: Node, document: Document): HTMLElement {
  const element = document.createElement(node.tag);
  for (const [name, value] of Object.entries(node.attrs)) element.setAttribute(name, value);
  const glyph = node.attrs["data-glyph"];
  if (glyph !== undefined) element.textContent = glyph;
  for (const child of node.children) element.append(renderDom(child, document));
  return element;
}

/** Sets every text, label and placeholder under `root` that names a string key. */
export function applyStrings(root: ParentNode, strings: Strings): void {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = strings[element.getAttribute("data-i18n") as StringKey] ?? "";
  }
  for (const element of root.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", strings[element.getAttribute("data-i18n-label") as StringKey] ?? "");
  }
  for (const element of root.querySelectorAll("[data-i18n-placeholder]")) {
    element.setAttribute(
      "placeholder",
      strings[element.getAttribute("data-i18n-placeholder") as StringKey] ?? "",
    );
  }
}
