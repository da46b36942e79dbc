/**
 * Loupe's three Milvus collections (images, video segments, image-question-answer triples): their
 * explicit schemas, and {@link ensureCollections}, which creates, indexes, checks and loads them.
 *
 * Every collection records the {@link SCHEMA_VERSION} it was made with as a collection property. A
 * collection of schema version 1 is rebuilt in the current layout at start-up, its rows copied with
 * their ids and vectors ({@link migrateCollection}). A collection from a newer or unknown version, or
 * one whose dimension, fields, analyzer or metric differ from what this Loupe expects, stops start-up
 * with a clear error: writing into a mismatched collection would lose or corrupt data silently.
 *
 * Every collection also records the model whose embeddings it holds ({@link MODEL_ID_PROPERTY}); given the
 * pack's model id, {@link ensureCollections} refuses collections of another model (a pack switch is a
 * migration, see `model-catalog.ts`), and gives collections from before the property one.
 *
 * Schema version 2 added `ocr_text` (text read in the media), `search_text` (what is textual about a
 * record, composed by the store at write time, see {@link composeSearchText}, analyzed with
 * {@link SEARCH_ANALYZER_PARAMS}) and `search_sparse`, the BM25 output Milvus computes from
 * `search_text`, indexed for BM25 text search.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DataType,
  type FieldType,
  type FunctionObject,
  FunctionType,
  LoadState,
  type MilvusClient,
  type RowData,
} from "@zilliz/milvus2-sdk-node";
import { StoreError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { quoteExpressionString } from "./filter.ts";
import { assertOk, callMilvus, DEFAULT_MILVUS_LONG_TIMEOUT_MS, statusCode } from "./milvus-client.ts";
import { RECORD_KINDS, type RecordKind } from "./record-id.ts";

/** Version of the collection layout. Bump it whenever a field, type or length changes. */
export const SCHEMA_VERSION = 2;
/** The schema version {@link migrateCollection} rebuilds from. */
export const MIGRATABLE_SCHEMA_VERSION = 1;
/** Collection property holding the schema version. */
export const SCHEMA_VERSION_PROPERTY = "loupe.schema_version";
/** Collection property holding the record kind. */
export const KIND_PROPERTY = "loupe.kind";
/**
 * Collection property holding the id of the model whose embeddings the collection stores. Set when the
 * collection is made; a collection from before it is given the `model_id` of its rows (or, empty, the
 * current pack's) at start-up.
 */
export const MODEL_ID_PROPERTY = "loupe.model_id";

/** Similarity metrics Loupe supports; both rank larger scores first. */
export type MetricType = "COSINE" | "IP";
/** Vector index types Loupe supports. */
export type IndexType = "AUTOINDEX" | "HNSW";

/** Default collection name prefix. */
export const DEFAULT_COLLECTION_PREFIX = "loupe";
/** The primary key of a record: the tenant and the record id, which contain no `/`. */
export function primaryKey({ tenant, id }: { tenant: string; id: string }): string {
  return `${tenant}/${id}`;
}

/** Collection prefixes: a Milvus name start, short enough for the longest suffix. */
export const COLLECTION_PREFIX_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** @throws StoreError when `prefix` does not match {@link COLLECTION_PREFIX_PATTERN}. */
export function assertValidCollectionPrefix(prefix: string): void {
  if (!COLLECTION_PREFIX_PATTERN.test(prefix)) {
    throw new StoreError(
      `Invalid collection prefix ${JSON.stringify(prefix)}: use letters, digits and _, not starting with a digit, at most 64 characters.`,
      { code: "store_config_invalid", status: 500, context: { collectionPrefix: prefix } },
    );
  }
}

const COLLECTION_SUFFIX: Record<RecordKind, string> = {
  image: "images",
  video_segment: "video_segments",
  triple: "triples",
  region: "regions",
};

/** Vector fields of each kind; the first is the default for search. */
export const VECTOR_FIELDS = {
  image: ["vector"],
  video_segment: ["vector"],
  triple: ["image_vector", "question_vector"],
  region: ["vector"],
} as const satisfies Record<RecordKind, readonly string[]>;

/** A vector field of some kind. */
export type VectorFieldName = (typeof VECTOR_FIELDS)[RecordKind][number];

/**
 * Longest value of each VarChar field, in UTF-8 bytes. Inputs are checked against these before a write,
 * so an oversized caption is a clear validation error rather than a Milvus rejection.
 */
export const VARCHAR_MAX_BYTES = {
  pk: 256,
  id: 64,
  tenant: 128,
  model_id: 256,
  media_ref: 2048,
  source: 256,
  text: 8192,
  video_id: 128,
  keyframe_ref: 2048,
  question: 2048,
  answer: 8192,
  parent_id: 64,
  parent_kind: 16,
  label: 128,
  ocr_text: 16_384,
  // Milvus's longest VarChar: room for text, OCR text, question and answer together.
  search_text: 65_535,
} as const;

/** The field holding what is textual about a record, analyzed for BM25 and `text_match`. */
export const SEARCH_TEXT_FIELD = "search_text";
/** The sparse vector Milvus computes from {@link SEARCH_TEXT_FIELD} with its BM25 function. */
export const SEARCH_SPARSE_FIELD = "search_sparse";
/** Name of the BM25 function of every collection. */
export const SEARCH_BM25_FUNCTION = "search_bm25";
/**
 * Analyzer of {@link SEARCH_TEXT_FIELD}: jieba splits Chinese into words (and English on spaces and
 * punctuation), then everything is lower-cased. Milvus Lite (with the `jieba` package) and a Milvus server
 * accept the same parameters and tokenize alike.
 */
