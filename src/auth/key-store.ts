/**
 * The API key store port. A key maps to one tenant and a set of scopes; the store keeps only an HMAC of
 * each key (never the key), with its id, name, tenant, scopes, origins, expiry and the times it was
 * created, last used and revoked. The file adapter is `file-key-store.ts`; an adapter over a shared
 * database would let several Loupe replicas use one store.
 *
 * Contract every adapter keeps:
 * - a key is shown once, by {@link KeyStore.create}, and cannot be read back;
 * - {@link KeyStore.verify} sees a key created or revoked by any other process or replica on the same
 *   store within {@link MAX_STALENESS_MS};
 * - records are never deleted, only revoked, so "any key exists" never turns back to false.
 */

/**
 * What a key may do: `read` (search, similar, classify, vqa, chat, chat completions, models, media,
 * jobs), `ingest` (images, videos, triples, job resume), `delete`, `admin` (key management). The HTTP
 * layer's `Scope` is the same list.
 */
export const KEY_SCOPES = ["read", "ingest", "delete", "admin"] as const;

/** One of {@link KEY_SCOPES}. */
export type KeyScope = (typeof KEY_SCOPES)[number];

/** The longest a revocation (or a new key) may take to be seen by another process using the store. */
export const MAX_STALENESS_MS = 5_000;

/** An API key as stored, without anything that could rebuild the key. */
export interface ApiKeyRecord {
  /** Public id (`key_` + 16 hex digits): what lists, logs and the audit trail name. */
  id: string;
  /** A label chosen by whoever made the key; `null` when none was given. */
  name: string | null;
  /** The tenant every request made with the key acts for. */
  tenant: string;
  scopes: readonly KeyScope[];
  /** A publishable key: read-only (chat, media, models, feedback), accepted only from `origins`. */
  publishable: boolean;
  /** Browser origins (`https://app.example.com`) the key may be used from; empty: none. */
  origins: readonly string[];
  /** The key's own rate limit, instead of the configured one; `null`: the configured one. */
  rateLimit: KeyRateLimit | null;
  /** ISO 8601 times; `null` when not (yet) so. */
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** A key's own token bucket: `perSecond` tokens refilled per second, at most `burst` held. */
export interface KeyRateLimit {
  perSecond: number;
  burst: number;
}

/** Whether a key works now. */
export type ApiKeyStatus = "active" | "revoked" | "expired";

/** What {@link KeyStore.create} makes. */
export interface NewApiKey {
  tenant: string;
  /** Required and non-empty, except for a publishable key (which is always `read` only). */
  scopes?: readonly KeyScope[];
  name?: string;
  /** When the key stops working; must be in the future. */
  expiresAt?: Date;
  /** Browser origins the key may be used from; required for a publishable key. */
  origins?: readonly string[];
  publishable?: boolean;
  /** The key's own rate limit; absent: the configured one. */
  rateLimit?: KeyRateLimit;
}

/** A key just made: the key itself (shown this once) and its record. */
export interface CreatedApiKey {
  key: string;
  record: ApiKeyRecord;
}

/** The answer of {@link KeyStore.verify}. */
export type KeyVerification =
  | { status: "valid"; record: ApiKeyRecord }
  | { status: "revoked" | "expired"; record: ApiKeyRecord }
  | { status: "unknown" };

/** Options of {@link KeyStore.list} and {@link KeyStore.revoke}: only keys of `tenant` when given. */
export interface TenantScope {
  tenant?: string;
}

/** The API key store port. */
export interface KeyStore {
  /** Makes a key (random, ≥ 128 bits) and stores its record with an HMAC of it. */
  create(input: NewApiKey): Promise<CreatedApiKey>;
  /** Every record (of `tenant` when given), oldest first, revoked and expired ones included. */
  list(options?: TenantScope): Promise<ApiKeyRecord[]>;
  /**
   * Revokes a key by id; revoking a revoked key keeps its first revocation time.
   *
   * @throws {KeyStoreError} `key_not_found` when there is no such key (of `tenant`, when given).
   */
  revoke(id: string, options?: TenantScope): Promise<ApiKeyRecord>;
  /** Looks a key up by its HMAC. Malformed and unknown keys are `unknown`. */
  verify(key: string): Promise<KeyVerification>;
  /** Notes that a key was used; written in batches, so `lastUsedAt` lags by up to a few seconds. */
  touch(id: string, at?: Date): void;
  /** Whether any key was ever made (revoked and expired ones count). */
  hasKeys(): Promise<boolean>;
  /** The origins of every active key that lists some: those CORS may answer for. */
  corsOrigins(): Promise<ReadonlySet<string>>;
  /** Writes pending `lastUsedAt` times and stops timers. */
  close(): Promise<void>;
}

/** Whether a record's key works at `now`. */
export function keyStatus(record: ApiKeyRecord, now: Date = new Date()): ApiKeyStatus {
  if (record.revokedAt !== null) return "revoked";
  if (record.expiresAt !== null && Date.parse(record.expiresAt) <= now.getTime()) return "expired";
  return "active";
}
