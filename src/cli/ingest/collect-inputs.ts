/**
 * What `loupe ingest` is given, turned into items: files as they are, directories walked (recursively
 * unless told not to, images and videos by extension, hidden folders skipped), `.jsonl` manifests read
 * line by line (`{"file"|"url": …, "metadata"?: {…}}`, files relative to the manifest), and http(s) URLs.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { ValidationError } from "../../errors.ts";
import { type ImageIngestItem, type ImageMetadata, parseImageMetadata } from "../../ingest/image-ingest.ts";

/** File extensions taken as images. */
export const IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".gif"] as const;
/** File extensions taken as videos (handed to the video hook). */
export const VIDEO_EXTENSIONS = [".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"] as const;

/** Largest metadata of one item when the configuration does not say (`LOUPE_MAX_METADATA_BYTES`' default). */
export const DEFAULT_METADATA_BYTES = 16_384;

/** A failed item in the summary. */
export interface IngestFailure {
  /** The file, URL or manifest line. */
  name: string;
  code: string;
  message: string;
}

/** An image input: the item to ingest, or the problem found while reading it (a bad manifest line). */
export interface CollectedItem {
  name: string;
  item?: ImageIngestItem;
  problem?: IngestFailure;
}

/** The inputs as images and videos, in the order given (directory entries in name order). */
export interface Collected {
  images: CollectedItem[];
  videos: Array<{ file: string; metadata?: ImageMetadata }>;
}

function isUrl(text: string): boolean {
  return /^https?:\/\//i.test(text);
}

function hasExtension(file: string, extensions: readonly string[]): boolean {
  return extensions.includes(path.extname(file).toLowerCase());
}

async function walk(dir: string, recursive: boolean): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory() && recursive && !entry.name.startsWith("."))
      files.push(...(await walk(full, recursive)));
    else if (entry.isFile()) files.push(full);
  }
  return files;
}

/**
 * Turns the command's inputs into items: directories are walked (images and videos by extension,
 * other files ignored), `.jsonl` files read as manifests, URLs and other files taken as they are.
 *
 * @throws {ValidationError} when an input does not exist.
 */
export async function collectInputs({
  inputs,
  metadata,
  recursive = true,
  maxMetadataBytes = DEFAULT_METADATA_BYTES,
}: {
  inputs: readonly string[];
  metadata?: ImageMetadata;
  recursive?: boolean;
  maxMetadataBytes?: number;
}): Promise<Collected> {
  const collected: Collected = { images: [], videos: [] };
  const addFile = (file: string, itemMetadata: ImageMetadata | undefined) => {
    if (hasExtension(file, VIDEO_EXTENSIONS)) collected.videos.push({ file, metadata: itemMetadata });
    else
      collected.images.push({
        name: file,
        item: { source: { type: "file", path: file }, metadata: itemMetadata },
      });
  };
  for (const input of inputs) {
    if (isUrl(input)) {
      collected.images.push({ name: input, item: { source: { type: "url", url: input }, metadata } });
      continue;
    }
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(input);
    } catch {
      throw new ValidationError(
        `${input} does not exist. Give image files, directories, http(s) URLs or .jsonl manifests.`,
        { context: { input } },
      );
    }
    if (info.isDirectory()) {
      for (const file of await walk(input, recursive)) {
        if (hasExtension(file, IMAGE_EXTENSIONS) || hasExtension(file, VIDEO_EXTENSIONS))
          addFile(file, metadata);
      }
    } else if (path.extname(input).toLowerCase() === ".jsonl") {
      await readManifest({ file: input, metadata, maxMetadataBytes, collected, addFile });
    } else {
      addFile(input, metadata);
    }
  }
  return collected;
}

async function readManifest({
  file,
  metadata,
  maxMetadataBytes,
  collected,
  addFile,
}: {
  file: string;
  metadata: ImageMetadata | undefined;
  maxMetadataBytes: number;
  collected: Collected;
  addFile: (file: string, metadata: ImageMetadata | undefined) => void;
}): Promise<void> {
  const base = path.dirname(file);
  const lines = (await readFile(file, "utf8")).split("\n");
  lines.forEach((line, position) => {
    if (line.trim() === "") return;
    const name = `${file}:${position + 1}`;
    const fail = (message: string) =>
      collected.images.push({ name, problem: { name, code: "invalid_request", message } });
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      fail('Not valid JSON; each line is {"file": "…"} or {"url": "…"}, with optional "metadata".');
      return;
    }
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail('Each line must be a JSON object: {"file": "…"} or {"url": "…"}.');
      return;
    }
    const { file: target, url, metadata: own } = entry as Record<string, unknown>;
    let itemMetadata = metadata;
    if (own !== undefined) {
      try {
        itemMetadata = parseImageMetadata({ value: own, maxBytes: maxMetadataBytes });
      } catch (error) {
        fail(error instanceof Error ? error.message : String(error));
        return;
      }
    }
    if (typeof url === "string" && typeof target !== "string" && isUrl(url)) {
      collected.images.push({ name: url, item: { source: { type: "url", url }, metadata: itemMetadata } });
    } else if (typeof target === "string" && url === undefined && target !== "") {
      addFile(path.resolve(base, target), itemMetadata);
    } else {
      fail(
        'Each line needs exactly one of "file" (a path, relative to the manifest) or "url" (http or https).',
      );
    }
  });
}
