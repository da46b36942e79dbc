/**
 * The Milvus adapter of the vector store port: {@link MilvusVectorStore}, built by {@link createVectorStore}.
 *
 * Every call is scoped to one tenant: the adapter writes the tenant into each row, keys each row by
 * `<tenant>/<id>` (so an upsert can only replace a row of its own tenant), and ANDs
 * `tenant == "<tenant>"` into every search, query, get, delete and count, so one tenant's ids and
 * filters can never reach another tenant's rows. Writes to each collection go through one queue,
 * since Milvus Lite supports a single writer per collection.
 */
import type { HybridSearchSingleReq, MilvusClient, RowData } from "@zilliz/milvus2-sdk-node";
import { LoadState } from "@zilliz/milvus2-sdk-node";
import { StoreError, ValidationError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import {
  assertValidCollectionPrefix,
  collectionNames,
  composeSearchText,
  DEFAULT_COLLECTION_PREFIX,
  ensureCollections,
  type IndexType,
  KEY_ORDER_PARAMS,
  METADATA_MAX_BYTES,
  type MetricType,
  primaryKey,
  SEARCH_SPARSE_FIELD,
  SEARCH_TEXT_FIELD,
  scalarFieldNames,
  searchFieldNames,
  shadowedFieldNames,
  spaceScripts,
  toWritableRow,
  VARCHAR_MAX_BYTES,
  VECTOR_FIELDS,
  writtenFieldNames,
} from "./collections.ts";
import { assertValidTenant, buildFilterExpression, quoteExpressionString } from "./filter.ts";
import { readActivePointer, syncLiveAliases } from "./live-pointer.ts";
import {
  callMilvus,
  createMilvusClient,
  DEFAULT_MILVUS_LONG_TIMEOUT_MS,
  DEFAULT_MILVUS_TIMEOUT_MS,
  type MilvusConnectionOptions,
  redactAddresses,
} from "./milvus-client.ts";
import { isValidRecordId, RECORD_ID_PATTERN, RECORD_KINDS, type RecordKind } from "./record-id.ts";
import { SerialQueue } from "./serial-queue.ts";
import {
  type CountRequest,
  type DeleteRequest,
  type DeleteResult,
  type GetRequest,
  type HybridRanker,
  type HybridSearchRequest,
  type ImageRecord,
  type ListPage,
  type ListRequest,
  MAX_IDS_PER_CALL,
  MAX_LIST_LIMIT,
  MAX_QUERY_LIMIT,
  MAX_RECORDS_PER_UPSERT,
  MAX_TOP_K,
  type QueryRequest,
  type RecordByKind,
  type RegionBox,
  type RegionRecord,
  type SearchHit,
  type SearchRequest,
  type StoredBase,
  type StoredByKind,
  type StoredRecord,
  type StoreHealth,
  type TextSearchRequest,
  type TripleRecord,
  type UpdateRequest,
  type UpdateResult,
  type UpsertRequest,
  type UpsertResult,
  type VectorStore,
  type VideoSegmentRecord,
} from "./vector-store.ts";

/** Rows per upsert call. */
export const DEFAULT_UPSERT_BATCH_SIZE = 256;
/** Largest embedding dimension Milvus supports. */
export const MAX_DIMENSION = 32_768;
/** Smallest HNSW search breadth; Milvus requires ef >= topK, and a floor keeps recall up for small k. */
const HNSW_MIN_EF = 64;
/**
 * Default of {@link MilvusVectorStoreOptions.filteredSearchBreadth}. A segment of at most this many rows
 * is walked whole by a filtered HNSW search, which is then exact.
 */
export const DEFAULT_FILTERED_SEARCH_BREADTH = 2048;
/** Widest HNSW search breadth tried before scanning the filtered set exactly. */
const HNSW_MAX_EF = 16_384;
/** Factor by which a short search widens `ef` before it tries again. */
const EF_GROWTH = 4;
/**
 * Default of {@link MilvusVectorStoreOptions.exactScanMaxRows}: when an index search comes back short,
 * filtered sets of at most this many rows are searched exactly, their vectors read and scored here.
 */
export const DEFAULT_EXACT_SCAN_MAX_ROWS = 2048;
/** Rows per page when a whole filtered set must be scanned. */
const EXACT_SCAN_PAGE_ROWS = 4096;
/** Most phrases one text or hybrid search takes. */
export const MAX_PHRASES = 16;
/** Longest phrase, in UTF-16 code units. */
export const MAX_PHRASE_LENGTH = 1024;
/** Longest query text of a text or hybrid search, in UTF-8 bytes. */
export const MAX_QUERY_TEXT_BYTES = 8192;
/** Widest search Milvus answers (its largest `limit`); a phrase search widens up to it, then scans. */
const MAX_SEARCH_LIMIT = 16_384;
/** Factor by which a phrase search that came back short of matching hits widens before it tries again. */
const PHRASE_GROWTH = 4;
/** Latest `createdAt` accepted (the largest JavaScript date). */
const MAX_TIMESTAMP_MS = 8.64e15;

/** Options of {@link MilvusVectorStore}. */
export interface MilvusVectorStoreOptions {
  client: MilvusClient;
  collectionPrefix?: string;
  /** The collection of each kind; {@link collectionName} of the prefix when absent. */
  collections?: Readonly<Record<RecordKind, string>>;
  dimension: number;
  metric?: MetricType;
  indexType?: IndexType;
  timeoutMs?: number;
  /**
   * Deadline of calls whose work grows with the rows they touch: counts, flushes, exact scans of a
   * filtered set. Milvus Lite evaluates these row by row in Python.
   */
  longTimeoutMs?: number;
  /**
   * Largest filtered set searched exactly (its vectors read and scored by the store) when the index search
   * comes back with fewer than topK hits. Larger sets are searched again with a wider breadth.
   */
  exactScanMaxRows?: number;
  /**
   * Smallest HNSW search breadth (`ef`) of a search under a metadata filter. A filtered HNSW search keeps
   * only the rows that pass within a candidate list of `ef` entries, so under a selective filter a narrow
   * one misses near rows and comes back short; with `ef` at least a segment's size it walks the segment
   * whole. Milvus Lite spends far longer evaluating the filter than walking the graph.
   */
  filteredSearchBreadth?: number;
  /** Rows per upsert call. */
  batchSize?: number;
  /**
   * Rows written to a collection after which the store flushes it. Milvus Lite searches unflushed rows
   * by brute force, far slower than once flushed (see bench/README.md, Search), so bulk ingests are flushed
   * as they go.
   */
  flushEveryRows?: number;
  /** For error messages. */
  address?: string;
  logger?: Logger;
}

type Row = Record<string, unknown>;
type VarcharColumn = keyof typeof VARCHAR_MAX_BYTES;

function byteLength(value: string): number {
  return Buffer.byteLength(value, "utf8");
}

function recordLabel(index: number, record: { id?: unknown }): string {
  return `Record ${index} (id ${JSON.stringify(String(record.id).slice(0, 80))})`;
}

/** Default of {@link MilvusVectorStoreOptions.flushEveryRows}. */
export const DEFAULT_FLUSH_EVERY_ROWS = 2048;

/** The {@link VectorStore} backed by Milvus or Milvus Lite. Build it with {@link createVectorStore}. */
export class MilvusVectorStore implements VectorStore {
  readonly #client: MilvusClient;
  readonly #names: Readonly<Record<RecordKind, string>>;
  readonly #dimension: number;
  readonly #metric: MetricType;
  readonly #timeoutMs: number;
  readonly #longTimeoutMs: number;
  readonly #exactScanMaxRows: number;
  readonly #filteredSearchBreadth: number;
  readonly #batchSize: number;
  readonly #address: string | undefined;
  readonly #logger: Logger | undefined;
  readonly #writeQueues = new Map<string, SerialQueue>();
  readonly #flushEveryRows: number;
  readonly #unflushedRows = new Map<string, number>();
  #closing: Promise<void> | undefined;

  constructor({
    client,
    collectionPrefix = DEFAULT_COLLECTION_PREFIX,
    collections,
    dimension,
    metric = "COSINE",
    timeoutMs = DEFAULT_MILVUS_TIMEOUT_MS,
    longTimeoutMs = Math.max(timeoutMs, DEFAULT_MILVUS_LONG_TIMEOUT_MS),
    exactScanMaxRows = DEFAULT_EXACT_SCAN_MAX_ROWS,
    filteredSearchBreadth = DEFAULT_FILTERED_SEARCH_BREADTH,
    batchSize = DEFAULT_UPSERT_BATCH_SIZE,
    flushEveryRows = DEFAULT_FLUSH_EVERY_ROWS,
    address,
    logger,
  }: MilvusVectorStoreOptions) {
    this.#filteredSearchBreadth = filteredSearchBreadth;
    this.#longTimeoutMs = longTimeoutMs;
    this.#exactScanMaxRows = exactScanMaxRows;
    this.#flushEveryRows = flushEveryRows;
    this.#client = client;
    this.#names = collections ?? collectionNames({ prefix: collectionPrefix });
    this.#dimension = dimension;
    this.#metric = metric;
    this.#timeoutMs = timeoutMs;
    this.#batchSize = batchSize;
    this.#address = address;
    this.#logger = logger;
  }

  /**
   * Counts rows written to a collection and flushes it once {@link MilvusVectorStoreOptions.flushEveryRows}
   * have gathered. Runs inside the collection's write queue. A failed flush is logged, not thrown: the rows
   * are written either way, only searches over them stay slower until the next flush.
   */
  async #flushWhenDue(collection: string, written: number): Promise<void> {
    const pending = (this.#unflushedRows.get(collection) ?? 0) + written;
    if (pending < this.#flushEveryRows) {
      this.#unflushedRows.set(collection, pending);
      return;
    }
    this.#unflushedRows.set(collection, 0);
    try {
      await this.#longCall(`flush ${collection}`, () =>
        this.#client.flushSync({ collection_names: [collection], timeout: this.#longTimeoutMs }),
      );
      this.#logger?.debug({ collection, rows: pending }, "flushed collection");
    } catch (error) {
      this.#logger?.warn(
        { err: error, collection },
        "flush after upserts failed; searches stay slower until the next one",
      );
    }
  }

  /** The collection this store reads and writes for each kind. */
  get collections(): Readonly<Record<RecordKind, string>> {
    return this.#names;
  }

  /** Embedding dimension of the collections. */
  get dimension(): number {
    return this.#dimension;
  }

  /**
   * Flushes the collections of every kind, in their write queues, so their rows are searched through the index
   * (Milvus Lite searches unflushed rows by brute force). A bulk copy calls it before its rows go live.
   */
  async flush(): Promise<void> {
    this.#assertOpen();
    for (const collection of Object.values(this.#names)) {
      await this.#queueFor(collection).run(async () => {
        await this.#longCall(`flush ${collection}`, () =>
          this.#client.flushSync({ collection_names: [collection], timeout: this.#longTimeoutMs }),
        );
        this.#unflushedRows.set(collection, 0);
      });
    }
  }

  /**
   * Every tenant with rows of `kind`, in key order. One short query per tenant: keys are
   * `<tenant>/<id>`, so after a tenant's first row the next tenant's rows start past `<tenant>0`
   * (`0` follows `/`).
   */
  async tenants(kind: RecordKind): Promise<string[]> {
    this.#assertOpen();
    assertKind(kind);
    const collection = this.#names[kind];
    const found: string[] = [];
    let after = "";
    for (;;) {
      const rows = await this.#keyOrderedPage({
        collection,
        expression: `pk > ${quoteExpressionString(after)}`,
        outputFields: ["pk", "tenant"],
        after: undefined,
        limit: 1,
      });
      const tenant = rows[0]?.tenant;
      if (typeof tenant !== "string" || tenant.length === 0) return found;
      found.push(tenant);
      after = `${tenant}0`;
    }
  }

  async upsert<K extends RecordKind>({ kind, tenant, records }: UpsertRequest<K>): Promise<UpsertResult> {
    this.#assertOpen();
    assertKind(kind);
    assertValidTenant(tenant);
    if (records.length > MAX_RECORDS_PER_UPSERT) {
      throw new ValidationError(
        `An upsert takes at most ${MAX_RECORDS_PER_UPSERT} records; got ${records.length}. Split the request.`,
        { context: { count: records.length } },
      );
    }
    const now = Date.now();
    const rowsById = new Map<string, Row>();
    records.forEach((record, index) => {
      rowsById.set(record.id, this.#toRow({ kind, tenant, record, index, now }));
    });
    const rows = [...rowsById.values()];
    if (rows.length === 0) return { upserted: 0 };

    const collection = this.#names[kind];
    return this.#queueFor(collection).run(async () => {
      let written = 0;
      for (let start = 0; start < rows.length; start += this.#batchSize) {
        const batch = rows.slice(start, start + this.#batchSize);
        try {
          const response = await this.#call(`upsert into ${collection}`, () =>
            // Values were checked in #toRow; the SDK's row type cannot express a free-form JSON object.
            this.#client.upsert({
              collection_name: collection,
              data: batch as RowData[],
              timeout: this.#timeoutMs,
            }),
          );
          if (response.err_index.length > 0) {
            throw new StoreError(
              `Milvus rejected ${response.err_index.length} of ${batch.length} rows upserted into ${collection}.`,
              {
                code: "store_rejected",
                status: 500,
                context: { collection, errIndex: response.err_index.slice(0, 20) },
              },
            );
          }
        } catch (error) {
          if (!(error instanceof StoreError) || written === 0) throw error;
          throw new StoreError(
            `${error.message} ${written} of ${rows.length} rows were written before the failure; retrying the whole upsert is safe.`,
            {
              code: error.code,
              status: error.status,
              cause: error,
              context: { ...error.context, rowsWrittenBeforeFailure: written },
            },
          );
        }
        written += batch.length;
      }
      this.#logger?.debug({ collection, tenant, rows: written }, "upserted records");
      await this.#flushWhenDue(collection, written);
      return { upserted: written };
    });
  }

  async search<K extends RecordKind>({
    kind,
    tenant,
    vector,
    topK,
    filter,
    vectorField,
  }: SearchRequest<K>): Promise<SearchHit<K>[]> {
    this.#assertOpen();
    assertKind(kind);
    assertCount("topK", topK, MAX_TOP_K);
    const field = vectorFieldOf(kind, vectorField);
    const queryVector = this.#checkVector(vector, "The query vector");
    const expression = checkedFilter(buildFilterExpression({ tenant, filter, kind }));
    const collection = this.#names[kind];
    const filtered = filter !== undefined && filter.length > 0;
    const search = { kind, collection, expression, field, vector: queryVector, topK };

    // An HNSW search under a filter (the tenant clause on a shared collection is one too) keeps only
    // the rows that pass within a candidate list of `ef` entries: under a selective filter it misses
    // near rows and comes back short although more rows match. So a filtered search starts wide, and a
    // short answer is never taken as it is: a filtered set of at most exactScanMaxRows rows is then
    // scored exactly (one bounded read), a larger one searched wider until full, and scanned at last.
    let ef = Math.max(topK, filtered ? this.#filteredSearchBreadth : HNSW_MIN_EF);
    const hits = await this.#annSearch({ ...search, ef });
    if (hits.length === topK) return hits;
    const exact = await this.#exactSearch({ ...search, maxRows: this.#exactScanMaxRows });
    if (exact !== undefined) return exact;
    while (ef < HNSW_MAX_EF) {
      ef = Math.min(ef * EF_GROWTH, HNSW_MAX_EF);
      const wider = await this.#annSearch({ ...search, ef });
      if (wider.length === topK) return wider;
    }
    this.#logger?.warn(
      { collection, topK, ef },
      "the index search stayed short of topK; scanning the filtered set exactly",
    );
    return (await this.#exactSearch({ ...search, maxRows: Number.POSITIVE_INFINITY })) ?? [];
  }

  /** One index search of `collection` with search breadth `ef`. */
  async #annSearch<K extends RecordKind>({
    kind,
    collection,
    expression,
    field,
    vector,
    topK,
    ef,
  }: SearchPlan<K> & { ef: number }): Promise<SearchHit<K>[]> {
    const response = await this.#call(`search ${collection}`, () =>
      this.#client.search({
        collection_name: collection,
        data: vector,
        anns_field: field,
        limit: topK,
        // Always explicit: Milvus Lite fails on unflushed data without it, and uses whatever it is given.
        metric_type: this.#metric,
        filter: expression,
        // `id` duplicates the primary key because Lite's hits omit the key itself.
        output_fields: searchFieldNames(kind),
        // AUTOINDEX is HNSW on Milvus Lite and on a Milvus server's CPU nodes; both read `ef`.
        params: { ef },
        timeout: this.#timeoutMs,
      }),
    );
    const hits = await this.#hitRows(kind, collection, (response.results ?? []) as Row[]);
    return hits.map(({ row, score }) => {
      const fields = toStored(kind, row, collection);
      return { id: fields.id, score, fields };
    });
  }

  /**
   * Each search hit's own score and its row of fields, with the fields the hit's keys shadow (a region's
   * detection `score`) read back by id: a search asks for {@link searchFieldNames} only.
   */
  async #hitRows<K extends RecordKind>(
    kind: K,
    collection: string,
    hits: readonly Row[],
  ): Promise<Array<{ row: Row; score: number }>> {
    const shadowed = shadowedFieldNames(kind);
    if (shadowed.length === 0 || hits.length === 0)
      return hits.map((hit) => ({ row: hit, score: Number(hit.score) }));
    const keys = hits.map((hit) => primaryKey({ tenant: String(hit.tenant), id: String(hit.id) }));
    const stored = new Map<string, Row>();
    for (let start = 0; start < keys.length; start += MAX_IDS_PER_CALL) {
      const chunk = keys.slice(start, start + MAX_IDS_PER_CALL);
      const rows = await this.#rawQuery({
        collection,
        expression: `pk in [${chunk.map(quoteExpressionString).join(", ")}]`,
        outputFields: ["pk", ...shadowed],
        limit: chunk.length,
      });
      for (const row of rows) stored.set(String(row.pk), row);
    }
    return hits.map((hit, index) => {
      const row: Row = { ...hit };
      const own = stored.get(keys[index] as string);
      for (const name of shadowed) row[name] = own?.[name];
      return { row, score: Number(hit.score) };
    });
  }

  /**
   * The exact top `topK` of the rows matching `expression`: their vectors are read and scored here with
   * the collection's metric, best first (ties by id). Undefined when more than `maxRows` rows match.
   */
  async #exactSearch<K extends RecordKind>({
    kind,
    collection,
    expression,
    field,
    vector,
    topK,
    maxRows,
  }: SearchPlan<K> & { maxRows: number }): Promise<SearchHit<K>[] | undefined> {
    const outputFields = [...scalarFieldNames(kind), field];
    const score = scorer(this.#metric, vector);
    let best: Array<{ score: number; row: Row }> = [];
    const keep = (rows: readonly Row[]) => {
      for (const row of rows) best.push({ score: score(row[field], collection), row });
      best.sort((a, b) => b.score - a.score || compareIds(a.row.id, b.row.id));
      if (best.length > topK) best = best.slice(0, topK);
    };
    if (Number.isFinite(maxRows)) {
      const rows = await this.#rawQuery({ collection, expression, outputFields, limit: maxRows + 1 });
      if (rows.length > maxRows) return undefined;
      keep(rows);
    } else {
      let after: string | undefined;
      for (;;) {
        const rows = await this.#keyOrderedPage({
          collection,
          expression,
          outputFields,
          after,
          limit: EXACT_SCAN_PAGE_ROWS,
        });
        keep(rows);
        if (rows.length < EXACT_SCAN_PAGE_ROWS) break;
        after = String(rows[rows.length - 1]?.pk);
      }
    }
    return best.map(({ score: value, row }) => {
      const fields = toStored(kind, row, collection);
      return { id: fields.id, score: value, fields };
    });
  }

  /** Rows of a query whose work grows with the rows it reads (long deadline), in no particular order. */
  async #rawQuery({
    collection,
    expression,
    outputFields,
    limit,
  }: {
    collection: string;
    expression: string;
    outputFields: string[];
    limit: number;
  }): Promise<Row[]> {
    const response = await this.#longCall(`query ${collection}`, () =>
      this.#client.query({
        collection_name: collection,
        filter: expression,
        output_fields: outputFields,
        limit,
        timeout: this.#longTimeoutMs,
      }),
    );
    return response.data as Row[];
  }

  /**
   * Up to `limit` rows matching `expression` whose primary key follows `after`, in key order (with the
   * key in each row). Checks the order, since paging relies on it.
   */
  async #keyOrderedPage({
    collection,
    expression,
    outputFields,
    after,
    limit,
  }: {
    collection: string;
    expression: string;
    outputFields: string[];
    after: string | undefined;
    limit: number;
  }): Promise<Row[]> {
    const filter =
      after === undefined ? expression : `${expression} and pk > ${quoteExpressionString(after)}`;
    const response = await this.#longCall(`query ${collection}`, () =>
      this.#client.query({
        collection_name: collection,
        filter,
        output_fields: outputFields.includes("pk") ? outputFields : ["pk", ...outputFields],
        limit,
        params: { ...KEY_ORDER_PARAMS },
        timeout: this.#longTimeoutMs,
      }),
    );
    const rows = response.data as Row[];
    for (let index = 1; index < rows.length; index += 1) {
      if (compareIds(rows[index - 1]?.pk, rows[index]?.pk) >= 0) {
        throw new StoreError(
          `Milvus answered a paged query of ${collection} out of key order; paging needs a Milvus that orders iterator queries by primary key.`,
          { code: "store_rejected", status: 500, context: { collection } },
        );
      }
    }
    return rows;
  }

  /**
   * BM25 hits of `text`, best first. Scores are BM25 scores, 0 or more, larger better: Milvus Lite answers
   * BM25 searches with the score negated (a distance), a Milvus server with the score itself, so the
   * adapter reports its magnitude. The raw BM25 of one query is comparable between hits of one
   * collection only, and differs between Lite and a server (their term statistics differ in detail).
   */
  async textSearch<K extends RecordKind>({
    kind,
    tenant,
    text,
    phrases,
    topK,
    filter,
  }: TextSearchRequest<K>): Promise<SearchHit<K>[]> {
    this.#assertOpen();
    assertKind(kind);
    assertCount("topK", topK, MAX_TOP_K);
    const query = checkQueryText(text);
    const phrasePlan = planPhrases(phrases);
    const expression = withPhraseClause(
      checkedFilter(buildFilterExpression({ tenant, filter, kind })),
      phrasePlan,
    );
    const collection = this.#names[kind];
    const run = (filterExpression: string, limit: number) =>
      this.#bm25Search({
        kind,
        collection,
        expression: filterExpression,
        text: query,
        limit,
        withSearchText: phrasePlan !== undefined,
      });
    if (phrasePlan === undefined) return (await run(expression, topK)).map(({ hit }) => hit);
    return this.#withPhrases({ collection, expression, phrases: phrasePlan.needles, topK, run });
  }

  /**
   * The dense search and the BM25 search fused by Milvus in one hybrid search. Scores are the ranker's:
   * for `rrf`, `Σ 1/(k + rank)` over the two lists (a hit found by one side only gets that side's term);
   * for `weighted`, `dense · d + text · t` of normalized scores (`d` = (1 + cosine) / 2 for COSINE,
   * 0.5 + arctan(ip) / π for IP; `t` = 2 · arctan(bm25) / π), 0 for a side that did not find the hit.
   * Both sides are scoped to the tenant and the filter. Under a filter the dense side searches with
   * `ef` ≥ max(limit, filteredSearchBreadth), as {@link MilvusVectorStore.search} starts, so a selective
   * filter does not starve it; unlike `search`, no exact scan follows a short dense side.
   */
  async hybridSearch<K extends RecordKind>({
    kind,
    tenant,
    vector,
    topK,
    filter,
    vectorField,
    text,
    phrases,
    ranker,
  }: HybridSearchRequest<K>): Promise<SearchHit<K>[]> {
    this.#assertOpen();
    assertKind(kind);
    assertCount("topK", topK, MAX_TOP_K);
    const field = vectorFieldOf(kind, vectorField);
    const queryVector = this.#checkVector(vector, "The query vector");
    const query = checkQueryText(text);
    const rerank = rerankOf(ranker);
    const phrasePlan = planPhrases(phrases);
    const expression = withPhraseClause(
      checkedFilter(buildFilterExpression({ tenant, filter, kind })),
      phrasePlan,
    );
    const filtered = (filter !== undefined && filter.length > 0) || phrasePlan !== undefined;
    const collection = this.#names[kind];
    const outputFields = [
      ...searchFieldNames(kind),
      ...(phrasePlan === undefined ? [] : [SEARCH_TEXT_FIELD]),
    ];
    const run = async (filterExpression: string, limit: number) => {
      const ef = Math.max(limit, filtered ? this.#filteredSearchBreadth : HNSW_MIN_EF);
      const dense: HybridSearchSingleReq & { metric_type: string; limit: number } = {
        data: queryVector,
        anns_field: field,
        expr: filterExpression,
        metric_type: this.#metric,
        limit,
        params: { ef },
      };
      const sparse: HybridSearchSingleReq & { metric_type: string; limit: number } = {
        data: query,
        anns_field: SEARCH_SPARSE_FIELD,
        expr: filterExpression,
        metric_type: "BM25",
        limit,
      };
      const response = await this.#call(`hybridSearch ${collection}`, () =>
        this.#client.hybridSearch({
          collection_name: collection,
          data: [dense, sparse],
          rerank,
          limit,
          output_fields: outputFields,
          timeout: this.#timeoutMs,
        }),
      );
      const hits = await this.#hitRows(kind, collection, (response.results ?? []) as Row[]);
      return hits.map(({ row, score }) => {
        const fields = toStored(kind, row, collection);
        return {
          hit: { id: fields.id, score, fields },
          searchText: asString(row[SEARCH_TEXT_FIELD]),
        };
      });
    };
    if (phrasePlan === undefined) return (await run(expression, topK)).map(({ hit }) => hit);
    return this.#withPhrases({ collection, expression, phrases: phrasePlan.needles, topK, run });
  }

  /** One BM25 search of `collection`, scores made larger-is-better (see {@link textSearch}). */
  async #bm25Search<K extends RecordKind>({
    kind,
    collection,
    expression,
    text,
    limit,
    withSearchText,
  }: {
    kind: K;
    collection: string;
    expression: string;
    text: string;
    limit: number;
    withSearchText: boolean;
  }): Promise<Array<{ hit: SearchHit<K>; searchText: string }>> {
    const response = await this.#call(`text search ${collection}`, () =>
      this.#client.search({
        collection_name: collection,
        data: text,
        anns_field: SEARCH_SPARSE_FIELD,
        limit,
        metric_type: "BM25",
        filter: expression,
        output_fields: [...searchFieldNames(kind), ...(withSearchText ? [SEARCH_TEXT_FIELD] : [])],
        timeout: this.#timeoutMs,
      }),
    );
    const hits = await this.#hitRows(kind, collection, (response.results ?? []) as Row[]);
    return hits.map(({ row, score }) => {
      const fields = toStored(kind, row, collection);
      return {
        hit: { id: fields.id, score: Math.abs(score), fields },
        searchText: asString(row[SEARCH_TEXT_FIELD]),
      };
    });
  }

  /**
   * The best `topK` hits of `run` whose searchable text contains every phrase. `expression` already
   * holds the `text_match` prefilter (each word of each phrase), which Milvus Lite can evaluate where it
   * has no `phrase_match`; the phrases themselves are checked here. A search that comes back with too few
   * matching hits is widened while it comes back full, at least ×{@link PHRASE_GROWTH} and more when few
   * hits had the phrases (as many as their share suggests topK needs); past the widest search,
   * the prefiltered rows are scanned for the phrases and the search is run again over the rows that have
   * them, {@link MAX_IDS_PER_CALL} at a time, the hits merged by score.
   */
  async #withPhrases<K extends RecordKind>({
    collection,
    expression,
    phrases,
    topK,
    run,
  }: {
    collection: string;
    expression: string;
    phrases: readonly string[];
    topK: number;
    run: (expression: string, limit: number) => Promise<Array<{ hit: SearchHit<K>; searchText: string }>>;
  }): Promise<SearchHit<K>[]> {
    const hasAll = (searchText: string) => containsPhrases(searchText, phrases);
    let limit = topK;
    for (;;) {
      const found = await run(expression, limit);
      const kept = found.filter(({ searchText }) => hasAll(searchText)).map(({ hit }) => hit);
      if (kept.length >= topK || found.length < limit) return kept.slice(0, topK);
      if (limit >= MAX_SEARCH_LIMIT) break;
      // At least ×PHRASE_GROWTH; more when few hits had the phrases, as many as their share suggests.
      const needed = Math.ceil((limit * topK * 1.25) / Math.max(kept.length, 1));
      limit = Math.min(Math.max(limit * PHRASE_GROWTH, needed), MAX_SEARCH_LIMIT);
    }
    this.#logger?.warn(
      { collection, topK, limit },
      "a phrase search stayed short at its widest; scanning the prefiltered rows for the phrases",
    );
    const keys: string[] = [];
    let after: string | undefined;
    for (;;) {
      const rows = await this.#keyOrderedPage({
        collection,
        expression,
        outputFields: ["pk", SEARCH_TEXT_FIELD],
        after,
        limit: EXACT_SCAN_PAGE_ROWS,
      });
      for (const row of rows) if (hasAll(asString(row[SEARCH_TEXT_FIELD]))) keys.push(String(row.pk));
      if (rows.length < EXACT_SCAN_PAGE_ROWS) break;
      after = String(rows[rows.length - 1]?.pk);
    }
    const hits: SearchHit<K>[] = [];
    for (let start = 0; start < keys.length; start += MAX_IDS_PER_CALL) {
      const chunk = keys.slice(start, start + MAX_IDS_PER_CALL);
      const clause = `pk in [${chunk.map(quoteExpressionString).join(", ")}]`;
      const found = await run(`${expression} and ${clause}`, Math.min(topK, chunk.length));
      hits.push(...found.map(({ hit }) => hit));
    }
    hits.sort((a, b) => b.score - a.score || compareIds(a.id, b.id));
    return hits.slice(0, topK);
  }

  /**
   * Reads the tenant's rows with their vectors, applies the patches and writes them back under the same
   * key (an upsert, in the collection's write queue), so ids and vectors are unchanged and `search_text`
   * is composed again. Ids the tenant does not have are skipped; patches of one id apply in order.
   */
  async update({ kind, tenant, patches }: UpdateRequest): Promise<UpdateResult> {
    this.#assertOpen();
    assertKind(kind);
    assertValidTenant(tenant);
    if (!Array.isArray(patches))
      throw new ValidationError("patches must be a list of { id, ocrText?, metadata? }.");
    if (patches.length > MAX_IDS_PER_CALL) {
      throw new ValidationError(
        `An update takes at most ${MAX_IDS_PER_CALL} patches; got ${patches.length}. Split the request.`,
        { context: { count: patches.length } },
      );
    }
    const changes = new Map<string, Row>();
    patches.forEach((patch, index) => {
      const label = recordLabel(index, patch);
      if (!isValidRecordId(patch.id)) {
        throw new ValidationError(`${label}: the id must match ${RECORD_ID_PATTERN}.`, {
          context: { index, id: String(patch.id).slice(0, 80) },
        });
      }
      const change: Row = { ...changes.get(patch.id) };
      if (patch.ocrText !== undefined) {
        change.ocr_text = checkString({ label, field: "ocrText", column: "ocr_text", value: patch.ocrText });
      }
      if (patch.metadata !== undefined) change.metadata = checkMetadata(label, patch.metadata);
      changes.set(patch.id, change);
    });
    if (changes.size === 0) return { updated: 0 };

    const collection = this.#names[kind];
    const expression = `${buildFilterExpression({ tenant, kind })} and ${idClause(tenant, [...changes.keys()])}`;
    return this.#queueFor(collection).run(async () => {
      const rows = await this.#rawQuery({
        collection,
        expression,
        outputFields: writtenFieldNames(kind).filter((name) => name !== SEARCH_TEXT_FIELD),
        limit: changes.size,
      });
      const data = rows.map((row) => toWritableRow(kind, { ...row, ...changes.get(String(row.id)) }));
      let written = 0;
      for (let start = 0; start < data.length; start += this.#batchSize) {
        const batch = data.slice(start, start + this.#batchSize);
        const response = await this.#call(`update ${collection}`, () =>
          this.#client.upsert({
            collection_name: collection,
            data: batch as RowData[],
            timeout: this.#timeoutMs,
          }),
        );
        if (response.err_index.length > 0) {
          throw new StoreError(
            `Milvus rejected ${response.err_index.length} of ${batch.length} rows rewritten in ${collection}; ${written} rows were rewritten before. Retrying the update is safe.`,
            {
              code: "store_rejected",
              status: 500,
              context: { collection, rowsWrittenBeforeFailure: written },
            },
          );
        }
        written += batch.length;
      }
      this.#logger?.debug({ collection, tenant, rows: written }, "updated records");
      await this.#flushWhenDue(collection, written);
      return { updated: written };
    });
  }

  async query<K extends RecordKind>({
    kind,
    tenant,
    filter,
    limit,
  }: QueryRequest<K>): Promise<StoredByKind[K][]> {
    this.#assertOpen();
    assertKind(kind);
    assertCount("limit", limit, MAX_QUERY_LIMIT);
    const expression = checkedFilter(buildFilterExpression({ tenant, filter, kind }));
    return this.#queryRows(kind, expression, limit);
  }

  async list<K extends RecordKind>({
    kind,
    tenant,
    filter,
    limit,
    after,
  }: ListRequest<K>): Promise<ListPage<K>> {
    this.#assertOpen();
    assertKind(kind);
    assertCount("limit", limit, MAX_LIST_LIMIT);
    if (after !== undefined && !isValidRecordId(after)) {
      throw new ValidationError(
        `Invalid list position ${JSON.stringify(String(after).slice(0, 80))}: it is a record id matching ${RECORD_ID_PATTERN}.`,
        { context: { after: String(after).slice(0, 80) } },
      );
    }
    const expression = checkedFilter(buildFilterExpression({ tenant, filter, kind }));
    const collection = this.#names[kind];
    // The key is `<tenant>/<id>`: within the tenant, key order is id order, and the position is made a
    // key of the caller's tenant whatever it holds.
    const rows = await this.#keyOrderedPage({
      collection,
      expression,
      outputFields: scalarFieldNames(kind),
      after: after === undefined ? undefined : primaryKey({ tenant, id: after }),
      limit: limit + 1,
    });
    const page = rows.slice(0, limit).map((row) => toStored(kind, row, collection));
    const last = page[page.length - 1];
    return rows.length > limit && last !== undefined ? { rows: page, nextAfter: last.id } : { rows: page };
  }

  async get<K extends RecordKind>({ kind, tenant, ids }: GetRequest<K>): Promise<StoredByKind[K][]> {
    this.#assertOpen();
    assertKind(kind);
    const unique = checkIds(ids);
    if (unique.length === 0) return [];
    const expression = `${buildFilterExpression({ tenant, kind })} and ${idClause(tenant, unique)}`;
    return this.#queryRows(kind, expression, unique.length);
  }

  async delete<K extends RecordKind>({ kind, tenant, ids, filter }: DeleteRequest<K>): Promise<DeleteResult> {
    this.#assertOpen();
    assertKind(kind);
    if (ids === undefined && filter === undefined) {
      throw new ValidationError(
        "A delete needs ids, a filter or both; deleting everything at once is not supported.",
      );
    }
    const parts = [checkedFilter(buildFilterExpression({ tenant, filter, kind }))];
    if (ids !== undefined) {
      const unique = checkIds(ids);
      if (unique.length === 0) return { deleted: 0 };
      parts.push(idClause(tenant, unique));
    }
    const expression = parts.join(" and ");
    const collection = this.#names[kind];
    return this.#queueFor(collection).run(async () => {
      const response = await this.#call(`delete from ${collection}`, () =>
        this.#client.delete({ collection_name: collection, filter: expression, timeout: this.#timeoutMs }),
      );
      const deleted = Number(response.delete_cnt ?? 0);
      this.#logger?.debug({ collection, tenant, deleted }, "deleted records");
      return { deleted: Number.isFinite(deleted) ? deleted : 0 };
    });
  }

  async count({ kind, tenant }: CountRequest): Promise<number> {
    this.#assertOpen();
    assertKind(kind);
    const collection = this.#names[kind];
    const expression = buildFilterExpression({ tenant, kind });
    // Milvus Lite counts with a filter by reading every matching row; without one it counts keys only,
    // hundreds of times faster. When no other tenant has a row in the collection (checked before and
    // after), the two counts are the same number.
    if (!(await this.#holdsOtherTenants(collection, tenant))) {
      const all = await this.#countRows(collection, "");
      if (!(await this.#holdsOtherTenants(collection, tenant))) return all;
    }
    return this.#countRows(collection, expression);
  }

  /** Whether `collection` holds a row of a tenant other than `tenant` (reads at most one row). */
  async #holdsOtherTenants(collection: string, tenant: string): Promise<boolean> {
    const response = await this.#call(`query ${collection}`, () =>
      this.#client.query({
        collection_name: collection,
        filter: `tenant != ${quoteExpressionString(tenant)}`,
        output_fields: ["id"],
        limit: 1,
        timeout: this.#timeoutMs,
      }),
    );
    return response.data.length > 0;
  }

  async #countRows(collection: string, expression: string): Promise<number> {
    // The SDK's count() reads its result before checking the status; this checks first.
    const response = await this.#longCall(`count ${collection}`, () =>
      this.#client.query({
        collection_name: collection,
        filter: expression,
        output_fields: ["count(*)"],
        timeout: this.#longTimeoutMs,
      }),
    );
    const value = Number(response.data[0]?.["count(*)"]);
    if (!Number.isFinite(value)) {
      throw new StoreError(`Milvus answered count ${collection} without a count.`, {
        code: "store_rejected",
        status: 500,
        context: { collection },
      });
    }
    return value;
  }

  async health(): Promise<StoreHealth> {
    if (this.#closing !== undefined) return { ok: false, reason: "the vector store is closed" };
    try {
      const states = await Promise.all(
        RECORD_KINDS.map(async (kind) => {
          const collection = this.#names[kind];
          const response = await this.#call(`getLoadState ${collection}`, () =>
            this.#client.getLoadState({ collection_name: collection, timeout: this.#timeoutMs }),
          );
          return { collection, state: response.state };
        }),
      );
      const notLoaded = states.find(({ state }) => state !== LoadState.LoadStateLoaded);
      if (notLoaded !== undefined) {
        return { ok: false, reason: `collection ${notLoaded.collection} is not loaded (${notLoaded.state})` };
      }
      return { ok: true };
    } catch (error) {
      // The reason reaches /readyz: no address in it (store errors are written without one already).
      this.#logger?.warn({ err: error }, "vector store health check failed");
      return { ok: false, reason: redactAddresses(error instanceof Error ? error.message : String(error)) };
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#writeQueues.values()].map((queue) => queue.idle()));
      await this.#client.closeConnection().catch((error: unknown) => {
        this.#logger?.warn({ err: error }, "closing the Milvus connection failed");
      });
    })();
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) {
      throw new StoreError("The vector store is closed.", { code: "store_closed" });
    }
  }

  #queueFor(collection: string): SerialQueue {
    let queue = this.#writeQueues.get(collection);
    if (queue === undefined) {
      queue = new SerialQueue();
      this.#writeQueues.set(collection, queue);
    }
    return queue;
  }

  #call<T>(what: string, call: () => Promise<T>): Promise<T> {
    return callMilvus({ what, timeoutMs: this.#timeoutMs, address: this.#address, call });
  }

  #longCall<T>(what: string, call: () => Promise<T>): Promise<T> {
    return callMilvus({
      what,
      timeoutMs: this.#longTimeoutMs,
      address: this.#address,
      call,
      timeoutSetting: "MILVUS_LONG_TIMEOUT_MS",
    });
  }

  async #queryRows<K extends RecordKind>(
    kind: K,
    expression: string,
    limit: number,
  ): Promise<StoredByKind[K][]> {
    const collection = this.#names[kind];
    const response = await this.#call(`query ${collection}`, () =>
      this.#client.query({
        collection_name: collection,
        filter: expression,
        output_fields: scalarFieldNames(kind),
        limit,
        timeout: this.#timeoutMs,
      }),
    );
    return (response.data as Row[]).map((row) => toStored(kind, row, collection));
  }

  #checkVector(vector: unknown, label: string): number[] {
    if (!Array.isArray(vector) && !(vector instanceof Float32Array)) {
      throw new ValidationError(`${label} must be an array of ${this.#dimension} numbers.`);
    }
    if (vector.length !== this.#dimension) {
      throw new ValidationError(
        `${label} has ${vector.length} values; the collections hold ${this.#dimension}-dimensional vectors. Use the model pack the collections were built with.`,
        { context: { length: vector.length, dimension: this.#dimension } },
      );
    }
    const values = Array.from(vector as ArrayLike<unknown>, Number);
    if (
      !values.every(
        (value, index) => typeof (vector as ArrayLike<unknown>)[index] === "number" && Number.isFinite(value),
      )
    ) {
      throw new ValidationError(
        `${label} holds a value that is not a finite number (NaN, Infinity or not a number).`,
      );
    }
    if (this.#metric === "COSINE" && values.every((value) => value === 0)) {
      throw new ValidationError(`${label} is all zeros, which has no direction for COSINE similarity.`);
    }
    return values;
  }

  #toRow<K extends RecordKind>({
    kind,
    tenant,
    record,
    index,
    now,
  }: {
    kind: K;
    tenant: string;
    record: RecordByKind[K];
    index: number;
    now: number;
  }): Row {
    const label = recordLabel(index, record);
    if (!isValidRecordId(record.id)) {
      throw new ValidationError(
        `${label}: the id must match ${RECORD_ID_PATTERN}; compute it with recordId().`,
        {
          context: { index, id: String(record.id).slice(0, 80) },
        },
      );
    }
    const createdAt = record.createdAt ?? now;
    if (!Number.isInteger(createdAt) || createdAt < 0 || createdAt > MAX_TIMESTAMP_MS) {
      throw new ValidationError(
        `${label}: createdAt must be a whole number of ms since 1970; got ${String(createdAt)}.`,
        {
          context: { index, createdAt },
        },
      );
    }
    const requiredString = (field: string, column: VarcharColumn, value: unknown): string =>
      checkString({ label, field, column, value, required: true });
    const row: Row = {
      pk: primaryKey({ tenant, id: record.id }),
      id: record.id,
      tenant,
      model_id: requiredString("modelId", "model_id", record.modelId),
      media_ref: requiredString("mediaRef", "media_ref", record.mediaRef),
      source: requiredString("source", "source", record.source),
      created_at: createdAt,
      text: checkString({ label, field: "text", column: "text", value: record.text ?? "" }),
      metadata: checkMetadata(label, record.metadata ?? {}),
      ocr_text: checkString({ label, field: "ocrText", column: "ocr_text", value: record.ocrText ?? "" }),
    };
    if (kind === "triple") {
      const triple = record as TripleRecord;
      row.question = requiredString("question", "question", triple.question);
      row.answer = requiredString("answer", "answer", triple.answer);
      row.image_vector = this.#checkVector(triple.imageVector, `${label}: imageVector`);
      row.question_vector = this.#checkVector(triple.questionVector, `${label}: questionVector`);
      row[SEARCH_TEXT_FIELD] = composeSearchText(row);
      return row;
    }
    if (kind === "region") {
      const region = record as RegionRecord;
      Object.assign(row, regionFields(region, label, index));
      row.label = requiredString("label", "label", region.label);
      row.vector = this.#checkVector(region.vector, `${label}: vector`);
      row[SEARCH_TEXT_FIELD] = composeSearchText(row);
      return row;
    }
    const withVector = record as ImageRecord | VideoSegmentRecord;
    row.vector = this.#checkVector(withVector.vector, `${label}: vector`);
    if (kind === "video_segment") {
      const segment = record as VideoSegmentRecord;
      row.video_id = requiredString("videoId", "video_id", segment.videoId);
      row.keyframe_ref = checkString({
        label,
        field: "keyframeRef",
        column: "keyframe_ref",
        value: segment.keyframeRef ?? "",
      });
      const { startS, endS } = segment;
      if (!Number.isFinite(startS) || !Number.isFinite(endS) || startS < 0 || endS < startS) {
        throw new ValidationError(
          `${label}: a segment needs 0 <= startS <= endS, both finite; got ${startS}–${endS}.`,
          {
            context: { index, startS, endS },
          },
        );
      }
      row.start_s = startS;
      row.end_s = endS;
    }
    row[SEARCH_TEXT_FIELD] = composeSearchText(row);
    return row;
  }
}

