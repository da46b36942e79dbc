import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  generateScreens,
  paintText,
  planScreens,
  renderScreen,
  SCREEN_FONTS,
  type ScreenSample,
  screenHasPhrase,
  screensCases,
  writeScreensDataset,
} from "../../src/synth/index.ts";

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function collect(options: Parameters<typeof generateScreens>[0]): Promise<ScreenSample[]> {
  const samples: ScreenSample[] = [];
  for await (const sample of generateScreens(options)) samples.push(sample);
  return samples;
}

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

const overlaps = (a: readonly number[], b: readonly number[]) =>
  (a[0] as number) < (b[0] as number) + (b[2] as number) &&
  (b[0] as number) < (a[0] as number) + (a[2] as number) &&
  (a[1] as number) < (b[1] as number) + (b[3] as number) &&
  (b[1] as number) < (a[1] as number) + (a[3] as number);

describe("Screens World", () => {
  it("is deterministic: equal seeds give byte-identical images and ground truth, other seeds differ", async () => {
    const first = await collect({ seed: 11, count: 8 });
    const again = await collect({ seed: 11, count: 8 });
    const other = await collect({ seed: 12, count: 8 });
    expect(first.map((sample) => sha(sample.data))).toEqual(again.map((sample) => sha(sample.data)));
    expect(JSON.stringify(first.map(({ data: _data, ...truth }) => truth))).toBe(
      JSON.stringify(again.map(({ data: _data, ...truth }) => truth)),
    );
    expect(first.map((sample) => sample.code)).not.toEqual(other.map((sample) => sample.code));
  });

  it("covers every kind, both languages, both formats, and text sizes from 10 to 24 px; codes are unique", async () => {
    const plans = planScreens({ seed: 5, count: 240 });
    expect(new Set(plans.map((plan) => plan.content.kind)).size).toBe(6);
    expect(new Set(plans.map((plan) => plan.content.language))).toEqual(new Set(["en", "zh"]));
    expect(new Set(plans.map((plan) => plan.content.format))).toEqual(new Set(["png", "jpeg"]));
    expect(new Set(plans.map((plan) => plan.content.theme))).toEqual(new Set(["light", "dark"]));
    expect(new Set(plans.map((plan) => plan.content.code)).size).toBe(240);
    const samples = await collect({ seed: 5, count: 24 });
    const sizes = samples.flatMap((sample) => sample.lines.map((line) => line.fontPx));
    expect(Math.min(...sizes)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(24);
    for (const sample of samples) {
      // The code and the error message are drawn on every screen.
      expect(screenHasPhrase(sample, sample.code), sample.id).toBe(true);
      expect(
        sample.lines.some((line) => line.role === "message"),
        sample.id,
      ).toBe(true);
      const meta = await sharp(sample.data).metadata();
      expect([meta.width, meta.height, meta.format]).toEqual([sample.width, sample.height, sample.format]);
    }
  });

  it("gives every line its exact ink box: the text's pixels lie in it and reach its four edges, and lines do not overlap", async () => {
    const plans = planScreens({ seed: 21, count: 12 });
    for (const plan of plans) {
      const rendered = await renderScreen(plan.content, { errorRow: plan.errorRow });
      const withText = await rendered.canvas.raw();
      const without = await rendered.canvas.rawWithoutText();
      const { width, height } = rendered;
      const differs = (x: number, y: number) => {
        const offset = (y * width + x) * 3;
        for (let channel = 0; channel < 3; channel++) {
          if (Math.abs((withText[offset + channel] as number) - (without[offset + channel] as number)) > 0)
            return true;
        }
        return false;
      };
      const inside = new Uint8Array(width * height);
      for (const line of rendered.lines) {
        const [x, y, w, h] = line.box;
        expect(x + w, `${plan.id} "${line.text}"`).toBeLessThanOrEqual(width);
        expect(y + h, `${plan.id} "${line.text}"`).toBeLessThanOrEqual(height);
        for (let row = y; row < y + h; row++)
          for (let col = x; col < x + w; col++) inside[row * width + col] = 1;
        // Ink reaches each edge of the box (within one pixel of antialiasing).
        const rowInk = (row: number) => [...Array(w).keys()].some((dx) => differs(x + dx, row));
        const colInk = (col: number) => [...Array(h).keys()].some((dy) => differs(col, y + dy));
        expect(rowInk(y) || rowInk(y + 1), `${plan.id} top of "${line.text}"`).toBe(true);
        expect(rowInk(y + h - 1) || rowInk(y + h - 2), `${plan.id} bottom of "${line.text}"`).toBe(true);
        expect(colInk(x) || colInk(x + 1), `${plan.id} left of "${line.text}"`).toBe(true);
        expect(colInk(x + w - 1) || colInk(x + w - 2), `${plan.id} right of "${line.text}"`).toBe(true);
      }
      // No text pixel outside the boxes.
      let stray = 0;
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) if (!inside[y * width + x] && differs(x, y)) stray++;
      expect(stray, plan.id).toBe(0);
      rendered.lines.forEach((line, index) => {
        for (const other of rendered.lines.slice(index + 1)) {
          expect(overlaps(line.box, other.box), `${plan.id}: "${line.text}" and "${other.text}"`).toBe(false);
        }
      });
    }
  });

  it("renders Chinese with the CJK font: a Chinese line has ink as wide as its characters, not empty boxes", async () => {
    const text = "数据库连接失败";
    const cjk = await paintText({ text, font: SCREEN_FONTS.cjk, px: 20, color: "#000000" });
    // Seven full-width characters of 20 px.
    expect(cjk.width).toBeGreaterThan(7 * 20 * 0.85);
    expect(cjk.width).toBeLessThan(7 * 20 * 1.1);
    expect(cjk.height).toBeGreaterThan(14);
    // Each character draws different ink (a missing glyph would draw the same box each time).
    const glyphs = await Promise.all(
      [..."数据库"].map(async (char) => {
        const painted = await paintText({ text: char, font: SCREEN_FONTS.cjk, px: 20, color: "#000000" });
        return sha(await sharp(painted.png).raw().toBuffer());
      }),
    );
    expect(new Set(glyphs).size).toBe(3);
    const [zh] = await collect({ seed: 3, count: 1, languages: ["zh"] });
    const lines = zh?.lines.filter((line) => line.script === "cjk") ?? [];
    expect(lines.length).toBeGreaterThan(3);
    expect(lines.every((line) => line.font.startsWith(SCREEN_FONTS.cjk))).toBe(true);
  });

  it("makes queries whose relevant screens hold the code or phrase, and chat cases answered on the screen", async () => {
    const samples = await collect({ seed: 9, count: 12 });
    const { queries, chat } = screensCases({ seed: 9, screens: samples });
    expect(new Set(queries.map((query) => query.type))).toEqual(
      new Set(["code", "phrase", "paraphrase", "chinese"]),
    );
    for (const query of queries) {
      const source = samples.find((sample) => sample.id === query.screen);
      expect(query.relevant[0]).toBe(query.screen);
      if (query.form === "phrase") {
        const phrase = query.text.slice(1, -1);
        expect(query.text.startsWith('"') && query.text.endsWith('"')).toBe(true);
        const holding = samples
          .filter((sample) => screenHasPhrase(sample, phrase))
          .map((sample) => sample.id);
        expect(new Set(query.relevant)).toEqual(new Set(holding));
      }
      if (query.form === "code") expect(query.text).toContain(source?.code);
      if (query.language === "zh") expect(query.text).toMatch(/[\u4e00-\u9fff]/u);
    }
    for (const item of chat) {
      const screen = samples.find((sample) => sample.id === item.screen);
      expect(screen).toBeDefined();
      expect(
        item.answers.some((answer) => screen !== undefined && screenHasPhrase(screen, answer)),
        `${item.id}: ${item.answers.join(" | ")}`,
      ).toBe(true);
    }
  });

  it("writes a dataset folder, and refuses a non-empty folder that is not a dataset", async () => {
    const dir = await mkdtemp(join(tmpdir(), "loupe-screens-"));
    dirs.push(dir);
    const out = join(dir, "set");
    const manifest = await writeScreensDataset({ outDir: out, seed: 2, count: 4 });
    expect(manifest.counts.screens).toBe(4);
    const lines = (await readFile(join(out, "screens.jsonl"), "utf8")).trim().split("\n");
    expect(lines).toHaveLength(4);
    const first = JSON.parse(lines[0] as string) as { file: string; lines: unknown[] };
    expect((await readFile(join(out, first.file))).length).toBeGreaterThan(1000);
    await expect(writeScreensDataset({ outDir: out, seed: 2, count: 4 })).rejects.toThrow(/not empty/u);
    await expect(writeScreensDataset({ outDir: dir, seed: 2, count: 1, overwrite: true })).rejects.toThrow(
      /no manifest\.json/u,
    );
    expect(() => planScreens({ count: 0 })).toThrow(ValidationError);
  });
});
