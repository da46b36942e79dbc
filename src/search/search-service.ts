/**
 * The search service: text, image and combined queries over images, video segments and triples;
 * recommendation ("items like this one"); zero-shot classification and auto-tagging.
 *
 * Every kind lives in the same CLIP embedding space and is indexed with the same metric, so the scores of
 * hits from different collections are on one scale and results are merged by score alone. One caveat:
 * a text query scores triples by their question (text-to-text similarity), which runs higher than the
 * text-to-image similarity that ranks images and segments, so text queries tend to put matching triples
 * first. Callers who want one kind only pass `kinds`.
 *
 * Three modes: `dense` (the embeddings alone), `text` (BM25 over each record's searchable text: OCR text,
 * title and tags, a triple's question and answer) and `hybrid` (both, fused by the store's ranker, RRF by
 * default). A query with text is searched `hybrid` unless the caller says otherwise, an image-only query
 * `dense`. Quoted phrases must occur in a text or hybrid hit. Every result carries the OCR lines that
 * contain a phrase or a term of the query (`textMatches`), so a client can point at them.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { NotFoundError, ValidationError } from "../errors.ts";
import type { ModelPack } from "../inference/index.ts";
import { l2Normalize, softmax } from "../inference/index.ts";
import type { MediaReader, MediaUrls } from "../media/media-port.ts";
import {
  buildFilterExpression,
  type FilterSpec,
  ITEM_KINDS,
  isValidRecordId,
  parseFilterSpec,
  RECORD_KINDS,
  type RecordKind,
  type RegionBox,
  type SearchHit,
  type StoredRecord,
  type VectorStore,
} from "../store/index.ts";
import type { HybridRanker, HybridSearchRequest } from "../store/vector-store.ts";
import { matchOcrLines, parseTextQuery, type TextMatch, type TextQuery } from "./text-query.ts";

/** How a search ranks: by embeddings, by BM25 over the records' text, or both fused. */
export const SEARCH_MODES = ["dense", "text", "hybrid"] as const;
/** A search mode. */
export type SearchMode = (typeof SEARCH_MODES)[number];

/** The ranker used when none is given: reciprocal rank fusion with Milvus's usual `k`. */
export const DEFAULT_HYBRID_RANKER: HybridRanker = { type: "rrf", k: 60 };

/** Kinds a search may cover, in the order they are listed in messages. */
export const SEARCH_KINDS: readonly RecordKind[] = RECORD_KINDS;
/**
 * Kinds searched when `kinds` is not given: whole items. Regions (objects inside images) are searched when
 * asked for, so that an image and its objects do not crowd each other out of one result list.
 */
export const DEFAULT_SEARCH_KINDS: readonly RecordKind[] = ITEM_KINDS;
/** Most results one search returns. */
export const MAX_SEARCH_TOP_K = 100;
/** Results returned when `topK` is not given. */
export const DEFAULT_SEARCH_TOP_K = 10;
/** Most labels one zero-shot classification takes. */
export const MAX_CLASSIFY_LABELS = 100;
/** Longest label, in characters. */
export const MAX_LABEL_LENGTH = 200;
/** Prompt each label is put into before it is embedded. */
export const DEFAULT_LABEL_TEMPLATE = "a photo of {label}";
/** Neighbours an auto-tag vote looks at when `k` is not given. */
export const DEFAULT_AUTO_TAG_K = 10;
/** Logit scale used when the pack's `config.json` names none (CLIP's trained models clamp at 100). */
export const DEFAULT_LOGIT_SCALE = 100;

/** An image to search with: encoded bytes, or the id of a stored item whose media is re-embedded. */
export type ImageQuery = { bytes: Uint8Array } | { id: string };

/** What the search layer uses of a model pack. */
export type SearchModels = Pick<ModelPack, "modelId" | "textEmbedder" | "imageEmbedder">;

/** Options of {@link SearchService}. */
export interface SearchServiceOptions {
  store: VectorStore;
  models: SearchModels;
  /** Reads stored media, to embed an item given by id. Without it, id queries answer 503. */
  media?: MediaReader;
  /** Where result items' media is served (the HTTP layer's routes). */
  urls: MediaUrls;
  /**
   * Softmax scale of zero-shot classification (see {@link resolveLogitScale}), or a function that reads it
   * on first use (from the pack's `config.json`, with {@link readLogitScale}).
   */
  logitScale?: number | (() => Promise<number>);
  /** How hybrid search fuses the dense and the BM25 ranking (`LOUPE_SEARCH_RANKER` and its weights). */
  ranker?: HybridRanker;
}

