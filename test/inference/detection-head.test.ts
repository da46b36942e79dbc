/**
 * The detection runtime: box mapping from the tower's input crop to the original image and slot decoding on
 * hand-made outputs, then the shipped pack's real head on its fixture images (the class, colour, size and box
 * of every object of the scenes `fixtures/parity.json` records, and the PyTorch reference outputs of
 * `fixtures/detection-parity.json`).
 */
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUNDLED_MODEL_PACK } from "../../src/config.ts";
import { ValidationError } from "../../src/errors.ts";
import {
  cropBoxToImage,
  type Detection,
  type DetectionSlots,
  decodeDetections,
  findObject,
  type NormalizedBox,
} from "../../src/inference/detection-head.ts";
import { ImageProcessor } from "../../src/inference/image-processor.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/model-pack.ts";
import { detectionConfigSchema, preprocessorConfigSchema } from "../../src/inference/pack-config.ts";
import { cosineSimilarity } from "../../src/inference/vector-math.ts";

const fixtures = join(BUNDLED_MODEL_PACK, "fixtures");

/** The shipped pack's geometry: shortest edge resized to 128, then a 128 × 128 center crop. */
const shipped = new ImageProcessor({
  config: preprocessorConfigSchema.parse({ size: { shortest_edge: 128 }, crop_size: 128 }),
});

describe("cropBoxToImage", () => {
  it("is the identity when the image is the crop", () => {
    const frame = shipped.cropFrame({ width: 128, height: 128 });
    expect(frame).toEqual({
      resizedWidth: 128,
      resizedHeight: 128,
      left: 0,
      top: 0,
      cropWidth: 128,
      cropHeight: 128,
    });
    const box = { x0: 0.1, y0: 0.2, x1: 0.3, y1: 0.4 };
    expect(cropBoxToImage({ box, frame })).toEqual(box);
  });

  it("maps through the crop offset of a wide image (400x200 → 256x128, crop from x = 64)", () => {
    const frame = shipped.cropFrame({ width: 400, height: 200 });
    expect(frame).toEqual({
      resizedWidth: 256,
      resizedHeight: 128,
      left: 64,
      top: 0,
      cropWidth: 128,
      cropHeight: 128,
    });
    // The whole crop is the middle half of the image; its center quarter is x 0.375–0.625.
    expect(cropBoxToImage({ box: { x0: 0, y0: 0, x1: 1, y1: 1 }, frame })).toEqual({
      x0: 0.25,
      y0: 0,
      x1: 0.75,
      y1: 1,
    });
    expect(cropBoxToImage({ box: { x0: 0.25, y0: 0.5, x1: 0.75, y1: 0.75 }, frame })).toEqual({
      x0: 0.375,
      y0: 0.5,
      x1: 0.625,
      y1: 0.75,
    });
  });

  it("maps through the resize of a tall image with an odd offset (100x301 → 128x385, crop from y = 128)", () => {
    const frame = shipped.cropFrame({ width: 100, height: 301 });
    expect(frame).toEqual({
      resizedWidth: 128,
      resizedHeight: 385,
      left: 0,
      top: 128,
      cropWidth: 128,
      cropHeight: 128,
    });
    const mapped = cropBoxToImage({ box: { x0: 0.5, y0: 0.5, x1: 1, y1: 1 }, frame });
    expect(mapped.x0).toBe(0.5);
    expect(mapped.y0).toBeCloseTo(192 / 385, 12);
    expect(mapped.y1).toBeCloseTo(256 / 385, 12);
  });

  it("clips to the image where the crop is padding, and orders swapped corners", () => {
    // No resize: a 64x64 image sits in the middle of the 128x128 crop, 32 pixels of padding around it.
    const padded = new ImageProcessor({
      config: preprocessorConfigSchema.parse({ do_resize: false, crop_size: 128 }),
    });
    const frame = padded.cropFrame({ width: 64, height: 64 });
    expect(frame).toMatchObject({ resizedWidth: 64, left: -32, top: -32 });
    expect(cropBoxToImage({ box: { x0: 0.75, y0: 0.75, x1: 0.25, y1: 0.25 }, frame })).toEqual({
      x0: 0,
      y0: 0,
      x1: 1,
      y1: 1,
    });
    expect(cropBoxToImage({ box: { x0: 0.125, y0: 0.2, x1: 0.375, y1: 0.3 }, frame })).toEqual({
      x0: 0,
      y0: 0,
      x1: 0.25,
      y1: expect.closeTo(0.1, 12),
    });
  });
});

