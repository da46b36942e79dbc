/**
 * The video pipeline: bytes → temp file under the data dir → probe (limits, container allow-list) →
 * frames sampled at a fixed rate and embedded as they stream out of ffmpeg → segments (shot changes and
 * fixed windows) → one embedding per segment from the pack's video embedder → the original and one
 * keyframe per segment as blobs → the text of each keyframe read by the OCR engine, when there is one →
 * `video_segment` records upserted with deterministic ids.
 *
 * A video has its own id (`vid_…`, from the tenant, the sha256 of its bytes and the model id) stored on
 * every segment as `videoId`. Ingesting the same bytes again finds the complete set of segments and
 * does nothing; an interrupted ingest (some segments missing) is redone, and upserts replace rows.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import type { Config } from "../config.ts";
import { AppError, MediaError, NotFoundError, ValidationError } from "../errors.ts";
import type { ImageDetections, ModelPack } from "../inference/index.ts";
import { l2Normalize, resampleIndices } from "../inference/index.ts";
import type { Logger } from "../logger.ts";
import { type BlobStore, blobRef, claimOwner, parseBlobRef, sha256Hex } from "../media/blob-store.ts";
import { defaultVideoLimits, type VideoLimits } from "../media/ffmpeg.ts";
import type { OcrReading } from "../media/ocr-lines.ts";
import { type VideoCoverage, videoCoverage } from "../media/video-coverage.ts";
import { extractFrameAt, sampleVideoFrames } from "../media/video-frames.ts";
import { probeVideo, type VideoProbe } from "../media/video-probe.ts";
import type { LoupeMetrics } from "../metrics/metrics.ts";
import type { StoredVideoSegment, VectorStore, VideoSegmentRecord } from "../store/index.ts";
import { recordId } from "../store/index.ts";
import type { IngestAnnotator } from "./image-ingest.ts";
import { type IngestOcr, ocrRecordFields, readImageText } from "./ingest-ocr.ts";
import type { JobItemOutcome } from "./jobs.ts";
import {
  deleteRegionsOf,
  type IngestRegions,
  REGIONS_MARKER,
  regionRecords,
  regionsMarker,
  replaceRegions,
} from "./regions.ts";
import { segmentVideo, type VideoSegmentSpan } from "./segmenter.ts";
import { assertStorableText, toStorableText } from "./storable-text.ts";
import { type AddedReference, type ReleaseReference, releaseReferences } from "./store-records.ts";

/** Prefix of video ids. */
export const VIDEO_ID_PREFIX = "vid_";
/** Video ids: `vid_` and 32 hex characters. */
export const VIDEO_ID_PATTERN = /^vid_[0-9a-f]{32}$/;

/** Content types accepted for videos, by upload or URL. */
export const VIDEO_CONTENT_TYPES = [
  "video/mp4",
  "video/webm",
  "video/quicktime",
  "video/x-matroska",
  "video/x-msvideo",
] as const;

/** Most segments one video may have (the store's query limit bounds how many can be read back). */
export const MAX_SEGMENTS_PER_VIDEO = 4096;

/**
 * The id of a video: `vid_` and the start of a sha256 over the tenant, the video's content hash and the
 * model id, hashed like the store's `recordId()` ids.
 */
export function videoId({
  tenant,
  contentSha256,
  modelId,
}: {
  tenant: string;
  contentSha256: string;
  modelId: string;
}): string {
  const parts = ["loupe-record-id-v1", "video", tenant, contentSha256.toLowerCase(), modelId];
  const digest = createHash("sha256").update(JSON.stringify(parts), "utf8").digest("hex");
  return `${VIDEO_ID_PREFIX}${digest.slice(0, 32)}`;
}

/** Settings of the video pipeline. */
export interface VideoIngestSettings {
  /** Frames sampled per second (`LOUPE_VIDEO_SAMPLE_FPS`). */
  sampleFps: number;
  /** Longest segment, seconds (`LOUPE_VIDEO_SEGMENT_SECONDS`). */
  segmentSeconds: number;
  /** Cosine distance between consecutive frames that starts a new shot (`LOUPE_VIDEO_SHOT_THRESHOLD`). */
  shotThreshold: number;
  /** Largest video accepted, bytes (`LOUPE_VIDEO_MAX_BYTES`). */
  maxBytes: number;
  limits: VideoLimits;
  /** Where uploads are written before ffmpeg reads them (under the data dir). */
  tempDir: string;
}

/** Settings used when none are given, apart from `tempDir`. */
export const defaultVideoIngestSettings: Omit<VideoIngestSettings, "tempDir"> = {
  sampleFps: 2,
  segmentSeconds: 2,
  shotThreshold: 0.27,
  maxBytes: 500 * 1024 * 1024,
  limits: defaultVideoLimits,
};