/** Arguments of {@link SearchService.search}. */
export interface SearchOptions {
  /** The caller's tenant, from the server's identity of the caller. */
  tenant: string;
  text?: string;
  image?: ImageQuery;
  /**
   * `dense`, `text` or `hybrid`. Default: `hybrid` when the query has text, `dense` for an image alone.
   * `text` takes a text query only.
   */
  mode?: SearchMode;
  kinds?: readonly string[];
  topK?: number;
  filter?: unknown;
}

/** Arguments of {@link SearchService.similar}. */
export interface SimilarOptions {
  tenant: string;
  /** The item to find neighbours of; it is never among the results. */
  id: string;
  kinds?: readonly string[];
  topK?: number;
  filter?: unknown;
}

/** One search result. */
export interface SearchResultItem {
  kind: RecordKind;
  id: string;
  /**
   * Larger is closer. `dense`: the similarity (COSINE or IP); `text`: the BM25 score; `hybrid`: the
   * ranker's fused score. One scale across kinds within a mode.
   */
  score: number;
  /** `/v1/media/{id}`: the original media (a segment's keyframe). */
  mediaUrl: string;
  /** `/v1/media/{id}/thumbnail`. */
  thumbnailUrl: string;
  source: string;
  createdAt: number;
  text: string;
  /** Text read in the media by OCR (lines joined by newlines; their boxes are in `metadata.ocr`). */
  ocrText: string;
  metadata: Record<string, unknown>;
  /**
   * The OCR lines of the item that contain a quoted phrase or a term of the text query, with their boxes
   * (pixels of the image `metadata.ocr` was read from); empty without text or a reading.
   */
  textMatches?: TextMatch[];
  /** Video segments: the video the segment belongs to. */
  videoId?: string;
  /** Video segments: start, in seconds. */
  start?: number;
  /** Video segments: end, in seconds. */
  end?: number;
  /** Triples: the stored question. */
  question?: string;
  /** Triples: the stored answer. */
  answer?: string;
  /** Regions: the object, where it is and which item it is part of. */
  region?: RegionFields;
}

/** What a region result says of its object. */
export interface RegionFields {
  /** The image or video segment the object is in. */
  parentId: string;
  parentKind: "image" | "video_segment";
  /** Normalized to [0, 1] of the parent's image (a segment's keyframe). */
  box: RegionBox;
  label: string;
  attributes: Record<string, string>;
  /** The detector's score. */
  score: number;
}

/** What {@link SearchService.search} and {@link SearchService.similar} return. */
export interface SearchResponse {
  items: SearchResultItem[];
}

/** Arguments of {@link SearchService.classify}. */
export interface ClassifyOptions {
  tenant: string;
  image: ImageQuery;
  /** Candidate labels for zero-shot classification. */
  labels?: readonly string[];
  /** Prompt holding `{label}`; {@link DEFAULT_LABEL_TEMPLATE} when absent. */
  template?: string;
  /** Auto-tagging by a weighted vote of the `k` nearest tagged images and segments. */
  autoTag?: { k?: number };
}

/** A zero-shot label with its softmax probability. */
export interface LabelScore {
  label: string;
  score: number;
}

/** An auto-tag: `score` is the similarity-weighted share of neighbours carrying it, `support` their count. */
export interface TagScore {
  tag: string;
  score: number;
  support: number;
}

/** What {@link SearchService.classify} returns. */
export interface ClassifyResponse {
  labels: LabelScore[];
  tags: TagScore[];
}

const ID_KINDS: Record<string, RecordKind> = {
  img: "image",
  seg: "video_segment",
  tri: "triple",
  reg: "region",
};

/**
 * Checks `kinds`: each must be one of `allowed` (every searchable kind when absent); duplicates are dropped.
 * Absent `kinds` are {@link DEFAULT_SEARCH_KINDS}.
 *
 * @throws ValidationError naming the unknown kind and the allowed ones.
 */