describe("decodeDetections", () => {
  const config = detectionConfigSchema.parse({
    classes: ["circle", "square"],
    attributes: { color: ["red", "green", "blue"] },
    outputs: { scores: "s", boxes: "b", classes: "c", attributes: { color: "a" }, embeddings: "e" },
    max_detections: 4,
    score_threshold: 0.5,
  });
  const slots: DetectionSlots = {
    scores: Float32Array.of(0.9, 0.3, 0.5, 0.7),
    boxes: Float32Array.of(
      ...[0, 0, 0.5, 0.5],
      ...[0.5, 0.5, 1, 1],
      ...[0.6, 0.1, 0.4, 0.3], // corners swapped in x
      ...[0, 0, 0.2, 0.2], // in the padding of the frame below
    ),
    classes: Float32Array.of(0.2, 0.8, 0.6, 0.4, 0.1, 0.9, 0.7, 0.3),
    attributes: { color: Float32Array.of(0.1, 0.1, 0.8, 0.5, 0.3, 0.2, 0.2, 0.7, 0.1, 0.4, 0.4, 0.2) },
    embeddings: Float32Array.of(3, 4, 1, 1, 0, 2, 5, 5),
  };

  it("keeps slots at or above the threshold, highest score first, with argmax labels and unit embeddings", () => {
    const found = decodeDetections({ slots, config, threshold: 0.5 });
    expect(found.map((detection) => detection.score)).toEqual([
      Math.fround(0.9),
      Math.fround(0.7),
      Math.fround(0.5),
    ]);
    const [first, second, third] = found as [Detection, Detection, Detection];
    expect(first).toMatchObject({ label: "square", attributes: { color: { value: "blue" } } });
    expect(first.labelScore).toBeCloseTo(0.8, 6);
    expect(first.attributes.color?.score).toBeCloseTo(0.8, 6);
    expect(Array.from(first.embedding ?? [])).toEqual([Math.fround(0.6), Math.fround(0.8)]);
    expect(second).toMatchObject({ label: "circle", attributes: { color: { value: "red" } } });
    expect(Array.from(second.embedding ?? []).map((value) => value * Math.SQRT2)).toEqual([
      expect.closeTo(1, 6),
      expect.closeTo(1, 6),
    ]);
    expect(third).toMatchObject({ label: "square", attributes: { color: { value: "green" } } });
    expect(third.box).toEqual({
      x0: Math.fround(0.4),
      y0: Math.fround(0.1),
      x1: Math.fround(0.6),
      y1: Math.fround(0.3),
    });
    expect(decodeDetections({ slots, config, threshold: 0.95 })).toEqual([]);
    expect(decodeDetections({ slots, config, threshold: 0 })).toHaveLength(4);
  });

  it("maps boxes to the original image and drops those left empty there", () => {
    const padded = new ImageProcessor({
      config: preprocessorConfigSchema.parse({ do_resize: false, crop_size: 128 }),
    });
    const frame = padded.cropFrame({ width: 64, height: 64 });
    const found = decodeDetections({ slots, config, frame, threshold: 0 });
    // Slot 3 lies wholly in the padding.
    expect(found.map((detection) => detection.score)).toEqual([
      Math.fround(0.9),
      Math.fround(0.5),
      Math.fround(0.3),
    ]);
    expect(found[0]?.box).toEqual({ x0: 0, y0: 0, x1: 0.5, y1: 0.5 });
    expect(found[2]?.box).toEqual({ x0: 0.5, y0: 0.5, x1: 1, y1: 1 });
  });

  it("leaves the embedding out when the head has none", () => {
    const { embeddings: _, ...withoutEmbeddings } = slots;
    const [first] = decodeDetections({ slots: withoutEmbeddings, config, threshold: 0.5 });
    expect(first?.embedding).toBeUndefined();
  });
});

