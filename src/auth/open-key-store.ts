/**
 * Opens the key store the settings name, for what opens it alone (start-up's authentication check,
 * `loupe keys`): on the database of `LOUPE_DATABASE_URL` when it is set (checked to be migrated), else the
 * file store under `<LOUPE_DATA_DIR>/auth`. The server builds its own over the services' pool (`services.ts`).
 */
import { createFileKeyStore, keyStoreDir } from "./file-key-store.ts";
import type { KeyStore } from "./key-store.ts";

/** Options of {@link openKeyStore}: the settings that choose and configure the key store. */
export interface OpenKeyStoreOptions {
  /** `LOUPE_DATABASE_URL`; absent: the file store under `dataDir`. */
  databaseUrl?: string;
  /** `LOUPE_DATA_DIR`: the file store's directory, and where a generated secret lives. */
  dataDir: string;
  /** `LOUPE_KEY_SECRET`. */
  secret?: string;
  tenantPattern: RegExp;
}

/**
 * The key store the settings name: on the database when `databaseUrl` is set (checked to be migrated),
 * else the file store under `<dataDir>/auth`. For what opens the key store alone (start-up's
 * authentication check, `loupe keys`); its `close()` releases what it opened.
 */
export async function openKeyStore({
  databaseUrl,
  dataDir,
  secret,
  tenantPattern,
}: OpenKeyStoreOptions): Promise<KeyStore> {
  const dir = keyStoreDir(dataDir);
  if (databaseUrl === undefined) return createFileKeyStore({ dir, secret, tenantPattern });
  // Imported on use: without a database URL `pg` is never loaded.
  const { openPgKeyStore } = await import("./pg-key-store.ts");
  return openPgKeyStore({ url: databaseUrl, secret, secretDir: dir, tenantPattern });
}
