/**
 * Loupe's services in the command's own process, for `loupe ingest`, `search` and `ask` without a
 * server: the same services `loupe serve` builds. The embedded Milvus Lite takes the data dir's lock, so
 * this fails while a `loupe serve` uses the same `LOUPE_DATA_DIR`.
 */
import { pino } from "pino";
import { parseConfig } from "../config.ts";
import { createLogger } from "../logger.ts";
import { createLoupeServices, type LoupeServices, type OpenLoupeServices } from "../services.ts";

/** Opens the services configured by `env`; the log goes to stderr at `warn`, so stdout carries the output alone. */
export function openLocalServices({
  env,
}: {
  env: Record<string, string | undefined>;
}): Promise<OpenLoupeServices> {
  const logger = createLogger({ level: "warn", destination: pino.destination(2) });
  return createLoupeServices({ config: parseConfig({ env }), logger });
}

/** Runs `work` with the services configured by `env`, and closes them after it, whether it succeeded or not. */
export async function withLocalServices<Result>(
  { env }: { env: Record<string, string | undefined> },
  work: (services: LoupeServices) => Promise<Result>,
): Promise<Result> {
  const services = await openLocalServices({ env });
  try {
    return await work(services);
  } finally {
    await services.close();
  }
}
