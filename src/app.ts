/**
 * `createApp(services)`: Loupe's Hono app. Middleware gives every request an id, a logger bound to it
 * and a tenant, and writes one access-log line; routes are mounted one file each from `src/http/routes/`;
 * one `onError` and one `notFound` answer every failure in the same JSON envelope (`src/http/errors.ts`).
 * The app holds no state of its own: everything it uses comes in through {@link Services}.
 */
import { Hono } from "hono";
import { requestId } from "hono/request-id";
import type { Config } from "./config.ts";
import type { AppEnv } from "./http/context.ts";
import { handleError, handleNotFound } from "./http/errors.ts";
import { createChatRoute } from "./http/routes/chat.ts";
import { createChatCompletionsRoute } from "./http/routes/chat-completions.ts";
import { createClassifyRoute } from "./http/routes/classify.ts";
import { createHealthzRoute } from "./http/routes/healthz.ts";
import { createImagesRoute } from "./http/routes/images.ts";
import { createItemsRoute } from "./http/routes/items.ts";
import { createJobsRoute } from "./http/routes/jobs.ts";
import { createMediaRoute } from "./http/routes/media.ts";
import { createModelsRoute } from "./http/routes/models.ts";
import { createOpenApiRoute } from "./http/routes/openapi.ts";
import { createReadyzRoute } from "./http/routes/readyz.ts";
import { createSearchRoute } from "./http/routes/search.ts";
import { createSimilarRoute } from "./http/routes/similar.ts";
import { createTriplesRoute } from "./http/routes/triples.ts";
import { createVideosRoute } from "./http/routes/videos.ts";
import { createVqaRoute } from "./http/routes/vqa.ts";
import type { TenantResolver } from "./http/tenant.ts";
import type { ModelPack } from "./inference/index.ts";
import type { JobRegistry } from "./ingest/jobs.ts";
import { createVideoIngester, deleteVideo } from "./ingest/video-ingest.ts";
import type { Logger } from "./logger.ts";
import type { BlobStore } from "./media/blob-store.ts";
import { createLoupeChain } from "./rag/chain.ts";
import type { AnswerComposer } from "./rag/types.ts";
import { blobMedia, createSearchServices } from "./search/index.ts";
import type { VectorStore } from "./store/index.ts";

/** Everything the HTTP layer uses, built once by `main.ts`. */
export interface Services {
  config: Config;
  logger: Logger;
  /** The vector store port; the HTTP layer only calls its methods, never Milvus itself. */
  store: VectorStore;
  /** The loaded model pack (embedders, VQA head); every call fails with `not_ready` when it is missing. */
  models: ModelPack;
  /** Originals and derived files (thumbnails, keyframes), content-addressed under `<LOUPE_DATA_DIR>/blobs`. */
  blobs: BlobStore;
  /** Ingest jobs run in this process, with their progress. */
  jobs: JobRegistry;
  resolveTenant: TenantResolver;
  /**
   * The LLM composer, built when `LOUPE_LLM_MODEL` is set (OpenAI-compatible endpoint, prompts from
   * `LOUPE_PROMPTS_DIR`). Absent: the offline composer writes every chat answer.
   */
  llm?: AnswerComposer;
}

/** Paths polled by orchestrators; their access lines are logged at debug so they do not drown the log. */
const probePaths = new Set(["/healthz", "/readyz"]);

/** Builds the app. Routes are added here, one `app.route` line per file in `src/http/routes/`. */
export function createApp(services: Services): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  // Incoming ids are kept only if short and made of [A-Za-z0-9_=-], so they are safe in logs and headers.
  app.use(requestId({ limitLength: 128 }));
  app.use(async (c, next) => {
    const logger = services.logger.child({ requestId: c.get("requestId") });
    c.set("logger", logger);
    c.set("tenant", services.resolveTenant(c));
    const started = performance.now();
    await next();
    const level = probePaths.has(c.req.path) && c.res.status < 500 ? "debug" : "info";
    logger[level](
      {
        req: { method: c.req.method, path: c.req.path },
        res: { status: c.res.status },
        durationMs: Math.round((performance.now() - started) * 10) / 10,
      },
      "request completed",
    );
  });

  app.route("/", createHealthzRoute());
  app.route("/", createReadyzRoute({ store: services.store, timeoutMs: services.config.milvusTimeoutMs }));
  app.route("/", createJobsRoute({ jobs: services.jobs }));
  app.route("/", createImagesRoute(services));
  app.route("/", createMediaRoute(services));
  app.route("/", createItemsRoute({ ...services, deleteVideo }));
  const { search, triples } = createSearchServices(services);
  app.route("/", createSearchRoute({ search, config: services.config }));
  app.route("/", createSimilarRoute({ search }));
  app.route("/", createClassifyRoute({ search, config: services.config }));
  app.route("/", createVqaRoute({ search, models: services.models, config: services.config }));
  app.route("/", createTriplesRoute({ triples, config: services.config, jobs: services.jobs }));
  const videos = createVideoIngester({ ...services, logger: services.logger.child({ component: "videos" }) });
  app.route("/", createVideosRoute({ videos, jobs: services.jobs, config: services.config }));
  const chain = createLoupeChain({
    search,
    store: services.store,
    models: services.models,
    media: blobMedia(services.blobs),
    llm: services.llm,
    logger: services.logger.child({ component: "chat" }),
    config: services.config,
  });
  app.route("/", createChatRoute({ chain, config: services.config }));
  app.route("/", createChatCompletionsRoute({ chain, config: services.config }));
  app.route("/", createModelsRoute({ chain }));
  app.route("/", createOpenApiRoute());

  app.onError(handleError);
  app.notFound(handleNotFound);
  return app;
}
