/**
 * Which tenant a request acts for. Tenancy isolates data only if the server decides it from the
 * caller's identity; a tenant named in a query or body would let any caller read any tenant.
 */
import type { AppContext } from "./context.ts";

/** Decides the tenant of a request. */
export type TenantResolver = (c: AppContext) => string;

/**
 * The resolver used until authentication exists: every request acts for `defaultTenant`.
 * Authentication will replace it with one that maps the caller's credential to a tenant.
 */
export function createDefaultTenantResolver({ defaultTenant }: { defaultTenant: string }): TenantResolver {
  return () => defaultTenant;
}
