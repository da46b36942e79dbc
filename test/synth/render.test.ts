import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { createRng, renderScene, type Scene, sampleScene, shapeVertices } from "../../src/synth/index.ts";
import { SPEC_COLORS } from "./spec.ts";

async function decodeRgb(data: Buffer): Promise<{ pixels: Buffer; width: number; height: number }> {
  const { data: pixels, info } = await sharp(data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { pixels, width: info.width, height: info.height };
}

function pixelAt(pixels: Buffer, size: number, x: number, y: number): number[] {
  const column = Math.min(size - 1, Math.floor(x * size));
  const row = Math.min(size - 1, Math.floor(y * size));
  const offset = (row * size + column) * 3;
  return [pixels[offset], pixels[offset + 1], pixels[offset + 2]] as number[];
}

describe("renderScene", () => {
  it("draws object centers within jitter and noise of the reference color, and the background within noise", async () => {
    const size = 256;
    for (let seed = 0; seed < 40; seed++) {
      const scene = sampleScene(createRng(seed));
      const image = await renderScene(scene, { size, format: "png", seed });
      const { pixels } = await decodeRgb(image.data);
      for (const object of scene.objects) {
        const reference = SPEC_COLORS[object.color] as number[];
        const actual = pixelAt(pixels, size, object.x, object.y);
        actual.forEach((channel, index) => {
          expect(
            Math.abs(channel - (reference[index] as number)),
            `seed ${seed} ${object.color}`,
          ).toBeLessThanOrEqual(15 + 8);
        });
      }
      // Background: grid points at least 0.03 away from every bounding circle.
      let checked = 0;
      for (let gx = 0.01; gx < 1; gx += 0.049) {
        for (let gy = 0.01; gy < 1; gy += 0.049) {
          const clear = scene.objects.every((o) => Math.hypot(gx - o.x, gy - o.y) > o.r + 0.03);
          if (!clear) continue;
          for (const channel of pixelAt(pixels, size, gx, gy)) {
            expect(Math.abs(channel - scene.background)).toBeLessThanOrEqual(8);
          }
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(10);
    }
  });

  it("uses jitter and noise (pixels vary) but never beyond the spec", async () => {
    const scene: Scene = {
      background: 100,
      objects: [{ shape: "circle", color: "blue", size: "large", x: 0.3, y: 0.3, r: 0.2, rotation: 0 }],
    };
    const image = await renderScene(scene, { size: 128, seed: 3, includeRaw: true });
    const raw = image.raw?.data as Buffer;
    const values = new Set<number>();
    for (let row = 110; row < 128; row++) values.add(raw[(row * 128 + 120) * 3] as number);
    expect(values.size).toBeGreaterThan(5);
    for (const value of values) expect(Math.abs(value - 100)).toBeLessThanOrEqual(8);
  });

  it("is byte-identical for the same seed, and returns the raw pixels it encoded", async () => {
    const scene = sampleScene(createRng(11));
    const a = await renderScene(scene, { size: 256, format: "png", seed: 11, includeRaw: true });
    const b = await renderScene(sampleScene(createRng(11)), { size: 256, format: "png", seed: 11 });
    expect(Buffer.compare(a.data, b.data)).toBe(0);
    const c = await renderScene(scene, { size: 256, format: "png", seed: 12 });
    expect(Buffer.compare(a.data, c.data)).not.toBe(0);
    const decoded = await decodeRgb(a.data);
    expect(a.raw?.width).toBe(256);
    expect(Buffer.compare(decoded.pixels, a.raw?.data as Buffer)).toBe(0);
  });

  it("renders 64 and 1024 px, and JPEG/WebP decode to the right size", async () => {
    const scene = sampleScene(createRng(4));
    for (const [size, format] of [
      [64, "png"],
      [1024, "png"],
      [200, "jpeg"],
      [96, "webp"],
    ] as const) {
      const image = await renderScene(scene, { size, format, quality: 80 });
      const meta = await sharp(image.data).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual([format, size, size]);
    }
    await expect(renderScene(scene, { size: 63 })).rejects.toThrow(ValidationError);
    await expect(renderScene(scene, { size: 1025 })).rejects.toThrow(/from 64 to 1024/);
    await expect(renderScene(scene, { format: "jpeg", quality: 0 })).rejects.toThrow(/quality/);
  });

  it("draws each shape inscribed in its bounding circle with the spec's area", async () => {
    // Area of each shape relative to its bounding circle's.
    const expected: Record<string, number> = {
      circle: 1,
      square: 2 / Math.PI,
      triangle: (3 * Math.sqrt(3)) / 4 / Math.PI,
      hexagon: (3 * Math.sqrt(3)) / 2 / Math.PI,
      star: (5 * 0.45 * Math.sin(Math.PI / 5)) / Math.PI,
    };
    const size = 256;
    for (const shape of Object.keys(expected)) {
      const object = {
        shape,
        color: "red",
        size: "large",
        x: 0.3,
        y: 0.3,
        r: 0.2,
        rotation: shape === "circle" ? 0 : 10,
      } as const;
      const image = await renderScene({ background: 100, objects: [object] } as Scene, {
        size,
        colorJitter: 0,
        noise: 0,
        includeRaw: true,
      });
      const raw = image.raw?.data as Buffer;
      let covered = 0;
      let outside = 0;
      for (let index = 0; index < raw.length; index += 3) {
        // Red channel: 100 on the background, 220 inside; count coverage with anti-aliasing.
        const coverage = ((raw[index] as number) - 100) / 120;
        covered += coverage;
        const px = ((index / 3) % size) + 0.5;
        const py = Math.floor(index / 3 / size) + 0.5;
        if (coverage > 0.01 && Math.hypot(px - 0.3 * size, py - 0.3 * size) > 0.2 * size + 1) outside++;
      }
      const circleArea = Math.PI * (0.2 * size) ** 2;
      expect(covered / circleArea, shape).toBeCloseTo(expected[shape] as number, 2);
      expect(outside, `${shape} leaks outside its bounding circle`).toBe(0);
    }
  });

  it("points the triangle's apex up at rotation 0 and gives the star an inner radius of 0.45", () => {
    const triangle = shapeVertices({ shape: "triangle", x: 0.5, y: 0.5, r: 0.1, rotation: 0 });
    const top = triangle.reduce((best, vertex) => (vertex[1] < best[1] ? vertex : best));
    expect(top[0]).toBeCloseTo(0.5, 10);
    expect(top[1]).toBeCloseTo(0.4, 10);
    const star = shapeVertices({ shape: "star", x: 0, y: 0, r: 1, rotation: 7 });
    const radii = star.map(([x, y]) => Math.hypot(x, y));
    expect(radii).toHaveLength(10);
    expect(Math.min(...radii)).toBeCloseTo(0.45, 10);
    expect(Math.max(...radii)).toBeCloseTo(1, 10);
  });
});