describe("findObject", () => {
  const detection = (
    label: Record<string, number>,
    color: Record<string, number>,
    score: number,
    x: number,
  ): Detection => {
    const top = (distribution: Record<string, number>) =>
      Object.entries(distribution).sort((left, right) => right[1] - left[1])[0] as [string, number];
    return {
      label: top(label)[0],
      labelScore: top(label)[1],
      attributes: { color: { value: top(color)[0], score: top(color)[1] } },
      score,
      box: { x0: x, y0: 0.1, x1: x + 0.1, y1: 0.2 },
      probabilities: { label, attributes: { color } },
    };
  };
  const redHexagonMaybeCircle = detection(
    { hexagon: 0.55, circle: 0.45 },
    { red: 0.97, orange: 0.03 },
    0.95,
    0.1,
  );
  const blueCircle = detection({ circle: 0.98, hexagon: 0.02 }, { blue: 0.99, red: 0.01 }, 0.99, 0.7);

  it("picks the object a description most likely means, even when its class came second", () => {
    const found = findObject({
      detections: [blueCircle, redHexagonMaybeCircle],
      label: "circle",
      attributes: { color: "red" },
    });
    expect(found?.detection).toBe(redHexagonMaybeCircle);
    expect(found?.likelihood).toBeCloseTo(0.95 * 0.45 * 0.97, 6);
    expect(findObject({ detections: [blueCircle, redHexagonMaybeCircle], label: "circle" })?.detection).toBe(
      blueCircle,
    );
  });

  it("uses the argmax values where a detection has no distributions, and finds nothing that has none", () => {
    const { probabilities: _dropped, ...bare } = redHexagonMaybeCircle;
    expect(
      findObject({ detections: [bare], label: "hexagon", attributes: { color: "red" } })?.likelihood,
    ).toBe(0.95);
    expect(findObject({ detections: [bare], label: "circle" })).toBeUndefined();
    expect(findObject({ detections: [], label: "circle" })).toBeUndefined();
  });
});

describe("the detection config schema", () => {
  it("refuses an attribute without an output, naming the field", () => {
    const parsed = detectionConfigSchema.safeParse({
      classes: ["circle"],
      attributes: { color: ["red"], size: ["small"] },
      outputs: { scores: "s", boxes: "b", classes: "c", attributes: { color: "a" } },
      max_detections: 4,
      score_threshold: 0.5,
    });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(["outputs", "attributes"]);
  });

  it("refuses a threshold outside [0, 1]", () => {
    const parsed = detectionConfigSchema.safeParse({
      classes: ["circle"],
      outputs: { scores: "s", boxes: "b", classes: "c" },
      max_detections: 4,
      score_threshold: 1.5,
    });
    expect(parsed.success).toBe(false);
  });
});

interface SceneObject {
  shape: string;
  color: string;
  size: string;
  x: number;
  y: number;
  r: number;
}

const scenes = (
  JSON.parse(readFileSync(join(fixtures, "parity.json"), "utf8")) as {
    images: { file: string; scene: { objects: SceneObject[] } }[];
  }
).images;

const fixtureImage = (file: string): Buffer => readFileSync(join(fixtures, file));

function iou(left: NormalizedBox, right: NormalizedBox): number {
  const width = Math.max(0, Math.min(left.x1, right.x1) - Math.max(left.x0, right.x0));
  const height = Math.max(0, Math.min(left.y1, right.y1) - Math.max(left.y0, right.y0));
  const area = (box: NormalizedBox): number => (box.x1 - box.x0) * (box.y1 - box.y0);
  const intersection = width * height;
  return intersection / (area(left) + area(right) - intersection);
}

