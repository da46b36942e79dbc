/**
 * Composition root. The only module that reads `process.env`; it parses the configuration once, builds
 * every service once (logger, embedded Milvus Lite unless `MILVUS_ADDRESS` is set, vector store, app)
 * and hands them down. {@link startLoupe} runs the whole service in-process (tests use it);
 * {@link runLoupe} is what `loupe serve` runs: the same plus signal handling.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { createApp, type Services } from "./app.ts";
import { type Config, parseConfig, redactConfig } from "./config.ts";
import { ModelPackError, NotReadyError } from "./errors.ts";
import { type HttpServer, startHttpServer } from "./http/server.ts";
import { createDefaultTenantResolver } from "./http/tenant.ts";
import { loadModelPack, ModelPack, readModelPackInfo } from "./inference/model-pack.ts";
import { createJobRegistry, type JobRegistry } from "./ingest/jobs.ts";
import { createChatModel } from "./llm/chat-model.ts";
import { loadPrompts } from "./llm/prompts.ts";
import { createLogger, type Logger } from "./logger.ts";
import { createFsBlobStore } from "./media/blob-store.ts";
import { ANSWER_PROMPT_ID, ANSWER_PROMPT_VARIABLES, createLlmComposer } from "./rag/llm-composer.ts";
import type { AnswerComposer } from "./rag/types.ts";
import type {
  CountRequest,
  DeleteRequest,
  DeleteResult,
  GetRequest,
  QueryRequest,
  RecordKind,
  SearchHit,
  SearchRequest,
  StoredByKind,
  StoreHealth,
  UpsertRequest,
  UpsertResult,
  VectorStore,
} from "./store/index.ts";
import { createVectorStore } from "./store/index.ts";
import { type MilvusLiteProcess, startMilvusLite } from "./store/milvus-lite.ts";

/** Options of {@link startLoupe}. */
export interface StartLoupeOptions {
  /** Environment to configure from; `runLoupe` passes `process.env`. */
  env: Record<string, string | undefined>;
  /** Directory relative paths in the configuration are resolved against. */
  cwd?: string;
  /** Logger to use instead of one made from `LOUPE_LOG_LEVEL` (tests pass a quiet one). */
  logger?: Logger;
}

/** A running Loupe, as returned by {@link startLoupe}. */
export interface RunningLoupe {
  /** Base URL the server answers on, e.g. `http://127.0.0.1:8080`. */
  url: string;
  config: Config;
  logger: Logger;
  /** Process id of the embedded Milvus Lite; absent when `MILVUS_ADDRESS` points at a server. */
  milvusLitePid?: number;
  /**
   * Graceful shutdown: stops accepting connections, waits for in-flight requests (at most
   * `LOUPE_SHUTDOWN_TIMEOUT_MS`), closes the store, stops Milvus Lite. Safe to call more than once.
   */
  stop(): Promise<void>;
}

/** Starts Loupe in this process and resolves once it accepts connections. */
export async function startLoupe({
  env,
  cwd,
  logger: givenLogger,
}: StartLoupeOptions): Promise<RunningLoupe> {
  const config = parseConfig({ env, cwd });
  const logger = givenLogger ?? createLogger({ level: config.logLevel });
  logger.info({ config: redactConfig(config) }, "starting loupe");

  // Undone in reverse order when a later step fails, so a failed start leaves no process behind.
  const cleanups: Array<() => Promise<void>> = [];
  const undo = async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) =>
        logger.error({ err: error }, "cleanup after failed start failed"),
      );
    }
  };

  try {
    const { services, milvusLite } = await buildServices({ config, logger, cleanups });
    const { store, models, jobs } = services;
    const app = createApp(services);
    const http = await startHttpServer({ fetch: app.fetch, host: config.host, port: config.port });
    logger.info({ url: http.url }, "loupe is listening");

    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= shutdown({ http, store, models, jobs, milvusLite, config, logger });
      return stopping;
    };
    return { url: http.url, config, logger, milvusLitePid: milvusLite?.pid, stop };
  } catch (error) {
    await undo();
    throw error;
  }
}

