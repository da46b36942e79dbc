/**
 * Counting and left/right in the chain's visual cache from the detection head (the real shipped pack),
 * against the scenes' ground truth, and the fallbacks: the VQA head's answer when the pack has no head.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUNDLED_MODEL_PACK } from "../../src/config.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/index.ts";
import { VisualCache } from "../../src/rag/ground.ts";
import { createRng, deriveSeed, renderScene, type Scene, sampleScene } from "../../src/synth/index.ts";

const SCENES = 24;

describe("the visual cache answers counts and left/right from detections (shipped pack)", () => {
  let pack: ModelPack;
  const scenes: Array<{ scene: Scene; id: string }> = [];
  let cache: VisualCache;

  beforeAll(async () => {
    pack = await loadModelPack({ dir: BUNDLED_MODEL_PACK, sessionOptions: { intraOpNumThreads: 1 } });
    cache = new VisualCache({ models: pack });
    for (let index = 0; index < SCENES; index += 1) {
      const scene = sampleScene(createRng(deriveSeed(4711, "scene", index)));
      const rendered = await renderScene(scene, {
        size: 256,
        format: "jpeg",
        seed: deriveSeed(4711, "render", index),
      });
      const id = `att_${index}`;
      cache.register(id, async () => rendered.data);
      scenes.push({ scene, id });
    }
  }, 120_000);

  afterAll(async () => {
    await pack?.close();
  });

  it("reads the side of a named object off its box", async () => {
    let asked = 0;
    let right = 0;
    for (const { scene, id } of scenes) {
      for (const object of scene.objects) {
        const same = scene.objects.filter(
          (other) => other.color === object.color && other.shape === object.shape,
        );
        if (same.length !== 1) continue;
        const [answer] = await cache.ask(id, [
          `Is the ${object.color} ${object.shape} on the left or the right?`,
        ]);
        asked += 1;
        if (answer?.[0]?.answer === (object.x < 0.5 ? "left" : "right")) right += 1;
      }
    }
    expect(asked).toBeGreaterThan(40);
    expect(right / asked).toBeGreaterThanOrEqual(0.95);
  });

  it("counts objects, colours and shapes, each answer a distribution over the head's answers", async () => {
    let asked = 0;
    let right = 0;
    for (const { scene, id } of scenes) {
      const { color, shape } = scene.objects[0] as Scene["objects"][number];
      const questions = [
        ["How many objects are there?", scene.objects.length],
        [
          `How many ${color} objects are there?`,
          scene.objects.filter((object) => object.color === color).length,
        ],
        [`How many ${shape}s are there?`, scene.objects.filter((object) => object.shape === shape).length],
      ] as const;
      const answers = await cache.ask(
        id,
        questions.map(([question]) => question),
      );
      questions.forEach(([, expected], index) => {
        const distribution = answers[index] ?? [];
        const total = distribution.reduce((sum, answer) => sum + answer.probability, 0);
        expect(total).toBeCloseTo(1, 3);
        asked += 1;
        if (distribution[0]?.answer === String(expected)) right += 1;
      });
    }
    expect(right / asked).toBeGreaterThanOrEqual(0.9);
  });

  it("without a detection head, asks the VQA head (half-painted copies for left/right)", async () => {
    const { detector: _head, ...rest } = {
      imageEmbedder: pack.imageEmbedder,
      textEmbedder: pack.textEmbedder,
      vqaHead: pack.vqaHead,
      detector: pack.detector,
    };
    const plain = new VisualCache({ models: rest });
    const { scene, id } = scenes[0] as { scene: Scene; id: string };
    plain.register(id, () => cache.bytes(id));
    expect(await plain.detections(id)).toEqual([]);
    const object = scene.objects[0] as Scene["objects"][number];
    expect(
      await plain.positionFromDetections(id, { color: object.color, shape: object.shape }),
    ).toBeUndefined();
    const [side] = await plain.ask(id, [`Is the ${object.color} ${object.shape} on the left or the right?`]);
    expect(side?.map((answer) => answer.answer).sort()).toEqual(["left", "right"]);
  });
});