export function resolveKinds(
  kinds: readonly string[] | undefined,
  allowed: readonly RecordKind[] = SEARCH_KINDS,
): RecordKind[] {
  if (kinds === undefined) return DEFAULT_SEARCH_KINDS.filter((kind) => allowed.includes(kind));
  if (!Array.isArray(kinds) || kinds.length === 0) {
    throw new ValidationError(`kinds must be a non-empty list of ${allowed.join(", ")}.`);
  }
  const resolved: RecordKind[] = [];
  for (const kind of kinds) {
    if (!allowed.includes(kind as RecordKind)) {
      throw new ValidationError(
        `Unknown kind ${JSON.stringify(String(kind).slice(0, 80))}; allowed kinds: ${allowed.join(", ")}.`,
        { context: { kind: String(kind).slice(0, 80) } },
      );
    }
    if (!resolved.includes(kind as RecordKind)) resolved.push(kind as RecordKind);
  }
  return resolved;
}

/**
 * The mode of a search: the caller's, else `hybrid` for a query with text and `dense` for an image alone.
 * An image-only query is dense by default because it has no text for BM25 to rank by; a text query is
 * hybrid because BM25 finds exact words (error codes, quoted phrases) that an embedding ranks weakly,
 * while on items with no text the store's fusion keeps the dense order.
 *
 * @throws ValidationError for an unknown mode, or `text` without a text query or with an image.
 */
export function resolveSearchMode({
  mode,
  hasText,
  hasImage,
}: {
  mode: string | undefined;
  hasText: boolean;
  hasImage: boolean;
}): SearchMode {
  if (mode === undefined) return hasText ? "hybrid" : "dense";
  if (!SEARCH_MODES.includes(mode as SearchMode)) {
    throw new ValidationError(
      `Unknown search mode ${JSON.stringify(String(mode).slice(0, 40))}; allowed: ${SEARCH_MODES.join(", ")}.`,
      { context: { mode: String(mode).slice(0, 40) } },
    );
  }
  if (mode === "text" && !hasText) {
    throw new ValidationError(
      'mode "text" searches the text of items and needs a text query; send text, or use mode "dense" or "hybrid" for an image.',
      { context: { field: "text" } },
    );
  }
  if (mode === "text" && hasImage) {
    throw new ValidationError(
      'mode "text" takes a text query only; drop the image, or use mode "hybrid" to search by both.',
      { context: { field: "image" } },
    );
  }
  if (mode === "hybrid" && !hasText) {
    throw new ValidationError(
      'mode "hybrid" fuses an embedding search with a text search and needs a text query; send text, or use mode "dense" for an image alone.',
      { context: { field: "text" } },
    );
  }
  return mode as SearchMode;
}

/**
 * Checks `topK`: an integer from 1 to {@link MAX_SEARCH_TOP_K}.
 *
 * @throws ValidationError showing the value and the range.
 */
export function resolveTopK(topK: number | undefined): number {
  if (topK === undefined) return DEFAULT_SEARCH_TOP_K;
  if (!Number.isInteger(topK) || topK < 1 || topK > MAX_SEARCH_TOP_K) {
    throw new ValidationError(
      `topK must be an integer from 1 to ${MAX_SEARCH_TOP_K}; got ${JSON.stringify(topK)}.`,
      { context: { topK } },
    );
  }
  return topK;
}

/**
 * The softmax scale of zero-shot classification from a pack's `logit_scale_init_value`. Hugging Face
 * configs store the logarithm of the scale (2.6592 = ln(1/0.07)); a value above ln(100) can only be the
 * scale itself (Loupe's packs write the trained scale). Either way it is capped at 100, as CLIP clamps it.
 */
export function resolveLogitScale(value: number | undefined): number {
  if (value === undefined || !Number.isFinite(value) || value <= 0) return DEFAULT_LOGIT_SCALE;
  const scale = value <= Math.log(DEFAULT_LOGIT_SCALE) ? Math.exp(value) : value;
  return Math.min(scale, DEFAULT_LOGIT_SCALE);
}

/**
 * Reads `logit_scale_init_value` from a pack's `config.json` (the pack loader keeps only the fields it
 * needs) and turns it into a softmax scale with {@link resolveLogitScale}.
 */
