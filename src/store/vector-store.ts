/**
 * The vector store port: {@link VectorStore}, the records it writes, the rows it reads back and the
 * arguments of each call. The Milvus adapter is in `milvus-vector-store.ts`.
 *
 * Every call is scoped to one tenant, which the caller takes from the server's identity of the caller;
 * an adapter must keep one tenant's ids and filters from ever reaching another tenant's rows.
 */
import type { VECTOR_FIELDS } from "./collections.ts";
import type { FilterSpec } from "./filter.ts";
import type { RecordKind } from "./record-id.ts";

/** An embedding. */
export type Vector = readonly number[] | Float32Array;

/** Fields every record carries. */
export interface RecordBase {
  /** Deterministic id, usually from `recordId()`; upserting the same id replaces the row. */
  id: string;
  /** Model pack that produced the vectors. */
  modelId: string;
  /** Where the media lives (blob store key or URL). */
  mediaRef: string;
  /** How the record arrived (`upload`, `url`, `jsonl`, …). */
  source: string;
  /** Milliseconds since the Unix epoch; the time of the write when absent. */
  createdAt?: number;
  /** Captions and tags, searchable with the `contains` filter. */
  text?: string;
  /** Free-form JSON object, filterable as `metadata.<key>`. */
  metadata?: Record<string, unknown>;
  /**
   * Text read in the media by OCR, lines joined by newlines (the lines with their boxes live in
   * `metadata.ocr`). Searched by BM25 together with `text` (and a triple's question and answer).
   */
  ocrText?: string;
}

/** An indexed image. */
export interface ImageRecord extends RecordBase {
  vector: Vector;
}

/** A time span of a video, embedded from its keyframe(s). */
export interface VideoSegmentRecord extends RecordBase {
  vector: Vector;
  videoId: string;
  startS: number;
  endS: number;
  /** Where the keyframe image lives. */
  keyframeRef?: string;
}

/** A question about an image with its answer, searchable by image and by question. */
export interface TripleRecord extends RecordBase {
  imageVector: Vector;
  questionVector: Vector;
  question: string;
  answer: string;
}

/** A box normalized to [0, 1] of an image: x to the right, y downwards. */
export interface RegionBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/**
 * An object found in an image or a video segment's keyframe by the pack's detector: its box, class,
 * attributes and score, embedded in the shared space. It carries its parent's text and metadata, so the
 * parent's filters find it.
 */
export interface RegionRecord extends RecordBase {
  vector: Vector;
  /** The item the region is part of. */
  parentId: string;
  parentKind: "image" | "video_segment";
  /** Normalized to the parent's image (the keyframe of a segment). */
  box: RegionBox;
  /** The detector's class, e.g. `circle`. */
  label: string;
  /** Attribute name → value, e.g. `{ color: "red", size: "large" }`. */
  attributes: Record<string, string>;
  /** Detection score in [0, 1]. */
  score: number;
}

/** The record type written for each kind. */
export interface RecordByKind {
  image: ImageRecord;
  video_segment: VideoSegmentRecord;
  triple: TripleRecord;
  region: RegionRecord;
}

/** Fields of every stored record, as read back (vectors are not returned). */
export interface StoredBase {
  id: string;
  tenant: string;
  modelId: string;
  mediaRef: string;
  source: string;
  createdAt: number;
  text: string;
  metadata: Record<string, unknown>;
  /** Text read in the media by OCR; `""` when none was read (or the item was never read). */
  ocrText: string;
}

/** A stored image. */
export interface StoredImage extends StoredBase {
  kind: "image";
}

/** A stored video segment. */
export interface StoredVideoSegment extends StoredBase {
  kind: "video_segment";
  videoId: string;
  startS: number;
  endS: number;
  keyframeRef: string;
}

/** A stored question-answer triple. */
export interface StoredTriple extends StoredBase {
  kind: "triple";
  question: string;
  answer: string;
}

/** A stored region of an image or a video segment. */
export interface StoredRegion extends StoredBase {
  kind: "region";
  parentId: string;
  parentKind: "image" | "video_segment";
  box: RegionBox;
  label: string;
  attributes: Record<string, string>;
  score: number;
}

