/**
 * POST /v1/detect through Loupe's app over a real Milvus Lite and the bundled pack: the objects of a fixture
 * scene (the pack's `fixtures/parity.json` records them) found with their class, colour, size and box; the
 * same answer for the image sent as base64, a data URL, an upload, a stored item's id and an http(s) URL;
 * a `query` that ranks the regions by their match with the text; and hostile inputs (an empty image, a 1×1
 * image, a 40 MP image, a 10,000-character query, a bad threshold) answered with errors that name the
 * limit. A plain CLIP pack without the head answers 503 naming the missing file.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUNDLED_MODEL_PACK } from "../../src/config.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/index.ts";
import { makeTestApp } from "../helpers/app.ts";
import { makePlainPack } from "../helpers/plain-pack.ts";
import { type IngestHarness, multipart, startIngestHarness, TENANT_HEADER } from "../ingest/harness.ts";

const TENANT = "alpha";

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

interface DetectionItem {
  label: string;
  labelScore: number;
  attributes: Record<string, string>;
  score: number;
  box: Box;
  boxPixels: Box;
  match?: number;
}

interface DetectBody {
  model: string;
  image: { width: number; height: number };
  detections: DetectionItem[];
}

interface SceneObject {
  shape: string;
  color: string;
  size: string;
  x: number;
  y: number;
  r: number;
}

/** An object's ground-truth box: the square around its bounding circle. */
const truthBox = (object: SceneObject): Box => ({
  x0: object.x - object.r,
  y0: object.y - object.r,
  x1: object.x + object.r,
  y1: object.y + object.r,
});

function iou(left: Box, right: Box): number {
  const width = Math.max(0, Math.min(left.x1, right.x1) - Math.max(left.x0, right.x0));
  const height = Math.max(0, Math.min(left.y1, right.y1) - Math.max(left.y0, right.y0));
  const area = (box: Box): number => (box.x1 - box.x0) * (box.y1 - box.y0);
  const intersection = width * height;
  return intersection / (area(left) + area(right) - intersection);
}

const fixtures = path.join(BUNDLED_MODEL_PACK, "fixtures");
/** image-3.png: a large red hexagon, two large blue hexagons and a small purple circle. */
const SCENE_FILE = "image-3.png";

