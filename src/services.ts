/**
 * The one place Loupe's services are built. {@link createLoupeServices} starts what needs starting (the
 * embedded Milvus Lite unless `MILVUS_ADDRESS` is set, the vector store, the model pack, the OCR engine,
 * the prompts and the LLM composer) and {@link assembleServices} wires the layers over them once: search,
 * the three ingesters, the OCR backfill, the chat chain. The server (`main.ts`), every CLI command, the evals, the benchmarks and
 * library users get their services from here; none builds its own.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { type AuditLog, createFileAuditLog } from "./audit/audit-log.ts";
import { createFileKeyStore, keyStoreDir } from "./auth/file-key-store.ts";
import { ensureKeySecret } from "./auth/key-secret.ts";
import type { KeyStore } from "./auth/key-store.ts";
import { createMediaLinkSigner, type MediaLinkSigner } from "./auth/media-link-signer.ts";
import { ClassifierService } from "./classifiers/classifier-service.ts";
import { type ClassifierStore, createFileClassifierStore } from "./classifiers/classifier-store.ts";
import type { Config } from "./config.ts";
import { ModelPackError, NotReadyError, ValidationError } from "./errors.ts";
import { FeedbackService } from "./feedback/feedback-service.ts";
import { createFileFeedbackStore, type FeedbackStore } from "./feedback/feedback-store.ts";
import { createMemoryRateLimiter } from "./http/limits/memory-rate-limiter.ts";
import type { RateLimiter } from "./http/limits/rate-limiter.ts";
import type { RedisRateLimiter } from "./http/limits/redis-rate-limiter.ts";
import { mediaRouteUrls } from "./http/media-urls.ts";
import type { DependencyCheck } from "./http/routes/readyz.ts";
import { createDefaultTenantResolver, type TenantResolver } from "./http/tenant.ts";
import type { ObjectDetector } from "./inference/detection-head.ts";
import { loadModelPack, type ModelPack, readModelPackInfo } from "./inference/model-pack.ts";
import type { OcrEngine } from "./inference/ocr/ocr-engine.ts";
import { createPpOcrEngine } from "./inference/ocr/pp-ocr.ts";
import { unavailableModelPack } from "./inference/unavailable-model-pack.ts";
import { IMAGE_URL_CONTENT_TYPES, ImageIngester } from "./ingest/image-ingest.ts";
import type { IngestOcr } from "./ingest/ingest-ocr.ts";
import { createJobRegistry, type JobRegistry } from "./ingest/jobs.ts";
import { OcrBackfill } from "./ingest/ocr-backfill.ts";
import { PackMigration } from "./ingest/pack-migration.ts";
import { RegionBackfill } from "./ingest/region-backfill.ts";
import type { IngestRegions } from "./ingest/regions.ts";
import type { SharedJobs, SharedJobWorker, SharedJobWorkerParts } from "./ingest/shared-jobs.ts";
import { TripleIngester } from "./ingest/triple-ingest.ts";
import { createVideoIngester, type VideoIngester, videoIngestSettings } from "./ingest/video-ingest.ts";
import { createChatModel } from "./llm/chat-model.ts";
import { loadPrompts } from "./llm/prompts.ts";
import type { Logger } from "./logger.ts";
import { blobMedia } from "./media/blob-media.ts";
import type { BlobStore } from "./media/blob-store.ts";
import type { MediaReader, MediaUrls, MediaWriter } from "./media/media-port.ts";
import { openBlobStore } from "./media/open-blob-store.ts";
import { fetchUrl } from "./media/url-fetcher.ts";
import { InstrumentedVectorStore } from "./metrics/instrumented-vector-store.ts";
import type { LoupeMetrics, ScrapableMetrics } from "./metrics/metrics.ts";
import { createPrometheusMetrics } from "./metrics/prometheus-metrics.ts";
import { createLoupeChain, type LoupeChainRunnable } from "./rag/chain.ts";
import { ANSWER_PROMPT_ID, ANSWER_PROMPT_VARIABLES, createLlmComposer } from "./rag/llm-composer.ts";
import type { AnswerComposer } from "./rag/types.ts";
import { createFileEventStore, type EventStore, RecommendService } from "./recommend/index.ts";
import { readLogitScale, SearchService } from "./search/search-service.ts";
import { DeferredVectorStore } from "./store/deferred-vector-store.ts";
import { TENANT_PATTERN } from "./store/filter.ts";
import { startMilvusLite } from "./store/milvus-lite.ts";
import { createVectorStore } from "./store/milvus-vector-store.ts";
import { ModelCatalog } from "./store/model-catalog.ts";
import { SupervisedVectorStore } from "./store/supervised-vector-store.ts";
import type { HybridRanker, VectorStore } from "./store/vector-store.ts";

/** The adapters the layers are wired over: configuration, logger and the I/O ports. */
export interface ServiceParts {
  config: Config;
  logger: Logger;
  /** The vector store port; the HTTP layer only calls its methods, never Milvus itself. */
  store: VectorStore;
  /** The loaded model pack (embedders, VQA head); every call fails with `not_ready` when it is missing. */
  models: ModelPack;
  /**
   * Originals and derived files (thumbnails, keyframes), content-addressed under `<LOUPE_DATA_DIR>/blobs`,
   * or in `LOUPE_S3_BUCKET` (`openBlobStore`).
   */
  blobs: BlobStore;
  /** Ingest jobs run in this process, with their progress. */
  jobs: JobRegistry;
  /**
   * Image ingest jobs on the shared queue (`LOUPE_DATABASE_URL` and `LOUPE_REDIS_URL` both set): recorded
   * in PostgreSQL, run by workers (`loupe serve --role worker|all`); absent: they run in `jobs`.
   */
  sharedJobs?: SharedJobs;
  /** The tenant of requests while authentication is off; the configured default tenant when absent. */
  resolveTenant?: TenantResolver;
  /**
   * The LLM composer, built when `LOUPE_LLM_MODEL` is set (OpenAI-compatible endpoint, prompts from
   * `LOUPE_PROMPTS_DIR`). Absent: the offline composer writes every chat answer.
   */
  llm?: AnswerComposer;
  /**
   * Reads the text in images (`LOUPE_OCR=auto`): every new image and video keyframe at ingest, stored
   * items in the backfill, attached images in chat. Absent (`LOUPE_OCR=off`): no text is read at ingest.
   */
  ocr?: OcrEngine;
  /** Where items' media is served; the HTTP routes' paths when absent. */
  urls?: MediaUrls;
  /** The audit trail of writes, deletes and key changes; `<LOUPE_DATA_DIR>/audit.log` when absent. */
  audit?: AuditLog;
  /** The API keys requests are authenticated with; `<LOUPE_DATA_DIR>/auth/keys.json` when absent. */
  keys?: KeyStore;
  /**
   * State of the rate limits and the heavy-request caps; on the Redis of `LOUPE_REDIS_URL` when it is set
   * (built by {@link createLoupeServices}), in this process's memory when absent.
   */
  limiter?: RateLimiter;
  /** Shared dependencies `/readyz` checks besides the vector store (PostgreSQL, Redis); none when absent. */
  dependencies?: readonly DependencyCheck[];
  /**
   * Where the layers report requests, chain steps, model runs, store calls, ingested items and the LLM,
   * served at `GET /metrics`; when absent, a Prometheus registry of its own with `LOUPE_METRICS=on`,
   * nothing with `off`.
   */
  metrics?: ScrapableMetrics;
  /**
   * Signs the media links chat answers cite, so a browser opens them without the API key; when absent,
   * signed under the key store's secret (`LOUPE_KEY_SECRET` or `<LOUPE_DATA_DIR>/auth/secret`) for
   * `LOUPE_MEDIA_URL_TTL_S`.
   */
  mediaLinks?: MediaLinkSigner;
  /** Feedback on answers and the triples it proposes; files under `<LOUPE_DATA_DIR>/feedback` when absent. */
  feedbackStore?: FeedbackStore;
  /** Users' interactions with items, per tenant; files under `<LOUPE_DATA_DIR>/events` when absent. */
  eventStore?: EventStore;
  /** Few-shot classifiers; one JSON file each under `<LOUPE_DATA_DIR>/classifiers` when absent. */
  classifierStore?: ClassifierStore;
  /**
   * Opens a connection of its own to the store's Milvus with the collections of each model, for a pack
   * switch; absent where there is no Milvus (then no migration can run).
   */
  openCatalog?: () => ModelCatalog;
}

