/**
 * What an API key looks like and how it is stored. A key is a prefix saying its kind (`loupe_sk_` for
 * secret keys, `loupe_pk_` for publishable ones) and 32 random bytes in base64url (256 bits). The
 * store keeps `hmac-sha256(server secret, key)`: keys are random enough that a slow hash adds nothing,
 * and without the server secret a copy of the store's file cannot be used to test guesses.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

const SECRET_PREFIX = "loupe_sk_";
const PUBLISHABLE_PREFIX = "loupe_pk_";

/** Every well-formed key; anything else is refused before it is hashed. */
const KEY_PATTERN = /^loupe_[sp]k_[A-Za-z0-9_-]{43}$/;

/** A new key of the given kind. */
export function generateApiKey({ publishable }: { publishable: boolean }): string {
  return `${publishable ? PUBLISHABLE_PREFIX : SECRET_PREFIX}${randomBytes(32).toString("base64url")}`;
}

/** A new key id: public, random, unrelated to the key. */
export function generateKeyId(): string {
  return `key_${randomBytes(8).toString("hex")}`;
}

/** Whether `text` has the shape of a key (what `generateApiKey` makes). */
export function isWellFormedApiKey(text: string): boolean {
  return KEY_PATTERN.test(text);
}

/** The stored form of a key: hex HMAC-SHA256 under the server secret. */
export function hashApiKey({ key, secret }: { key: string; secret: string }): string {
  return createHmac("sha256", secret).update(key, "utf8").digest("hex");
}

/** Equality of two stored forms in constant time. */
export function sameHash(left: string, right: string): boolean {
  const a = Buffer.from(left, "hex");
  const b = Buffer.from(right, "hex");
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

/**
 * A short fingerprint of the server secret, kept with the keys, so that a store opened with another
 * secret (a changed `LOUPE_KEY_SECRET`) is reported as such instead of every key looking unknown.
 */
export function secretFingerprint(secret: string): string {
  return createHmac("sha256", secret)
    .update("loupe key secret fingerprint", "utf8")
    .digest("hex")
    .slice(0, 16);
}
