/**
 * The server's chat limits as the UI knows them, and the check an attachment passes before anything is
 * sent. The server writes its limits into the served script and page (see `src/http/routes/widget.ts`),
 * so what the UI shows is what the server enforces.
 */
import { format, formatBytes, type Strings } from "./i18n.ts";

/** Limits the UI shows and checks before sending. */
export interface ChatLimits {
  /** Images per conversation (`LOUPE_CHAT_MAX_IMAGES`). */
  maxImages: number;
  /** Bytes per image (`LOUPE_MAX_IMAGE_BYTES`). */
  maxImageBytes: number;
  /** Bytes of a JSON request (`LOUPE_MAX_JSON_BYTES`); images travel base64 in it, a third larger. */
  maxJsonBytes: number;
  /** Earlier turns a request may carry (`LOUPE_CHAT_MAX_TURNS`). */
  maxTurns: number;
}

/** The server's defaults, used when the served file carries none (e.g. the script opened from disk). */
export const DEFAULT_LIMITS: ChatLimits = {
  maxImages: 4,
  maxImageBytes: 20 * 1024 * 1024,
  maxJsonBytes: 32 * 1024 * 1024,
  maxTurns: 20,
};

/** Reads limits from JSON written by the server; anything missing or malformed keeps the default. */
export function parseLimits(json: string | null | undefined): ChatLimits {
  const limits = { ...DEFAULT_LIMITS };
  if (!json) return limits;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return limits;
  }
  if (typeof parsed !== "object" || parsed === null) return limits;
  for (const key of Object.keys(limits) as (keyof ChatLimits)[]) {
    const value = (parsed as Record<string, unknown>)[key];
    if (typeof value === "number" && Number.isInteger(value) && value > 0) limits[key] = value;
  }
  return limits;
}

/** The largest image the UI lets through: the server's limit, and what fits a JSON body as base64. */
export function effectiveImageBytes(limits: ChatLimits): number {
  const fitsJson = Math.floor(((limits.maxJsonBytes - 64 * 1024) * 3) / 4 / limits.maxImages);
  return Math.max(1, Math.min(limits.maxImageBytes, fitsJson));
}

/** The one-line statement of the limits shown under the input. */
export function describeLimits(limits: ChatLimits, strings: Strings): string {
  return format(strings.limits, { max: limits.maxImages, size: formatBytes(effectiveImageBytes(limits)) });
}

/** What is known of a file about to be attached. */
export interface CandidateFile {
  name: string;
  type: string;
  size: number;
}

const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/webp", "image/gif"]);

/**
 * Why `file` cannot be attached when `alreadyUsed` images are in the conversation, as a sentence; `null`
 * when it can. The "too large" sentence is given here, before sending, never after a 413.
 */
export function attachmentProblem(
  file: CandidateFile,
  alreadyUsed: number,
  limits: ChatLimits,
  strings: Strings,
): string | null {
  const name = file.name.slice(0, 80) || "image";
  if (!IMAGE_TYPES.has(file.type)) return format(strings.notImage, { name });
  if (alreadyUsed >= limits.maxImages) return format(strings.tooManyImages, { max: limits.maxImages });
  const max = effectiveImageBytes(limits);
  if (file.size > max) return format(strings.tooLargeImage, { name, size: formatBytes(max) });
  return null;
}