/** The stored type read back for each kind. */
export interface StoredByKind {
  image: StoredImage;
  video_segment: StoredVideoSegment;
  triple: StoredTriple;
  region: StoredRegion;
}

/** A stored record of any kind. */
export type StoredRecord = StoredByKind[RecordKind];

/** The vector fields a search of `kind` may use. */
export type VectorFieldOf<K extends RecordKind> = (typeof VECTOR_FIELDS)[K][number];

/** One search result. Scores rank larger first (COSINE and IP). */
export interface SearchHit<K extends RecordKind = RecordKind> {
  id: string;
  score: number;
  fields: StoredByKind[K];
}

/** Arguments of {@link VectorStore.upsert}. */
export interface UpsertRequest<K extends RecordKind> {
  kind: K;
  /** The caller's tenant, from the server's identity of the caller. */
  tenant: string;
  records: readonly RecordByKind[K][];
}

/** Outcome of {@link VectorStore.upsert}. */
export interface UpsertResult {
  /** Rows written (records with the same id in one request count once; the last one wins). */
  upserted: number;
}

/** Arguments of {@link VectorStore.search}. */
export interface SearchRequest<K extends RecordKind> {
  kind: K;
  tenant: string;
  vector: Vector;
  /** Number of hits wanted, 1–{@link MAX_TOP_K}. */
  topK: number;
  filter?: FilterSpec;
  /** Vector field to search; `vector`, or `image_vector` for triples, when absent. */
  vectorField?: VectorFieldOf<K>;
}

/**
 * How a text and a dense ranking are fused into one: reciprocal rank fusion (`score = Σ 1/(k + rank)`),
 * or a weighted sum of the two lists' normalized scores.
 */
export type HybridRanker = { type: "rrf"; k: number } | { type: "weighted"; dense: number; text: number };

/** Arguments of {@link VectorStore.textSearch}: BM25 over the record's searchable text. */
export interface TextSearchRequest<K extends RecordKind> {
  kind: K;
  tenant: string;
  /** The query text as the caller wrote it, analyzed like the stored text (BM25 terms). */
  text: string;
  /**
   * Phrases that must each occur in the searchable text, e.g. the quoted parts of a query: their letters
   * and digits in order, case-insensitive (NFKC); spaces and punctuation do not count, since OCR drops
   * or changes them (but each word without inner punctuation must be a whole word of the text). A hit lacking one is dropped; the store looks
   * further until `topK` hits that have them all are found or no row is left.
   */
  phrases?: readonly string[];
  /** Number of hits wanted, 1–{@link MAX_TOP_K}. */
  topK: number;
  filter?: FilterSpec;
}

/** Arguments of {@link VectorStore.hybridSearch}: a dense and a BM25 search fused by `ranker`. */
export interface HybridSearchRequest<K extends RecordKind> extends SearchRequest<K> {
  /** The query text for the BM25 side. */
  text: string;
  /** As in {@link TextSearchRequest.phrases}: every hit must contain each phrase. */
  phrases?: readonly string[];
  ranker: HybridRanker;
}

/** One record's new OCR reading, for {@link VectorStore.update}. */
export interface RecordPatch {
  id: string;
  /** Replaces `ocrText` (and so the searchable text). */
  ocrText?: string;
  /** Replaces the whole `metadata` object. */
  metadata?: Record<string, unknown>;
}

/** Arguments of {@link VectorStore.update}. */
export interface UpdateRequest {
  kind: RecordKind;
  tenant: string;
  /** At most {@link MAX_IDS_PER_CALL}; ids the tenant does not have are skipped. */
  patches: readonly RecordPatch[];
}

/** Outcome of {@link VectorStore.update}. */
export interface UpdateResult {
  /** Rows rewritten. */
  updated: number;
}

/** Arguments of {@link VectorStore.query}. */
export interface QueryRequest<K extends RecordKind> {
  kind: K;
  tenant: string;
  filter?: FilterSpec;
  /** Most rows returned, 1–{@link MAX_QUERY_LIMIT}. */
  limit: number;
}

/** Arguments of {@link VectorStore.get}. */
export interface GetRequest<K extends RecordKind> {
  kind: K;
  tenant: string;
  /** Ids to fetch, at most {@link MAX_IDS_PER_CALL}; ids of other tenants return nothing. */
  ids: readonly string[];
}