export const SEARCH_ANALYZER_PARAMS = { tokenizer: "jieba", filter: ["lowercase"] } as const;
/** Index of {@link SEARCH_SPARSE_FIELD}. */
export const SPARSE_INDEX = { index_type: "SPARSE_INVERTED_INDEX", metric_type: "BM25" } as const;

const HAN_RANGE = "\\u3400-\\u9fff\\uf900-\\ufaff";
const HAN_BEFORE_LATIN = new RegExp(`([${HAN_RANGE}])(?=[A-Za-z0-9])`, "gu");
const LATIN_BEFORE_HAN = new RegExp(`([A-Za-z0-9])(?=[${HAN_RANGE}])`, "gu");

/**
 * `text` with a space between a Han character and a Latin letter or digit next to it. The analyzer's
 * jieba keeps such a run as one token (`错误0x800776C3` is neither `错误` nor `0x800776C3`), and Chinese
 * text, OCR's especially, often has no space there; the stored search text and every query text are
 * spaced alike, so either way of writing finds the other.
 */
export function spaceScripts(text: string): string {
  return text.replace(HAN_BEFORE_LATIN, "$1 ").replace(LATIN_BEFORE_HAN, "$1 ");
}

/**
 * The searchable text of a row: its `text`, `ocr_text`, and a triple's `question` and `answer`, the
 * non-empty ones joined by newlines, in Unicode NFKC form (so a full-width "Ｅ１２３４" is found as
 * "E1234") and spaced between scripts ({@link spaceScripts}), cut at a character boundary to
 * {@link VARCHAR_MAX_BYTES}.search_text bytes.
 */
export function composeSearchText(row: {
  text?: unknown;
  ocr_text?: unknown;
  question?: unknown;
  answer?: unknown;
}): string {
  const parts = [row.text, row.ocr_text, row.question, row.answer]
    .filter((part): part is string => typeof part === "string" && part.trim().length > 0)
    .map((part) => spaceScripts(part.normalize("NFKC")));
  return capUtf8(parts.join("\n"), VARCHAR_MAX_BYTES.search_text);
}

/** `text` cut to at most `maxBytes` bytes of UTF-8, never inside a character. */
export function capUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, "utf8") <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char, "utf8");
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return text.slice(0, end);
}

/** Largest `metadata` JSON, in UTF-8 bytes (Milvus caps a JSON value at 64 KiB). */
export const METADATA_MAX_BYTES = 65_536;

/** HNSW build parameters: Milvus's usual defaults, fine up to the million-vector scale of Lite. */
export const HNSW_BUILD_PARAMS = { M: 16, efConstruction: 200 } as const;

/**
 * Name of the collection holding records of `kind`: `<prefix>_<kind>` for the first model a prefix was
 * used with, `<prefix>_<kind>__<model slug>` for the collections a pack switch makes for `model`
 * ({@link modelSlug}).
 */
export function collectionName({
  prefix = DEFAULT_COLLECTION_PREFIX,
  kind,
  model,
}: {
  prefix?: string;
  kind: RecordKind;
  model?: string;
}): string {
  const base = `${prefix}_${COLLECTION_SUFFIX[kind]}`;
  return model === undefined ? base : `${base}__${modelSlug(model)}`;
}

/** The collection names of every kind, as {@link collectionName} makes them. */
export function collectionNames({
  prefix = DEFAULT_COLLECTION_PREFIX,
  model,
}: {
  prefix?: string;
  model?: string;
}): Record<RecordKind, string> {
  return {
    image: collectionName({ prefix, kind: "image", model }),
    video_segment: collectionName({ prefix, kind: "video_segment", model }),
    triple: collectionName({ prefix, kind: "triple", model }),
    region: collectionName({ prefix, kind: "region", model }),
  };
}

/**
 * A model id as a part of a collection name: lower-case letters, digits and `_` (at most 48), then 8 hex
 * characters of its sha256, so ids that read alike (`a+b`, `a-b`) still name different collections.
 */
export function modelSlug(modelId: string): string {
  const readable = modelId
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 48);
  const digest = createHash("sha256").update(modelId, "utf8").digest("hex").slice(0, 8);
  return `${readable.length > 0 ? `${readable}_` : ""}${digest}`;
}

function varchar(name: keyof typeof VARCHAR_MAX_BYTES, extra: Partial<FieldType> = {}): FieldType {
  return { name, data_type: DataType.VarChar, max_length: VARCHAR_MAX_BYTES[name], ...extra };
}