export async function readLogitScale({ packDir }: { packDir: string }): Promise<number> {
  try {
    const config = JSON.parse(await readFile(path.join(packDir, "config.json"), "utf8")) as {
      logit_scale_init_value?: unknown;
    };
    const value = config.logit_scale_init_value;
    return resolveLogitScale(typeof value === "number" ? value : undefined);
  } catch {
    return DEFAULT_LOGIT_SCALE;
  }
}

/** The record kind an id names by its prefix (`img_`, `seg_`, `tri_`, `reg_`). */
export function kindOfId(id: string): RecordKind | undefined {
  return ID_KINDS[id.split("_", 1)[0] ?? ""];
}

function dot(left: Float32Array, right: Float32Array): number {
  let sum = 0;
  for (let index = 0; index < left.length; index += 1) sum += (left[index] ?? 0) * (right[index] ?? 0);
  return sum;
}

/** The normalized sum of unit vectors: the direction halfway between a text and an image query. */
function combine(vectors: readonly Float32Array[]): Float32Array {
  const [first] = vectors;
  if (first === undefined) throw new Error("unreachable: combine() without vectors");
  const sum = new Float32Array(first.length);
  for (const vector of vectors) {
    for (let index = 0; index < sum.length; index += 1) sum[index] = (sum[index] ?? 0) + (vector[index] ?? 0);
  }
  return l2Normalize(sum);
}

/** A stored hit as a result (with the OCR lines the query matched, when given a text query). */
export function toResultItem(
  kind: RecordKind,
  hit: SearchHit,
  urls: MediaUrls,
  query?: TextQuery,
): SearchResultItem {
  const fields: StoredRecord = hit.fields;
  const item: SearchResultItem = {
    kind,
    id: hit.id,
    score: hit.score,
    mediaUrl: urls.media(hit.id),
    thumbnailUrl: urls.thumbnail(hit.id),
    source: fields.source,
    createdAt: fields.createdAt,
    text: fields.text,
    ocrText: fields.ocrText ?? "",
    metadata: fields.metadata,
  };
  if (fields.kind === "video_segment") {
    item.videoId = fields.videoId;
    item.start = fields.startS;
    item.end = fields.endS;
  } else if (fields.kind === "triple") {
    item.question = fields.question;
    item.answer = fields.answer;
  } else if (fields.kind === "region") {
    item.region = {
      parentId: fields.parentId,
      parentKind: fields.parentKind,
      box: fields.box,
      label: fields.label,
      attributes: fields.attributes,
      score: fields.score,
    };
  }
  if (query !== undefined) item.textMatches = matchOcrLines({ metadata: fields.metadata, query });
  return item;
}

/**
 * Fuses the triple hits of an image-vector search and a question-vector search: a triple's score is the
 * mean of its two scores; a triple found by one search only gets the lowest score the other search
 * returned in place of the missing one (its true score there is no higher).
 */
export function fuseTripleHits(lists: readonly SearchHit[][]): SearchHit[] {
  if (lists.length === 1) return lists[0] ?? [];
  // An empty list says nothing of the missing score; 0 (orthogonal) stands in for it.
  const floors = lists.map((list) => (list.length === 0 ? 0 : Math.min(...list.map((hit) => hit.score))));
  const byId = new Map<string, { hit: SearchHit; scores: (number | undefined)[] }>();
  lists.forEach((list, listIndex) => {
    for (const hit of list) {
      const entry = byId.get(hit.id) ?? { hit, scores: lists.map(() => undefined) };
      entry.scores[listIndex] = hit.score;
      byId.set(hit.id, entry);
    }
  });
  return [...byId.values()].map(({ hit, scores }) => ({
    ...hit,
    score:
      scores.reduce<number>((sum, score, index) => sum + (score ?? floors[index] ?? 0), 0) / scores.length,
  }));
}

/** Text, image and combined search; recommendation; zero-shot classification and auto-tags. */
export class SearchService {
  readonly #store: VectorStore;
  readonly #models: SearchModels;
  readonly #media: MediaReader | undefined;
  readonly #urls: MediaUrls;
  readonly #logitScale: number | (() => Promise<number>);
  readonly #ranker: HybridRanker;
  #resolvedLogitScale: Promise<number> | undefined;

