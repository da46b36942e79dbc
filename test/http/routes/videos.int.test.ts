/**
 * POST /v1/videos against a real Milvus Lite and the bundled model pack, on generated Shapes World long
 * videos (3–5 clips of 2 s at 128 px, each clip with its own background, objects and action).
 */
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../../src/app.ts";
import { type Config, parseConfig } from "../../../src/config.ts";
import { NotFoundError } from "../../../src/errors.ts";
import { loadModelPack, type ModelPack } from "../../../src/inference/index.ts";
import { createJobRegistry, type JobRegistry } from "../../../src/ingest/jobs.ts";
import {
  createVideoIngester,
  deleteVideo,
  ingestVideoFiles,
  type VideoFileOutcome,
  videoSegmentsOf,
} from "../../../src/ingest/video-ingest.ts";
import { createLogger } from "../../../src/logger.ts";
import { createFsBlobStore, type FsBlobStore, parseBlobRef } from "../../../src/media/blob-store.ts";
import { assembleServices } from "../../../src/services.ts";
import { createVectorStore, type MilvusVectorStore } from "../../../src/store/index.ts";
import {
  createRng,
  describeClip,
  encodeVideo,
  renderVideoFrames,
  sampleVideo,
  type Video,
  videoSegments,
} from "../../../src/synth/index.ts";
import { startTestMilvusLite, type TestMilvusLite, uniquePrefix } from "../../helpers/milvus-lite.ts";
import { writeHostileVideos } from "../../helpers/video-fixtures.ts";

const root = path.join(import.meta.dirname, "..", "..", "..");
const packDir = path.join(root, "models", "shapes-world-tiny");
const SEEDS = [31, 32, 33, 34];
const SAMPLE_STEP = 0.5;

interface VideoItem {
  index: number;
  filename?: string;
  url?: string;
  status: "stored" | "skipped" | "failed";
  id?: string;
  durationSeconds?: number;
  segments?: { id: string; startS: number; endS: number; keyframeRef: string }[];
  error?: { code: string; message: string };
}

