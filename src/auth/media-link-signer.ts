/**
 * Signed media links: a short-lived URL to one stored item's media that a browser can open without the
 * API key. Chat UIs show the sources of an answer as plain links, and a browser following a link sends
 * no `Authorization` header, so a link that needs the key would never open. A signed link carries
 * instead the id of the key it was made for, its expiry and an HMAC-SHA256 of both and the exact path,
 * under a key derived from the server secret the API keys are stored with (`LOUPE_KEY_SECRET` or the
 * generated `<LOUPE_DATA_DIR>/auth/secret`), so replicas that share keys share links too. It opens that
 * one path and nothing else, and only while the key it names is active (the HTTP layer checks that).
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** The query parameters of a signed link, as they appear in the URL. */
export const SIGNED_LINK_PARAMS = { expires: "exp", keyId: "kid", signature: "sig" } as const;

/** What a signed link adds to its path. */
export interface SignedLinkQuery {
  /** Unix time, in seconds, after which the link no longer opens. */
  expires: number;
  /** Id of the API key the link was made for; the request acts as that key's tenant. */
  keyId: string;
  /** base64url HMAC-SHA256 of the link. */
  signature: string;
}

/** What {@link MediaLinkSigner.verify} finds. */
export type SignedLinkCheck = "valid" | "expired" | "invalid";

/** Makes and checks signed media links. */
export interface MediaLinkSigner {
  /** How long a new link stays valid, in seconds. */
  readonly ttlSeconds: number;
  /** Signs `path` (exactly as it will be requested, percent-encoding included) for the key `keyId`. */
  sign(input: { path: string; keyId: string }): Promise<SignedLinkQuery>;
  /**
   * Checks the query values of a link to `path`, as received (strings, unparsed). A link whose
   * signature holds but whose time is past is `expired`; one dated further ahead than the current
   * lifetime allows (made before the lifetime was shortened) is `invalid`.
   */
  verify(input: {
    path: string;
    keyId: string;
    expires: string;
    signature: string;
  }): Promise<SignedLinkCheck>;
}

/** Options of {@link createMediaLinkSigner}. */
export interface MediaLinkSignerOptions {
  /** The server secret; read on first use, so a server that never signs never reads it. */
  secret: () => Promise<string>;
  /** Lifetime of new links, in seconds (`LOUPE_MEDIA_URL_TTL_S`). */
  ttlSeconds: number;
  /** The clock, in milliseconds. */
  now?: () => number;
}

/** Domain separation: the secret also hashes API keys, and a link's MAC must never equal a key's hash. */
const SIGNING_LABEL = "loupe signed media links v1";
/** Tolerated clock difference between replicas, in seconds. */
const CLOCK_SKEW_S = 60;
const KEY_ID = /^key_[0-9a-f]{16}$/;
const EXPIRES = /^\d{1,12}$/;
const SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

/** The signer over the server secret. */
export function createMediaLinkSigner({
  secret,
  ttlSeconds,
  now = Date.now,
}: MediaLinkSignerOptions): MediaLinkSigner {
  let signingKey: Promise<Buffer> | undefined;
  const key = (): Promise<Buffer> => {
    signingKey ??= secret().then(
      (value) => createHmac("sha256", value).update(SIGNING_LABEL).digest(),
      (error: unknown) => {
        // A secret that could not be read now may be readable on the next request.
        signingKey = undefined;
        throw error;
      },
    );
    return signingKey;
  };
  const mac = async (path: string, keyId: string, expires: string): Promise<Buffer> =>
    createHmac("sha256", await key())
      .update(`${keyId}\n${expires}\n${path}`)
      .digest();
  return {
    ttlSeconds,
    async sign({ path, keyId }) {
      const expires = Math.floor(now() / 1000) + ttlSeconds;
      const signature = (await mac(path, keyId, String(expires))).toString("base64url");
      return { expires, keyId, signature };
    },
    async verify({ path, keyId, expires, signature }) {
      if (!KEY_ID.test(keyId) || !EXPIRES.test(expires) || !SIGNATURE.test(signature)) return "invalid";
      const expected = await mac(path, keyId, expires);
      const given = Buffer.from(signature, "base64url");
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "invalid";
      const nowS = Math.floor(now() / 1000);
      const at = Number(expires);
      if (at > nowS + ttlSeconds + CLOCK_SKEW_S) return "invalid";
      return at < nowS ? "expired" : "valid";
    },
  };
}
