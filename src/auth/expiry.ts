/** When a key expires, from what a person types: a duration (`30d`, `12h`, `90m`, `2w`) or a date. */

const UNIT_MS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** The longest expiry accepted: ten years. */
const MAX_MS = 10 * 366 * 86_400_000;

/** What {@link parseExpiry} accepts, in words, for messages. */
export const EXPIRY_FORMS =
  "a duration such as 30d, 12h, 90m, 3600s or 2w, or an ISO 8601 date such as 2030-01-31 or 2030-01-31T12:00:00Z";

/**
 * The time `text` names, counted from `now` for a duration; `undefined` when `text` is neither a
 * duration nor a date, or lies in the past or more than ten years ahead.
 */
export function parseExpiry(text: string, now: Date = new Date()): Date | undefined {
  const trimmed = text.trim();
  const duration = /^(\d{1,6})([smhdw])$/.exec(trimmed);
  let at: number;
  if (duration !== null) {
    at = now.getTime() + Number(duration[1]) * (UNIT_MS[duration[2] as string] as number);
  } else if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(trimmed)) {
    at = Date.parse(trimmed);
  } else {
    return undefined;
  }
  if (!Number.isFinite(at) || at <= now.getTime() || at - now.getTime() > MAX_MS) return undefined;
  return new Date(at);
}