/** Region fields checked the way every record's are: ids and names as VarChars, numbers finite. */
function regionFields(record: RegionRecord, label: string, index: number): Row {
  const parentKind = record.parentKind;
  if (parentKind !== "image" && parentKind !== "video_segment") {
    throw new ValidationError(`${label}: parentKind must be "image" or "video_segment".`, {
      context: { index, parentKind: String(parentKind).slice(0, 40) },
    });
  }
  if (!isValidRecordId(record.parentId)) {
    throw new ValidationError(`${label}: parentId must be a record id (${RECORD_ID_PATTERN}).`, {
      context: { index },
    });
  }
  const box = record.box ?? ({} as RegionBox);
  const inUnit = (value: unknown): value is number =>
    typeof value === "number" && Number.isFinite(value) && value >= 0 && value <= 1;
  if (![box.x0, box.y0, box.x1, box.y1].every(inUnit) || box.x1 < box.x0 || box.y1 < box.y0) {
    throw new ValidationError(
      `${label}: box must be {x0, y0, x1, y1} within [0, 1] with x0 <= x1 and y0 <= y1.`,
      { context: { index, box } },
    );
  }
  if (!inUnit(record.score)) {
    throw new ValidationError(`${label}: score must be a number in [0, 1].`, {
      context: { index, score: record.score },
    });
  }
  const attributes = checkMetadata(`${label} attributes`, record.attributes ?? {});
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value !== "string" || value.length > 128 || name.length > 64) {
      throw new ValidationError(
        `${label}: attributes map names (at most 64 characters) to strings of at most 128 characters.`,
        { context: { index, attribute: name.slice(0, 64) } },
      );
    }
  }
  return {
    parent_id: record.parentId,
    parent_kind: parentKind,
    attributes,
    score: record.score,
    box_x0: box.x0,
    box_y0: box.y0,
    box_x1: box.x1,
    box_y1: box.y1,
  };
}

