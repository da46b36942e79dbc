/**
 * A user's profile: what their recorded events say they like and dislike, each item weighted by the
 * type of its events and their age.
 *
 * Each event counts `EVENT_WEIGHTS[type] · 2^(−age / halfLife)`: a like +1, a select (the user picked the
 * item from a list, opened it) +0.5, a view +0.1, a dislike −1; with the default half-life of 7 days an
 * event of a week ago counts half, one of a month ago about a twentieth. An item's events are summed:
 * above 0 it is a positive of the profile, below 0 a negative, with the sum's magnitude as its weight.
 * The {@link MAX_PROFILE_ITEMS} heaviest of each side are kept.
 */

/** The interactions a user's events record. */
export const EVENT_TYPES = ["view", "like", "dislike", "select"] as const;
/** One interaction type. */
export type EventType = (typeof EVENT_TYPES)[number];

/** How much one event of each type counts before decay; negative pushes the profile away. */
export const EVENT_WEIGHTS: Readonly<Record<EventType, number>> = {
  like: 1,
  select: 0.5,
  view: 0.1,
  dislike: -1,
};

/** Half-life of an event's weight unless configured otherwise: 7 days. */
export const DEFAULT_EVENT_HALF_LIFE_MS = 7 * 24 * 3600 * 1000;

/** Most positives (and, apart, most negatives) a profile keeps: the heaviest. */
export const MAX_PROFILE_ITEMS = 50;

/** One recorded interaction. */
export interface UserEvent {
  /** The application's id of the user, 1–128 characters. */
  user: string;
  /** The item interacted with (`img_…`, `seg_…`, `tri_…`). */
  item: string;
  type: EventType;
  /** When it happened, milliseconds since the Unix epoch. */
  at: number;
}

/** An item of a profile with its summed, decayed weight (its magnitude: always above 0). */
export interface ProfileItem {
  item: string;
  weight: number;
}

/** What a user's events say. */
export interface Profile {
  /** Heaviest first. */
  positives: ProfileItem[];
  /** Heaviest first. */
  negatives: ProfileItem[];
  /** Every item the user interacted with: never recommended back to them. */
  seen: Set<string>;
}

/** The decayed weight of one event at `now`; an event dated after `now` counts as happening now. */
export function eventWeight({
  type,
  at,
  now,
  halfLifeMs = DEFAULT_EVENT_HALF_LIFE_MS,
}: {
  type: EventType;
  at: number;
  now: number;
  halfLifeMs?: number;
}): number {
  const age = Math.max(0, now - at);
  return EVENT_WEIGHTS[type] * 2 ** (-age / halfLifeMs);
}

/** The profile of a user's events at `now`. */
export function buildProfile({
  events,
  now,
  halfLifeMs = DEFAULT_EVENT_HALF_LIFE_MS,
  maxItems = MAX_PROFILE_ITEMS,
}: {
  events: readonly Pick<UserEvent, "item" | "type" | "at">[];
  now: number;
  halfLifeMs?: number;
  maxItems?: number;
}): Profile {
  const sums = new Map<string, number>();
  for (const event of events) {
    sums.set(event.item, (sums.get(event.item) ?? 0) + eventWeight({ ...event, now, halfLifeMs }));
  }
  const positives: ProfileItem[] = [];
  const negatives: ProfileItem[] = [];
  for (const [item, weight] of sums) {
    if (weight > 0) positives.push({ item, weight });
    else if (weight < 0) negatives.push({ item, weight: -weight });
  }
  const heaviest = (left: ProfileItem, right: ProfileItem) =>
    right.weight - left.weight || (left.item < right.item ? -1 : 1);
  return {
    positives: positives.sort(heaviest).slice(0, maxItems),
    negatives: negatives.sort(heaviest).slice(0, maxItems),
    seen: new Set(sums.keys()),
  };
}
