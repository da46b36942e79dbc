/**
 * A typed client of Loupe's HTTP API, for programs that talk to a Loupe server (`loupe ask|search|ingest
 * --url`, the eval runner) and for Loupe's own app in-process (`app.request`), one code path for both.
 * It loads nothing of the server: it sends requests and reads answers.
 *
 * Failures come out as errors with a code: the server's error envelope as a {@link LoupeApiError}
 * (its code, the HTTP status, its message, and `retryAfterSeconds` when the server sent `Retry-After`);
 * `server_unreachable` when the server cannot be reached;
 * `bad_server_response` for an answer that is not what the API promises.
 *
 * @example
 * const loupe = createLoupeClient({ baseUrl: "http://127.0.0.1:8080" });
 * const items = await loupe.search({ text: "a red circle", topK: 5 });
 * for await (const event of loupe.chatEvents({ question: "What color is the circle?" })) { … }
 */
import { setTimeout as sleep } from "node:timers/promises";
import { AppError } from "../errors.ts";
import type { ChatEvent, ChatResult } from "../rag/types.ts";
import type { SearchResultItem } from "../search/index.ts";
import type { ClassifierInfo, ClassifierPrediction, CreateClassifierRequest } from "./classifier-types.ts";
import { apiErrorOf } from "./loupe-api-error.ts";
import { imagesForm, searchForm, videosForm } from "./multipart.ts";
import { readSseMessages } from "./sse.ts";
import type {
  CallOptions,
  ChatBody,
  EventBody,
  ImagesRequest,
  IngestAnswer,
  IngestItemResult,
  IngestOptions,
  ItemPage,
  Job,
  JobItem,
  ListedItem,
  ListItemsRequest,
  RecommendRequest,
  RecordedEvent,
  SearchRequest,
  TripleItem,
  UserRecommendations,
  UserRecommendationsRequest,
  VideoIngestResult,
  VideosRequest,
} from "./types.ts";
import { dataUrlOf, fileOf, type Upload } from "./uploads.ts";

/** `fetch` as the client calls it: a full URL and an init. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/** A request function that takes a path (`/v1/search`), like Hono's `app.request`. */
export type RequestLike = (path: string, init: RequestInit) => Response | Promise<Response>;

/** Options of {@link createLoupeClient}: a server's base URL, or an in-process request function. */
export type LoupeClientOptions = (
  | {
      /** Base URL of a running Loupe, e.g. `http://127.0.0.1:8080`. */
      baseUrl: string;
      /** The fetch to use (default: the global one). */
      fetch?: FetchLike;
    }
  | {
      /** Answers a request for a path, e.g. `(path, init) => app.request(path, init)`. */
      request: RequestLike;
      /** What reports call this Loupe (default `in-process`). */
      target?: string;
    }
) & {
  /** Headers sent with every request (an API key, a tenant header). */
  headers?: Record<string, string>;
  /** Interval between polls of a job, in milliseconds (default 500). */
  jobPollMs?: number;
};

