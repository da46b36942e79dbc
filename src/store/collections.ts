/**
 * Loupe's three Milvus collections (images, video segments, image-question-answer triples): their
 * explicit schemas, and {@link ensureCollections}, which creates, indexes, checks and loads them.
 *
 * Every collection records the {@link SCHEMA_VERSION} it was made with as a collection property. A
 * collection from another version, or one whose dimension, fields or metric differ from what this
 * Loupe expects, stops start-up with a clear error: Milvus cannot change a schema in place, and
 * writing into a mismatched collection would lose or corrupt data silently.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { DataType, type FieldType, LoadState, type MilvusClient } from "@zilliz/milvus2-sdk-node";
import { StoreError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { assertOk, callMilvus, statusCode } from "./milvus-client.ts";
import { RECORD_KINDS, type RecordKind } from "./record-id.ts";

/** Version of the collection layout. Bump it whenever a field, type or length changes. */
export const SCHEMA_VERSION = 1;
/** Collection property holding the schema version. */
export const SCHEMA_VERSION_PROPERTY = "loupe.schema_version";
/** Collection property holding the record kind. */
export const KIND_PROPERTY = "loupe.kind";

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
};

/** Vector fields of each kind; the first is the default for search. */
export const VECTOR_FIELDS = {
  image: ["vector"],
  video_segment: ["vector"],
  triple: ["image_vector", "question_vector"],
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
} as const;

/** Largest `metadata` JSON, in UTF-8 bytes (Milvus caps a JSON value at 64 KiB). */
export const METADATA_MAX_BYTES = 65_536;

/** HNSW build parameters: Milvus's usual defaults, fine up to the million-vector scale of Lite. */
export const HNSW_BUILD_PARAMS = { M: 16, efConstruction: 200 } as const;

/** Name of the collection holding records of `kind`. */
export function collectionName({
  prefix = DEFAULT_COLLECTION_PREFIX,
  kind,
}: {
  prefix?: string;
  kind: RecordKind;
}): string {
  return `${prefix}_${COLLECTION_SUFFIX[kind]}`;
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
  return [...common, ...vectors];
}

/** Scalar fields of `kind`, in schema order (what queries return). */
export function scalarFieldNames(kind: RecordKind): string[] {
  const vectorNames: readonly string[] = VECTOR_FIELDS[kind];
  return collectionFields({ kind, dimension: 2 })
    .map((field) => field.name)
    .filter((name) => name !== "pk" && !vectorNames.includes(name));
}

/** Options of {@link ensureCollections}. */
export interface EnsureCollectionsOptions {
  client: MilvusClient;
  prefix?: string;
  /** Embedding dimension (from the model pack). */
  dimension: number;
  metric?: MetricType;
  indexType?: IndexType;
  /** Deadline of each Milvus call. */
  timeoutMs: number;
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
}

interface DescribedField {
  name: string;
  data_type?: string;
  dataType?: number;
  is_primary_key?: boolean;
  is_partition_key?: boolean;
  dim?: string | number;
  max_length?: string | number;
}

const INDEX_NOT_FOUND = 700;

/**
 * Makes sure the three collections exist with the expected layout, have their vector indexes, and are
 * loaded. Idempotent: a second call creates nothing and changes nothing. Call it at every start-up,
 * since Milvus Lite does not keep load state across restarts.
 *
 * @throws StoreError with code `store_schema_mismatch` when an existing collection has another schema
 *   version, dimension, field list or metric; `store_unavailable` / `store_timeout` when Milvus does not
 *   answer.
 */
export async function ensureCollections({
  client,
  prefix = DEFAULT_COLLECTION_PREFIX,
  dimension,
  metric = "COSINE",
  indexType = "AUTOINDEX",
  timeoutMs,
  address,
  logger,
}: EnsureCollectionsOptions): Promise<EnsureCollectionsResult> {
  assertValidCollectionPrefix(prefix);
  const result: EnsureCollectionsResult = { created: [], existing: [], indexesCreated: [] };
  for (const kind of RECORD_KINDS) {
    const name = collectionName({ prefix, kind });
    const call = <T>(what: string, fn: () => Promise<T>, unchecked = false) =>
      callMilvus({ what: `${what} ${name}`, timeoutMs, address, call: fn, unchecked });

    const has = await call("hasCollection", () =>
      client.hasCollection({ collection_name: name, timeout: timeoutMs }),
    );
    if (has.value) {
      result.existing.push(name);
    } else {
      const created = await call("createCollection", () =>
        client.createCollection({
          collection_name: name,
          description: `Loupe ${COLLECTION_SUFFIX[kind].replace("_", " ")}, schema v${SCHEMA_VERSION}`,
          fields: collectionFields({ kind, dimension }),
          properties: { [SCHEMA_VERSION_PROPERTY]: String(SCHEMA_VERSION), [KIND_PROPERTY]: kind },
          consistency_level: "Strong",
          timeout: timeoutMs,
        }),
      ).then(
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
    verifyLayout({
      name,
      kind,
      dimension,
      properties: described.properties ?? [],
      fields: (described.schema?.fields ?? []) as DescribedField[],
    });

    for (const field of VECTOR_FIELDS[kind]) {
      const indexes = await call(
        "describeIndex",
        () => client.describeIndex({ collection_name: name, field_name: field, timeout: timeoutMs }),
        true,
      );
      const code = statusCode(indexes);
      const descriptions = indexes.index_descriptions ?? [];
      if (code === INDEX_NOT_FOUND || (code === 0 && descriptions.length === 0)) {
        await call(`createIndex ${field} on`, () =>
          client.createIndex({
            collection_name: name,
            field_name: field,
            index_name: field,
            index_type: indexType,
            metric_type: metric,
            ...(indexType === "HNSW" ? { params: { ...HNSW_BUILD_PARAMS } } : {}),
            timeout: timeoutMs,
          }),
        );
        result.indexesCreated.push(`${name}.${field}`);
        logger?.info({ collection: name, field, indexType, metric }, "created vector index");
        continue;
      }
      if (code !== 0) assertOk(indexes, `describeIndex ${name}`);
      const params = Object.fromEntries(
        (descriptions[0]?.params ?? []).map((pair) => [pair.key, String(pair.value)]),
      );
      if (params.metric_type !== undefined && params.metric_type !== metric) {
        throw new StoreError(
          `Collection ${name} is indexed with metric ${params.metric_type}, but Loupe is configured for ${metric}. Set LOUPE_METRIC=${params.metric_type}, or use a new LOUPE_COLLECTION_PREFIX and re-index.`,
          {
            code: "store_schema_mismatch",
            status: 500,
            context: { collection: name, field, found: params.metric_type, expected: metric },
          },
        );
      }
      if (params.index_type !== undefined && params.index_type !== indexType) {
        logger?.warn(
          { collection: name, field, found: params.index_type, configured: indexType },
          "collection keeps the index type it was created with",
        );
      }
    }

    await loadAndWait({ client, name, timeoutMs, address });
  }
  return result;
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

function verifyLayout({ name, kind, dimension, properties, fields }: VerifyLayoutOptions): void {
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
}
