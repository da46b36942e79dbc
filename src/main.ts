/**
 * The server's entry: the only module that reads `process.env`. {@link startLoupe} parses the
 * configuration once, gets every service from `createLoupeServices` (`services.ts`), builds the app and
 * listens; it runs the whole service in-process (tests use it). {@link runLoupe} is what `loupe serve`
 * runs: the same plus signal handling.
 */
import { createApp } from "./app.ts";
import { createHostPolicy } from "./auth/host-policy.ts";
import { openKeyStore } from "./auth/open-key-store.ts";
import { type Config, parseConfig, redactConfig } from "./config.ts";
import { ConfigError } from "./errors.ts";
import { decideStartupAuth } from "./http/auth/auth-mode.ts";
import { createMetricsApp } from "./http/routes/metrics.ts";
import { type HttpServer, startHttpServer } from "./http/server.ts";
import { sweepOrphanBlobsAtStart } from "./ingest/blob-gc.ts";
import { createLogger, type Logger } from "./logger.ts";
import type { MetricsExposition } from "./metrics/metrics.ts";
import { createLoupeServices } from "./services.ts";
import { TENANT_PATTERN } from "./store/filter.ts";

/** Options of {@link startLoupe}. */
export interface StartLoupeOptions {
  /** Environment to configure from; `runLoupe` passes `process.env`. */
  env: Record<string, string | undefined>;
  /** Directory relative paths in the configuration are resolved against. */
  cwd?: string;
  /** Logger to use instead of one made from `LOUPE_LOG_LEVEL` (tests pass a quiet one). */
  logger?: Logger;
  /**
   * `all` (the default): the HTTP API, and a worker of the shared job queue when `LOUPE_DATABASE_URL` and
   * `LOUPE_REDIS_URL` are set; `api`: the HTTP API only (its jobs are run by workers elsewhere). A worker
   * alone is {@link startLoupeWorker}.
   */
  role?: "api" | "all";
}

/** What `loupe serve --role` runs: the API, a worker of the shared job queue, or both. */
export type LoupeRole = "api" | "worker" | "all";

/** The roles `loupe serve --role` accepts. */
export const LOUPE_ROLES: readonly LoupeRole[] = ["api", "worker", "all"];

/** A running Loupe, as returned by {@link startLoupe}. */
export interface RunningLoupe {
  /** Base URL the server answers on, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Base URL of the metrics port (`LOUPE_METRICS_PORT`), which serves `/metrics`; absent when unset. */
  metricsUrl?: string;
  config: Config;
  logger: Logger;
  /**
   * Process id of the embedded Milvus Lite, current after a restart; absent when `MILVUS_ADDRESS`
   * points at a server, and while Lite is down.
   */
  readonly milvusLitePid?: number;
  /**
   * Graceful shutdown: stops accepting connections, waits for in-flight requests (at most
   * `LOUPE_SHUTDOWN_TIMEOUT_MS`), then closes the services (jobs, model pack, store, Milvus Lite). Safe
   * to call more than once.
   */
  stop(): Promise<void>;
}