/** The explicit field list of the collection for `kind`. */
export function collectionFields({ kind, dimension }: { kind: RecordKind; dimension: number }): FieldType[] {
  const common: FieldType[] = [
    // The key is `<tenant>/<id>`: an upsert can only ever replace a row of its own tenant, whatever id
    // it carries ("/" occurs in neither part, so the pair is unambiguous).
    varchar("pk", { is_primary_key: true, autoID: false, description: "<tenant>/<record id>" }),
    // Search hits from Milvus Lite omit the primary key, so the record id is stored on its own and
    // always requested.
    varchar("id", { description: "deterministic record id" }),
    varchar("tenant", { is_partition_key: true }),
    varchar("model_id"),
    varchar("media_ref"),
    varchar("source"),
    { name: "created_at", data_type: DataType.Int64, description: "ms since the Unix epoch" },
    varchar("text", { description: "captions and tags" }),
    { name: "metadata", data_type: DataType.JSON },
    varchar("ocr_text", { description: "text read in the media" }),
    varchar("search_text", {
      description: "text, OCR text, question and answer; composed by Loupe",
      enable_analyzer: true,
      enable_match: true,
      analyzer_params: { ...SEARCH_ANALYZER_PARAMS, filter: [...SEARCH_ANALYZER_PARAMS.filter] },
    }),
    {
      name: SEARCH_SPARSE_FIELD,
      data_type: DataType.SparseFloatVector,
      is_function_output: true,
      description: "BM25 of search_text",
    },
  ];
  const vectors: FieldType[] = VECTOR_FIELDS[kind].map((name) => ({
    name,
    data_type: DataType.FloatVector,
    dim: dimension,
  }));
  if (kind === "video_segment") {
    return [
      ...common,
      varchar("video_id"),
      { name: "start_s", data_type: DataType.Float },
      { name: "end_s", data_type: DataType.Float },
      varchar("keyframe_ref"),
      ...vectors,
    ];
  }
  if (kind === "triple") return [...common, varchar("question"), varchar("answer"), ...vectors];
  if (kind === "region") {
    return [
      ...common,
      varchar("parent_id", { description: "the image or video segment the region is part of" }),
      varchar("parent_kind"),
      varchar("label", { description: "the detector's class" }),
      { name: "attributes", data_type: DataType.JSON, description: "attribute name → value" },
      { name: "score", data_type: DataType.Float, description: "detection score" },
      { name: "box_x0", data_type: DataType.Float },
      { name: "box_y0", data_type: DataType.Float },
      { name: "box_x1", data_type: DataType.Float },
      { name: "box_y1", data_type: DataType.Float },
      ...vectors,
    ];
  }
  return [...common, ...vectors];
}

/** The BM25 function of every collection: Milvus computes `search_sparse` from `search_text`. */
export function collectionFunctions(): FunctionObject[] {
  return [
    {
      name: SEARCH_BM25_FUNCTION,
      description: "BM25 of the searchable text",
      type: FunctionType.BM25,
      input_field_names: [SEARCH_TEXT_FIELD],
      output_field_names: [SEARCH_SPARSE_FIELD],
      params: {},
    },
  ];
}

/**
 * Scalar fields of `kind` that queries return, in schema order: all but the key, the vectors and the
 * search fields (which callers never see).
 */
export function scalarFieldNames(kind: RecordKind): string[] {
  const hidden: readonly string[] = ["pk", SEARCH_TEXT_FIELD, SEARCH_SPARSE_FIELD, ...VECTOR_FIELDS[kind]];
  return collectionFields({ kind, dimension: 2 })
    .map((field) => field.name)
    .filter((name) => !hidden.includes(name));
}

/**
 * Keys a search hit of the SDK carries of its own (the similarity is `score`); a field of the same name,
 * returned with the hit, would overwrite it. Such fields (a region's detection `score`) are read back by id.
 */
const SEARCH_HIT_KEYS: readonly string[] = ["score"];

/** The fields a search asks back with its hits: the scalar fields that no key of the hit shadows. */
export function searchFieldNames(kind: RecordKind): string[] {
  return scalarFieldNames(kind).filter((name) => !SEARCH_HIT_KEYS.includes(name));
}

/** The scalar fields of `kind` a search hit shadows (see {@link searchFieldNames}). */
export function shadowedFieldNames(kind: RecordKind): string[] {
  return scalarFieldNames(kind).filter((name) => SEARCH_HIT_KEYS.includes(name));
}

/** The fields a row is written with: every field but `search_sparse`, which Milvus computes. */
export function writtenFieldNames(kind: RecordKind): string[] {
  return collectionFields({ kind, dimension: 2 })
    .map((field) => field.name)
    .filter((name) => name !== SEARCH_SPARSE_FIELD);
}

/** Options of {@link ensureCollections}. */
export interface EnsureCollectionsOptions {
  client: MilvusClient;
  prefix?: string;
  /** The collection of each kind; {@link collectionName} of `prefix` when absent. */
  names?: Readonly<Record<RecordKind, string>>;
  /**
   * The model whose embeddings Loupe will write and search with: new collections record it, and
   * collections holding another model's stop start-up (`store_model_mismatch`). Absent: not checked.
   */
  modelId?: string;
  /** Where the pack of {@link EnsureCollectionsOptions.modelId} is, for the fix an error names. */
  modelPack?: string;
  /** Embedding dimension (from the model pack). */
  dimension: number;
  metric?: MetricType;
  indexType?: IndexType;
  /** Deadline of each Milvus call. */
  timeoutMs: number;
  /**
   * Deadline of calls whose work grows with the rows they touch (counting, reading a page of rows with
   * their vectors, flushing) during a migration (`MILVUS_LONG_TIMEOUT_MS`).
   */
  longTimeoutMs?: number;
  /** Rows per page a migration reads and writes. */
  migrationPageRows?: number;
  /** For error messages. */
  address?: string;
  logger?: Logger;
}

/** What {@link ensureCollections} did. */
export interface EnsureCollectionsResult {
  /** Collections made by this call. */
  created: string[];
  /** Collections that existed and matched the expected layout. */
  existing: string[];
  /** Indexes (collection.field) made by this call. */
  indexesCreated: string[];
  /** Collections rebuilt from an older schema version by this call (or whose rebuild it finished). */
  migrated: string[];
  /** The model the collections hold embeddings of; absent when none is recorded or known. */
  modelId?: string;
  /** Collections from before model ids were recorded, given one by this call (absent when none). */
  adopted?: string[];
}

