import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { MediaError } from "../../src/errors.ts";
import { makeThumbnail } from "../../src/media/thumbnail.ts";

function solid(width: number, height: number) {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 30, b: 30 } } });
}

describe("makeThumbnail", () => {
  it("makes a WebP no larger than the size, keeping the aspect ratio, and reports the original", async () => {
    const bytes = await solid(400, 200).jpeg().toBuffer();
    const result = await makeThumbnail({ bytes, size: 100 });
    expect(result).toMatchObject({ format: "jpeg", contentType: "image/jpeg", width: 400, height: 200 });
    expect(result.thumbnail).toMatchObject({ contentType: "image/webp", width: 100, height: 50 });
    const decoded = await sharp(result.thumbnail.bytes).metadata();
    expect(decoded.format).toBe("webp");
    expect(decoded.exif).toBeUndefined();
  });

  it("does not enlarge small images", async () => {
    const bytes = await solid(64, 32).png().toBuffer();
    const result = await makeThumbnail({ bytes, size: 256 });
    expect(result.thumbnail).toMatchObject({ width: 64, height: 32 });
  });

  it("applies EXIF orientation: a sideways phone photo is reported and thumbnailed upright", async () => {
    // Stored 40x20 with orientation 6 (rotate 90° clockwise to display): displayed 20x40.
    const bytes = await solid(40, 20).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const result = await makeThumbnail({ bytes, size: 256 });
    expect([result.width, result.height]).toEqual([20, 40]);
    expect([result.thumbnail.width, result.thumbnail.height]).toEqual([20, 40]);
  });

  it("takes the first frame of an animation", async () => {
    const frames = await Promise.all(
      [0, 60, 120, 180, 240].map((red) =>
        sharp({ create: { width: 16, height: 16, channels: 3, background: { r: red, g: 0, b: 255 } } })
          .png()
          .toBuffer(),
      ),
    );
    const gif = await sharp(frames, { join: { animated: true } })
      .gif()
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(5);
    const result = await makeThumbnail({ bytes: gif });
    expect(result).toMatchObject({ format: "gif", width: 16, height: 16 });
    expect([result.thumbnail.width, result.thumbnail.height]).toEqual([16, 16]);
  });

  it("refuses truncated data and images over the pixel limit", async () => {
    const bytes = await solid(300, 300).jpeg().toBuffer();
    await expect(makeThumbnail({ bytes: bytes.subarray(0, bytes.length / 2) })).rejects.toBeInstanceOf(
      MediaError,
    );
    await expect(makeThumbnail({ bytes, maxInputPixels: 1000 })).rejects.toThrow(/pixel limit/);
  });
});
