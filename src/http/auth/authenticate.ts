/**
 * Decides who a request acts as, and refuses one that needs a key and lacks a valid one. Sets the
 * context's `principal` and `tenant` on every request:
 * - authentication off (no key exists, or `LOUPE_AUTH=none`): the tenant the app's resolver gives (the
 *   default tenant), with `read`, `ingest` and `delete` (key management needs an admin key);
 * - on, on a public path (probes, the document, /docs): no scopes, and no key is read;
 * - on, elsewhere: the key's tenant and scopes; 401 without a key or with one that is unknown, revoked
 *   or expired; 403 for a publishable key sent from an origin it does not list;
 * - on, a media read without a key but with a signed link's query (`http/auth/signed-media.ts`): the
 *   linked key's tenant with `read` only, or 401 `invalid_media_link`.
 * The key is never logged or echoed.
 */
import type { MiddlewareHandler } from "hono";
import { KEY_SCOPES, type KeyStore } from "../../auth/key-store.ts";
import type { MediaLinkSigner } from "../../auth/media-link-signer.ts";
import { normalizeOrigin } from "../../auth/origins.ts";
import type { Logger } from "../../logger.ts";
import { type AppContext, type AppEnv, type Principal, SCOPES, type Scope } from "../context.ts";
import { type AuthSetting, keysRequired } from "./auth-mode.ts";
import { readPresentedKey } from "./credentials.ts";
import { isPublicPath } from "./public-paths.ts";
import { keyStoreUnavailable, refuse } from "./refusal.ts";
import { isSignedMediaRequest, verifySignedMedia } from "./signed-media.ts";

// The key store's scopes and the HTTP layer's are one list; this fails to compile if they part.
const sameScopes: [readonly Scope[], readonly (typeof KEY_SCOPES)[number][]] = [KEY_SCOPES, SCOPES];
void sameScopes;

/** What a request may do while authentication is off. */
export const AUTH_OFF_SCOPES: ReadonlySet<Scope> = new Set<Scope>(["read", "ingest", "delete"]);

/** Options of {@link authenticate}. */
export interface AuthenticateOptions {
  keys: KeyStore;
  auth: AuthSetting;
  /** The tenant of a request while authentication is off. */
  resolveTenant: (c: AppContext) => string;
  /** The tenant named on public paths while authentication is on (nothing there reads it). */
  defaultTenant: string;
  /** Where the switch between on and off is reported. */
  logger: Logger;
  /** Checks signed media links; absent: a media read needs a key like any other request. */
  mediaLinks?: MediaLinkSigner;
}

const messages = {
  missing:
    "This route needs an API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`. An operator makes keys with `loupe keys create`.",
  unknown: "The API key is not valid. Check that it was copied whole, or ask for a new one.",
  revoked: "The API key was revoked. Ask for a new one.",
  expired: "The API key has expired. Ask for a new one.",
};

/** The authentication middleware. */
export function authenticate({
  keys,
  auth,
  resolveTenant,
  defaultTenant,
  logger,
  mediaLinks,
}: AuthenticateOptions): MiddlewareHandler<AppEnv> {
  let lastRequired: boolean | undefined;
  return async (c, next) => {
    let required: boolean;
    try {
      required = await keysRequired({ auth, keys });
    } catch (error) {
      return keyStoreUnavailable(c, error);
    }
    if (lastRequired !== undefined && required !== lastRequired) {
      logger.info(
        required
          ? "an API key exists now: authentication is on"
          : "no API key exists now: authentication is off",
      );
    }
    lastRequired = required;
    if (!required) {
      const tenant = resolveTenant(c);
      setPrincipal(c, { keyId: null, tenant, scopes: AUTH_OFF_SCOPES, publishable: false });
      return next();
    }
    if (isPublicPath(c.req.path)) {
      setPrincipal(c, { keyId: null, tenant: defaultTenant, scopes: new Set(), publishable: false });
      return next();
    }
    const presented = readPresentedKey(c);
    if (presented === undefined && mediaLinks !== undefined && isSignedMediaRequest(c)) {
      let signed: Awaited<ReturnType<typeof verifySignedMedia>>;
      try {
        signed = await verifySignedMedia({ c, signer: mediaLinks, keys });
      } catch (error) {
        return keyStoreUnavailable(c, error);
      }
      if ("refusal" in signed) return refuse(c, signed.refusal);
      setPrincipal(c, signed.principal);
      return next();
    }
    if (presented === undefined) {
      return refuse(c, { status: 401, code: "unauthorized", message: messages.missing });
    }
    if ("problem" in presented) {
      return refuse(c, { status: 401, code: "unauthorized", message: presented.problem });
    }
    let verification: Awaited<ReturnType<KeyStore["verify"]>>;
    try {
      verification = await keys.verify(presented.key);
    } catch (error) {
      return keyStoreUnavailable(c, error);
    }
    if (verification.status !== "valid") {
      const keyId = "record" in verification ? verification.record.id : undefined;
      c.get("logger")?.info({ keyId, status: verification.status }, "API key refused");
      return refuse(c, { status: 401, code: "invalid_api_key", message: messages[verification.status] });
    }
    const { record } = verification;
    if (record.publishable) {
      const origin = c.req.header("origin");
      const normalized = origin === undefined ? undefined : normalizeOrigin(origin);
      if (normalized === undefined || !record.origins.includes(normalized)) {
        return refuse(c, {
          status: 403,
          code: "origin_not_allowed",
          message:
            origin === undefined
              ? `The publishable key ${record.id} is accepted only from the web origins it lists, and this request has no Origin header.`
              : `The publishable key ${record.id} is not accepted from the origin ${JSON.stringify(origin.slice(0, 100))}; add the origin to a new key (loupe keys create --publishable --origins …).`,
        });
      }
    }
    setPrincipal(c, {
      keyId: record.id,
      tenant: record.tenant,
      scopes: new Set(record.scopes),
      publishable: record.publishable,
      origins: record.origins,
      ...(record.rateLimit === null ? {} : { rateLimit: { ...record.rateLimit } }),
    });
    keys.touch(record.id);
    return next();
  };
}

function setPrincipal(c: AppContext, principal: Principal): void {
  c.set("principal", principal);
  c.set("tenant", principal.tenant);
}
