/**
 * `loupe ingest --url`: the collected images sent to a running Loupe through the HTTP client, in
 * batches (files as uploads, URLs for the server to fetch), each item's outcome reported as it comes
 * back; a batch the server runs as a job is followed until it ends.
 */
import type { IngestItemResult, JobItem, LoupeClient } from "../../client/index.ts";
import { readUpload } from "../../client/index.ts";
import type { ImageIngestItem, ImageMetadata } from "../../ingest/image-ingest.ts";
import type { JobItemOutcome } from "../../ingest/jobs.ts";

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
  signal?: AbortSignal;
}

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
  signal,
}: IngestRemoteOptions): Promise<void> {
  const withSource = (metadata: ImageMetadata | undefined): ImageMetadata => ({ source, ...metadata });
  const send = async (
    batch: readonly number[],
    request: Parameters<LoupeClient["ingestImages"]>[0],
  ): Promise<void> => {
    const answer = await client.ingestImages(request, { signal });
    const items = new Map((await client.itemsOf(answer, { signal })).map((item) => [item.index, item]));
    for (const [position, index] of batch.entries()) report(index, outcomeOf(items.get(position)));
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
      await send(
        sent.map(({ index }) => index),
        { files: sent.map(({ file, metadata }) => ({ file, metadata: withSource(metadata) })) },
      );
    }
    for (let start = 0; start < urls.length; start += batchSize) {
      if (signal?.aborted === true) return;
      const batch = urls.slice(start, start + batchSize);
      await send(
        batch.map(({ index }) => index),
        { urls: batch.map(({ url, metadata }) => ({ url, metadata: withSource(metadata) })) },
      );
    }
  } catch (error) {
    // An interrupt aborts the request in flight; the summary then shows what was done.
    if (signal?.aborted === true) return;
    throw error;
  }
}