/** What one search of a collection needs, whichever way it is answered. */
interface SearchPlan<K extends RecordKind> {
  kind: K;
  collection: string;
  expression: string;
  field: string;
  vector: number[];
  topK: number;
}

/** The vector field a search of `kind` uses: `vectorField`, or the kind's first. */
function vectorFieldOf(kind: RecordKind, vectorField: string | undefined): string {
  const allowedFields: readonly string[] = VECTOR_FIELDS[kind];
  const field = vectorField ?? allowedFields[0];
  if (field === undefined || !allowedFields.includes(field)) {
    throw new ValidationError(
      `Vector field ${JSON.stringify(vectorField)} does not exist on ${kind} records; use ${allowedFields.join(" or ")}.`,
      { context: { kind, vectorField } },
    );
  }
  return field;
}

/** The query text of a text or hybrid search, in NFKC form and spaced between scripts as the stored search text is. */
function checkQueryText(text: unknown): string {
  if (typeof text !== "string") {
    throw new ValidationError(`The query text must be a string; got ${typeof text}.`);
  }
  const surrogate = LONE_SURROGATE.exec(text);
  if (surrogate !== null) throw loneSurrogateError("The query", "text", surrogate.index);
  const normalized = spaceScripts(text.normalize("NFKC"));
  if (normalized.trim().length === 0) {
    throw new ValidationError("The query text is empty; a text search needs at least one word.");
  }
  const bytes = byteLength(normalized);
  if (bytes > MAX_QUERY_TEXT_BYTES) {
    throw new ValidationError(
      `The query text is ${bytes} bytes of UTF-8; the limit is ${MAX_QUERY_TEXT_BYTES}. Shorten it.`,
      { context: { bytes, limit: MAX_QUERY_TEXT_BYTES } },
    );
  }
  return normalized;
}