/** Starts Loupe in this process and resolves once it accepts connections. */
export async function startLoupe({
  env,
  cwd,
  logger: givenLogger,
  role = "all",
}: StartLoupeOptions): Promise<RunningLoupe> {
  const config = parseConfig({ env, cwd });
  const logger = givenLogger ?? createLogger({ level: config.logLevel });
  logger.info({ config: redactConfig(config) }, "starting loupe");
  checkMetricsPort(config);
  await checkAuthentication({ config, logger });
  const services = await createLoupeServices({ config, logger });
  let metricsHttp: HttpServer | undefined;
  try {
    if (services.metrics !== undefined && config.metricsPort !== undefined) {
      metricsHttp = await startMetricsServer({ config, logger, metrics: services.metrics });
      logger.info({ url: `${metricsHttp.url}/metrics` }, "metrics are served on their own port");
    }
    const http = await startHttpServer({
      fetch: createApp(services).fetch,
      host: config.host,
      port: config.port,
      headersTimeoutMs: config.headersTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      maxConnections: config.maxConnections,
      logger,
    });
    logger.info({ url: http.url, role }, "loupe is listening");
    const worker = role === "all" ? services.createJobWorker?.() : undefined;
    worker?.start();
    if (worker !== undefined) logger.info("running shared ingest jobs in this process too (role all)");
    // Files a crash left without a record go, in the background; the sweep never throws.
    const blobSweep = sweepOrphanBlobsAtStart({
      blobs: services.blobs,
      store: services.store,
      config,
      logger: logger.child({ component: "blob-gc" }),
    });
    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= (async () => {
        logger.info({ inFlight: http.inFlight }, "shutting down: no new connections");
        const { drained, abandoned } = await http.close({ timeoutMs: config.shutdownTimeoutMs });
        if (!drained) {
          logger.warn(
            { abandoned, timeoutMs: config.shutdownTimeoutMs },
            "in-flight requests did not finish in time; their connections were closed",
          );
        }
        // Scrapes go on while requests drain; the metrics port closes after the API's.
        await metricsHttp?.close({ timeoutMs: 1000 });
        await worker?.close();
        await blobSweep;
        await services.close();
        logger.info("loupe stopped");
      })();
      return stopping;
    };
    return {
      url: http.url,
      ...(metricsHttp === undefined ? {} : { metricsUrl: metricsHttp.url }),
      config,
      logger,
      get milvusLitePid() {
        return services.milvusLitePid;
      },
      stop,
    };
  } catch (error) {
    await metricsHttp?.close({ timeoutMs: 0 });
    await services.close();
    throw error;
  }
}

/** A running worker of the shared job queue, as returned by {@link startLoupeWorker}. */
export interface RunningLoupeWorker {
  config: Config;
  logger: Logger;
  /** Stops claiming items, lets the batch in hand end (unrun items go back to the queue), closes the services. */
  stop(): Promise<void>;
}

/**
 * Starts a worker of the shared job queue in this process, without HTTP (`loupe serve --role worker`): it
 * claims image job items from Redis and records their outcomes in PostgreSQL.
 *
 * @throws {ConfigError} unless `LOUPE_DATABASE_URL` and `LOUPE_REDIS_URL` are both set.
 */
export async function startLoupeWorker({
  env,
  cwd,
  logger: givenLogger,
}: Omit<StartLoupeOptions, "role">): Promise<RunningLoupeWorker> {
  const config = parseConfig({ env, cwd });
  const logger = givenLogger ?? createLogger({ level: config.logLevel });
  if (config.databaseUrl === undefined || config.redisUrl === undefined) {
    throw new ConfigError(
      `--role worker runs the shared job queue, which needs LOUPE_DATABASE_URL and LOUPE_REDIS_URL; ${config.databaseUrl === undefined ? "LOUPE_DATABASE_URL" : "LOUPE_REDIS_URL"} is unset. Set both, or run \`loupe serve\` (role all) to run jobs in the server's own process.`,
    );
  }
  logger.info({ config: redactConfig(config), role: "worker" }, "starting loupe worker");
  const services = await createLoupeServices({ config, logger });
  const worker = services.createJobWorker?.();
  if (worker === undefined) {
    await services.close();
    throw new ConfigError(
      "The shared job queue could not be built; check LOUPE_DATABASE_URL and LOUPE_REDIS_URL.",
    );
  }
  worker.start();
  logger.info(
    { concurrency: config.workerConcurrency, batchItems: config.workerBatchItems },
    "loupe worker is running shared ingest jobs",
  );
  let stopping: Promise<void> | undefined;
  return {
    config,
    logger,
    stop() {
      stopping ??= (async () => {
        await worker.close();
        await services.close();
        logger.info("loupe worker stopped");
      })();
      return stopping;
    },
  };
}