interface DescribedField {
  name: string;
  data_type?: string;
  dataType?: number;
  is_primary_key?: boolean;
  is_partition_key?: boolean;
  is_function_output?: boolean;
  dim?: string | number;
  max_length?: string | number;
  enable_analyzer?: unknown;
  enable_match?: unknown;
  analyzer_params?: unknown;
}

interface DescribedFunction {
  name?: string;
  type?: unknown;
  input_field_names?: readonly string[];
  output_field_names?: readonly string[];
}

const INDEX_NOT_FOUND = 700;
/** Default of {@link EnsureCollectionsOptions.migrationPageRows}. */
export const DEFAULT_MIGRATION_PAGE_ROWS = 256;
/**
 * Query parameters that make Milvus return rows in primary-key order, as its query iterators do: Milvus
 * Lite sorts by key when `iterator` is set, and a Milvus server reduces segments by key for iterators.
 */
export const KEY_ORDER_PARAMS = { iterator: true, reduce_stop_for_best: true } as const;

/** The name under which a collection is rebuilt in the current layout before it replaces the old one. */
export function migratingCollectionName(name: string): string {
  return `${name}__v${SCHEMA_VERSION}_migrating`;
}

/** What each step of {@link ensureCollections} works with. */
interface CollectionContext {
  client: MilvusClient;
  kind: RecordKind;
  dimension: number;
  /** Recorded in the collections this context makes. */
  modelId: string | undefined;
  metric: MetricType;
  indexType: IndexType;
  timeoutMs: number;
  longTimeoutMs: number;
  migrationPageRows: number;
  address: string | undefined;
  logger: Logger | undefined;
}

function callOn(context: CollectionContext, name: string) {
  return <T>(what: string, fn: () => Promise<T>, { unchecked = false, long = false } = {}) =>
    callMilvus({
      what: `${what} ${name}`,
      timeoutMs: long ? context.longTimeoutMs : context.timeoutMs,
      address: context.address,
      call: fn,
      unchecked,
      ...(long ? { timeoutSetting: "MILVUS_LONG_TIMEOUT_MS" } : {}),
    });
}

/**
 * Makes sure the collection of every kind exists with the expected layout, have their vector and BM25 indexes,
 * and are loaded; collections of schema version 1 are migrated first ({@link migrateCollection}), and a
 * migration cut short by a crash is finished or started again. Idempotent: a second call creates
 * nothing and changes nothing. Call it at every start-up, since Milvus Lite does not keep load state
 * across restarts.
 *
 * @throws StoreError with code `store_model_mismatch` when an existing collection holds another model's
 *   embeddings than `modelId`; `store_schema_mismatch` when an existing collection has an unknown schema
 *   version, or another dimension, field list, analyzer or metric; `store_migration_failed` when a copy
 *   does not hold every row; `store_unavailable` / `store_timeout` when Milvus does not answer.
 */
export async function ensureCollections({
  client,
  prefix = DEFAULT_COLLECTION_PREFIX,
  names,
  modelId,
  modelPack,
  dimension,
  metric = "COSINE",
  indexType = "AUTOINDEX",
  timeoutMs,
  longTimeoutMs = Math.max(timeoutMs, DEFAULT_MILVUS_LONG_TIMEOUT_MS),
  migrationPageRows = DEFAULT_MIGRATION_PAGE_ROWS,
  address,
  logger,
}: EnsureCollectionsOptions): Promise<EnsureCollectionsResult> {
  assertValidCollectionPrefix(prefix);
  const result: EnsureCollectionsResult = {
    created: [],
    existing: [],
    indexesCreated: [],
    migrated: [],
  };
  const adopted: string[] = [];
  const models = new Map<string, string>();
  for (const kind of RECORD_KINDS) {
    const name = names?.[kind] ?? collectionName({ prefix, kind });
    const context: CollectionContext = {
      client,
      kind,
      dimension,
      modelId,
      metric,
      indexType,
      timeoutMs,
      longTimeoutMs,
      migrationPageRows,
      address,
      logger,
    };
    const call = callOn(context, name);
    const exists = async (collection: string) =>
      (
        await call("hasCollection", () =>
          client.hasCollection({ collection_name: collection, timeout: timeoutMs }),
        )
      ).value === true;

    let has = await exists(name);
    const migrating = migratingCollectionName(name);
    if (await exists(migrating)) {
      if (has) {
        // A copy cut short: the original still holds every row, so the copy is made again if needed.
        logger?.warn({ collection: name, leftover: migrating }, "dropping an unfinished migration copy");
        await call("dropCollection", () =>
          client.dropCollection({ collection_name: migrating, timeout: timeoutMs }),
        );
      } else {
        // The original is dropped only once the copy holds every row: the rename is all that was left.
        logger?.warn({ collection: name, from: migrating }, "finishing a migration: renaming the copy");
        await renameCollection(context, migrating, name);
        result.migrated.push(name);
        has = true;
      }
    }

    if (has) {
      const version = await schemaVersionOf(context, name);
      if (version === String(MIGRATABLE_SCHEMA_VERSION)) {
        await migrateCollection(context, name);
        result.migrated.push(name);
      } else if (!result.migrated.includes(name)) {
        result.existing.push(name);
      }
    } else {
      const created = await createLoupeCollection(context, name).then(
        () => true,
        (error: unknown) => {
          // Another Loupe sharing this Milvus created it first: check it like any existing collection.
          if (error instanceof StoreError && /already exist/i.test(error.message)) return false;
          throw error;
        },
      );
      if (created) {
        result.created.push(name);
        logger?.info({ collection: name, dimension, schemaVersion: SCHEMA_VERSION }, "created collection");
      } else {
        result.existing.push(name);
      }
    }

    const described = await call("describeCollection", () =>
      client.describeCollection({ collection_name: name, timeout: timeoutMs }),
    );
    // Checked before the layout, so a pack of another size is told to migrate, not that dimensions differ.
    const held = await collectionModel({ context, name, properties: described.properties ?? [] });
    if (held.adopted) adopted.push(name);
    if (held.modelId !== undefined) models.set(name, held.modelId);
    if (modelId !== undefined && held.modelId !== undefined && held.modelId !== modelId) {
      throw modelMismatch({ name, held: held.modelId, wanted: modelId, modelPack });
    }
    verifyLayout({
      name,
      kind,
      dimension,
      properties: described.properties ?? [],
      fields: (described.schema?.fields ?? []) as DescribedField[],
      functions: (described.schema?.functions ?? []) as DescribedFunction[],
    });

    result.indexesCreated.push(...(await ensureIndexes(context, name)));
    await loadAndWait({ client, name, timeoutMs, address });
  }
  const distinct = [...new Set(models.values())];
  if (distinct.length > 1) {
    throw new StoreError(
      `The collections hold embeddings of different models (${[...models].map(([name, id]) => `${name}: ${id}`).join(", ")}); each set of collections must hold one model's. Migrate to one pack with \`loupe models migrate --to <pack>\`.`,
      { code: "store_model_mismatch", status: 500, context: { models: Object.fromEntries(models) } },
    );
  }
  const held = distinct[0] ?? modelId;
  if (held !== undefined) result.modelId = held;
  if (adopted.length > 0) result.adopted = adopted;
  return result;
}

