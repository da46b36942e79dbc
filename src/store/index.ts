/**
 * The Milvus layer: the vector store port and its adapter, the embedded Milvus Lite launcher, the
 * collection schemas, deterministic record ids and the typed filter builder.
 */
export {
  COLLECTION_PREFIX_PATTERN,
  collectionFields,
  collectionName,
  DEFAULT_COLLECTION_PREFIX,
  type EnsureCollectionsOptions,
  type EnsureCollectionsResult,
  ensureCollections,
  type IndexType,
  type MetricType,
  primaryKey,
  SCHEMA_VERSION,
  SCHEMA_VERSION_PROPERTY,
  VECTOR_FIELDS,
  type VectorFieldName,
} from "./collections.ts";
export {
  assertValidTenant,
  type BuildFilterExpressionOptions,
  buildFilterExpression,
  FILTER_OPS,
  FILTERABLE_FIELDS,
  type FilterCondition,
  type FilterItem,
  type FilterOp,
  type FilterScalar,
  type FilterSpec,
  type FilterValue,
  filterSpecSchema,
  parseFilterSpec,
  TENANT_PATTERN,
} from "./filter.ts";
export { findFreePort, isPortFree } from "./free-port.ts";
export {
  assertOk,
  callMilvus,
  createMilvusClient,
  DEFAULT_MILVUS_LONG_TIMEOUT_MS,
  DEFAULT_MILVUS_TIMEOUT_MS,
  type MilvusConnectionOptions,
} from "./milvus-client.ts";
export { type MilvusLiteProcess, type StartMilvusLiteOptions, startMilvusLite } from "./milvus-lite.ts";
export {
  type CreateVectorStoreOptions,
  createVectorStore,
  MilvusVectorStore,
  type MilvusVectorStoreOptions,
} from "./milvus-vector-store.ts";
export {
  isValidRecordId,
  RECORD_ID_PATTERN,
  RECORD_KINDS,
  type RecordIdInput,
  type RecordKind,
  recordId,
} from "./record-id.ts";
export type {
  CountRequest,
  DeleteRequest,
  DeleteResult,
  GetRequest,
  ImageRecord,
  ListPage,
  ListRequest,
  QueryRequest,
  RecordBase,
  RecordByKind,
  SearchHit,
  SearchRequest,
  StoredBase,
  StoredByKind,
  StoredImage,
  StoredRecord,
  StoredTriple,
  StoredVideoSegment,
  StoreHealth,
  TripleRecord,
  UpsertRequest,
  UpsertResult,
  Vector,
  VectorFieldOf,
  VectorStore,
  VideoSegmentRecord,
} from "./vector-store.ts";
export { MAX_LIST_LIMIT } from "./vector-store.ts";