/**
 * A phrase or a searchable text as phrases are split into words: NFKC, lower case, every run of white
 * space one space, trimmed.
 */
export function normalizeForPhrase(text: string): string {
  return text.normalize("NFKC").toLowerCase().replace(/\s+/gu, " ").trim();
}

/**
 * A phrase or a searchable text as phrases are compared: its letters and digits only, in order, with the
 * letters a recognizer confuses with digits read as those digits (`o`→0, `i`/`l`→1, `z`→2, `s`→5,
 * `b`→8). Spaces and punctuation do not count, since OCR drops or changes them ("auth.lab.test" read as
 * "authlab.test", "1,234" as "1.234", two words run together), and `IO-45051` read as `I0-45051` or
 * `10-45051` is still the phrase.
 */
export function phraseKey(text: string): string {
  return normalizeForPhrase(text)
    .replace(/[^\p{L}\p{N}]+/gu, "")
    .replace(/[oilzsb]/gu, (letter) => CONFUSABLE_DIGIT[letter] as string);
}

/** The digit a recognizer reads for a letter of the same shape. */
const CONFUSABLE_DIGIT: Record<string, string> = { o: "0", i: "1", l: "1", z: "2", s: "5", b: "8" };

/** Whether `searchText` contains every phrase (as {@link phraseKey}s). */
function containsPhrases(searchText: string, phrases: readonly string[]): boolean {
  const haystack = phraseKey(searchText);
  return phrases.every((phrase) => haystack.includes(phraseKey(phrase)));
}