/** Everything the HTTP layer, the CLI, the evals and library users work with, each built once. */
export interface LoupeServices extends ServiceParts, ClassifierServices {
  resolveTenant: TenantResolver;
  urls: MediaUrls;
  audit: AuditLog;
  keys: KeyStore;
  limiter: RateLimiter;
  /** Shared dependencies `/readyz` checks besides the vector store; empty in the embedded default. */
  dependencies: readonly DependencyCheck[];
  mediaLinks: MediaLinkSigner;
  /** Stored media read and written through the blob store. */
  media: MediaReader & MediaWriter;
  /** Search, recommendation, zero-shot classification and auto-tags. */
  search: SearchService;
  /** Images from uploads, URLs and files. */
  images: ImageIngester;
  /** Videos from uploads, URLs and files, cut into segments. */
  videos: VideoIngester;
  /** Image-question-answer triples. */
  triples: TripleIngester;
  /** Reads the text of stored items that have none (`loupe ocr backfill`, jobs of kind `ocr`); absent without `ocr`. */
  ocrBackfill?: OcrBackfill;
  /** Stores the regions of items that have none (jobs of kind `regions`); absent without a detection head. */
  regionBackfill?: RegionBackfill;
  /** Switches the store to another model pack (`loupe models migrate`, jobs of kind `migrate`); absent without `openCatalog`. */
  packMigration?: PackMigration;
  /** The retrieval chain that answers chat turns (a LangChain Runnable inside). */
  chain: LoupeChainRunnable;
  feedbackStore: FeedbackStore;
  /** Feedback on answers, and the triples it proposes until a key with the `ingest` scope decides. */
  feedback: FeedbackService;
  eventStore: EventStore;
  /** Recommendations from items and from users' events. */
  recommend: RecommendService;
}

