/**
 * `loupe ingest <dir|file|url|jsonl>...`: ingests images from files, directories (recursively), URLs
 * and JSONL manifests (`{"file"|"url": …, "metadata"?: {…}}` per line, files relative to the manifest).
 *
 * By default it works in-process against the configured store (embedded Milvus Lite in
 * `LOUPE_DATA_DIR`, as `loupe serve` would use it); `--url` sends the images to a running Loupe instead.
 * Ids are deterministic, so running the same command again only does what is missing: that is how an
 * interrupted ingest resumes. A progress bar (rate, ETA) goes to stderr; a summary with every failure
 * goes to stdout, and the exit code is 1 when any item failed.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { SingleBar } from "cli-progress";
import { type Command, InvalidArgumentError } from "commander";
import { AppError, ValidationError } from "../../errors.ts";
import {
  type ImageIngester,
  type ImageIngestItem,
  type ImageMetadata,
  parseImageMetadata,
} from "../../ingest/image-ingest.ts";
import type { JobItemOutcome } from "../../ingest/jobs.ts";
import { assertValidTenant } from "../../store/filter.ts";
import { listOption, serverUnreachable, wholeNumber } from "../command-inputs.ts";

/** File extensions taken as images. */
export const IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".gif"] as const;
/** File extensions taken as videos (handed to the video hook). */
export const VIDEO_EXTENSIONS = [".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"] as const;

const DEFAULT_METADATA_BYTES = 16_384;

/** A failed item in the summary. */
export interface IngestFailure {
  /** The file, URL or manifest line. */
  name: string;
  code: string;
  message: string;
}

/** What {@link runIngest} did. */
export interface IngestSummary {
  total: number;
  stored: number;
  skipped: number;
  failed: number;
  /** Video files found, handled by the video hook (or reported as failures without one). */
  videos: number;
  failures: IngestFailure[];
  /** Ids of the images, by input name, in input order. */
  ids: Array<{ name: string; id: string }>;
  seconds: number;
}

/** Progress after each item. */
export interface IngestProgress {
  done: number;
  total: number;
  stored: number;
  skipped: number;
  failed: number;
}

/** A way to ingest video files; the video pipeline plugs in here. */
export type VideoInputHandler = (request: {
  files: readonly string[];
  metadata?: ImageMetadata;
  report(index: number, outcome: JobItemOutcome): void;
}) => Promise<void>;

/** Where the images go. */
export type IngestTarget =
  | {
      kind: "local";
      ingester: ImageIngester;
      tenant: string;
      /** Largest metadata of one item, in bytes. */
      maxMetadataBytes?: number;
    }
  | {
      kind: "remote";
      /** Base URL of a running Loupe, e.g. `http://127.0.0.1:8080`. */
      url: string;
      /** Stand-in for `fetch` (tests). */
      fetch?: (input: string, init: RequestInit) => Promise<Response>;
      /** Files per request. */
      batchSize?: number;
    };

/** Options of {@link runIngest}. */
export interface RunIngestOptions {
  /** Files, directories, http(s) URLs and `.jsonl` manifests. */
  inputs: readonly string[];
  target: IngestTarget;
  /** Metadata of every item that has none of its own. */
  metadata?: ImageMetadata;
  /** Record source of items whose metadata names none. */
  source?: string;
  /** Walk directories recursively. */
  recursive?: boolean;
  videos?: VideoInputHandler;
  onProgress?: (progress: IngestProgress) => void;
  signal?: AbortSignal;
}

interface CollectedItem {
  name: string;
  item?: ImageIngestItem;
  /** A problem found while collecting (bad manifest line); the item then fails with it. */
  problem?: IngestFailure;
}