/** A word of a phrase as the prefilter may ask for it: without its outer punctuation, only if no inner one is left. */
function prefilterWord(word: string): string | undefined {
  const trimmed = word.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, "");
  return trimmed.length > 0 && /^[\p{L}\p{N}]+$/u.test(trimmed) ? trimmed : undefined;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/gu;

const CJK_CHARACTER = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;

/** The normalized phrases of a search and their `text_match` prefilter; undefined when there are none. */
interface PhrasePlan {
  needles: string[];
  clause: string;
}

/**
 * Checks the phrases of a search and builds their prefilter: one `text_match(search_text, "<word>")`
 * per distinct word, ANDed (a row lacking a word cannot contain the phrase). Every word is quoted by the
 * filter builder's escaping, so a phrase cannot leave its string literal.
 */
function planPhrases(phrases: unknown): PhrasePlan | undefined {
  if (phrases === undefined) return undefined;
  if (!Array.isArray(phrases) || phrases.length > MAX_PHRASES) {
    throw new ValidationError(`phrases must be a list of at most ${MAX_PHRASES} strings.`, {
      context: { count: Array.isArray(phrases) ? phrases.length : undefined },
    });
  }
  const needles = new Set<string>();
  phrases.forEach((phrase: unknown, index) => {
    if (typeof phrase !== "string" || phrase.length > MAX_PHRASE_LENGTH) {
      throw new ValidationError(
        `Phrase ${index} must be a string of at most ${MAX_PHRASE_LENGTH} characters.`,
        { context: { index } },
      );
    }
    const surrogate = LONE_SURROGATE.exec(phrase);
    if (surrogate !== null) throw loneSurrogateError(`Phrase ${index}`, "it", surrogate.index);
    const needle = normalizeForPhrase(spaceScripts(phrase.replace(CONTROL_CHARACTERS, " ")));
    if (phraseKey(needle).length > 0) needles.add(needle);
  });
  if (needles.size === 0) return undefined;
  // A word with Chinese, Japanese or Korean characters is left out of the prefilter: jieba segments a
  // phrase on its own differently from the same characters inside a longer text ("数据库连接" alone vs in
  // "数据库连接失败"), so its tokens may not be the stored ones. So is a word with inner punctuation
  // ("auth.lab.test", "1,234"), which OCR may have read otherwise. The phrase check below still applies.
  const words = new Set(
    [...needles]
      .flatMap((needle) => needle.split(" "))
      .filter((word) => !CJK_CHARACTER.test(word))
      .map(prefilterWord)
      .filter((word): word is string => word !== undefined),
  );
  const clause = [...words]
    .map((word) => `text_match(${SEARCH_TEXT_FIELD}, ${quoteExpressionString(word)})`)
    .join(" and ");
  return { needles: [...needles], clause };
}