/** The error of collections that hold another model's embeddings than the pack Loupe was given. */
function modelMismatch({
  name,
  held,
  wanted,
  modelPack,
}: {
  name: string;
  held: string;
  wanted: string;
  modelPack: string | undefined;
}): StoreError {
  return new StoreError(
    `Collection ${name} holds embeddings of model ${JSON.stringify(held)}, but the model pack${modelPack === undefined ? "" : ` at ${modelPack}`} is model ${JSON.stringify(wanted)}; searching one model's vectors with another's would answer nonsense. Switch packs with \`loupe models migrate --to ${modelPack ?? "<pack>"}\` (it re-embeds every item into collections for ${JSON.stringify(wanted)}), or point LOUPE_MODEL_PACK back at the pack of ${JSON.stringify(held)}.`,
    {
      code: "store_model_mismatch",
      status: 500,
      context: { collection: name, collectionModel: held, packModel: wanted },
    },
  );
}

/**
 * The model a collection holds: its {@link MODEL_ID_PROPERTY}, or, when a model is being checked, for a
 * collection from before model ids were recorded, the `model_id` of one of its rows (the current model
 * when it has none), which is then recorded (adopted). A server that cannot alter properties leaves it unrecorded: it is read again from
 * the rows at the next start-up.
 */
async function collectionModel({
  context,
  name,
  properties,
}: {
  context: CollectionContext;
  name: string;
  properties: ReadonlyArray<{ key: string; value: unknown }>;
}): Promise<{ modelId: string | undefined; adopted: boolean }> {
  const recorded = properties.find((pair) => pair.key === MODEL_ID_PROPERTY)?.value;
  if (typeof recorded === "string" && recorded.length > 0) return { modelId: recorded, adopted: false };
  // Without a model to check against, nothing is recorded: the call changes nothing.
  if (context.modelId === undefined) return { modelId: undefined, adopted: false };
  const { client, timeoutMs, logger } = context;
  const call = callOn(context, name);
  await loadAndWait({ client, name, timeoutMs, address: context.address });
  const rows = await call(
    "query",
    () =>
      client.query({
        collection_name: name,
        filter: 'model_id != ""',
        output_fields: ["model_id"],
        limit: 1,
        timeout: context.longTimeoutMs,
      }),
    { long: true },
  );
  const fromRows = rows.data[0]?.model_id;
  const modelId = typeof fromRows === "string" && fromRows.length > 0 ? fromRows : context.modelId;
  try {
    await call("alterCollectionProperties", () =>
      client.alterCollectionProperties({
        collection_name: name,
        properties: { [MODEL_ID_PROPERTY]: modelId },
        timeout: timeoutMs,
      }),
    );
    logger?.info({ collection: name, modelId }, "recorded the model the collection holds");
  } catch (error) {
    logger?.warn({ err: error, collection: name, modelId }, "could not record the collection's model id");
  }
  return { modelId, adopted: true };
}

/** The value of the schema version property of an existing collection (undefined when it has none). */
async function schemaVersionOf(context: CollectionContext, name: string): Promise<string | undefined> {
  const described = await callOn(context, name)("describeCollection", () =>
    context.client.describeCollection({ collection_name: name, timeout: context.timeoutMs }),
  );
  const value = (described.properties ?? []).find((pair) => pair.key === SCHEMA_VERSION_PROPERTY)?.value;
  return value === undefined ? undefined : String(value);
}

/** Creates an empty collection of the current layout (no indexes yet). */
async function createLoupeCollection(context: CollectionContext, name: string): Promise<void> {
  const { client, kind, dimension, timeoutMs, modelId } = context;
  await callOn(context, name)("createCollection", () =>
    client.createCollection({
      collection_name: name,
      description: `Loupe ${COLLECTION_SUFFIX[kind].replace("_", " ")}, schema v${SCHEMA_VERSION}`,
      fields: collectionFields({ kind, dimension }),
      functions: collectionFunctions(),
      properties: {
        [SCHEMA_VERSION_PROPERTY]: String(SCHEMA_VERSION),
        [KIND_PROPERTY]: kind,
        ...(modelId === undefined ? {} : { [MODEL_ID_PROPERTY]: modelId }),
      },
      consistency_level: "Strong",
      timeout: timeoutMs,
    }),
  );
}

