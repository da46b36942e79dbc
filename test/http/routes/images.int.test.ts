import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { crc32 } from "node:zlib";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobResponseSchema } from "../../../src/http/routes/jobs.ts";
import { parseBlobRef } from "../../../src/media/blob-store.ts";
import {
  type IngestHarness,
  multipart,
  renderShapes,
  startIngestHarness,
  TENANT_HEADER,
} from "../../ingest/harness.ts";

interface ItemBody {
  index: number;
  filename?: string;
  url?: string;
  id?: string;
  status: string;
  error?: { code: string; message: string };
}
interface ImagesBody {
  items: ItemBody[];
  counts: { total: number; done: number; skipped: number; failed: number };
  error?: { code: string; message: string };
}

/** A PNG whose header claims `width` x `height` while its data is a 1x1 image: a decompression bomb's shape. */
async function pngClaiming(width: number, height: number): Promise<Buffer> {
  const png = Buffer.from(
    await sharp({ create: { width: 1, height: 1, channels: 3, background: "#fff" } })
      .png()
      .toBuffer(),
  );
  // IHDR starts at byte 8: length (4), "IHDR" (4), width (4), height (4), 5 more bytes, then its CRC.
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

describe("POST /v1/images", () => {
  let harness: IngestHarness;
  let images: Buffer[];
  let server: Server;
  let serverUrl: string;

  beforeAll(async () => {
    harness = await startIngestHarness({
      name: "images",
      env: {
        LOUPE_URL_ALLOW_HOSTS: "127.0.0.1",
        LOUPE_INGEST_SYNC_MAX_ITEMS: "8",
        LOUPE_MAX_UPLOAD_BYTES: "200000",
      },
    });
    images = await renderShapes({ count: 12, seed: 3 });
    server = createServer((request, response) => {
      const match = /^\/img\/(\d+)\.jpg$/.exec(request.url ?? "");
      const image = match === null ? undefined : images[Number(match[1])];
      if (image === undefined) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { "content-type": "image/jpeg" }).end(image);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }, 120_000);

  afterAll(async () => {
    server?.close();
    await harness?.dispose();
  });

  const post = (body: FormData | object, { tenant = "alpha", query = "" } = {}) =>
    harness.app.request(`/v1/images${query}`, {
      method: "POST",
      headers: {
        [TENANT_HEADER]: tenant,
        ...(body instanceof FormData ? {} : { "content-type": "application/json" }),
      },
      body: body instanceof FormData ? body : JSON.stringify(body),
    });

  it("stores several uploaded images, answering one item per file in order, with metadata", async () => {
    const files = [0, 1, 2].map((index) => ({ name: `shape-${index}.jpg`, bytes: images[index] as Buffer }));
    const response = await post(
      multipart({ files, metadata: [{ tags: ["red", "circle"], title: "Shapes", album: 7 }] }),
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as ImagesBody;
    expect(body.items.map((item) => [item.index, item.filename, item.status])).toEqual([
      [0, "shape-0.jpg", "stored"],
      [1, "shape-1.jpg", "stored"],
      [2, "shape-2.jpg", "stored"],
    ]);
    expect(body.counts).toMatchObject({ total: 3, done: 3, skipped: 0, failed: 0 });
    const ids = body.items.map((item) => item.id ?? "");
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toMatch(/^img_[0-9a-f]{32}$/);

    const [record] = await harness.store.get({ kind: "image", tenant: "alpha", ids: [ids[0] as string] });
    expect(record?.source).toBe("upload");
    expect(record?.text).toBe("Shapes\nred\ncircle");
    expect(record?.metadata).toMatchObject({
      tags: ["red", "circle"],
      title: "Shapes",
      album: 7,
      filename: "shape-0.jpg",
      contentType: "image/jpeg",
      width: 128,
      height: 128,
      format: "jpeg",
    });
    const original = parseBlobRef(record?.mediaRef ?? "");
    const thumbnail = parseBlobRef(String(record?.metadata.thumbnailRef));
    expect(original).toBeDefined();
    expect(await (await harness.blobs.get(original as string)).bytes()).toEqual(images[0]);
    const thumb = await harness.blobs.get(thumbnail as string);
    expect(thumb.contentType).toBe("image/webp");
    expect((await sharp(await thumb.bytes()).metadata()).format).toBe("webp");
    expect(await harness.blobs.references(original as string)).toEqual([`alpha/${ids[0]}`]);

    // Filterable by caller metadata.
    const tagged = await harness.store.query({
      kind: "image",
      tenant: "alpha",
      filter: [{ field: "metadata.album", op: "eq", value: 7 }],
      limit: 10,
    });
    expect(tagged.map((row) => row.id).sort()).toEqual([...ids].sort());
  });

  it("the same image twice is one record: skipped in the same request and in later ones", async () => {
    const before = await harness.store.count({ kind: "image", tenant: "alpha" });
    const files = [3, 3, 0].map((index, position) => ({
      name: `again-${position}.jpg`,
      bytes: images[index] as Buffer,
    }));
    const body = (await (await post(multipart({ files }))).json()) as ImagesBody;
    expect(body.items.map((item) => item.status)).toEqual(["stored", "skipped", "skipped"]);
    expect(body.items[0]?.id).toBe(body.items[1]?.id);
    expect(await harness.store.count({ kind: "image", tenant: "alpha" })).toBe(before + 1);
  });

  it("another tenant storing the same image gets its own record", async () => {
    const body = (await (
      await post(multipart({ files: [{ name: "x.jpg", bytes: images[0] as Buffer }] }), { tenant: "beta" })
    ).json()) as ImagesBody;
    expect(body.items[0]?.status).toBe("stored");
    const [alpha] = await harness.store.get({
      kind: "image",
      tenant: "alpha",
      ids: [body.items[0]?.id ?? ""],
    });
    expect(alpha).toBeUndefined();
  });

  it("bad items fail alone with clear messages; the good ones are stored", async () => {
    const truncated = (images[4] as Buffer).subarray(0, 600);
    const files = [
      { name: "good.jpg", bytes: images[4] as Buffer },
      { name: "truncated.jpg", bytes: truncated },
      { name: "empty.jpg", bytes: Buffer.alloc(0) },
      { name: "text.jpg", bytes: Buffer.from("this is not an image at all") },
      { name: "bomb.png", bytes: await pngClaiming(50_000, 50_000) },
    ];
    const response = await post(multipart({ files }));
    expect(response.status).toBe(200);
    const body = (await response.json()) as ImagesBody;
    expect(body.items.map((item) => item.status)).toEqual(["stored", "failed", "failed", "failed", "failed"]);
    expect(body.items[1]?.error?.message).toMatch(/Could not decode the image/);
    expect(body.items[2]?.error).toEqual({
      code: "media_empty",
      message: "The image is empty (0 bytes). Send a JPEG, PNG, WebP or GIF file.",
    });
    expect(body.items[3]?.error?.code).toBe("media_unsupported");
    expect(body.items[3]?.error?.message).toMatch(/allowed: jpeg, png, webp, gif/);
    expect(body.items[4]?.error).toEqual({
      code: "media_too_large",
      message:
        "Image is 50000x50000 (2500.0 MP); the limit is 40.0 MP. Resize it or raise LOUPE_MAX_IMAGE_PIXELS.",
    });
    expect(body.counts).toMatchObject({ total: 5, done: 1, failed: 4 });
  });

  it("answers 422 with every item's error when all fail", async () => {
    const response = await post(multipart({ files: [{ name: "a.jpg", bytes: Buffer.from("nope") }] }));
    expect(response.status).toBe(422);
    const body = (await response.json()) as ImagesBody;
    expect(body.error?.code).toBe("all_items_failed");
    expect(body.error?.message).toMatch(/^The image was not ingested: Image format is not recognised/);
    expect(body.items).toHaveLength(1);
    expect(body.items[0]?.status).toBe("failed");
  });

  it("ingests URLs (with per-URL metadata), and reports unreachable ones per item", async () => {
    const response = await post({
      urls: [
        `${serverUrl}/img/5.jpg`,
        { url: `${serverUrl}/img/6.jpg`, metadata: { tags: ["from-url"] } },
        `${serverUrl}/img/99.jpg`,
      ],
      metadata: { source: "crawler" },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as ImagesBody;
    expect(body.items.map((item) => [item.url, item.status])).toEqual([
      [`${serverUrl}/img/5.jpg`, "stored"],
      [`${serverUrl}/img/6.jpg`, "stored"],
      [`${serverUrl}/img/99.jpg`, "failed"],
    ]);
    expect(body.items[2]?.error?.message).toContain("404");
    const [first, second] = await harness.store.get({
      kind: "image",
      tenant: "alpha",
      ids: [body.items[0]?.id ?? "", body.items[1]?.id ?? ""],
    });
    const byId = new Map([first, second].map((record) => [record?.id, record]));
    expect(byId.get(body.items[0]?.id)?.source).toBe("crawler");
    expect(byId.get(body.items[0]?.id)?.metadata.url).toBe(`${serverUrl}/img/5.jpg`);
    expect(byId.get(body.items[1]?.id)?.source).toBe("url");
    expect(byId.get(body.items[1]?.id)?.text).toBe("from-url");
  });

  it("refuses a URL to a private address unless allowed", async () => {
    const body = (await (
      await post({ urls: ["http://169.254.169.254/latest/meta-data"] })
    ).json()) as ImagesBody;
    expect(body.items[0]?.status).toBe("failed");
    expect(body.items[0]?.error?.code).toBe("url_address_refused");
  });

  it("runs as a job with ?async=true or a large batch, resumable and observable", async () => {
    const files = [7, 8].map((index) => ({ name: `job-${index}.jpg`, bytes: images[index] as Buffer }));
    const response = await post(multipart({ files }), { query: "?async=true" });
    expect(response.status).toBe(202);
    const { job } = (await response.json()) as { job: { id: string; status: string } };
    expect(response.headers.get("location")).toBe(`/v1/jobs/${job.id}`);
    const done = await harness.jobs.wait({ id: job.id, tenant: "alpha" });
    expect(done.status).toBe("done");
    const status = await harness.app.request(`/v1/jobs/${job.id}`, { headers: { [TENANT_HEADER]: "alpha" } });
    const parsed = jobResponseSchema.parse(await status.json());
    expect(parsed.job.counts).toEqual({ total: 2, pending: 0, done: 2, skipped: 0, failed: 0 });
    expect(parsed.job.items.map((item) => item.filename)).toEqual(["job-7.jpg", "job-8.jpg"]);

    // More items than LOUPE_INGEST_SYNC_MAX_ITEMS (8) run as a job without asking.
    const many = Array.from({ length: 9 }, (_, index) => ({
      name: `m-${index}.jpg`,
      bytes: images[index % 12] as Buffer,
    }));
    expect((await post(multipart({ files: many }))).status).toBe(202);
  });

  it("refuses a body over the upload limit with 413 and a clear message", async () => {
    const big = Buffer.alloc(250_000, 1);
    const response = await post(multipart({ files: [{ name: "big.jpg", bytes: big }] }));
    expect(response.status).toBe(413);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("payload_too_large");
    expect(body.error.message).toContain("LOUPE_MAX_UPLOAD_BYTES");
  });

  it("refuses malformed requests with 400/415 naming what is allowed, and bad metadata per item", async () => {
    const noFiles = new FormData();
    noFiles.append("other", "x");
    const unknownField = await post(noFiles);
    expect(unknownField.status).toBe(400);
    expect(((await unknownField.json()) as { error: { message: string } }).error.message).toContain(
      'allowed fields are "files"',
    );

    // Metadata belongs to its item: a bad one fails that item alone (here the only one, so 422).
    const badMetadata = await post(
      multipart({ files: [{ name: "a.jpg", bytes: images[0] as Buffer }], metadata: [{ sha256: "x" }] }),
    );
    expect(badMetadata.status).toBe(422);
    const badBody = (await badMetadata.json()) as {
      error: { code: string; message: string };
      items: Array<{ status: string; error?: { message: string } }>;
    };
    expect(badBody.error.code).toBe("all_items_failed");
    expect(badBody.items[0]?.error?.message).toContain('metadata key "sha256" is reserved');

    const noUrls = await post({ urls: [] });
    expect(noUrls.status).toBe(400);

    const text = await harness.app.request("/v1/images", {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "hi",
    });
    expect(text.status).toBe(415);
  });
});
