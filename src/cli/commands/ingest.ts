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
import { type Command, InvalidArgumentError } from "commander";
import type { FetchLike } from "../../client/index.ts";
import {
  type ImageIngester,
  type ImageIngestItem,
  type ImageMetadata,
  parseImageMetadata,
} from "../../ingest/image-ingest.ts";
import type { JobItemOutcome } from "../../ingest/jobs.ts";
import { assertValidTenant } from "../../store/filter.ts";
import { callServer, refuseTenantWithUrl } from "../call-server.ts";
import { listOption, wholeNumber } from "../command-inputs.ts";
import { collectInputs, DEFAULT_METADATA_BYTES, type IngestFailure } from "../ingest/collect-inputs.ts";
import { createIngestProgressBar, type IngestProgress } from "../ingest/progress-bar.ts";
import { ingestRemote } from "../ingest/remote-ingest.ts";
import { failureOf, isTransient, Retrier, type RetryNotice, type RetryPolicy } from "../ingest/retry.ts";

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
      fetch?: FetchLike;
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
  /** How items a passing failure left undone are retried (a store restarting, a full queue). */
  retry?: RetryPolicy;
  /** Called before each retry, to log it. */
  onRetry?: (notice: RetryNotice) => void;
  signal?: AbortSignal;
}

function failureOfOutcome(name: string, outcome: JobItemOutcome): IngestFailure | undefined {
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
  retry,
  onRetry,
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
    const failure = failureOfOutcome(name, outcome);
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

  const retrier = new Retrier({ policy: retry, onRetry, signal });
  if (target.kind === "local") {
    await ingestLocal({ target, work, source, report, retrier, signal });
  } else {
    const { url, fetch, batchSize = 16 } = target;
    await callServer({ url, fetch, action: "Ingest", doing: "ingest" }, (client) =>
      ingestRemote({ client, work, source, batchSize, report, retrier, signal }),
    );
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

/**
 * Ingests in this process; when the store fails as a whole for a while (Milvus Lite restarting), the
 * items not done yet are sent again (see {@link Retrier}), and once retries run out they are reported
 * failed with the reason.
 */
async function ingestLocal({
  target,
  work,
  source,
  report,
  retrier,
  signal,
}: {
  target: Extract<IngestTarget, { kind: "local" }>;
  work: ReadonlyArray<{ index: number; input: ImageIngestItem }>;
  source: string;
  report: (index: number, outcome: JobItemOutcome) => void;
  retrier: Retrier;
  signal: AbortSignal | undefined;
}): Promise<void> {
  let remaining = work;
  while (remaining.length > 0) {
    const reported = new Set<number>();
    try {
      await target.ingester.ingest({
        tenant: target.tenant,
        items: remaining,
        defaultSource: source,
        signal,
        report: (index, outcome) => {
          reported.add(index);
          report(index, outcome);
        },
      });
      return;
    } catch (error) {
      remaining = remaining.filter((entry) => !reported.has(entry.index));
      if (!isTransient(error)) throw error;
      if (reported.size > 0) retrier.progressed();
      if (!(await retrier.wait(error, remaining.length))) {
        if (signal?.aborted === true) return;
        const failure = retrier.gaveUp ?? failureOf(error);
        for (const entry of remaining) report(entry.index, { status: "failed", error: { ...failure } });
        return;
      }
    }
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
      const bar = createIngestProgressBar({ enabled: flags.progress && !flags.json });
      const onRetry = (notice: RetryNotice) => {
        process.stderr.write(
          `\nRetrying ${notice.items} item${notice.items === 1 ? "" : "s"} in ${(notice.delayMs / 1000).toFixed(1)} s (retry ${notice.attempt} of ${notice.of}): ${notice.message} [${notice.code}]\n`,
        );
      };
      const abort = new AbortController();
      const onSignal = () => abort.abort();
      process.once("SIGINT", onSignal);
      let summary: IngestSummary;
      try {
        if (flags.url !== undefined) {
          refuseTenantWithUrl(flags.tenant);
          summary = await runIngest({
            inputs,
            target: { kind: "remote", url: flags.url, batchSize: flags.batch },
            metadata,
            source: flags.source,
            recursive: flags.recursive,
            onProgress: bar.update,
            onRetry,
            signal: abort.signal,
          });
        } else {
          summary = await runLocal({
            inputs,
            flags,
            metadata,
            onProgress: bar.update,
            onRetry,
            signal: abort.signal,
          });
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
  onRetry,
  signal,
}: {
  inputs: string[];
  flags: IngestFlags;
  metadata: ImageMetadata | undefined;
  onProgress: (progress: IngestProgress) => void;
  onRetry: (notice: RetryNotice) => void;
  signal: AbortSignal;
}): Promise<IngestSummary> {
  // Imported on use, like `serve`: the store pulls in the Milvus SDK.
  const { withLocalServices } = await import("../local-services.ts");
  return withLocalServices(
    { env: process.env },
    async ({ config, images: ingester, videos: videoIngester }) => {
      const tenant = flags.tenant ?? config.defaultTenant;
      assertValidTenant(tenant);
      const { ingestVideoFiles } = await import("../../ingest/video-ingest.ts");
      return runIngest({
        inputs,
        target: { kind: "local", ingester, tenant, maxMetadataBytes: config.maxMetadataBytes },
        metadata,
        source: flags.source,
        recursive: flags.recursive,
        videos: (request) =>
          ingestVideoFiles({ ingester: videoIngester, tenant, source: flags.source, signal, ...request }),
        onProgress,
        onRetry,
        signal,
      });
    },
  );
}
