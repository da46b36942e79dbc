/**
 * Text in images end to end, over a real Milvus Lite, the real pack and the real PP-OCRv4 engine:
 * rendered screenshots read at ingest (once: the same bytes again read nothing), found by an error code
 * and a quoted phrase in text and hybrid modes with the lines' boxes, and hostile images through the
 * HTTP API refused or read within the limits without losing what was stored.
 */
import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import zlib from "node:zlib";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLoupeClient } from "../../src/client/index.ts";
import type { OcrEngine } from "../../src/inference/ocr/ocr-engine.ts";
import { createPpOcrEngine } from "../../src/inference/ocr/pp-ocr.ts";
import { parseBlobRef } from "../../src/media/blob-store.ts";
import { mediaBinaries } from "../../src/media/ffmpeg.ts";
import { readOcrMetadata } from "../../src/media/ocr-lines.ts";
import type { SearchResultItem } from "../../src/search/index.ts";
import { boxIou, type RenderedLine, renderTextImage } from "../helpers/text-images.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness, TENANT_HEADER } from "./harness.ts";

/** A valid grayscale PNG of zeros: a small file that decodes to `width × height` pixels. */
async function pngBomb({ width, height }: { width: number; height: number }): Promise<Buffer> {
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 0, 0, 0, 0], 8);
  const deflate = zlib.createDeflate({ level: 9 });
  const parts: Buffer[] = [];
  deflate.on("data", (part: Buffer) => parts.push(part));
  const row = Buffer.alloc(width + 1);
  for (let y = 0; y < height; y += 1) {
    if (!deflate.write(row)) await once(deflate, "drain");
  }
  deflate.end();
  await once(deflate, "end");
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", Buffer.concat(parts)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The real engine, counting its readings. */
function countingEngine(engine: OcrEngine): OcrEngine & { calls: number } {
  return {
    id: engine.id,
    calls: 0,
    read(input) {
      this.calls += 1;
      return engine.read(input);
    },
    close: () => engine.close(),
  };
}

interface IngestBody {
  items: Array<{ index: number; id?: string; status: string; error?: { code: string; message: string } }>;
}

