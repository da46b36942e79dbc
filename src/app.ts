/**
 * `createApp(services)`: Loupe's Hono app. Middleware gives every request an id and a logger bound to
 * it, checks the `Host` it was sent to, answers CORS for the origins API keys list, decides who the
 * caller is (an API key's tenant and scopes, or the default tenant while authentication is off),
 * refuses state-changing requests from foreign web origins, and writes one access-log line; routes are
 * mounted one file each from `src/http/routes/`, each declared with its schemas (`src/http/openapi.ts`),
 * and the OpenAPI document at /openapi.json is generated from those declarations; one `onError` and one
 * `notFound` answer every failure in the same JSON envelope (`src/http/errors.ts`).
 * The app holds no state of its own: everything it uses comes in through {@link LoupeServices}, built
 * once by `services.ts`.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import { createHostPolicy } from "./auth/host-policy.ts";
import { authenticate } from "./http/auth/authenticate.ts";
import { cors } from "./http/auth/cors.ts";
import { hostCheck } from "./http/auth/host-check.ts";
import { originCheck } from "./http/auth/origin-check.ts";
import type { AppEnv } from "./http/context.ts";
import { handleError, handleNotFound } from "./http/errors.ts";
import { requestLimits } from "./http/limits/request-limits.ts";
import { buildOpenApiDocument, createRouter } from "./http/openapi.ts";
import { requestMetrics } from "./http/request-metrics.ts";
import { createAdminKeysRoute } from "./http/routes/admin-keys.ts";
import { createChatRoute } from "./http/routes/chat.ts";
import { createChatCompletionsRoute } from "./http/routes/chat-completions.ts";
import { createChatPageRoute } from "./http/routes/chat-page.ts";
import { createClassifiersRoute } from "./http/routes/classifiers.ts";
import { createClassifyRoute } from "./http/routes/classify.ts";
import { createDetectRoute } from "./http/routes/detect.ts";
import { createEmbeddingsRoute } from "./http/routes/embeddings.ts";
import { createEventsRoute } from "./http/routes/events.ts";
import { createFeedbackRoute } from "./http/routes/feedback.ts";
import { createHealthzRoute } from "./http/routes/healthz.ts";
import { createImagesRoute } from "./http/routes/images.ts";
import { createItemsRoute } from "./http/routes/items.ts";
import { createJobsRoute } from "./http/routes/jobs.ts";
import { createMediaRoute } from "./http/routes/media.ts";
import { createMetricsRoute } from "./http/routes/metrics.ts";
import { createModelsRoute } from "./http/routes/models.ts";
import { createOpenApiRoute } from "./http/routes/openapi.ts";
import { createReadyzRoute } from "./http/routes/readyz.ts";
import { createRecommendRoute } from "./http/routes/recommend.ts";
import { createResponsesRoute } from "./http/routes/responses.ts";
import { createSearchRoute } from "./http/routes/search.ts";
import { createSimilarRoute } from "./http/routes/similar.ts";
import { createTriplesRoute } from "./http/routes/triples.ts";
import { createVideosRoute } from "./http/routes/videos.ts";
import { createVqaRoute } from "./http/routes/vqa.ts";
import { createWidgetRoute } from "./http/routes/widget.ts";
import { createMcpRoute } from "./mcp/mcp-route.ts";
import type { LoupeServices } from "./services.ts";

/** Paths polled by orchestrators and scrapers; their access lines are logged at debug so they do not drown the log. */
const probePaths = new Set(["/healthz", "/readyz", "/metrics"]);

