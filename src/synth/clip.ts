/**
 * Video clips: 16 frames on one background where exactly one object moves, grows or shrinks. The
 * trajectory is planned first, then checked frame by frame; a clip that breaks a rule is resampled.
 */
import { ValidationError } from "../errors.ts";
import {
  ACTIONS,
  type Action,
  BACKGROUND_RANGE,
  CANVAS_MARGIN,
  CLIP_FRAMES,
  CLIP_OBJECT_COUNT_RANGE,
  COLORS,
  type Color,
  MIN_GROWTH_FACTOR,
  MIN_TRAVEL,
  type ObjectKind,
  type SceneObject,
  SHAPES,
  type Shape,
  SIZE_RADIUS,
  SIZES,
  VIDEO_CLIP_COUNT_RANGE,
  VIDEO_FPS,
} from "./domain.ts";
import { objectPhrase, PHRASING, phraseFrom } from "./phrasing.ts";
import type { Rng } from "./rng.ts";
import {
  GEOMETRY_EPSILON,
  isClearOf,
  isInsideCanvas,
  placeCircle,
  placementViolations,
  roundCoordinate,
  sampleAxis,
  sampleRadius,
  sampleRotation,
} from "./scene.ts";
import { checkChoices, checkInteger } from "./validate.ts";

/** The objects of one frame. The actor's `size` stays its first-frame size on every frame. */
export interface ClipFrame {
  objects: SceneObject[];
}

/** A clip's ground truth: per-frame object states, the acting object and its action. */
export interface Clip {
  background: number;
  action: Action;
  /** Index of the acting object in every frame's `objects`. */
  actor: number;
  /** {@link CLIP_FRAMES} frames at {@link VIDEO_FPS} fps. */
  frames: ClipFrame[];
}

/** Options of {@link sampleClip}. */
export interface SampleClipOptions {
  /** Objects in the clip, 1–3; uniform when unset. */
  objectCount?: number;
  /** The action; uniform when unset. */
  action?: Action;
  /** Attributes of the acting object; its size is forced to small for growing and large for shrinking. */
  actor?: Partial<ObjectKind>;
  /** Shapes to sample from (default all five). */
  shapes?: readonly Shape[];
  /** Colors to sample from (default all six). */
  colors?: readonly Color[];
  /** Background gray level, 70–150; uniform when unset. */
  background?: number;
  /** Whole-clip attempts before giving up. Default 200. */
  maxAttempts?: number;
}

/** Largest center travel drawn for a moving object. */
const MAX_TRAVEL = 0.6;

interface Plan {
  /** Actor center and radius on each frame. */
  path: Array<{ x: number; y: number; r: number }>;
}

function interpolate(from: number, to: number, frame: number): number {
  return roundCoordinate(from + ((to - from) * frame) / (CLIP_FRAMES - 1));
}

function planActor(rng: Rng, action: Action, r0: number): Plan | undefined {
  const frames = Array.from({ length: CLIP_FRAMES }, (_v, frame) => frame);
  if (action === "growing" || action === "shrinking") {
    const r1 =
      action === "growing"
        ? roundCoordinate(
            rng.float(Math.max(SIZE_RADIUS.large.min, r0 * MIN_GROWTH_FACTOR), SIZE_RADIUS.large.max),
          )
        : roundCoordinate(
            rng.float(SIZE_RADIUS.small.min, Math.min(SIZE_RADIUS.small.max, r0 / MIN_GROWTH_FACTOR)),
          );
    // The center must leave room for the largest radius the object reaches.
    const room = Math.max(r0, r1);
    const x = sampleAxis(rng, { r: room });
    const y = sampleAxis(rng, { r: room });
    if (x === undefined || y === undefined) return undefined;
    const center = { x: roundCoordinate(x), y: roundCoordinate(y) };
    return { path: frames.map((frame) => ({ ...center, r: interpolate(r0, r1, frame) })) };
  }
  const horizontal = action === "moving left" || action === "moving right";
  const forward = action === "moving right" || action === "moving down";
  // Start far enough from the edge it heads to for the minimum travel.
  const along = sampleAxis(rng, {
    r: r0,
    ...(forward ? { high: 1 - CANVAS_MARGIN - r0 - MIN_TRAVEL } : { low: CANVAS_MARGIN + r0 + MIN_TRAVEL }),
  });
  const across = sampleAxis(rng, { r: r0 });
  if (along === undefined || across === undefined) return undefined;
  const start = roundCoordinate(along);
  const room = forward ? 1 - CANVAS_MARGIN - r0 - start : start - CANVAS_MARGIN - r0;
  const travel = rng.float(MIN_TRAVEL, Math.max(MIN_TRAVEL, Math.min(MAX_TRAVEL, room)));
  const end = roundCoordinate(forward ? start + travel : start - travel);
  const fixed = roundCoordinate(across);
  return {
    path: frames.map((frame) => {
      const moving = interpolate(start, end, frame);
      return horizontal ? { x: moving, y: fixed, r: r0 } : { x: fixed, y: moving, r: r0 };
    }),
  };
}

