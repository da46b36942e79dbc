/**
 * Recommendations: items like the positives and unlike the negatives (`POST /v1/recommend`), and from a
 * user's recorded events (`GET /v1/users/{user}/recommendations`).
 *
 * The image query is Rocchio's (`rocchio.ts`) over the items' image embeddings; with the pack's detection
 * head, an object query is made from the objects the liked items share (`region-query.ts`). Candidates are
 * the image query's nearest items of each kind and the items whose stored regions are nearest the object
 * query; with an object query both sides are scored from the candidates' own embeddings and blended. The
 * inputs (and, for a user, every item they interacted with) are never among the results; with `diversity`,
 * the candidates are re-ranked by maximal marginal relevance under a similarity ceiling (`mmr.ts`).
 */
import { NotFoundError, ValidationError } from "../errors.ts";
import type { MediaReader, MediaUrls } from "../media/media-port.ts";
import type { SearchResponse } from "../search/index.ts";
import {
  DEFAULT_SEARCH_TOP_K,
  kindOfId,
  MAX_SEARCH_TOP_K,
  resolveKinds,
  toResultItem,
} from "../search/index.ts";
import {
  buildFilterExpression,
  type FilterSpec,
  ITEM_KINDS,
  parseFilterSpec,
  type RecordKind,
  type SearchHit,
  type StoredRecord,
  type VectorStore,
} from "../store/index.ts";
import { MAX_TOP_K } from "../store/vector-store.ts";
import type { EventStore } from "./event-store.ts";
import {
  type ItemDetector,
  type ItemEmbedding,
  type ItemEmbeddingModels,
  ItemVectors,
} from "./item-vectors.ts";
import { checkDiversity, diversify } from "./mmr.ts";
import {
  buildProfile,
  DEFAULT_EVENT_HALF_LIFE_MS,
  EVENT_TYPES,
  type EventType,
  type UserEvent,
} from "./profile.ts";
import { blendScores, REGION_WEIGHT, regionQuery } from "./region-query.ts";
import { DEFAULT_ROCCHIO_WEIGHTS, dotProduct, type RocchioWeights, rocchioQuery } from "./rocchio.ts";

/** Most positive ids one request takes. */
export const MAX_POSITIVE_IDS = 50;
/** Most negative ids one request takes. */
export const MAX_NEGATIVE_IDS = 50;
/** Kinds a recommendation can return and take ids of: whole items. */
export const RECOMMEND_KINDS: readonly RecordKind[] = ITEM_KINDS;
/** What a user id may be: 1–128 letters, digits and `._:@+-`, starting with a letter or digit. */
export const USER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/;
/** How far ahead of the server's clock an event's `at` may be (clock skew). */
export const MAX_EVENT_CLOCK_SKEW_MS = 5 * 60 * 1000;
/** The earliest `at` an event may carry. */
export const EARLIEST_EVENT_AT = Date.UTC(2000, 0, 1);

/** Options of a recommendation's candidates and ranking. */
export interface RankingOptions {
  tenant: string;
  /** Kinds to return: `image`, `video_segment`, `triple`; every one when absent. */
  kinds?: readonly string[];
  /** Results wanted, 1–100 (10 when absent). */
  topK?: number;
  filter?: unknown;
  /** 0 (or absent): by relevance alone; up to 1: more spread (see `mmr.ts`). */
  diversity?: number;
}

/** Arguments of {@link RecommendService.recommend}. */
export interface RecommendOptions extends RankingOptions {
  /** Items the results should be like: 1–{@link MAX_POSITIVE_IDS} ids. */
  positive: readonly string[];
  /** Items the results should be unlike: at most {@link MAX_NEGATIVE_IDS} ids. */
  negative?: readonly string[];
}

/** An event as sent. */
export interface EventInput {
  user: string;
  item: string;
  type: string;
  /** When it happened (ms since the epoch); now when absent. */
  at?: number;
}

/** What a user's recommendations were ranked from. */
export interface ProfileSummary {
  /** Events of the user kept. */
  events: number;
  /** Items that count for the user (their events weigh above 0), at most 50. */
  positives: number;
  /** Items that count against (below 0), at most 50. */
  negatives: number;
}

/** What {@link RecommendService.userRecommendations} returns. */
export interface UserRecommendations extends SearchResponse {
  profile: ProfileSummary;
}