/**
 * Refuses metrics settings that contradict each other before anything starts.
 *
 * @throws {ConfigError} when `LOUPE_METRICS_PORT` is `PORT`, or is set while `LOUPE_METRICS=off`.
 */
function checkMetricsPort(config: Config): void {
  const port = config.metricsPort;
  if (port === undefined) return;
  if (config.metrics === "off") {
    throw new ConfigError(
      `LOUPE_METRICS_PORT=${port} is set but LOUPE_METRICS=off collects no metrics to serve there. Unset LOUPE_METRICS_PORT, or set LOUPE_METRICS=on.`,
      { context: { metricsPort: port } },
    );
  }
  if (port !== 0 && port === config.port) {
    throw new ConfigError(
      `LOUPE_METRICS_PORT=${port} is the API's PORT; the metrics need a port of their own. Choose another port, or unset LOUPE_METRICS_PORT to serve /metrics on the API's port.`,
      { context: { metricsPort: port, port: config.port } },
    );
  }
}

/**
 * Listens on `LOUPE_METRICS_PORT` of `HOST` with an app that serves only `GET /metrics`, without a key,
 * behind the API's `Host` check and with its timeouts.
 *
 * @throws {ConfigError} when the port is taken, naming LOUPE_METRICS_PORT.
 */
function startMetricsServer({
  config,
  logger,
  metrics,
}: {
  config: Config;
  logger: Logger;
  metrics: MetricsExposition;
}): Promise<HttpServer> {
  const metricsLogger = logger.child({ component: "metrics" });
  const app = createMetricsApp({
    metrics,
    hostPolicy: createHostPolicy({ allowedHosts: config.allowedHosts, boundHost: config.host }),
    logger: metricsLogger,
  });
  return startHttpServer({
    fetch: app.fetch,
    host: config.host,
    port: config.metricsPort ?? 0,
    portSetting: "LOUPE_METRICS_PORT",
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    keepAliveTimeoutMs: config.keepAliveTimeoutMs,
    // A scraper or two; a flood of connections is not let in.
    maxConnections: 16,
    logger: metricsLogger,
  });
}

/**
 * Decides, before anything is started, whether this server may start as configured: with API keys,
 * or without authentication on a loopback address or with `LOUPE_AUTH=none` (logged once, as a
 * warning). Reads the key store only; the server's own store is built with the services.
 *
 * @throws {ConfigError} when no key exists and `HOST` is not loopback, unless `LOUPE_AUTH=none`.
 * @throws {KeyStoreError} when the key store cannot be read or its secret does not match.
 */
async function checkAuthentication({ config, logger }: { config: Config; logger: Logger }): Promise<void> {
  const keys = await openKeyStore({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    secret: config.keySecret,
    tenantPattern: TENANT_PATTERN,
  });
  try {
    const hasKeys = config.auth === "none" ? await keys.hasKeys().catch(() => false) : await keys.hasKeys();
    const decision = decideStartupAuth({ auth: config.auth, host: config.host, hasKeys });
    if (decision.mode === "off") logger.warn({ auth: config.auth, host: config.host }, decision.message);
    else logger.info(decision.message);
  } finally {
    await keys.close();
  }
}

/**
 * What `loupe serve` runs: starts Loupe from `process.env` and stops it on SIGINT or SIGTERM. A second
 * signal while stopping forces the exit; the Milvus Lite launcher kills its server when the process
 * exits, so none is left behind.
 */
export async function runLoupe({ role = "all" }: { role?: LoupeRole } = {}): Promise<void> {
  let running: Pick<RunningLoupe, "logger" | "stop"> | undefined;
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

  running =
    role === "worker"
      ? await startLoupeWorker({ env: process.env })
      : await startLoupe({ env: process.env, role });
  if (signalled) stopAndExit(running);
}

function stopAndExit(loupe: Pick<RunningLoupe, "logger" | "stop">): void {
  loupe.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      loupe.logger.error({ err: error }, "shutdown failed");
      process.exit(1);
    },
  );
}
