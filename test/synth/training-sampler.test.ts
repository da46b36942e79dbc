/**
 * The pack is trained on clips drawn by the Python sampler in `models/train/shapes_world.py` and measured
 * on clips drawn by this TypeScript generator, so the two must draw the same distribution: a sampler that
 * favoured the actions easiest to lay out once cost the video head most of its held-out accuracy.
 * `shapes_world.py` needs only Python's standard library, so this runs wherever `python3` does.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ACTIONS, createRng, sampleClip } from "../../src/synth/index.ts";

const run = promisify(execFile);
const TRAIN_DIR = path.resolve(import.meta.dirname, "../../models/train");
const CLIPS = 3000;

const PYTHON_SAMPLE = `
import json, random, sys
import shapes_world as sw
rng = random.Random(7)
actions, counts, wrong_negatives = {}, {}, []
for _ in range(${CLIPS}):
    bg, frames, actor, action = sw.sample_clip(rng)
    name = sw.ACTIONS[action]
    actions[name] = actions.get(name, 0) + 1
    counts[len(frames[0])] = counts.get(len(frames[0]), 0) + 1
    a = frames[0][actor]
    text, sizeword, color, shape, act = sw.clip_negative(rng, a, action)
    if (color, shape, act) == (a.color, a.shape, action):
        wrong_negatives.append(text)
json.dump({"actions": actions, "counts": counts, "wrong_negatives": wrong_negatives}, sys.stdout)
`;

interface PythonSample {
  actions: Record<string, number>;
  counts: Record<string, number>;
  wrong_negatives: string[];
}

function shares(tally: Record<string, number>): Record<string, number> {
  const total = Object.values(tally).reduce((sum, value) => sum + value, 0);
  return Object.fromEntries(Object.entries(tally).map(([key, value]) => [key, value / total]));
}

describe("the training clip sampler", () => {
  it("draws actions and object counts as the TypeScript generator does, and negatives that are false", async () => {
    const { stdout } = await run(process.env.PYTHON ?? "python3", ["-c", PYTHON_SAMPLE], {
      cwd: TRAIN_DIR,
      maxBuffer: 1 << 20,
    });
    const python = JSON.parse(stdout) as PythonSample;
    expect(python.wrong_negatives).toEqual([]);

    const rng = createRng(7);
    const actions: Record<string, number> = {};
    const counts: Record<string, number> = {};
    for (let index = 0; index < CLIPS; index++) {
      const clip = sampleClip(rng.fork("clip", index));
      actions[clip.action] = (actions[clip.action] ?? 0) + 1;
      const objects = String(clip.frames[0]?.objects.length);
      counts[objects] = (counts[objects] ?? 0) + 1;
    }
    const [pythonActions, tsActions] = [shares(python.actions), shares(actions)];
    for (const action of ACTIONS) {
      // Uniform over 6 actions: 0.167 each; 3,000 draws keep a share well within 0.05 of it.
      expect(pythonActions[action] ?? 0, `python ${action}`).toBeCloseTo(1 / 6, 1);
      expect(Math.abs((pythonActions[action] ?? 0) - (tsActions[action] ?? 0)), action).toBeLessThan(0.04);
    }
    const [pythonCounts, tsCounts] = [shares(python.counts), shares(counts)];
    for (const objects of ["1", "2", "3"]) {
      expect(
        Math.abs((pythonCounts[objects] ?? 0) - (tsCounts[objects] ?? 0)),
        `${objects} objects`,
      ).toBeLessThan(0.04);
    }
  }, 120_000);
});
