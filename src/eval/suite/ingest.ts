/**
 * The ingest step of a run: stores a suite's corpus in Loupe through its HTTP API (images in chunks,
 * videos one by one, then triples, whose images may be corpus images already stored) and maps the
 * stored ids back to the suite's ids. An item Loupe refuses is recorded as a failure, not thrown.
 */
import type { LoupeClient } from "./client.ts";
import { IdMap } from "./id-map.ts";
import { imageValue } from "./image-refs.ts";
import type { RunMeta, RunProgress } from "./results.ts";
import type { Suite } from "./suite.ts";

/** Images sent per `/v1/images` request. */
const IMAGE_CHUNK = 32;

/** Options of {@link ingestCorpus}. */
export interface IngestCorpusOptions {
  suite: Suite;
  client: LoupeClient;
  onProgress?: (progress: RunProgress) => void;
}

/** What {@link ingestCorpus} stored. */
export interface IngestedCorpus {
  /** Stored ids ↔ the suite's ids. */
  ids: IdMap;
  /** Items Loupe did not store, with its reason. */
  failures: RunMeta["ingestFailures"];
  /** Wall-clock seconds, unrounded. */
  seconds: number;
}

/**
 * Ingests the suite's images, videos and triples (see the module comment). Corpus metadata is kept only
 * for suites in Loupe's own format; captions become the images' titles.
 *
 * @throws the client's errors when Loupe cannot be reached.
 */
export async function ingestCorpus({
  suite,
  client,
  onProgress,
}: IngestCorpusOptions): Promise<IngestedCorpus> {
  const started = performance.now();
  const ids = new IdMap();
  const failures: RunMeta["ingestFailures"] = [];
  const { images, videos, triples } = suite.corpus;
  const total = images.length + videos.length + triples.length;
  let ingested = 0;
  const step = (count: number) => {
    ingested += count;
    onProgress?.({ phase: "ingest", done: ingested, total });
  };
  onProgress?.({ phase: "ingest", done: 0, total });

  const keepMetadata = suite.format === "loupe-jsonl";
  const imageItems = images.map((image) => ({
    path: image.path,
    metadata: {
      ...(keepMetadata ? image.metadata : {}),
      ...(image.caption === undefined ? {} : { title: image.caption.slice(0, 512) }),
    },
  }));
  for (let start = 0; start < imageItems.length; start += IMAGE_CHUNK) {
    const chunk = imageItems.slice(start, start + IMAGE_CHUNK);
    const outcomes = await client.ingestImages(chunk);
    for (const outcome of outcomes) {
      const image = images[start + outcome.index];
      if (image === undefined) continue;
      if (outcome.id !== undefined && outcome.status !== "failed") ids.add(image.id, outcome.id);
      else failures.push({ kind: "image", id: image.id, message: outcome.error?.message ?? "failed" });
    }
    step(chunk.length);
  }
  for (const video of videos) {
    const [outcome] = await client.ingestVideos([{ path: video.path }]);
    if (outcome?.id !== undefined && outcome.status !== "failed") ids.add(video.id, outcome.id);
    else failures.push({ kind: "video", id: video.id, message: outcome?.error?.message ?? "failed" });
    step(1);
  }
  if (triples.length > 0) {
    const items = [];
    for (const triple of triples) {
      const stored = triple.image.kind === "corpus" ? ids.stored(triple.image.id) : undefined;
      items.push({
        image: stored ?? (await imageValue({ ref: triple.image, images })),
        question: triple.question,
        answer: triple.answer,
        ...(keepMetadata ? { metadata: triple.metadata } : {}),
      });
    }
    const outcomes = await client.ingestTriples(items);
    for (const outcome of outcomes) {
      const triple = triples[outcome.index];
      if (triple === undefined) continue;
      if (outcome.id !== undefined && outcome.status !== "failed") ids.add(triple.id, outcome.id);
      else failures.push({ kind: "triple", id: triple.id, message: outcome.error?.message ?? "failed" });
    }
    step(triples.length);
  }
  return { ids, failures, seconds: (performance.now() - started) / 1000 };
}
