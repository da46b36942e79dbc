/**
 * Ingestion: pipelines that turn uploads, URLs, files and JSONL into stored records, and the job
 * registry that runs them in the background with progress.
 */
export {
  describeImageItem,
  IMAGE_URL_CONTENT_TYPES,
  type ImageFetchSettings,
  ImageIngester,
  type ImageIngesterOptions,
  type ImageIngestItem,
  type ImageMetadata,
  type ImageSource,
  type IngestImagesRequest,
  imageMetadataSchema,
  imageText,
  MAX_TAG_LENGTH,
  MAX_TAGS,
  MAX_TITLE_LENGTH,
  parseImageMetadata,
  RESERVED_METADATA_KEYS,
} from "./image-ingest.ts";
export {
  AUDIT_BATCH,
  type CreateJobRequest,
  createJobRegistry,
  type JobActor,
  type JobAudit,
  type JobCounts,
  type JobError,
  type JobEvent,
  type JobItem,
  type JobItemOutcome,
  type JobItemStatus,
  JobRegistry,
  type JobRegistryOptions,
  type JobRunContext,
  type JobRunner,
  type JobSnapshot,
  type JobStatus,
  type JobWorkItem,
  toJobError,
} from "./jobs.ts";
export {
  assertStorableText,
  findMalformedText,
  type MalformedText,
  toStorableText,
} from "./storable-text.ts";
export {
  type AddedReference,
  type ReleaseReference,
  releaseReferences,
  type StoreRecordsOutcome,
  storeRecords,
} from "./store-records.ts";