/** Loupe's services without the HTTP server, as returned by {@link openServices}. */
export interface OpenedServices {
  services: Services;
  /** Process id of the embedded Milvus Lite; absent when `MILVUS_ADDRESS` points at a server. */
  milvusLitePid?: number;
  /** Stops jobs, closes the store and the model pack, stops Milvus Lite. Safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Builds the same services as {@link startLoupe} (configuration, store with embedded Milvus Lite unless
 * `MILVUS_ADDRESS` is set, model pack, blob store, jobs) without serving HTTP, for commands that work
 * in-process such as `loupe ingest`. The embedded Milvus Lite takes the data dir's lock, so this fails
 * while a `loupe serve` uses the same `LOUPE_DATA_DIR`.
 */
export async function openServices({
  env,
  cwd,
  logger: givenLogger,
}: StartLoupeOptions): Promise<OpenedServices> {
  const config = parseConfig({ env, cwd });
  const logger = givenLogger ?? createLogger({ level: config.logLevel });
  const cleanups: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) => logger.error({ err: error }, "closing a service failed"));
    }
  };
  try {
    const { services, milvusLite } = await buildServices({ config, logger, cleanups });
    const { jobs } = services;
    cleanups.push(() => jobs.close());
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= closeAll();
      return closing;
    };
    return { services, milvusLitePid: milvusLite?.pid, close };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/**
 * Builds every service once, in the order start-up needs: the prompts and LLM composer first (a broken
 * prompt stops start-up before Milvus Lite is started), then the store (embedded Milvus Lite unless
 * `MILVUS_ADDRESS` is set), the model pack, the blob store and the job registry. What needs undoing is
 * pushed onto `cleanups`.
 */
async function buildServices({
  config,
  logger,
  cleanups,
}: {
  config: Config;
  logger: Logger;
  cleanups: Array<() => Promise<void>>;
}): Promise<{ services: Services; milvusLite: MilvusLiteProcess | undefined }> {
  const llm = await buildLlmComposer({ config, logger });
  const { store, milvusLite } = await buildStore({ config, logger, cleanups });
  const models = await buildModelPack({ config, logger });
  cleanups.push(() => models.close());
  const services: Services = {
    config,
    logger,
    store,
    models,
    blobs: createFsBlobStore({ dir: path.join(config.dataDir, "blobs") }),
    jobs: createJobRegistry({ logger: logger.child({ component: "jobs" }) }),
    resolveTenant: createDefaultTenantResolver({ defaultTenant: config.defaultTenant }),
    llm,
  };
  return { services, milvusLite };
}

/**
 * The embedding dimension of the collections: `LOUPE_EMBEDDING_DIM` when set, else `projection_dim`
 * from the model pack's `config.json` (read and checked with the pack's other JSON files; no model is
 * opened).
 *
 * @throws {ModelPackError} when neither is available, or the pack's files are invalid.
 */
async function resolveEmbeddingDimension({ config }: { config: Config }): Promise<number> {
  if (config.embeddingDim !== undefined) return config.embeddingDim;
  const file = path.join(config.modelPack, "config.json");
  if (!existsSync(file)) {
    throw new ModelPackError(
      `The embedding dimension is unknown: there is no model pack at ${config.modelPack} (no config.json). Install the model pack, point LOUPE_MODEL_PACK at one, or set LOUPE_EMBEDDING_DIM.`,
      { context: { modelPack: config.modelPack } },
    );
  }
  const pack = await readModelPackInfo({ dir: config.modelPack });
  return pack.dimension;
}

/**
 * Builds the vector store the app will use:
 * - embedded Milvus Lite (no `MILVUS_ADDRESS`): started and connected before start-up completes; any
 *   failure stops start-up, since the whole service is on this machine;
 * - an external Milvus: connected in the background with retries, so Loupe starts (and `/readyz`
 *   reports why it is not ready) while that server is down or still starting;
 * - no embedding dimension (no model pack and no `LOUPE_EMBEDDING_DIM`): no store at all, only the
 *   reason, which `/readyz` and every store call report.
 */
async function buildStore({
  config,
  logger,
  cleanups,
}: {
  config: Config;
  logger: Logger;
  cleanups: Array<() => Promise<void>>;
}): Promise<{ store: VectorStore; milvusLite?: MilvusLiteProcess }> {
  let dimension: number;
  try {
    dimension = await resolveEmbeddingDimension({ config });
  } catch (error) {
    if (!(error instanceof ModelPackError)) throw error;
    logger.warn({ err: error }, "serving without a vector store: the embedding dimension is unknown");
    return { store: DeferredVectorStore.unavailable(error.message) };
  }
  const storeOptions = {
    token: config.milvusToken,
    database: config.milvusDatabase,
    collectionPrefix: config.collectionPrefix,
    dimension,
    metric: config.metric,
    indexType: config.indexType,
    timeoutMs: config.milvusTimeoutMs,
    logger: logger.child({ component: "store" }),
  };

  const external = config.milvusAddress;
  if (external !== undefined) {
    const store = DeferredVectorStore.connect({
      address: external,
      connect: () => createVectorStore({ address: external, ...storeOptions }),
      logger,
    });
    cleanups.push(() => store.close());
    return { store };
  }

  const milvusLite = await startMilvusLite({
    dataDir: path.join(config.dataDir, "milvus"),
    venvDir: config.venvDir,
    host: "127.0.0.1",
    startTimeoutMs: config.milvusStartTimeoutMs,
    logger: logger.child({ component: "milvus-lite" }),
  });
  cleanups.push(milvusLite.stop);
  const store = await createVectorStore({ address: milvusLite.address, ...storeOptions });
  cleanups.push(() => store.close());
  return { store, milvusLite };
}

