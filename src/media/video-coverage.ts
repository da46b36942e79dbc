/**
 * How much of a video decoded, against what its header declared. A container states its duration up
 * front (Matroska, WebM, MP4 with the index first); a file cut short keeps that header, so ffprobe still
 * reports the whole duration while ffmpeg decodes only the frames that arrived and then stops without an
 * error. The sampled frames are the measure: `n` frames at `fps` cover `n / fps` seconds.
 */

/** A video counts as truncated when more than this share of its declared duration did not decode… */
export const TRUNCATED_SHARE = 0.1;
/** …or when more than this many seconds of it did not. */
export const TRUNCATED_SECONDS = 2;

/** What {@link videoCoverage} found. */
export interface VideoCoverage {
  /** Duration the container declared, seconds. */
  declaredDurationSeconds: number;
  /** Span the decoded frames cover, seconds, never more than the declared duration. */
  decodedDurationSeconds: number;
  /**
   * Whether the video decoded to much less than it declared: more than {@link TRUNCATED_SHARE} of it or
   * more than {@link TRUNCATED_SECONDS} missing, and more than one sampling step (what the count of
   * frames can measure).
   */
  truncated: boolean;
}

/**
 * The span `frames` sampled at `fps` cover, compared with `declaredSeconds`.
 *
 * @param frames frames sampled from the start of the video, one every `1 / fps` seconds.
 */
export function videoCoverage({
  frames,
  fps,
  declaredSeconds,
}: {
  frames: number;
  fps: number;
  declaredSeconds: number;
}): VideoCoverage {
  const decoded = Math.min(declaredSeconds, Math.max(0, frames) / fps);
  const missing = declaredSeconds - decoded;
  const truncated =
    missing > 1 / fps + 1e-9 && (missing > declaredSeconds * TRUNCATED_SHARE || missing > TRUNCATED_SECONDS);
  return {
    declaredDurationSeconds: round3(declaredSeconds),
    decodedDurationSeconds: round3(decoded),
    truncated,
  };
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