describe("the shipped pack's detection head", () => {
  let pack: ModelPack;

  beforeAll(async () => {
    // The manifest is checked by shipped-pack.int.test.ts; this suite is about the runtime.
    pack = await loadModelPack({
      dir: BUNDLED_MODEL_PACK,
      verifyHashes: false,
      sessions: "lazy",
      sessionOptions: { intraOpNumThreads: 1 },
      batchSizes: { detection: 3 },
    });
  });

  afterAll(async () => {
    await pack?.close();
  });

  it("is declared and wired", () => {
    expect(pack.capabilities.detection).toBe(true);
    expect(pack.info.modelFiles).toContain("onnx/detection_model.onnx");
    const detector = pack.detector;
    expect(detector?.config.classes).toEqual(["circle", "square", "triangle", "star", "hexagon"]);
    expect(detector?.config.attributes).toEqual({
      color: ["red", "green", "blue", "yellow", "purple", "orange"],
      size: ["small", "large"],
    });
  });

  it("outputs well-formed detections for every slot, across head batches", async () => {
    const detector = pack.detector;
    if (detector === undefined) throw new Error("the shipped pack has no detection head");
    const images = scenes.map((scene) => fixtureImage(scene.file));
    const { embeddings, detections } = await detector.encodeAndDetect({ images, threshold: 0 });
    expect(detections).toHaveLength(images.length);
    const plain = await pack.imageEmbedder.embed({ images });
    embeddings.forEach((embedding, index) => {
      expect(Array.from(embedding)).toEqual(
        Array.from(plain[index] ?? []).map((value) => expect.closeTo(value, 5)),
      );
    });
    for (const image of detections) {
      expect(image).toMatchObject({ width: 128, height: 128 });
      expect(image.detections.length).toBeGreaterThan(0);
      expect(image.detections.length).toBeLessThanOrEqual(detector.config.max_detections);
      const scores = image.detections.map((detection) => detection.score);
      expect(scores).toEqual([...scores].sort((left, right) => right - left));
      for (const detection of image.detections) {
        expect(detector.config.classes).toContain(detection.label);
        expect(Object.keys(detection.attributes).sort()).toEqual(["color", "size"]);
        const { x0, y0, x1, y1 } = detection.box;
        expect(0 <= x0 && x0 < x1 && x1 <= 1 && 0 <= y0 && y0 < y1 && y1 <= 1).toBe(true);
        expect(detection.embedding).toHaveLength(pack.dimension);
        expect(Math.hypot(...(detection.embedding ?? []))).toBeCloseTo(1, 5);
      }
    }
  });

  it("maps boxes back to the original image: a padded copy gives the same objects where they are in it", async () => {
    const detector = pack.detector;
    if (detector === undefined) throw new Error("the shipped pack has no detection head");
    const scene = scenes[3] ?? scenes[0];
    if (scene === undefined) throw new Error("parity.json has no images");
    const original = fixtureImage(scene.file);
    // 32 columns each side: the 192x128 canvas is not resized, and its center crop is the original image.
    const canvas = await sharp(original)
      .extend({ left: 32, right: 32, background: { r: 0, g: 0, b: 0 } })
      .png()
      .toBuffer();
    const [alone, padded] = await detector.detect({ images: [original, canvas], threshold: 0 });
    expect(padded).toMatchObject({ width: 192, height: 128 });
    expect(padded?.detections.length).toBe(alone?.detections.length);
    alone?.detections.forEach((detection, index) => {
      const moved = padded?.detections[index] as Detection;
      expect(moved.label).toBe(detection.label);
      expect(moved.score).toBeCloseTo(detection.score, 5);
      expect(moved.box.x0).toBeCloseTo((32 + detection.box.x0 * 128) / 192, 5);
      expect(moved.box.x1).toBeCloseTo((32 + detection.box.x1 * 128) / 192, 5);
      expect(moved.box.y0).toBeCloseTo(detection.box.y0, 5);
      expect(moved.box.y1).toBeCloseTo(detection.box.y1, 5);
    });
  });

  it("reads sizes and boxes of the image as displayed (EXIF orientation applied)", async () => {
    const detector = pack.detector;
    if (detector === undefined) throw new Error("the shipped pack has no detection head");
    const canvas = await sharp(fixtureImage(scenes[3]?.file ?? "image-3.png"))
      .extend({ left: 32, right: 32, background: { r: 0, g: 0, b: 0 } })
      .png()
      .toBuffer();
    const upright = await sharp(canvas).jpeg({ quality: 100, chromaSubsampling: "4:4:4" }).toBuffer();
    // Stored turned a quarter to the left, with the EXIF tag (6) that turns it back for display.
    const turnedLeft = await sharp(canvas).rotate(-90).png().toBuffer();
    const stored = await sharp(turnedLeft)
      .jpeg({ quality: 100, chromaSubsampling: "4:4:4" })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    expect(await sharp(stored).metadata()).toMatchObject({ width: 128, height: 192, orientation: 6 });
    const [plain, turned] = await detector.detect({ images: [upright, stored], threshold: 0 });
    expect(turned).toMatchObject({ width: 192, height: 128 });
    const best = plain?.detections[0];
    if (best === undefined) throw new Error("no detection at threshold 0");
    const overlaps = (turned?.detections ?? []).map((detection) => iou(detection.box, best.box));
    expect(Math.max(...overlaps)).toBeGreaterThan(0.9);
  });

  it("refuses a threshold outside [0, 1], naming what is allowed", async () => {
    const detect = (threshold: number) =>
      pack.detector?.detect({ images: [fixtureImage("image-0.png")], threshold });
    await expect(detect(1.5)).rejects.toThrow(ValidationError);
    await expect(detect(Number.NaN)).rejects.toThrow(/threshold must be a number from 0 to 1, got NaN/);
    await expect(pack.detector?.detect({ images: [] })).resolves.toEqual([]);
  });

  it("finds every object of the fixture scenes, one detection each, with its colour and size (and mostly its class)", async () => {
    const detector = pack.detector;
    if (detector === undefined) throw new Error("the shipped pack has no detection head");
    const found = await detector.detect({ images: scenes.map((scene) => fixtureImage(scene.file)) });
    let objects = 0;
    let rightClass = 0;
    scenes.forEach((scene, index) => {
      const detections = found[index]?.detections ?? [];
      expect(detections, scene.file).toHaveLength(scene.scene.objects.length);
      for (const object of scene.scene.objects) {
        const truth = {
          x0: object.x - object.r,
          y0: object.y - object.r,
          x1: object.x + object.r,
          y1: object.y + object.r,
        };
        const match = detections.find(
          (detection) =>
            iou(detection.box, truth) >= 0.5 &&
            detection.attributes.color?.value === object.color &&
            detection.attributes.size?.value === object.size,
        );
        expect(match, `${scene.file}: the ${object.size} ${object.color} ${object.shape}`).toBeDefined();
        objects += 1;
        if (match?.label === object.shape) rightClass += 1;
      }
    });
    // The shape class is the head's hardest output; on ten objects this is a smoke check (the pack's
    // evaluation measures AP over a thousand scenes).
    expect(rightClass / objects).toBeGreaterThanOrEqual(0.8);
  });
});