/** The video settings of a configuration; uploads are written to `<LOUPE_DATA_DIR>/tmp`. */
export function videoIngestSettings({
  config,
}: {
  config: Pick<
    Config,
    | "dataDir"
    | "videoSampleFps"
    | "videoSegmentSeconds"
    | "videoShotThreshold"
    | "videoMaxBytes"
    | "videoMaxDurationS"
    | "videoMaxPixels"
    | "videoMaxStreams"
    | "videoMaxFrames"
    | "videoTimeoutMs"
  >;
}): VideoIngestSettings {
  return {
    sampleFps: config.videoSampleFps,
    segmentSeconds: config.videoSegmentSeconds,
    // 2 is the largest cosine distance, so nothing exceeds it: detection off.
    shotThreshold: config.videoShotThreshold >= 2 ? Number.POSITIVE_INFINITY : config.videoShotThreshold,
    maxBytes: config.videoMaxBytes,
    limits: {
      ...defaultVideoLimits,
      maxDurationSeconds: config.videoMaxDurationS,
      maxPixels: config.videoMaxPixels,
      maxStreams: config.videoMaxStreams,
      maxFrames: config.videoMaxFrames,
      timeoutMs: config.videoTimeoutMs,
    },
    tempDir: path.join(config.dataDir, "tmp"),
  };
}

/** Arguments of {@link VideoIngester.ingest}. */
export interface IngestVideoRequest {
  /** The caller's tenant, from the server's identity of the caller. */
  tenant: string;
  bytes: Uint8Array;
  /** Original file name or URL, kept in metadata (never used as a path). */
  filename?: string;
  /** How the video arrived: `upload`, `url`, `cli`, or a caller-given source. */
  source: string;
  /** Caller metadata (already validated), stored on every segment. */
  metadata?: Record<string, unknown>;
  /** Searchable text (tags, title) stored on every segment. */
  text?: string;
  signal?: AbortSignal;
  /** Frames sampled so far, and about how many there will be. */
  onProgress?: (progress: { framesDone: number; framesExpected: number }) => void;
}

/** One stored segment, as reported to the caller. */
export interface IngestedSegment {
  id: string;
  startS: number;
  endS: number;
  keyframeRef: string;
}

/** Outcome of {@link VideoIngester.ingest}. */
export interface IngestedVideo {
  /** The video's id, `vid_…`. */
  id: string;
  /** `stored`: written now; `skipped`: every segment was stored already. */
  status: "stored" | "skipped";
  filename?: string;
  mediaRef: string;
  /** Seconds the segments cover: the declared duration, or for a truncated video the part that decoded. */
  durationSeconds: number;
  /**
   * Set when the video decoded to much less than its container declared (a file cut short): only the
   * decoded part was segmented and stored. See {@link videoCoverage}.
   */
  truncated?: { declaredDurationSeconds: number; decodedDurationSeconds: number };
  width: number;
  height: number;
  /** Frames sampled (0 when skipped). */
  frames: number;
  segments: IngestedSegment[];
  /** Time spent, ms: total and model inference (frames and segments). */
  timings: { totalMs: number; embedMs: number };
}

/** Options of {@link VideoIngester}. */
export interface VideoIngesterOptions {
  store: VectorStore;
  models: ModelPack;
  blobs: BlobStore;
  settings: VideoIngestSettings;
  /** Reads the text of every stored keyframe (`LOUPE_OCR=auto`); absent: no text is read. */
  ocr?: IngestOcr;
  /** Stores the objects found in every keyframe as `region` records (`LOUPE_REGIONS`); absent: none. */
  regions?: IngestRegions;
  logger?: Logger;
  /** Where each video's outcome is counted; nowhere when absent. */
  metrics?: Pick<LoupeMetrics, "countIngestItems">;
  /** Metadata for new segments from their embeddings and keyframes (classifiers applied at ingest). */
  annotate?: IngestAnnotator;
}

/** Frame embedding batches waiting for the vision tower at once while ffmpeg keeps decoding. */
const EMBED_BATCH = 16;

/** How often an ingest touches the temp file of the video it reads, so it never looks left behind. */
const TEMP_UPLOAD_TOUCH_MS = 60_000;

/**
 * How long a temp upload (`<tempDir>/video-….upload`) must have been untouched before an ingest removes
 * it as left by a process that died mid-video (killed, out of memory): a live ingest touches its own
 * every minute. Age, not owner, tells them apart, as the data dir may be shared by replicas.
 */
export const STALE_TEMP_UPLOAD_MS = 15 * 60_000;

/** Names of the temp uploads {@link VideoIngester} writes. */
const TEMP_UPLOAD_NAME = /^video-[0-9a-f]{24}\.upload$/;

/**
 * Removes the temp uploads under `dir` untouched for `olderThanMs` (what an ingest killed mid-video left:
 * a whole copy of the video), and returns their names. Never throws: a file it cannot remove stays for
 * the next ingest to try.
 */
export async function removeStaleTempUploads({
  dir,
  olderThanMs = STALE_TEMP_UPLOAD_MS,
  now = Date.now,
  logger,
}: {
  dir: string;
  olderThanMs?: number;
  now?: () => number;
  logger?: Logger;
}): Promise<string[]> {
  const removed: string[] = [];
  try {
    for (const name of await readdir(dir)) {
      if (!TEMP_UPLOAD_NAME.test(name)) continue;
      const file = path.join(dir, name);
      const info = await stat(file).catch(() => undefined);
      if (info === undefined || now() - info.mtimeMs < olderThanMs) continue;
      await rm(file, { force: true });
      removed.push(name);
    }
  } catch (error) {
    logger?.warn({ err: error, dir }, "could not remove the uploads left by interrupted video ingests");
  }
  if (removed.length > 0) {
    logger?.info({ dir, files: removed }, "removed the uploads left by interrupted video ingests");
  }
  return removed;
}

