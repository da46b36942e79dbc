/**
 * What Loupe's HTTP API takes and answers, as the client speaks it. Search results and chat turns are
 * the server's own types (`SearchResultItem`, `ChatResult`, `ChatEvent`); the ingest and job shapes are
 * written out here, as the routes' JSON has them.
 */
import type { ChatRequest, ChatTurn } from "../rag/types.ts";
import type { SearchOptions, SearchResultItem } from "../search/index.ts";
import type { Upload } from "./uploads.ts";

/** Metadata of an ingested item: `tags`, `title`, `source` and any other JSON. */
export type Metadata = Record<string, unknown>;

/** Why an item or a job failed. */
export interface ItemError {
  code: string;
  message: string;
}

/** One item's outcome in an ingest answer, in request order (`index`). */
export interface IngestItemResult {
  index: number;
  status: "stored" | "skipped" | "failed";
  /** The stored id (`img_…`, `vid_…`, `tri_…`); also on skipped items. */
  id?: string;
  error?: ItemError;
  /** The uploaded file's name, for uploads. */
  filename?: string;
  /** The URL the item came from, for URLs. */
  url?: string;
}

/** A stored segment of an ingested video. */
export interface VideoSegmentResult {
  id: string;
  startS: number;
  endS: number;
  keyframeRef: string;
}

/** One video's outcome, with its segments. */
export interface VideoIngestResult extends IngestItemResult {
  /** The span that decoded, in seconds (for a truncated video, less than its header declared). */
  durationSeconds?: number;
  /** True when far fewer frames decoded than the header declared: only the decoded span is stored. */
  truncated?: boolean;
  /** What the header declared, for a truncated video. */
  declaredDurationSeconds?: number;
  segments?: VideoSegmentResult[];
}

/** What a region (an object found in an image or a keyframe) says of itself. */
export interface RegionInfo {
  /** The image or video segment the object is in. */
  parentId: string;
  parentKind: "image" | "video_segment";
  /** Normalized to [0, 1] of the parent's image: x right, y down. */
  box: { x0: number; y0: number; x1: number; y1: number };
  label: string;
  attributes: Record<string, string>;
  score: number;
}

/** One item of `GET /v1/items`. */
export interface ListedItem {
  kind: "image" | "video_segment" | "triple" | "region";
  id: string;
  mediaUrl: string;
  source: string;
  modelId: string;
  createdAt: number;
  text: string;
  metadata: Metadata;
  /** Video segments: the video's id, start and end in seconds. */
  videoId?: string;
  start?: number;
  end?: number;
  /** Triples: the stored question and answer. */
  question?: string;
  answer?: string;
  /** Regions: the object and where it is. */
  region?: RegionInfo;
}

/** What `GET /v1/items` takes: all optional. */
export interface ListItemsRequest {
  /** One kind; images, video segments and triples in turn when absent (regions only when named). */
  kind?: ListedItem["kind"];
  /** The JSON filter of search (the same shape as `SearchRequest.filter`). */
  filter?: unknown;
  /** Most items in the page, 1–1000 (default 100). */
  limit?: number;
  /** The `nextCursor` of the previous page. */
  cursor?: string;
}

/** A page of `GET /v1/items`. */
export interface ItemPage {
  items: ListedItem[];
  /** Absent on the last page. */
  nextCursor?: string;
}

/** State of an ingest job. */
export type JobStatus = "queued" | "running" | "done" | "failed";

/** One item of a job: as in an ingest answer, or `pending` while the job has not reached it. */
export interface JobItem extends Omit<IngestItemResult, "status"> {
  status: IngestItemResult["status"] | "pending";
  /** The path a CLI gave for the item. */
  file?: string;
  detail?: Record<string, unknown>;
}

/** A job as `GET /v1/jobs/{id}` answers it. */
export interface Job {
  id: string;
  kind: string;
  status: JobStatus;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  counts: { total: number; pending: number; done: number; skipped: number; failed: number };
  items: JobItem[];
  error?: ItemError;
}

/**
 * What an ingest endpoint answered: the items at once (200, or 422 when every item failed, the items
 * then carrying their errors), or a job to follow (202, for `async` requests and large batches).
 */
export type IngestAnswer<Item extends IngestItemResult> =
  | { kind: "items"; items: Item[] }
  | { kind: "job"; job: { id: string; status: JobStatus } };

/** Images for `POST /v1/images`: uploads (multipart), or URLs (JSON) the server fetches. */
export type ImagesRequest =
  | { files: ReadonlyArray<{ file: Upload; metadata?: Metadata }> }
  | {
      urls: ReadonlyArray<string | { url: string; metadata?: Metadata }>;
      /** Metadata of every URL without its own. */
      metadata?: Metadata;
    };

/** Videos for `POST /v1/videos`: uploads (multipart) or URLs (JSON), with metadata for all of them. */
export type VideosRequest =
  | { files: readonly Upload[]; metadata?: Metadata }
  | { urls: readonly string[]; metadata?: Metadata };

/** One image-question-answer triple for `POST /v1/triples`. */
export interface TripleItem {
  /** Base64, a data URL, an http(s) URL or a stored image's id. */
  image: string;
  question: string;
  answer: string;
  metadata?: Metadata;
}

/** Options of the ingest calls. */
export interface IngestOptions {
  /** Ask for a job (202) even for a small batch. */
  async?: boolean;
  signal?: AbortSignal;
}

/** A search: text, an image, or both, with the options of `SearchService.search`. */
export interface SearchRequest extends Omit<SearchOptions, "tenant" | "image"> {
  /** An upload (sent as multipart), or base64, a data URL or a stored item's id (sent as JSON). */
  image?: string | Upload;
}

/** An earlier turn of a conversation, its images as in {@link ChatBody}. */
export interface ChatTurnBody extends Omit<ChatTurn, "images"> {
  images?: ReadonlyArray<string | Upload>;
}

/** One chat turn as `POST /v1/chat` takes it: the chain's request without the tenant (the server decides it). */
export interface ChatBody extends Omit<ChatRequest, "tenant" | "signal" | "images" | "history"> {
  /** Attached images: uploads (sent as data URLs), or base64, data URLs or stored items' ids. */
  images?: ReadonlyArray<string | Upload>;
  history?: readonly ChatTurnBody[];
}

/** `POST /v1/recommend`: items like `positive` and unlike `negative` (see docs/recommendations.md). */
export interface RecommendRequest {
  positive: readonly string[];
  negative?: readonly string[];
  kinds?: ReadonlyArray<"image" | "video_segment" | "triple">;
  topK?: number;
  filter?: unknown;
  /** 0 (off) to 1. */
  diversity?: number;
}

/** `POST /v1/events`: one interaction of a user with an item. */
export interface EventBody {
  user: string;
  item: string;
  type: "view" | "like" | "dislike" | "select";
  /** ISO 8601; now when absent. */
  at?: string;
}

/** An event as recorded (`at` in ISO 8601). */
export interface RecordedEvent extends Required<EventBody> {}

/** Options of `GET /v1/users/{user}/recommendations`. */
export type UserRecommendationsRequest = Omit<RecommendRequest, "positive" | "negative">;

/** `GET /v1/users/{user}/recommendations`: results, and what they were ranked from. */
export interface UserRecommendations {
  items: SearchResultItem[];
  profile: { events: number; positives: number; negatives: number };
}

/** Options of a call. */
export interface CallOptions {
  signal?: AbortSignal;
}
