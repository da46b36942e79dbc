/**
 * Splitting a video into segments from its sampled frames: a new shot starts where the cosine distance
 * between consecutive frame embeddings exceeds a threshold (a cut changes the whole picture, motion
 * within a shot changes little of it); each shot is then cut into fixed windows, and pieces shorter than
 * the minimum are merged into their neighbour. Pure: no I/O, no models.
 */
import { ValidationError } from "../errors.ts";

/** A span of sampled frames. */
export interface VideoSegmentSpan {
  /** Position among the video's segments. */
  index: number;
  /** First frame (inclusive). */
  startFrame: number;
  /** Last frame (exclusive). */
  endFrame: number;
  startSeconds: number;
  endSeconds: number;
  /** Whether the segment starts at a detected shot change (the first segment does not). */
  startsShot: boolean;
}

/** Options of {@link segmentVideo}. */
export interface SegmentVideoOptions {
  /** L2-normalized embeddings of the sampled frames, in time order. */
  frameEmbeddings: readonly Float32Array[];
  /** Sampling rate of the frames; frame `i` starts at `i / fps`. */
  fps: number;
  /** Video duration, seconds: the end of the last segment. Default: one step after the last frame. */
  durationSeconds?: number;
  /** Longest segment, seconds. Default 2. */
  windowSeconds?: number;
  /** Cosine distance between consecutive frames that always starts a new shot; `Infinity` turns detection off. Default 0.27. */
  shotThreshold?: number;
  /** See {@link DetectShotChangesOptions.relativeFactor}. */
  relativeFactor?: number;
  /** Shortest segment, seconds; shorter pieces are merged into a neighbour. Default: half a window, at most 1 s. */
  minSegmentSeconds?: number;
}

/** Cosine distance `1 − a·b` of two L2-normalized vectors. */
export function cosineDistance(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let index = 0; index < a.length; index += 1) dot += (a[index] ?? 0) * (b[index] ?? 0);
  return 1 - dot;
}

/** Options of {@link detectShotChanges}. */
export interface DetectShotChangesOptions {
  /** L2-normalized frame embeddings in time order. */
  frameEmbeddings: readonly Float32Array[];
  /** A distance above this always starts a new shot. */
  threshold: number;
  /**
   * A distance this many times the typical distance around it (the median of the two on each side) also
   * starts a shot, so a cut between two similar-looking shots is found in a steady video. Default 4;
   * `Infinity` turns the relative rule off.
   */
  relativeFactor?: number;
  /** Smallest distance the relative rule accepts as a cut. Default 0.1. */
  relativeFloor?: number;
}

/** Distances around a cut that count as typical: two frames on each side. */
const CONTEXT_FRAMES = 2;
/** Added to the typical distance so that a perfectly still shot does not make every flicker a cut. */
const TYPICAL_EPSILON = 0.01;

/**
 * Frames where a new shot starts: `i` such that the cosine distance from frame `i − 1` is above
 * `threshold`, or above `relativeFloor` and `relativeFactor` times the median distance of the
 * neighbouring frame pairs. Motion within a shot changes the embedding a little at every step; a cut
 * changes it at one step.
 */