function withPhraseClause(expression: string, plan: PhrasePlan | undefined): string {
  return plan === undefined || plan.clause === "" ? expression : `${expression} and ${plan.clause}`;
}

/** The Milvus reranker of a {@link HybridRanker}, checked. */
function rerankOf(ranker: HybridRanker): { strategy: string; params: Record<string, unknown> } {
  if (ranker?.type === "rrf") {
    if (!Number.isInteger(ranker.k) || ranker.k < 1 || ranker.k >= 16_384) {
      throw new ValidationError(`The RRF k must be an integer from 1 to 16383; got ${String(ranker.k)}.`);
    }
    return { strategy: "rrf", params: { k: ranker.k } };
  }
  if (ranker?.type === "weighted") {
    const { dense, text } = ranker;
    const inRange = (weight: number) => Number.isFinite(weight) && weight >= 0 && weight <= 1;
    if (!inRange(dense) || !inRange(text) || dense + text === 0) {
      throw new ValidationError(
        `Weighted ranking needs dense and text weights from 0 to 1, not both 0; got ${String(dense)} and ${String(text)}.`,
      );
    }
    return { strategy: "weighted", params: { weights: [dense, text], norm_score: true } };
  }
  throw new ValidationError(
    `Unknown ranker ${JSON.stringify((ranker as { type?: unknown })?.type)}; use rrf or weighted.`,
  );
}