  constructor({
    store,
    models,
    media,
    urls,
    logitScale = DEFAULT_LOGIT_SCALE,
    ranker = DEFAULT_HYBRID_RANKER,
  }: SearchServiceOptions) {
    this.#store = store;
    this.#ranker = ranker;
    this.#urls = urls;
    this.#models = models;
    this.#media = media;
    this.#logitScale = logitScale;
  }

  /** The softmax scale of zero-shot classification. */
  logitScale(): Promise<number> {
    const source = this.#logitScale;
    this.#resolvedLogitScale ??= typeof source === "number" ? Promise.resolve(source) : source();
    return this.#resolvedLogitScale;
  }

  /**
   * Searches the tenant's items with a text, an image, or both, in `mode` (see {@link SearchOptions.mode}).
   * Dense: with both, the query vector is the normalized sum of the two unit vectors; triples are then
   * searched by image vector (image query) and question vector (text query) and the two fused. Text: BM25
   * of the query's text, every quoted phrase required. Hybrid: the dense search and the BM25 search fused
   * by the ranker in one store call per kind (per vector field for triples). Each kind returns its `topK`
   * best, and the union is cut to the `topK` best by score.
   *
   * @throws ValidationError for a missing query, a mode the query cannot take, unknown kinds, `topK` out
   *   of range or an invalid filter.
   * @throws NotFoundError when an image id names no item of the caller's tenant.
   */
  async search({ tenant, text, image, mode, kinds, topK, filter }: SearchOptions): Promise<SearchResponse> {
    const resolvedKinds = resolveKinds(kinds);
    const k = resolveTopK(topK);
    const spec = this.#checkFilter({ tenant, filter, kinds: resolvedKinds });
    const trimmed = text?.trim();
    const hasText = trimmed !== undefined && trimmed.length > 0;
    if (!hasText && image === undefined) {
      throw new ValidationError("A search needs a text, an image, or both; got neither.");
    }
    const resolvedMode = resolveSearchMode({ mode, hasText, hasImage: image !== undefined });
    const query = hasText ? parseTextQuery(trimmed) : undefined;
    if (resolvedMode === "text") {
      return this.#searchText({
        tenant,
        query: query as TextQuery,
        kinds: resolvedKinds,
        topK: k,
        filter: spec,
      });
    }
    const [textVector, imageVector] = await Promise.all([
      hasText ? this.embedText(trimmed) : undefined,
      image === undefined ? undefined : this.embedImage({ tenant, image }),
    ]);
    return this.#searchVectors({
      tenant,
      textVector,
      imageVector,
      kinds: resolvedKinds,
      topK: k,
      filter: spec,
      excludeId: undefined,
      ...(query === undefined ? {} : { query }),
      hybrid: resolvedMode === "hybrid",
    });
  }

  /**
   * Items like the one given by id: its media is embedded again and searched for, and the item itself is
   * left out of the results.
   *
   * @throws NotFoundError when the id names no item of the caller's tenant.
   */
  async similar({ tenant, id, kinds, topK, filter }: SimilarOptions): Promise<SearchResponse> {
    const resolvedKinds = resolveKinds(kinds);
    const k = resolveTopK(topK);
    const spec = this.#checkFilter({ tenant, filter, kinds: resolvedKinds });
    const imageVector = await this.embedImage({ tenant, image: { id } });
    return this.#searchVectors({
      tenant,
      imageVector,
      kinds: resolvedKinds,
      topK: k,
      filter: spec,
      excludeId: id,
    });
  }

  /**
   * Zero-shot labels (softmax over the image's similarity to each label prompt, scaled by
   * {@link SearchService.logitScale}) and auto-tags (a similarity-weighted vote of the `k` nearest
   * tagged images and segments; the image itself, when given by id, does not vote).
   */
  async classify({
    tenant,
    image,
    labels = [],
    template = DEFAULT_LABEL_TEMPLATE,
    autoTag,
  }: ClassifyOptions): Promise<ClassifyResponse> {
    if (labels.length === 0 && autoTag === undefined) {
      throw new ValidationError("classify needs labels, autoTag, or both; got neither.");
    }
    if (labels.length > MAX_CLASSIFY_LABELS) {
      throw new ValidationError(
        `classify takes at most ${MAX_CLASSIFY_LABELS} labels; got ${labels.length}.`,
      );
    }
    for (const label of labels) {
      if (label.trim().length === 0 || label.length > MAX_LABEL_LENGTH) {
        throw new ValidationError(
          `Each label must be 1–${MAX_LABEL_LENGTH} characters; got ${JSON.stringify(label.slice(0, 80))}.`,
        );
      }
    }
    if (!template.includes("{label}")) {
      throw new ValidationError(
        `The label template must contain {label}; got ${JSON.stringify(template.slice(0, 80))}.`,
      );
    }
    const k = autoTag === undefined ? 0 : resolveTopK(autoTag.k ?? DEFAULT_AUTO_TAG_K);
    const imageVector = await this.embedImage({ tenant, image });

    let labelScores: LabelScore[] = [];
    if (labels.length > 0) {
      const prompts = labels.map((label) => template.replaceAll("{label}", label.trim()));
      const textVectors = await this.#models.textEmbedder.embed({ texts: prompts });
      const scale = await this.logitScale();
      const probabilities = softmax(textVectors.map((vector) => dot(imageVector, vector) * scale));
      labelScores = labels
        .map((label, index) => ({ label, score: probabilities[index] ?? 0 }))
        .sort((left, right) => right.score - left.score);
    }

    let tags: TagScore[] = [];
    if (k > 0) {
      const selfId = "id" in image ? image.id : undefined;
      const tagged: FilterSpec = [{ field: "metadata.tags", op: "exists" }];
      const neighbours = (
        await Promise.all(
          (["image", "video_segment"] as const).map((kind) =>
            this.#store.search({ kind, tenant, vector: imageVector, topK: k + 1, filter: tagged }),
          ),
        )
      )
        .flat()
        .filter((hit) => hit.id !== selfId)
        .sort((left, right) => right.score - left.score)
        .slice(0, k);
      tags = voteTags(neighbours);
    }
    return { labels: labelScores, tags };
  }

  /** The unit text embedding of a query. */
  async embedText(text: string): Promise<Float32Array> {
    const [vector] = await this.#models.textEmbedder.embed({ texts: [text] });
    if (vector === undefined) throw new Error("unreachable: the text embedder returned no vector");
    return vector;
  }

  /**
   * The unit image embedding of a query image: the bytes embedded, or the stored media of an item
   * re-embedded (Milvus returns no vectors from a query). A video segment is embedded from its keyframe, a
   * triple from its image.
   *
   * @throws NotFoundError when the id names no item of the caller's tenant.
   */
  /** The encoded bytes of a query image: as sent, or a stored item's image (a segment's keyframe) of the caller's tenant. */
  async imageBytes({ tenant, image }: { tenant: string; image: ImageQuery }): Promise<Uint8Array> {
    return "bytes" in image ? image.bytes : await this.#readItemImage({ tenant, id: image.id });
  }

  async embedImage({ tenant, image }: { tenant: string; image: ImageQuery }): Promise<Float32Array> {
    const bytes = await this.imageBytes({ tenant, image });
    const [vector] = await this.#models.imageEmbedder.embed({ images: [bytes] });
    if (vector === undefined) throw new Error("unreachable: the image embedder returned no vector");
    return vector;
  }

  /** The stored record with this id, of the caller's tenant. */
  async getItem({ tenant, id }: { tenant: string; id: string }): Promise<StoredRecord> {
    const kind = isValidRecordId(id) ? kindOfId(id) : undefined;
    if (kind === undefined) {
      throw new ValidationError(
        `${JSON.stringify(id.slice(0, 80))} is not an item id; ids start with img_, seg_ or tri_ (a video's segments have seg_ ids).`,
        { context: { id: id.slice(0, 80) } },
      );
    }
    const [record] = await this.#store.get({ kind, tenant, ids: [id] });
    if (record === undefined) {
      throw new NotFoundError(`No item with id ${id}.`, { context: { id } });
    }
    return record;
  }

  async #readItemImage({ tenant, id }: { tenant: string; id: string }): Promise<Uint8Array> {
    const record = await this.getItem({ tenant, id });
    const ref = record.kind === "video_segment" ? record.keyframeRef : record.mediaRef;
    if (ref.length === 0) {
      throw new ValidationError(`Item ${id} has no image to search with (a segment without a keyframe).`, {
        context: { id },
      });
    }
    if (this.#media === undefined) {
      throw new ValidationError(
        `Searching by an item id needs the blob store, which this server does not have; send the image itself.`,
        { context: { id } },
      );
    }
    return this.#media.read({ ref });
  }

  #checkFilter({
    tenant,
    filter,
    kinds,
  }: {
    tenant: string;
    filter: unknown;
    kinds: readonly RecordKind[];
  }): FilterSpec | undefined {
    if (filter === undefined) return undefined;
    const spec = parseFilterSpec(filter);
    // Builds each kind's expression now, so a field one of the kinds lacks fails before any embedding.
    for (const kind of kinds) buildFilterExpression({ tenant, filter: spec, kind });
    return spec;
  }

  /** BM25 over each kind's records, every quoted phrase required; merged by score. */
  async #searchText({
    tenant,
    query,
    kinds,
    topK,
    filter,
  }: {
    tenant: string;
    query: TextQuery;
    kinds: readonly RecordKind[];
    topK: number;
    filter: FilterSpec | undefined;
  }): Promise<SearchResponse> {
    const perKind = await Promise.all(
      kinds.map(async (kind) => {
        const hits = (await this.#store.textSearch({
          kind,
          tenant,
          text: query.text,
          ...(query.phrases.length === 0 ? {} : { phrases: query.phrases }),
          topK,
          ...(filter === undefined ? {} : { filter }),
        })) as SearchHit[];
        return hits.map((hit) => toResultItem(kind, hit, this.#urls, query));
      }),
    );
    const items = perKind
      .flat()
      .sort((left, right) => right.score - left.score)
      .slice(0, topK);
    return { items };
  }

  /**
   * One hybrid search, except that a query naming identifiers (error codes such as `E1234`,
   * `ERR_CONN_REFUSED`) is a lookup: an embedding ranks an unseen code no better than noise, and fused with
   * equal weight it lets items the embedding favours for any query outrank the one that shows the code.
   * So the items containing every identifier come first, then what BM25 finds for the query (OCR may have
   * misread the code, and the rest of the query still names the item), then the rest of the hybrid
   * ranking; each tier is scored below the one before, so merged lists keep that order.
   */
  async #hybridIdentifiersFirst(
    base: Omit<HybridSearchRequest<RecordKind>, "text" | "phrases" | "ranker">,
    query: TextQuery,
  ): Promise<SearchHit[]> {
    const phrasesOf = (phrases: readonly string[]) => (phrases.length === 0 ? {} : { phrases });
    const hybrid = (phrases: readonly string[]) =>
      this.#store.hybridSearch({
        ...base,
        text: query.text,
        ...phrasesOf(phrases),
        ranker: this.#ranker,
      }) as Promise<SearchHit[]>;
    const identifiers = query.identifiers.filter((identifier) => !query.phrases.includes(identifier));
    if (identifiers.length === 0) return hybrid(query.phrases);
    const tiers: SearchHit[][] = [await hybrid([...query.phrases, ...identifiers])];
    if ((tiers[0] as SearchHit[]).length < base.topK) {
      const { vectorField: _field, vector: _vector, ...textBase } = base;
      tiers.push(
        (await this.#store.textSearch({
          ...textBase,
          text: query.text,
          ...phrasesOf(query.phrases),
        })) as SearchHit[],
        await hybrid(query.phrases),
      );
    }
    // BM25 scores are on another scale: no tier may score above the best fused (hybrid) score.
    const ceiling = Math.max(...[tiers[0], tiers[2]].map((tier) => tier?.[0]?.score ?? 0));
    return stackTiers(tiers, base.topK, ceiling);
  }

  async #searchVectors({
    tenant,
    textVector,
    imageVector,
    kinds,
    topK,
    filter,
    excludeId,
    query,
    hybrid = false,
  }: {
    tenant: string;
    textVector?: Float32Array;
    imageVector?: Float32Array;
    kinds: readonly RecordKind[];
    topK: number;
    filter: FilterSpec | undefined;
    excludeId: string | undefined;
    /** The text query, for the BM25 side of a hybrid search and for `textMatches`. */
    query?: TextQuery;
    /** Fuse each dense search with BM25 of `query` (needs `query`). */
    hybrid?: boolean;
  }): Promise<SearchResponse> {
    const textSide = hybrid && query !== undefined ? query : undefined;
    const searchDense = <K extends RecordKind>(request: {
      kind: K;
      vector: Float32Array;
      topK: number;
      filter: FilterSpec | undefined;
      vectorField?: "image_vector" | "question_vector";
    }): Promise<SearchHit[]> => {
      const base = {
        kind: request.kind,
        tenant,
        vector: request.vector,
        topK: request.topK,
        ...(request.filter === undefined ? {} : { filter: request.filter }),
        ...(request.vectorField === undefined ? {} : { vectorField: request.vectorField as never }),
      };
      if (textSide === undefined) return this.#store.search(base) as Promise<SearchHit[]>;
      return this.#hybridIdentifiersFirst(base, textSide);
    };
    const queryVectors = [textVector, imageVector].filter((vector) => vector !== undefined);
    const combined = combine(queryVectors);
    // One extra hit per kind makes up for the excluded item.
    const limit = excludeId === undefined ? topK : topK + 1;
    const perKind = await Promise.all(
      kinds.map(async (kind): Promise<SearchResultItem[]> => {
        let hits: SearchHit[];
        if (kind === "triple") {
          const searches: Promise<SearchHit[]>[] = [];
          if (imageVector !== undefined) {
            searches.push(
              searchDense({ kind, vector: imageVector, topK: limit, filter, vectorField: "image_vector" }),
            );
          }
          if (textVector !== undefined) {
            searches.push(
              searchDense({ kind, vector: textVector, topK: limit, filter, vectorField: "question_vector" }),
            );
          }
          hits = fuseTripleHits(await Promise.all(searches));
        } else {
          hits = await searchDense({ kind, vector: combined, topK: limit, filter });
        }
        return hits.map((hit) => toResultItem(kind, hit, this.#urls, query));
      }),
    );
    const items = perKind
      .flat()
      .filter((item) => item.id !== excludeId)
      .sort((left, right) => right.score - left.score)
      .slice(0, topK);
    return { items };
  }
}

/**
 * Concatenates ranked tiers, each hit once (its first tier), scaling each tier's scores below the last
 * score kept so far (the first at most `ceiling`) while keeping its order and relative spacing.
 */
export function stackTiers(tiers: readonly SearchHit[][], topK: number, ceiling?: number): SearchHit[] {
  const stacked: SearchHit[] = [];
  const seen = new Set<string>();
  for (const tier of tiers) {
    const fresh = tier.filter((hit) => !seen.has(hit.id));
    const floor = stacked.at(-1)?.score ?? (ceiling === undefined ? undefined : ceiling / 0.999);
    const best = fresh[0]?.score;
    const scale =
      floor === undefined || best === undefined || best < floor ? 1 : best > 0 ? (floor * 0.999) / best : 0;
    for (const hit of fresh) {
      seen.add(hit.id);
      stacked.push(scale === 1 ? hit : { ...hit, score: hit.score * scale });
    }
    if (stacked.length >= topK) break;
  }
  return stacked.slice(0, topK);
}

/** A similarity-weighted vote of the neighbours' `metadata.tags`. */
export function voteTags(neighbours: readonly SearchHit[]): TagScore[] {
  const weightOf = (hit: SearchHit) => Math.max(hit.score, 0);
  const total = neighbours.reduce((sum, hit) => sum + weightOf(hit), 0);
  const votes = new Map<string, { weight: number; support: number }>();
  for (const hit of neighbours) {
    const tags = hit.fields.metadata.tags;
    if (!Array.isArray(tags)) continue;
    const unique = new Set(tags.filter((tag): tag is string => typeof tag === "string" && tag.length > 0));
    for (const tag of unique) {
      const vote = votes.get(tag) ?? { weight: 0, support: 0 };
      vote.weight += weightOf(hit);
      vote.support += 1;
      votes.set(tag, vote);
    }
  }
  return [...votes.entries()]
    .map(([tag, { weight, support }]) => ({ tag, score: total > 0 ? weight / total : 0, support }))
    .sort((left, right) => right.score - left.score || right.support - left.support);
}