describe("POST /v1/videos", () => {
  let milvus: TestMilvusLite;
  let store: MilvusVectorStore;
  let pack: ModelPack;
  let blobs: FsBlobStore;
  let jobs: JobRegistry;
  let config: Config;
  let workDir: string;
  let app: ReturnType<typeof createApp>;
  const videos: { seed: number; video: Video; file: string }[] = [];
  let hostile: Record<string, string>;
  let firstItems: VideoItem[];

  const upload = async (
    files: { file: string; type?: string }[],
    query = "",
    metadata?: unknown,
    tenant?: string,
  ) => {
    const form = new FormData();
    for (const { file, type = "video/mp4" } of files) {
      form.append("file", new File([await readFile(file)], path.basename(file), { type }));
    }
    if (metadata !== undefined) form.append("metadata", JSON.stringify(metadata));
    return app.request(`/v1/videos${query}`, {
      method: "POST",
      body: form,
      headers: tenant === undefined ? {} : { "x-test-tenant": tenant },
    });
  };
  const segmentCount = () => store.count({ kind: "video_segment", tenant: "default" });

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-videos-test-"));
    for (const seed of SEEDS) {
      const video = sampleVideo(createRng(seed), { clipCount: 3 + (seed % 3) });
      const file = path.join(workDir, `video-${seed}.mp4`);
      await encodeVideo({ frames: renderVideoFrames(video, { size: 128, seed }), size: 128, outPath: file });
      videos.push({ seed, video, file });
    }
    hostile = await writeHostileVideos(workDir);
    milvus = await startTestMilvusLite();
    pack = await loadModelPack({ dir: packDir });
    store = await createVectorStore({
      address: milvus.address,
      dimension: pack.dimension,
      collectionPrefix: uniquePrefix("videos"),
    });
    blobs = createFsBlobStore({ dir: path.join(workDir, "blobs") });
    jobs = createJobRegistry();
    config = parseConfig({
      env: {
        LOUPE_MODEL_PACK: packDir,
        LOUPE_DATA_DIR: path.join(workDir, "data"),
        LOUPE_VIDEO_SYNC_MAX_SECONDS: "60",
      },
      cwd: root,
    });
    app = createApp(
      assembleServices({
        config,
        logger: createLogger({ level: "silent" }),
        store,
        models: pack,
        blobs,
        jobs,
        resolveTenant: (c) => c.req.header("x-test-tenant") ?? "default",
      }),
    );
    const response = await upload(
      videos.map(({ file }) => ({ file })),
      "",
      { tags: ["synth", "long"], title: "shapes world", scene: { generator: "synth" } },
    );
    expect(response.status).toBe(200);
    firstItems = ((await response.json()) as { items: VideoItem[] }).items;
  }, 240_000);

  afterAll(async () => {
    await jobs?.close();
    await store?.close();
    await pack?.close();
    await milvus?.dispose();
    await rm(workDir, { recursive: true, force: true });
  });

  it("stores one segment per clip, with boundaries within one sampling step of the clips'", async () => {
    expect(firstItems.map((item) => item.status)).toEqual(SEEDS.map(() => "stored"));
    for (const [index, { video, file }] of videos.entries()) {
      const item = firstItems[index] as VideoItem;
      expect(item.filename).toBe(path.basename(file));
      expect(item.id).toMatch(/^vid_[0-9a-f]{32}$/);
      const truth = videoSegments(video);
      expect(item.segments?.length, `video ${index}`).toBe(truth.length);
      item.segments?.forEach((segment, position) => {
        expect(Math.abs(segment.startS - (truth[position]?.start ?? -1))).toBeLessThanOrEqual(SAMPLE_STEP);
        expect(Math.abs(segment.endS - (truth[position]?.end ?? -1))).toBeLessThanOrEqual(SAMPLE_STEP);
      });
    }
    expect(await segmentCount()).toBe(videos.reduce((sum, { video }) => sum + video.clips.length, 0));
  });

  it("stores segments with the video id, caller metadata, the original and a WebP keyframe", async () => {
    const item = firstItems[0] as VideoItem;
    const segments = await videoSegmentsOf({ store, tenant: "default", videoId: item.id as string });
    const segment = segments[1];
    expect(segment).toMatchObject({
      videoId: item.id,
      startS: 2,
      endS: 4,
      source: "upload",
      text: "shapes world synth long",
    });
    expect(segment?.metadata).toMatchObject({
      tags: ["synth", "long"],
      title: "shapes world",
      scene: { generator: "synth" },
      video: {
        filename: "video-31.mp4",
        segmentIndex: 1,
        width: 128,
        height: 128,
        container: "mp4",
        sampleFps: 2,
      },
    });
    const original = await blobs.get(parseBlobRef(segment?.mediaRef ?? "") as string);
    expect(original.contentType).toBe("video/mp4");
    expect((await original.bytes()).equals(await readFile((videos[0] as { file: string }).file))).toBe(true);
    const keyframe = await blobs.get(parseBlobRef(segment?.keyframeRef ?? "") as string);
    expect(keyframe.contentType).toBe("image/webp");
    const meta = await sharp(await keyframe.bytes()).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["webp", 128, 128]);
  });

  it("finds the segment of a clip from a text query for its action", async () => {
    let hits = 0;
    let total = 0;
    for (const [index, { seed, video }] of videos.entries()) {
      const item = firstItems[index] as VideoItem;
      const texts = video.clips.map(
        (clip, clipIndex) =>
          describeClip(clip, createRng(seed * 100 + clipIndex), { includeSize: false }).text,
      );
      const queries = await pack.textEmbedder.embed({ texts });
      for (const [clipIndex, query] of queries.entries()) {
        const [best] = await store.search({
          kind: "video_segment",
          tenant: "default",
          vector: query,
          topK: 1,
          filter: [{ field: "video_id", op: "eq", value: item.id as string }],
        });
        const truth = videoSegments(video)[clipIndex];
        total += 1;
        if (
          best !== undefined &&
          truth !== undefined &&
          Math.abs(best.fields.startS - truth.start) <= SAMPLE_STEP
        ) {
          hits += 1;
        }
      }
    }
    console.info(`video action queries: ${hits}/${total} ranked their clip's segment first`);
    expect(hits / total).toBeGreaterThanOrEqual(0.8);
  });

  it("adds nothing when the same videos are ingested again", async () => {
    const before = await segmentCount();
    const response = await upload(videos.map(({ file }) => ({ file })));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { items: VideoItem[]; counts: Record<string, number> };
    expect(body.counts).toEqual({ stored: 0, skipped: SEEDS.length, failed: 0 });
    expect(body.items.map((item) => item.id)).toEqual(firstItems.map((item) => item.id));
    expect(body.items[0]?.segments).toEqual(firstItems[0]?.segments);
    // The image API's field name works too.
    const form = new FormData();
    form.append(
      "files",
      new File([await readFile((videos[0] as { file: string }).file)], "again.mp4", { type: "video/mp4" }),
    );
    const viaFiles = await app.request("/v1/videos", { method: "POST", body: form });
    expect(((await viaFiles.json()) as { items: VideoItem[] }).items[0]).toMatchObject({
      status: "skipped",
      filename: "again.mp4",
    });
    expect(await segmentCount()).toBe(before);
  });

  it("finds shot changes from frame embeddings alone (windows longer than the video)", async () => {
    const ingester = createVideoIngester({
      store,
      models: pack,
      blobs,
      config: { ...config, videoSegmentSeconds: 60 },
    });
    const { video, file } = videos[2] as { video: Video; file: string };
    const result = await ingester.ingest({ tenant: "shots", bytes: await readFile(file), source: "test" });
    const truth = videoSegments(video);
    expect(result.segments.map((segment) => segment.startS)).toHaveLength(truth.length);
    result.segments.forEach((segment, position) => {
      expect(Math.abs(segment.startS - (truth[position]?.start ?? -1))).toBeLessThanOrEqual(SAMPLE_STEP);
    });
  });

  it("refuses hostile and mistyped uploads with a 4xx naming what is allowed, storing nothing", async () => {
    const before = await segmentCount();
    const blobCount = (await blobs.keys()).length;
    const playlist = await upload([{ file: hostile["hls.mp4"] as string }]);
    expect(playlist.status).toBe(415);
    const playlistBody = (await playlist.json()) as { error: { code: string; message: string } };
    expect(playlistBody.error.code).toBe("video_unsupported");
    expect(playlistBody.error.message).toMatch(/Playlists \(HLS \.m3u8\), concat lists/);
    const concat = await upload([{ file: hostile["concat.mp4"] as string }]);
    expect(concat.status).toBe(415);
    const image = await upload([{ file: hostile["image.mp4"] as string }]);
    expect(image.status).toBe(415);
    const empty = await upload([{ file: hostile["empty.mp4"] as string }]);
    expect(empty.status).toBe(422);
    const wrongType = await upload([{ file: (videos[0] as { file: string }).file, type: "text/plain" }]);
    expect(wrongType.status).toBe(415);
    expect(((await wrongType.json()) as { error: { message: string } }).error.message).toMatch(
      /content type "text\/plain"; allowed: video\/mp4, video\/webm/,
    );
    const badMetadata = await upload([{ file: (videos[0] as { file: string }).file }], "", { video: 1 });
    expect(badMetadata.status).toBe(400);
    const privateUrl = await app.request("/v1/videos", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ urls: ["http://127.0.0.1:9/video.mp4"] }),
    });
    expect(privateUrl.status).toBeGreaterThanOrEqual(400);
    expect(privateUrl.status).toBeLessThan(500);
    // One bad video among good ones fails alone.
    const mixed = await upload([
      { file: hostile["concat.mp4"] as string },
      { file: (videos[0] as { file: string }).file },
    ]);
    expect(mixed.status).toBe(200);
    const mixedBody = (await mixed.json()) as { items: VideoItem[] };
    expect(mixedBody.items.map((item) => item.status)).toEqual(["failed", "skipped"]);
    expect(mixedBody.items[0]?.error?.code).toBe("video_unsupported");
    expect(await segmentCount()).toBe(before);
    expect((await blobs.keys()).length).toBe(blobCount);
    // Temp files of refused and finished videos are gone.
    expect(await readdir(path.join(workDir, "data", "tmp"))).toEqual([]);
  });

  it("runs as a job with ?async=true", async () => {
    const response = await upload(
      [{ file: (videos[1] as { file: string }).file }],
      "?async=true",
      undefined,
      "async",
    );
    expect(response.status).toBe(202);
    const { job } = (await response.json()) as { job: { id: string; status: string } };
    const done = await jobs.wait({ id: job.id, tenant: "async" });
    expect(done.status).toBe("done");
    expect(done.counts).toMatchObject({ total: 1, done: 1, failed: 0 });
    // Another tenant: the same bytes make another video id.
    expect(done.items[0]?.id).toMatch(/^vid_[0-9a-f]{32}$/);
    expect(done.items[0]?.id).not.toBe(firstItems[1]?.id);
    expect(done.items[0]?.detail).toMatchObject({
      segments: (videos[1] as { video: Video }).video.clips.length,
    });
  });

  it("ingests video files from disk one by one, a bad file failing alone (loupe ingest)", async () => {
    const ingester = createVideoIngester({ store, models: pack, blobs, config });
    const outcomes: VideoFileOutcome[] = [];
    await ingestVideoFiles({
      ingester,
      tenant: "cli",
      files: [hostile["concat.mp4"] as string, (videos[0] as { file: string }).file],
      metadata: { tags: ["disk"], source: "nightly" },
      report: (index, outcome) => {
        outcomes[index] = outcome;
      },
    });
    expect(outcomes[0]).toMatchObject({ status: "failed", error: { code: "video_unsupported" } });
    expect(outcomes[1]).toMatchObject({
      status: "stored",
      detail: { segments: (videos[0] as { video: Video }).video.clips.length },
    });
    const id = (outcomes[1] as { id: string }).id;
    const [first] = await videoSegmentsOf({ store, tenant: "cli", videoId: id });
    expect(first).toMatchObject({
      source: "nightly",
      text: "disk",
      metadata: { tags: ["disk"], video: { filename: "video-31.mp4" } },
    });
  });

  it("deletes a video: its segments, then its blobs once nothing refers to them", async () => {
    const item = firstItems[3] as VideoItem;
    const segments = await videoSegmentsOf({ store, tenant: "default", videoId: item.id as string });
    const keyframes = segments.map((segment) => parseBlobRef(segment.keyframeRef) as string);
    const original = parseBlobRef(segments[0]?.mediaRef ?? "") as string;
    const before = await segmentCount();
    await expect(deleteVideo({ store, blobs, tenant: "other", videoId: item.id as string })).rejects.toThrow(
      NotFoundError,
    );
    const response = await app.request(`/v1/items/${item.id}`, { method: "DELETE" });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { deleted: unknown }).deleted).toEqual({
      id: item.id,
      kind: "video",
      records: segments.length,
      blobsRemoved: segments.length + 1,
    });
    expect(await segmentCount()).toBe(before - segments.length);
    for (const key of [...keyframes, original]) expect(await blobs.has(key)).toBe(false);
    await expect(
      deleteVideo({ store, blobs, tenant: "default", videoId: item.id as string }),
    ).rejects.toThrow(/No video vid_/);
  });
});
