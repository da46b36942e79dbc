/**
 * Whether requests need an API key. `LOUPE_AUTH=keys` (the default): once any key exists (revoked and
 * expired ones count, so revoking every key never opens the server), every path but the public ones
 * needs one; with no key yet, Loupe serves as one default tenant, which start-up allows only on a
 * loopback address. `LOUPE_AUTH=none`: no key is ever asked for or checked (an explicit opt-out, e.g.
 * behind a proxy that authenticates); keys that exist are ignored.
 */
import { isLoopbackHost } from "../../auth/host-policy.ts";
import type { KeyStore } from "../../auth/key-store.ts";
import { ConfigError } from "../../errors.ts";

/** The `LOUPE_AUTH` setting. */
export type AuthSetting = "keys" | "none";

/** Whether a request needs a key right now. */
export async function keysRequired({ auth, keys }: { auth: AuthSetting; keys: KeyStore }): Promise<boolean> {
  return auth === "keys" && (await keys.hasKeys());
}

/** How a server starts: with keys required, or without authentication and why. */
export type StartupAuth =
  | { mode: "keys"; message: string }
  | { mode: "off"; reason: "loopback" | "opted-out"; message: string };

/**
 * Decides how a server bound to `host` starts.
 *
 * @throws {ConfigError} when no key exists, `LOUPE_AUTH` is not `none`, and `host` is not loopback:
 *   anyone who reaches the port could read, ingest and delete.
 */
export function decideStartupAuth({
  auth,
  host,
  hasKeys,
}: {
  auth: AuthSetting;
  host: string;
  hasKeys: boolean;
}): StartupAuth {
  if (auth === "none") {
    return {
      mode: "off",
      reason: "opted-out",
      message: `authentication is off (LOUPE_AUTH=none): every request acts for the default tenant${hasKeys ? "; the API keys that exist are ignored" : ""}`,
    };
  }
  if (hasKeys) return { mode: "keys", message: "authentication is on: every /v1 request needs an API key" };
  if (isLoopbackHost(host)) {
    return {
      mode: "off",
      reason: "loopback",
      message: `authentication is off: no API key exists and Loupe listens on ${host} only, so every request acts for the default tenant; create a key with \`loupe keys create\` to turn it on`,
    };
  }
  throw new ConfigError(
    `Loupe would listen on ${host} with no API key, so anyone who can reach the port could read, ingest and delete. Create a key first with \`loupe keys create --tenant <tenant> --scopes read,ingest,delete\` (same LOUPE_DATA_DIR), listen on 127.0.0.1, or set LOUPE_AUTH=none to serve without authentication (e.g. behind a proxy that authenticates).`,
    { context: { host } },
  );
}