/**
 * Loads and checks the prompts once (a broken prompt file stops start-up with a `ConfigError` naming
 * the file and the fix, whether or not an LLM is configured, so a bad prompt is found before it is
 * needed), then builds the LLM composer when `LOUPE_LLM_MODEL` is set. Nothing is sent to the endpoint
 * here: an endpoint that is down makes each answer fall back to the offline composer, not start-up fail.
 */
async function buildLlmComposer({
  config,
  logger,
}: {
  config: Config;
  logger: Logger;
}): Promise<AnswerComposer | undefined> {
  const prompts = await loadPrompts({
    dir: config.promptsDir,
    required: { [ANSWER_PROMPT_ID]: ANSWER_PROMPT_VARIABLES },
  });
  const answer = prompts.get(ANSWER_PROMPT_ID);
  logger.info(
    { promptsDir: config.promptsDir, answerPrompt: `${answer.id}.v${answer.version}` },
    "prompts loaded",
  );
  if (config.llmModel === undefined) {
    logger.info("LOUPE_LLM_MODEL is not set: the offline composer writes chat answers");
    return undefined;
  }
  const llmLogger = logger.child({ component: "llm" });
  const chatModel = createChatModel({
    model: config.llmModel,
    baseUrl: config.openaiBaseUrl,
    apiKey: config.openaiApiKey,
    timeoutMs: config.llmTimeoutMs,
    maxRetries: config.llmMaxRetries,
    temperature: config.llmTemperature,
    maxTokens: config.llmMaxTokens,
    logger: llmLogger,
  });
  logger.info(
    { model: chatModel.model, endpoint: chatModel.endpoint, vision: config.llmVision },
    "LLM composer configured",
  );
  return createLlmComposer({ chatModel, prompts, vision: config.llmVision, logger: llmLogger });
}

/**
 * Loads the model pack once (hashes verified, sessions opened) for every request to share. A pack that
 * is missing or invalid does not stop start-up, as with the store: Loupe serves, and every use of the
 * pack fails with a `not_ready` error that carries the reason (see {@link unavailableModelPack}).
 */
async function buildModelPack({ config, logger }: { config: Config; logger: Logger }): Promise<ModelPack> {
  try {
    const models = await loadModelPack({
      dir: config.modelPack,
      sessionOptions: {
        intraOpNumThreads: config.inferenceThreads,
        executionProviders: config.executionProviders,
      },
      imageLimits: {
        maxInputBytes: config.maxImageBytes,
        maxInputPixels: config.maxImagePixels,
        maxFrames: config.maxImageFrames,
      },
    });
    if (config.embeddingDim !== undefined && config.embeddingDim !== models.dimension) {
      logger.warn(
        { embeddingDim: config.embeddingDim, packDimension: models.dimension },
        "LOUPE_EMBEDDING_DIM differs from the model pack's dimension; writes of the pack's embeddings will be refused",
      );
    }
    logger.info({ modelId: models.modelId, dimension: models.dimension }, "model pack loaded");
    return models;
  } catch (error) {
    if (!(error instanceof ModelPackError)) throw error;
    logger.warn({ err: error }, "serving without a model pack");
    return unavailableModelPack(error.message);
  }
}

/**
 * A stand-in for a pack that could not be loaded: closing it does nothing, and reading anything else
 * throws a `NotReadyError` with the reason, so routes need no special case for a missing pack. Tests
 * of routes that never embed use it too.
 */
export function unavailableModelPack(reason: string): ModelPack {
  const message = `The model pack is not available: ${reason.replace(/\.$/, "")}.`;
  // The prototype makes `instanceof ModelPack` hold; every property read goes through the trap below.
  return new Proxy(Object.create(ModelPack.prototype) as ModelPack, {
    get(_target, property) {
      if (property === "close") return async () => undefined;
      if (property === "closed") return true;
      // Lets the stand-in pass through `await` and promise resolution without throwing.
      if (property === "then" || typeof property === "symbol") return undefined;
      throw new NotReadyError(message, { context: { reason } });
    },
  });
}

const reconnectFirstDelayMs = 1000;
const reconnectMaxDelayMs = 30_000;

/**
 * A {@link VectorStore} that is not connected yet, or cannot be: until a real store is in place, its
 * health is not ok with the reason, and every call fails with a `NotReadyError` carrying that reason.
 */
class DeferredVectorStore implements VectorStore {
  #store: VectorStore | undefined;
  #reason: string;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #attempt: Promise<void> | undefined;

  private constructor(reason: string) {
    this.#reason = reason;
  }