/** Options of {@link RecommendService}. */
export interface RecommendServiceOptions {
  store: VectorStore;
  models: ItemEmbeddingModels;
  media: MediaReader | undefined;
  urls: MediaUrls;
  events: EventStore;
  /** Half-life of an event's weight (`LOUPE_EVENTS_HALF_LIFE_HOURS`). */
  halfLifeMs?: number;
  rocchio?: RocchioWeights;
  /** The clock, for events without `at` and for decay. */
  now?: () => number;
  /** The pack's detection head: with it, the objects in items make the region side of the ranking. */
  detector?: ItemDetector | undefined;
  /** Weight of the region side (`region-query.ts`). */
  regionWeight?: number;
  /** Item embeddings; a cache of its own when absent. */
  vectors?: ItemVectors;
}

/** Recommendations from items and from users' events. */
export class RecommendService {
  readonly #store: VectorStore;
  readonly #urls: MediaUrls;
  readonly #events: EventStore;
  readonly #halfLifeMs: number;
  readonly #rocchio: RocchioWeights;
  readonly #now: () => number;
  readonly #vectors: ItemVectors;
  readonly #regionWeight: number;

  constructor({
    store,
    models,
    media,
    urls,
    events,
    halfLifeMs = DEFAULT_EVENT_HALF_LIFE_MS,
    rocchio = DEFAULT_ROCCHIO_WEIGHTS,
    now = Date.now,
    detector,
    regionWeight = REGION_WEIGHT,
    vectors,
  }: RecommendServiceOptions) {
    this.#store = store;
    this.#urls = urls;
    this.#events = events;
    this.#halfLifeMs = halfLifeMs;
    this.#rocchio = rocchio;
    this.#now = now;
    this.#vectors = vectors ?? new ItemVectors({ models, media, detector });
    this.#regionWeight = regionWeight;
  }

