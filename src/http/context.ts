/**
 * What every request carries through the Hono context, set by the middleware in `src/app.ts`.
 */
import type { Context } from "hono";
import type { Logger } from "../logger.ts";

/**
 * What a key may do: `read` (search, similar, classify, vqa, embeddings, chat, chat completions, models, media,
 * jobs), `ingest` (images, videos, triples, job resume), `delete`, `admin` (key management, `/metrics`).
 */
export type Scope = "read" | "ingest" | "delete" | "admin";

/** Every scope, in the order they are listed. */
export const SCOPES: readonly Scope[] = ["read", "ingest", "delete", "admin"];

/** Who a request acts as, decided by the server from its credentials (never from the request body). */
export interface Principal {
  /** Id of the API key the request carried; `null` when authentication is off. */
  keyId: string | null;
  /** The tenant every store call of this request is scoped to. */
  tenant: string;
  scopes: ReadonlySet<Scope>;
  /** A publishable key: read-only, accepted only from its listed origins. */
  publishable: boolean;
  /**
   * Web origins the key may be used from (`https://app.example.com`): a state-changing request with
   * another `Origin` (not the server's own) is refused. Absent or empty: none.
   */
  origins?: readonly string[];
  /** The key's own rate limit, when it overrides the configured default. */
  rateLimit?: { perSecond: number; burst: number };
}

/** Hono environment of Loupe's app: per-request variables. */
export interface AppEnv {
  Variables: {
    /** Id of this request: a sane incoming `x-request-id`, or a fresh UUID. Echoed in the response. */
    requestId: string;
    /** Child of the process logger bound to this request's id. */
    logger: Logger;
    /** Tenant this request acts for, decided by the server (never read from the request body). */
    tenant: string;
    /** The caller as authenticated; its `tenant` is the one above. */
    principal: Principal;
  };
}

/** Context type of Loupe's handlers. */
export type AppContext = Context<AppEnv>;