/** Arguments of {@link VectorStore.delete}: ids, a filter, or both (both must match). */
export interface DeleteRequest<K extends RecordKind> {
  kind: K;
  tenant: string;
  ids?: readonly string[];
  filter?: FilterSpec;
}

/** Outcome of {@link VectorStore.delete}. */
export interface DeleteResult {
  /** Rows deleted, as reported by Milvus. */
  deleted: number;
}

/** Arguments of {@link VectorStore.count}. */
export interface CountRequest {
  kind: RecordKind;
  tenant: string;
}

/** Arguments of {@link VectorStore.list}. */
export interface ListRequest<K extends RecordKind> {
  kind: K;
  tenant: string;
  filter?: FilterSpec;
  /** Most rows returned, 1–{@link MAX_LIST_LIMIT}. */
  limit: number;
  /** Only ids after this one (in code-unit order): the `nextAfter` of the previous page. */
  after?: string;
}

/** One page of {@link VectorStore.list}. */
export interface ListPage<K extends RecordKind> {
  /** Rows in ascending id order. */
  rows: StoredByKind[K][];
  /** The `after` of the next page; absent when this page is the last. */
  nextAfter?: string;
}

/** Outcome of {@link VectorStore.health}. */
export interface StoreHealth {
  ok: boolean;
  /** Why the store is not healthy. */
  reason?: string;
}

/**
 * The vector store port. Every method is scoped to `tenant`, which must come from the server's
 * identity of the caller, never from a request body.
 */
export interface VectorStore {
  /** Writes records, replacing rows with the same id. Validates every record before writing any. */
  upsert<K extends RecordKind>(request: UpsertRequest<K>): Promise<UpsertResult>;
  /** Nearest neighbours of `vector`, best first. */
  search<K extends RecordKind>(request: SearchRequest<K>): Promise<SearchHit<K>[]>;
  /**
   * BM25 hits of `text` over each record's searchable text (its `text`, `ocrText`, and a triple's
   * question and answer), best first; with `phrases`, only hits containing every phrase.
   */
  textSearch<K extends RecordKind>(request: TextSearchRequest<K>): Promise<SearchHit<K>[]>;
  /**
   * The dense search of `vector` and the BM25 search of `text` fused by `ranker`, best first; scores
   * are the ranker's. Same results on Milvus Lite and a Milvus server.
   */
  hybridSearch<K extends RecordKind>(request: HybridSearchRequest<K>): Promise<SearchHit<K>[]>;
  /**
   * Rewrites stored rows with new OCR text and/or metadata, keeping their vectors and every other
   * field. A failure part-way leaves each row either as it was or as patched.
   */
  update(request: UpdateRequest): Promise<UpdateResult>;
  /** Rows matching a filter, in no particular order. */
  query<K extends RecordKind>(request: QueryRequest<K>): Promise<StoredByKind[K][]>;
  /**
   * One page of the tenant's rows of `kind` matching `filter`, in ascending id order. Paging with
   * `nextAfter` visits every row that exists throughout exactly once.
   */
  list<K extends RecordKind>(request: ListRequest<K>): Promise<ListPage<K>>;
  /** Rows with the given ids. */
  get<K extends RecordKind>(request: GetRequest<K>): Promise<StoredByKind[K][]>;
  /** Deletes rows by id and/or filter. */
  delete<K extends RecordKind>(request: DeleteRequest<K>): Promise<DeleteResult>;
  /** Number of the tenant's rows of `kind`. */
  count(request: CountRequest): Promise<number>;
  /** Whether the store answers and its collections are loaded. Never throws. */
  health(): Promise<StoreHealth>;
  /** Waits for queued writes, then closes the connection. */
  close(): Promise<void>;
}

/** Most hits one search returns. */
export const MAX_TOP_K = 1024;
/** Most rows one query returns. */
export const MAX_QUERY_LIMIT = 16_384;
/** Most rows one list page returns. */
export const MAX_LIST_LIMIT = 1000;
/** Most ids one get or delete takes. */
export const MAX_IDS_PER_CALL = 1000;
/** Most records one upsert takes. */
export const MAX_RECORDS_PER_UPSERT = 100_000;