/** Code-unit order of two keys or ids (Milvus compares VarChar keys by bytes; ids are ASCII). */
function compareIds(a: unknown, b: unknown): number {
  const left = String(a);
  const right = String(b);
  return left < right ? -1 : left > right ? 1 : 0;
}

/**
 * Scores stored vectors against `query` as Milvus does: the dot product for IP, the cosine of the
 * angle for COSINE (larger is better for both).
 */
function scorer(
  metric: MetricType,
  query: readonly number[],
): (value: unknown, collection: string) => number {
  const queryNorm = Math.sqrt(query.reduce((sum, x) => sum + x * x, 0));
  return (value, collection) => {
    if (!Array.isArray(value) || value.length !== query.length) {
      throw new StoreError(`Milvus returned a row of ${collection} without its vector.`, {
        code: "store_rejected",
        status: 500,
        context: { collection },
      });
    }
    let dot = 0;
    let norm = 0;
    for (let index = 0; index < query.length; index += 1) {
      const x = Number(value[index]);
      dot += x * (query[index] ?? 0);
      norm += x * x;
    }
    if (metric === "IP") return dot;
    return norm === 0 ? 0 : dot / (queryNorm * Math.sqrt(norm));
  };
}

/** Refuses a count argument (`limit`, `topK`) that is not an integer from 1 to `max`. */
function assertCount(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(`${name} must be an integer from 1 to ${max}; got ${String(value)}.`, {
      context: { [name]: value },
    });
  }
}

function assertKind(kind: unknown): asserts kind is RecordKind {
  if (!RECORD_KINDS.includes(kind as RecordKind)) {
    throw new ValidationError(
      `Unknown record kind ${JSON.stringify(kind)}; use ${RECORD_KINDS.join(", ")}.`,
      {
        context: { kind },
      },
    );
  }
}

function checkString({
  label,
  field,
  column,
  value,
  required = false,
}: {
  label: string;
  field: string;
  column: VarcharColumn;
  value: unknown;
  required?: boolean;
}): string {
  if (typeof value !== "string" || (required && value.length === 0)) {
    throw new ValidationError(
      `${label}: ${field} must be a${required ? " non-empty" : ""} string; got ${JSON.stringify(value)}.`,
      {
        context: { field },
      },
    );
  }
  const surrogate = LONE_SURROGATE.exec(value);
  if (surrogate !== null) throw loneSurrogateError(label, field, surrogate.index);
  const limit = VARCHAR_MAX_BYTES[column];
  const bytes = byteLength(value);
  if (bytes > limit) {
    throw new ValidationError(
      `${label}: ${field} is ${bytes} bytes of UTF-8; the limit is ${limit}. Shorten it.`,
      {
        context: { field, bytes, limit },
      },
    );
  }
  return value;
}

