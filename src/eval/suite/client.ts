/**
 * How the eval runner talks to Loupe: always through its HTTP API (`/v1/images`, `/v1/videos`,
 * `/v1/triples`, `/v1/search`, `/v1/chat`), either in-process (`createApp(services).request`) or over the
 * network to a running server (`--url`). One code path for both, so an eval in-process measures what a
 * client of the server gets.
 */
import { readFile } from "node:fs/promises";
import { basename, extname } from "node:path";
import { AppError } from "../../errors.ts";
import type { ChatResult } from "../../rag/types.ts";

/** A fetch that takes a path (`/v1/search`) relative to the server. */
export type PathFetch = (path: string, init: RequestInit) => Promise<Response>;

/** One item's outcome from an ingest route. */
export interface IngestedItem {
  index: number;
  status: "stored" | "skipped" | "failed";
  id?: string;
  error?: { code: string; message: string };
}

/** A video's outcome, with its stored segments. */
export interface IngestedVideo extends IngestedItem {
  segments?: Array<{ id: string; startS: number; endS: number }>;
}

/** A result of `/v1/search` (the fields the runner reads). */
export interface SearchItem {
  kind: string;
  id: string;
  score: number;
  text?: string;
  videoId?: string;
  start?: number;
  end?: number;
}

/** A `/v1/chat` request body (JSON). */
export interface ChatBody {
  question: string;
  images?: string[];
  history?: Array<{ role: "user" | "assistant"; content: string; images?: string[] }>;
  composer?: "auto" | "offline";
}

/** A `/v1/search` request body (JSON). */
export interface SearchBody {
  text?: string;
  image?: string;
  kinds?: string[];
  topK?: number;
}

/** The calls the runner makes. */
export interface LoupeClient {
  /** Where the answers come from, for reports (`in-process` or the server's URL). */
  readonly target: string;
  ingestImages(
    items: ReadonlyArray<{ path: string; metadata: Record<string, unknown> }>,
  ): Promise<IngestedItem[]>;
  ingestVideos(items: ReadonlyArray<{ path: string }>): Promise<IngestedVideo[]>;
  ingestTriples(
    items: ReadonlyArray<{
      image: string;
      question: string;
      answer: string;
      metadata?: Record<string, unknown>;
    }>,
  ): Promise<IngestedItem[]>;
  search(body: SearchBody): Promise<SearchItem[]>;
  chat(body: ChatBody): Promise<ChatResult>;
}

const CONTENT_TYPES: Record<string, string> = {
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".png": "image/png",
  ".webp": "image/webp",
  ".gif": "image/gif",
  ".mp4": "video/mp4",
  ".m4v": "video/mp4",
  ".mov": "video/quicktime",
  ".webm": "video/webm",
  ".mkv": "video/x-matroska",
  ".avi": "video/x-msvideo",
};

/** The content type of a media file by its extension (`application/octet-stream` when unknown). */
export function contentTypeOf(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? "application/octet-stream";
}

/** A file as a data URL, the form `/v1/chat`, `/v1/search` and `/v1/triples` take images in. */
export async function dataUrlOf(path: string): Promise<string> {
  const bytes = await readFile(path);
  return `data:${contentTypeOf(path)};base64,${bytes.toString("base64")}`;
}

async function readJson(response: Response, what: string): Promise<unknown> {
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    throw new AppError(
      "eval_bad_response",
      502,
      `${what} answered ${response.status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}.`,
    );
  }
  return body;
}

function failure(response: Response, body: unknown, what: string): AppError {
  const envelope = (body as { error?: { code?: string; message?: string } } | null)?.error;
  const code = typeof envelope?.code === "string" ? envelope.code : "eval_request_failed";
  const message =
    typeof envelope?.message === "string" ? envelope.message : JSON.stringify(body).slice(0, 300);
  return new AppError(code, response.status, `${what} failed with ${response.status}: ${message}`);
}

