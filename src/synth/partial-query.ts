/**
 * Partial queries: texts that name one or two attributes of one object kind (`a red circle`,
 * `a blue object`, `two squares`), their structured form, and the spec's relevance rule.
 */
import { ValidationError } from "../errors.ts";
import {
  COLORS,
  type Color,
  type ObjectKind,
  type ObjectSet,
  SHAPES,
  type Shape,
  SIZES,
  type Size,
} from "./domain.ts";
import { objectPhrase, PHRASING, phraseFrom } from "./phrasing.ts";
import type { Rng } from "./rng.ts";

/** The eight attribute combinations a partial query may name. */
export const PARTIAL_QUERY_KINDS = [
  "color",
  "shape",
  "size",
  "color+shape",
  "size+shape",
  "size+color",
  "count+shape",
  "count+color",
] as const;

/** Which attributes a partial query names. */
export type PartialQueryKind = (typeof PARTIAL_QUERY_KINDS)[number];

/** Order of the attributes in a kind's name and in a query key. */
const KIND_ORDER = ["count", "size", "color", "shape"] as const;

/** Counts a partial query may ask for (the ones with a count word). */
export const QUERY_COUNTS = [2, 3, 4] as const;

/**
 * The structured form of a partial query. Without `count`, a scene is relevant when at least one object
 * has every named attribute; with `count`, when exactly that many objects do.
 */
export interface PartialQuery {
  size?: Size;
  color?: Color;
  shape?: Shape;
  /** 2–4; only together with a shape or a color alone. */
  count?: number;
}

/** A partial query with its text. */
export interface PhrasedPartialQuery {
  query: PartialQuery;
  kind: PartialQueryKind;
  text: string;
}

/** A partial query with the ids of the gallery items relevant to it. */
export interface GalleryPartialQuery extends PhrasedPartialQuery {
  relevantIds: string[];
}

/** An item of a gallery: an id and the kinds of its objects. */
export interface GalleryItem extends ObjectSet {
  id: string;
}

/**
 * The kind of a partial query; throws when the query is not one of the eight allowed combinations or
 * names an unknown value.
 */
export function partialQueryKind(query: PartialQuery): PartialQueryKind {
  const kind = KIND_ORDER.filter((field) => query[field] !== undefined).join("+");
  const known = (PARTIAL_QUERY_KINDS as readonly string[]).includes(kind);
  const badValue =
    (query.size !== undefined && !SIZES.includes(query.size)) ||
    (query.color !== undefined && !COLORS.includes(query.color)) ||
    (query.shape !== undefined && !SHAPES.includes(query.shape)) ||
    (query.count !== undefined && !(QUERY_COUNTS as readonly number[]).includes(query.count));
  if (!known || badValue) {
    throw new ValidationError(
      `Partial query ${JSON.stringify(query)} is not valid; name one or two of size, color, shape, or a count (2–4) with a shape or a color: ${PARTIAL_QUERY_KINDS.join(", ")}.`,
      { context: { query } },
    );
  }
  return kind as PartialQueryKind;
}

/** How many objects have every attribute the query names (its count aside). */
export function countMatches(query: PartialQuery, scene: ObjectSet): number {
  return scene.objects.filter(
    (object) =>
      (query.size === undefined || object.size === query.size) &&
      (query.color === undefined || object.color === query.color) &&
      (query.shape === undefined || object.shape === query.shape),
  ).length;
}

/**
 * The spec's relevance rule: at least one object with the named attributes, or exactly `count` of them.
 */
export function isRelevant(query: PartialQuery, scene: ObjectSet): boolean {
  const matches = countMatches(query, scene);
  return query.count === undefined ? matches >= 1 : matches === query.count;
}

/** A stable key of a query's meaning, for de-duplication: `count=2 shape=square`. */
export function partialQueryKey(query: PartialQuery): string {
  return KIND_ORDER.filter((field) => query[field] !== undefined)
    .map((field) => `${field}=${query[field]}`)
    .join(" ");
}

/** The text of a partial query: a template of `phrasing.json` around `a red circle`, `two squares`, … */
export function phrasePartialQuery(query: PartialQuery, rng: Rng): string {
  partialQueryKind(query);
  return phraseFrom(rng, PHRASING.partialTemplates, { object: objectPhrase(query) });
}

