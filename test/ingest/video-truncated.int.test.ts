/**
 * A video cut short keeps its header's duration; what is stored is the part that decodes, and the
 * answer says so (real Milvus Lite, the bundled model pack, clips made by the bundled ffmpeg).
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { videoSegmentsOf } from "../../src/ingest/video-ingest.ts";
import { makeTestVideo } from "../helpers/video-fixtures.ts";
import { type IngestHarness, startIngestHarness, TENANT_HEADER } from "./harness.ts";

interface VideoItem {
  status: string;
  id?: string;
  durationSeconds?: number;
  truncated?: boolean;
  declaredDurationSeconds?: number;
  segments?: Array<{ id: string; startS: number; endS: number }>;
  error?: { code: string; message: string };
}

const DECLARED_SECONDS = 9;

describe("truncated videos (real Milvus Lite, real pack)", () => {
  let harness: IngestHarness;
  let whole: Buffer;
  let truncated: Buffer;

  beforeAll(async () => {
    harness = await startIngestHarness({
      name: "video_truncated",
      env: { LOUPE_VIDEO_SYNC_MAX_SECONDS: "60" },
    });
    // Matroska states its duration in the header, ahead of the frames: a cut file still declares 9 s.
    const file = await makeTestVideo({
      outPath: path.join(harness.dataDir, "clip.mkv"),
      source: `testsrc=size=160x120:rate=8:duration=${DECLARED_SECONDS}`,
      format: "matroska",
    });
    whole = await readFile(file);
    truncated = whole.subarray(0, Math.floor(whole.length / 3));
    await writeFile(path.join(harness.dataDir, "cut.mkv"), truncated);
  }, 120_000);

  afterAll(async () => {
    await harness?.dispose();
  });

  const upload = async (bytes: Uint8Array, name: string): Promise<VideoItem> => {
    const form = new FormData();
    form.append("file", new File([new Uint8Array(bytes)], name, { type: "video/x-matroska" }));
    const response = await harness.app.request("/v1/videos", {
      method: "POST",
      headers: { [TENANT_HEADER]: "clips" },
      body: form,
    });
    expect(response.status).toBe(200);
    const { items } = (await response.json()) as { items: VideoItem[] };
    expect(items).toHaveLength(1);
    return items[0] as VideoItem;
  };

  it("stores the decoded part of a video cut to a third, says it is truncated, and cuts segments only there", async () => {
    const item = await upload(truncated, "cut.mkv");
    expect(item.status).toBe("stored");
    expect(item.truncated).toBe(true);
    expect(item.declaredDurationSeconds).toBe(DECLARED_SECONDS);
    const decoded = item.durationSeconds as number;
    expect(decoded).toBeGreaterThan(0);
    expect(decoded).toBeLessThan(DECLARED_SECONDS / 2);
    const segments = item.segments ?? [];
    expect(segments.length).toBeGreaterThan(0);
    for (const segment of segments) expect(segment.endS).toBeLessThanOrEqual(decoded);
    expect(Math.max(...segments.map((segment) => segment.endS))).toBe(decoded);

    const stored = await videoSegmentsOf({
      store: harness.store,
      tenant: "clips",
      videoId: item.id as string,
    });
    expect(stored).toHaveLength(segments.length);
    for (const segment of stored) {
      expect(segment.endS).toBeLessThanOrEqual(decoded);
      expect(segment.metadata.video).toMatchObject({
        truncated: true,
        durationSeconds: decoded,
        declaredDurationSeconds: DECLARED_SECONDS,
      });
    }

    // Sent again, it is found whole in the store and answered the same way.
    const again = await upload(truncated, "cut.mkv");
    expect(again).toMatchObject({
      status: "skipped",
      truncated: true,
      durationSeconds: decoded,
      declaredDurationSeconds: DECLARED_SECONDS,
    });
  }, 120_000);

  it("stores the whole clip as whole, its last segment ending at the declared duration", async () => {
    const item = await upload(whole, "clip.mkv");
    expect(item.status).toBe("stored");
    expect(item.truncated).toBeUndefined();
    expect(item.declaredDurationSeconds).toBeUndefined();
    expect(item.durationSeconds).toBe(DECLARED_SECONDS);
    const ends = (item.segments ?? []).map((segment) => segment.endS);
    expect(Math.max(...ends)).toBe(DECLARED_SECONDS);
    const stored = await videoSegmentsOf({
      store: harness.store,
      tenant: "clips",
      videoId: item.id as string,
    });
    expect(stored[0]?.metadata.video).not.toHaveProperty("truncated");
  }, 120_000);
});
