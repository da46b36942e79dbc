/**
 * The file adapter of the {@link KeyStore} port: `<dataDir>/auth/keys.json` (mode 0600, in a 0700
 * directory), replaced whole on every change (written beside it, flushed, renamed), changed only under
 * a lock file so that a server and `loupe keys` on the same data dir never lose each other's writes.
 *
 * Reads are cached: at most every `refreshMs` (1 s by default) the file is `stat`ed and read again if
 * it changed (a rename gives it a new inode), so a key revoked by another process stops working here
 * within about a second, without a restart. `lastUsedAt` is written in batches (a few seconds after a
 * use, at most once a minute per key), so serving requests does not mean writing on each one.
 */
import { mkdir, open } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { generateApiKey, generateKeyId, hashApiKey, secretFingerprint } from "./api-key.ts";
import { writeFileAtomic } from "./atomic-file.ts";
import { LockTimeoutError, withFileLock } from "./file-lock.ts";
import { checkKeyRequest, MAX_NAME } from "./key-request.ts";
import { ensureKeySecret, secretFile } from "./key-secret.ts";
import {
  createSnapshotCache,
  type KeySnapshot,
  keyNotFound,
  keySnapshot,
  snapshotAnswers,
} from "./key-snapshot.ts";
import {
  type ApiKeyRecord,
  type CreatedApiKey,
  KEY_SCOPES,
  type KeyStore,
  type NewApiKey,
} from "./key-store.ts";
import { KeyStoreError } from "./key-store-error.ts";
import { createTouchBatch } from "./key-touches.ts";

/** Name of the keys file inside the store's directory. */
export const KEYS_FILE = "keys.json";

/** The store's directory under a data dir. */
export function keyStoreDir(dataDir: string): string {
  return path.join(dataDir, "auth");
}

/** Options of {@link createFileKeyStore}. */
export interface FileKeyStoreOptions {
  /** Directory of `keys.json`, its lock and the generated secret: `<LOUPE_DATA_DIR>/auth`. */
  dir: string;
  /** `LOUPE_KEY_SECRET`; absent: the secret generated into `<dir>/secret`. */
  secret?: string;
  /** Tenants a key may be made for (the store's tenant pattern). */
  tenantPattern: RegExp;
  /** How often the file is checked for changes made by other processes. */
  refreshMs?: number;
  /** How long uses are gathered before their `lastUsedAt` is written. */
  touchFlushMs?: number;
  /** A use within this long of the stored `lastUsedAt` is not written again. */
  touchResolutionMs?: number;
  /** The clock (tests move it). */
  now?: () => Date;
}

function storedKeySchema(tenantPattern: RegExp) {
  return z.object({
    id: z.string().regex(/^key_[0-9a-f]{16}$/),
    name: z.string().max(MAX_NAME).nullable(),
    tenant: z.string().regex(tenantPattern),
    scopes: z.array(z.enum(KEY_SCOPES)),
    publishable: z.boolean(),
    origins: z.array(z.string()),
    rateLimit: z
      .object({ perSecond: z.number().positive(), burst: z.number().int().positive() })
      .nullable()
      .default(null),
    createdAt: z.string(),
    expiresAt: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
    hash: z.string().regex(/^[0-9a-f]{64}$/),
  });
}

type StoredKey = z.infer<ReturnType<typeof storedKeySchema>>;

interface KeysFile {
  version: 1;
  /** Fingerprint of the secret the keys were hashed with; `null` before the first key. */
  secretFingerprint: string | null;
  keys: StoredKey[];
}

interface Snapshot extends KeySnapshot {
  data: KeysFile;
  /** Inode, size and modification time of the file read; `null` when there was no file. */
  signature: string | null;
}

const emptyFile = (): KeysFile => ({ version: 1, secretFingerprint: null, keys: [] });

function publicRecord({ hash: _hash, ...record }: StoredKey): ApiKeyRecord {
  return record;
}