describe("a detection head without region embeddings", () => {
  let scratch: string;
  let pack: ModelPack;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "loupe-detection-"));
    const dir = join(scratch, "pack");
    await cp(BUNDLED_MODEL_PACK, dir, { recursive: true });
    const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as {
      loupe: { detection: { outputs: Record<string, unknown> } };
    };
    delete config.loupe.detection.outputs.embeddings;
    await writeFile(join(dir, "config.json"), JSON.stringify(config));
    pack = await loadModelPack({ dir, verifyHashes: false, sessions: "lazy" });
  });

  afterAll(async () => {
    await pack?.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it("embeds each region's crop, enlarged by a fifth, through the vision tower", async () => {
    const detector = pack.detector;
    if (detector === undefined) throw new Error("the copied pack has no detection head");
    const scene = scenes[2] ?? scenes[0];
    if (scene === undefined) throw new Error("parity.json has no images");
    const image = fixtureImage(scene.file);
    const [found] = await detector.detect({ images: [image], threshold: 0 });
    const detections = (found?.detections ?? []).slice(0, 3);
    expect(detections.length).toBeGreaterThan(0);
    // The same crops cut by sharp from the PNG, embedded as images of their own.
    const crops = await Promise.all(
      detections.map(({ box }) => {
        const padX = (box.x1 - box.x0) * 0.1;
        const padY = (box.y1 - box.y0) * 0.1;
        const left = Math.floor(Math.max(0, box.x0 - padX) * 128);
        const top = Math.floor(Math.max(0, box.y0 - padY) * 128);
        const right = Math.min(128, Math.max(left + 1, Math.ceil(Math.min(1, box.x1 + padX) * 128)));
        const bottom = Math.min(128, Math.max(top + 1, Math.ceil(Math.min(1, box.y1 + padY) * 128)));
        return sharp(image)
          .extract({ left, top, width: right - left, height: bottom - top })
          .png()
          .toBuffer();
      }),
    );
    const expected = await pack.imageEmbedder.embed({ images: crops });
    detections.forEach((detection, index) => {
      expect(detection.embedding).toHaveLength(pack.dimension);
      expect(Math.hypot(...(detection.embedding ?? []))).toBeCloseTo(1, 5);
      expect(cosineSimilarity(detection.embedding ?? [], expected[index] ?? [])).toBeGreaterThan(0.999);
    });
  });
});