/** A job item's outcome for an ingested video: its id, and its segments and duration as detail. */
export function videoJobOutcome(video: IngestedVideo): JobItemOutcome {
  return {
    status: video.status,
    id: video.id,
    detail: {
      segments: video.segments.length,
      durationSeconds: video.durationSeconds,
      ...(video.truncated === undefined ? {} : { truncated: video.truncated }),
    },
  };
}

/**
 * Writes the bytes to a fresh server-named file under `dir` (`video-<hex>.upload`), runs `task` on it,
 * removes the file. The file is touched every {@link TEMP_UPLOAD_TOUCH_MS} while `task` runs, and the
 * temp uploads a killed process left are removed first (see {@link removeStaleTempUploads}). Video
 * ingest and the pack switch's re-sampling read videos through it.
 */
export async function withTempUpload<T>(
  { dir, bytes, logger }: { dir: string; bytes: Uint8Array; logger?: Logger | undefined },
  task: (tempPath: string) => Promise<T>,
): Promise<T> {
  await mkdir(dir, { recursive: true });
  await removeStaleTempUploads({ dir, ...(logger === undefined ? {} : { logger }) });
  const tempPath = path.join(dir, `video-${randomBytes(12).toString("hex")}.upload`);
  const touch = setInterval(() => {
    const now = new Date();
    void utimes(tempPath, now, now).catch(() => undefined);
  }, TEMP_UPLOAD_TOUCH_MS);
  touch.unref();
  try {
    await writeFile(tempPath, bytes, { mode: 0o600, flag: "wx" });
    return await task(tempPath);
  } finally {
    clearInterval(touch);
    await rm(tempPath, { force: true });
  }
}

/**
 * Longest side of a keyframe taken for OCR: 1280 px keeps 12 px text of a 1080p screen recording
 * legible (about 8 px) while a keyframe stays around 100 kB of WebP.
 */
export const TEXT_KEYFRAME_MAX_SIDE = 1280;

/** Turns videos into `video_segment` records; also deletes them. */
export class VideoIngester {
  readonly #store: VectorStore;
  readonly #models: ModelPack;
  readonly #blobs: BlobStore;
  readonly #settings: VideoIngestSettings;
  readonly #logger: Logger | undefined;
  readonly #ocr: IngestOcr | undefined;
  readonly #annotate: IngestAnnotator | undefined;
  readonly #regions: IngestRegions | undefined;
  readonly #metrics: Pick<LoupeMetrics, "countIngestItems"> | undefined;

  constructor({
    store,
    models,
    blobs,
    settings,
    ocr,
    regions,
    logger,
    metrics,
    annotate,
  }: VideoIngesterOptions) {
    this.#annotate = annotate;
    this.#ocr = ocr;
    this.#regions = regions;
    this.#metrics = metrics;
    this.#store = store;
    this.#models = models;
    this.#blobs = blobs;
    this.#settings = settings;
    this.#logger = logger;
  }

  /** The settings in force. */
  get settings(): VideoIngestSettings {
    return this.#settings;
  }

  /**
   * Ingests one video. Nothing is stored unless the whole video was probed, decoded and embedded.
   *
   * @throws MediaError (4xx) for a refused, corrupt or oversized video, naming the limit and its setting.
   */
  async ingest(request: IngestVideoRequest): Promise<IngestedVideo> {
    try {
      const video = await this.#ingest(request);
      this.#metrics?.countIngestItems("video", video.status);
      return video;
    } catch (error) {
      this.#metrics?.countIngestItems("video", "failed");
      throw error;
    }
  }

  async #ingest(request: IngestVideoRequest): Promise<IngestedVideo> {
    const started = performance.now();
    const { tenant, bytes, source, metadata = {}, text = "", signal, onProgress } = request;
    const filename = request.filename === undefined ? undefined : toStorableText(request.filename);
    const settings = this.#settings;
    this.#checkSize(bytes);
    // Checked before any work, so a video the store could not keep fails at once, naming the field.
    assertStorableText(metadata, "metadata");
    assertStorableText(text, "metadata (title and tags)");
    assertStorableText(source, "metadata.source");
    const models = this.#models;
    const contentSha256 = sha256Hex(bytes);
    const id = videoId({ tenant, contentSha256, modelId: models.modelId });
    const mediaRef = blobRef(contentSha256);