/** Few-shot classifiers, in {@link LoupeServices}. */
export interface ClassifierServices {
  /** Few-shot classifiers taught from examples; those with `applyOnIngest` label new images. */
  classifiers: ClassifierService;
}

/** Services that own running resources, as returned by {@link createLoupeServices}. */
export interface OpenLoupeServices extends LoupeServices {
  /**
   * Process id of the embedded Milvus Lite, kept current when it is restarted; absent when
   * `MILVUS_ADDRESS` points at a server, and while Lite is down.
   */
  readonly milvusLitePid?: number;
  /**
   * Builds a worker that runs the shared queue's image jobs (`loupe serve --role worker|all`); present
   * only with `sharedJobs`. Close the worker before the services.
   */
  createJobWorker?: () => SharedJobWorker;
  /**
   * Stops jobs, closes the OCR engine, the model pack and the store, stops Milvus Lite. Safe to call more
   * than once.
   */
  close(): Promise<void>;
}

/** The pack's detection head; none when the pack has none or could not be loaded (every use then fails). */
function detectorOf(models: ModelPack): ObjectDetector | undefined {
  try {
    return models.detector;
  } catch (error) {
    if (error instanceof NotReadyError) return undefined;
    throw error;
  }
}

/**
 * Wires the layers over the given adapters: the search service, the image, video and triple ingesters
 * (URL fetches through the SSRF-safe fetcher, with the configured limits) and the chat chain. Builds no
 * I/O of its own, so tests wire it over a real store and pack they made.
 */
