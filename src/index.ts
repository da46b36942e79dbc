/**
 * Loupe's public API: everything a program that depends on the `loupe` package may import. Only the
 * exports of this file are supported; deep imports into the package are not.
 *
 * @module
 * @example
 * ```ts
 * import { createLoupe } from "loupe";
 *
 * const loupe = await createLoupe({ dataDir: "./loupe-data" });
 * await loupe.ingestImages({
 *   tenant: "default",
 *   images: [{ source: { type: "file", path: "shot.png" }, metadata: { tags: ["login"] } }],
 * });
 * const { items } = await loupe.search.search({ tenant: "default", text: "a red circle" });
 * for await (const event of await loupe.chain.streamEvents(
 *   { tenant: "default", question: "What colour is the circle?" },
 *   { version: "v2" },
 * )) {
 *   if (event.event === "on_custom_event" && event.name === "answer-delta") process.stdout.write(event.data.text);
 * }
 * await loupe.close();
 * ```
 */

/** The HTTP app over a set of services: middleware, routes, one error envelope. */
export { createApp } from "./app.ts";
/** The client of a running Loupe's HTTP API (no server code loaded): ingest, jobs, search, chat and its events. */
export {
  createLoupeClient,
  LoupeApiError,
  type LoupeClient,
  type LoupeClientOptions,
} from "./client/index.ts";
/** The settings: their schema and parser (environment-variable names, defaults, allowed values). */
export { type Config, type ParseConfigOptions, parseConfig } from "./config.ts";
/** The errors Loupe throws on purpose: each has a stable `code`, an HTTP `status` and a message for the caller. */
export {
  AppError,
  type AppErrorOptions,
  ConfigError,
  ConflictError,
  DownloadError,
  InferenceError,
  LlmError,
  MediaError,
  ModelPackError,
  NotFoundError,
  NotReadyError,
  OverloadedError,
  StoreError,
  UrlFetchError,
  ValidationError,
} from "./errors.ts";
/** What image ingest takes and reports. */
export type { ImageIngestItem, ImageMetadata, ImageSource } from "./ingest/image-ingest.ts";
export type { JobItemOutcome } from "./ingest/jobs.ts";
/** The JSON logger Loupe writes with. */
export { type CreateLoggerOptions, createLogger, type Logger } from "./logger.ts";
/** Loupe in this process: services, a retriever and the HTTP app. */
export { type CreateLoupeOptions, createLoupe, type Loupe } from "./loupe.ts";
/** The whole server in this process, listening on `HOST:PORT`. */
export { type RunningLoupe, type StartLoupeOptions, startLoupe } from "./main.ts";
/** The chat chain: a LangChain `RunnableSequence` and the shapes of its requests, events and results. */
export { CHAIN_RUN_NAME, type LoupeChainRunnable } from "./rag/chain.ts";
/** Loupe's search as a LangChain retriever. */
export { type LoupeDocumentMetadata, LoupeRetriever, type LoupeRetrieverOptions } from "./rag/retriever.ts";
/** What a chat turn takes, streams and returns. */
export type {
  ChatEvent,
  ChatRequest,
  ChatResult,
  ChatTimings,
  ChatTurn,
  Citation,
  CitationKind,
  Evidence,
  Finding,
  LoupeChain,
  Verification,
} from "./rag/types.ts";
/** What search takes and returns. */
export type { SearchOptions, SearchResponse, SearchResultItem, SimilarOptions } from "./search/index.ts";
/** The services and how they are built: for programs that wire their own adapters. */
export {
  assembleServices,
  createLoupeServices,
  type LoupeServices,
  type OpenLoupeServices,
  type ServiceParts,
} from "./services.ts";
