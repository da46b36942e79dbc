/**
 * How `loupe ask|search|ingest --url` talk to a running Loupe: through the one HTTP client
 * (`src/client/`), with its failures reworded for the command line in one way for every command.
 */
import { createLoupeClient, type FetchLike, LoupeApiError, type LoupeClient } from "../client/index.ts";
import { AppError, ValidationError } from "../errors.ts";

/** Options of {@link callServer}. */
export interface CallServerOptions {
  /** Base URL of the running Loupe (`--url`). */
  url: string;
  /** `--tenant`, which only applies in-process: given with `--url`, it is refused. */
  tenant?: string;
  /** The fetch to use (tests pass an app's own). */
  fetch?: FetchLike;
  /** Names the command in a refusal: `Search` → `Search failed (400 invalid_request): …`. */
  action: string;
  /** Completes "drop --url to … in-process" when the server cannot be reached. */
  doing: string;
}

/**
 * Refuses `--tenant` beside `--url`: a server decides the tenant of its callers itself.
 *
 * @throws ValidationError when `tenant` is given.
 */
export function refuseTenantWithUrl(tenant: string | undefined): void {
  if (tenant !== undefined) {
    throw new ValidationError("--tenant applies in-process only; with --url the server decides the tenant.");
  }
}

/**
 * Runs `work` with a client of the server at `url`. The server's refusals become
 * `<action> failed (<status> <code>): <message>` with its code and status; an unreachable server an
 * error saying how to start it or to work without `--url`.
 *
 * @throws ValidationError when `--tenant` is given with `--url` (the server decides the tenant).
 */
export async function callServer<Result>(
  { url, tenant, fetch, action, doing }: CallServerOptions,
  work: (client: LoupeClient) => Promise<Result>,
): Promise<Result> {
  refuseTenantWithUrl(tenant);
  try {
    return await work(createLoupeClient({ baseUrl: url, ...(fetch === undefined ? {} : { fetch }) }));
  } catch (error) {
    if (error instanceof LoupeApiError) {
      throw new AppError(
        error.code,
        error.status,
        `${action} failed (${error.status} ${error.code}): ${error.message}`,
        { cause: error, context: error.context },
      );
    }
    if (error instanceof AppError && error.code === "server_unreachable") {
      const reason = error.cause instanceof Error ? error.cause.message : String(error.cause);
      throw new AppError(
        "server_unreachable",
        503,
        `Cannot reach Loupe at ${url} (${reason}). Start it with \`loupe serve\`, or drop --url to ${doing} in-process.`,
        { cause: error.cause },
      );
    }
    throw error;
  }
}
