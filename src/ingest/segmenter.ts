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
  /** Cosine distance between consecutive frames that starts a new shot; `Infinity` turns detection off. Default 0.25. */
  shotThreshold?: number;
  /** Shortest segment, seconds; shorter pieces are merged into a neighbour. Default: half a window, at most 1 s. */
  minSegmentSeconds?: number;
}

/** Cosine distance `1 − a·b` of two L2-normalized vectors. */
export function cosineDistance(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let index = 0; index < a.length; index += 1) dot += (a[index] ?? 0) * (b[index] ?? 0);
  return 1 - dot;
}

/** Frames where a new shot starts: `i` such that the distance from frame `i − 1` exceeds the threshold. */
export function detectShotChanges({
  frameEmbeddings,
  threshold,
}: {
  frameEmbeddings: readonly Float32Array[];
  threshold: number;
}): number[] {
  const changes: number[] = [];
  for (let index = 1; index < frameEmbeddings.length; index += 1) {
    const distance = cosineDistance(
      frameEmbeddings[index - 1] as Float32Array,
      frameEmbeddings[index] as Float32Array,
    );
    if (distance > threshold) changes.push(index);
  }
  return changes;
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
  shotThreshold = 0.25,
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
  const starts = [0, ...detectShotChanges({ frameEmbeddings, threshold: shotThreshold })];
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
