import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import {
  type Clip,
  clipViolations,
  createRng,
  describeClip,
  PHRASING,
  sampleClip,
  sampleVideo,
  videoSegments,
} from "../../src/synth/index.ts";
import {
  EPS,
  gap,
  inBand,
  insideWithMargin,
  objectPhrases,
  SPEC_ACTIONS,
  SPEC_SIZES,
  templatePattern,
} from "./spec.ts";

/** The spec's clip rules, checked from the per-frame ground truth. */
function clipProblems(clip: Clip): string[] {
  const problems: string[] = [];
  if (clip.frames.length !== 16) problems.push(`${clip.frames.length} frames`);
  const first = clip.frames[0]?.objects ?? [];
  const last = clip.frames.at(-1)?.objects ?? [];
  if (first.length < 1 || first.length > 3) problems.push(`${first.length} objects`);
  if (!SPEC_ACTIONS.includes(clip.action)) problems.push(`action ${clip.action}`);
  first.forEach((o, i) => {
    if (!insideWithMargin(o) || inBand(o.x) || inBand(o.y))
      problems.push(`first frame: object ${i} misplaced`);
    for (const other of first.slice(i + 1))
      if (gap(o, other) < 0.02 - EPS) problems.push("first frame: overlap");
    const band = SPEC_SIZES[o.size] as [number, number];
    if (o.r < band[0] - EPS || o.r > band[1] + EPS)
      problems.push(`first frame: object ${i} r ${o.r} not ${o.size}`);
  });
  // Exactly one object changes; which one is found from the data, not from clip.actor alone.
  const changing = first
    .map((o, i) =>
      clip.frames.some((frame) => JSON.stringify(frame.objects[i]) !== JSON.stringify(o)) ? i : -1,
    )
    .filter((i) => i >= 0);
  if (changing.length !== 1 || changing[0] !== clip.actor) problems.push(`changing objects ${changing}`);
  for (const [index, frame] of clip.frames.entries()) {
    const actor = frame.objects[clip.actor];
    if (actor === undefined) continue;
    if (!insideWithMargin(actor)) problems.push(`frame ${index}: actor outside the canvas`);
    frame.objects.forEach((other, i) => {
      if (i !== clip.actor && gap(actor, other) < 0.02 - EPS)
        problems.push(`frame ${index}: actor touches ${i}`);
    });
  }
  const a = first[clip.actor];
  const b = last[clip.actor];
  if (a === undefined || b === undefined) return [...problems, "no actor"];
  const moves: Record<string, [number, number]> = {
    "moving left": [b.x - a.x, -1],
    "moving right": [b.x - a.x, 1],
    "moving up": [b.y - a.y, -1],
    "moving down": [b.y - a.y, 1],
  };
  const move = moves[clip.action];
  if (move) {
    if (move[0] * move[1] < 0.3 - EPS) problems.push(`travel ${move[0]}`);
    if (a.r !== b.r) problems.push("moving object changes size");
    // Monotonic, along one axis only.
    for (let i = 1; i < clip.frames.length; i++) {
      const p = clip.frames[i - 1]?.objects[clip.actor];
      const q = clip.frames[i]?.objects[clip.actor];
      if (!p || !q) continue;
      const horizontal = clip.action.endsWith("left") || clip.action.endsWith("right");
      const step = horizontal ? q.x - p.x : q.y - p.y;
      if (step * move[1] <= 0) problems.push(`frame ${i}: no progress`);
      if (horizontal ? q.y !== p.y : q.x !== p.x) problems.push(`frame ${i}: drifts off its axis`);
    }
  } else {
    const factor = clip.action === "growing" ? b.r / a.r : a.r / b.r;
    if (factor < 1.8 - EPS) problems.push(`radius factor ${factor}`);
    if (a.x !== b.x || a.y !== b.y) problems.push("growing object moves");
    if (clip.action === "growing" && a.size !== "small") problems.push("growing starts large");
    if (clip.action === "shrinking" && a.size !== "large") problems.push("shrinking starts small");
  }
  return problems;
}

