/**
 * `loupe ingest --url`: the collected images sent to a running Loupe through the HTTP client, in
 * batches (files as uploads, URLs for the server to fetch), each item's outcome reported as it comes
 * back; a batch the server runs as a job is followed until it ends. A batch refused for a reason that
 * passes (503 `not_ready` while the server's store restarts, 503 `overloaded`, 429), and the items a
 * failed job left pending, are sent again after the server's `Retry-After` (see `retry.ts`).
 */
import type { IngestItemResult, JobItem, LoupeClient } from "../../client/index.ts";
import { readUpload } from "../../client/index.ts";
import { AppError } from "../../errors.ts";
import type { ImageIngestItem, ImageMetadata } from "../../ingest/image-ingest.ts";
import type { JobItemOutcome } from "../../ingest/jobs.ts";
import { failureOf, isTransient, type Retrier } from "./retry.ts";

/** Options of {@link ingestRemote}. */
export interface IngestRemoteOptions {
  client: LoupeClient;
  /** The images, by their position among the collected inputs. */
  work: ReadonlyArray<{ index: number; input: ImageIngestItem }>;
  /** Record source of items whose metadata names none. */
  source: string;
  /** Files or URLs per request. */
  batchSize: number;
  report: (index: number, outcome: JobItemOutcome) => void;
  /** Retries of batches refused for a reason that passes. */
  retrier: Retrier;
  signal?: AbortSignal;
}

/** Why items a failed job left pending are sent again. */
const PENDING_AFTER_JOB = new AppError(
  "not_ready",
  503,
  "The server's job ended before these items were done.",
);

/** An item of the server's answer as the summary counts it. */
function outcomeOf(item: IngestItemResult | JobItem | undefined): JobItemOutcome {
  if (item === undefined) {
    return {
      status: "failed",
      error: { code: "bad_response", message: "The server did not answer for this item." },
    };
  }
  if (item.status === "pending") {
    return {
      status: "failed",
      error: { code: "not_ingested", message: "The job ended before this item; run the command again." },
      id: item.id,
    };
  }
  if (item.status === "failed") {
    return { status: "failed", error: item.error ?? { code: "failed", message: "failed" }, id: item.id };
  }
  return { status: item.status, id: item.id ?? "" };
}

/**
 * Sends the items in batches and reports each one's outcome; stops between batches, or mid-request,
 * when `signal` aborts (the items not answered yet are not reported).
 *
 * @throws the client's errors: the server refused a batch as a whole, or cannot be reached.
 */
export async function ingestRemote({
  client,
  work,
  source,
  batchSize,
  report,
  retrier,
  signal,
}: IngestRemoteOptions): Promise<void> {
  const withSource = (metadata: ImageMetadata | undefined): ImageMetadata => ({ source, ...metadata });
  /** Sends a batch until every item has an outcome, retrying what a passing failure left undone. */
  const send = async <Entry extends { index: number }>(
    batch: readonly Entry[],
    request: (entries: readonly Entry[]) => Parameters<LoupeClient["ingestImages"]>[0],
  ): Promise<void> => {
    let pending = batch;
    while (pending.length > 0) {
      if (retrier.gaveUp !== undefined) {
        for (const { index } of pending) report(index, { status: "failed", error: { ...retrier.gaveUp } });
        return;
      }
      let failure: AppError;
      try {
        const answer = await client.ingestImages(request(pending), { signal });
        const job = answer.kind === "job" ? await client.waitForJob(answer.job.id, { signal }) : undefined;
        const answered: Array<IngestItemResult | JobItem> =
          answer.kind === "items" ? answer.items : (job?.items ?? []);
        const items = new Map(answered.map((item) => [item.index, item]));
        // Items a job left pending are sent again when the job ended for a reason that passes.
        const jobFailure =
          job?.error === undefined ? PENDING_AFTER_JOB : new AppError(job.error.code, 503, job.error.message);
        const retryPending = isTransient(jobFailure);
        const left: Entry[] = [];
        for (const [position, entry] of pending.entries()) {
          const item = items.get(position);
          if (item?.status === "pending" && retryPending) left.push(entry);
          else report(entry.index, outcomeOf(item));
        }
        if (left.length < pending.length) retrier.progressed();
        pending = left;
        if (pending.length === 0) return;
        failure = jobFailure;
      } catch (error) {
        if (!isTransient(error)) throw error;
        failure = error;
      }
      if (!(await retrier.wait(failure, pending.length))) {
        if (signal?.aborted === true) return;
        const reason = retrier.gaveUp ?? failureOf(failure);
        for (const { index } of pending) report(index, { status: "failed", error: { ...reason } });
        return;
      }
    }
  };
  const files = work.flatMap(({ index, input }) =>
    input.source.type === "file" ? [{ index, path: input.source.path, metadata: input.metadata }] : [],
  );
  const urls = work.flatMap(({ index, input }) =>
    input.source.type === "url" ? [{ index, url: input.source.url, metadata: input.metadata }] : [],
  );
  try {
    for (let start = 0; start < files.length; start += batchSize) {
      if (signal?.aborted === true) return;
      const read = await Promise.all(
        files.slice(start, start + batchSize).map(async (entry) => {
          try {
            return { ...entry, file: await readUpload(entry.path) };
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            report(entry.index, {
              status: "failed",
              error: { code: "invalid_request", message: `Cannot read the file: ${message}.` },
            });
            return undefined;
          }
        }),
      );
      const sent = read.filter((entry) => entry !== undefined);
      if (sent.length === 0) continue;
      await send(sent, (entries) => ({
        files: entries.map(({ file, metadata }) => ({ file, metadata: withSource(metadata) })),
      }));
    }
    for (let start = 0; start < urls.length; start += batchSize) {
      if (signal?.aborted === true) return;
      await send(urls.slice(start, start + batchSize), (entries) => ({
        urls: entries.map(({ url, metadata }) => ({ url, metadata: withSource(metadata) })),
      }));
    }
  } catch (error) {
    // An interrupt aborts the request in flight; the summary then shows what was done.
    if (signal?.aborted === true) return;
    throw error;
  }
}
