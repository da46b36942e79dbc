import { describe, expect, it } from "vitest";
import { en } from "../../web/src/i18n.ts";
import { chatSkeleton, h, pageSkeleton, renderHtml, widgetSkeleton } from "../../web/src/layout.ts";

/** Every value of `attribute` in a tree. */
function attributeValues(node: ReturnType<typeof h>, attribute: string): string[] {
  const own = node.attrs[attribute];
  return [
    ...(own === undefined ? [] : [own]),
    ...node.children.flatMap((child) => attributeValues(child, attribute)),
  ];
}

const CHAT_TEST_IDS = ["input", "send", "stop", "retry", "attach", "file-input", "error-message", "status"];

describe("the UI's layout", () => {
  it("carries the test ids of the contract, in the widget and in the page", () => {
    expect(attributeValues(chatSkeleton("x"), "data-testid")).toEqual(expect.arrayContaining(CHAT_TEST_IDS));
    expect(attributeValues(widgetSkeleton(), "data-testid")).toEqual(
      expect.arrayContaining([...CHAT_TEST_IDS, "launcher", "panel"]),
    );
    expect(attributeValues(pageSkeleton(), "data-testid")).toEqual(
      expect.arrayContaining([...CHAT_TEST_IDS, "search-input", "search-submit"]),
    );
  });

  it("names only string keys that exist, and gives every id once", () => {
    for (const tree of [widgetSkeleton(), pageSkeleton()]) {
      for (const attribute of ["data-i18n", "data-i18n-label", "data-i18n-placeholder"]) {
        for (const key of attributeValues(tree, attribute)) expect(Object.keys(en)).toContain(key);
      }
      const ids = attributeValues(tree, "id");
      expect(new Set(ids).size).toBe(ids.length);
    }
  });

  it("renders HTML with the words filled in and attribute values escaped", () => {
    const html = renderHtml(pageSkeleton(), en);
    expect(html).toContain('data-testid="input"');
    expect(html).toContain(`aria-label="${en.input}"`);
    expect(html).toContain(`>${en.send}</button>`);
    expect(html).not.toMatch(/<script|style=/);
    expect(renderHtml(h("p", { title: '"><img src=x>' }))).toBe(
      '<p title="&quot;&gt;&lt;img src=x&gt;"></p>',
    );
  });
});
