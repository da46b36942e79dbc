/**
 * Downloads public CLIP ONNX packs from the Hugging Face hub URL layout
 * (`<baseUrl>/<repo>/resolve/<revision>/<file>`) into a models directory: files stream into a staging
 * directory with sha256 computed on the way (and checked where the hub declares one for LFS files), a
 * manifest is written, and the staging directory is renamed into place only when everything arrived.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { DownloadError, ValidationError } from "../errors.ts";
import { writeManifest } from "./manifest.ts";
import { pathExists } from "./model-pack.ts";

/** One file of a pack: where it is in the repository and where it goes in the pack. */
export interface PackFile {
  remote: string;
  local: string;
  /** Skipped when the repository does not have it (HTTP 404). */
  optional?: boolean;
}

/** A pack `loupe models fetch` knows how to download. */
export interface KnownPack {
  /** Hub repository (`owner/name`). */
  repo: string;
  description: string;
  files: readonly PackFile[];
}

function clipFiles({ quantized }: { quantized: boolean }): PackFile[] {
  const suffix = quantized ? "_quantized" : "";
  return [
    ...["config.json", "preprocessor_config.json", "tokenizer.json"].map((file) => ({
      remote: file,
      local: file,
    })),
    { remote: "tokenizer_config.json", local: "tokenizer_config.json", optional: true },
    { remote: `onnx/vision_model${suffix}.onnx`, local: "onnx/vision_model.onnx" },
    { remote: `onnx/text_model${suffix}.onnx`, local: "onnx/text_model.onnx" },
  ];
}

/**
 * Packs known by name. Names ending in `-quantized` take the dynamic INT8 exports, faster on CPU (see
 * models/README.md, Using packs).
 */
export const knownPacks: Record<string, KnownPack> = {
  "clip-vit-base-patch32": {
    repo: "Xenova/clip-vit-base-patch32",
    description: "OpenAI CLIP ViT-B/32, FP32 ONNX (512-d, 224 px)",
    files: clipFiles({ quantized: false }),
  },
  "clip-vit-base-patch32-quantized": {
    repo: "Xenova/clip-vit-base-patch32",
    description: "OpenAI CLIP ViT-B/32, INT8 ONNX (512-d, 224 px)",
    files: clipFiles({ quantized: true }),
  },
  "clip-vit-base-patch16": {
    repo: "Xenova/clip-vit-base-patch16",
    description: "OpenAI CLIP ViT-B/16, FP32 ONNX (512-d, 224 px)",
    files: clipFiles({ quantized: false }),
  },
};

/** Resolves a pack name: a key of {@link knownPacks}, or a hub repository `owner/name` in the same layout. */
export function resolvePackName(name: string): { dirName: string; pack: KnownPack } {
  const known = knownPacks[name];
  if (known !== undefined) return { dirName: name, pack: known };
  const byRepo = Object.entries(knownPacks).find(
    ([key, pack]) => pack.repo === name && !key.endsWith("-quantized"),
  );
  if (byRepo !== undefined) return { dirName: byRepo[0], pack: byRepo[1] };
  if (/^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/.test(name) && !name.includes("..")) {
    const dirName = name.split("/")[1] as string;
    return {
      dirName,
      pack: { repo: name, description: `${name} (CLIP ONNX layout)`, files: clipFiles({ quantized: false }) },
    };
  }
  throw new ValidationError(
    `Unknown model pack "${name}". Known: ${Object.keys(knownPacks).join(", ")}; or give a hub repository as owner/name.`,
    { context: { name } },
  );
}

/** Progress of a download, for a progress bar. */
export type FetchProgress =
  | { type: "file-start"; file: string; index: number; count: number; totalBytes: number | undefined }
  | { type: "file-progress"; file: string; receivedBytes: number; totalBytes: number | undefined }
  | { type: "file-done"; file: string; bytes: number; sha256: string; verified: boolean };

/** Options of {@link fetchPack}. */
export interface FetchPackOptions {
  /** A key of {@link knownPacks} or a hub repository `owner/name`. */
  name: string;
  /** Directory the pack is installed under, as `<modelsDir>/<name>`. */
  modelsDir: string;
  /** Hub base URL; a mirror with the same URL layout works. */
  baseUrl?: string;
  revision?: string;
  /** Time allowed to connect and receive response headers, per request. */
  connectTimeoutMs?: number;
  /** Longest pause allowed while receiving a file body. */
  idleTimeoutMs?: number;
  /** Replace an installed pack of the same name. */
  overwrite?: boolean;
  onProgress?: (event: FetchProgress) => void;
}