/** Builds the app. Routes are added here, one `app.route` line per file in `src/http/routes/`. */
export function createApp(services: LoupeServices): OpenAPIHono<AppEnv> {
  const app = createRouter();

  // First, so that every answer is counted, refusals of the middleware below included.
  if (services.metrics !== undefined) app.use(requestMetrics({ metrics: services.metrics }));
  // Incoming ids are kept only if short and made of [A-Za-z0-9_=-], so they are safe in logs and headers.
  app.use(requestId({ limitLength: 128 }));
  app.use(requestLimits({ limiter: services.limiter, config: services.config, metrics: services.metrics }));
  app.use(async (c, next) => {
    const logger = services.logger.child({ requestId: c.get("requestId") });
    c.set("logger", logger);
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

  // The trust boundary, in order: the Host it was sent to (DNS rebinding), CORS for the origins keys
  // list, who the caller is (API key → tenant and scopes), and the origin of state-changing requests.
  const { config } = services;
  app.use(hostCheck(createHostPolicy({ allowedHosts: config.allowedHosts, boundHost: config.host })));
  app.use(cors({ keys: services.keys, auth: config.auth }));
  app.use(
    authenticate({
      keys: services.keys,
      auth: config.auth,
      resolveTenant: services.resolveTenant,
      defaultTenant: config.defaultTenant,
      logger: services.logger,
      mediaLinks: services.mediaLinks,
    }),
  );
  app.use(originCheck());

  app.route("/", createHealthzRoute());
  app.route(
    "/",
    createReadyzRoute({
      store: services.store,
      dependencies: services.dependencies,
      timeoutMs: services.config.milvusTimeoutMs,
    }),
  );
  app.route(
    "/",
    createJobsRoute({
      jobs: services.jobs,
      ocrBackfill: services.ocrBackfill,
      regionBackfill: services.regionBackfill,
      audit: services.audit,
      packMigration: services.packMigration,
      ...(services.sharedJobs === undefined ? {} : { sharedJobs: services.sharedJobs }),
    }),
  );
  app.route(
    "/",
    createImagesRoute({
      images: services.images,
      jobs: services.jobs,
      ...(services.sharedJobs === undefined ? {} : { sharedJobs: services.sharedJobs }),
      config: services.config,
      audit: services.audit,
    }),
  );
  app.route("/", createMediaRoute(services));
  app.route("/", createItemsRoute(services));
  const { search, triples, videos, chain } = services;
  app.route("/", createSearchRoute({ search, config: services.config }));
  app.route("/", createSimilarRoute({ search }));
  app.route("/", createRecommendRoute({ recommend: services.recommend }));
  app.route("/", createEventsRoute({ recommend: services.recommend }));
  app.route("/", createClassifyRoute({ search, config: services.config }));
  app.route("/", createClassifiersRoute({ classifiers: services.classifiers, config: services.config }));
  app.route("/", createEmbeddingsRoute({ search, models: services.models, config: services.config }));
  app.route("/", createVqaRoute({ search, models: services.models, config: services.config }));
  app.route("/", createDetectRoute({ search, models: services.models, config: services.config }));
  app.route(
    "/",
    createTriplesRoute({
      triples,
      config: services.config,
      jobs: services.jobs,
      ...(services.sharedJobs === undefined ? {} : { sharedJobs: services.sharedJobs }),
      audit: services.audit,
    }),
  );
  app.route(
    "/",
    createVideosRoute({
      videos,
      jobs: services.jobs,
      ...(services.sharedJobs === undefined ? {} : { sharedJobs: services.sharedJobs }),
      config: services.config,
      audit: services.audit,
    }),
  );
  app.route("/", createChatRoute({ chain, config: services.config }));
  app.route(
    "/",
    createChatCompletionsRoute({ chain, config: services.config, mediaLinks: services.mediaLinks }),
  );
  app.route("/", createResponsesRoute({ chain, config: services.config, mediaLinks: services.mediaLinks }));
  app.route("/", createModelsRoute({ chain }));
  app.route(
    "/",
    createFeedbackRoute({ feedback: services.feedback, config: services.config, audit: services.audit }),
  );
  app.route("/", createAdminKeysRoute({ keys: services.keys, audit: services.audit }));
  // With LOUPE_METRICS_PORT the metrics are served on that port instead (main.ts).
  if (services.metrics !== undefined && services.config.metricsPort === undefined) {
    app.route("/", createMetricsRoute({ metrics: services.metrics }));
  }
  // MCP tool calls are sent to the routes above, in-process, as the caller (src/mcp/).
  app.route("/", createMcpRoute({ app, maxBodyBytes: config.maxJsonBytes, publicUrl: config.publicUrl }));
  // The browser UI (web/): the chat page and the embeddable widget; files, not API operations.
  app.route("/", createChatPageRoute({ config }));
  app.route("/", createWidgetRoute({ config }));
  // Last, so that the document holds every route above.
  app.route("/", createOpenApiRoute({ document: () => buildOpenApiDocument({ router: app }) }));

  app.onError(handleError);
  app.notFound(handleNotFound);
  return app;
}