async function renameCollection(context: CollectionContext, from: string, to: string): Promise<void> {
  await callOn(context, from)("renameCollection", () =>
    context.client.renameCollection({
      collection_name: from,
      new_collection_name: to,
      timeout: context.timeoutMs,
    }),
  );
}

/**
 * Creates the indexes `name` lacks (each vector field with the configured type and metric, the BM25
 * field as a sparse inverted index) and checks the metric of those it has.
 *
 * @returns the indexes made, as `collection.field`.
 */
async function ensureIndexes(context: CollectionContext, name: string): Promise<string[]> {
  const { client, kind, metric, indexType, timeoutMs, logger } = context;
  const call = callOn(context, name);
  const made: string[] = [];
  const wanted = [
    ...VECTOR_FIELDS[kind].map((field) => ({
      field,
      index_type: indexType as string,
      metric_type: metric as string,
      params: indexType === "HNSW" ? { ...HNSW_BUILD_PARAMS } : undefined,
    })),
    { field: SEARCH_SPARSE_FIELD, ...SPARSE_INDEX, params: undefined },
  ];
  for (const { field, index_type, metric_type, params: buildParams } of wanted) {
    const indexes = await call(
      "describeIndex",
      () => client.describeIndex({ collection_name: name, field_name: field, timeout: timeoutMs }),
      { unchecked: true },
    );
    const code = statusCode(indexes);
    const descriptions = indexes.index_descriptions ?? [];
    if (code === INDEX_NOT_FOUND || (code === 0 && descriptions.length === 0)) {
      await call(`createIndex ${field} on`, () =>
        client.createIndex({
          collection_name: name,
          field_name: field,
          index_name: field,
          index_type,
          metric_type,
          ...(buildParams === undefined ? {} : { params: buildParams }),
          timeout: timeoutMs,
        }),
      );
      made.push(`${name}.${field}`);
      logger?.info({ collection: name, field, indexType: index_type, metric: metric_type }, "created index");
      continue;
    }
    if (code !== 0) assertOk(indexes, `describeIndex ${name}`);
    const params = Object.fromEntries(
      (descriptions[0]?.params ?? []).map((pair) => [pair.key, String(pair.value)]),
    );
    if (params.metric_type !== undefined && params.metric_type !== metric_type) {
      throw new StoreError(
        field === SEARCH_SPARSE_FIELD
          ? `Collection ${name} indexes ${field} with metric ${params.metric_type}; BM25 text search needs ${metric_type}. Drop that index (Loupe makes it again at start-up).`
          : `Collection ${name} is indexed with metric ${params.metric_type}, but Loupe is configured for ${metric}. Set LOUPE_METRIC=${params.metric_type}, or use a new LOUPE_COLLECTION_PREFIX and re-index.`,
        {
          code: "store_schema_mismatch",
          status: 500,
          context: { collection: name, field, found: params.metric_type, expected: metric_type },
        },
      );
    }
    if (field !== SEARCH_SPARSE_FIELD && params.index_type !== undefined && params.index_type !== indexType) {
      logger?.warn(
        { collection: name, field, found: params.index_type, configured: indexType },
        "collection keeps the index type it was created with",
      );
    }
  }
  return made;
}

/**
 * Rebuilds a collection of schema version {@link MIGRATABLE_SCHEMA_VERSION} in the current layout,
 * keeping every row with its key, id and vectors: a copy `<name>__v2_migrating` is made with the current
 * schema, every row is copied into it in primary-key pages (its `search_text` composed as the store
 * composes it; `ocr_text` empty), the copy's count is checked against the original's, and only then is
 * the original dropped and the copy renamed to its name. A crash at any step leaves either the original
 * (the next start-up drops the unfinished copy and copies again) or the complete copy alone (the next
 * start-up renames it). Milvus Lite cannot add fields to a collection, hence the rebuild.
 *
 * @throws StoreError `store_migration_failed` when the copy does not hold every row (nothing is dropped).
 */
