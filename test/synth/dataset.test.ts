import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  type DatasetSummary,
  generateDataset,
  isRelevant,
  type PartialQuery,
  type Scene,
  sceneSchema,
} from "../../src/synth/index.ts";
import { SPEC_VOCABULARY } from "./spec.ts";

const root = mkdtempSync(join(tmpdir(), "loupe-synth-dataset-"));
const outDir = join(root, "a");
const options = {
  outDir,
  seed: 21,
  images: 24,
  size: 64,
  format: "png" as const,
  videos: 1,
  clipsPerVideo: 3,
  triples: 4,
};
let summary: DatasetSummary;

function lines<T = Record<string, unknown>>(file: string): T[] {
  return readFileSync(join(outDir, file), "utf8")
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as T);
}

beforeAll(async () => {
  summary = await generateDataset(options);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("generateDataset", () => {
  it("writes images with their scenes, descriptions and keys", async () => {
    const scenes = lines<{
      id: string;
      file: string;
      scene: Scene;
      descriptions: Array<{ text: string; key: string }>;
      key: string;
    }>("scenes.jsonl");
    expect(scenes).toHaveLength(24);
    expect(summary.manifest.counts.images).toBe(24);
    for (const [index, line] of scenes.entries()) {
      expect(line.id).toBe(`img-${String(index + 1).padStart(6, "0")}`);
      expect(line.file).toBe(`images/${line.id}.png`);
      sceneSchema.parse(line.scene);
      expect(line.descriptions).toHaveLength(2);
      const meta = await sharp(join(outDir, line.file)).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(["png", 64, 64]);
    }
  });

  it("writes queries whose relevant ids match the scenes", () => {
    const scenes = lines<{ id: string; scene: Scene; key: string; keyWithoutSizes: string }>("scenes.jsonl");
    const queries = lines<{
      type: string;
      query?: PartialQuery;
      relevant: string[];
      key?: string;
      includeSizes?: boolean;
      text: string;
    }>("queries.jsonl");
    expect(queries.filter((q) => q.type === "partial").length).toBe(summary.manifest.counts.partialQueries);
    expect(queries.filter((q) => q.type === "description").length).toBe(
      summary.manifest.counts.descriptionQueries,
    );
    for (const query of queries) {
      const expected =
        query.type === "partial"
          ? scenes.filter((s) => isRelevant(query.query as PartialQuery, s.scene)).map((s) => s.id)
          : scenes
              .filter((s) => (query.includeSizes ? s.key : s.keyWithoutSizes) === query.key)
              .map((s) => s.id);
      expect(query.relevant, query.text).toEqual(expected);
      expect(query.relevant.length).toBeGreaterThan(0);
    }
  });

  it("writes VQA lines and triples that point at real images", () => {
    const vqa = lines<{ image: string; answer: string; answerIndex: number }>("vqa.jsonl");
    expect(vqa.length).toBe(summary.manifest.counts.vqa);
    for (const line of vqa) expect(SPEC_VOCABULARY.indexOf(line.answer)).toBe(line.answerIndex);
    const triples = lines<{
      file: string;
      question: string;
      answer: string;
      probe: { file: string; question: string };
    }>("triples.jsonl");
    expect(triples).toHaveLength(4);
    for (const triple of triples) {
      expect(existsSync(join(outDir, triple.file))).toBe(true);
      expect(existsSync(join(outDir, triple.probe.file))).toBe(true);
      expect(triple.probe.question).not.toBe(triple.question);
      expect(SPEC_VOCABULARY).toContain(triple.answer);
    }
  });

  it("writes a video with its segments", () => {
    const [video] = lines<{
      file: string;
      frames: number;
      duration: number;
      segments: Array<{
        start: number;
        end: number;
        action: string;
        descriptions: unknown[];
        clip: { frames: unknown[] };
      }>;
    }>("videos.jsonl");
    expect(video?.segments.map((s) => [s.start, s.end])).toEqual([
      [0, 2],
      [2, 4],
      [4, 6],
    ]);
    expect(video?.frames).toBe(48);
    for (const segment of video?.segments ?? []) expect(segment.clip.frames).toHaveLength(16);
    const ffprobe = (createRequire(import.meta.url)("@ffprobe-installer/ffprobe") as { path: string }).path;
    const probe = spawnSync(
      ffprobe,
      [
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,width",
        "-of",
        "csv=p=0",
        join(outDir, video?.file ?? ""),
      ],
      {
        encoding: "utf8",
      },
    );
    expect(probe.stdout.trim()).toBe("h264,64");
  });

  it("writes a manifest, and the same files again for the same seed", async () => {
    const manifest = JSON.parse(readFileSync(join(outDir, "manifest.json"), "utf8"));
    expect(manifest).toMatchObject({
      spec: "shapes-world/1",
      seed: 21,
      counts: { images: 24, videos: 1, clips: 3 },
    });
    const again = join(root, "b");
    await generateDataset({ ...options, outDir: again, concurrency: 1, videos: 0 });
    for (const file of [
      "scenes.jsonl",
      "vqa.jsonl",
      "triples.jsonl",
      "queries.jsonl",
      "images/img-000007.png",
    ]) {
      expect(readFileSync(join(again, file)).equals(readFileSync(join(outDir, file))), file).toBe(true);
    }
  });

  it("refuses a non-empty folder unless overwriting a previous dataset", async () => {
    await expect(generateDataset(options)).rejects.toThrow(/is not empty/);
    await generateDataset({ ...options, images: 2, videos: 0, overwrite: true });
    expect(lines("scenes.jsonl")).toHaveLength(2);
    await expect(
      generateDataset({ ...options, outDir: join(root, "a", "images"), overwrite: true }),
    ).rejects.toThrow(/holds no manifest.json/);
    await expect(generateDataset({ ...options, size: 20 })).rejects.toThrow(ValidationError);
    await expect(generateDataset({ ...options, size: 65, videos: 1 })).rejects.toThrow(/odd/);
  });
});