function queryFor(kind: PartialQueryKind, object: ObjectKind, scene: ObjectSet): PartialQuery {
  switch (kind) {
    case "color":
      return { color: object.color };
    case "shape":
      return { shape: object.shape };
    case "size":
      return { size: object.size };
    case "color+shape":
      return { color: object.color, shape: object.shape };
    case "size+shape":
      return { size: object.size, shape: object.shape };
    case "size+color":
      return { size: object.size, color: object.color };
    case "count+shape":
      return { count: countMatches({ shape: object.shape }, scene), shape: object.shape };
    case "count+color":
      return { count: countMatches({ color: object.color }, scene), color: object.color };
  }
}

function randomQuery(kind: PartialQueryKind, rng: Rng): PartialQuery {
  const object: ObjectKind = { shape: rng.pick(SHAPES), color: rng.pick(COLORS), size: rng.pick(SIZES) };
  const query = queryFor(kind, object, { objects: [] });
  return query.count === undefined ? query : { ...query, count: rng.pick(QUERY_COUNTS) };
}

/** Options of {@link samplePartialQuery}. */
export interface SamplePartialQueryOptions {
  /** Draw a query this scene is relevant to; without it, attributes are uniform. */
  scene?: ObjectSet;
  /** Kinds to draw from (default all eight). With a scene, only kinds it can satisfy are used. */
  kinds?: readonly PartialQueryKind[];
}

/**
 * Samples a partial query and its text. With `scene`, the query is one the scene is relevant to (count
 * queries only where two or more objects share the shape or color); returns `undefined` when none of the
 * allowed kinds fits the scene.
 */
export function samplePartialQuery(
  rng: Rng,
  options: SamplePartialQueryOptions = {},
): PhrasedPartialQuery | undefined {
  const { scene, kinds = PARTIAL_QUERY_KINDS } = options;
  if (scene === undefined) {
    const kind = rng.pick(kinds);
    const query = randomQuery(kind, rng);
    return { query, kind, text: phrasePartialQuery(query, rng) };
  }
  const candidates = kinds.flatMap((kind) =>
    scene.objects
      .map((object) => queryFor(kind, object, scene))
      .filter(
        (query) => query.count === undefined || (QUERY_COUNTS as readonly number[]).includes(query.count),
      )
      .map((query) => ({ kind, query })),
  );
  const feasibleKinds = [...new Set(candidates.map((option) => option.kind))];
  if (feasibleKinds.length === 0) return undefined;
  // Kind first, then object: every feasible kind is equally likely whatever the scene holds.
  const kind = rng.pick(feasibleKinds);
  const { query } = rng.pick(candidates.filter((option) => option.kind === kind));
  return { query, kind, text: phrasePartialQuery(query, rng) };
}

/**
 * A gallery to search: an array of items, or anything else with `length` and `at` (such as a compact
 * index that decodes items on demand).
 */
export interface Gallery {
  readonly length: number;
  at(index: number): GalleryItem | undefined;
}

/** Options of {@link generatePartialQueries}. */
export interface GeneratePartialQueriesOptions {
  gallery: Gallery;
  /** How many distinct queries to generate (fewer when the gallery has fewer distinct ones). */
  count: number;
  kinds?: readonly PartialQueryKind[];
}

/**
 * Generates distinct partial queries over a gallery, each with every relevant item id. Each query is
 * drawn from a random gallery item, so every query has at least one relevant item. The gallery is read
 * once for all relevance sets.
 */
export function generatePartialQueries(
  rng: Rng,
  options: GeneratePartialQueriesOptions,
): GalleryPartialQuery[] {
  const { gallery, count, kinds } = options;
  const queries: GalleryPartialQuery[] = [];
  if (gallery.length === 0) return queries;
  const seen = new Set<string>();
  for (let draw = 0; draw < count * 20 && queries.length < count; draw++) {
    const item = gallery.at(rng.int(0, gallery.length - 1));
    const sampled = item && samplePartialQuery(rng, { scene: item, ...(kinds ? { kinds } : {}) });
    if (sampled === undefined) continue;
    const key = partialQueryKey(sampled.query);
    if (seen.has(key)) continue;
    seen.add(key);
    queries.push({ ...sampled, relevantIds: [] });
  }
  for (let index = 0; index < gallery.length; index++) {
    const item = gallery.at(index);
    if (item === undefined) continue;
    for (const query of queries) if (isRelevant(query.query, item)) query.relevantIds.push(item.id);
  }
  return queries;
}