/** A UTF-16 surrogate that is not half of a pair (the `u` flag skips paired ones): UTF-8 cannot encode it. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function loneSurrogateError(label: string, field: string, at: number): ValidationError {
  return new ValidationError(
    `${label}: ${field} holds a lone UTF-16 surrogate at position ${at}, which UTF-8 cannot encode; Milvus would refuse the whole upsert. Send well-formed Unicode text.`,
    { context: { field, at } },
  );
}

/** The path of the first string (key or value) in metadata holding a lone surrogate, with its position. */
function loneSurrogateIn(
  value: unknown,
  field: string,
  depth = 0,
): { field: string; at: number } | undefined {
  if (typeof value === "string") {
    const match = LONE_SURROGATE.exec(value);
    return match === null ? undefined : { field, at: match.index };
  }
  if (typeof value !== "object" || value === null || depth > 64) return undefined;
  for (const [key, entry] of Object.entries(value)) {
    const inKey = LONE_SURROGATE.exec(key);
    if (inKey !== null) return { field: `a key of ${field}`, at: inKey.index };
    const found = loneSurrogateIn(entry, `${field}.${key}`, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A filter expression Milvus can decode: a lone surrogate in a value would fail the call as a whole. */
function checkedFilter(expression: string): string {
  const surrogate = LONE_SURROGATE.exec(expression);
  if (surrogate === null) return expression;
  throw new ValidationError(
    "A filter value holds a lone UTF-16 surrogate, which UTF-8 cannot encode. Send well-formed Unicode text.",
    { context: { at: surrogate.index } },
  );
}

function checkMetadata(label: string, metadata: unknown): Record<string, unknown> {
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
    throw new ValidationError(`${label}: metadata must be a JSON object.`);
  }
  const surrogate = loneSurrogateIn(metadata, "metadata");
  if (surrogate !== undefined) throw loneSurrogateError(label, surrogate.field, surrogate.at);
  let json: string;
  try {
    json = JSON.stringify(metadata);
  } catch (error) {
    throw new ValidationError(
      `${label}: metadata is not serializable as JSON: ${(error as Error).message}.`,
      { cause: error },
    );
  }
  const bytes = byteLength(json);
  if (bytes > METADATA_MAX_BYTES) {
    throw new ValidationError(
      `${label}: metadata is ${bytes} bytes as JSON; the limit is ${METADATA_MAX_BYTES}.`,
      {
        context: { bytes, limit: METADATA_MAX_BYTES },
      },
    );
  }
  // The round trip drops what JSON cannot hold (undefined, functions), so Milvus stores what was checked.
  return JSON.parse(json) as Record<string, unknown>;
}

function checkIds(ids: readonly string[]): string[] {
  if (!Array.isArray(ids)) throw new ValidationError("ids must be a list of record ids.");
  if (ids.length > MAX_IDS_PER_CALL) {
    throw new ValidationError(
      `At most ${MAX_IDS_PER_CALL} ids per call; got ${ids.length}. Split the request.`,
      {
        context: { count: ids.length },
      },
    );
  }
  const bad = ids.find((id) => !isValidRecordId(id));
  if (bad !== undefined) {
    throw new ValidationError(
      `Invalid record id ${JSON.stringify(String(bad).slice(0, 80))}: ids match ${RECORD_ID_PATTERN}.`,
      { context: { id: String(bad).slice(0, 80) } },
    );
  }
  return [...new Set(ids)];
}

/**
 * `pk in [...]` for the tenant's ids, every key quoted here: the SDK's own id lists are joined without
 * escaping.
 */
function idClause(tenant: string, ids: readonly string[]): string {
  return `pk in [${ids.map((id) => quoteExpressionString(primaryKey({ tenant, id }))).join(", ")}]`;
}

function asString(value: unknown): string {
  return typeof value === "string" ? value : value === undefined || value === null ? "" : String(value);
}

function asMetadata(value: unknown): Record<string, unknown> {
  if (typeof value === "string") {
    try {
      return asMetadata(JSON.parse(value));
    } catch {
      return {};
    }
  }
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

/** Maps a Milvus row (snake_case, Int64 as string) to the stored record of `kind`. */
function toStored<K extends RecordKind>(kind: K, row: Row, collection: string): StoredByKind[K] {
  if (typeof row.id !== "string" || row.id.length === 0) {
    // Every call requests `id`; a row without it means the server answered another shape than asked.
    throw new StoreError(`Milvus returned a row of ${collection} without its id field.`, {
      code: "store_rejected",
      status: 500,
      context: { collection, fields: Object.keys(row) },
    });
  }
  const base: StoredBase = {
    id: row.id,
    tenant: asString(row.tenant),
    modelId: asString(row.model_id),
    mediaRef: asString(row.media_ref),
    source: asString(row.source),
    createdAt: Number(row.created_at),
    text: asString(row.text),
    ocrText: asString(row.ocr_text),
    metadata: asMetadata(row.metadata),
  };
  const stored: StoredRecord =
    kind === "video_segment"
      ? {
          ...base,
          kind: "video_segment",
          videoId: asString(row.video_id),
          startS: Number(row.start_s),
          endS: Number(row.end_s),
          keyframeRef: asString(row.keyframe_ref),
        }
      : kind === "triple"
        ? { ...base, kind: "triple", question: asString(row.question), answer: asString(row.answer) }
        : kind === "region"
          ? {
              ...base,
              kind: "region",
              parentId: asString(row.parent_id),
              parentKind: row.parent_kind === "video_segment" ? "video_segment" : "image",
              box: {
                x0: Number(row.box_x0),
                y0: Number(row.box_y0),
                x1: Number(row.box_x1),
                y1: Number(row.box_y1),
              },
              label: asString(row.label),
              attributes: Object.fromEntries(
                Object.entries(asMetadata(row.attributes)).filter(
                  (entry): entry is [string, string] => typeof entry[1] === "string",
                ),
              ),
              score: Number(row.score),
            }
          : { ...base, kind: "image" };
  return stored as StoredByKind[K];
}

/** Options of {@link createVectorStore}. */
export interface CreateVectorStoreOptions extends MilvusConnectionOptions {
  /** Prefix of the collection names. */
  collectionPrefix?: string;
  /**
   * The model pack's model id: new collections record it, and live collections holding another model's
   * embeddings stop start-up with an error naming `loupe models migrate`. Absent: not checked.
   */
  modelId?: string;
  /** The pack's directory, named in that error. */
  modelPack?: string;
  /** Embedding dimension, from the model pack. */
  dimension: number;
  metric?: MetricType;
  indexType?: IndexType;
  /** See {@link MilvusVectorStoreOptions.longTimeoutMs}. */
  longTimeoutMs?: number;
  /** See {@link MilvusVectorStoreOptions.exactScanMaxRows}. */
  exactScanMaxRows?: number;
  /** See {@link MilvusVectorStoreOptions.filteredSearchBreadth}. */
  filteredSearchBreadth?: number;
  /** Rows per upsert call. */
  batchSize?: number;
  /** See {@link MilvusVectorStoreOptions.flushEveryRows}. */
  flushEveryRows?: number;
  logger?: Logger;
}

/**
 * Connects to Milvus, makes sure the collections exist with the expected schema, indexes and load
 * state, and returns the store. Fails fast (within the call deadline) when Milvus is unreachable.
 *
 * @throws StoreError when Milvus is unreachable or a collection does not match the expected layout.
 */
export async function createVectorStore({
  address,
  token,
  database,
  tls,
  timeoutMs = DEFAULT_MILVUS_TIMEOUT_MS,
  longTimeoutMs = Math.max(timeoutMs, DEFAULT_MILVUS_LONG_TIMEOUT_MS),
  exactScanMaxRows = DEFAULT_EXACT_SCAN_MAX_ROWS,
  filteredSearchBreadth = DEFAULT_FILTERED_SEARCH_BREADTH,
  collectionPrefix = DEFAULT_COLLECTION_PREFIX,
  modelId,
  modelPack,
  dimension,
  metric = "COSINE",
  indexType = "AUTOINDEX",
  batchSize = DEFAULT_UPSERT_BATCH_SIZE,
  flushEveryRows = DEFAULT_FLUSH_EVERY_ROWS,
  logger,
}: CreateVectorStoreOptions): Promise<MilvusVectorStore> {
  if (!Number.isInteger(dimension) || dimension < 1 || dimension > MAX_DIMENSION) {
    throw new StoreError(
      `The embedding dimension must be an integer from 1 to ${MAX_DIMENSION}; got ${String(dimension)}.`,
      {
        code: "store_config_invalid",
        status: 500,
        context: { dimension },
      },
    );
  }
  assertValidCollectionPrefix(collectionPrefix);
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new StoreError(`batchSize must be a positive integer; got ${String(batchSize)}.`, {
      code: "store_config_invalid",
      status: 500,
    });
  }
  const client = createMilvusClient({ address, token, database, tls, timeoutMs });
  let collections: Record<RecordKind, string>;
  try {
    // The pointer a pack switch commits names the live collections; before any, they are `<prefix>_<kind>`.
    const pointerCall = { client, prefix: collectionPrefix, timeoutMs, address };
    const pointer = await readActivePointer(pointerCall);
    collections = pointer?.collections ?? collectionNames({ prefix: collectionPrefix });
    const ensured = await ensureCollections({
      client,
      prefix: collectionPrefix,
      names: collections,
      ...(modelId === undefined ? {} : { modelId }),
      ...(modelPack === undefined ? {} : { modelPack }),
      dimension,
      metric,
      indexType,
      timeoutMs,
      longTimeoutMs,
      address,
      logger,
    });
    if (pointer !== undefined) await syncLiveAliases({ ...pointerCall, collections, logger });
    logger?.info(
      { address, collectionPrefix, dimension, metric, indexType, ...ensured },
      "vector store ready",
    );
  } catch (error) {
    await client.closeConnection().catch(() => undefined);
    throw error;
  }
  return new MilvusVectorStore({
    client,
    collections,
    dimension,
    metric,
    indexType,
    timeoutMs,
    longTimeoutMs,
    exactScanMaxRows,
    filteredSearchBreadth,
    batchSize,
    flushEveryRows,
    address,
    logger,
  });
}