async function migrateCollection(context: CollectionContext, name: string): Promise<void> {
  const { client, kind, timeoutMs, longTimeoutMs, migrationPageRows, logger } = context;
  const target = migratingCollectionName(name);
  const call = callOn(context, name);
  const callTarget = callOn(context, target);
  const started = Date.now();

  const described = await call("describeCollection", () =>
    client.describeCollection({ collection_name: name, timeout: timeoutMs }),
  );
  const oldNames = new Set((described.schema?.fields ?? []).map((field) => field.name));
  const readNames = writtenFieldNames(kind).filter((field) => oldNames.has(field));
  for (const required of ["pk", "id", "tenant", ...VECTOR_FIELDS[kind]]) {
    if (!oldNames.has(required)) {
      throw mismatch(
        `Collection ${name} (schema v${MIGRATABLE_SCHEMA_VERSION}) has no field ${required}; it cannot be migrated.`,
        { collection: name, field: required },
      );
    }
  }

  await loadAndWait({ client, name, timeoutMs, address: context.address });
  const total = await countAll(context, name);
  logger?.info(
    { collection: name, rows: total, from: MIGRATABLE_SCHEMA_VERSION, to: SCHEMA_VERSION },
    "migrating collection to the current schema",
  );
  // Made without a model id: the copy's rows tell which model it holds (adopted like an old collection).
  await createLoupeCollection({ ...context, modelId: undefined }, target);
  await ensureIndexes(context, target);
  await loadAndWait({ client, name: target, timeoutMs, address: context.address });

  let copied = 0;
  let after: string | undefined;
  let lastLogged = Date.now();
  for (;;) {
    const filter = `pk > ${quoteExpressionString(after ?? "")}`;
    const page = await call(
      "query",
      () =>
        client.query({
          collection_name: name,
          filter,
          output_fields: readNames,
          limit: migrationPageRows,
          params: { ...KEY_ORDER_PARAMS },
          timeout: longTimeoutMs,
        }),
      { long: true },
    );
    const rows = page.data as Array<Record<string, unknown>>;
    for (let index = 1; index < rows.length; index += 1) {
      if (String(rows[index - 1]?.pk) >= String(rows[index]?.pk)) {
        throw new StoreError(
          `Milvus answered a paged query of ${name} out of key order; the migration needs a Milvus that orders iterator queries by primary key. Nothing was dropped.`,
          { code: "store_migration_failed", status: 500, context: { collection: name } },
        );
      }
    }
    if (rows.length > 0) {
      const data = rows.map((row) => toWritableRow(kind, row));
      await callTarget(
        "upsert into",
        () => client.upsert({ collection_name: target, data: data as RowData[], timeout: longTimeoutMs }),
        { long: true },
      ).then((response) => {
        if (response.err_index.length > 0) {
          throw new StoreError(
            `Milvus rejected ${response.err_index.length} of ${data.length} rows copied into ${target}. Nothing was dropped.`,
            { code: "store_migration_failed", status: 500, context: { collection: name } },
          );
        }
      });
      copied += rows.length;
      after = String(rows[rows.length - 1]?.pk);
    }
    if (Date.now() - lastLogged >= 5000 || rows.length < migrationPageRows) {
      lastLogged = Date.now();
      logger?.info({ collection: name, copied, total }, "migrating collection: rows copied");
    }
    if (rows.length < migrationPageRows) break;
  }

  await callTarget("flush", () => client.flushSync({ collection_names: [target], timeout: longTimeoutMs }), {
    long: true,
  });
  const [inCopy, inOriginal] = [await countAll(context, target), await countAll(context, name)];
  if (inCopy !== inOriginal || copied !== inOriginal) {
    throw new StoreError(
      `Migrating collection ${name} copied ${copied} rows and the copy holds ${inCopy}, but the original holds ${inOriginal}. Nothing was dropped; the next start-up copies again. Make sure no other Loupe writes to this Milvus during start-up.`,
      {
        code: "store_migration_failed",
        status: 500,
        context: { collection: name, copied, inCopy, inOriginal },
      },
    );
  }
  await call("dropCollection", () => client.dropCollection({ collection_name: name, timeout: timeoutMs }));
  await renameCollection(context, target, name);
  logger?.info(
    { collection: name, rows: copied, ms: Date.now() - started, schemaVersion: SCHEMA_VERSION },
    "migrated collection",
  );
}

/**
 * A row read back from a collection (of this or an older layout), as the current layout writes it:
 * every written field of `kind` present (VarChars absent in the old layout empty, numbers as numbers,
 * metadata as an object), and `search_text` composed again.
 */
export function toWritableRow(kind: RecordKind, row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of collectionFields({ kind, dimension: 2 })) {
    const value = row[field.name];
    if (field.name === SEARCH_TEXT_FIELD || field.name === SEARCH_SPARSE_FIELD) continue;
    if (field.data_type === DataType.VarChar) out[field.name] = typeof value === "string" ? value : "";
    else if (field.data_type === DataType.Int64 || field.data_type === DataType.Float)
      out[field.name] = Number(value ?? 0);
    else if (field.data_type === DataType.JSON)
      out[field.name] = typeof value === "string" ? parseJsonObject(value) : (value ?? {});
    else out[field.name] = value;
  }
  out[SEARCH_TEXT_FIELD] = composeSearchText(out);
  return out;
}

function parseJsonObject(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/** Rows in a whole collection (a long call: Milvus Lite counts row by row). */
async function countAll(context: CollectionContext, name: string): Promise<number> {
  const response = await callOn(context, name)(
    "count",
    () =>
      context.client.query({
        collection_name: name,
        filter: "",
        output_fields: ["count(*)"],
        timeout: context.longTimeoutMs,
      }),
    { long: true },
  );
  const value = Number(response.data[0]?.["count(*)"]);
  if (!Number.isFinite(value)) {
    throw new StoreError(`Milvus answered count ${name} without a count.`, {
      code: "store_rejected",
      status: 500,
      context: { collection: name },
    });
  }
  return value;
}

const LOAD_POLL_MS = 100;

/** Loads a collection and waits until Milvus reports it loaded, within `timeoutMs`. */
async function loadAndWait({
  client,
  name,
  timeoutMs,
  address,
}: {
  client: MilvusClient;
  name: string;
  timeoutMs: number;
  address: string | undefined;
}): Promise<void> {
  await callMilvus({
    what: `loadCollection ${name}`,
    timeoutMs,
    address,
    call: () => client.loadCollectionAsync({ collection_name: name, timeout: timeoutMs }),
  });
  // The SDK's own waiting load sleeps 400 ms even after the load is done; polling the state is quicker.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await callMilvus({
      what: `getLoadState ${name}`,
      timeoutMs,
      address,
      call: () => client.getLoadState({ collection_name: name, timeout: timeoutMs }),
    });
    if (state.state === LoadState.LoadStateLoaded) return;
    if (Date.now() > deadline) {
      throw new StoreError(`Collection ${name} is still ${state.state} after ${timeoutMs} ms of loading.`, {
        code: "store_timeout",
        context: { collection: name, state: state.state },
      });
    }
    await sleep(LOAD_POLL_MS);
  }
}