interface ParityDetection {
  score: number;
  box: NormalizedBox;
  label: string;
  labelScore: number;
  attributes: Record<string, { value: string; score: number }>;
  /** The first values of the L2-normalized region embedding. */
  embedding_head: number[];
}

interface ParityImage {
  file: string;
  width: number;
  height: number;
  /** The head's first slot scores, thresholded or not. */
  top_scores: number[];
  detections: ParityDetection[];
}

const parityFile = join(fixtures, "detection-parity.json");

describe.runIf(existsSync(parityFile))(
  "the detection head against PyTorch (fixtures/detection-parity.json)",
  () => {
    let pack: ModelPack;

    beforeAll(async () => {
      pack = await loadModelPack({ dir: BUNDLED_MODEL_PACK, verifyHashes: false, sessions: "lazy" });
    });

    afterAll(async () => {
      await pack?.close();
    });

    it("gives the reference slot scores and detections on the fixture PNGs", async () => {
      const parity = JSON.parse(readFileSync(parityFile, "utf8")) as {
        threshold: number;
        images: ParityImage[];
      };
      const detector = pack.detector;
      if (detector === undefined) throw new Error("the shipped pack has no detection head");
      expect(parity.threshold).toBe(detector.config.score_threshold);
      const images = parity.images.map((image) => fixtureImage(image.file));
      const encoded = await pack.imageEmbedder.encode({ images, withTokens: true });
      const slots = await detector.runHead({ tokens: encoded.tokens ?? [] });
      const found = await detector.detect({ images });
      parity.images.forEach((image, index) => {
        expect(Array.from(slots[index]?.scores ?? []).slice(0, image.top_scores.length), image.file).toEqual(
          image.top_scores.map((score) => expect.closeTo(score, 3)),
        );
        const result = found[index];
        expect(result).toMatchObject({ width: image.width, height: image.height });
        const detections = result?.detections ?? [];
        expect(
          detections.map((detection) => detection.label),
          image.file,
        ).toEqual(image.detections.map((detection) => detection.label));
        image.detections.forEach((expected, slot) => {
          const actual = detections[slot] as Detection;
          expect(actual.score).toBeCloseTo(expected.score, 3);
          expect(actual.labelScore).toBeCloseTo(expected.labelScore, 3);
          for (const corner of ["x0", "y0", "x1", "y1"] as const) {
            expect(actual.box[corner]).toBeCloseTo(expected.box[corner], 3);
          }
          for (const [name, attribute] of Object.entries(expected.attributes)) {
            expect(actual.attributes[name]?.value).toBe(attribute.value);
            expect(actual.attributes[name]?.score).toBeCloseTo(attribute.score, 3);
          }
          expect(Array.from(actual.embedding ?? []).slice(0, expected.embedding_head.length)).toEqual(
            expected.embedding_head.map((value) => expect.closeTo(value, 3)),
          );
        });
      });
    });
  },
);