export function detectShotChanges({
  frameEmbeddings,
  threshold,
  relativeFactor = 4,
  relativeFloor = 0.1,
}: DetectShotChangesOptions): number[] {
  const distances = frameEmbeddings
    .slice(1)
    .map((embedding, index) => cosineDistance(frameEmbeddings[index] as Float32Array, embedding));
  const changes: number[] = [];
  for (const [index, distance] of distances.entries()) {
    let cut = distance > threshold;
    if (!cut && distance > relativeFloor && Number.isFinite(relativeFactor)) {
      const around = [
        ...distances.slice(Math.max(0, index - CONTEXT_FRAMES), index),
        ...distances.slice(index + 1, index + 1 + CONTEXT_FRAMES),
      ];
      cut = around.length > 0 && distance > relativeFactor * (median(around) + TYPICAL_EPSILON);
    }
    if (cut) changes.push(index + 1);
  }
  return changes;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/**
 * Segments a video from its frame embeddings: shots from {@link detectShotChanges}, each cut into
 * windows of `windowSeconds` from its start, with pieces shorter than `minSegmentSeconds` merged into the
 * previous segment of the same shot or, for a whole shot that is too short, into the previous segment
 * (the next one for a short first shot).
 *
 * @throws ValidationError for an empty frame list or settings out of range.
 */
export function segmentVideo({
  frameEmbeddings,
  fps,
  durationSeconds,
  windowSeconds = 2,
  shotThreshold = 0.27,
  relativeFactor = 4,
  minSegmentSeconds = Math.min(windowSeconds / 2, 1),
}: SegmentVideoOptions): VideoSegmentSpan[] {
  const count = frameEmbeddings.length;
  if (count === 0) throw new ValidationError("A video needs at least one sampled frame to be segmented.");
  if (!(fps > 0)) throw new ValidationError(`fps must be positive; got ${fps}.`);
  if (!(windowSeconds > 0))
    throw new ValidationError(`windowSeconds must be positive; got ${windowSeconds}.`);
  if (!(minSegmentSeconds >= 0) || minSegmentSeconds > windowSeconds) {
    throw new ValidationError(
      `minSegmentSeconds must be from 0 to windowSeconds (${windowSeconds}); got ${minSegmentSeconds}.`,
    );
  }
  const end = Math.max(durationSeconds ?? count / fps, (count - 1) / fps);
  const timeOf = (frame: number) => (frame >= count ? end : frame / fps);
  const windowFrames = Math.max(1, Math.round(windowSeconds * fps));
  const minFrames = Math.max(1, Math.ceil(minSegmentSeconds * fps - 1e-9));

  // Shots, then shots too short to stand alone folded into a neighbour.
  const starts = [
    0,
    ...(Number.isFinite(shotThreshold)
      ? detectShotChanges({ frameEmbeddings, threshold: shotThreshold, relativeFactor })
      : []),
  ];
  let shots = starts.map((start, index) => ({ start, end: starts[index + 1] ?? count }));
  while (shots.length > 1) {
    const shortIndex = shots.findIndex((shot) => shot.end - shot.start < minFrames);
    if (shortIndex === -1) break;
    const short = shots[shortIndex] as { start: number; end: number };
    if (shortIndex === 0) {
      const next = shots[1] as { start: number; end: number };
      shots = [{ start: short.start, end: next.end }, ...shots.slice(2)];
    } else {
      const previous = shots[shortIndex - 1] as { start: number; end: number };
      shots = [
        ...shots.slice(0, shortIndex - 1),
        { start: previous.start, end: short.end },
        ...shots.slice(shortIndex + 1),
      ];
    }
  }

  const spans: VideoSegmentSpan[] = [];
  for (const [shotIndex, shot] of shots.entries()) {
    const pieces: Array<{ start: number; end: number }> = [];
    for (let start = shot.start; start < shot.end; start += windowFrames) {
      pieces.push({ start, end: Math.min(shot.end, start + windowFrames) });
    }
    const last = pieces.at(-1);
    if (pieces.length > 1 && last !== undefined && last.end - last.start < minFrames) {
      pieces.pop();
      (pieces.at(-1) as { end: number }).end = last.end;
    }
    for (const [pieceIndex, piece] of pieces.entries()) {
      spans.push({
        index: spans.length,
        startFrame: piece.start,
        endFrame: piece.end,
        startSeconds: roundSeconds(timeOf(piece.start)),
        endSeconds: roundSeconds(timeOf(piece.end)),
        startsShot: shotIndex > 0 && pieceIndex === 0,
      });
    }
  }
  return spans;
}

/** Milliseconds precision, as record ids use, so float noise never changes a segment's id. */
function roundSeconds(value: number): number {
  return Math.round(value * 1000) / 1000;
}
