/**
 * The app for in-process authentication tests: the production wiring (`makeTestApp`) over a key store in
 * a temporary data dir, with helpers to make keys and send requests with them. Routes that would
 * reach the store or the pack are not called with a valid key and scope, except where a test hands in
 * what they need.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { createFileKeyStore, type FileKeyStoreOptions, keyStoreDir } from "../../src/auth/file-key-store.ts";
import type { CreatedApiKey, KeyStore, NewApiKey } from "../../src/auth/key-store.ts";
import { createLogger } from "../../src/logger.ts";
import { TENANT_PATTERN } from "../../src/store/index.ts";
import { makeTestApp, type TestServicesOptions } from "../helpers/app.ts";

/** An app with its own data dir and key store, and the log lines it wrote. */
export interface AuthTestApp {
  app: ReturnType<typeof makeTestApp>;
  keys: KeyStore;
  dataDir: string;
  lines: string[];
  /** Makes a key in the app's store. */
  createKey(input: NewApiKey): Promise<CreatedApiKey>;
  dispose(): Promise<void>;
}

/** Builds the app over a fresh data dir; `env` and the other parts as for `makeTestApp`. */
export async function makeAuthTestApp({
  env = {},
  storeOptions = {},
  ...parts
}: TestServicesOptions & { storeOptions?: Partial<FileKeyStoreOptions> } = {}): Promise<AuthTestApp> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-auth-test-"));
  const keys = createFileKeyStore({
    dir: keyStoreDir(dataDir),
    tenantPattern: TENANT_PATTERN,
    ...storeOptions,
  });
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  const app = makeTestApp({
    env: { LOUPE_DATA_DIR: dataDir, ...env },
    logger: createLogger({ level: "debug", destination }),
    keys,
    ...parts,
  });
  return {
    app,
    keys,
    dataDir,
    lines,
    createKey: (input) => keys.create(input),
    async dispose() {
      await keys.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Headers sending `key` as a bearer token, plus `extra`. */
export function bearer(key: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${key}`, ...extra };
}

/** The error envelope of a response. */
export async function errorOf(
  response: Response,
): Promise<{ code: string; message: string; requestId: string }> {
  return ((await response.json()) as { error: { code: string; message: string; requestId: string } }).error;
}