/**
 * Lists the rules a clip breaks (empty when it is valid): frame count, placement on the first frame,
 * exactly one changing object, the action's travel or growth, and the actor inside the canvas and clear
 * of the others on every frame.
 */
export function clipViolations(clip: Clip): string[] {
  const violations: string[] = [];
  if (clip.frames.length !== CLIP_FRAMES)
    violations.push(`clip has ${clip.frames.length} frames, not ${CLIP_FRAMES}`);
  const first = clip.frames[0];
  const last = clip.frames.at(-1);
  if (first === undefined || last === undefined) return violations;
  const count = first.objects.length;
  if (count < CLIP_OBJECT_COUNT_RANGE.min || count > CLIP_OBJECT_COUNT_RANGE.max) {
    violations.push(`clip has ${count} objects`);
  }
  violations.push(...placementViolations(first.objects).map((violation) => `first frame: ${violation}`));
  clip.frames.forEach((frame, index) => {
    if (frame.objects.length !== count) violations.push(`frame ${index} has ${frame.objects.length} objects`);
    frame.objects.forEach((object, objectIndex) => {
      const start = first.objects[objectIndex];
      if (objectIndex !== clip.actor && JSON.stringify(object) !== JSON.stringify(start)) {
        violations.push(`object ${objectIndex} changes on frame ${index} but is not the actor`);
      }
    });
    const actor = frame.objects[clip.actor];
    if (actor === undefined) return;
    if (!isInsideCanvas(actor)) violations.push(`actor leaves the canvas on frame ${index}`);
    if (
      !isClearOf(
        actor,
        frame.objects.filter((_object, objectIndex) => objectIndex !== clip.actor),
      )
    ) {
      violations.push(`actor touches another object on frame ${index}`);
    }
  });
  const a = first.objects[clip.actor];
  const b = last.objects[clip.actor];
  if (a === undefined || b === undefined) return [...violations, `actor ${clip.actor} does not exist`];
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const travelled: Record<Action, number> = {
    "moving left": -dx,
    "moving right": dx,
    "moving up": -dy,
    "moving down": dy,
    growing: b.r / a.r,
    shrinking: a.r / b.r,
  };
  const moving = clip.action.startsWith("moving");
  const amount = travelled[clip.action];
  if (moving && (amount < MIN_TRAVEL - GEOMETRY_EPSILON || a.r !== b.r)) {
    violations.push(
      `actor travels ${amount.toFixed(4)} ${clip.action.slice(7)}; at least ${MIN_TRAVEL} is required`,
    );
  }
  if (!moving && (amount < MIN_GROWTH_FACTOR - GEOMETRY_EPSILON || a.x !== b.x || a.y !== b.y)) {
    violations.push(
      `actor radius changes by a factor of ${amount.toFixed(3)}; at least ${MIN_GROWTH_FACTOR} is required`,
    );
  }
  if (
    (clip.action === "growing" && a.size !== "small") ||
    (clip.action === "shrinking" && a.size !== "large")
  ) {
    violations.push(`a ${clip.action} actor cannot start ${a.size}`);
  }
  return violations;
}

function checkClipOptions(options: SampleClipOptions): void {
  const { objectCount, background, action } = options;
  if (objectCount !== undefined)
    checkInteger("objectCount", objectCount, CLIP_OBJECT_COUNT_RANGE, "A clip has 1 to 3 objects.");
  if (background !== undefined) checkInteger("background", background, BACKGROUND_RANGE);
  if (action !== undefined && !ACTIONS.includes(action)) {
    throw new ValidationError(`Action "${action}" is unknown; use one of: ${ACTIONS.join(", ")}.`);
  }
  checkChoices("shapes", options.shapes, SHAPES);
  checkChoices("colors", options.colors, COLORS);
}

/**
 * Samples a clip: 1–3 objects on one background, exactly one performing an action. Moving objects
 * travel 0.3–0.6 along their axis; growing ones start small and end large, shrinking ones the reverse,
 * with a radius factor of at least 1.8. Placement rules hold on the first frame; the actor stays inside
 * the canvas and clear of the others on every frame.
 *
 * @throws ValidationError when the options are invalid or no valid clip is found.
 */