    const existing = await videoSegmentsOf({ store: this.#store, tenant, videoId: id });
    const expected = existing[0]?.metadata.video as { segmentCount?: unknown } | undefined;
    if (existing.length > 0 && expected?.segmentCount === existing.length) {
      const video = existing[0]?.metadata.video as Record<string, unknown>;
      return {
        id,
        status: "skipped",
        ...(filename === undefined ? {} : { filename }),
        mediaRef,
        durationSeconds: Number(video.durationSeconds ?? 0),
        ...(video.truncated === true
          ? {
              truncated: {
                declaredDurationSeconds: Number(video.declaredDurationSeconds ?? 0),
                decodedDurationSeconds: Number(video.durationSeconds ?? 0),
              },
            }
          : {}),
        width: Number(video.width ?? 0),
        height: Number(video.height ?? 0),
        frames: 0,
        segments: existing.map((segment) => ({
          id: segment.id,
          startS: segment.startS,
          endS: segment.endS,
          keyframeRef: segment.keyframeRef,
        })),
        timings: { totalMs: performance.now() - started, embedMs: 0 },
      };
    }

    return this.#withTempFile(bytes, async (tempPath) => {
      const probe = await probeVideo({ path: tempPath, limits: settings.limits, signal });
      const analysed = await this.#analyse({ path: tempPath, probe, signal, onProgress });
      const { spans, segmentEmbeddings, keyframes, frames, coverage } = analysed;
      // What is stored is what decoded: a truncated video's facts name both spans.
      const durationSeconds = coverage.truncated ? coverage.decodedDurationSeconds : probe.durationSeconds;
      const truncated = coverage.truncated
        ? {
            declaredDurationSeconds: coverage.declaredDurationSeconds,
            decodedDurationSeconds: coverage.decodedDurationSeconds,
          }
        : undefined;
      if (truncated !== undefined) {
        this.#logger?.warn(
          { videoId: id, ...truncated, frames },
          "video decoded to less than its declared duration; storing the part that decoded",
        );
      }

      const textKeyframes = await this.#textKeyframes({ path: tempPath, probe, spans, keyframes, signal });
      const readings = await this.#readKeyframes({ keyframes: textKeyframes, signal });
      const found = await this.#detectKeyframes(keyframes);
      const annotations = await this.#annotations({ tenant, vectors: segmentEmbeddings, keyframes });

      // Every blob is referenced as it is written, before the records exist, under claims of this run's
      // own; if the records are not stored, those claims are released (what earlier runs hold stays).
      const storedBefore = new Set(existing.map((segment) => segment.id));
      const added: AddedReference[] = [];
      const release = ({ ref, owner }: AddedReference) => this.#blobs.release({ sha256: ref, owner });
      const records: VideoSegmentRecord[] = [];
      const segments: IngestedSegment[] = [];
      try {
        const videoOwner = claimOwner(`${tenant}/${id}`);
        await this.#blobs.put({ bytes, contentType: videoContentType(probe), owner: videoOwner });
        added.push({ recordId: id, ref: contentSha256, owner: videoOwner });
        const videoFacts = {
          ...(filename === undefined ? {} : { filename: filename.slice(0, 255) }),
          durationSeconds: round3(durationSeconds),
          ...(truncated === undefined
            ? {}
            : { truncated: true, declaredDurationSeconds: truncated.declaredDurationSeconds }),
          width: probe.width,
          height: probe.height,
          codec: probe.codec,
          container: probe.container.name,
          sampleFps: settings.sampleFps,
          segmentCount: spans.length,
        };
        for (const [index, span] of spans.entries()) {
          const keyframe = keyframes[index] as Buffer;
          const segmentId = recordId({
            kind: "video_segment",
            tenant,
            contentSha256,
            modelId: models.modelId,
            startS: span.startSeconds,
            endS: span.endSeconds,
          });
          const owner = claimOwner(`${tenant}/${segmentId}`);
          const { sha256: keyframeSha } = await this.#blobs.put({
            bytes: keyframe,
            contentType: "image/webp",
            owner,
          });
          added.push({ recordId: segmentId, ref: keyframeSha, owner });
          const keyframeRef = blobRef(keyframeSha);
          const segmentMetadata = {
            ...metadata,
            ...annotations[index],
            video: { ...videoFacts, segmentIndex: index, startsShot: span.startsShot },
            ...(found === undefined ? {} : regionsMarker(regionCount(found[index]))),
          };
          const reading = readings[index];
          const read =
            reading === undefined || this.#ocr === undefined
              ? undefined
              : ocrRecordFields({
                  reading,
                  minConfidence: this.#ocr.minConfidence,
                  metadata: segmentMetadata,
                });
          records.push({
            id: segmentId,
            modelId: models.modelId,
            mediaRef,
            source,
            text,
            metadata: read?.metadata ?? segmentMetadata,
            ...(read === undefined ? {} : { ocrText: read.ocrText }),
            vector: segmentEmbeddings[index] as Float32Array,
            videoId: id,
            startS: span.startSeconds,
            endS: span.endSeconds,
            keyframeRef,
          });
          segments.push({ id: segmentId, startS: span.startSeconds, endS: span.endSeconds, keyframeRef });
        }
      } catch (error) {
        await releaseReferences({ references: added, release, logger: this.#logger });
        throw error;
      }
      try {
        await this.#store.upsert({ kind: "video_segment", tenant, records });
      } catch (error) {
        await this.#undoUpsert({ tenant, records, storedBefore, added, release, error });
        throw error;
      }
      if (found !== undefined) await this.#storeRegions({ tenant, records, found });
      // Segments of an earlier, interrupted or differently segmented ingest of the same bytes go.
      const stale = existing.filter((segment) => !records.some((record) => record.id === segment.id));
      if (stale.length > 0) {
        await deleteSegments({
          store: this.#store,
          blobs: this.#blobs,
          tenant,
          segments: stale,
          videoBlob: false,
        });
      }
      const totalMs = performance.now() - started;
      this.#logger?.info(
        { videoId: id, segments: segments.length, frames, durationSeconds, totalMs },
        "video ingested",
      );
      return {
        id,
        status: "stored",
        ...(filename === undefined ? {} : { filename }),
        mediaRef,
        durationSeconds,
        ...(truncated === undefined ? {} : { truncated }),
        width: probe.width,
        height: probe.height,
        frames,
        segments,
        timings: { totalMs, embedMs: analysed.embedMs },
      };
    });
  }

  /**
   * Undoes what a failed segment upsert leaves: the rows of this run that went in before the failure are
   * deleted, then the blob references this run added are released. When that delete cannot be made sure
   * of (the store is down), the references stay: rows may still use them, and a resume completes the video.
   */
  async #undoUpsert({
    tenant,
    records,
    storedBefore,
    added,
    release,
    error,
  }: {
    tenant: string;
    records: readonly VideoSegmentRecord[];
    storedBefore: ReadonlySet<string>;
    added: readonly AddedReference[];
    release: ReleaseReference;
    error: unknown;
  }): Promise<void> {
    const written = error instanceof AppError ? Number(error.context.rowsWrittenBeforeFailure ?? 0) : 0;
    if (written > 0) {
      const fresh = records.filter((record) => !storedBefore.has(record.id)).map((record) => record.id);
      try {
        for (let start = 0; start < fresh.length; start += 1000) {
          await this.#store.delete({ kind: "video_segment", tenant, ids: fresh.slice(start, start + 1000) });
        }
      } catch (deleteError) {
        this.#logger?.warn(
          { err: deleteError, segments: fresh.length },
          "segments of a failed video upsert could not be removed; their blobs stay referenced until the video is ingested again or deleted",
        );
        return;
      }
    }
    await releaseReferences({ references: added, release, logger: this.#logger });
  }

  /**
   * With OCR on, each segment's keyframe taken again as a whole frame at up to
   * {@link TEXT_KEYFRAME_MAX_SIDE} px (the same instant as the model-size one): text a 224 px crop makes
   * illegible is read from it, and it is the keyframe stored, so line boxes refer to it. The list is
   * changed in place and returned; a frame that cannot be decoded again keeps the model-size keyframe.
   * Without OCR the model-size keyframes stay.
   */
  async #textKeyframes({
    path: videoPath,
    probe,
    spans,
    keyframes,
    signal,
  }: {
    path: string;
    probe: VideoProbe;
    spans: readonly VideoSegmentSpan[];
    keyframes: Buffer[];
    signal?: AbortSignal;
  }): Promise<Buffer[]> {
    if (this.#ocr === undefined) return keyframes;
    const fps = this.#settings.sampleFps;
    for (const [index, span] of spans.entries()) {
      const middle = Math.floor((span.startFrame + span.endFrame - 1) / 2);
      try {
        const frame = await extractFrameAt({
          path: videoPath,
          probe,
          timeSeconds: middle / fps,
          maxSide: TEXT_KEYFRAME_MAX_SIDE,
          limits: this.#settings.limits,
          signal,
        });
        keyframes[index] = await sharp(frame.data, {
          raw: { width: frame.width, height: frame.height, channels: 3 },
        })
          .webp({ quality: 85 })
          .toBuffer();
      } catch (error) {
        if (signal?.aborted) throw error;
        this.#logger?.warn(
          { err: error, segment: index },
          "could not decode a full-size keyframe; keeping the model-size one, whose text may be illegible",
        );
      }
    }
    return keyframes;
  }

  /**
   * The annotator's metadata for each segment, from its embedding and keyframe; empty objects when there is
   * no annotator or it failed (logged: the video is stored without it).
   */
  async #annotations({
    tenant,
    vectors,
    keyframes,
  }: {
    tenant: string;
    vectors: readonly Float32Array[];
    keyframes: readonly Buffer[];
  }): Promise<ReadonlyArray<Record<string, unknown>>> {
    const annotate = this.#annotate;
    if (annotate === undefined || vectors.length === 0) return [];
    try {
      return await annotate({ tenant, kind: "video_segment", vectors, images: keyframes });
    } catch (error) {
      this.#logger?.warn(
        { err: error, segments: vectors.length },
        "could not annotate new video segments; stored without it",
      );
      return [];
    }
  }

  /**
   * The objects in each segment's keyframe (the image stored for it, so boxes refer to it), when regions
   * are stored; undefined when they are not.
   */
  async #detectKeyframes(keyframes: readonly Buffer[]): Promise<ImageDetections[] | undefined> {
    const regions = this.#regions;
    if (regions === undefined || keyframes.length === 0) return undefined;
    return regions.detector.detect({
      images: keyframes,
      ...(regions.threshold === undefined ? {} : { threshold: regions.threshold }),
    });
  }

  /**
   * Writes the regions of the segments just stored. A failure leaves the segments stored without regions,
   * unmarked (logged; the region backfill job finds them), rather than failing a stored video.
   */
  async #storeRegions({
    tenant,
    records,
    found,
  }: {
    tenant: string;
    records: readonly VideoSegmentRecord[];
    found: readonly ImageDetections[];
  }): Promise<void> {
    const regions = records.flatMap((record, index) =>
      regionRecords({
        tenant,
        modelId: this.#models.modelId,
        parent: {
          ...record,
          kind: "video_segment",
          mediaRef: record.keyframeRef ?? record.mediaRef,
        },
        detections: found[index]?.detections ?? [],
      }),
    );
    try {
      await replaceRegions({
        store: this.#store,
        tenant,
        parentIds: records.map((record) => record.id),
        records: regions,
      });
    } catch (error) {
      this.#logger?.warn(
        { err: error, segments: records.length, regions: regions.length },
        "could not store the regions of a video's keyframes; the region backfill job can add them",
      );
      await this.#store
        .update({
          kind: "video_segment",
          tenant,
          patches: records.map((record) => {
            const { [REGIONS_MARKER]: _marker, ...metadata } = record.metadata ?? {};
            return { id: record.id, metadata };
          }),
        })
        .catch(() => undefined);
    }
  }

  /**
   * Reads the text of each segment's keyframe (the image stored for it, so boxes refer to it), one at a
   * time; a failed reading leaves that segment without text.
   */
  async #readKeyframes({
    keyframes,
    signal,
  }: {
    keyframes: readonly Buffer[];
    signal?: AbortSignal;
  }): Promise<Array<OcrReading | undefined>> {
    const ocr = this.#ocr;
    if (ocr === undefined) return [];
    const readings: Array<OcrReading | undefined> = [];
    for (const [index, keyframe] of keyframes.entries()) {
      readings.push(
        await readImageText({
          ocr,
          image: keyframe,
          signal,
          logger: this.#logger,
          context: { segment: index },
        }),
      );
    }
    return readings;
  }

  /**
   * Probes a video without storing anything (to decide whether an ingest should run as a job).
   *
   * @throws MediaError as {@link VideoIngester.ingest} does for a refused or oversized video.
   */
  async inspect({ bytes, signal }: { bytes: Uint8Array; signal?: AbortSignal }): Promise<VideoProbe> {
    this.#checkSize(bytes);
    return this.#withTempFile(bytes, (tempPath) =>
      probeVideo({ path: tempPath, limits: this.#settings.limits, signal }),
    );
  }

  #checkSize(bytes: Uint8Array): void {
    const { maxBytes } = this.#settings;
    if (bytes.length > maxBytes) {
      throw new MediaError(
        `The video is ${bytes.length} bytes; the limit is ${maxBytes} bytes. Send a smaller file or raise LOUPE_VIDEO_MAX_BYTES.`,
        { code: "video_too_large", status: 413, context: { bytes: bytes.length, limit: maxBytes } },
      );
    }
  }

  /** Runs `task` on the bytes written to a temp file of their own (see {@link withTempUpload}). */
  #withTempFile<T>(bytes: Uint8Array, task: (tempPath: string) => Promise<T>): Promise<T> {
    return withTempUpload({ dir: this.#settings.tempDir, bytes, logger: this.#logger }, task);
  }

  /** Samples and embeds frames, segments them, embeds the segments and makes their keyframes. */
  async #analyse({
    path: videoPath,
    probe,
    signal,
    onProgress,
  }: {
    path: string;
    probe: VideoProbe;
    signal?: AbortSignal;
    onProgress?: IngestVideoRequest["onProgress"];
  }): Promise<{
    spans: VideoSegmentSpan[];
    segmentEmbeddings: Float32Array[];
    keyframes: Buffer[];
    frames: number;
    embedMs: number;
    coverage: VideoCoverage;
  }> {
    const settings = this.#settings;
    const models = this.#models;
    const processorConfig = models.imageProcessor.config;
    const cropSize = models.imageProcessor.outputWidth;
    const shortestEdge =
      processorConfig.do_resize && "shortest_edge" in processorConfig.size
        ? processorConfig.size.shortest_edge
        : cropSize;
    const framesExpected = Math.max(1, Math.ceil(probe.durationSeconds * settings.sampleFps));
    const rawFeatures: Float32Array[] = [];
    // What the video head reads of each frame: the raw embeddings themselves, or small token grids.
    const headFeatures: Float32Array[] = [];
    // Frames are kept as small WebP images (a few kB each at model size), for the keyframes.
    const encodedFrames: Promise<Buffer>[] = [];
    let embedMs = 0;
    let batch: Array<{ data: Uint8Array; width: number; height: number; channels: 3 }> = [];
    // Batches are embedded in order on one chain while ffmpeg keeps decoding; at most two wait, so
    // memory stays bounded and a slow model holds ffmpeg back (through the pipe) instead of piling up frames.
    let embedding: Promise<void> = Promise.resolve();
    let waiting = 0;
    const flush = () => {
      if (batch.length === 0) return;
      const images = batch;
      batch = [];
      waiting += 1;
      embedding = embedding.then(async () => {
        const started = performance.now();
        const { embeddings, features } = await models.videoEmbedder.encodeFrames({ images });
        embedMs += performance.now() - started;
        rawFeatures.push(...embeddings);
        headFeatures.push(...features);
        waiting -= 1;
        onProgress?.({ framesDone: rawFeatures.length, framesExpected });
      });
      // Observed below or by the next wait; this keeps a failure during decoding from going unhandled.
      embedding.catch(() => undefined);
    };
    const frames = await sampleVideoFrames({
      path: videoPath,
      probe,
      fps: settings.sampleFps,
      shortestEdge,
      cropSize,
      limits: settings.limits,
      signal,
      onFrame: async (frame) => {
        const image = { data: frame.data, width: frame.width, height: frame.height, channels: 3 as const };
        const keyframe = sharp(frame.data, { raw: { width: frame.width, height: frame.height, channels: 3 } })
          // Fastest WebP effort: every sampled frame is encoded while the model runs, so this is on the hot path.
          .webp({ quality: 80, effort: 0 })
          .toBuffer();
        keyframe.catch(() => undefined);
        encodedFrames.push(keyframe);
        batch.push(image);
        if (batch.length >= EMBED_BATCH) flush();
        if (waiting >= 2) await embedding;
      },
    });
    flush();
    await embedding;
    const encoded = await Promise.all(encodedFrames);

    // Segments end where decoding did: a file cut short keeps its header's duration, not its frames.
    const coverage = videoCoverage({
      frames,
      fps: settings.sampleFps,
      declaredSeconds: Math.min(probe.durationSeconds, settings.limits.maxDurationSeconds),
    });
    const spans = segmentVideo({
      frameEmbeddings: rawFeatures.map(l2Normalize),
      fps: settings.sampleFps,
      durationSeconds: coverage.decodedDurationSeconds,
      windowSeconds: settings.segmentSeconds,
      shotThreshold: settings.shotThreshold,
    });
    if (spans.length > MAX_SEGMENTS_PER_VIDEO) {
      throw new MediaError(
        `The video makes ${spans.length} segments; at most ${MAX_SEGMENTS_PER_VIDEO} are stored per video. ` +
          "Send a shorter video or raise LOUPE_VIDEO_SEGMENT_SECONDS.",
        {
          code: "video_too_large",
          status: 413,
          context: { segments: spans.length, limit: MAX_SEGMENTS_PER_VIDEO },
        },
      );
    }
    const started = performance.now();
    const segmentEmbeddings = await this.#embedSegments({ spans, frameFeatures: headFeatures });
    embedMs += performance.now() - started;
    const keyframes = spans.map(
      (span) => encoded[Math.floor((span.startFrame + span.endFrame - 1) / 2)] as Buffer,
    );
    return { spans, segmentEmbeddings, keyframes, frames, embedMs, coverage };
  }

  /** One embedding per segment: its frames' features, resampled to the head's frame count. */
  async #embedSegments({
    spans,
    frameFeatures,
  }: {
    spans: readonly VideoSegmentSpan[];
    frameFeatures: readonly Float32Array[];
  }): Promise<Float32Array[]> {
    const embedder = this.#models.videoEmbedder;
    const numFrames = embedder.numFrames;
    const videos = spans.map((span) => {
      const own = frameFeatures.slice(span.startFrame, span.endFrame);
      if (numFrames === undefined) return own;
      return resampleIndices({ count: own.length, frames: numFrames }).map(
        (index) => own[index] as Float32Array,
      );
    });
    const embeddings: Float32Array[] = [];
    for (let start = 0; start < videos.length; start += 64) {
      embeddings.push(...(await embedder.embedFrameFeatures({ videos: videos.slice(start, start + 64) })));
    }
    return embeddings;
  }

  /** The stored segments of a video, in time order. */
  async segments({
    tenant,
    videoId: id,
  }: {
    tenant: string;
    videoId: string;
  }): Promise<StoredVideoSegment[]> {
    assertVideoId(id);
    return videoSegmentsOf({ store: this.#store, tenant, videoId: id });
  }

  /**
   * Deletes a video: its segments, and the original and keyframes once nothing else refers to them.
   *
   * @throws NotFoundError when the tenant has no video with this id.
   */
  deleteVideo({ tenant, videoId: id }: { tenant: string; videoId: string }): Promise<DeletedVideo> {
    return deleteVideo({ store: this.#store, blobs: this.#blobs, tenant, videoId: id });
  }
}

/**
 * The stored segments of a video, in time order (none when the tenant has no such video); `limit` reads
 * fewer (1: does the video exist).
 */
export async function videoSegmentsOf({
  store,
  tenant,
  videoId: id,
  limit = MAX_SEGMENTS_PER_VIDEO,
}: {
  store: Pick<VectorStore, "query">;
  tenant: string;
  videoId: string;
  limit?: number;
}): Promise<StoredVideoSegment[]> {
  const segments = await store.query({
    kind: "video_segment",
    tenant,
    filter: [{ field: "video_id", op: "eq", value: id }],
    limit,
  });
  return segments.sort((a, b) => a.startS - b.startS);
}

/** Outcome of {@link deleteVideo}. */
export interface DeletedVideo {
  id: string;
  /** Segment rows deleted. */
  deleted: number;
  /** Blobs (original, keyframes) removed because nothing referred to them any more. */
  blobsRemoved: number;
}

/**
 * Deletes a video (`DELETE /v1/items/vid_…`): its segments, then its keyframes and original from the
 * blob store once no other record refers to them.
 *
 * @throws ValidationError for a malformed id; NotFoundError when the tenant has no video with this id.
 */
export async function deleteVideo({
  store,
  blobs,
  tenant,
  videoId: id,
}: {
  store: VectorStore;
  blobs: BlobStore;
  tenant: string;
  videoId: string;
}): Promise<DeletedVideo> {
  assertVideoId(id);
  const segments = await videoSegmentsOf({ store, tenant, videoId: id });
  if (segments.length === 0) {
    throw new NotFoundError(`No video ${id} in this tenant.`, { context: { videoId: id } });
  }
  return { id, ...(await deleteSegments({ store, blobs, tenant, segments, videoBlob: true })) };
}

async function deleteSegments({
  store,
  blobs,
  tenant,
  segments,
  videoBlob,
}: {
  store: VectorStore;
  blobs: BlobStore;
  tenant: string;
  segments: readonly StoredVideoSegment[];
  videoBlob: boolean;
}): Promise<{ deleted: number; blobsRemoved: number }> {
  let deleted = 0;
  for (let start = 0; start < segments.length; start += 1000) {
    const ids = segments.slice(start, start + 1000).map((segment) => segment.id);
    // The segments' regions first, as for an image (see deleteItem).
    await deleteRegionsOf({ store, tenant, parentIds: ids });
    deleted += (await store.delete({ kind: "video_segment", tenant, ids })).deleted;
  }
  let blobsRemoved = 0;
  for (const segment of segments) {
    const keyframe = parseBlobRef(segment.keyframeRef);
    if (keyframe === undefined) continue;
    const { removed } = await blobs.release({ sha256: keyframe, owner: `${tenant}/${segment.id}` });
    if (removed) blobsRemoved += 1;
  }
  const first = segments[0];
  const original = first === undefined ? undefined : parseBlobRef(first.mediaRef);
  if (videoBlob && first !== undefined && original !== undefined) {
    const { removed } = await blobs.release({ sha256: original, owner: `${tenant}/${first.videoId}` });
    if (removed) blobsRemoved += 1;
  }
  return { deleted, blobsRemoved };
}

/** What {@link ingestVideoFiles} reports per file (the shape of a job item's outcome). */
export type VideoFileOutcome =
  | { status: "stored" | "skipped"; id: string; detail?: Record<string, unknown> }
  | { status: "failed"; error: { code: string; message: string } };

/**
 * Ingests video files from disk one after another (the `loupe ingest` video branch), reporting each
 * file's outcome; a bad file fails alone. Caller metadata's `tags` and `title` become the searchable
 * text and its `source`, when given, the record source.
 */
export async function ingestVideoFiles({
  ingester,
  tenant,
  files,
  metadata = {},
  source = "cli",
  report,
  signal,
}: {
  ingester: VideoIngester;
  tenant: string;
  files: readonly string[];
  metadata?: Record<string, unknown>;
  source?: string;
  report: (index: number, outcome: VideoFileOutcome) => void;
  signal?: AbortSignal;
}): Promise<void> {
  const { source: givenSource, ...stored } = metadata;
  const tags = Array.isArray(stored.tags) ? stored.tags.filter((tag) => typeof tag === "string") : [];
  const text = [typeof stored.title === "string" ? stored.title : undefined, ...tags]
    .filter((part) => part !== undefined)
    .join(" ");
  for (const [index, file] of files.entries()) {
    if (signal?.aborted) return;
    try {
      const { size } = await stat(file);
      if (size > ingester.settings.maxBytes) {
        throw new MediaError(
          `${file} is ${size} bytes; the limit is ${ingester.settings.maxBytes} bytes. Raise LOUPE_VIDEO_MAX_BYTES to ingest it.`,
          {
            code: "video_too_large",
            status: 413,
            context: { bytes: size, limit: ingester.settings.maxBytes },
          },
        );
      }
      const video = await ingester.ingest({
        tenant,
        bytes: await readFile(file),
        filename: path.basename(file),
        source: typeof givenSource === "string" ? givenSource : source,
        metadata: stored,
        text,
        signal,
      });
      report(index, videoJobOutcome(video));
    } catch (error) {
      const known =
        error instanceof AppError
          ? error
          : new AppError(
              "video_failed",
              500,
              `${file}: ${error instanceof Error ? error.message : String(error)}`,
            );
      report(index, { status: "failed", error: { code: known.code, message: known.message } });
    }
  }
}

/** Options of {@link createVideoIngester}: the services it uses and the configuration its settings come from. */
export interface CreateVideoIngesterOptions {
  store: VectorStore;
  models: ModelPack;
  blobs: BlobStore;
  config: Parameters<typeof videoIngestSettings>[0]["config"];
  ocr?: IngestOcr;
  regions?: IngestRegions;
  logger?: Logger;
  metrics?: Pick<LoupeMetrics, "countIngestItems">;
  annotate?: IngestAnnotator;
}

/** Builds a {@link VideoIngester} with the settings of `config`. */
export function createVideoIngester({
  store,
  models,
  blobs,
  config,
  ocr,
  regions,
  logger,
  metrics,
  annotate,
}: CreateVideoIngesterOptions): VideoIngester {
  return new VideoIngester({
    store,
    models,
    blobs,
    settings: videoIngestSettings({ config }),
    ocr,
    ...(regions === undefined ? {} : { regions }),
    logger,
    metrics,
    ...(annotate === undefined ? {} : { annotate }),
  });
}

/** How many regions a keyframe's detections make (those with an embedding). */
function regionCount(found: ImageDetections | undefined): number {
  return found?.detections.filter((detection) => detection.embedding !== undefined).length ?? 0;
}

/** @throws ValidationError unless `id` looks like a video id. */
export function assertVideoId(id: string): void {
  if (!VIDEO_ID_PATTERN.test(id)) {
    throw new ValidationError(
      `${JSON.stringify(id.slice(0, 80))} is not a video id; video ids are "vid_" and 32 hex characters.`,
      { context: { id: id.slice(0, 80) } },
    );
  }
}

/** The MIME type a video's original is stored and served with, from its probed container and codec. */
export function videoContentType(probe: VideoProbe): string {
  if (probe.container.name === "mp4") return "video/mp4";
  if (probe.container.name === "avi") return "video/x-msvideo";
  return probe.codec === "vp8" || probe.codec === "vp9" || probe.codec === "av1"
    ? "video/webm"
    : "video/x-matroska";
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