describe("POST /v1/detect (real Milvus Lite, the bundled pack)", () => {
  let harness: IngestHarness;
  let imageServer: http.Server;
  let imageServerUrl: string;
  let scene: Buffer;
  let objects: SceneObject[];
  let itemId: string;
  let otherTenantId: string;
  let detectorClasses: string[];

  const post = (body: unknown, tenant = TENANT): Promise<Response> =>
    Promise.resolve(
      harness.app.request("/v1/detect", {
        method: "POST",
        headers: {
          [TENANT_HEADER]: tenant,
          ...(body instanceof FormData ? {} : { "content-type": "application/json" }),
        },
        body: body instanceof FormData ? body : JSON.stringify(body),
      }),
    );

  const read = async <T>(response: Response, status: number): Promise<T> => {
    const text = await response.text();
    expect(response.status, text.slice(0, 400)).toBe(status);
    return JSON.parse(text) as T;
  };

  const errorMessage = async (response: Response, status: number): Promise<string> =>
    (await read<{ error: { message: string } }>(response, status)).error.message;

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "detect", env: { LOUPE_URL_ALLOW_HOSTS: "127.0.0.1" } });
    scene = await readFile(path.join(fixtures, SCENE_FILE));
    detectorClasses = harness.models.detector?.config.classes ?? [];
    const parity = JSON.parse(await readFile(path.join(fixtures, "parity.json"), "utf8")) as {
      images: { file: string; scene: { objects: SceneObject[] } }[];
    };
    objects = parity.images.find((image) => image.file === SCENE_FILE)?.scene.objects ?? [];
    const upload = async (tenant: string, bytes: Buffer): Promise<string> => {
      const response = await harness.app.request("/v1/images", {
        method: "POST",
        headers: { [TENANT_HEADER]: tenant },
        body: multipart({ files: [{ name: `${tenant}.png`, bytes, type: "image/png" }] }),
      });
      const body = await read<{ items: { id: string }[] }>(response, 200);
      return body.items[0]?.id ?? "";
    };
    itemId = await upload(TENANT, scene);
    otherTenantId = await upload("beta", scene);
    imageServer = http.createServer((request, response) => {
      if (request.url !== "/scene.png") {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { "content-type": "image/png", "content-length": scene.length }).end(scene);
    });
    await new Promise<void>((resolve) => imageServer.listen(0, "127.0.0.1", resolve));
    imageServerUrl = `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}`;
  }, 300_000);

  afterAll(async () => {
    await new Promise<void>((resolve) => (imageServer ? imageServer.close(() => resolve()) : resolve()));
    await harness?.dispose();
  });

  it("finds every object of the scene, one detection each, with its colour, size and box, highest score first", async () => {
    const body = await read<DetectBody>(await post({ image: scene.toString("base64") }), 200);
    expect(body.model).toBe(harness.models.modelId);
    expect(body.image).toEqual({ width: 128, height: 128 });
    expect(body.detections).toHaveLength(objects.length);
    for (const object of objects) {
      const match = body.detections.find(
        (detection) =>
          iou(detection.box, truthBox(object)) >= 0.5 &&
          detection.attributes.color === object.color &&
          detection.attributes.size === object.size,
      );
      expect(match, `the ${object.size} ${object.color} ${object.shape}`).toBeDefined();
      expect(detectorClasses).toContain(match?.label);
    }
    const scores = body.detections.map((detection) => detection.score);
    expect(scores).toEqual([...scores].sort((left, right) => right - left));
    for (const detection of body.detections) {
      expect(detection.score).toBeGreaterThanOrEqual(0.5);
      expect(detection.match).toBeUndefined();
      const { box, boxPixels } = detection;
      expect(
        0 <= box.x0 && box.x0 < box.x1 && box.x1 <= 1 && 0 <= box.y0 && box.y0 < box.y1 && box.y1 <= 1,
      ).toBe(true);
      for (const corner of ["x0", "y0", "x1", "y1"] as const) {
        expect(boxPixels[corner]).toBeCloseTo(box[corner] * 128, 1);
      }
    }
  });

  it("answers the same for base64, a data URL, an upload, a stored item's id and an http(s) URL", async () => {
    const form = new FormData();
    form.append("image", new File([new Uint8Array(scene)], "scene.png", { type: "image/png" }));
    form.append("threshold", "0.5");
    const answers = await Promise.all(
      [
        post({ image: scene.toString("base64") }),
        post({ image: `data:image/png;base64,${scene.toString("base64")}` }),
        post(form),
        post({ image: itemId }),
        post({ image: `${imageServerUrl}/scene.png` }),
      ].map(async (response) => read<DetectBody>(await response, 200)),
    );
    const [first, ...others] = answers;
    for (const other of others) expect(other).toEqual(first);
    expect(await errorMessage(await post({ image: otherTenantId }), 404)).toContain(otherTenantId);
    expect(await errorMessage(await post({ image: `${imageServerUrl}/missing.png` }), 422)).toMatch(/404/);
  });

  it("ranks the regions by their match with a query", async () => {
    const body = await read<DetectBody>(
      await post({ image: itemId, query: "a small purple circle", threshold: 0 }),
      200,
    );
    const matches = body.detections.map((detection) => detection.match ?? Number.NaN);
    expect(matches.every((match) => match >= -1 && match <= 1)).toBe(true);
    expect(matches).toEqual([...matches].sort((left, right) => right - left));
    // The region that matches the text best is where the scene's small purple circle is.
    const circle = objects.find((object) => object.shape === "circle" && object.color === "purple");
    if (circle === undefined) throw new Error(`${SCENE_FILE} has no purple circle`);
    const [best] = body.detections;
    expect(best === undefined ? 0 : iou(best.box, truthBox(circle))).toBeGreaterThanOrEqual(0.5);
    expect(best?.attributes).toMatchObject({ color: "purple", size: "small" });
  });

  it("applies the threshold, and refuses one outside 0–1", async () => {
    const all = await read<DetectBody>(await post({ image: itemId, threshold: 0 }), 200);
    const none = await read<DetectBody>(await post({ image: itemId, threshold: 1 }), 200);
    const usual = await read<DetectBody>(await post({ image: itemId }), 200);
    expect(all.detections.length).toBeGreaterThan(usual.detections.length);
    expect(none.detections.every((detection) => detection.score >= 1)).toBe(true);
    expect(all.detections.slice(0, usual.detections.length)).toEqual(usual.detections);
    expect(await errorMessage(await post({ image: itemId, threshold: 1.5 }), 400)).toContain(
      "threshold must be a number from 0 to 1",
    );
    const form = new FormData();
    form.append("image", new File([new Uint8Array(scene)], "scene.png", { type: "image/png" }));
    form.append("threshold", "high");
    expect(await errorMessage(await post(form), 400)).toContain("threshold must be a number from 0 to 1");
  });

  it("answers hostile inputs with errors that say what is wrong and what is allowed", async () => {
    expect(await errorMessage(await post({}), 400)).toMatch(/needs an image/);
    expect(await errorMessage(await post({ image: "" }), 400)).toMatch(/image/);
    const empty = new FormData();
    empty.append("image", new File([], "empty.png", { type: "image/png" }));
    expect(await errorMessage(await post(empty), 400)).toMatch(/empty/);

    const query = "a red circle ".repeat(800).slice(0, 10_000);
    expect(await errorMessage(await post({ image: itemId, query }), 400)).toContain(
      "at most 1000 characters",
    );

    // 7,300 × 5,500 is 40.15 MP, over the default limit of 40 MP: refused from the header, before decoding.
    const huge = await sharp({
      create: { width: 7300, height: 5500, channels: 3, background: { r: 120, g: 120, b: 120 } },
    })
      .jpeg({ quality: 50 })
      .toBuffer();
    const tooLarge = await errorMessage(await post({ image: huge.toString("base64") }), 413);
    expect(tooLarge).toContain("7300x5500");
    expect(tooLarge).toContain("the limit is 40.0 MP");

    const pixel = await sharp({ create: { width: 1, height: 1, channels: 3, background: "#ff0000" } })
      .png()
      .toBuffer();
    const tiny = await read<DetectBody>(await post({ image: pixel.toString("base64"), threshold: 0 }), 200);
    expect(tiny.image).toEqual({ width: 1, height: 1 });
    for (const detection of tiny.detections) {
      expect(detection.boxPixels.x1).toBeLessThanOrEqual(1);
      expect(detection.boxPixels.y1).toBeLessThanOrEqual(1);
    }
  });
});

describe("POST /v1/detect with a pack without the detection head", () => {
  let workDir: string;
  let pack: ModelPack;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-detect-plain-"));
    pack = await loadModelPack({ dir: await makePlainPack({ dir: path.join(workDir, "clip-plain") }) });
  }, 120_000);

  afterAll(async () => {
    await pack?.close();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("answers 503 naming the missing head", async () => {
    const image = await readFile(path.join(fixtures, SCENE_FILE));
    const response = await makeTestApp({ models: pack }).request("/v1/detect", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image: image.toString("base64") }),
    });
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(response.status).toBe(503);
    expect(body.error.code).toBe("not_ready");
    expect(body.error.message).toContain("clip-plain has no detection head (onnx/detection_model.onnx)");
  });
});
