/**
 * The client of Loupe's HTTP API: only the exports of this file are its public surface. It imports
 * nothing of the server (types aside), so a program can talk to Loupe without loading it.
 *
 * @module
 */

export type { ClassifierInfo, ClassifierPrediction, CreateClassifierRequest } from "./classifier-types.ts";
export { apiErrorOf, LoupeApiError, retryAfterSecondsOf } from "./loupe-api-error.ts";
export {
  createLoupeClient,
  type FetchLike,
  type LoupeClient,
  type LoupeClientOptions,
  type RequestLike,
} from "./loupe-client.ts";
export { createSseParser, readSseMessages, type SseMessage } from "./sse.ts";
export type {
  CallOptions,
  ChatBody,
  ChatTurnBody,
  EventBody,
  ImagesRequest,
  IngestAnswer,
  IngestItemResult,
  IngestOptions,
  ItemError,
  ItemPage,
  Job,
  JobItem,
  JobStatus,
  ListedItem,
  ListItemsRequest,
  Metadata,
  RecommendRequest,
  RecordedEvent,
  SearchRequest,
  TripleItem,
  UserRecommendations,
  UserRecommendationsRequest,
  VideoIngestResult,
  VideoSegmentResult,
  VideosRequest,
} from "./types.ts";
export { dataUrlOf, mediaTypeOf, readUpload, type Upload } from "./uploads.ts";