  /**
   * Items like `positive` and unlike `negative`, none of them among the results.
   *
   * @throws ValidationError for no positive, too many ids, an id in both lists, an id that is not an
   *   item id, unknown kinds, `topK` out of range, a bad filter or `diversity`.
   * @throws NotFoundError when an id names no item of the caller's tenant.
   */
  async recommend({
    tenant,
    positive,
    negative = [],
    ...ranking
  }: RecommendOptions): Promise<SearchResponse> {
    checkIds({ positive, negative });
    const plan = this.#plan({ tenant, ...ranking });
    const [positives, negatives] = await Promise.all([
      this.#records({ tenant, ids: positive, missing: "fail" }),
      this.#records({ tenant, ids: negative, missing: "fail" }),
    ]);
    const [positiveEmbeddings, negativeEmbeddings] = await Promise.all([
      this.#vectors.embeddingsOf({ tenant, records: positives }),
      this.#vectors.embeddingsOf({ tenant, records: negatives }),
    ]);
    const queries = this.#queries({
      positives: positiveEmbeddings.map((embedding) => ({ embedding, weight: 1 })),
      negatives: negativeEmbeddings.map((embedding) => ({ embedding, weight: 1 })),
    });
    return this.#rank({ tenant, ...queries, exclude: new Set([...positive, ...negative]), ...plan });
  }

  /**
   * Records one event of a user, after checking that its item is one of the tenant's.
   *
   * @throws ValidationError for a bad user id, an unknown type, an item id that is not one, or `at`
   *   outside 2000-01-01 … now + 5 minutes.
   * @throws NotFoundError when the item is not the tenant's.
   */
  async recordEvent({ tenant, event }: { tenant: string; event: EventInput }): Promise<UserEvent> {
    const user = checkUserId(event.user);
    if (!EVENT_TYPES.includes(event.type as EventType)) {
      throw new ValidationError(
        `Unknown event type ${JSON.stringify(String(event.type).slice(0, 40))}; allowed: ${EVENT_TYPES.join(", ")}.`,
        { context: { type: String(event.type).slice(0, 40) } },
      );
    }
    const now = this.#now();
    const at = event.at ?? now;
    if (!Number.isFinite(at) || at < EARLIEST_EVENT_AT || at > now + MAX_EVENT_CLOCK_SKEW_MS) {
      throw new ValidationError(
        `The event's time ${Number.isFinite(at) ? new Date(at).toISOString() : String(at)} is outside 2000-01-01 to now (plus 5 minutes of clock skew); send when it happened, or leave it out for now.`,
        { context: { at } },
      );
    }
    await this.#records({ tenant, ids: [event.item], missing: "fail" });
    const recorded: UserEvent = { user, item: event.item, type: event.type as EventType, at };
    await this.#events.append({ tenant, event: recorded });
    return recorded;
  }

  /**
   * Items for a user, from the profile of their events (see `profile.ts`): never an item they interacted
   * with. Items deleted since are left out of the profile. No positive left: no results.
   */
  async userRecommendations({
    user,
    ...options
  }: RankingOptions & { user: string }): Promise<UserRecommendations> {
    checkUserId(user);
    const { tenant } = options;
    const plan = this.#plan(options);
    const events = await this.#events.list({ tenant, user });
    const profile = buildProfile({ events, now: this.#now(), halfLifeMs: this.#halfLifeMs });
    const weights = new Map(
      [...profile.positives, ...profile.negatives].map(({ item, weight }) => [item, weight]),
    );
    const [positives, negatives] = await Promise.all([
      this.#records({ tenant, ids: profile.positives.map(({ item }) => item), missing: "skip" }),
      this.#records({ tenant, ids: profile.negatives.map(({ item }) => item), missing: "skip" }),
    ]);
    const summary = { events: events.length, positives: positives.length, negatives: negatives.length };
    if (positives.length === 0) return { items: [], profile: summary };
    const [positiveEmbeddings, negativeEmbeddings] = await Promise.all([
      this.#vectors.embeddingsOf({ tenant, records: positives }),
      this.#vectors.embeddingsOf({ tenant, records: negatives }),
    ]);
    const weighted = (records: StoredRecord[], embeddings: ItemEmbedding[]) =>
      records.map((record, index) => ({
        embedding: embeddings[index] as ItemEmbedding,
        weight: weights.get(record.id) ?? 0,
      }));
    const queries = this.#queries({
      positives: weighted(positives, positiveEmbeddings),
      negatives: weighted(negatives, negativeEmbeddings),
    });
    const ranked = await this.#rank({ tenant, ...queries, exclude: profile.seen, ...plan });
    return { ...ranked, profile: summary };
  }

  /** Removes every event of a user; resolves to how many there were. */
  async deleteUser({ tenant, user }: { tenant: string; user: string }): Promise<{ deleted: number }> {
    return { deleted: await this.#events.deleteUser({ tenant, user: checkUserId(user) }) };
  }

  /** The image query (Rocchio's) and, when two liked items have regions, the region query. */
  #queries({
    positives,
    negatives,
  }: {
    positives: { embedding: ItemEmbedding; weight: number }[];
    negatives: { embedding: ItemEmbedding; weight: number }[];
  }): { query: Float32Array; objects: Float32Array | undefined } {
    const query = rocchioQuery({
      positives: positives.map(({ embedding, weight }) => ({ vector: embedding.image, weight })),
      negatives: negatives.map(({ embedding, weight }) => ({ vector: embedding.image, weight })),
      weights: this.#rocchio,
    });
    const objects =
      this.#regionWeight === 0
        ? undefined
        : regionQuery({
            positives: positives.map(({ embedding, weight }) => ({ regions: embedding.regions, weight })),
            negatives: negatives.map(({ embedding, weight }) => ({ regions: embedding.regions, weight })),
          });
    return { query, objects };
  }

  /** Checks the ranking options before any embedding. */
  #plan({ tenant, kinds, topK, filter, diversity }: RankingOptions): {
    kinds: RecordKind[];
    topK: number;
    filter: FilterSpec | undefined;
    diversity: number;
  } {
    const resolvedKinds = resolveKinds(kinds, RECOMMEND_KINDS);
    const k = topK ?? DEFAULT_SEARCH_TOP_K;
    if (!Number.isInteger(k) || k < 1 || k > MAX_SEARCH_TOP_K) {
      throw new ValidationError(
        `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}; got ${JSON.stringify(topK)}.`,
        {
          context: { topK },
        },
      );
    }
    let spec: FilterSpec | undefined;
    if (filter !== undefined) {
      spec = parseFilterSpec(filter);
      for (const kind of resolvedKinds) buildFilterExpression({ tenant, filter: spec, kind });
    }
    return { kinds: resolvedKinds, topK: k, filter: spec, diversity: checkDiversity(diversity ?? 0) };
  }

  /**
   * The tenant's records of `ids`, in their order. `missing: "fail"` throws for an id the tenant does not
   * have (another tenant's id looks the same as one that does not exist); `"skip"` leaves it out.
   */
  async #records({
    tenant,
    ids,
    missing,
  }: {
    tenant: string;
    ids: readonly string[];
    missing: "fail" | "skip";
  }): Promise<StoredRecord[]> {
    const byKind = new Map<RecordKind, string[]>();
    for (const id of ids) {
      const kind = itemKindOf(id);
      byKind.set(kind, [...(byKind.get(kind) ?? []), id]);
    }
    const found = new Map<string, StoredRecord>();
    await Promise.all(
      [...byKind].map(async ([kind, kindIds]) => {
        for (const record of await this.#store.get({ kind, tenant, ids: kindIds }))
          found.set(record.id, record);
      }),
    );
    const records: StoredRecord[] = [];
    for (const id of ids) {
      const record = found.get(id);
      if (record !== undefined) records.push(record);
      else if (missing === "fail") throw new NotFoundError(`No item with id ${id}.`, { context: { id } });
    }
    return records;
  }

  /**
   * The query's nearest items of each kind, without `exclude`, merged by cosine; with a region query, each
   * blended with the best cosine of one of its regions (`region-query.ts`); then diversified.
   */
  async #rank({
    tenant,
    query,
    objects,
    exclude,
    kinds,
    topK,
    filter,
    diversity,
  }: {
    tenant: string;
    query: Float32Array;
    objects: Float32Array | undefined;
    exclude: ReadonlySet<string>;
    kinds: RecordKind[];
    topK: number;
    filter: FilterSpec | undefined;
    diversity: number;
  }): Promise<SearchResponse> {
    const wanted = candidatePoolSize({ topK, diversity });
    const limit = Math.min(MAX_TOP_K, wanted + exclude.size);
    const [perKind, regions] = await Promise.all([
      Promise.all(
        kinds.map(async (kind) => {
          const hits = (await this.#store.search({
            kind,
            tenant,
            vector: query,
            topK: limit,
            ...(filter === undefined ? {} : { filter }),
            ...(kind === "triple" ? { vectorField: "image_vector" as never } : {}),
          })) as SearchHit[];
          return hits.map((hit) => ({ kind, hit }));
        }),
      ),
      objects === undefined ? undefined : this.#regionCandidates({ tenant, objects, kinds, exclude, limit }),
    ]);
    const found = new Map<string, { kind: RecordKind; hit: SearchHit }>();
    const imageSide = perKind
      .flat()
      .filter(({ hit }) => !exclude.has(hit.id))
      .sort((left, right) => right.hit.score - left.hit.score)
      .slice(0, wanted);
    for (const candidate of imageSide) found.set(candidate.hit.id, candidate);
    let scores = new Map([...found].map(([id, { hit }]) => [id, hit.score]));
    let embeddings: Map<string, ItemEmbedding> | undefined;
    if (objects !== undefined && regions !== undefined) {
      // With a filter, the region side only re-scores items the filtered image side found: a region carries
      // its parent's metadata, but its text adds the object's words, so it may match where the item does not.
      // Each side brings its `wanted` best, so at most twice that many items are embedded.
      const unread = filter === undefined ? regions.slice(0, wanted).filter((id) => !found.has(id)) : [];
      for (const record of await this.#records({ tenant, ids: unread, missing: "skip" })) {
        found.set(record.id, { kind: record.kind, hit: { id: record.id, score: 0, fields: record } });
      }
      // Both sides scored here, from the items' own embeddings, so the two scales are the same cosines.
      const ids = [...found.keys()];
      const embedded = await this.#vectors.embeddingsOf({
        tenant,
        records: ids.map((id) => (found.get(id) as { hit: SearchHit }).hit.fields),
      });
      embeddings = new Map(ids.map((id, index) => [id, embedded[index] as ItemEmbedding]));
      const imageScores = new Map(
        ids.map((id, index) => [id, dotProduct(query, (embedded[index] as ItemEmbedding).image)]),
      );
      const regionScores = new Map(
        ids.flatMap((id, index) => {
          const own = (embedded[index] as ItemEmbedding).regions;
          return own.length === 0
            ? []
            : [[id, Math.max(...own.map((region) => dotProduct(objects, region)))] as const];
        }),
      );
      scores =
        regionScores.size === 0
          ? imageScores
          : blendScores({ image: imageScores, region: regionScores, regionWeight: this.#regionWeight });
    }
    const candidates = [...scores]
      .filter(([id]) => found.has(id))
      .sort((left, right) => right[1] - left[1])
      .slice(0, wanted)
      .map(([id, score]) => ({ ...(found.get(id) as { kind: RecordKind; hit: SearchHit }), score }));
    const resultOf = (candidate: { kind: RecordKind; hit: SearchHit }, score: number) => ({
      ...toResultItem(candidate.kind, candidate.hit, this.#urls),
      score,
    });
    if (diversity === 0) {
      return { items: candidates.slice(0, topK).map((candidate) => resultOf(candidate, candidate.score)) };
    }
    const vectors =
      embeddings === undefined
        ? await this.#vectors.vectorsOf({ tenant, records: candidates.map(({ hit }) => hit.fields) })
        : candidates.map(({ hit }) => (embeddings.get(hit.id) as ItemEmbedding).image);
    const picked = diversify({
      candidates: candidates.map((candidate, index) => ({
        item: candidate,
        relevance:
          objects === undefined ? dotProduct(query, vectors[index] as Float32Array) : candidate.score,
        vector: vectors[index] as Float32Array,
      })),
      topK,
      diversity,
    });
    return { items: picked.map(({ item, relevance }) => resultOf(item, relevance)) };
  }

  /**
   * The images and video segments whose objects are nearest the region query, nearest first: the store's
   * nearest regions, by the item they are part of, at most `limit` items.
   */
  async #regionCandidates({
    tenant,
    objects,
    kinds,
    exclude,
    limit,
  }: {
    tenant: string;
    objects: Float32Array;
    kinds: readonly RecordKind[];
    exclude: ReadonlySet<string>;
    limit: number;
  }): Promise<string[] | undefined> {
    const parentKinds = kinds.filter((kind) => kind === "image" || kind === "video_segment");
    if (parentKinds.length === 0) return undefined;
    const hits = (await this.#store.search({
      kind: "region",
      tenant,
      vector: objects,
      // An item holds a few objects: more region hits than items wanted.
      topK: Math.min(MAX_TOP_K, REGION_HITS_PER_ITEM * limit),
    })) as SearchHit<"region">[];
    const parents: string[] = [];
    for (const hit of hits) {
      const { parentId, parentKind } = hit.fields;
      if (!parentKinds.includes(parentKind) || exclude.has(parentId) || parents.includes(parentId)) continue;
      parents.push(parentId);
      if (parents.length === limit) break;
    }
    return parents;
  }
}

