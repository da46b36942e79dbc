/**
 * What every request carries through the Hono context, set by the middleware in `src/app.ts`.
 */
import type { Context } from "hono";
import type { Logger } from "../logger.ts";

/** Hono environment of Loupe's app: per-request variables. */
export interface AppEnv {
  Variables: {
    /** Id of this request: a sane incoming `x-request-id`, or a fresh UUID. Echoed in the response. */
    requestId: string;
    /** Child of the process logger bound to this request's id. */
    logger: Logger;
    /** Tenant this request acts for, decided by the server (never read from the request body). */
    tenant: string;
  };
}

/** Context type of Loupe's handlers. */
export type AppContext = Context<AppEnv>;
