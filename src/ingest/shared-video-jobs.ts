/**
 * Video jobs on the shared queue (`shared-jobs.ts`): what an item holds, and the runner a worker runs
 * them with.
 *
 * A video's bytes wait in the blob store, not in its item's row as an image's do: a video may be
 * `LOUPE_VIDEO_MAX_BYTES` (500 MB by default, up to 4 GB), past what a `bytea` value (1 GB) and a
 * JavaScript string of its hex form hold, and every worker and API replica shares the blob store already
 * (workers write the keyframes the API serves). The ingest stores the original under the same key
 * anyway, so the wait costs no second copy. The upload is referenced by a label of its item,
 * `<tenant>/<job id>.<index>`, which the orphan sweep keeps as live (it names no record); the worker
 * releases it once the video is stored or found stored, and keeps it while the item has failed, so a
 * resume can run it again, as an image's bytes are kept in a failed row.
 */

import { AppError, NotFoundError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { BlobStore } from "../media/blob-store.ts";
import { type JobItemOutcome, toJobError } from "./jobs.ts";
import type { NewJobItem } from "./pg-job-store.ts";
import type { SharedJobRunner } from "./shared-jobs.ts";
import { type VideoIngester, videoJobOutcome } from "./video-ingest.ts";

/** A video of a request, as the route hands it to {@link SharedJobs.createVideos}. */
export interface SharedVideoItem {
  /** What the item is, for people: `{ filename }` or `{ url }`. */
  describe: { filename: string } | { url: string };
  /** How the video arrived (`upload`, `url`, or the caller's `metadata.source`). */
  source: string;
  /** The video; absent for an item refused before ingest. */
  bytes?: Uint8Array;
  /** MIME type of the bytes, as the probe named the container (the original is served with it). */
  contentType?: string;
  /** Why the item was refused before ingest (unreadable, unsupported type): recorded failed, not queued. */
  rejected?: AppError;
}

/** A video item's input, as its row holds it (JSON). */
export interface VideoJobInput {
  /** The blob the upload waits in, and the label holding it. */
  video: { sha256: string; owner: string };
  /** File name or URL, kept in metadata. */
  filename: string;
  source: string;
  metadata: Record<string, unknown>;
  text: string;
}

/** The label that holds an item's upload in the blob store until the item is done. */
export function stagedVideoOwner({
  tenant,
  jobId,
  index,
}: {
  tenant: string;
  jobId: string;
  index: number;
}): string {
  return `${tenant}/${jobId}.${index}`;
}

/**
 * Writes each video's bytes to the blob store under its item's label and returns the job's rows; a
 * refused item becomes a failed row. `unstage` drops the labels again (when the job could not be recorded).
 */
export async function stageVideoItems({
  blobs,
  tenant,
  jobId,
  items,
  metadata,
  text,
}: {
  blobs: BlobStore;
  tenant: string;
  jobId: string;
  items: readonly SharedVideoItem[];
  metadata: Record<string, unknown>;
  text: string;
}): Promise<{ rows: NewJobItem[]; unstage(): Promise<void> }> {
  const staged: Array<{ sha256: string; owner: string }> = [];
  const unstage = async () => {
    for (const { sha256, owner } of staged) await blobs.release({ sha256, owner }).catch(() => undefined);
  };
  const rows: NewJobItem[] = [];
  try {
    for (const [index, item] of items.entries()) {
      const describe: Record<string, string> = { ...item.describe };
      if (item.rejected !== undefined || item.bytes === undefined) {
        const error =
          item.rejected ??
          new AppError("invalid_request", 400, "The video could not be read; send it again.");
        rows.push({ describe, input: {}, error: toJobError(error) });
        continue;
      }
      const owner = stagedVideoOwner({ tenant, jobId, index });
      const { sha256 } = await blobs.put({
        bytes: item.bytes,
        contentType: item.contentType ?? "application/octet-stream",
        owner,
      });
      staged.push({ sha256, owner });
      const input: VideoJobInput = {
        video: { sha256, owner },
        filename: "filename" in item.describe ? item.describe.filename : item.describe.url,
        source: item.source,
        metadata,
        text,
      };
      rows.push({ describe, input: { ...input } });
    }
  } catch (error) {
    await unstage();
    throw error;
  }
  return { rows, unstage };
}

/** Reads a video item's input back from its row; `undefined` when the row holds nothing runnable. */
function videoInputOf(row: { input: Record<string, unknown> }): VideoJobInput | undefined {
  const { video, filename, source, metadata, text } = row.input as Partial<
    Record<keyof VideoJobInput, unknown>
  >;
  const blob = video as { sha256?: unknown; owner?: unknown } | undefined;
  if (
    typeof blob?.sha256 !== "string" ||
    typeof blob.owner !== "string" ||
    typeof filename !== "string" ||
    typeof source !== "string" ||
    typeof text !== "string" ||
    typeof metadata !== "object" ||
    metadata === null
  ) {
    return undefined;
  }
  return {
    video: { sha256: blob.sha256, owner: blob.owner },
    filename,
    source,
    metadata: metadata as Record<string, unknown>,
    text,
  };
}

/**
 * The worker's runner of video jobs: one video at a time, read from the blob store and ingested with
 * {@link VideoIngester.ingest} (idempotent: ids come from the tenant, the content hash and the model, so
 * a second run finds the video stored). A video the ingest refuses (4xx) fails its item; a server failure
 * leaves the item unsettled, so the worker retries it after its backoff.
 */
export function createVideoJobRunner({
  videos,
  blobs,
  logger,
}: {
  videos: VideoIngester;
  blobs: BlobStore;
  logger?: Logger;
}): SharedJobRunner<VideoJobInput> {
  return {
    inputOf: videoInputOf,
    // A video takes seconds to minutes: each claim keeps one, and the others go to whichever worker is free.
    batchLimit: 1,
    async run({ head, work, signal, report }) {
      for (const { index, input } of work) {
        // What is not started goes back to the queue with the worker's other unsettled items.
        if (signal.aborted) return;
        // A video may take minutes: the log says which one a worker holds, should it die meanwhile.
        logger?.info({ jobId: head.id, index, sha256: input.video.sha256 }, "ingesting a video of a job");
        let outcome: JobItemOutcome;
        try {
          const bytes = await readStaged(blobs, input);
          const video = await videos.ingest({
            tenant: head.tenant,
            bytes,
            filename: input.filename,
            source: input.source,
            metadata: input.metadata,
            text: input.text,
            signal,
          });
          // The video's own reference holds the original now; a crash before this only leaves the label.
          await blobs
            .release({ sha256: input.video.sha256, owner: input.video.owner })
            .catch((error: unknown) =>
              logger?.warn({ err: error, jobId: head.id, index }, "releasing a video's upload failed"),
            );
          outcome = videoJobOutcome(video);
        } catch (error) {
          if (signal.aborted) return;
          if (!(error instanceof AppError) || error.status >= 500) {
            logger?.warn(
              { err: error, jobId: head.id, index },
              "a video failed for the server; it will be retried",
            );
            continue;
          }
          outcome = { status: "failed", error: toJobError(error) };
        }
        report(index, outcome);
      }
    },
  };
}

async function readStaged(blobs: BlobStore, input: VideoJobInput): Promise<Buffer> {
  const { sha256 } = input.video;
  try {
    return await (await blobs.get(sha256)).bytes();
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    throw new NotFoundError(
      `The video's upload (blob ${sha256}) is no longer in the blob store; send the video again.`,
      { code: "upload_missing", context: { sha256 } },
    );
  }
}
