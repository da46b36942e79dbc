/**
 * Integrity of model packs: sha256 of files, verification against `manifest.json`, and writing a manifest.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, rename, writeFile } from "node:fs/promises";
import { isAbsolute, join, normalize, relative, sep } from "node:path";
import { ModelPackError } from "../errors.ts";
import type { Manifest } from "./pack-config.ts";

/** Name of the manifest file at the root of a pack. */
export const MANIFEST_FILE = "manifest.json";

/** sha256 of a file, streamed, as lowercase hex. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * Checks that a manifest path stays inside the pack (no absolute paths, no `..`).
 *
 * @throws ModelPackError naming the path.
 */
export function assertPackRelativePath(file: string): void {
  const normalized = normalize(file);
  if (isAbsolute(file) || normalized.startsWith(`..${sep}`) || normalized === ".." || file.includes("\0")) {
    throw new ModelPackError(
      `manifest.json lists "${file}", which points outside the pack; paths must be relative and inside the pack directory.`,
      { context: { file } },
    );
  }
}

/**
 * Verifies every file listed in a manifest against its sha256.
 *
 * @throws ModelPackError naming the first missing file (with the fix) or the first file whose hash differs
 *   (with expected and actual hashes).
 */
export async function verifyManifest({
  dir,
  manifest,
  onFile,
}: {
  dir: string;
  manifest: Manifest;
  /** Called after each file is checked (for progress output). */
  onFile?: (file: string) => void;
}): Promise<void> {
  for (const [file, expected] of Object.entries(manifest.files)) {
    assertPackRelativePath(file);
    let actual: string;
    try {
      actual = await sha256File(join(dir, file));
    } catch (error) {
      throw new ModelPackError(
        `Model pack file ${file} is missing from ${dir} (listed in manifest.json). Re-fetch or reinstall the pack.`,
        { cause: error, context: { dir, file } },
      );
    }
    if (actual !== expected.toLowerCase()) {
      throw new ModelPackError(
        `Model pack file ${file} does not match manifest.json: expected sha256 ${expected.toLowerCase()}, got ${actual}. ` +
          "The file is corrupt or was changed; re-fetch or reinstall the pack.",
        { context: { dir, file, expected: expected.toLowerCase(), actual } },
      );
    }
    onFile?.(file);
  }
}

async function listFiles(dir: string, root = dir): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFiles(path, root)));
    else if (entry.isFile()) files.push(relative(root, path).split(sep).join("/"));
  }
  return files.sort();
}

/**
 * Hashes the given files of the pack in `dir` (default: every file under it except the manifest and
 * temporary `*.partial` downloads) and writes `manifest.json` atomically.
 */
export async function writeManifest({
  dir,
  files: only,
}: {
  dir: string;
  /** Pack-relative paths to list; absent: every file. */
  files?: readonly string[];
}): Promise<Manifest> {
  const files: Record<string, string> = {};
  const listed = only === undefined ? await listFiles(dir) : [...new Set(only)].sort();
  for (const file of listed) {
    if (file === MANIFEST_FILE || file.endsWith(".partial")) continue;
    assertPackRelativePath(file);
    files[file] = await sha256File(join(dir, file));
  }
  const manifest: Manifest = { files };
  const target = join(dir, MANIFEST_FILE);
  const temporary = `${target}.${process.pid}.partial`;
  await writeFile(temporary, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(temporary, target);
  return manifest;
}