describe("OCR at ingest and text search (real Lite, pack and PP-OCRv4)", () => {
  let harness: IngestHarness;
  let engine: OcrEngine & { calls: number };
  const ids: Record<string, string> = {};
  let licenseTruth: RenderedLine[];
  const screenshots: Record<string, Buffer> = {};

  beforeAll(async () => {
    engine = countingEngine(
      createPpOcrEngine({ limits: { maxSide: 2560, maxLines: 512, timeoutMs: 20_000 } }),
    );
    harness = await startIngestHarness({ name: "ocr_ingest", ocr: engine });
    const license = await renderTextImage({
      width: 640,
      height: 240,
      lines: [
        { text: "Activation failed", size: 22, x: 24, y: 24 },
        { text: "E1234: license expired", size: 20, x: 24, y: 80 },
        { text: "Contact your administrator", size: 16, x: 24, y: 140 },
      ],
    });
    licenseTruth = license.lines;
    screenshots.license = license.bytes;
    screenshots.database = (
      await renderTextImage({
        width: 640,
        height: 200,
        theme: "dark",
        lines: [
          { text: "Connection refused on port 5432", size: 20, x: 24, y: 30 },
          { text: "Retry in 30 seconds", size: 16, x: 24, y: 90 },
        ],
      })
    ).bytes;
    screenshots.settings = (
      await renderTextImage({
        width: 640,
        height: 200,
        lines: [
          { text: "Settings saved", size: 20, x: 24, y: 30 },
          { text: "License key: valid", size: 18, x: 24, y: 90 },
        ],
      })
    ).bytes;
    screenshots.chinese = (
      await renderTextImage({
        width: 640,
        height: 200,
        lines: [
          { text: "错误：数据库连接失败", size: 24, x: 24, y: 30 },
          { text: "请稍后重试", size: 20, x: 24, y: 100 },
        ],
      })
    ).bytes;
    screenshots.shapes = (await renderShapes({ count: 1, seed: 7, size: 224, format: "png" }))[0] as Buffer;
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
    await engine?.close();
  });

  const post = (form: FormData) =>
    harness.app.request("/v1/images", { method: "POST", headers: { [TENANT_HEADER]: "ocr" }, body: form });

  const search = async (body: Record<string, unknown>) => {
    const response = await harness.app.request("/v1/search", {
      method: "POST",
      headers: { [TENANT_HEADER]: "ocr", "content-type": "application/json" },
      body: JSON.stringify({ kinds: ["image"], ...body }),
    });
    return { status: response.status, body: (await response.json()) as { items: SearchResultItem[] } };
  };

  it("reads every new image once at ingest and keeps the lines with their boxes", async () => {
    const names = ["license", "database", "settings", "chinese", "shapes"];
    const response = await post(
      multipart({
        files: names.map((name) => ({
          name: `${name}.png`,
          bytes: screenshots[name] as Buffer,
          type: "image/png",
        })),
      }),
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as IngestBody;
    expect(body.items.map((item) => item.status)).toEqual(["stored", "stored", "stored", "stored", "stored"]);
    names.forEach((name, index) => {
      ids[name] = body.items[index]?.id as string;
    });
    expect(engine.calls).toBe(5);

    const [license] = await harness.store.get({ kind: "image", tenant: "ocr", ids: [ids.license as string] });
    expect(license?.ocrText).toContain("E1234: license expired");
    const reading = readOcrMetadata(license?.metadata);
    expect(reading).toMatchObject({ engine: "pp-ocrv4", width: 640, height: 240, minConfidence: 0.5 });
    const line = reading?.lines.find((candidate) => candidate.text.includes("E1234"));
    const truth = licenseTruth.find((candidate) => candidate.text.startsWith("E1234"));
    expect(boxIou(line?.box ?? [0, 0, 0, 0], truth?.box ?? [0, 0, 1, 1])).toBeGreaterThan(0.5);
    expect(line?.confidence).toBeGreaterThan(0.8);

    // The same bytes again: skipped before decoding, so nothing is read twice.
    const again = await post(
      multipart({ files: [{ name: "again.png", bytes: screenshots.license as Buffer, type: "image/png" }] }),
    );
    expect(((await again.json()) as IngestBody).items[0]?.status).toBe("skipped");
    expect(engine.calls).toBe(5);

    // GET /v1/items shows the text and the reading.
    const listed = await harness.app.request("/v1/items?kind=image&limit=10", {
      headers: { [TENANT_HEADER]: "ocr" },
    });
    const items = (
      (await listed.json()) as {
        items: Array<{ id: string; ocrText: string; metadata: Record<string, unknown> }>;
      }
    ).items;
    const listedLicense = items.find((item) => item.id === ids.license);
    expect(listedLicense?.ocrText).toContain("E1234");
    expect(readOcrMetadata(listedLicense?.metadata)?.lines.length).toBeGreaterThanOrEqual(3);
    expect(items.find((item) => item.id === ids.shapes)?.ocrText).toBe("");
  });

  it("finds the error code first in text and hybrid modes, with the line's box in textMatches", async () => {
    for (const mode of ["text", "hybrid"]) {
      const { status, body } = await search({ text: "E1234", mode, topK: 4 });
      expect(status).toBe(200);
      expect(body.items[0]?.id).toBe(ids.license);
      const match = body.items[0]?.textMatches?.[0];
      expect(match?.text).toContain("E1234");
      const truth = licenseTruth.find((candidate) => candidate.text.startsWith("E1234"));
      expect(boxIou(match?.box ?? [0, 0, 0, 0], truth?.box ?? [0, 0, 1, 1])).toBeGreaterThan(0.5);
    }
    // Dense alone ranks by the embedding, which cannot read: it answers, without the text's help.
    const dense = await search({ text: "E1234", mode: "dense", topK: 4 });
    expect(dense.status).toBe(200);
    expect(dense.body.items).toHaveLength(4);
    // The default for a text query is hybrid: the same first hit.
    expect((await search({ text: "E1234" })).body.items[0]?.id).toBe(ids.license);
  });

  it("finds a Chinese screenshot by a Chinese query, pointing at its line", async () => {
    for (const mode of ["text", "hybrid"]) {
      const { body } = await search({ text: "数据库连接失败", mode, topK: 3 });
      expect(body.items[0]?.id).toBe(ids.chinese);
      expect(body.items[0]?.textMatches?.[0]?.text).toContain("数据库连接失败");
    }
    const phrase = await search({ text: "“数据库连接”", mode: "text" });
    expect(phrase.body.items.map((item) => item.id)).toEqual([ids.chinese]);
  });

  it("matches a quoted phrase as a phrase, with straight or curly quotes", async () => {
    const phrase = await search({ text: '"license expired"', mode: "text" });
    expect(phrase.body.items.map((item) => item.id)).toEqual([ids.license]);
    const curly = await search({ text: "“Connection refused”", mode: "hybrid" });
    expect(curly.body.items.map((item) => item.id)).toEqual([ids.database]);
    // Both words occur in the settings screenshot ("License key: valid"), but not as this phrase.
    expect((await search({ text: '"license valid"', mode: "text" })).body.items).toEqual([]);
  });

  it("POST /v1/jobs kind ocr, through the client: everything already read is skipped, nothing read again", async () => {
    const calls = engine.calls;
    const client = createLoupeClient({
      request: (path, init) => harness.app.request(path, init),
      headers: { [TENANT_HEADER]: "ocr" },
      jobPollMs: 50,
    });
    const started = await client.startOcrBackfill({ kinds: ["image"] });
    expect(started.id).toMatch(/^job_/);
    const job = await client.waitForJob(started.id);
    expect(job).toMatchObject({ kind: "ocr", status: "done" });
    expect(job.counts).toEqual({ total: 5, pending: 0, done: 0, skipped: 5, failed: 0 });
    expect(job.items).toEqual([]);
    expect(engine.calls).toBe(calls);
    const hits = await client.search({ text: "E1234", mode: "text", kinds: ["image"] });
    expect(hits[0]?.id).toBe(ids.license);
  });

  it("reads the text of a video's keyframes from whole frames, not the model's crop", async () => {
    const screen = await renderTextImage({
      width: 1280,
      height: 720,
      lines: [
        { text: "Deployment dashboard", size: 28, x: 40, y: 40 },
        { text: "ERROR E4821: disk quota exceeded on /var/backups", size: 22, x: 40, y: 340 },
      ],
    });
    const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-ocr-video-"));
    try {
      const still = path.join(dir, "screen.png");
      const video = path.join(dir, "screen.mp4");
      await writeFile(still, screen.bytes);
      await promisify(execFile)(mediaBinaries().ffmpeg, [
        ...["-nostdin", "-v", "error", "-loop", "1", "-i", still, "-t", "2", "-r", "4"],
        ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-y", video],
      ]);
      const form = new FormData();
      form.append("file", new File([await readFile(video)], "screen.mp4", { type: "video/mp4" }));
      const response = await harness.app.request("/v1/videos", {
        method: "POST",
        headers: { [TENANT_HEADER]: "ocr" },
        body: form,
      });
      expect(response.status).toBe(200);
      const found = await search({ kinds: ["video_segment"], text: "E4821", mode: "text", topK: 3 });
      expect(found.status).toBe(200);
      const [segment] = found.body.items;
      expect(segment?.ocrText).toContain("E4821");
      const [stored] = await harness.store.get({
        kind: "video_segment",
        tenant: "ocr",
        ids: [segment?.id ?? ""],
      });
      // The keyframe stored is the whole frame the lines' boxes refer to.
      const reading = readOcrMetadata(stored?.metadata);
      expect([reading?.width, reading?.height]).toEqual([1280, 720]);
      const keyframe = await harness.blobs.get(parseBlobRef(stored?.keyframeRef ?? "") as string);
      const meta = await sharp(await keyframe.bytes()).metadata();
      expect([meta.width, meta.height]).toEqual([1280, 720]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("refuses a text search without text, naming the fix", async () => {
    const response = await harness.app.request("/v1/search", {
      method: "POST",
      headers: { [TENANT_HEADER]: "ocr", "content-type": "application/json" },
      body: JSON.stringify({ image: ids.license, mode: "text" }),
    });
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { code: string; message: string } };
    expect(error.message).toMatch(/mode "text" .*needs a text query/);
  });

  it("reads or refuses hostile images within the limits and loses nothing stored", async () => {
    // A 40-megapixel screenshot with one line of text, a 1×20000 strip, and a PNG bomb (tiny file, 400 MP).
    const big = await sharp({ create: { width: 8000, height: 5000, channels: 3, background: "#f7f7f5" } })
      .composite([
        {
          input: (
            await renderTextImage({
              width: 900,
              height: 120,
              lines: [{ text: "Disk quota exceeded on volume 7", size: 48, x: 10, y: 20 }],
            })
          ).bytes,
          left: 400,
          top: 300,
        },
      ])
      .png({ compressionLevel: 9 })
      .toBuffer();
    const strip = await sharp({ create: { width: 1, height: 20_000, channels: 3, background: "#000000" } })
      .png()
      .toBuffer();
    const bomb = await pngBomb({ width: 20_000, height: 20_000 });
    expect(bomb.length).toBeLessThan(1_000_000);
    const started = performance.now();
    const response = await post(
      multipart({
        files: [
          { name: "big.png", bytes: big, type: "image/png" },
          { name: "strip.png", bytes: strip, type: "image/png" },
          { name: "bomb.png", bytes: bomb, type: "image/png" },
        ],
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    expect(response.status).toBe(200);
    const body = (await response.json()) as IngestBody;
    const [bigItem, stripItem, bombItem] = body.items;
    expect(bigItem?.status).toBe("stored");
    expect(stripItem?.status).toBe("stored");
    expect(bombItem?.status).toBe("failed");
    expect(bombItem?.error?.message).toMatch(/20000x20000.*limit.*LOUPE_MAX_IMAGE_PIXELS/s);
    // Bounded: the big image is scaled to LOUPE_OCR_MAX_SIDE before detection; nothing ran unbounded.
    expect(seconds).toBeLessThan(60);

    const [bigRecord] = await harness.store.get({
      kind: "image",
      tenant: "ocr",
      ids: [bigItem?.id as string],
    });
    const bigReading = readOcrMetadata(bigRecord?.metadata);
    expect(bigReading).toMatchObject({ width: 8000, height: 5000 });
    expect(bigRecord?.ocrText).toMatch(/quota exceeded/i);
    const [stripRecord] = await harness.store.get({
      kind: "image",
      tenant: "ocr",
      ids: [stripItem?.id as string],
    });
    expect(stripRecord?.ocrText).toBe("");

    // What was stored before is still there and still found by its text.
    expect((await search({ text: "E1234", mode: "text" })).body.items[0]?.id).toBe(ids.license);
    expect(await harness.store.count({ kind: "image", tenant: "ocr" })).toBe(7);
  }, 120_000);
});