interface Collected {
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

function failureOf(name: string, outcome: JobItemOutcome): IngestFailure | undefined {
  return outcome.status === "failed"
    ? { name, code: outcome.error.code, message: outcome.error.message }
    : undefined;
}

/**
 * Ingests the inputs into the target, calling `onProgress` after each item.
 *
 * @throws {ValidationError} when an input does not exist; store or server failures as they come.
 */
export async function runIngest({
  inputs,
  target,
  metadata,
  source = "cli",
  recursive = true,
  videos,
  onProgress,
  signal,
}: RunIngestOptions): Promise<IngestSummary> {
  const started = performance.now();
  const collected = await collectInputs({
    inputs,
    metadata,
    recursive,
    maxMetadataBytes: target.kind === "local" ? target.maxMetadataBytes : undefined,
  });
  const total = collected.images.length + collected.videos.length;
  const summary: IngestSummary = {
    total,
    stored: 0,
    skipped: 0,
    failed: 0,
    videos: collected.videos.length,
    failures: [],
    ids: [],
    seconds: 0,
  };
  const ids: Array<{ name: string; id: string } | undefined> = [];
  const record = (position: number, name: string, outcome: JobItemOutcome) => {
    if (outcome.status === "stored") summary.stored += 1;
    else if (outcome.status === "skipped") summary.skipped += 1;
    else summary.failed += 1;
    const failure = failureOf(name, outcome);
    if (failure !== undefined) summary.failures.push(failure);
    if (outcome.id !== undefined && outcome.status !== "failed") ids[position] = { name, id: outcome.id };
    onProgress?.({
      done: summary.stored + summary.skipped + summary.failed,
      total,
      stored: summary.stored,
      skipped: summary.skipped,
      failed: summary.failed,
    });
  };

  const work: Array<{ index: number; input: ImageIngestItem }> = [];
  collected.images.forEach((entry, position) => {
    if (entry.problem !== undefined) {
      record(position, entry.name, { status: "failed", error: entry.problem });
    } else if (entry.item !== undefined) {
      work.push({ index: position, input: entry.item });
    }
  });
  const nameOf = (index: number) => collected.images[index]?.name ?? String(index);
  const report = (index: number, outcome: JobItemOutcome) => record(index, nameOf(index), outcome);

  if (target.kind === "local") {
    await target.ingester.ingest({
      tenant: target.tenant,
      items: work,
      defaultSource: source,
      signal,
      report,
    });
  } else {
    await ingestRemote({ target, work, source, report, signal });
  }

  if (collected.videos.length > 0) {
    const offset = collected.images.length;
    const files = collected.videos.map((video) => video.file);
    if (videos === undefined) {
      for (const [position, file] of files.entries()) {
        record(offset + position, file, {
          status: "failed",
          error: {
            code: "unsupported_media_type",
            message:
              target.kind === "remote"
                ? "With --url only images are sent; ingest videos without --url, or send them to POST /v1/videos."
                : "No video pipeline was given to this ingest; send videos to POST /v1/videos.",
          },
        });
      }
    } else {
      await videos({
        files,
        metadata,
        report: (index, outcome) => record(offset + index, files[index] ?? String(index), outcome),
      });
    }
  }
  summary.ids = ids.filter((entry) => entry !== undefined);
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

interface RemoteItem {
  index?: number;
  id?: string;
  status: "stored" | "skipped" | "failed";
  error?: { code: string; message: string };
}

function remoteOutcome(item: RemoteItem | undefined): JobItemOutcome {
  if (item === undefined) {
    return {
      status: "failed",
      error: { code: "bad_response", message: "The server did not answer for this item." },
    };
  }
  if (item.status === "failed") {
    return { status: "failed", error: item.error ?? { code: "failed", message: "failed" }, id: item.id };
  }
  return { status: item.status, id: item.id ?? "" };
}

/** Sends the items to a running Loupe in batches, files as multipart and URLs as JSON. */
async function ingestRemote({
  target,
  work,
  source,
  report,
  signal,
}: {
  target: Extract<IngestTarget, { kind: "remote" }>;
  work: ReadonlyArray<{ index: number; input: ImageIngestItem }>;
  source: string;
  report: (index: number, outcome: JobItemOutcome) => void;
  signal?: AbortSignal;
}): Promise<void> {
  const send = target.fetch ?? ((input: string, init: RequestInit) => fetch(input, init));
  const base = target.url.replace(/\/+$/, "");
  const batchSize = target.batchSize ?? 16;
  const withSource = (metadata: ImageMetadata | undefined): ImageMetadata => ({ source, ...metadata });

  const call = async (init: RequestInit): Promise<RemoteItem[]> => {
    let response: Response;
    try {
      response = await send(`${base}/v1/images`, { ...init, method: "POST", signal });
    } catch (error) {
      throw serverUnreachable({ url: base, error, doing: "ingest" });
    }
    const body = (await response.json().catch(() => ({}))) as {
      items?: RemoteItem[];
      job?: { id: string };
      error?: { code?: string; message?: string };
    };
    if (response.status === 202 && body.job !== undefined) return waitForJob(body.job.id);
    if (Array.isArray(body.items)) return body.items;
    throw new AppError(
      body.error?.code ?? "server_error",
      response.status,
      `Loupe at ${base} answered ${response.status}: ${body.error?.message ?? "no details"}`,
    );
  };

  const waitForJob = async (id: string): Promise<RemoteItem[]> => {
    for (;;) {
      const response = await send(`${base}/v1/jobs/${id}`, { method: "GET", signal });
      const body = (await response.json()) as { job?: { status: string; items: RemoteItem[] } };
      if (body.job === undefined)
        throw new AppError("server_error", response.status, `Job ${id} could not be read.`);
      if (body.job.status === "done" || body.job.status === "failed") return body.job.items;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  };

  const files = work.filter(({ input }) => input.source.type === "file");
  const urls = work.filter(({ input }) => input.source.type === "url");
  for (let start = 0; start < files.length; start += batchSize) {
    if (signal?.aborted === true) return;
    const batch = files.slice(start, start + batchSize);
    const form = new FormData();
    const loaded = await Promise.all(
      batch.map(async ({ index, input }) => {
        if (input.source.type !== "file") return { index, error: undefined, bytes: undefined };
        try {
          return { index, bytes: await readFile(input.source.path), error: undefined };
        } catch (error) {
          return { index, bytes: undefined, error: error instanceof Error ? error.message : String(error) };
        }
      }),
    );
    const sent: number[] = [];
    loaded.forEach(({ index, bytes, error }, position) => {
      const input = batch[position]?.input;
      if (bytes === undefined || input === undefined || input.source.type !== "file") {
        report(index, {
          status: "failed",
          error: { code: "invalid_request", message: `Cannot read the file: ${error}.` },
        });
        return;
      }
      form.append("files", new File([new Uint8Array(bytes)], path.basename(input.source.path)));
      form.append("metadata", JSON.stringify(withSource(input.metadata)));
      sent.push(index);
    });
    if (sent.length === 0) continue;
    const answer = await call({ body: form });
    for (const [position, index] of sent.entries()) report(index, remoteOutcome(answer[position]));
  }
  for (let start = 0; start < urls.length; start += batchSize) {
    if (signal?.aborted === true) return;
    const batch = urls.slice(start, start + batchSize);
    const body = {
      urls: batch.map(({ input }) => ({
        url: input.source.type === "url" ? input.source.url : "",
        metadata: withSource(input.metadata),
      })),
    };
    const answer = await call({
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    for (const [position, { index }] of batch.entries()) report(index, remoteOutcome(answer[position]));
  }
}

/** The summary as printed: counts and rate, then every failure. */
export function formatSummary(summary: IngestSummary): string {
  const rate = summary.seconds > 0 ? summary.total / summary.seconds : 0;
  const lines = [
    `Ingested ${summary.total} items in ${summary.seconds.toFixed(1)} s (${rate.toFixed(1)} items/s): ` +
      `${summary.stored} stored, ${summary.skipped} already stored, ${summary.failed} failed.`,
  ];
  if (summary.failures.length > 0) {
    lines.push("Failures:");
    for (const failure of summary.failures)
      lines.push(`  ${failure.name}: ${failure.message} [${failure.code}]`);
  }
  return `${lines.join("\n")}\n`;
}

interface IngestFlags {
  url?: string;
  tenant?: string;
  metadata?: ImageMetadata;
  tags?: string[];
  title?: string;
  source: string;
  recursive: boolean;
  progress: boolean;
  json: boolean;
  batch: number;
}

function jsonObject(value: string): ImageMetadata {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError(
      `--metadata takes a JSON object; got ${JSON.stringify(value.slice(0, 80))}.`,
    );
  }
  try {
    return parseImageMetadata({ value: parsed, maxBytes: DEFAULT_METADATA_BYTES });
  } catch (error) {
    throw new InvalidArgumentError(error instanceof Error ? error.message : String(error));
  }
}

function progressBar(enabled: boolean): { update(progress: IngestProgress): void; stop(): void } {
  if (!enabled || process.stderr.isTTY !== true) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    stream: process.stderr,
    format:
      "ingest [{bar}] {value}/{total} | {rate} items/s | ETA {eta_formatted} | stored {stored} skipped {skipped} failed {failed}",
    hideCursor: true,
    etaBuffer: 50,
  });
  const started = performance.now();
  let running = false;
  return {
    update(progress) {
      const payload = {
        rate: (progress.done / Math.max(0.001, (performance.now() - started) / 1000)).toFixed(1),
        stored: progress.stored,
        skipped: progress.skipped,
        failed: progress.failed,
      };
      if (!running) {
        bar.start(progress.total, progress.done, payload);
        running = true;
      } else {
        bar.update(progress.done, payload);
      }
    },
    stop() {
      if (running) bar.stop();
    },
  };
}

/** Adds `ingest` to the `loupe` program. */
export function registerIngestCommand(program: Command): void {
  program
    .command("ingest")
    .description(
      "ingest images from files, directories, URLs and JSONL manifests (resumable: stored items are skipped)",
    )
    .argument("<inputs...>", "image files, directories, http(s) URLs or .jsonl manifests")
    .option(
      "--url <base>",
      "send to a running Loupe (e.g. http://127.0.0.1:8080) instead of working in-process",
    )
    .option("--tenant <tenant>", "tenant to ingest for, in-process only (default: LOUPE_DEFAULT_TENANT)")
    .option("--metadata <json>", "metadata of every item without its own (JSON object)", jsonObject)
    .option("--tags <tags>", "comma-separated tags of every item", listOption)
    .option("--title <title>", "title of every item")
    .option("--source <source>", "record source of items whose metadata names none", "cli")
    .option("--no-recursive", "do not descend into subdirectories")
    .option("--no-progress", "no progress bar")
    .option("--json", "print the summary as JSON", false)
    .option("--batch <n>", "files per request with --url", wholeNumber("--batch", { min: 1 }), 16)
    .action(async (inputs: string[], flags: IngestFlags) => {
      const extra: ImageMetadata = {
        ...flags.metadata,
        ...(flags.tags === undefined ? {} : { tags: flags.tags }),
        ...(flags.title === undefined ? {} : { title: flags.title }),
      };
      const metadata = Object.keys(extra).length === 0 ? undefined : jsonObject(JSON.stringify(extra));
      const bar = progressBar(flags.progress && !flags.json);
      const abort = new AbortController();
      const onSignal = () => abort.abort();
      process.once("SIGINT", onSignal);
      let summary: IngestSummary;
      try {
        if (flags.url !== undefined) {
          if (flags.tenant !== undefined) {
            throw new ValidationError(
              "--tenant applies in-process only; with --url the server decides the tenant.",
            );
          }
          summary = await runIngest({
            inputs,
            target: { kind: "remote", url: flags.url, batchSize: flags.batch },
            metadata,
            source: flags.source,
            recursive: flags.recursive,
            onProgress: bar.update,
            signal: abort.signal,
          });
        } else {
          summary = await runLocal({ inputs, flags, metadata, onProgress: bar.update, signal: abort.signal });
        }
      } finally {
        bar.stop();
        process.off("SIGINT", onSignal);
      }
      process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
      if (abort.signal.aborted) {
        process.stderr.write("Interrupted: run the same command again to ingest what is missing.\n");
      }
      if (summary.failed > 0 || abort.signal.aborted) process.exitCode = 1;
    });
}

async function runLocal({
  inputs,
  flags,
  metadata,
  onProgress,
  signal,
}: {
  inputs: string[];
  flags: IngestFlags;
  metadata: ImageMetadata | undefined;
  onProgress: (progress: IngestProgress) => void;
  signal: AbortSignal;
}): Promise<IngestSummary> {
  // Imported on use, like `serve`: the store pulls in the Milvus SDK.
  const { openLocalServices } = await import("../local-services.ts");
  const services = await openLocalServices({ env: process.env });
  try {
    const { config, images: ingester, videos: videoIngester } = services;
    const tenant = flags.tenant ?? config.defaultTenant;
    assertValidTenant(tenant);
    const { ingestVideoFiles } = await import("../../ingest/video-ingest.ts");
    return await runIngest({
      inputs,
      target: { kind: "local", ingester, tenant, maxMetadataBytes: config.maxMetadataBytes },
      metadata,
      source: flags.source,
      recursive: flags.recursive,
      videos: (request) =>
        ingestVideoFiles({ ingester: videoIngester, tenant, source: flags.source, signal, ...request }),
      onProgress,
      signal,
    });
  } finally {
    await services.close();
  }
}
