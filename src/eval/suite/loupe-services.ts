/**
 * The one place the eval runner builds Loupe's services: through `createLoupeServices`, as the server and
 * the CLI do, so an in-process run measures the same services a server runs.
 */
import { parseConfig } from "../../config.ts";
import type { Logger } from "../../logger.ts";
import { createLoupeServices, type OpenLoupeServices } from "../../services.ts";

/** Options of {@link openLoupeServices}. */
export interface OpenLoupeServicesOptions {
  /** Environment to configure from. */
  env: Record<string, string | undefined>;
  /** Directory relative paths in the configuration are resolved against (default: the working directory). */
  cwd?: string;
  logger: Logger;
}

/**
 * Builds Loupe's services configured by `env`, without serving HTTP.
 *
 * @throws ConfigError for an invalid setting; the services' own start-up errors.
 */
export function openLoupeServices({
  env,
  cwd,
  logger,
}: OpenLoupeServicesOptions): Promise<OpenLoupeServices> {
  return createLoupeServices({ config: parseConfig({ env, ...(cwd === undefined ? {} : { cwd }) }), logger });
}
