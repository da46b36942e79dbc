/**
 * The Shapes World v1 domain: its vocabularies, numeric ranges and the ground-truth types of scenes.
 * Every other synth module reads its constants from here, so that a change of the spec lands in one place.
 */
import { z } from "zod";

/** The five shapes, in the order the answer vocabulary lists them. */
export const SHAPES = ["circle", "square", "triangle", "star", "hexagon"] as const;
/** The six colors, in the order the answer vocabulary lists them. */
export const COLORS = ["red", "green", "blue", "yellow", "purple", "orange"] as const;
/** The two size classes. */
export const SIZES = ["small", "large"] as const;
/** The six clip actions. */
export const ACTIONS = [
  "moving left",
  "moving right",
  "moving up",
  "moving down",
  "growing",
  "shrinking",
] as const;

/** One of the five shapes. */
export type Shape = (typeof SHAPES)[number];
/** One of the six colors. */
export type Color = (typeof COLORS)[number];
/** `small` or `large`. */
export type Size = (typeof SIZES)[number];
/** One of the six clip actions. */
export type Action = (typeof ACTIONS)[number];

/** Each action as the verb of a question about it: "When does the red circle `move left`?" */
export const ACTION_VERBS: Readonly<Record<Action, string>> = {
  "moving left": "move left",
  "moving right": "move right",
  "moving up": "move up",
  "moving down": "move down",
  growing: "grow",
  shrinking: "shrink",
};

/** Reference sRGB of each color; a renderer may jitter each channel by {@link MAX_COLOR_JITTER}. */
export const COLOR_RGB: Readonly<Record<Color, readonly [number, number, number]>> = {
  red: [220, 40, 40],
  green: [40, 180, 60],
  blue: [40, 80, 220],
  yellow: [240, 220, 40],
  purple: [150, 60, 190],
  orange: [245, 140, 30],
};

/** Bounding-circle radius range of each size class, in canvas units. */
export const SIZE_RADIUS: Readonly<Record<Size, { min: number; max: number }>> = {
  small: { min: 0.06, max: 0.09 },
  large: { min: 0.14, max: 0.2 },
};

/** The background gray level range (R = G = B = g). */
export const BACKGROUND_RANGE = { min: 70, max: 150 } as const;
/** Objects per scene. */
export const OBJECT_COUNT_RANGE = { min: 1, max: 4 } as const;
/** Rotation range in degrees (ignored for circles). */
export const ROTATION_RANGE = { min: -20, max: 20 } as const;
/** Smallest distance between a bounding circle and the canvas edge. */
export const CANVAS_MARGIN = 0.02;
/** Smallest gap between two bounding circles. */
export const OBJECT_GAP = 0.02;
/** No object center lies strictly inside this band, on either axis. */
export const CENTER_BAND = { min: 0.45, max: 0.55 } as const;
/** Largest per-channel color jitter a renderer may apply. */
export const MAX_COLOR_JITTER = 15;
/** Largest per-pixel, per-channel noise a renderer may add. */
export const MAX_PIXEL_NOISE = 8;
/** Star inner radius as a fraction of the outer radius. */
export const STAR_INNER_RATIO = 0.45;
/** Canvas side limits in pixels. */
export const IMAGE_SIZE_RANGE = { min: 64, max: 1024 } as const;

/** Video frame rate. */
export const VIDEO_FPS = 8;
/** Frames in one clip (2 s at 8 fps). */
export const CLIP_FRAMES = 16;
/** Objects per clip. */
export const CLIP_OBJECT_COUNT_RANGE = { min: 1, max: 3 } as const;
/** Clips per long video. */
export const VIDEO_CLIP_COUNT_RANGE = { min: 3, max: 6 } as const;
/** Smallest center travel of a moving object between a clip's first and last frame. */
export const MIN_TRAVEL = 0.3;
/** Smallest radius factor between the first and last frame of a growing or shrinking object. */
export const MIN_GROWTH_FACTOR = 1.8;

/** Position words split at the canvas middle. */
export const POSITION_SPLIT = 0.5;

/**
 * The 22 VQA answers in their fixed order: colors, shapes, counts, yes/no, sizes, sides.
 * The index of an answer here is its class id in the VQA head.
 */
export const ANSWER_VOCABULARY = [
  ...COLORS,
  ...SHAPES,
  "0",
  "1",
  "2",
  "3",
  "4",
  "yes",
  "no",
  ...SIZES,
  "left",
  "right",
] as const;

/** One of the 22 VQA answers. */
export type Answer = (typeof ANSWER_VOCABULARY)[number];

/** Schema of one object of a scene's ground truth. Coordinates are canvas units; rotation is degrees. */
export const sceneObjectSchema = z.object({
  shape: z.enum(SHAPES),
  color: z.enum(COLORS),
  size: z.enum(SIZES),
  x: z.number().min(0).max(1),
  y: z.number().min(0).max(1),
  r: z.number().positive().max(0.5),
  rotation: z.number().min(-180).max(180),
});

/** One object of a scene. */
export type SceneObject = z.infer<typeof sceneObjectSchema>;

/** Schema of a scene's ground truth: `{"background": g, "objects": [...]}`. */
export const sceneSchema = z.object({
  background: z.number().int().min(0).max(255),
  objects: z.array(sceneObjectSchema).min(1),
});

/** A scene's ground truth. */
export type Scene = z.infer<typeof sceneSchema>;

/** What an object is, without where: the attributes that texts speak of. */
export type ObjectKind = Pick<SceneObject, "shape" | "color" | "size">;

/** Anything listing object kinds: a scene, a clip frame, or a light summary kept for relevance checks. */
export interface ObjectSet {
  objects: readonly ObjectKind[];
}