export function assembleServices(parts: ServiceParts): LoupeServices {
  const { config, logger, models, blobs, llm, ocr: ocrEngine } = parts;
  const metrics = parts.metrics ?? (config.metrics === "on" ? createPrometheusMetrics() : undefined);
  // Every layer's store calls go through one decorator, so each Milvus call is timed once.
  const store =
    metrics === undefined ? parts.store : InstrumentedVectorStore.wrap({ store: parts.store, metrics });
  const ocr: IngestOcr | undefined =
    ocrEngine === undefined ? undefined : { engine: ocrEngine, minConfidence: config.ocrMinConfidence };
  const resolveTenant =
    parts.resolveTenant ?? createDefaultTenantResolver({ defaultTenant: config.defaultTenant });
  const urls = parts.urls ?? mediaRouteUrls;
  const audit = parts.audit ?? createFileAuditLog({ file: path.join(config.dataDir, "audit.log") });
  const keys =
    parts.keys ??
    createFileKeyStore({
      dir: keyStoreDir(config.dataDir),
      secret: config.keySecret,
      tenantPattern: TENANT_PATTERN,
    });
  const limiter = parts.limiter ?? createMemoryRateLimiter();
  const mediaLinks =
    parts.mediaLinks ??
    createMediaLinkSigner({
      // Read only when a link is signed or checked, which happens only while API keys exist (and with
      // them the secret); a server without keys never touches it.
      secret: async () => config.keySecret ?? (await ensureKeySecret(keyStoreDir(config.dataDir))),
      ttlSeconds: config.mediaUrlTtlS,
    });
  const media = blobMedia(blobs);
  const urlSettings = {
    timeoutMs: config.urlTimeoutMs,
    allowHosts: config.urlAllowHosts,
    maxRedirects: config.urlMaxRedirects,
  };
  const search = new SearchService({
    store,
    models,
    media,
    urls,
    // Read on first use, so a missing pack fails only the requests that need it.
    logitScale: () => readLogitScale({ packDir: config.modelPack }),
    ranker: searchRanker(config),
  });
  const classifierStore =
    parts.classifierStore ?? createFileClassifierStore({ dir: path.join(config.dataDir, "classifiers") });
  const classifierDetector = detectorOf(models);
  const classifiers = new ClassifierService({
    store: classifierStore,
    search,
    models,
    media,
    ...(classifierDetector === undefined ? {} : { detector: classifierDetector }),
    fetchImage: ({ url }) =>
      fetchUrl({
        url,
        maxBytes: Math.min(config.urlMaxBytes, config.maxImageBytes),
        allowedContentTypes: [...IMAGE_URL_CONTENT_TYPES],
        ...urlSettings,
      }),
    logger: logger.child({ component: "classifiers" }),
  });
  // Objects as records: only with a pack that has a detection head, and only when asked for.
  const detector = detectorOf(models);
  const detection: IngestRegions | undefined =
    detector === undefined
      ? undefined
      : {
          detector,
          ...(config.regionMinScore === undefined ? {} : { threshold: config.regionMinScore }),
        };
  const regions = config.regions === "on" ? detection : undefined;
  const images = new ImageIngester({
    store,
    models,
    blobs,
    maxImageBytes: config.maxImageBytes,
    maxImagePixels: config.maxImagePixels,
    thumbnailSize: config.thumbnailSize,
    fetch: { maxBytes: config.urlMaxBytes, ...urlSettings },
    ...(ocr === undefined ? {} : { ocr }),
    ...(regions === undefined ? {} : { regions }),
    logger: logger.child({ component: "images" }),
    metrics,
    annotate: (request) => classifiers.annotate(request),
  });
  const triples = new TripleIngester({
    store,
    models,
    media,
    maxMetadataBytes: config.maxMetadataBytes,
    thumbnailSize: config.thumbnailSize,
    maxImagePixels: config.maxImagePixels,
    fetchImage: ({ url }) =>
      fetchUrl({
        url,
        maxBytes: Math.min(config.urlMaxBytes, config.maxImageBytes),
        allowedContentTypes: [...IMAGE_URL_CONTENT_TYPES],
        ...urlSettings,
      }),
    metrics,
  });
  const videos = createVideoIngester({
    store,
    models,
    blobs,
    config,
    ...(ocr === undefined ? {} : { ocr }),
    ...(regions === undefined ? {} : { regions }),
    logger: logger.child({ component: "videos" }),
    metrics,
    annotate: (request) => classifiers.annotate(request),
  });
  const ocrBackfill =
    ocr === undefined
      ? undefined
      : new OcrBackfill({ store, media, ocr, logger: logger.child({ component: "ocr-backfill" }) });
  const regionBackfill =
    detection === undefined
      ? undefined
      : new RegionBackfill({
          store,
          media,
          regions: detection,
          modelId: models.modelId,
          logger: logger.child({ component: "region-backfill" }),
        });
  const packMigration =
    parts.openCatalog === undefined
      ? undefined
      : new PackMigration({
          openCatalog: parts.openCatalog,
          blobs,
          resolvePack: (to) => resolvePackDir({ to, modelsDir: config.modelsDir }),
          loadPack: (dir) =>
            loadModelPack({
              dir,
              visionReplicas: config.visionReplicas,
              sessionOptions: {
                intraOpNumThreads: config.inferenceThreads,
                executionProviders: config.executionProviders,
                metrics,
              },
              imageLimits: {
                maxInputBytes: config.maxImageBytes,
                maxInputPixels: config.maxImagePixels,
                maxFrames: config.maxImageFrames,
              },
            }),
          video: videoIngestSettings({ config }),
          logger: logger.child({ component: "pack-migration" }),
        });
  const chain = createLoupeChain({
    search,
    store,
    models,
    media,
    urls,
    llm,
    ...(ocrEngine === undefined ? {} : { ocr: ocrEngine }),
    logger: logger.child({ component: "chat" }),
    config,
    metrics,
  });
  const feedbackStore =
    parts.feedbackStore ?? createFileFeedbackStore({ dir: path.join(config.dataDir, "feedback") });
  const feedback = new FeedbackService({
    feedback: feedbackStore,
    blobs,
    store,
    triples,
    maxPending: config.feedbackMaxPending,
    maxImagePixels: config.maxImagePixels,
    logger: logger.child({ component: "feedback" }),
  });
  const eventStore =
    parts.eventStore ??
    createFileEventStore({
      dir: path.join(config.dataDir, "events"),
      maxEventsPerUser: config.eventsMaxPerUser,
    });
  const recommend = new RecommendService({
    store,
    models,
    media,
    urls,
    events: eventStore,
    halfLifeMs: config.eventsHalfLifeHours * 3600 * 1000,
    detector,
  });
  return {
    ...parts,
    classifierStore,
    classifiers,
    store,
    metrics,
    resolveTenant,
    urls,
    audit,
    keys,
    limiter,
    dependencies: parts.dependencies ?? [],
    mediaLinks,
    media,
    search,
    images,
    videos,
    triples,
    ...(ocrBackfill === undefined ? {} : { ocrBackfill }),
    ...(regionBackfill === undefined ? {} : { regionBackfill }),
    ...(packMigration === undefined ? {} : { packMigration }),
    chain,
    feedbackStore,
    feedback,
    eventStore,
    recommend,
  };
}

