/**
 * How the eval runner talks to Loupe: always through its HTTP API (`/v1/images`, `/v1/videos`,
 * `/v1/triples`, `/v1/search`, `/v1/chat`, `/v1/items`) with Loupe's one HTTP client (`src/client/`), either in-process
 * (`createApp(services).request`) or over the network to a running server (`--url`). One code path for
 * both, so an eval in-process measures what a client of the server gets. This file adds what the runner
 * wants of it: files read by path, ingest in batches the server answers at once.
 */
import {
  apiErrorOf,
  type ChatBody,
  createLoupeClient,
  dataUrlOf as dataUrlOfUpload,
  type IngestAnswer,
  type IngestItemResult,
  type ListedItem,
  type Metadata,
  type RequestLike,
  readUpload,
  type SearchRequest,
  type TripleItem,
  type VideoIngestResult,
} from "../../client/index.ts";
import { AppError } from "../../errors.ts";
import type { ChatResult } from "../../rag/types.ts";
import type { SearchResultItem } from "../../search/index.ts";

export type { ChatBody } from "../../client/index.ts";

/** The calls the runner makes. */
export interface LoupeClient {
  /** Where the answers come from, for reports (`in-process` or the server's URL). */
  readonly target: string;
  ingestImages(items: ReadonlyArray<{ path: string; metadata: Metadata }>): Promise<IngestItemResult[]>;
  ingestVideos(items: ReadonlyArray<{ path: string }>): Promise<VideoIngestResult[]>;
  ingestTriples(items: readonly TripleItem[]): Promise<IngestItemResult[]>;
  search(request: SearchRequest): Promise<SearchResultItem[]>;
  chat(body: ChatBody): Promise<ChatResult>;
  /** Every stored image (`GET /v1/items?kind=image`, page after page), with its metadata. */
  listImages(): Promise<ListedItem[]>;
  /** `POST /v1/detect` on an image (a stored id, a data URL) at the pack's threshold. */
  detect(request: { image: string }): Promise<DetectAnswer>;
}

/** One object of a `/v1/detect` answer, as the runner reads it. */
export interface DetectedObject {
  label: string;
  attributes: Record<string, string>;
  score: number;
  /** Normalized to [0, 1] of the image. */
  box: { x0: number; y0: number; x1: number; y1: number };
}

/** What `/v1/detect` answers. */
export interface DetectAnswer {
  model: string;
  detections: DetectedObject[];
}

/**
 * `POST /v1/detect` as JSON over a path fetch; an error answer becomes the client's `LoupeApiError` (a
 * pack without a detection head answers 503 `not_ready`).
 */
async function postDetect(fetch: RequestLike, request: { image: string }): Promise<DetectAnswer> {
  const response = await fetch("/v1/detect", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  const text = await response.text();
  let body: unknown;
  try {
    body = text === "" ? undefined : (JSON.parse(text) as unknown);
  } catch {
    body = text;
  }
  if (response.status !== 200) {
    throw apiErrorOf({ status: response.status, body, request: "POST /v1/detect" });
  }
  const answer = body as Partial<DetectAnswer> | undefined;
  if (!Array.isArray(answer?.detections)) {
    throw new AppError("bad_server_response", 502, "POST /v1/detect answered 200 without detections.");
  }
  return { model: String(answer.model ?? ""), detections: answer.detections };
}

/** A file as a data URL, the form `/v1/chat`, `/v1/search` and `/v1/triples` take images in. */
export async function dataUrlOf(path: string): Promise<string> {
  return dataUrlOfUpload(await readUpload(path));
}

/** Images per ingest request: under the default `LOUPE_INGEST_SYNC_MAX_ITEMS` (64), so answers come at once. */
const IMAGE_BATCH = 32;
const TRIPLE_BATCH = 32;

/** The items of an answer; a job (202) is refused, since the runner's batches are meant to be answered at once. */
function itemsOf<Item extends IngestItemResult>(answer: IngestAnswer<Item>, what: string): Item[] {
  if (answer.kind === "items") return answer.items;
  throw new AppError(
    "eval_async_ingest",
    500,
    `${what} was queued as a job (202); the eval sends small batches that a server answers at once unless LOUPE_INGEST_SYNC_MAX_ITEMS or LOUPE_VIDEO_SYNC_MAX_SECONDS are set very low. Raise them on the server.`,
  );
}

/** The runner's calls over Loupe's HTTP client (see the module comment). */
function evalClient(http: ReturnType<typeof createLoupeClient>, fetch: RequestLike): LoupeClient {
  return {
    target: http.target,
    async ingestImages(items) {
      const results: IngestItemResult[] = [];
      for (let start = 0; start < items.length; start += IMAGE_BATCH) {
        const batch = items.slice(start, start + IMAGE_BATCH);
        const files = await Promise.all(
          batch.map(async (item) => ({ file: await readUpload(item.path), metadata: item.metadata })),
        );
        const answer = await http.ingestImages({ files });
        for (const item of itemsOf(answer, "POST /v1/images")) {
          results.push({ ...item, index: item.index + start });
        }
      }
      return results;
    },
    async ingestVideos(items) {
      const results: VideoIngestResult[] = [];
      // One video per request: a request's videos are answered together, and long ones become a job.
      for (const [index, item] of items.entries()) {
        const answer = await http.ingestVideos({ files: [await readUpload(item.path)] });
        for (const video of itemsOf(answer, "POST /v1/videos")) results.push({ ...video, index });
      }
      return results;
    },
    async ingestTriples(items) {
      const results: IngestItemResult[] = [];
      for (let start = 0; start < items.length; start += TRIPLE_BATCH) {
        const answer = await http.ingestTriples({ items: items.slice(start, start + TRIPLE_BATCH) });
        for (const item of itemsOf(answer, "POST /v1/triples")) {
          results.push({ ...item, index: item.index + start });
        }
      }
      return results;
    },
    search: (request) => http.search(request),
    chat: (body) => http.chat(body),
    async listImages() {
      const items: ListedItem[] = [];
      for await (const item of http.allItems({ kind: "image", limit: 1000 })) items.push(item);
      return items;
    },
    detect: (request) => postDetect(fetch, request),
  };
}

/**
 * A client over a path fetch: `app.request` for in-process runs, or `fetch(url + path)` for a server.
 */
export function createHttpClient({ fetch, target }: { fetch: RequestLike; target: string }): LoupeClient {
  return evalClient(createLoupeClient({ request: fetch, target }), fetch);
}

/** A client of the Loupe server at `url` (e.g. `http://127.0.0.1:8080`). */
export function createRemoteClient({ url }: { url: string }): LoupeClient {
  const base = url.replace(/\/+$/, "");
  return evalClient(createLoupeClient({ baseUrl: base }), (path, init) =>
    globalThis.fetch(`${base}${path}`, init),
  );
}
