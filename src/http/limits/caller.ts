/** Who a request is charged to: the bucket its cost comes from and the tenant its heavy work counts for. */
import type { AppContext, Principal } from "../context.ts";
import { clientAddress } from "./client-address.ts";
import type { RatePolicyName } from "./rate-limit-headers.ts";
import type { RateLimit } from "./rate-limiter.ts";

/** The caller of a request, as the limits see it. */
export interface Caller {
  /**
   * The bucket: the API key, else the tenant and the client's address (authentication off). Undefined
   * for an in-process call (`app.request`), which has no remote client to hold to a rate.
   */
  bucket: string | undefined;
  tenant: string;
  rate: RateLimit;
  policy: RatePolicyName;
}

/** The caller of `c`, with `rate` as the bucket of a key that carries no rate of its own. */
export function callerOf(c: AppContext, rate: RateLimit): Caller {
  // The principal is set by the authentication middleware; until it runs, the tenant middleware's
  // tenant and the connection's address stand in.
  const principal = c.get("principal") as Principal | undefined;
  const tenant = principal?.tenant ?? c.get("tenant");
  const address = clientAddress(c);
  const bucket =
    principal?.keyId != null
      ? `key:${principal.keyId}`
      : address === undefined
        ? undefined
        : `address:${tenant}:${address}`;
  return principal?.rateLimit === undefined
    ? { bucket, tenant, rate, policy: "default" }
    : { bucket, tenant, rate: principal.rateLimit, policy: "key" };
}