/** Region hits asked for per item wanted: items of Shapes World hold up to four objects. */
const REGION_HITS_PER_ITEM = 4;

/** Candidates re-ranked for a request: `topK` without diversity, else 4·topK and at least 40. */
export function candidatePoolSize({ topK, diversity }: { topK: number; diversity: number }): number {
  return diversity === 0 ? topK : Math.max(4 * topK, 40);
}

/** Checks the id lists' sizes and that no id is in both. */
function checkIds({
  positive,
  negative,
}: {
  positive: readonly string[];
  negative: readonly string[];
}): void {
  if (positive.length === 0) {
    throw new ValidationError(
      "positive must list at least one item id: the items the results should be like.",
    );
  }
  if (positive.length > MAX_POSITIVE_IDS || negative.length > MAX_NEGATIVE_IDS) {
    throw new ValidationError(
      `A recommendation takes at most ${MAX_POSITIVE_IDS} positive and ${MAX_NEGATIVE_IDS} negative ids; got ${positive.length} and ${negative.length}.`,
      { context: { positive: positive.length, negative: negative.length } },
    );
  }
  const positives = new Set(positive);
  const both = negative.find((id) => positives.has(id));
  if (both !== undefined) {
    throw new ValidationError(`Item ${both} is both positive and negative; list it once.`, {
      context: { id: both },
    });
  }
}

/** The kind of an item id, which must be `img_…`, `seg_…` or `tri_…`. */
function itemKindOf(id: string): RecordKind {
  const kind = kindOfId(id);
  if (kind === undefined || !RECOMMEND_KINDS.includes(kind)) {
    throw new ValidationError(
      `${JSON.stringify(id.slice(0, 80))} is not an item id; recommendations take ids starting with img_, seg_ or tri_.`,
      { context: { id: id.slice(0, 80) } },
    );
  }
  return kind;
}

/** Checks a user id against {@link USER_ID_PATTERN}. */
export function checkUserId(user: string): string {
  if (typeof user !== "string" || !USER_ID_PATTERN.test(user)) {
    throw new ValidationError(
      `User id ${JSON.stringify(String(user).slice(0, 80))} is not allowed; use 1–128 letters, digits and . _ : @ + -, starting with a letter or digit.`,
      { context: { user: String(user).slice(0, 80) } },
    );
  }
  return user;
}
