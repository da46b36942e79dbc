import { describe, expect, it } from "vitest";
import { OCR_METADATA_KEY, type OcrMetadata } from "../../src/media/ocr-lines.ts";
import { MAX_TEXT_MATCHES, matchOcrLines, parseTextQuery } from "../../src/search/text-query.ts";

describe("parseTextQuery", () => {
  it("takes straight-quoted phrases out and keeps their words in the BM25 text", () => {
    expect(parseTextQuery('which screenshot says "license   expired" E1234')).toEqual({
      text: "which screenshot says license expired E1234",
      phrases: ["license expired"],
      terms: ["screenshot", "license", "expired", "e1234"],
      identifiers: ["E1234"],
    });
  });

  it("names identifiers outside quotes: letters with digits, or words joined by _, never plain words or numbers", () => {
    expect(
      parseTextQuery('ERR_CONN_REFUSED 0x80070005 on port 5432 "E9999" db-01 错误E12').identifiers,
    ).toEqual(["ERR_CONN_REFUSED", "0x80070005", "db-01"]);
    expect(parseTextQuery("a red circle left of a blue square").identifiers).toEqual([]);
  });

  it("reads curly and low-high quotes as phrase quotes", () => {
    expect(parseTextQuery("“Connection refused” on „port 5432“").phrases).toEqual([
      "Connection refused",
      "port 5432",
    ]);
  });

  it("treats an unmatched quote as punctuation, not a phrase", () => {
    const query = parseTextQuery('error "E1234');
    expect(query.phrases).toEqual([]);
    expect(query.text).toBe("error E1234");
    expect(query.terms).toEqual(["error", "e1234"]);
  });

  it("keeps codes with inner punctuation whole and Chinese runs as terms", () => {
    expect(parseTextQuery("db-01 ERR_TIMEOUT 数据库连接失败").terms).toEqual([
      "db-01",
      "err_timeout",
      "数据库连接失败",
    ]);
  });

  it("drops empty and repeated phrases", () => {
    expect(parseTextQuery('"" "a b" "a  b"').phrases).toEqual(["a b"]);
  });
});

function metadataWith(lines: Array<[string, number]>): Record<string, unknown> {
  const ocr: OcrMetadata = {
    engine: "pp-ocrv4",
    width: 800,
    height: 600,
    minConfidence: 0.5,
    lines: lines.map(([text, confidence], index) => ({ text, confidence, box: [10, 30 * index, 200, 20] })),
  };
  return { [OCR_METADATA_KEY]: ocr };
}

describe("matchOcrLines", () => {
  const metadata = metadataWith([
    ["Settings", 0.99],
    ["Error E1234: License expired", 0.97],
    ["Connection refused on port 5432", 0.95],
    ["错误：数据库连接失败", 0.93],
  ]);

  it("finds the lines holding a phrase (case-insensitive) with their boxes and confidences", () => {
    expect(matchOcrLines({ metadata, query: parseTextQuery('"license expired"') })).toEqual([
      {
        line: 1,
        text: "Error E1234: License expired",
        box: [10, 30, 200, 20],
        confidence: 0.97,
        matched: ["license expired", "license", "expired"],
      },
    ]);
  });

  it("finds whole terms, codes and Chinese runs; phrase lines first", () => {
    const matches = matchOcrLines({ metadata, query: parseTextQuery('port e1234 "数据库连接失败"') });
    expect(matches.map((match) => [match.line, match.matched])).toEqual([
      [3, ["数据库连接失败", "数据库连接失败"]],
      [1, ["e1234"]],
      [2, ["port"]],
    ]);
  });

  it("does not match a term inside a longer word", () => {
    expect(matchOcrLines({ metadata, query: parseTextQuery("set") })).toEqual([]);
  });

  it("returns nothing without a reading or with malformed stored lines", () => {
    expect(matchOcrLines({ metadata: {}, query: parseTextQuery("port") })).toEqual([]);
    expect(
      matchOcrLines({
        metadata: { ocr: { engine: "x", width: 1, height: 1, lines: [{ text: "port", box: "no" }] } },
        query: parseTextQuery("port"),
      }),
    ).toEqual([]);
  });

  it("returns at most the cap", () => {
    const many = metadataWith(
      Array.from({ length: 50 }, (_, index) => [`port ${index}`, 0.9] as [string, number]),
    );
    expect(matchOcrLines({ metadata: many, query: parseTextQuery("port") })).toHaveLength(MAX_TEXT_MATCHES);
  });
});