/** The calls of Loupe's HTTP API. */
export interface LoupeClient {
  /** Where the answers come from: the base URL, or `in-process`. */
  readonly target: string;
  /** `POST /v1/images`: uploads as multipart, URLs as JSON. */
  ingestImages(request: ImagesRequest, options?: IngestOptions): Promise<IngestAnswer<IngestItemResult>>;
  /** `POST /v1/videos`: uploads as multipart, URLs as JSON. */
  ingestVideos(request: VideosRequest, options?: IngestOptions): Promise<IngestAnswer<VideoIngestResult>>;
  /** `POST /v1/triples` as JSON. */
  ingestTriples(
    request: { items: readonly TripleItem[] },
    options?: IngestOptions,
  ): Promise<IngestAnswer<IngestItemResult>>;
  /** `GET /v1/jobs/{id}`. */
  getJob(id: string, options?: CallOptions): Promise<Job>;
  /** Polls `GET /v1/jobs/{id}` until the job is done or failed, and returns it then. */
  waitForJob(id: string, options?: CallOptions): Promise<Job>;
  /**
   * `POST /v1/jobs` kind `ocr`: starts reading the text of the tenant's stored images and video segments
   * that have none; returns the job's id and status (follow it with {@link LoupeClient.waitForJob}).
   */
  startOcrBackfill(
    request?: { kinds?: ReadonlyArray<"image" | "video_segment"> },
    options?: CallOptions,
  ): Promise<{ id: string; status: Job["status"] }>;
  /** An ingest answer's items: at once, or the job's once it has ended. */
  itemsOf<Item extends IngestItemResult>(
    answer: IngestAnswer<Item>,
    options?: CallOptions,
  ): Promise<Array<Item | JobItem>>;
  /** `GET /v1/items`: one page of the tenant's items, in id order. */
  listItems(request?: ListItemsRequest, options?: CallOptions): Promise<ItemPage>;
  /** Every item of `GET /v1/items`, page after page. */
  allItems(request?: Omit<ListItemsRequest, "cursor">, options?: CallOptions): AsyncGenerator<ListedItem>;
  /** `POST /v1/search`: results best first; multipart when the image is an upload. */
  search(request: SearchRequest, options?: CallOptions): Promise<SearchResultItem[]>;
  /** `POST /v1/classifiers`: fits and stores a classifier (201). */
  createClassifier(request: CreateClassifierRequest, options?: CallOptions): Promise<ClassifierInfo>;
  /** `GET /v1/classifiers`: the tenant's classifiers. */
  listClassifiers(options?: CallOptions): Promise<ClassifierInfo[]>;
  /** `POST /v1/classifiers/{name}/predict`: multipart when the image is an upload. */
  predictClassifier(
    name: string,
    image: string | Upload,
    options?: CallOptions,
  ): Promise<ClassifierPrediction>;
  /** `POST /v1/chat`: the turn's result as one JSON. */
  chat(body: ChatBody, options?: CallOptions): Promise<ChatResult>;
  /**
   * `POST /v1/chat` with `stream: true`: the chain's events as they arrive, `done` (with the result)
   * last. Events a newer server sends that this client does not know are skipped.
   *
   * @throws LoupeApiError for an error answer or an `error` event (status 502: the server failed after
   *   the stream began); `bad_server_response` when the stream ends without `done`.
   */
  chatEvents(body: ChatBody, options?: CallOptions): AsyncGenerator<ChatEvent>;
  /** `POST /v1/recommend`: items like the positives and unlike the negatives, best first. */
  recommend(request: RecommendRequest, options?: CallOptions): Promise<SearchResultItem[]>;
  /** `POST /v1/events`: records one interaction of a user. */
  recordEvent(event: EventBody, options?: CallOptions): Promise<RecordedEvent>;
  /** `GET /v1/users/{user}/recommendations`: ranked from the user's events. */
  userRecommendations(
    user: string,
    request?: UserRecommendationsRequest,
    options?: CallOptions,
  ): Promise<UserRecommendations>;
  /** `DELETE /v1/users/{user}`: removes every event of the user; resolves to how many there were. */
  deleteUser(user: string, options?: CallOptions): Promise<{ deleted: number }>;
}

/** The chat events the client passes on. */
const CHAT_EVENTS: ReadonlySet<string> = new Set<ChatEvent["type"]>([
  "retrieval",
  "grounding",
  "citation",
  "answer-delta",
  "answer-reset",
  "done",
]);

/** What a request sends besides its method and path. */
interface Send {
  json?: unknown;
  form?: FormData;
  query?: Record<string, string | undefined>;
  accept?: string;
  signal?: AbortSignal;
}

function badResponse(message: string): AppError {
  return new AppError("bad_server_response", 502, message);
}

