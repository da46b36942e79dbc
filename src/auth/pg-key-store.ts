/**
 * The PostgreSQL adapter of the {@link KeyStore} port, for several Loupe processes sharing one store
 * (`LOUPE_DATABASE_URL`). Tables `loupe_api_keys` (one row per key: its HMAC, never the key) and
 * `loupe_key_store` (the secret's fingerprint and a version) come from migration 1 (`loupe migrate`).
 *
 * Create and revoke run in a transaction that locks the `loupe_key_store` row and bumps its version.
 * Each process keeps a snapshot of the keys and, at most every `refreshMs` (1 s by default), reads the
 * version (one small query) and the keys again if it moved, so a key revoked by another replica stops
 * working here within about a second, well inside {@link MAX_STALENESS_MS}, while verifying a key
 * costs no query. `lastUsedAt` is written in batches, without bumping the version.
 */
import type pg from "pg";
import { databaseFailure, withTransaction } from "../db/database.ts";
import { openDatabase } from "../db/open-database.ts";
import { generateApiKey, generateKeyId, hashApiKey, secretFingerprint } from "./api-key.ts";
import { checkKeyRequest } from "./key-request.ts";
import { ensureKeySecret, secretFile } from "./key-secret.ts";
import {
  createSnapshotCache,
  type HashedKey,
  type KeySnapshot,
  keyNotFound,
  keySnapshot,
  snapshotAnswers,
} from "./key-snapshot.ts";
import { type CreatedApiKey, KEY_SCOPES, type KeyStore, type NewApiKey } from "./key-store.ts";
import { KeyStoreError } from "./key-store-error.ts";
import { createTouchBatch } from "./key-touches.ts";

/** Options of {@link createPgKeyStore}. */
export interface PgKeyStoreOptions {
  /** The pool of `LOUPE_DATABASE_URL`, migrated; the store does not close it. */
  pool: pg.Pool;
  /** `LOUPE_KEY_SECRET`; absent: the secret generated into `<secretDir>/secret` (one machine only). */
  secret?: string;
  /** Where a generated secret lives when `secret` is absent: `<LOUPE_DATA_DIR>/auth`. */
  secretDir: string;
  /** Tenants a key may be made for (the store's tenant pattern). */
  tenantPattern: RegExp;
  /** How often the store's version is checked for changes made by other processes. */
  refreshMs?: number;
  /** How long uses are gathered before their `lastUsedAt` is written. */
  touchFlushMs?: number;
  /** A use within this long of the known `lastUsedAt` is not written again. */
  touchResolutionMs?: number;
  /** The clock (tests move it). */
  now?: () => Date;
}

