/**
 * Loupe as a library: {@link createLoupe} opens the same services `loupe serve` runs on, from settings
 * the caller passes (never from `process.env`), and adds what a program embedding Loupe reaches for: a
 * LangChain retriever over its search and the HTTP app to mount in a server of its own.
 */
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import { parseConfig } from "./config.ts";
import type { AppEnv } from "./http/context.ts";
import type { ImageIngestItem } from "./ingest/image-ingest.ts";
import type { JobItemOutcome } from "./ingest/jobs.ts";
import { createLogger, type Logger } from "./logger.ts";
import { LoupeRetriever, type LoupeRetrieverOptions } from "./rag/retriever.ts";
import { createLoupeServices, type OpenLoupeServices } from "./services.ts";

/** Options of {@link createLoupe}. */
export interface CreateLoupeOptions {
  /** Where Loupe keeps its data (embedded Milvus Lite, blobs); the `LOUPE_DATA_DIR` setting. */
  dataDir?: string;
  /**
   * Any other setting, by the name of its environment variable (`docs/configuration.md`), e.g.
   * `{ MILVUS_ADDRESS: "milvus:19530", LOUPE_LLM_MODEL: "gpt-4o-mini" }`. Unset settings take their defaults.
   */
  settings?: Record<string, string | undefined>;
  /** Directory relative paths in the settings are resolved against; the working directory by default. */
  cwd?: string;
  /** Logger to use; by default a JSON logger on stdout at `LOUPE_LOG_LEVEL`, else `warn`. */
  logger?: Logger;
}

/** A Loupe opened in this process; {@link OpenLoupeServices.close} releases it. */
export interface Loupe extends OpenLoupeServices {
  /**
   * Ingests images (bytes, URLs fetched through the SSRF-safe fetcher, or files) for a tenant and
   * resolves with each one's outcome, in order: `stored`, `skipped` (already there) or `failed`.
   */
  ingestImages(request: { tenant: string; images: readonly ImageIngestItem[] }): Promise<JobItemOutcome[]>;
  /** A LangChain retriever over this Loupe's search, for one tenant. */
  retriever(options: Omit<LoupeRetrieverOptions, "search">): LoupeRetriever;
  /** The HTTP app over these services, to serve or mount (`app.fetch`, `app.request`). */
  app(): Hono<AppEnv>;
}

/**
 * Opens Loupe in this process: the embedded Milvus Lite (unless `MILVUS_ADDRESS` is set), the model pack,
 * the blob store, the jobs, the chat chain. Resolves once everything is ready; a failure leaves nothing
 * running.
 *
 * @example
 * ```ts
 * import { createLoupe } from "loupe";
 *
 * const loupe = await createLoupe({ dataDir: "./loupe-data" });
 * try {
 *   const answer = await loupe.chain.invoke({ tenant: "default", question: "Which images show a red circle?" });
 *   console.log(answer.answer, answer.citations);
 * } finally {
 *   await loupe.close();
 * }
 * ```
 */
export async function createLoupe({
  dataDir,
  settings = {},
  cwd,
  logger,
}: CreateLoupeOptions = {}): Promise<Loupe> {
  const config = parseConfig({
    env: { ...settings, ...(dataDir === undefined ? {} : { LOUPE_DATA_DIR: dataDir }) },
    cwd,
  });
  const services = await createLoupeServices({
    config,
    logger:
      logger ?? createLogger({ level: settings.LOUPE_LOG_LEVEL === undefined ? "warn" : config.logLevel }),
  });
  return {
    ...services,
    async ingestImages({ tenant, images }) {
      const outcomes: JobItemOutcome[] = [];
      await services.images.ingest({
        tenant,
        items: images.map((input, index) => ({ index, input })),
        report: (index, outcome) => {
          outcomes[index] = outcome;
        },
      });
      return outcomes;
    },
    retriever: (options) => new LoupeRetriever({ ...options, search: services.search }),
    app: () => createApp(services),
  };
}
