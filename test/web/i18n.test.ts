import { describe, expect, it } from "vitest";
import { en, format, formatBytes, pickLanguage, stringsFor, zh } from "../../web/src/i18n.ts";

describe("the UI's strings", () => {
  it("has the same keys in English and Chinese, none empty, with the same placeholders", () => {
    expect(Object.keys(zh).sort()).toEqual(Object.keys(en).sort());
    for (const [key, english] of Object.entries(en)) {
      const chinese = zh[key as keyof typeof en];
      expect(english.trim(), key).not.toBe("");
      expect(chinese.trim(), key).not.toBe("");
      const placeholders = (text: string) => (text.match(/\{\w+\}/g) ?? []).sort();
      expect(placeholders(chinese), key).toEqual(placeholders(english));
    }
    // Every Chinese string but the product's name is written in Chinese.
    for (const [key, text] of Object.entries(zh)) {
      if (key !== "assistant") expect(/[\u4e00-\u9fff]/u.test(text), key).toBe(true);
    }
  });

  it("picks the language from data-lang, else the browser's languages, else English", () => {
    expect(pickLanguage("zh", ["en-US"])).toBe("zh");
    expect(pickLanguage("en", ["zh-CN"])).toBe("en");
    expect(pickLanguage(undefined, ["zh-CN", "en"])).toBe("zh");
    expect(pickLanguage(null, ["zh-Hant-TW"])).toBe("zh");
    expect(pickLanguage("", ["fr-FR", "zh-CN"])).toBe("zh");
    expect(pickLanguage(undefined, ["fr-FR", "de"])).toBe("en");
    // A language the UI lacks, asked for explicitly, gets English rather than the browser's language.
    expect(pickLanguage("fr", ["zh-CN"])).toBe("en");
    expect(stringsFor("zh")).toBe(zh);
    expect(stringsFor("en")).toBe(en);
  });

  it("fills placeholders and writes sizes for people", () => {
    expect(
      format("{name} is too large: images may be at most {size}.", { name: "a.png", size: "20 MB" }),
    ).toBe("a.png is too large: images may be at most 20 MB.");
    expect(format("keeps {unknown}", {})).toBe("keeps {unknown}");
    expect(formatBytes(900)).toBe("900 B");
    expect(formatBytes(2048)).toBe("2 KB");
    expect(formatBytes(20 * 1024 * 1024)).toBe("20 MB");
    expect(formatBytes(1.5 * 1024 * 1024)).toBe("1.5 MB");
  });
});
