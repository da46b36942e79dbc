/**
 * Which tenant a request acts for while authentication is off (no API key exists, or `LOUPE_AUTH=none`).
 * With keys, the tenant is the key's (`http/auth/authenticate.ts`). Tenancy isolates data only if the
 * server decides it from the caller's identity; a tenant named in a query or body would let any caller
 * read any tenant.
 */
import type { AppContext } from "./context.ts";

/** Decides the tenant of a request while authentication is off. */
export type TenantResolver = (c: AppContext) => string;

/** The resolver of a server without authentication: every request acts for `defaultTenant`. */
export function createDefaultTenantResolver({ defaultTenant }: { defaultTenant: string }): TenantResolver {
  return () => defaultTenant;
}
