/**
 * Left and right halves of an image for region questions: each copy keeps one half and paints the other
 * with the image's background (the median color of its border), at the original size, so what remains
 * keeps its scale and position. Asking "is there a red star?" of both copies tells on which side the
 * star is more reliably than asking the whole image "left or right?".
 */
import sharp from "sharp";

/** The two masked copies, PNG-encoded. */
export interface HalfMasks {
  /** The left half kept, the right half painted over. */
  left: Uint8Array;
  /** The right half kept, the left half painted over. */
  right: Uint8Array;
}

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/**
 * Masks each half of an already validated image (decoded with EXIF orientation applied).
 *
 * @param maxPixels the decoder's pixel limit, as for every other decode of untrusted bytes.
 */
export async function maskHalves({
  bytes,
  maxPixels,
}: {
  bytes: Uint8Array;
  maxPixels: number;
}): Promise<HalfMasks> {
  const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: "warning", pages: 1 })
    .rotate()
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const border: number[][] = Array.from({ length: channels }, () => []);
  const sample = (x: number, y: number) => {
    const offset = (y * width + x) * channels;
    for (let channel = 0; channel < channels; channel += 1)
      border[channel]?.push(data[offset + channel] ?? 0);
  };
  for (let x = 0; x < width; x += 1) {
    sample(x, 0);
    sample(x, height - 1);
  }
  for (let y = 0; y < height; y += 1) {
    sample(0, y);
    sample(width - 1, y);
  }
  const background = border.map(median);
  const half = Math.floor(width / 2);
  const paint = (fromX: number, toX: number) => {
    const copy = Buffer.from(data);
    for (let y = 0; y < height; y += 1) {
      for (let x = fromX; x < toX; x += 1) {
        const offset = (y * width + x) * channels;
        for (let channel = 0; channel < channels; channel += 1)
          copy[offset + channel] = background[channel] ?? 0;
      }
    }
    return copy;
  };
  const encode = async (pixels: Buffer) =>
    new Uint8Array(
      await sharp(pixels, { raw: { width, height, channels } }).png({ compressionLevel: 1 }).toBuffer(),
    );
  const [left, right] = await Promise.all([encode(paint(half, width)), encode(paint(0, half))]);
  return { left, right };
}