interface KeyRow {
  id: string;
  hash: string;
  name: string | null;
  tenant: string;
  scopes: string[];
  publishable: boolean;
  origins: string[];
  rate_limit_per_second: number | null;
  rate_limit_burst: number | null;
  created_at: Date;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

interface Snapshot extends KeySnapshot {
  version: string;
}

const KEY_COLUMNS =
  "id, hash, name, tenant, scopes, publishable, origins, rate_limit_per_second, rate_limit_burst, created_at, expires_at, last_used_at, revoked_at";

function iso(value: Date | null): string | null {
  return value === null ? null : value.toISOString();
}

function toStored(row: KeyRow): HashedKey {
  return {
    hash: row.hash,
    record: {
      id: row.id,
      name: row.name,
      tenant: row.tenant,
      scopes: KEY_SCOPES.filter((scope) => row.scopes.includes(scope)),
      publishable: row.publishable,
      origins: row.origins,
      rateLimit:
        row.rate_limit_per_second === null || row.rate_limit_burst === null
          ? null
          : { perSecond: row.rate_limit_per_second, burst: row.rate_limit_burst },
      createdAt: row.created_at.toISOString(),
      expiresAt: iso(row.expires_at),
      lastUsedAt: iso(row.last_used_at),
      revokedAt: iso(row.revoked_at),
    },
  };
}

/** The key store over the `loupe_api_keys` table of a migrated database. */
export function createPgKeyStore({
  pool,
  secret: configuredSecret,
  secretDir,
  tenantPattern,
  refreshMs = 1_000,
  touchFlushMs = 5_000,
  touchResolutionMs = 60_000,
  now = () => new Date(),
}: PgKeyStoreOptions): KeyStore {
  const query = async <Row extends pg.QueryResultRow>(text: string, values: unknown[] = []) => {
    try {
      return await pool.query<Row>(text, values);
    } catch (error) {
      throw databaseFailure(error, pool);
    }
  };

  /** Reads the keys again when the store's version moved since the snapshot. */
  const read = async (): Promise<Snapshot> => {
    const head = await query<{ version: string; secret_fingerprint: string | null }>(
      "select version::text as version, secret_fingerprint from loupe_key_store",
    );
    const state = head.rows[0];
    if (state === undefined) {
      throw new KeyStoreError(
        "key_store_invalid",
        "The database's loupe_key_store row is missing. Restore the database from a backup.",
      );
    }
    const snapshot = cache.latest();
    if (snapshot !== undefined && snapshot.version === state.version) {
      return { ...snapshot, checkedAt: Date.now() };
    }
    // Keys are read after the version, so a change between the two is only read again next time.
    const rows = await query<KeyRow>(`select ${KEY_COLUMNS} from loupe_api_keys order by seq`);
    const keys = rows.rows.map(toStored);
    return { ...keySnapshot({ keys, secretFingerprint: state.secret_fingerprint }), version: state.version };
  };

  const cache = createSnapshotCache({ read, refreshMs });

  const touches = createTouchBatch({
    flushMs: touchFlushMs,
    resolutionMs: touchResolutionMs,
    lastUsedAt: (id) => cache.latest()?.keys.find((key) => key.record.id === id)?.record.lastUsedAt,
    async write(used) {
      const ids = [...used.keys()];
      const times = ids.map((id) => new Date(used.get(id) as number));
      await query(
        `update loupe_api_keys as keys set last_used_at = used.at
           from unnest($1::text[], $2::timestamptz[]) as used(id, at)
          where keys.id = used.id and (keys.last_used_at is null or keys.last_used_at < used.at)`,
        [ids, times],
      );
      for (const [index, id] of ids.entries()) {
        const stored = cache.latest()?.keys.find((key) => key.record.id === id);
        const at = times[index] as Date;
        if (
          stored !== undefined &&
          (stored.record.lastUsedAt === null || Date.parse(stored.record.lastUsedAt) < at.getTime())
        ) {
          stored.record = { ...stored.record, lastUsedAt: at.toISOString() };
        }
      }
    },
  });

  const validate = (input: NewApiKey) => checkKeyRequest(input, { tenantPattern, now });

  return {
    async create(input): Promise<CreatedApiKey> {
      const { publishable, scopes, origins, name } = validate(input);
      const secret = configuredSecret ?? (await ensureKeySecret(secretDir));
      const fingerprint = secretFingerprint(secret);
      const key = generateApiKey({ publishable });
      const createdAt = now();
      const row = await withTransaction(pool, async (client) => {
        const head = await client.query<{ secret_fingerprint: string | null; keys: boolean }>(
          `select secret_fingerprint, exists (select 1 from loupe_api_keys) as keys
             from loupe_key_store for update`,
        );
        const state = head.rows[0];
        if (state === undefined) {
          throw new KeyStoreError(
            "key_store_invalid",
            "The database's loupe_key_store row is missing. Restore the database from a backup.",
          );
        }
        if (state.keys && state.secret_fingerprint !== null && state.secret_fingerprint !== fingerprint) {
          throw new KeyStoreError(
            "key_store_invalid",
            `The keys in the database were made with another key secret; set the secret they were made with (LOUPE_KEY_SECRET, the same on every replica) before making more.`,
          );
        }
        await client.query("update loupe_key_store set version = version + 1, secret_fingerprint = $1", [
          fingerprint,
        ]);
        const inserted = await client.query<KeyRow>(
          `insert into loupe_api_keys
             (id, hash, name, tenant, scopes, publishable, origins, rate_limit_per_second, rate_limit_burst, created_at, expires_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           returning ${KEY_COLUMNS}`,
          [
            generateKeyId(),
            hashApiKey({ key, secret }),
            name,
            input.tenant,
            scopes,
            publishable,
            origins,
            input.rateLimit?.perSecond ?? null,
            input.rateLimit?.burst ?? null,
            createdAt,
            input.expiresAt ?? null,
          ],
        );
        return inserted.rows[0] as KeyRow;
      });
      cache.invalidate();
      return { key, record: toStored(row).record };
    },

    async list({ tenant } = {}) {
      const rows =
        tenant === undefined
          ? await query<KeyRow>(`select ${KEY_COLUMNS} from loupe_api_keys order by seq`)
          : await query<KeyRow>(`select ${KEY_COLUMNS} from loupe_api_keys where tenant = $1 order by seq`, [
              tenant,
            ]);
      return rows.rows.map((row) => toStored(row).record);
    },

    async revoke(id, { tenant } = {}) {
      const row = await withTransaction(pool, async (client) => {
        await client.query("select version from loupe_key_store for update");
        const updated = await client.query<KeyRow>(
          `update loupe_api_keys set revoked_at = coalesce(revoked_at, $2)
            where id = $1 and ($3::text is null or tenant = $3)
            returning ${KEY_COLUMNS}`,
          [id, now(), tenant ?? null],
        );
        const revoked = updated.rows[0];
        if (revoked === undefined) throw keyNotFound(id, tenant);
        await client.query("update loupe_key_store set version = version + 1");
        return revoked;
      });
      cache.invalidate();
      return toStored(row).record;
    },

    ...snapshotAnswers({
      cache,
      configuredSecret,
      secretDir,
      missingSecret: `The database holds keys but there is no key secret: LOUPE_KEY_SECRET is not set and ${secretFile(secretDir)} is missing. Set LOUPE_KEY_SECRET to the secret the keys were made with (every replica needs the same one).`,
      otherSecret: `The keys in the database were made with another key secret than ${configuredSecret === undefined ? secretFile(secretDir) : "LOUPE_KEY_SECRET"}. Set LOUPE_KEY_SECRET to the secret they were made with (every replica needs the same one), or revoke them and create new keys.`,
      now,
    }),

    touch(id, at = now()) {
      touches.touch(id, at);
    },

    close: () => touches.close(),
  };
}

/** Options of {@link openPgKeyStore}: those of {@link createPgKeyStore}, with a URL instead of a pool. */
export interface OpenPgKeyStoreOptions extends Omit<PgKeyStoreOptions, "pool"> {
  /** `LOUPE_DATABASE_URL`. */
  url: string;
}

/**
 * The key store on the database at `url`, over a pool of its own that its `close()` ends: what the
 * server and `loupe keys` open when `LOUPE_DATABASE_URL` is set. Closing it twice closes it once.
 *
 * @throws {DatabaseError} `migrations_pending` (naming `loupe migrate`), `database_invalid` or
 *   `database_unavailable`.
 */
export async function openPgKeyStore({ url, ...options }: OpenPgKeyStoreOptions): Promise<KeyStore> {
  const pool = await openDatabase({ url });
  const store = createPgKeyStore({ pool, ...options });
  let closing: Promise<void> | undefined;
  return {
    ...store,
    close() {
      closing ??= store.close().finally(() => pool.end());
      return closing;
    },
  };
}