/** The key store over `<dir>/keys.json`. */
export function createFileKeyStore({
  dir,
  secret: configuredSecret,
  tenantPattern,
  refreshMs = 1_000,
  touchFlushMs = 5_000,
  touchResolutionMs = 60_000,
  now = () => new Date(),
}: FileKeyStoreOptions): KeyStore {
  const file = path.join(dir, KEYS_FILE);
  const lockFile = `${file}.lock`;
  const fileSchema = z.object({
    version: z.literal(1),
    secretFingerprint: z.string().nullable(),
    keys: z.array(storedKeySchema(tenantPattern)),
  });
  let mutations: Promise<unknown> = Promise.resolve();

  /** Reads the file as it is now. */
  const read = async (): Promise<Snapshot> => {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(file, "r");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      return { ...keySnapshot({ keys: [], secretFingerprint: null }), data: emptyFile(), signature: null };
    }
    try {
      const info = await handle.stat({ bigint: true });
      const signature = `${info.ino}:${info.size}:${info.mtimeNs}`;
      const snapshot = cache.latest();
      if (snapshot !== undefined && snapshot.signature === signature) {
        return { ...snapshot, checkedAt: Date.now() };
      }
      const text = await handle.readFile("utf8");
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (cause) {
        throw new KeyStoreError("key_store_invalid", `${file} is not valid JSON. Restore it from a backup.`, {
          cause,
        });
      }
      const result = fileSchema.safeParse(parsed);
      if (!result.success) {
        throw new KeyStoreError(
          "key_store_invalid",
          `${file} is not a Loupe key store (${result.error.issues[0]?.path.join(".") ?? "root"}: ${result.error.issues[0]?.message}). Restore it from a backup.`,
        );
      }
      const data = result.data as KeysFile;
      const keys = data.keys.map((key) => ({ hash: key.hash, record: publicRecord(key) }));
      return { ...keySnapshot({ keys, secretFingerprint: data.secretFingerprint }), data, signature };
    } finally {
      await handle.close();
    }
  };

  const cache = createSnapshotCache({ read, refreshMs });

  /** Runs `change` on the file's current content under the lock, and writes the result. */
  const mutate = <Result>(change: (data: KeysFile) => Result): Promise<Result> => {
    const run = mutations.then(async () => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      try {
        return await withFileLock({ file: lockFile }, async () => {
          const fresh = await read();
          const data = structuredClone(fresh.data);
          const result = change(data);
          await writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`);
          cache.replace(await read());
          return result;
        });
      } catch (error) {
        if (error instanceof LockTimeoutError) {
          throw new KeyStoreError(
            "key_store_busy",
            `The key store is locked by another process (${lockFile}); try again. A lock left by a crashed process is removed after 10 s.`,
            { cause: error },
          );
        }
        throw error;
      }
    });
    mutations = run.catch(() => undefined);
    return run;
  };

  const touches = createTouchBatch({
    flushMs: touchFlushMs,
    resolutionMs: touchResolutionMs,
    lastUsedAt: (id) => cache.latest()?.keys.find((key) => key.record.id === id)?.record.lastUsedAt,
    write: (used) =>
      mutate((data) => {
        for (const key of data.keys) {
          const at = used.get(key.id);
          if (at !== undefined && (key.lastUsedAt === null || Date.parse(key.lastUsedAt) < at)) {
            key.lastUsedAt = new Date(at).toISOString();
          }
        }
      }),
  });

  const validate = (input: NewApiKey) => checkKeyRequest(input, { tenantPattern, now });

  return {
    async create(input): Promise<CreatedApiKey> {
      const { publishable, scopes, origins, name } = validate(input);
      const secret = configuredSecret ?? (await ensureKeySecret(dir));
      const fingerprint = secretFingerprint(secret);
      const key = generateApiKey({ publishable });
      const stored: StoredKey = {
        id: generateKeyId(),
        name,
        tenant: input.tenant,
        scopes,
        publishable,
        origins,
        rateLimit: input.rateLimit === undefined ? null : { ...input.rateLimit },
        createdAt: now().toISOString(),
        expiresAt: input.expiresAt?.toISOString() ?? null,
        lastUsedAt: null,
        revokedAt: null,
        hash: hashApiKey({ key, secret }),
      };
      await mutate((data) => {
        if (
          data.keys.length > 0 &&
          data.secretFingerprint !== null &&
          data.secretFingerprint !== fingerprint
        ) {
          throw new KeyStoreError(
            "key_store_invalid",
            `The keys in ${file} were made with another key secret; set the secret they were made with (LOUPE_KEY_SECRET or ${secretFile(dir)}) before making more.`,
          );
        }
        data.secretFingerprint = fingerprint;
        data.keys.push(stored);
      });
      return { key, record: publicRecord(stored) };
    },

    async list({ tenant } = {}) {
      const state = await cache.current();
      return state.data.keys.filter((key) => tenant === undefined || key.tenant === tenant).map(publicRecord);
    },

    revoke(id, { tenant } = {}) {
      return mutate((data) => {
        const key = data.keys.find((candidate) => candidate.id === id);
        if (key === undefined || (tenant !== undefined && key.tenant !== tenant))
          throw keyNotFound(id, tenant);
        key.revokedAt ??= now().toISOString();
        return publicRecord(key);
      });
    },

    ...snapshotAnswers({
      cache,
      configuredSecret,
      secretDir: dir,
      missingSecret: `${file} holds keys but there is no key secret: ${secretFile(dir)} is missing and LOUPE_KEY_SECRET is not set. Restore the secret file, or set LOUPE_KEY_SECRET to the secret the keys were made with.`,
      otherSecret: `The keys in ${file} were made with another key secret than ${configuredSecret === undefined ? secretFile(dir) : "LOUPE_KEY_SECRET"}. Set the secret they were made with, or revoke them and create new keys.`,
      now,
    }),

    touch(id, at = now()) {
      touches.touch(id, at);
    },

    async close() {
      await touches.close();
      await mutations;
    },
  };
}
