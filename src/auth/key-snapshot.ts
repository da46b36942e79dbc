/**
 * What the key store adapters share once they have read their keys (from `keys.json` or from
 * `loupe_api_keys`): a snapshot of the keys kept in memory, read again at most every `refreshMs`
 * (callers at the same moment share one read), the check that the secret is the one the keys were made
 * with, and the answers drawn from the snapshot (a key's verification, whether there are keys, the
 * origins of live keys), so that both adapters answer alike and verifying a key reads nothing.
 */
import { hashApiKey, isWellFormedApiKey, sameHash, secretFingerprint } from "./api-key.ts";
import { readKeySecret } from "./key-secret.ts";
import { type ApiKeyRecord, type KeyStore, type KeyVerification, keyStatus } from "./key-store.ts";
import { KeyStoreError } from "./key-store-error.ts";

/** A key as held in memory: its public record and the HMAC it is found by. */
export interface HashedKey {
  hash: string;
  record: ApiKeyRecord;
}

/** The keys as read at `checkedAt`. */
export interface KeySnapshot {
  keys: HashedKey[];
  byHash: Map<string, HashedKey>;
  /** Fingerprint of the secret the keys were made with; `null` before the first key. */
  secretFingerprint: string | null;
  checkedAt: number;
  /** Set once the secret was checked against {@link KeySnapshot.secretFingerprint}. */
  secret?: string;
}

/** A snapshot of `keys`, made with the secret of `secretFingerprint`, read now. */
export function keySnapshot({
  keys,
  secretFingerprint,
}: Pick<KeySnapshot, "keys" | "secretFingerprint">): KeySnapshot {
  return {
    keys,
    byHash: new Map(keys.map((key) => [key.hash, key])),
    secretFingerprint,
    checkedAt: Date.now(),
  };
}

/** The snapshot an adapter keeps, and how it is read again. */
export interface SnapshotCache<Snapshot extends KeySnapshot> {
  /** The snapshot, read again first when older than `refreshMs`. */
  current(): Promise<Snapshot>;
  /** The last snapshot read, however old; undefined before the first read. */
  latest(): Snapshot | undefined;
  /** Keeps `snapshot` (just read after a change of this process's own). */
  replace(snapshot: Snapshot): void;
  /** Forgets the snapshot's age, so the next {@link SnapshotCache.current} reads again. */
  invalidate(): void;
}

/** A {@link SnapshotCache} over `read`. */
export function createSnapshotCache<Snapshot extends KeySnapshot>({
  read,
  refreshMs,
}: {
  read: () => Promise<Snapshot>;
  refreshMs: number;
}): SnapshotCache<Snapshot> {
  let snapshot: Snapshot | undefined;
  let refreshing: Promise<Snapshot> | undefined;
  return {
    async current() {
      if (snapshot !== undefined && Date.now() - snapshot.checkedAt < refreshMs) return snapshot;
      refreshing ??= read().then(
        (fresh) => {
          snapshot = fresh;
          refreshing = undefined;
          return fresh;
        },
        (error: unknown) => {
          refreshing = undefined;
          throw error;
        },
      );
      return refreshing;
    },
    latest: () => snapshot,
    replace(fresh) {
      snapshot = fresh;
    },
    invalidate() {
      if (snapshot !== undefined) snapshot.checkedAt = 0;
    },
  };
}

/** Options of {@link snapshotAnswers}. */
export interface SnapshotAnswersOptions<Snapshot extends KeySnapshot> {
  cache: SnapshotCache<Snapshot>;
  /** `LOUPE_KEY_SECRET`, when set. */
  configuredSecret: string | undefined;
  /** Where a generated secret lives when `configuredSecret` is absent. */
  secretDir: string;
  /** The message when there are keys but no secret. */
  missingSecret: string;
  /** The message when the secret is not the one the keys were made with. */
  otherSecret: string;
  now: () => Date;
}

/**
 * The {@link KeyStore} methods answered from the snapshot: `verify` (the secret checked first against
 * the keys' fingerprint, the HMAC compared in constant time), `hasKeys` (revoked and expired keys count,
 * so revoking every key never turns authentication off) and `corsOrigins` (of live keys only).
 *
 * @throws {KeyStoreError} `key_store_invalid` with `missingSecret` or `otherSecret` when there are keys
 *   and no secret, or another secret than theirs.
 */
export function snapshotAnswers<Snapshot extends KeySnapshot>({
  cache,
  configuredSecret,
  secretDir,
  missingSecret,
  otherSecret,
  now,
}: SnapshotAnswersOptions<Snapshot>): Pick<KeyStore, "verify" | "hasKeys" | "corsOrigins"> {
  const checkedSecret = async (state: Snapshot): Promise<string> => {
    if (state.secret !== undefined) return state.secret;
    const secret = configuredSecret ?? (await readKeySecret(secretDir));
    if (secret === undefined) throw new KeyStoreError("key_store_invalid", missingSecret);
    if (state.secretFingerprint !== null && state.secretFingerprint !== secretFingerprint(secret)) {
      throw new KeyStoreError("key_store_invalid", otherSecret);
    }
    state.secret = secret;
    return secret;
  };
  return {
    async verify(key): Promise<KeyVerification> {
      if (typeof key !== "string" || !isWellFormedApiKey(key)) return { status: "unknown" };
      const state = await cache.current();
      if (state.keys.length === 0) return { status: "unknown" };
      const hash = hashApiKey({ key, secret: await checkedSecret(state) });
      const stored = state.byHash.get(hash);
      if (stored === undefined || !sameHash(stored.hash, hash)) return { status: "unknown" };
      const status = keyStatus(stored.record, now());
      return status === "active"
        ? { status: "valid", record: stored.record }
        : { status, record: stored.record };
    },

    async hasKeys() {
      const state = await cache.current();
      if (state.keys.length === 0) return false;
      await checkedSecret(state);
      return true;
    },

    async corsOrigins() {
      const state = await cache.current();
      const at = now();
      const origins = new Set<string>();
      for (const { record } of state.keys) {
        if (record.origins.length === 0 || keyStatus(record, at) !== "active") continue;
        for (const origin of record.origins) origins.add(origin);
      }
      return origins;
    },
  };
}

/** The error for a key that is not there (or not the tenant's). */
export function keyNotFound(id: string, tenant: string | undefined): KeyStoreError {
  return new KeyStoreError(
    "key_not_found",
    `No key with id ${JSON.stringify(id.slice(0, 80))}${tenant === undefined ? "" : ` for tenant ${tenant}`}. List the keys with \`loupe keys list\`.`,
  );
}