/** The hybrid-search ranker of a configuration (`LOUPE_SEARCH_RANKER` and its parameters). */
export function searchRanker(
  config: Pick<Config, "searchRanker" | "searchRrfK" | "searchDenseWeight" | "searchTextWeight">,
): HybridRanker {
  return config.searchRanker === "weighted"
    ? { type: "weighted", dense: config.searchDenseWeight, text: config.searchTextWeight }
    : { type: "rrf", k: config.searchRrfK };
}

/**
 * The OCR engine of a configuration: PP-OCRv4 under `LOUPE_OCR_MAX_SIDE`, `LOUPE_OCR_MAX_LINES` and
 * `LOUPE_OCR_TIMEOUT_MS`, the image limits every image is decoded under, and the pack's session settings
 * (threads, execution providers). Its sessions are made on its first reading, so building it is cheap.
 */
export function buildOcrEngine({ config, metrics }: { config: Config; metrics?: LoupeMetrics }): OcrEngine {
  return createPpOcrEngine({
    limits: { maxSide: config.ocrMaxSide, maxLines: config.ocrMaxLines, timeoutMs: config.ocrTimeoutMs },
    imageLimits: {
      maxInputBytes: config.maxImageBytes,
      maxInputPixels: config.maxImagePixels,
      maxFrames: config.maxImageFrames,
    },
    settings: {
      intraOpNumThreads: config.inferenceThreads,
      executionProviders: config.executionProviders,
      metrics,
    },
  });
}

/**
 * Builds every service once, in the order start-up needs: the prompts and LLM composer first (a broken
 * prompt stops start-up before Milvus Lite is started), then the store (embedded Milvus Lite unless
 * `MILVUS_ADDRESS` is set), the model pack, the blob store and the job registry, then
 * {@link assembleServices}. A failure undoes the steps already done, in reverse order, so a failed
 * start leaves no Milvus Lite behind.
 */
