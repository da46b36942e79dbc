import { describe, expect, it } from "vitest";
import { correctRecognizedText } from "../../../src/inference/ocr/text-correction.ts";

describe("correctRecognizedText", () => {
  it("reads digits inside words as the letters they look like, in the word's case", () => {
    expect(correctRecognizedText("Err0r c0de: 0RA-42589")).toBe("Error code: ORA-42589");
    expect(correctRecognizedText("12:49:03 INF0 | cache warmed")).toBe("12:49:03 INFO | cache warmed");
    expect(correctRecognizedText("20:46:20 ERR0R E9296: Installing")).toBe(
      "20:46:20 ERROR E9296: Installing",
    );
    expect(correctRecognizedText("Login fai1ed for F1LE 5ERVER")).toBe("Login failed for FILE 5ERVER");
    expect(correctRecognizedText("08:40:20 ERROR 0ut of memory")).toBe("08:40:20 ERROR Out of memory");
  });

  it("leaves codes, numbers and names with a trailing digit alone", () => {
    for (const text of [
      "E1234",
      "0x800776C3",
      "ERR_HEAP_EXHAUSTED_22",
      "v2.3.1",
      "eth0 sha1 MD5 l10n x10 I0-45051",
      "port 5432 at 10.0.0.1",
      "错误 0x800776C3：网络不可达",
    ])
      expect(correctRecognizedText(text)).toBe(text);
  });
});