/** Result of {@link fetchPack}. */
export interface FetchedPack {
  dir: string;
  files: { file: string; bytes: number; sha256: string; verified: boolean }[];
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ECONNRESET",
  "ETIMEDOUT",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

function errorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    const code = (current as Error & { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = current.cause;
  }
  return undefined;
}

function offlineError({ url, reason, cause }: { url: URL; reason: string; cause?: unknown }): DownloadError {
  return new DownloadError(
    `Could not reach ${url.host} (${reason}): this machine appears to be offline, or the host is blocked. ` +
      "Check the network, or point --base-url (HF_ENDPOINT) at a reachable mirror, or copy the pack into the models directory by hand.",
    { cause, status: 503, context: { host: url.host, url: url.href, reason } },
  );
}

/** sha256 that the hub declares for an LFS file (`X-Linked-Etag` / `ETag`), when it is one. */
function declaredSha256(headers: Headers): string | undefined {
  for (const name of ["x-linked-etag", "etag"]) {
    const match = headers.get(name)?.match(/^(?:W\/)?"?([0-9a-f]{64})"?$/i);
    if (match?.[1] !== undefined) return match[1].toLowerCase();
  }
  return undefined;
}

async function requestWithTimeout({
  url,
  connectTimeoutMs,
  controller,
}: {
  url: URL;
  connectTimeoutMs: number;
  controller: AbortController;
}): Promise<Response> {
  const timer = setTimeout(() => controller.abort(new Error("connect timeout")), connectTimeoutMs);
  try {
    return await fetch(url, { signal: controller.signal, redirect: "manual" });
  } catch (error) {
    if (controller.signal.aborted) {
      throw offlineError({ url, reason: `no response within ${connectTimeoutMs} ms`, cause: error });
    }
    const code = errorCode(error);
    if (code !== undefined && NETWORK_CODES.has(code))
      throw offlineError({ url, reason: code, cause: error });
    throw new DownloadError(
      `Request to ${url.href} failed: ${error instanceof Error ? error.message : String(error)}.`,
      { cause: error, context: { url: url.href } },
    );
  } finally {
    clearTimeout(timer);
  }
}

async function downloadFile({
  url,
  destination,
  file,
  connectTimeoutMs,
  idleTimeoutMs,
  onStart,
  onProgress,
}: {
  url: URL;
  destination: string;
  file: string;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  onStart: (totalBytes: number | undefined) => void;
  onProgress: (receivedBytes: number, totalBytes: number | undefined) => void;
}): Promise<{ bytes: number; sha256: string; verified: boolean }> {
  const controller = new AbortController();
  let current = url;
  let expected: string | undefined;
  let response: Response | undefined;
  for (let hop = 0; hop <= 5; hop += 1) {
    response = await requestWithTimeout({ url: current, connectTimeoutMs, controller });
    expected ??= declaredSha256(response.headers);
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location !== null) {
      await response.body?.cancel();
      current = new URL(location, current);
      continue;
    }
    break;
  }
  if (response === undefined || (response.status >= 300 && response.status < 400)) {
    throw new DownloadError(`Too many redirects fetching ${url.href}.`, { context: { url: url.href } });
  }
  if (!response.ok || response.body === null) {
    await response.body?.cancel();
    const hint =
      response.status === 404
        ? " Check the pack name and revision."
        : response.status === 401 || response.status === 403
          ? " The repository may be gated or private."
          : "";
    throw new DownloadError(
      `Downloading ${file} from ${url.href} failed with HTTP ${response.status}.${hint}`,
      {
        status: response.status === 404 ? 404 : 502,
        context: { url: url.href, status: response.status },
      },
    );
  }
  const lengthHeader = Number(response.headers.get("content-length"));
  const totalBytes = Number.isFinite(lengthHeader) && lengthHeader > 0 ? lengthHeader : undefined;
  onStart(totalBytes);
  const hash = createHash("sha256");
  let received = 0;
  let idleTimer = setTimeout(() => controller.abort(new Error("idle timeout")), idleTimeoutMs);
  const partial = `${destination}.partial`;
  await mkdir(dirname(destination), { recursive: true });
  try {
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          clearTimeout(idleTimer);
          idleTimer = setTimeout(() => controller.abort(new Error("idle timeout")), idleTimeoutMs);
          hash.update(chunk);
          received += chunk.length;
          onProgress(received, totalBytes);
          yield chunk;
        }
      },
      createWriteStream(partial),
    );
  } catch (error) {
    await rm(partial, { force: true });
    const reason = controller.signal.aborted
      ? `no data for ${idleTimeoutMs} ms`
      : error instanceof Error
        ? error.message
        : String(error);
    throw new DownloadError(
      `Downloading ${file} from ${url.host} stopped after ${received} bytes: ${reason}.`,
      {
        cause: error,
        context: { url: url.href, received },
      },
    );
  } finally {
    clearTimeout(idleTimer);
  }
  if (totalBytes !== undefined && received !== totalBytes) {
    await rm(partial, { force: true });
    throw new DownloadError(
      `Downloading ${file} ended after ${received} of ${totalBytes} bytes; try again.`,
      {
        context: { url: url.href, received, totalBytes },
      },
    );
  }
  const sha256 = hash.digest("hex");
  if (expected !== undefined && expected !== sha256) {
    await rm(partial, { force: true });
    throw new DownloadError(
      `Downloaded ${file} does not match the sha256 the server declares: expected ${expected}, got ${sha256}. ` +
        "The download was corrupted or the mirror serves different content; try again or use another mirror.",
      { context: { url: url.href, expected, actual: sha256 } },
    );
  }
  await rename(partial, destination);
  return { bytes: received, sha256, verified: expected !== undefined };
}