export function sampleClip(rng: Rng, options: SampleClipOptions = {}): Clip {
  checkClipOptions(options);
  const { shapes = SHAPES, colors = COLORS, maxAttempts = 200 } = options;
  const action = options.action ?? rng.pick(ACTIONS);
  const count = options.objectCount ?? rng.int(CLIP_OBJECT_COUNT_RANGE.min, CLIP_OBJECT_COUNT_RANGE.max);
  const background = options.background ?? rng.int(BACKGROUND_RANGE.min, BACKGROUND_RANGE.max);
  const actorKind: ObjectKind = {
    shape: options.actor?.shape ?? rng.pick(shapes),
    color: options.actor?.color ?? rng.pick(colors),
    size:
      action === "growing"
        ? "small"
        : action === "shrinking"
          ? "large"
          : (options.actor?.size ?? rng.pick(SIZES)),
  };
  const actorRotation = sampleRotation(rng, actorKind.shape);
  const others: ObjectKind[] = Array.from({ length: count - 1 }, () => ({
    shape: rng.pick(shapes),
    color: rng.pick(colors),
    size: rng.pick(SIZES),
  }));
  const actor = rng.int(0, count - 1);

  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const plan = planActor(rng, action, sampleRadius(rng, actorKind.size));
    if (plan === undefined) continue;
    const placed: SceneObject[] = [];
    for (const kind of others) {
      const r = sampleRadius(rng, kind.size);
      const center = placeCircle(rng, {
        r,
        placed,
        accept: (candidate) => plan.path.every((state) => isClearOf({ ...candidate, r }, [state])),
      });
      if (center === undefined) break;
      placed.push({ ...kind, ...center, r, rotation: sampleRotation(rng, kind.shape) });
    }
    if (placed.length !== others.length) continue;
    const frames = plan.path.map((state) => {
      const objects = [...placed];
      objects.splice(actor, 0, { ...actorKind, ...state, rotation: actorRotation });
      return { objects };
    });
    const clip: Clip = { background, action, actor, frames };
    if (clipViolations(clip).length === 0) return clip;
  }
  throw new ValidationError(
    `Could not lay out a ${count}-object clip of "${action}" in ${maxAttempts} attempts.`,
    {
      context: { action, count },
    },
  );
}

/** A clip's description. */
export interface ClipDescription {
  text: string;
  /** Whether the text names the actor's first-frame size. */
  includeSize: boolean;
  /** Canonical meaning: `[size ]color shape action`. */
  key: string;
}

/**
 * Describes a clip's action with `phrasing.json`'s video templates: `a red circle moving left`,
 * `a small blue star growing`. The size word, when present, is the first-frame size.
 */
export function describeClip(clip: Clip, rng: Rng, options: { includeSize?: boolean } = {}): ClipDescription {
  const includeSize = options.includeSize ?? rng.bool();
  const actor = clip.frames[0]?.objects[clip.actor];
  if (actor === undefined) throw new RangeError(`Clip has no actor ${clip.actor} on its first frame.`);
  const parts = { color: actor.color, shape: actor.shape, ...(includeSize ? { size: actor.size } : {}) };
  const action = PHRASING.actions[ACTIONS.indexOf(clip.action)] ?? clip.action;
  return {
    text: phraseFrom(rng, PHRASING.videoTemplates, { object: objectPhrase(parts), action }),
    includeSize,
    key: [...(includeSize ? [actor.size] : []), actor.color, actor.shape, clip.action].join(" "),
  };
}

/** A long video: 3–6 clips back to back. */
export interface Video {
  clips: Clip[];
}

/** A clip's place in its video, in seconds. */
export interface Segment {
  index: number;
  start: number;
  end: number;
}

/** Options of {@link sampleVideo}. */
export interface SampleVideoOptions extends Omit<SampleClipOptions, "action" | "actor" | "background"> {
  /** Clips in the video, 3–6; uniform when unset. */
  clipCount?: number;
}

/** Samples a long video: 3–6 clips, each with its own objects, background and action. */
export function sampleVideo(rng: Rng, options: SampleVideoOptions = {}): Video {
  const { clipCount = rng.int(VIDEO_CLIP_COUNT_RANGE.min, VIDEO_CLIP_COUNT_RANGE.max), ...clipOptions } =
    options;
  checkInteger("clipCount", clipCount, VIDEO_CLIP_COUNT_RANGE, "A long video has 3 to 6 clips.");
  return {
    clips: Array.from({ length: clipCount }, (_v, index) => sampleClip(rng.fork("clip", index), clipOptions)),
  };
}

/** Start and end time of each clip of a video, in seconds. */
export function videoSegments(video: Video): Segment[] {
  const seconds = CLIP_FRAMES / VIDEO_FPS;
  return video.clips.map((_clip, index) => ({ index, start: index * seconds, end: (index + 1) * seconds }));
}
