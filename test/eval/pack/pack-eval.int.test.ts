/**
 * The pack eval end to end on the shipped pack: a tiny held-out set (40 images, 10 clips through the real
 * H.264 round trip), figures compared with the chance levels of that same set; the held-out set's
 * construction; and `loupe models eval` run in-process.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { registerModelsCommand } from "../../../src/cli/commands/models.ts";
import { MediaError } from "../../../src/errors.ts";
import {
  checkTargets,
  decodeVideoFrames,
  evaluatePack,
  heldOutClips,
  heldOutImages,
  PARTIAL_MIN_RELEVANT,
  type PackEvalReport,
} from "../../../src/eval/pack/pack-eval.ts";
import { loadModelPack, type ModelPack } from "../../../src/inference/model-pack.ts";
import { sceneKey } from "../../../src/synth/describe.ts";
import { answerQuestion, QUESTION_TYPES } from "../../../src/synth/questions.ts";

const packDir = join(import.meta.dirname, "../../../models/shapes-world-tiny");

describe("held-out set", () => {
  it("is reproducible per seed and differs between seeds", () => {
    const first = heldOutImages({ seed: 5, images: 20 });
    expect(heldOutImages({ seed: 5, images: 20 })).toEqual(first);
    expect(heldOutImages({ seed: 6, images: 20 })).not.toEqual(first);
    expect(heldOutClips({ seed: 5, clips: 4 })).toEqual(heldOutClips({ seed: 5, clips: 4 }));
  });

  it("describes each image truly, naming sizes on every other one", () => {
    heldOutImages({ seed: 1, images: 30 }).forEach(({ scene, description }, index) => {
      expect(description.includeSizes).toBe(index % 2 === 0);
      expect(description.key).toBe(sceneKey(scene, { includeSizes: description.includeSizes }));
    });
  });

  it("asks questions of different types, balanced over the set, with the scene's answers", () => {
    const set = heldOutImages({ seed: 2, images: 300, questionsPerImage: 3 });
    const counts = new Map<string, number>();
    for (const { scene, questions } of set) {
      // Count and exist are always askable; a scene such as two blue circles and two blue squares allows
      // nothing else.
      expect(questions.length).toBeGreaterThanOrEqual(2);
      expect(questions.length).toBeLessThanOrEqual(3);
      expect(new Set(questions.map((question) => question.type)).size).toBe(questions.length);
      for (const question of questions) {
        expect(answerQuestion(question, scene)).toBe(question.answer);
        counts.set(question.type, (counts.get(question.type) ?? 0) + 1);
      }
    }
    const perType = QUESTION_TYPES.map((type) => counts.get(type) ?? 0);
    // 900 questions over 6 types: each near 150 (color/shape/size/position are not always askable).
    expect(Math.min(...perType)).toBeGreaterThanOrEqual(130);
    expect(Math.max(...perType)).toBeLessThanOrEqual(170);
  });

  it("keys clips with and without the size word", () => {
    heldOutClips({ seed: 3, clips: 6 }).forEach(({ clip, description, keys }, index) => {
      const actor = clip.frames[0]?.objects[clip.actor];
      expect(keys.withoutSize).toBe(`${actor?.color} ${actor?.shape} ${clip.action}`);
      expect(keys.withSize).toBe(`${actor?.size} ${keys.withoutSize}`);
      expect(description.key).toBe(index % 2 === 0 ? keys.withSize : keys.withoutSize);
    });
  });
});

describe("decodeVideoFrames", () => {
  it("names the file ffmpeg could not decode", async () => {
    const missing = join(tmpdir(), "loupe-no-such-clip.mp4");
    const failure = decodeVideoFrames({ path: missing, size: 64 });
    await expect(failure).rejects.toBeInstanceOf(MediaError);
    await expect(failure).rejects.toThrow(
      /ffmpeg could not decode .*loupe-no-such-clip\.mp4: exited with code/,
    );
  });
});

describe("evaluatePack on the shipped pack", () => {
  let pack: ModelPack;
  let report: PackEvalReport;

  beforeAll(async () => {
    pack = await loadModelPack({ dir: packDir, sessionOptions: { intraOpNumThreads: 1 } });
    report = await evaluatePack({
      pack,
      seed: 4242,
      images: 40,
      clips: 10,
      variants: [{ format: "png", size: 128 }],
    });
  }, 240_000);

  afterAll(async () => {
    await pack?.close();
  });

  it("retrieves images from full descriptions far above chance", () => {
    const { textToImage } = report.baseline;
    expect(textToImage.queries).toBe(40);
    expect(textToImage.chance.recallAt1).toBeLessThan(0.05);
    expect(textToImage.recallAt1).toBeGreaterThan(textToImage.chance.recallAt1 + 0.5);
    expect(textToImage.recallAt10).toBeGreaterThan(textToImage.chance.recallAt10 + 0.4);
    expect(textToImage.recallAt1).toBeLessThanOrEqual(textToImage.recallAt5);
    expect(textToImage.recallAt5).toBeLessThanOrEqual(textToImage.recallAt10);
  });

  it("ranks partial-query matches first far above chance", () => {
    const { partial } = report.baseline;
    expect(partial.queries).toBeGreaterThan(0);
    expect(partial.queries).toBeLessThanOrEqual(partial.generated);
    expect(partial.precisionAt10).toBeGreaterThan(partial.chance + 0.2);
    expect(PARTIAL_MIN_RELEVANT).toBe(10);
  });

  it("answers questions far above the most-frequent-answer baseline", () => {
    const vqa = report.baseline.vqa;
    const asked = heldOutImages({ seed: 4242, images: 40 }).reduce(
      (sum, { questions }) => sum + questions.length,
      0,
    );
    expect(asked).toBeGreaterThan(100);
    expect(vqa?.overall.count).toBe(asked);
    expect(vqa?.overall.accuracy).toBeGreaterThan((vqa?.chance.overall ?? 1) + 0.15);
    const counted = QUESTION_TYPES.reduce((sum, type) => sum + (vqa?.byType[type].count ?? 0), 0);
    expect(counted).toBe(asked);
  });

  it("retrieves video clips decoded from H.264 far above chance", () => {
    const video = report.video;
    expect(video?.decode).toBe("ffmpeg");
    expect(video?.videoHead).toBe(true);
    expect(video?.clips).toBe(10);
    expect(video?.recallAt1).toBeGreaterThan((video?.chance.recallAt1 ?? 1) + 0.4);
  });

  it("compares a variant with the baseline and checks the targets", () => {
    const [variant] = report.variants;
    expect(variant?.label).toBe("png-128");
    expect(variant?.delta.recallAt1).toBeCloseTo(
      (variant?.textToImage.recallAt1 ?? 0) - report.baseline.textToImage.recallAt1,
      12,
    );
    expect(variant?.textToImage.recallAt1).toBeGreaterThan(variant?.textToImage.chance.recallAt1 ?? 1);
    const names = report.targets.map((check) => check.name);
    expect(names).toContain("VQA position");
    expect(names).toContain("png-128 vs jpeg-256 (largest drop)");
    const r1 = report.targets.find((check) => check.name === "text→image R@1");
    expect(r1?.met).toBe(report.baseline.textToImage.recallAt1 >= 0.7);
  });

  it("scores the detection head on the baseline: AP per class, counting, left/right, region retrieval", () => {
    const detection = report.baseline.detection;
    if (detection === undefined) throw new Error("no detection figures");
    const objects = heldOutImages({ seed: 4242, images: 40 }).reduce(
      (sum, { scene }) => sum + scene.objects.length,
      0,
    );
    expect(detection.objects).toBe(objects);
    expect(Object.keys(detection.perClass)).toEqual(["circle", "square", "triangle", "star", "hexagon"]);
    expect(Object.values(detection.perClass).reduce((sum, figures) => sum + figures.objects, 0)).toBe(
      objects,
    );
    expect(detection.ap5095).toBeLessThanOrEqual(detection.ap50);
    // Two count questions per image (always askable); left/right only where one object has the named kind.
    expect(detection.counting.overall.count).toBe(80);
    expect(detection.position.count).toBeGreaterThan(20);
    expect(detection.vqaHead?.counting.count).toBe(80);
    expect(detection.vqaHead?.position.count).toBe(detection.position.count);
    expect(detection.regionRetrieval?.queries).toBe(40);
    // The same questions through chat's grounding: every one asked, most answered by the detection head.
    expect(detection.chain?.counting.count).toBe(80);
    expect(detection.chain?.position.count).toBe(detection.position.count);
    expect(detection.chain?.fromDetector).toBeGreaterThan(0.5);
    expect(detection.chain?.counting.accuracy).toBeGreaterThan(0.75);
    expect(detection.chain?.position.accuracy).toBeGreaterThan(0.75);
    expect(report.variants[0]?.detection).toBeUndefined();
    expect(report.targets.map((check) => check.name)).toEqual(
      expect.arrayContaining([
        "detection AP@0.5",
        "detection color (true positives)",
        "detection size (true positives)",
        "counting from detections",
        "left/right from detections",
        "counting through chat's grounding",
        "left/right through chat's grounding",
        "text→region R@1",
      ]),
    );
    // A floor a broken head or box mapping fails (40 images: below the 0.90 target on purpose).
    expect(detection.ap50).toBeGreaterThan(0.75);
    expect(detection.position.accuracy).toBeGreaterThan(0.75);
  });

  it("flags a variant that drops more than 0.03 below the baseline", () => {
    const [variant] = report.variants;
    if (variant === undefined) throw new Error("no variant");
    const worse = { ...variant, delta: { ...variant.delta, partialPrecisionAt10: -0.05 } };
    const checks = checkTargets({ ...report, variants: [worse] });
    expect(checks.find((check) => check.name.startsWith("png-128"))).toMatchObject({
      value: -0.05,
      met: false,
    });
  });
});

describe("loupe models eval", () => {
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "loupe-models-eval-"));
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await rm(scratch, { recursive: true, force: true });
  });

  it("prints the figures and targets and writes the JSON report", async () => {
    const output: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      output.push(String(chunk));
      return true;
    });
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const program = new Command("loupe").exitOverride();
    registerModelsCommand(program);
    const jsonPath = join(scratch, "report.json");
    await program.parseAsync([
      ...["node", "loupe", "models", "eval", "--pack", packDir, "--images", "20", "--clips", "2"],
      ...["--video-decode", "frames", "--size", "128", "--format", "png", "--json", jsonPath],
    ]);
    vi.restoreAllMocks();
    const text = output.join("");
    expect(text).toMatch(/shapes-world-tiny@2 on a held-out Shapes World set: seed 90210/);
    expect(text).toMatch(/^png-128\s+\d\.\d{3}\s+\d\.\d{3}\s+\d\.\d{3}/m);
    expect(text).toMatch(/rendered frames fed directly/);
    expect(text).toMatch(/VQA position\s+\d\.\d{3}\s+≥ 0\.75\s+(met|NOT MET)/);
    expect(text).toMatch(/^Detection \(png-128\): \d+ objects, \d+ detections at the pack's threshold/m);
    expect(text).toMatch(/detection AP@0\.5\s+\d\.\d{3}\s+≥ 0\.90\s+(met|NOT MET)/);
    const json = JSON.parse(await readFile(jsonPath, "utf8")) as PackEvalReport;
    expect(json.images).toBe(20);
    expect(json.baseline.label).toBe("png-128");
    expect(json.video?.clips).toBe(2);
  }, 120_000);

  it("refuses an out-of-range flag with what is allowed", async () => {
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const program = new Command("loupe").exitOverride();
    registerModelsCommand(program);
    await expect(program.parseAsync(["node", "loupe", "models", "eval", "--images", "5"])).rejects.toThrow(
      /--images takes a whole number from 10 to 100000; got "5"/,
    );
    vi.restoreAllMocks();
  });
});
