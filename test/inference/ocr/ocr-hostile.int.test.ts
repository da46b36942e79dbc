/**
 * Hostile images through the PP-OCRv4 engine: each is read within its limits or refused with a clear
 * error, and no reading runs unbounded. A 40-megapixel screenshot (at the pixel limit) is read, scaled for
 * detection and cropped at full resolution for recognition; strips of 1×20000 and 20000×1 give no lines
 * quickly; a page of 4 px text and a screen full of text stay within the time and line limits; a PNG that
 * claims 10 gigapixels is refused from its header.
 */
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MediaError } from "../../../src/errors.ts";
import { defaultImageLimits } from "../../../src/inference/image-processor.ts";
import type { OcrEngine } from "../../../src/inference/ocr/ocr-engine.ts";
import { createPpOcrEngine } from "../../../src/inference/ocr/pp-ocr.ts";
import { boxIou, renderLine, renderTextImage, stackLines } from "../../helpers/text-images.ts";
import { pngBomb } from "../../hostile/fixtures.ts";

const maxLines = 20;
let engine: OcrEngine;

beforeAll(async () => {
  engine = createPpOcrEngine({
    limits: { maxSide: 1600, maxLines, timeoutMs: 20_000 },
    settings: { intraOpNumThreads: 1 },
  });
  // Opens the sessions, so the timings below are of readings alone.
  await engine.read({ image: { data: new Uint8Array(32 * 32 * 3), width: 32, height: 32, channels: 3 } });
});

afterAll(async () => {
  await engine.close();
});

async function timed<T>(run: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const started = performance.now();
  const result = await run();
  return { result, ms: performance.now() - started };
}

describe("OCR on hostile images", () => {
  it("reads a 40-megapixel screenshot at the pixel limit, boxes in its own pixels", async () => {
    const width = 8000;
    const height = 5000;
    expect(width * height).toBeLessThanOrEqual(defaultImageLimits.maxInputPixels);
    const line = await renderLine({ text: "Error E1234: license expired", size: 64, color: "#202124" });
    const bytes = await sharp({ create: { width, height, channels: 3, background: "#f7f7f5" } })
      .composite([
        { input: line.png, left: 200, top: 300 },
        { input: line.png, left: 5000, top: 4200 },
      ])
      .png({ compressionLevel: 1 })
      .toBuffer();
    const { result, ms } = await timed(() => engine.read({ image: bytes }));
    expect(result).toMatchObject({ width, height });
    expect(result.lines.map((read) => read.text)).toEqual([
      "Error E1234: license expired",
      "Error E1234: license expired",
    ]);
    expect(boxIou(result.lines[0]?.box ?? [0, 0, 0, 0], [200, 300, line.width, line.height])).toBeGreaterThan(
      0.5,
    );
    expect(
      boxIou(result.lines[1]?.box ?? [0, 0, 0, 0], [5000, 4200, line.width, line.height]),
    ).toBeGreaterThan(0.5);
    expect(ms).toBeLessThan(30_000);
  });

  it.each([
    { width: 1, height: 20_000 },
    { width: 20_000, height: 1 },
  ])("reads no lines in a $width×$height strip, quickly", async ({ width, height }) => {
    const bytes = await sharp({ create: { width, height, channels: 3, background: "#808080" } })
      .png()
      .toBuffer();
    const { result, ms } = await timed(() => engine.read({ image: bytes }));
    expect(result).toMatchObject({ width, height, lines: [] });
    expect(ms).toBeLessThan(5_000);
  });

  it("stays within the time and line limits on a page of 4 px text", async () => {
    const row = await renderLine({
      text: "The quick brown fox jumps over the lazy dog 0123456789 ".repeat(5),
      size: 4,
      color: "#000000",
    });
    const rows = [];
    for (let top = 0; top + row.height <= 800; top += row.height + 1)
      rows.push({ input: row.png, left: 0, top });
    const bytes = await sharp({
      create: { width: Math.max(1280, row.width), height: 800, channels: 3, background: "#ffffff" },
    })
      .composite(rows)
      .png()
      .toBuffer();
    const { result, ms } = await timed(() => engine.read({ image: bytes }));
    expect(result.lines.length).toBeLessThanOrEqual(maxLines);
    expect(ms).toBeLessThan(20_000);
  });

  it("recognizes at most maxLines of a screen full of text and marks the reading truncated", async () => {
    const texts = Array.from(
      { length: 60 },
      (_, index) => `Log entry ${index + 1}: request served in ${index * 7} ms`,
    );
    const image = await renderTextImage({
      width: 1280,
      height: 800,
      lines: [
        ...stackLines({ texts: texts.slice(0, 30), size: 12, lineGap: 2.1, top: 8 }),
        ...stackLines({ texts: texts.slice(30), size: 12, lineGap: 2.1, top: 8, x: 660 }),
      ],
    });
    const { result, ms } = await timed(() => engine.read({ image: image.bytes }));
    expect(result.truncated).toBe(true);
    expect(result.lines).toHaveLength(maxLines);
    expect(result.lines[0]?.text).toBe("Log entry 1: request served in 0 ms");
    expect(ms).toBeLessThan(20_000);
  });

  it("refuses a PNG bomb from its header, before decoding", async () => {
    const bomb = pngBomb();
    const started = performance.now();
    const failure = engine.read({ image: bomb });
    await expect(failure).rejects.toBeInstanceOf(MediaError);
    await expect(failure).rejects.toMatchObject({ code: "media_too_large", status: 413 });
    await expect(failure).rejects.toThrow(/100000x100000 .*the limit is 40\.0 MP/);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