/** Items of an ingest answer: 200, or 422 when every item failed (the items then carry their errors). */
function ingestItems<Item>(response: Response, body: unknown, what: string): Item[] {
  const items = (body as { items?: unknown } | null)?.items;
  if (response.status === 202) {
    throw new AppError(
      "eval_async_ingest",
      500,
      `${what} was queued as a job (202); the eval sends small batches that a server answers at once unless LOUPE_INGEST_SYNC_MAX_ITEMS or LOUPE_VIDEO_SYNC_MAX_SECONDS are set very low. Raise them on the server.`,
    );
  }
  if ((response.status === 200 || response.status === 422) && Array.isArray(items)) return items as Item[];
  throw failure(response, body, what);
}

/** Images per ingest request: under the default `LOUPE_INGEST_SYNC_MAX_ITEMS` (64), so answers come at once. */
const IMAGE_BATCH = 32;
const TRIPLE_BATCH = 32;

/**
 * A client over a path fetch: `app.request` for in-process runs, or `fetch(url + path)` for a server.
 */
export function createHttpClient({ fetch: send, target }: { fetch: PathFetch; target: string }): LoupeClient {
  const postJson = async (path: string, body: unknown): Promise<{ response: Response; body: unknown }> => {
    const response = await send(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { response, body: await readJson(response, `POST ${path}`) };
  };
  return {
    target,
    async ingestImages(items) {
      const results: IngestedItem[] = [];
      for (let start = 0; start < items.length; start += IMAGE_BATCH) {
        const batch = items.slice(start, start + IMAGE_BATCH);
        const form = new FormData();
        for (const item of batch) {
          form.append(
            "files",
            new File([await readFile(item.path)], basename(item.path), { type: contentTypeOf(item.path) }),
          );
        }
        for (const item of batch) form.append("metadata", JSON.stringify(item.metadata));
        const response = await send("/v1/images", { method: "POST", body: form });
        const body = await readJson(response, "POST /v1/images");
        for (const item of ingestItems<IngestedItem>(response, body, "POST /v1/images")) {
          results.push({ ...item, index: item.index + start });
        }
      }
      return results;
    },
    async ingestVideos(items) {
      const results: IngestedVideo[] = [];
      // One video per request: a request's videos are answered together, and long ones become a job.
      for (const [index, item] of items.entries()) {
        const form = new FormData();
        form.append(
          "files",
          new File([await readFile(item.path)], basename(item.path), { type: contentTypeOf(item.path) }),
        );
        const response = await send("/v1/videos", { method: "POST", body: form });
        const body = await readJson(response, "POST /v1/videos");
        for (const video of ingestItems<IngestedVideo>(response, body, "POST /v1/videos")) {
          results.push({ ...video, index });
        }
      }
      return results;
    },
    async ingestTriples(items) {
      const results: IngestedItem[] = [];
      for (let start = 0; start < items.length; start += TRIPLE_BATCH) {
        const { response, body } = await postJson("/v1/triples", {
          items: items.slice(start, start + TRIPLE_BATCH),
        });
        for (const item of ingestItems<IngestedItem>(response, body, "POST /v1/triples")) {
          results.push({ ...item, index: item.index + start });
        }
      }
      return results;
    },
    async search(request) {
      const { response, body } = await postJson("/v1/search", request);
      const items = (body as { items?: unknown } | null)?.items;
      if (response.status !== 200 || !Array.isArray(items)) throw failure(response, body, "POST /v1/search");
      return items as SearchItem[];
    },
    async chat(request) {
      const { response, body } = await postJson("/v1/chat", request);
      if (response.status !== 200) throw failure(response, body, "POST /v1/chat");
      return body as ChatResult;
    },
  };
}

/** A client of the Loupe server at `url` (e.g. `http://127.0.0.1:8080`). */
export function createRemoteClient({ url }: { url: string }): LoupeClient {
  const base = url.replace(/\/+$/u, "");
  return createHttpClient({
    target: base,
    fetch: async (path, init) => {
      try {
        return await fetch(`${base}${path}`, init);
      } catch (error) {
        throw new AppError(
          "server_unreachable",
          503,
          `Loupe at ${base} cannot be reached (${(error as Error).message}); start it with loupe serve or check --url.`,
          { cause: error },
        );
      }
    },
  });
}