interface VerifyLayoutOptions {
  name: string;
  kind: RecordKind;
  dimension: number;
  properties: ReadonlyArray<{ key: string; value: unknown }>;
  fields: readonly DescribedField[];
  functions: readonly DescribedFunction[];
}

function mismatch(message: string, context: Record<string, unknown>): StoreError {
  return new StoreError(message, { code: "store_schema_mismatch", status: 500, context });
}

function dataTypeName(field: DescribedField | FieldType): string {
  if ("dataType" in field && typeof field.dataType === "number")
    return DataType[field.dataType] ?? String(field.dataType);
  const type = field.data_type;
  return typeof type === "number" ? (DataType[type] ?? String(type)) : String(type);
}

function verifyLayout({ name, kind, dimension, properties, fields, functions }: VerifyLayoutOptions): void {
  const version = properties.find((pair) => pair.key === SCHEMA_VERSION_PROPERTY)?.value;
  const fix =
    "Use a new LOUPE_COLLECTION_PREFIX (and re-index), or drop the old collections after exporting what you need.";
  if (version === undefined) {
    throw mismatch(
      `Collection ${name} exists but was not made by Loupe (no ${SCHEMA_VERSION_PROPERTY} property). ${fix}`,
      {
        collection: name,
      },
    );
  }
  if (String(version) !== String(SCHEMA_VERSION)) {
    throw mismatch(
      `Collection ${name} has schema version ${String(version)}; this Loupe uses version ${SCHEMA_VERSION}. ${fix}`,
      {
        collection: name,
        found: version,
        expected: SCHEMA_VERSION,
      },
    );
  }
  const expected = collectionFields({ kind, dimension });
  const foundNames = fields.map((field) => field.name).sort();
  const expectedNames = expected.map((field) => field.name).sort();
  if (foundNames.join(",") !== expectedNames.join(",")) {
    throw mismatch(
      `Collection ${name} has fields [${foundNames.join(", ")}]; schema v${SCHEMA_VERSION} expects [${expectedNames.join(", ")}]. ${fix}`,
      { collection: name, found: foundNames, expected: expectedNames },
    );
  }
  for (const want of expected) {
    const have = fields.find((field) => field.name === want.name);
    if (have === undefined) continue;
    if (dataTypeName(have) !== dataTypeName(want)) {
      throw mismatch(
        `Collection ${name}: field ${want.name} is ${dataTypeName(have)}, expected ${dataTypeName(want)}. ${fix}`,
        {
          collection: name,
          field: want.name,
        },
      );
    }
    if (want.data_type === DataType.FloatVector && Number(have.dim) !== dimension) {
      throw mismatch(
        `Collection ${name} stores ${String(have.dim)}-dimensional vectors in ${want.name}, but the model pack produces ${dimension}. Use the model pack the collection was built with, or a new LOUPE_COLLECTION_PREFIX and re-index.`,
        { collection: name, field: want.name, found: have.dim, expected: dimension },
      );
    }
  }
  if (
    !fields.find((field) => field.name === "pk")?.is_primary_key ||
    !fields.find((field) => field.name === "tenant")?.is_partition_key
  ) {
    throw mismatch(
      `Collection ${name} does not key on pk or partition on tenant as schema v${SCHEMA_VERSION} requires. ${fix}`,
      {
        collection: name,
      },
    );
  }
  const searchText = fields.find((field) => field.name === SEARCH_TEXT_FIELD);
  const analyzer = parseAnalyzerParams(searchText?.analyzer_params);
  if (
    !isTrue(searchText?.enable_analyzer) ||
    !isTrue(searchText?.enable_match) ||
    canonicalJson(analyzer) !== canonicalJson(SEARCH_ANALYZER_PARAMS)
  ) {
    throw mismatch(
      `Collection ${name}: field ${SEARCH_TEXT_FIELD} must be analyzed (and matchable) with ${JSON.stringify(SEARCH_ANALYZER_PARAMS)}; found analyzer ${JSON.stringify(analyzer ?? null)}, enable_analyzer ${String(searchText?.enable_analyzer)}, enable_match ${String(searchText?.enable_match)}. ${fix}`,
      { collection: name, field: SEARCH_TEXT_FIELD },
    );
  }
  const bm25 = functions.find(
    (fn) =>
      functionTypeName(fn.type) === "BM25" &&
      fn.input_field_names?.join(",") === SEARCH_TEXT_FIELD &&
      fn.output_field_names?.join(",") === SEARCH_SPARSE_FIELD,
  );
  if (bm25 === undefined || !fields.find((field) => field.name === SEARCH_SPARSE_FIELD)?.is_function_output) {
    throw mismatch(
      `Collection ${name} lacks the BM25 function from ${SEARCH_TEXT_FIELD} to ${SEARCH_SPARSE_FIELD} that schema v${SCHEMA_VERSION} requires. ${fix}`,
      { collection: name, functions: functions.map((fn) => fn.name) },
    );
  }
}

/** JSON with object keys sorted, so two servers' key orders compare equal. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "undefined";
}

function isTrue(value: unknown): boolean {
  return value === true || value === "true";
}

/** The analyzer parameters Milvus reports (a JSON string), or undefined when there are none. */
function parseAnalyzerParams(value: unknown): unknown {
  if (typeof value !== "string") return value ?? undefined;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function functionTypeName(type: unknown): string {
  return typeof type === "number" ? (FunctionType[type] ?? String(type)) : String(type);
}