  /** A store that never becomes available, for the given reason. */
  static unavailable(reason: string): DeferredVectorStore {
    return new DeferredVectorStore(reason);
  }

  /** Calls `connect` now and again with backoff until it succeeds or the store is closed. */
  static connect({
    address,
    connect,
    logger,
  }: {
    address: string;
    connect: () => Promise<VectorStore>;
    logger: Logger;
  }): DeferredVectorStore {
    const deferred = new DeferredVectorStore(`connecting to Milvus at ${address}`);
    const attempt = (delayMs: number) => {
      deferred.#attempt = connect().then(
        async (store) => {
          if (deferred.#closed) {
            await store.close();
            return;
          }
          deferred.#store = store;
          logger.info({ address }, "connected to Milvus");
        },
        (error: unknown) => {
          deferred.#reason = error instanceof Error ? error.message : String(error);
          if (deferred.#closed) return;
          logger.warn({ err: error, address, retryInMs: delayMs }, "Milvus is not available; retrying");
          deferred.#timer = setTimeout(() => attempt(Math.min(delayMs * 2, reconnectMaxDelayMs)), delayMs);
        },
      );
    };
    attempt(reconnectFirstDelayMs);
    return deferred;
  }

  #ready(): VectorStore {
    if (this.#store === undefined) {
      throw new NotReadyError(`The vector store is not available: ${this.#reason.replace(/\.$/, "")}.`, {
        context: { reason: this.#reason },
      });
    }
    return this.#store;
  }

  upsert<K extends RecordKind>(request: UpsertRequest<K>): Promise<UpsertResult> {
    return this.#ready().upsert(request);
  }
  search<K extends RecordKind>(request: SearchRequest<K>): Promise<SearchHit<K>[]> {
    return this.#ready().search(request);
  }
  query<K extends RecordKind>(request: QueryRequest<K>): Promise<StoredByKind[K][]> {
    return this.#ready().query(request);
  }
  get<K extends RecordKind>(request: GetRequest<K>): Promise<StoredByKind[K][]> {
    return this.#ready().get(request);
  }
  delete<K extends RecordKind>(request: DeleteRequest<K>): Promise<DeleteResult> {
    return this.#ready().delete(request);
  }
  count(request: CountRequest): Promise<number> {
    return this.#ready().count(request);
  }
  async health(): Promise<StoreHealth> {
    return this.#store === undefined ? { ok: false, reason: this.#reason } : this.#store.health();
  }
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#attempt;
    await this.#store?.close();
  }
}

async function shutdown({
  http,
  store,
  models,
  jobs,
  milvusLite,
  config,
  logger,
}: {
  http: HttpServer;
  store: VectorStore;
  models: ModelPack;
  jobs: JobRegistry;
  milvusLite: MilvusLiteProcess | undefined;
  config: Config;
  logger: Logger;
}): Promise<void> {
  logger.info({ inFlight: http.inFlight }, "shutting down: no new connections");
  const { drained, abandoned } = await http.close({ timeoutMs: config.shutdownTimeoutMs });
  if (!drained) {
    logger.warn(
      { abandoned, timeoutMs: config.shutdownTimeoutMs },
      "in-flight requests did not finish in time; their connections were closed",
    );
  }
  // Running jobs stop between items; their unfinished items stay pending, and re-sending them skips what was stored.
  await jobs.close().catch((error: unknown) => logger.error({ err: error }, "stopping jobs failed"));
  await store
    .close()
    .catch((error: unknown) => logger.error({ err: error }, "closing the vector store failed"));
  await models
    .close()
    .catch((error: unknown) => logger.error({ err: error }, "closing the model pack failed"));
  if (milvusLite !== undefined) {
    await milvusLite
      .stop()
      .catch((error: unknown) => logger.error({ err: error }, "stopping Milvus Lite failed"));
  }
  logger.info("loupe stopped");
}

/**
 * What `loupe serve` runs: starts Loupe from `process.env` and stops it on SIGINT or SIGTERM. A second
 * signal while stopping forces the exit; the Milvus Lite launcher kills its server when the process
 * exits, so none is left behind.
 */
export async function runLoupe(): Promise<void> {
  let running: RunningLoupe | undefined;
  let signalled = false;

  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      running?.logger.warn({ signal }, "second signal: forcing exit");
      process.exit(130);
    }
    signalled = true;
    // A signal during start-up is handled once start-up settles (below).
    if (running === undefined) return;
    running.logger.info({ signal }, "signal received");
    stopAndExit(running);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  running = await startLoupe({ env: process.env });
  if (signalled) stopAndExit(running);
}

function stopAndExit(loupe: RunningLoupe): void {
  loupe.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      loupe.logger.error({ err: error }, "shutdown failed");
      process.exit(1);
    },
  );
}
