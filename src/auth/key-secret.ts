/**
 * The server secret API keys are HMAC'd with: `LOUPE_KEY_SECRET` when set, else a random secret made
 * once into `<dir>/secret` (mode 0600). Several processes may ask at once (a server and a CLI command):
 * the file is written whole under a temporary name and linked into place, which fails if another
 * process got there first, whose secret is then read.
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { syncDirectory } from "./atomic-file.ts";
import { KeyStoreError } from "./key-store-error.ts";

/** The file a generated secret lives in. */
export function secretFile(dir: string): string {
  return path.join(dir, "secret");
}

/** Reads the generated secret; `undefined` when there is none yet. */
export async function readKeySecret(dir: string): Promise<string | undefined> {
  try {
    const text = (await readFile(secretFile(dir), "utf8")).trim();
    if (text.length < 32) {
      throw new KeyStoreError(
        "key_store_invalid",
        `${secretFile(dir)} holds no usable secret (under 32 characters). Restore it from a backup, or set LOUPE_KEY_SECRET to the secret the keys were made with.`,
      );
    }
    return text;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** The generated secret, made now if there is none. */
export async function ensureKeySecret(dir: string): Promise<string> {
  const existing = await readKeySecret(dir);
  if (existing !== undefined) return existing;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temporary = path.join(dir, `.secret.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  await writeFile(temporary, `${randomBytes(32).toString("base64url")}\n`, { mode: 0o600, flag: "wx" });
  try {
    await link(temporary, secretFile(dir));
    await syncDirectory(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
  const secret = await readKeySecret(dir);
  if (secret === undefined) throw new KeyStoreError("key_store_invalid", `${secretFile(dir)} vanished.`);
  return secret;
}
