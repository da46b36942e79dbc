/**
 * Opening a signed media link without an API key (see `auth/media-link-signer.ts`). A `GET` or `HEAD`
 * of `/v1/media/{id}` or `/v1/media/{id}/thumbnail` that presents no key but carries `exp`, `kid` and
 * `sig` acts as the key the link names, with the `read` scope only, when the signature covers exactly
 * this path, the link has not expired, and the key is still active (revoking a key closes its links).
 * The signature binds the raw path, so the route, which decodes the same path, can serve that one item.
 */
import { type KeyStore, keyStatus } from "../../auth/key-store.ts";
import { type MediaLinkSigner, SIGNED_LINK_PARAMS } from "../../auth/media-link-signer.ts";
import type { AppContext, Principal } from "../context.ts";
import type { Refusal } from "./refusal.ts";

/** The paths a signed link may open, as requested (not decoded). */
const SIGNABLE_PATH = /^\/v1\/media\/[^/]{1,600}(\/thumbnail)?$/;

/** Whether `path` (as it will be requested) is one a signed link may open. */
export function isSignablePath(path: string): boolean {
  return SIGNABLE_PATH.test(path);
}

/** Whether the request is an attempt to open a signed link: a media read carrying a signature. */
export function isSignedMediaRequest(c: AppContext): boolean {
  return (
    (c.req.method === "GET" || c.req.method === "HEAD") &&
    c.req.query(SIGNED_LINK_PARAMS.signature) !== undefined &&
    isSignablePath(new URL(c.req.url).pathname)
  );
}

const messages = {
  invalid:
    "This media link is not valid: it was changed, cut short, or made for another path or server. Ask the question again for a fresh link, or send an API key.",
  expired: "This media link has expired. Ask the question again for a fresh link, or send an API key.",
  revoked: "The API key this media link was made for is no longer active, so the link no longer opens.",
};

/**
 * The principal a signed link acts as, or the refusal (401 `invalid_media_link`) when it does not hold.
 * Call only when {@link isSignedMediaRequest} is true and the request presents no key.
 */
export async function verifySignedMedia({
  c,
  signer,
  keys,
}: {
  c: AppContext;
  signer: MediaLinkSigner;
  keys: KeyStore;
}): Promise<{ principal: Principal } | { refusal: Refusal }> {
  const refusal = (message: string) => ({
    refusal: { status: 401 as const, code: "invalid_media_link", message },
  });
  const keyId = c.req.query(SIGNED_LINK_PARAMS.keyId) ?? "";
  const check = await signer.verify({
    path: new URL(c.req.url).pathname,
    keyId,
    expires: c.req.query(SIGNED_LINK_PARAMS.expires) ?? "",
    signature: c.req.query(SIGNED_LINK_PARAMS.signature) ?? "",
  });
  if (check !== "valid") return refusal(messages[check]);
  const record = (await keys.list()).find((candidate) => candidate.id === keyId);
  if (record === undefined || keyStatus(record) !== "active" || !record.scopes.includes("read")) {
    return refusal(messages.revoked);
  }
  return {
    principal: {
      keyId: record.id,
      tenant: record.tenant,
      scopes: new Set(["read"]),
      publishable: record.publishable,
      origins: record.origins,
      ...(record.rateLimit === null ? {} : { rateLimit: { ...record.rateLimit } }),
    },
  };
}
