/**
 * The bundled pack's video head through the TypeScript runtime on clips from the TypeScript generator: it must
 * tell an action from its opposite. Each clip is also played backwards, which turns "moving left" into
 * "moving right" and "growing" into "shrinking"; the description of what a clip shows must score above the
 * same description with the opposite action, forwards and backwards. (Frame embeddings alone cannot do
 * this: their mean is the same both ways.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUNDLED_MODEL_PACK } from "../../src/config.ts";
import { loadModelPack, type ModelPack } from "../../src/inference/model-pack.ts";
import { cosineSimilarity } from "../../src/inference/vector-math.ts";
import { type Clip, describeClip, sampleClip } from "../../src/synth/clip.ts";
import { ACTIONS, type Action } from "../../src/synth/domain.ts";
import type { RawImage } from "../../src/synth/render.ts";
import { createRng, deriveSeed } from "../../src/synth/rng.ts";
import { renderClipFrames } from "../../src/synth/video.ts";

const OPPOSITE: Record<Action, Action> = {
  "moving left": "moving right",
  "moving right": "moving left",
  "moving up": "moving down",
  "moving down": "moving up",
  growing: "shrinking",
  shrinking: "growing",
};
const CLIPS_PER_ACTION = 3;
const SEED = 31337;

async function framesOf(clip: Clip, index: number): Promise<RawImage[]> {
  const frames: RawImage[] = [];
  for await (const frame of renderClipFrames(clip, { size: 128, seed: deriveSeed(SEED, "render", index) })) {
    frames.push(frame);
  }
  return frames;
}

/** The clip's description, and the same words (same template) with another action. */
function descriptions(clip: Clip, index: number): { shown: string; opposite: string } {
  const seed = deriveSeed(SEED, "describe", index);
  const shown = describeClip(clip, createRng(seed), { includeSize: false }).text;
  const opposite = describeClip({ ...clip, action: OPPOSITE[clip.action] }, createRng(seed), {
    includeSize: false,
  }).text;
  return { shown, opposite };
}

describe("bundled video head: actions against their opposites", () => {
  let pack: ModelPack;

  beforeAll(async () => {
    pack = await loadModelPack({ dir: BUNDLED_MODEL_PACK });
  });

  afterAll(async () => {
    await pack?.close();
  });

  it("scores what a clip shows above the opposite action, played forwards and backwards", async () => {
    expect(pack.videoEmbedder.hasHead).toBe(true);
    const outcomes: { action: Action; forwards: boolean; backwards: boolean }[] = [];
    let index = 0;
    for (const action of ACTIONS) {
      for (let n = 0; n < CLIPS_PER_ACTION; n += 1, index += 1) {
        const clip = sampleClip(createRng(deriveSeed(SEED, "clip", index)), { action });
        const frames = await framesOf(clip, index);
        const { shown, opposite } = descriptions(clip, index);
        const [shownText, oppositeText] = await pack.textEmbedder.embed({ texts: [shown, opposite] });
        const forwards = await pack.videoEmbedder.embed({ frames });
        const backwards = await pack.videoEmbedder.embed({ frames: [...frames].reverse() });
        outcomes.push({
          action,
          forwards:
            cosineSimilarity(forwards, shownText ?? []) > cosineSimilarity(forwards, oppositeText ?? []),
          backwards:
            cosineSimilarity(backwards, oppositeText ?? []) > cosineSimilarity(backwards, shownText ?? []),
        });
      }
    }
    const right = outcomes.reduce((sum, o) => sum + Number(o.forwards) + Number(o.backwards), 0);
    console.log(`video direction: ${right}/${2 * outcomes.length} action-vs-opposite comparisons right`);
    // 36 comparisons; the pack's held-out action accuracy is well above this bar, chance is half.
    expect(right, JSON.stringify(outcomes.filter((o) => !o.forwards || !o.backwards))).toBeGreaterThanOrEqual(
      32,
    );
    // Every action is told from its opposite at least once each way.
    for (const action of ACTIONS) {
      const own = outcomes.filter((o) => o.action === action);
      expect(own.some((o) => o.forwards)).toBe(true);
      expect(own.some((o) => o.backwards)).toBe(true);
    }
  });
});
