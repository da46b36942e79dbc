/**
 * `createApp(services)`: Loupe's Hono app. Middleware gives every request an id, a logger bound to it
 * and a tenant, and writes one access-log line; routes are mounted one file each from `src/http/routes/`,
 * each declared with its schemas (`src/http/openapi.ts`), and the OpenAPI document at /openapi.json is
 * generated from those declarations; one `onError` and one `notFound` answer every failure in the same
 * JSON envelope (`src/http/errors.ts`).
 * The app holds no state of its own: everything it uses comes in through {@link LoupeServices}, built
 * once by `services.ts`.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { requestId } from "hono/request-id";
import type { AppEnv } from "./http/context.ts";
import { handleError, handleNotFound } from "./http/errors.ts";
import { buildOpenApiDocument, createRouter } from "./http/openapi.ts";
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
import type { LoupeServices } from "./services.ts";

/** Paths polled by orchestrators; their access lines are logged at debug so they do not drown the log. */
const probePaths = new Set(["/healthz", "/readyz"]);

/** Builds the app. Routes are added here, one `app.route` line per file in `src/http/routes/`. */
export function createApp(services: LoupeServices): OpenAPIHono<AppEnv> {
  const app = createRouter();

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
  app.route(
    "/",
    createImagesRoute({ images: services.images, jobs: services.jobs, config: services.config }),
  );
  app.route("/", createMediaRoute(services));
  app.route("/", createItemsRoute(services));
  const { search, triples, videos, chain } = services;
  app.route("/", createSearchRoute({ search, config: services.config }));
  app.route("/", createSimilarRoute({ search }));
  app.route("/", createClassifyRoute({ search, config: services.config }));
  app.route("/", createVqaRoute({ search, models: services.models, config: services.config }));
  app.route("/", createTriplesRoute({ triples, config: services.config, jobs: services.jobs }));
  app.route("/", createVideosRoute({ videos, jobs: services.jobs, config: services.config }));
  app.route("/", createChatRoute({ chain, config: services.config }));
  app.route("/", createChatCompletionsRoute({ chain, config: services.config }));
  app.route("/", createModelsRoute({ chain }));
  // Last, so that the document holds every route above.
  app.route("/", createOpenApiRoute({ document: () => buildOpenApiDocument({ router: app }) }));

  app.onError(handleError);
  app.notFound(handleNotFound);
  return app;
}
