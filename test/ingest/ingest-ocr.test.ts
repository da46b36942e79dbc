import { describe, expect, it } from "vitest";
import { MediaError } from "../../src/errors.ts";
import type { OcrEngine } from "../../src/inference/ocr/ocr-engine.ts";
import { cappedOcrText, ocrRecordFields, readImageText } from "../../src/ingest/ingest-ocr.ts";
import { createLogger } from "../../src/logger.ts";
import { type OcrReading, readOcrMetadata } from "../../src/media/ocr-lines.ts";

function reading(lines: Array<[string, number]>, truncated?: boolean): OcrReading {
  return {
    engine: "fake-ocr",
    width: 800,
    height: 600,
    lines: lines.map(([text, confidence], index) => ({
      text,
      confidence,
      box: [10.4, 20 * index + 0.6, 100.2, 18],
    })),
    ...(truncated === undefined ? {} : { truncated }),
  };
}

describe("ocrRecordFields", () => {
  it("drops lines under the minimum confidence and blank lines, keeps the rest in order", () => {
    const fields = ocrRecordFields({
      reading: reading([
        ["E1234: license expired", 0.98],
        ["~~", 0.2],
        ["   ", 0.99],
        ["Connection refused on port 5432", 0.91234],
      ]),
      minConfidence: 0.5,
      metadata: { title: "dialog", width: 800 },
    });
    expect(fields.ocrText).toBe("E1234: license expired\nConnection refused on port 5432");
    const ocr = readOcrMetadata(fields.metadata);
    expect(ocr).toEqual({
      engine: "fake-ocr",
      width: 800,
      height: 600,
      minConfidence: 0.5,
      lines: [
        { text: "E1234: license expired", confidence: 0.98, box: [10, 1, 100, 18] },
        { text: "Connection refused on port 5432", confidence: 0.912, box: [10, 61, 100, 18] },
      ],
    });
    // Other metadata is kept as it was.
    expect(fields.metadata.title).toBe("dialog");
    expect(fields.metadata.width).toBe(800);
  });

  it("keeps the engine's truncated mark", () => {
    const fields = ocrRecordFields({ reading: reading([["a", 0.9]], true), minConfidence: 0, metadata: {} });
    expect(readOcrMetadata(fields.metadata)?.truncated).toBe(true);
  });

  it("leaves out trailing lines so metadata stays under the store's size, and marks the reading truncated", () => {
    const many = Array.from(
      { length: 200 },
      (_, index) => [`line ${index} ${"x".repeat(60)}`, 0.9] as [string, number],
    );
    const caller = { note: "y".repeat(10_000) };
    const maxMetadataBytes = 20_000;
    const fields = ocrRecordFields({
      reading: reading(many),
      minConfidence: 0.5,
      metadata: caller,
      maxMetadataBytes,
    });
    const bytes = Buffer.byteLength(JSON.stringify(fields.metadata), "utf8");
    expect(bytes).toBeLessThanOrEqual(maxMetadataBytes);
    const ocr = readOcrMetadata(fields.metadata);
    expect(ocr?.truncated).toBe(true);
    expect(ocr?.lines.length).toBeGreaterThan(50);
    expect(ocr?.lines.length).toBeLessThan(200);
    expect(ocr?.lines[0]?.text).toBe(`line 0 ${"x".repeat(60)}`);
    // The searchable text is not cut by the metadata's size: it has its own field.
    expect(fields.ocrText.split("\n")).toHaveLength(200);
    expect(fields.metadata.note).toBe(caller.note);
  });

  it("replaces an earlier reading rather than nesting it", () => {
    const first = ocrRecordFields({ reading: reading([["old", 0.9]]), minConfidence: 0, metadata: { a: 1 } });
    const second = ocrRecordFields({
      reading: reading([["new", 0.9]]),
      minConfidence: 0,
      metadata: first.metadata,
    });
    expect(readOcrMetadata(second.metadata)?.lines.map((line) => line.text)).toEqual(["new"]);
    expect(Object.keys(second.metadata).sort()).toEqual(["a", "ocr"]);
  });
});

describe("cappedOcrText", () => {
  it("cuts at a whole line within the byte limit, counting UTF-8 bytes", () => {
    const lines = [{ text: "数据库连接失败" }, { text: "E1234" }, { text: "more" }];
    // 21 bytes of Chinese, a newline, 5 bytes: 27.
    expect(cappedOcrText(lines, 27)).toBe("数据库连接失败\nE1234");
    expect(cappedOcrText(lines, 26)).toBe("数据库连接失败");
    expect(cappedOcrText(lines, 5)).toBe("");
  });
});

describe("readImageText", () => {
  const logger = createLogger({ level: "silent" });
  it("returns the engine's reading", async () => {
    const engine: OcrEngine = {
      id: "fake-ocr",
      read: async () => reading([["hello", 0.9]]),
      close: async () => undefined,
    };
    const read = await readImageText({
      ocr: { engine, minConfidence: 0.5 },
      image: new Uint8Array([1]),
      logger,
    });
    expect(read?.lines[0]?.text).toBe("hello");
  });

  it("returns nothing when the engine fails, so the image is stored without text", async () => {
    const engine: OcrEngine = {
      id: "fake-ocr",
      read: async () => {
        throw new MediaError("The image is 40000x40000; the limit is 40 MP.");
      },
      close: async () => undefined,
    };
    await expect(
      readImageText({ ocr: { engine, minConfidence: 0.5 }, image: new Uint8Array([1]), logger }),
    ).resolves.toBeUndefined();
  });

  it("throws when the ingest was aborted", async () => {
    const controller = new AbortController();
    const engine: OcrEngine = {
      id: "fake-ocr",
      read: async () => {
        controller.abort();
        throw new Error("aborted");
      },
      close: async () => undefined,
    };
    await expect(
      readImageText({
        ocr: { engine, minConfidence: 0.5 },
        image: new Uint8Array([1]),
        signal: controller.signal,
        logger,
      }),
    ).rejects.toThrow("aborted");
  });
});
