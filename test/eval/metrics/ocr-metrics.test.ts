import { describe, expect, it } from "vitest";
import {
  cerBucketOf,
  characterErrorRate,
  containsText,
  editDistance,
  scoreOcrLines,
  type TruthLine,
} from "../../../src/eval/metrics/ocr-metrics.ts";

const line = (text: string, box: [number, number, number, number], fontPx = 14): TruthLine => ({
  text,
  box,
  script: /[\u4e00-\u9fff]/u.test(text) ? "cjk" : "latin",
  fontPx,
});

describe("editDistance and characterErrorRate", () => {
  it("counts substitutions, insertions and deletions over code points", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("数据库", "数据")).toBe(1);
    expect(characterErrorRate({ reference: "E1234: license", hypothesis: "E1234: license" })).toBe(0);
    // Whitespace is ignored and full-width punctuation is its ASCII form.
    expect(characterErrorRate({ reference: "错误代码：E1234", hypothesis: "错误代码: E1234" })).toBe(0);
    expect(characterErrorRate({ reference: "port 5432", hypothesis: "port 5482" })).toBeCloseTo(1 / 8);
  });
});

describe("scoreOcrLines", () => {
  it("matches lines by box overlap, scales the reading's boxes, and buckets by script and size", () => {
    const truth = [
      line("Connection refused on port 5432", [100, 100, 300, 16], 16),
      line("数据库连接失败", [100, 140, 140, 20], 20),
      line("tiny footnote", [100, 180, 80, 10], 10),
    ];
    // Read at half size, with one English error and the footnote missed.
    const read = [
      { text: "Connection refused on port 5482", box: [48, 48, 154, 10] as const },
      { text: "数据库连接失败", box: [49, 69, 72, 11] as const },
    ];
    const score = scoreOcrLines({ truth, read, scale: [2, 2] });
    expect(score.byBucket.latin12).toEqual({ edits: 1, chars: 27 });
    expect(score.byBucket.cjk).toEqual({ edits: 0, chars: 7 });
    expect(score.byBucket.latinSmall).toEqual({ edits: 12, chars: 12 });
    expect(score.linesFound).toBe(2);
    expect(score.lines).toBe(3);
    expect(score.misses[0]?.truth).toBe("tiny footnote");
  });

  it("compares a read line that spans two truth cells with both, and counts spurious lines only overall", () => {
    const truth = [line("Port", [10, 10, 30, 12]), line("5432", [60, 10, 30, 12])];
    const read = [
      { text: "Port 5432", box: [8, 8, 86, 16] as const },
      { text: "###", box: [300, 300, 20, 10] as const },
    ];
    const score = scoreOcrLines({ truth, read });
    expect(score.byBucket.latin12).toEqual({ edits: 0, chars: 8 });
    expect(score.spuriousChars).toBe(3);
    expect(score.overall).toEqual({ edits: 3, chars: 8 });
  });

  it("buckets English by 12 px and Chinese at any size", () => {
    expect(cerBucketOf({ script: "latin", fontPx: 12 })).toBe("latin12");
    expect(cerBucketOf({ script: "latin", fontPx: 11 })).toBe("latinSmall");
    expect(cerBucketOf({ script: "cjk", fontPx: 10 })).toBe("cjk");
  });
});

describe("containsText", () => {
  it("finds codes whole, ignoring case, citations and markup", () => {
    expect(
      containsText({
        answer: "The error is ERR_CONN_REFUSED_42 [img_ab12].",
        expected: "ERR_CONN_REFUSED_42",
      }),
    ).toBe(true);
    expect(containsText({ answer: "Code: **ora-12541**", expected: "ORA-12541" })).toBe(true);
    expect(containsText({ answer: "It fails on port 15432.", expected: "5432" })).toBe(false);
    expect(containsText({ answer: "It fails on port 5432.", expected: "5432" })).toBe(true);
    expect(containsText({ answer: "ERR_CONN_REFUSED_421", expected: "ERR_CONN_REFUSED_42" })).toBe(false);
    expect(containsText({ answer: "E12345", expected: "E1234" })).toBe(false);
    expect(containsText({ answer: "XE1234", expected: "E1234" })).toBe(false);
    // Spaces a reader dropped, and a unit after a number.
    expect(
      containsText({ answer: 'reads "Access denied:/srv/data"', expected: "Access denied: /srv/data" }),
    ).toBe(true);
    expect(containsText({ answer: "无法分配512MB", expected: "512" })).toBe(true);
  });

  it("finds Chinese anywhere, spaces aside, and numbers next to Chinese characters", () => {
    expect(containsText({ answer: "截图上写着：端口5432拒绝连接。", expected: "端口 5432 拒绝连接" })).toBe(
      true,
    );
    expect(containsText({ answer: "截图上写着：端口5433拒绝连接。", expected: "端口 5432 拒绝连接" })).toBe(
      false,
    );
    expect(containsText({ answer: "截图上写着：端口 5432 拒绝连接。", expected: "端口 5432 拒绝连接" })).toBe(
      true,
    );
    expect(containsText({ answer: "端口5432拒绝连接", expected: "5432" })).toBe(true);
    expect(containsText({ answer: "anything", expected: "" })).toBe(false);
  });
});