/** The body as JSON; a body that is not JSON is returned as text when the status is an error. */
async function readBody(response: Response, request: string): Promise<unknown> {
  const text = await response.text();
  if (text === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    if (!response.ok) return text;
    throw badResponse(
      `${request} answered ${response.status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}.`,
    );
  }
}

function imageValue(image: string | Upload): string {
  return typeof image === "string" ? image : dataUrlOf(image);
}

/** A chat body as JSON: uploaded images (of the turn and of earlier turns) become data URLs. */
function chatJson({ images, history, ...rest }: ChatBody): Record<string, unknown> {
  return {
    ...rest,
    ...(images === undefined ? {} : { images: images.map(imageValue) }),
    ...(history === undefined
      ? {}
      : {
          history: history.map((turn) =>
            turn.images === undefined ? turn : { ...turn, images: turn.images.map(imageValue) },
          ),
        }),
  };
}

/** Creates a client of the Loupe at `baseUrl`, or of the app behind `request` (see {@link LoupeClientOptions}). */
export function createLoupeClient(options: LoupeClientOptions): LoupeClient {
  const { headers = {}, jobPollMs = 500 } = options;
  let target: string;
  let transport: RequestLike;
  if ("baseUrl" in options) {
    const base = options.baseUrl.replace(/\/+$/, "");
    const send = options.fetch ?? ((url: string, init: RequestInit) => fetch(url, init));
    target = base;
    transport = async (path, init) => {
      try {
        return await send(`${base}${path}`, init);
      } catch (error) {
        if (init.signal?.aborted === true) throw error;
        throw new AppError(
          "server_unreachable",
          503,
          `Cannot reach Loupe at ${base} (${error instanceof Error ? error.message : String(error)}). Start it with \`loupe serve\`, or check the URL.`,
          { cause: error, context: { url: base } },
        );
      }
    };
  } else {
    target = options.target ?? "in-process";
    transport = options.request;
  }

  const call = async (method: string, path: string, { json, form, query, accept, signal }: Send) => {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) search.set(key, value);
    const url = search.toString() === "" ? path : `${path}?${search}`;
    const requestHeaders: Record<string, string> = { ...headers };
    if (json !== undefined) requestHeaders["content-type"] = "application/json";
    if (accept !== undefined) requestHeaders.accept = accept;
    const response = await transport(url, {
      method,
      headers: requestHeaders,
      body: json !== undefined ? JSON.stringify(json) : form,
      ...(signal === undefined ? {} : { signal }),
    });
    return { response, request: `${method} ${path}` };
  };

  /** Sends a request and returns its JSON body when the status is one of `expected`, else throws. */
  const exchange = async (method: string, path: string, send: Send, expected: readonly number[] = [200]) => {
    const { response, request } = await call(method, path, send);
    const body = await readBody(response, request);
    if (!expected.includes(response.status)) {
      throw apiErrorOf({
        status: response.status,
        body,
        request,
        retryAfter: response.headers.get("retry-after"),
      });
    }
    return { status: response.status, body, request };
  };

  const ingest = async <Item extends IngestItemResult>(
    path: string,
    send: Send,
    { async: wantsJob, signal }: IngestOptions,
  ): Promise<IngestAnswer<Item>> => {
    const { status, body, request } = await exchange(
      "POST",
      path,
      { ...send, signal, query: { async: wantsJob === true ? "true" : undefined } },
      [200, 202, 422],
    );
    const { items, job } = (body ?? {}) as { items?: unknown; job?: { id?: unknown; status?: unknown } };
    if (status === 202 && typeof job?.id === "string") {
      return { kind: "job", job: { id: job.id, status: job.status as Job["status"] } };
    }
    if (status !== 202 && Array.isArray(items)) return { kind: "items", items: items as Item[] };
    // A 422 without items is an ordinary refusal (a malformed request), in the envelope.
    if (status === 422) throw apiErrorOf({ status, body, request });
    throw badResponse(`${request} answered ${status} without ${status === 202 ? "a job" : "items"}.`);
  };

  const listItems = async (
    { kind, filter, limit, cursor }: ListItemsRequest = {},
    { signal }: CallOptions = {},
  ): Promise<ItemPage> => {
    const query = {
      kind,
      filter: filter === undefined ? undefined : JSON.stringify(filter),
      limit: limit === undefined ? undefined : String(limit),
      cursor,
    };
    const { body, request } = await exchange("GET", "/v1/items", { query, signal });
    const page = body as Partial<ItemPage> | undefined;
    if (!Array.isArray(page?.items)) throw badResponse(`${request} answered without items.`);
    return { items: page.items, ...(page.nextCursor === undefined ? {} : { nextCursor: page.nextCursor }) };
  };
  const getJob = async (id: string, { signal }: CallOptions = {}): Promise<Job> => {
    const { body, request } = await exchange("GET", `/v1/jobs/${encodeURIComponent(id)}`, { signal });
    const job = (body as { job?: Job } | undefined)?.job;
    if (job === undefined) throw badResponse(`${request} answered without the job.`);
    return job;
  };

  const waitForJob = async (id: string, { signal }: CallOptions = {}): Promise<Job> => {
    for (;;) {
      const job = await getJob(id, { signal });
      if (job.status === "done" || job.status === "failed") return job;
      await sleep(jobPollMs, undefined, signal === undefined ? {} : { signal });
    }
  };

  return {
    target,
    ingestImages: (request, options = {}) =>
      ingest(
        "/v1/images",
        "files" in request
          ? { form: imagesForm(request.files) }
          : { json: { urls: request.urls, metadata: request.metadata } },
        options,
      ),
    ingestVideos: (request, options = {}) =>
      ingest(
        "/v1/videos",
        "files" in request
          ? { form: videosForm(request.files, request.metadata) }
          : { json: { urls: request.urls, metadata: request.metadata } },
        options,
      ),
    ingestTriples: ({ items }, options = {}) => ingest("/v1/triples", { json: { items } }, options),
    getJob,
    waitForJob,
    async startOcrBackfill({ kinds } = {}, { signal } = {}) {
      const { body, request } = await exchange(
        "POST",
        "/v1/jobs",
        { json: { kind: "ocr", ...(kinds === undefined ? {} : { kinds }) }, signal },
        [202],
      );
      const job = (body as { job?: { id?: unknown; status?: unknown } } | undefined)?.job;
      if (typeof job?.id !== "string") throw badResponse(`${request} answered without a job.`);
      return { id: job.id, status: job.status as Job["status"] };
    },
    async itemsOf(answer, options = {}) {
      return answer.kind === "items" ? answer.items : (await waitForJob(answer.job.id, options)).items;
    },
    listItems,
    async *allItems(request = {}, options = {}) {
      let cursor: string | undefined;
      do {
        const page = await listItems({ ...request, cursor }, options);
        yield* page.items;
        cursor = page.nextCursor;
      } while (cursor !== undefined);
    },
    async search(request, { signal } = {}) {
      const { image } = request;
      const send: Send =
        image === undefined || typeof image === "string"
          ? { json: { ...request, image } }
          : { form: searchForm({ ...request, image }) };
      const { body, request: sent } = await exchange("POST", "/v1/search", { ...send, signal });
      const items = (body as { items?: unknown } | undefined)?.items;
      if (!Array.isArray(items)) throw badResponse(`${sent} answered without items.`);
      return items as SearchResultItem[];
    },
    async recommend(request, { signal } = {}) {
      const { body, request: sent } = await exchange("POST", "/v1/recommend", { json: request, signal });
      const items = (body as { items?: unknown } | undefined)?.items;
      if (!Array.isArray(items)) throw badResponse(`${sent} answered without items.`);
      return items as SearchResultItem[];
    },
    async recordEvent(event, { signal } = {}) {
      const { body, request: sent } = await exchange("POST", "/v1/events", { json: event, signal }, [201]);
      const recorded = (body as { event?: RecordedEvent } | undefined)?.event;
      if (recorded === undefined) throw badResponse(`${sent} answered without the event.`);
      return recorded;
    },
    async userRecommendations(user, { kinds, topK, filter, diversity } = {}, { signal } = {}) {
      const query = {
        kinds: kinds?.join(","),
        topK: topK === undefined ? undefined : String(topK),
        filter: filter === undefined ? undefined : JSON.stringify(filter),
        diversity: diversity === undefined ? undefined : String(diversity),
      };
      const path = `/v1/users/${encodeURIComponent(user)}/recommendations`;
      const { body, request: sent } = await exchange("GET", path, { query, signal });
      const answer = body as Partial<UserRecommendations> | undefined;
      if (!Array.isArray(answer?.items) || answer.profile === undefined) {
        throw badResponse(`${sent} answered without items and profile.`);
      }
      return { items: answer.items, profile: answer.profile };
    },
    async deleteUser(user, { signal } = {}) {
      const { body, request: sent } = await exchange("DELETE", `/v1/users/${encodeURIComponent(user)}`, {
        signal,
      });
      const deleted = (body as { deleted?: unknown } | undefined)?.deleted;
      if (typeof deleted !== "number") throw badResponse(`${sent} answered without the count.`);
      return { deleted };
    },
    async createClassifier(request, { signal } = {}) {
      const { body } = await exchange("POST", "/v1/classifiers", { json: request, signal }, [201]);
      return body as ClassifierInfo;
    },
    async listClassifiers({ signal } = {}) {
      const { body, request: sent } = await exchange("GET", "/v1/classifiers", { signal });
      const classifiers = (body as { classifiers?: unknown } | undefined)?.classifiers;
      if (!Array.isArray(classifiers)) throw badResponse(`${sent} answered without classifiers.`);
      return classifiers as ClassifierInfo[];
    },
    async predictClassifier(name, image, { signal } = {}) {
      const path = `/v1/classifiers/${encodeURIComponent(name)}/predict`;
      let send: Send;
      if (typeof image === "string") send = { json: { image } };
      else {
        const form = new FormData();
        form.append("image", fileOf(image));
        send = { form };
      }
      const { body, request: sent } = await exchange("POST", path, { ...send, signal });
      if (!Array.isArray((body as { labels?: unknown } | undefined)?.labels)) {
        throw badResponse(`${sent} answered without labels.`);
      }
      return body as ClassifierPrediction;
    },
    async chat(body, { signal } = {}) {
      const answer = await exchange("POST", "/v1/chat", { json: chatJson(body), signal });
      return answer.body as ChatResult;
    },
    async *chatEvents(body, { signal } = {}) {
      const { response, request } = await call("POST", "/v1/chat", {
        json: { ...chatJson(body), stream: true },
        accept: "text/event-stream",
        signal,
      });
      if (!response.ok || response.body === null) {
        throw apiErrorOf({
          status: response.status,
          body: await readBody(response, request),
          request,
          retryAfter: response.headers.get("retry-after"),
        });
      }
      for await (const message of readSseMessages(response.body)) {
        let data: unknown;
        try {
          data = JSON.parse(message.data);
        } catch {
          throw badResponse(
            `The server sent a ${message.event} event whose data is not JSON: ${JSON.stringify(message.data.slice(0, 80))}.`,
          );
        }
        if (message.event === "error") throw apiErrorOf({ status: 502, body: data, request });
        if (!CHAT_EVENTS.has(message.event)) continue;
        const event = { type: message.event, data } as ChatEvent;
        yield event;
        if (event.type === "done") return;
      }
      throw badResponse(
        `The server at ${target} ended the answer stream without a done event; the answer is incomplete.`,
      );
    },
  };
}