describe("sampleClip", () => {
  it("follows the spec's clip rules on 400 seeds", () => {
    const actions = new Set<string>();
    const counts = new Set<number>();
    for (let seed = 0; seed < 400; seed++) {
      const clip = sampleClip(createRng(seed));
      expect(clipProblems(clip), `seed ${seed} ${clip.action}`).toEqual([]);
      actions.add(clip.action);
      counts.add(clip.frames[0]?.objects.length ?? 0);
    }
    expect([...actions].sort()).toEqual([...SPEC_ACTIONS].sort());
    expect([...counts].sort()).toEqual([1, 2, 3]);
  });

  it("lays out every action with three objects", () => {
    for (const action of SPEC_ACTIONS) {
      for (let seed = 0; seed < 20; seed++) {
        const clip = sampleClip(createRng(seed), { action: action as Clip["action"], objectCount: 3 });
        expect(clip.action).toBe(action);
        expect(clipProblems(clip), `${action} seed ${seed}`).toEqual([]);
      }
    }
  });

  it("catches a clip that breaks the rules (checker sanity)", () => {
    const clip = sampleClip(createRng(6), { action: "moving right", objectCount: 1 });
    const short: Clip = {
      ...clip,
      frames: clip.frames.map((frame) => ({
        objects: frame.objects.map((o) => ({ ...o, x: (clip.frames[0]?.objects[0]?.x ?? 0) + 0.01 })),
      })),
    };
    expect(clipProblems(short).length).toBeGreaterThan(0);
    expect(clipViolations(short).length).toBeGreaterThan(0);
    expect(clipViolations(clip)).toEqual([]);
  });

  it("is deterministic per seed and rejects bad options", () => {
    expect(JSON.stringify(sampleClip(createRng(8)))).toBe(JSON.stringify(sampleClip(createRng(8))));
    expect(() => sampleClip(createRng(1), { objectCount: 4 })).toThrow(ValidationError);
    expect(() => sampleClip(createRng(1), { action: "spinning" as Clip["action"] })).toThrow(/spinning/);
  });

  it("describes the actor and its action, with the first-frame size when named", () => {
    const pattern = templatePattern(PHRASING.videoTemplates);
    for (let seed = 0; seed < 200; seed++) {
      const clip = sampleClip(createRng(seed));
      const actor = clip.frames[0]?.objects[clip.actor];
      for (const includeSize of [true, false]) {
        const { text, key } = describeClip(clip, createRng(seed), { includeSize });
        expect(text).toMatch(pattern);
        expect(text.endsWith(` ${clip.action}`), text).toBe(true);
        const [phrase, ...rest] = objectPhrases(text);
        expect(rest).toEqual([]);
        expect(phrase).toMatchObject({ color: actor?.color, noun: actor?.shape, count: 1 });
        expect(phrase?.size).toBe(includeSize ? actor?.size : undefined);
        expect(key).toBe(
          [includeSize ? actor?.size : "", actor?.color, actor?.shape, clip.action].join(" ").trim(),
        );
      }
    }
    const growing = sampleClip(createRng(1), { action: "growing", actor: { shape: "star", color: "blue" } });
    expect(describeClip(growing, createRng(2), { includeSize: true }).text).toMatch(
      /a small blue star growing$/,
    );
  });
});

describe("sampleVideo", () => {
  it("puts 3 to 6 valid clips back to back in 2-second segments", () => {
    const lengths = new Set<number>();
    for (let seed = 0; seed < 30; seed++) {
      const video = sampleVideo(createRng(seed));
      lengths.add(video.clips.length);
      expect(video.clips.length >= 3 && video.clips.length <= 6).toBe(true);
      for (const clip of video.clips) expect(clipProblems(clip)).toEqual([]);
      const segments = videoSegments(video);
      segments.forEach((segment, index) => {
        expect(segment).toEqual({ index, start: index * 2, end: index * 2 + 2 });
      });
      // Each clip has its own objects and background.
      const backgrounds = new Set(video.clips.map((clip) => clip.background));
      expect(backgrounds.size).toBeGreaterThan(1);
    }
    expect(lengths.size).toBeGreaterThan(2);
    expect(() => sampleVideo(createRng(1), { clipCount: 7 })).toThrow(/3 to 6 clips/);
  });
});
