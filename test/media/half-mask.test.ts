import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { maskHalves } from "../../src/media/half-mask.ts";

async function pixels(bytes: Uint8Array) {
  return sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
}

describe("maskHalves", () => {
  it("keeps one half and paints the other with the border's median color, at the original size", async () => {
    // A 64×32 gray image with a red block on the left and a blue block on the right.
    const width = 64;
    const height = 32;
    const raw = Buffer.alloc(width * height * 3, 100);
    for (let y = 8; y < 24; y += 1) {
      for (let x = 8; x < 20; x += 1) raw.set([220, 40, 40], (y * width + x) * 3);
      for (let x = 44; x < 56; x += 1) raw.set([40, 80, 220], (y * width + x) * 3);
    }
    const png = new Uint8Array(
      await sharp(raw, { raw: { width, height, channels: 3 } })
        .png()
        .toBuffer(),
    );
    const { left, right } = await maskHalves({ bytes: png, maxPixels: 1_000_000 });

    const kept = await pixels(left);
    expect([kept.info.width, kept.info.height]).toEqual([width, height]);
    const at = (data: Buffer, x: number, y: number) => [
      ...data.subarray((y * width + x) * 3, (y * width + x) * 3 + 3),
    ];
    expect(at(kept.data, 10, 10)).toEqual([220, 40, 40]);
    expect(at(kept.data, 50, 10)).toEqual([100, 100, 100]);

    const other = await pixels(right);
    expect(at(other.data, 10, 10)).toEqual([100, 100, 100]);
    expect(at(other.data, 50, 10)).toEqual([40, 80, 220]);
  });

  it("refuses an image over the pixel limit", async () => {
    const png = new Uint8Array(
      await sharp({ create: { width: 200, height: 200, channels: 3, background: "#777" } })
        .png()
        .toBuffer(),
    );
    await expect(maskHalves({ bytes: png, maxPixels: 1000 })).rejects.toThrow(/pixel/i);
  });
});