export async function createLoupeServices({
  config,
  logger,
  forMigration = false,
}: {
  config: Config;
  logger: Logger;
  /**
   * Open Milvus for a pack switch only (`loupe models migrate`): no store over the live collections (whose
   * model or dimension may differ from the configured pack's, which is what the switch is for), only
   * `openCatalog` and `packMigration`. Otherwise start-up refuses live collections of another model.
   */
  forMigration?: boolean;
}): Promise<OpenLoupeServices> {
  const cleanups: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) => logger.error({ err: error }, "closing a service failed"));
    }
  };
  try {
    // First, so that every part built below reports to the same registry.
    const metrics = config.metrics === "on" ? createPrometheusMetrics() : undefined;
    // Shared state first: a database with pending migrations stops start-up before anything heavy loads.
    const shared = await buildSharedStores({ config, logger });
    if (shared !== undefined) cleanups.push(() => shared.close());
    const limiter = await buildSharedRateLimiter({ config, logger });
    if (limiter !== undefined) cleanups.push(() => limiter.close());
    const sharedJobs = await buildSharedJobs({ config, shared });
    if (sharedJobs !== undefined) cleanups.push(() => sharedJobs.close());
    const llm = await buildLlmComposer({ config, logger, metrics });
    const { store, liteStore, openCatalog } = await buildStore({
      config,
      logger,
      cleanups,
      metrics,
      forMigration,
    });
    const models = await buildModelPack({ config, logger, metrics });
    cleanups.push(() => models.close());
    const ocr = config.ocr === "auto" ? buildOcrEngine({ config, metrics }) : undefined;
    if (ocr !== undefined) cleanups.push(() => ocr.close());
    logger.info({ ocr: ocr?.id ?? "off" }, config.ocr === "auto" ? "OCR on" : "OCR off (LOUPE_OCR=off)");
    const { blobs, close: closeBlobs } = await openBlobStore({
      settings: config,
      onS3: (where) => logger.info(where, "blobs on S3"),
      // With a database, the blobs' references live in it, over the shared stores' pool.
      ...(shared === undefined ? {} : { pool: shared.pool }),
      onReferenceIndex: (where) => logger.info(where, "blob references on PostgreSQL"),
    });
    cleanups.push(closeBlobs);
    const jobs = createJobRegistry({ logger: logger.child({ component: "jobs" }) });
    // Running jobs stop between items; their unfinished items stay pending, and re-sending them skips what was stored.
    cleanups.push(() => jobs.close());
    const services = assembleServices({
      config,
      logger,
      store,
      models,
      blobs,
      jobs,
      llm,
      ...(ocr === undefined ? {} : { ocr }),
      ...(metrics === undefined ? {} : { metrics }),
      ...(openCatalog === undefined ? {} : { openCatalog }),
      ...(shared === undefined ? {} : shared.parts),
      ...(limiter === undefined ? {} : { limiter }),
      dependencies: sharedDependencies({ shared, limiter }),
      ...(sharedJobs === undefined ? {} : { sharedJobs: sharedJobs.createSharedJobs({ blobs }) }),
    });
    cleanups.push(() => services.audit.close());
    cleanups.push(() => services.feedbackStore.close());
    cleanups.push(() => services.eventStore.close());
    cleanups.push(() => services.keys.close());
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= closeAll();
      return closing;
    };
    return {
      ...services,
      get milvusLitePid() {
        return liteStore?.pid;
      },
      ...(sharedJobs === undefined
        ? {}
        : {
            createJobWorker: () =>
              sharedJobs.createWorker({
                images: services.images,
                videos: services.videos,
                blobs: services.blobs,
                triples: services.triples,
                ocrBackfill: services.ocrBackfill,
                regionBackfill: services.regionBackfill,
                packMigration: services.packMigration,
                audit: services.audit,
                logger: logger.child({ component: "job-worker" }),
              }),
          }),
      close,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/**
 * The embedding dimension of the collections: `LOUPE_EMBEDDING_DIM` when set, else `projection_dim`
 * from the model pack's `config.json` (read and checked with the pack's other JSON files; no model is
 * opened).
 *
 * @throws {ModelPackError} when neither is available, or the pack's files are invalid.
 */
async function resolveEmbeddingDimension({
  config,
}: {
  config: Config;
}): Promise<{ dimension: number; modelId?: string }> {
  const file = path.join(config.modelPack, "config.json");
  if (config.embeddingDim !== undefined) {
    // The pack's model id still guards the collections when the pack can be read.
    const info = existsSync(file)
      ? await readModelPackInfo({ dir: config.modelPack }).catch(() => undefined)
      : undefined;
    return { dimension: config.embeddingDim, ...(info === undefined ? {} : { modelId: info.modelId }) };
  }
  if (!existsSync(file)) {
    throw new ModelPackError(
      `The embedding dimension is unknown: there is no model pack at ${config.modelPack} (no config.json). Install the model pack, point LOUPE_MODEL_PACK at one, or set LOUPE_EMBEDDING_DIM.`,
      { context: { modelPack: config.modelPack } },
    );
  }
  const pack = await readModelPackInfo({ dir: config.modelPack });
  return { dimension: pack.dimension, modelId: pack.modelId };
}

/**
 * The directory a pack switch's `to` names: a path (absolute, or with a `/`, or starting with `.`) as it
 * is, else a pack name under `LOUPE_MODELS_DIR`.
 *
 * @throws ValidationError for an empty name.
 */
export function resolvePackDir({ to, modelsDir }: { to: string; modelsDir: string }): string {
  if (to.trim().length === 0) {
    throw new ValidationError(
      "The pack to switch to is empty; give a pack directory or a pack name under LOUPE_MODELS_DIR.",
    );
  }
  return path.isAbsolute(to) || to.includes("/") || to.includes(path.sep) || to.startsWith(".")
    ? path.resolve(to)
    : path.join(modelsDir, to);
}

/**
 * Builds the vector store the app will use:
 * - embedded Milvus Lite (no `MILVUS_ADDRESS`): started and connected before start-up completes (any
 *   failure stops start-up, since the whole service is on this machine), then supervised: when Lite
 *   exits it is restarted, up to `LOUPE_MILVUS_RESTART_ATTEMPTS` times in a row, and the store reconnected;
 * - an external Milvus: connected in the background with retries, so Loupe starts (and `/readyz`
 *   reports why it is not ready) while that server is down or still starting;
 * - no embedding dimension (no model pack and no `LOUPE_EMBEDDING_DIM`): no store at all, only the
 *   reason, which `/readyz` and every store call report.
 */
async function buildStore({
  config,
  logger,
  cleanups,
  metrics,
  forMigration,
}: {
  config: Config;
  logger: Logger;
  cleanups: Array<() => Promise<void>>;
  metrics?: LoupeMetrics;
  forMigration: boolean;
}): Promise<{ store: VectorStore; liteStore?: SupervisedVectorStore; openCatalog?: () => ModelCatalog }> {
  let dimension: number;
  let modelId: string | undefined;
  try {
    ({ dimension, modelId } = await resolveEmbeddingDimension({ config }));
  } catch (error) {
    if (!(error instanceof ModelPackError)) throw error;
    logger.warn({ err: error }, "serving without a vector store: the embedding dimension is unknown");
    return { store: DeferredVectorStore.unavailable(error.message) };
  }
  const storeOptions = {
    token: config.milvusToken,
    database: config.milvusDatabase,
    collectionPrefix: config.collectionPrefix,
    ...(modelId === undefined ? {} : { modelId, modelPack: config.modelPack }),
    dimension,
    metric: config.metric,
    indexType: config.indexType,
    timeoutMs: config.milvusTimeoutMs,
    longTimeoutMs: config.milvusLongTimeoutMs,
    logger: logger.child({ component: "store" }),
  };
  const catalogAt = (address: string) =>
    ModelCatalog.connect({
      address,
      token: config.milvusToken,
      database: config.milvusDatabase,
      prefix: config.collectionPrefix,
      metric: config.metric,
      indexType: config.indexType,
      timeoutMs: config.milvusTimeoutMs,
      longTimeoutMs: config.milvusLongTimeoutMs,
      logger: logger.child({ component: "catalog" }),
    });

  const external = config.milvusAddress;
  if (forMigration) {
    const migrating = DeferredVectorStore.unavailable("The store is open for a pack migration only.");
    if (external !== undefined) return { store: migrating, openCatalog: () => catalogAt(external) };
    const lite = await startMilvusLite({
      dataDir: path.join(config.dataDir, "milvus"),
      venvDir: config.venvDir,
      host: "127.0.0.1",
      startTimeoutMs: config.milvusStartTimeoutMs,
      logger: logger.child({ component: "milvus-lite" }),
    });
    cleanups.push(() => lite.stop());
    return { store: migrating, openCatalog: () => catalogAt(lite.address) };
  }
  if (external !== undefined) {
    const store = DeferredVectorStore.connect({
      address: external,
      connect: () => createVectorStore({ address: external, ...storeOptions }),
      logger,
    });
    cleanups.push(() => store.close());
    return { store, openCatalog: () => catalogAt(external) };
  }

  const liteLogger = logger.child({ component: "milvus-lite" });
  // The supervisor starts Lite through this function only: every call after the first is a restart.
  let starts = 0;
  const store = await SupervisedVectorStore.start({
    startLite: async ({ avoidPort }) => {
      const restart = starts++ > 0;
      try {
        const lite = await startMilvusLite({
          dataDir: path.join(config.dataDir, "milvus"),
          venvDir: config.venvDir,
          host: "127.0.0.1",
          avoidPort,
          startTimeoutMs: config.milvusStartTimeoutMs,
          logger: liteLogger,
        });
        if (restart) metrics?.countLiteRestart("started");
        return lite;
      } catch (error) {
        if (restart) metrics?.countLiteRestart("failed");
        throw error;
      }
    },
    connect: (address) => createVectorStore({ address, ...storeOptions }),
    restartAttempts: config.milvusRestartAttempts,
    logger: liteLogger,
  });
  cleanups.push(() => store.close());
  metrics?.watchLite(() => store.pid !== undefined);
  const openCatalog = () => {
    const address = store.address;
    if (address === undefined) {
      throw new NotReadyError("Milvus Lite is restarting; start the migration again in a moment.");
    }
    return catalogAt(address);
  };
  return { store, liteStore: store, openCatalog };
}

/** The stores {@link buildSharedStores} puts on PostgreSQL, and how to end their one pool. */
interface SharedStores {
  parts: Required<Pick<ServiceParts, "keys" | "audit" | "feedbackStore" | "classifierStore" | "eventStore">>;
  /** Closes the key store (its pending `lastUsedAt` writes), then ends the pool; once. */
  close(): Promise<void>;
  /** The one pool, for the other PostgreSQL adapters built beside these (the shared jobs). */
  pool: import("pg").Pool;
}

/**
 * The API keys, the audit trail, feedback and proposals, classifiers and users' events on the PostgreSQL
 * of `LOUPE_DATABASE_URL`, shared by every process on it, over one pool; `undefined` when it is unset (the
 * files under the data dir, as before). The other stores' `close()` (run first by the services) waits for
 * their writes; this `close()` ends the pool after. Start-up stops with a `DatabaseError` naming
 * `loupe migrate` while migrations are pending, and when the database cannot be reached.
 */
async function buildSharedStores({
  config,
  logger,
}: {
  config: Config;
  logger: Logger;
}): Promise<SharedStores | undefined> {
  if (config.databaseUrl === undefined) return undefined;
  // Imported on use: the embedded default never loads `pg`.
  const [
    { describeDatabaseUrl },
    { openDatabase },
    { createPgKeyStore },
    { createPgAuditLog },
    { createPgFeedbackStore },
    { createPgClassifierStore },
    { createPgEventStore },
  ] = await Promise.all([
    import("./db/database.ts"),
    import("./db/open-database.ts"),
    import("./auth/pg-key-store.ts"),
    import("./audit/pg-audit-log.ts"),
    import("./feedback/pg-feedback-store.ts"),
    import("./classifiers/pg-classifier-store.ts"),
    import("./recommend/pg-event-store.ts"),
  ]);
  const pool = await openDatabase({ url: config.databaseUrl });
  const keys = createPgKeyStore({
    pool,
    secret: config.keySecret,
    secretDir: keyStoreDir(config.dataDir),
    tenantPattern: TENANT_PATTERN,
  });
  logger.info(
    { database: describeDatabaseUrl(config.databaseUrl) },
    "API keys, audit trail, feedback, classifiers and user events on PostgreSQL",
  );
  let closing: Promise<void> | undefined;
  return {
    parts: {
      keys,
      audit: createPgAuditLog({ pool }),
      feedbackStore: createPgFeedbackStore({ pool }),
      classifierStore: createPgClassifierStore({ pool }),
      eventStore: createPgEventStore({ pool, maxEventsPerUser: config.eventsMaxPerUser }),
    },
    close() {
      closing ??= keys.close().finally(() => pool.end());
      return closing;
    },
    pool,
  };
}

/**
 * Image and video ingest jobs, OCR backfills and pack switches on the Redis of `LOUPE_REDIS_URL`, recorded in the database of
 * `LOUPE_DATABASE_URL` (`shared-jobs.ts`); `undefined` unless both are set. Video uploads wait in the
 * blob store, so the API side is made once the blob store is open. Redis is connected on first use, so a Redis that is
 * down does not stop start-up: creating a job answers 503 `queue_unavailable` until it is back.
 */
async function buildSharedJobs({
  config,
  shared,
}: {
  config: Config;
  shared: SharedStores | undefined;
}): Promise<
  | {
      /** The API side, with the blob store video uploads wait in. */
      createSharedJobs(options: { blobs: BlobStore }): SharedJobs;
      /** A worker over these jobs, for `loupe serve --role worker|all`. */
      createWorker(parts: SharedJobWorkerParts): SharedJobWorker;
      close(): Promise<void>;
    }
  | undefined
> {
  if (shared === undefined || config.redisUrl === undefined) return undefined;
  // Imported on use: the embedded default never loads a Redis client.
  const [{ RedisWorkQueue }, { PgJobStore }, { SharedJobs, SharedJobWorker }] = await Promise.all([
    import("./ingest/redis-work-queue.ts"),
    import("./ingest/pg-job-store.ts"),
    import("./ingest/shared-jobs.ts"),
  ]);
  const queue = new RedisWorkQueue({
    url: config.redisUrl,
    keyPrefix: config.redisKeyPrefix,
    leaseMs: config.jobLeaseMs,
    maxItems: config.jobQueueMaxItems,
  });
  const store = new PgJobStore({ pool: shared.pool });
  return {
    createSharedJobs: ({ blobs }) => new SharedJobs({ store, queue, blobs }),
    createWorker: (parts) =>
      new SharedJobWorker({
        store,
        queue,
        ...parts,
        concurrency: config.workerConcurrency,
        batchItems: config.workerBatchItems,
        maxAttempts: config.jobMaxAttempts,
      }),
    close: () => queue.close(),
  };
}

/**
 * What `/readyz` checks of the shared state: PostgreSQL answers a query (required: without it no key is
 * checked), and Redis answered the rate limiter's last call (not required: limits fall back to memory).
 */
function sharedDependencies({
  shared,
  limiter,
}: {
  shared: SharedStores | undefined;
  limiter: RedisRateLimiter | undefined;
}): DependencyCheck[] {
  const checks: DependencyCheck[] = [];
  if (shared !== undefined) {
    checks.push({
      name: "PostgreSQL",
      required: true,
      check: async () => {
        await shared.pool.query("select 1");
        return { ok: true };
      },
    });
  }
  if (limiter !== undefined) {
    checks.push({
      name: "Redis",
      required: false,
      check: async () =>
        limiter.shared
          ? { ok: true }
          : {
              ok: false,
              reason:
                "Redis cannot be reached: rate limits and heavy-request caps are kept in each process's memory until it answers",
            },
    });
  }
  return checks;
}

/**
 * The rate limits and heavy-request caps on the Redis of `LOUPE_REDIS_URL`, shared by every process on
 * it; `undefined` when it is unset (each process keeps its own in memory, as before); its `close()` ends
 * its connection. A Redis that cannot be reached does not stop start-up: the limits fall back to this
 * process's memory, with a warning, until Redis answers.
 */
async function buildSharedRateLimiter({
  config,
  logger,
}: {
  config: Config;
  logger: Logger;
}): Promise<RedisRateLimiter | undefined> {
  if (config.redisUrl === undefined) return undefined;
  // Imported on use: the embedded default never loads a Redis client.
  const { openRedisRateLimiter } = await import("./http/limits/redis-rate-limiter.ts");
  return openRedisRateLimiter({
    url: config.redisUrl,
    keyPrefix: config.redisKeyPrefix,
    logger: logger.child({ component: "rate-limits" }),
  });
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
  metrics,
}: {
  config: Config;
  logger: Logger;
  metrics?: LoupeMetrics;
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
    metrics,
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
async function buildModelPack({
  config,
  logger,
  metrics,
}: {
  config: Config;
  logger: Logger;
  metrics?: LoupeMetrics;
}): Promise<ModelPack> {
  try {
    const models = await loadModelPack({
      dir: config.modelPack,
      visionReplicas: config.visionReplicas,
      sessionOptions: {
        intraOpNumThreads: config.inferenceThreads,
        executionProviders: config.executionProviders,
        metrics,
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