/**
 * Downloads a pack into `<modelsDir>/<name>` and writes its manifest. Nothing is left in place unless every
 * file arrived complete: files land in a staging directory that is renamed at the end.
 *
 * @throws DownloadError when the host cannot be reached (fast, naming the host), a file is missing (HTTP 404),
 *   or content fails its checksum; ValidationError for an unknown name or when the pack exists already.
 */
export async function fetchPack({
  name,
  modelsDir,
  baseUrl = "https://huggingface.co",
  revision = "main",
  connectTimeoutMs = 5000,
  idleTimeoutMs = 30_000,
  overwrite = false,
  onProgress = () => {},
}: FetchPackOptions): Promise<FetchedPack> {
  const { dirName, pack } = resolvePackName(name);
  let base: URL;
  try {
    base = new URL(baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`);
  } catch (error) {
    throw new ValidationError(`Base URL "${baseUrl}" is not a valid URL.`, { cause: error });
  }
  if (base.protocol !== "https:" && base.protocol !== "http:") {
    throw new ValidationError(`Base URL "${baseUrl}" must be http or https.`);
  }
  const target = resolve(modelsDir, dirName);
  if (!overwrite && (await pathExists(target))) {
    throw new ValidationError(`Model pack directory ${target} exists already; pass --force to replace it.`, {
      context: { dir: target },
    });
  }
  await mkdir(resolve(modelsDir), { recursive: true });
  const staging = resolve(modelsDir, `.${dirName}.partial-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  const files: FetchedPack["files"] = [];
  try {
    for (const [index, file] of pack.files.entries()) {
      const url = new URL(
        `${pack.repo.split("/").map(encodeURIComponent).join("/")}/resolve/${encodeURIComponent(revision)}/${file.remote}`,
        base,
      );
      let result: Awaited<ReturnType<typeof downloadFile>>;
      try {
        result = await downloadFile({
          url,
          destination: join(staging, file.local),
          file: file.local,
          connectTimeoutMs,
          idleTimeoutMs,
          onStart: (totalBytes) =>
            onProgress({ type: "file-start", file: file.local, index, count: pack.files.length, totalBytes }),
          onProgress: (receivedBytes, totalBytes) =>
            onProgress({ type: "file-progress", file: file.local, receivedBytes, totalBytes }),
        });
      } catch (error) {
        if (file.optional === true && error instanceof DownloadError && error.status === 404) continue;
        throw error;
      }
      files.push({ file: file.local, ...result });
      onProgress({ type: "file-done", file: file.local, ...result });
    }
    await writeManifest({ dir: staging });
    if (await pathExists(target)) {
      const old = `${staging}.old`;
      await rename(target, old);
      await rename(staging, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(staging, target);
    }
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
  return { dir: target, files };
}
