/**
 * HTTP range requests on GET /v1/media/{id} and its thumbnail, against the real blob store (over a real
 * Milvus Lite and the bundled pack): 206 with exactly the bytes of the slice, 416 past the end, If-Range,
 * HEAD, a stored video read the way a player seeks, and a signed link with a Range.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SIGNED_LINK_PARAMS } from "../../../src/auth/media-link-signer.ts";
import { makeTestVideo } from "../../helpers/video-fixtures.ts";
import { type IngestHarness, multipart, renderShapes, startIngestHarness } from "../../ingest/harness.ts";

describe("Range requests on /v1/media", () => {
  let harness: IngestHarness;
  let workDir: string;
  let image: Buffer;
  let imageId: string;
  let video: Buffer;
  let videoId: string;

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "media_range" });
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-range-"));
    [image] = (await renderShapes({ count: 1, seed: 5, size: 256 })) as [Buffer];
    const uploaded = await harness.app.request("/v1/images", {
      method: "POST",
      body: multipart({ files: [{ name: "a.jpg", bytes: image }] }),
    });
    imageId = ((await uploaded.json()) as { items: Array<{ id: string }> }).items[0]?.id as string;
    const file = await makeTestVideo({
      outPath: path.join(workDir, "clip.mp4"),
      source: "testsrc=size=160x120:rate=8:duration=2",
    });
    video = await readFile(file);
    const form = new FormData();
    form.append("file", new File([new Uint8Array(video)], "clip.mp4", { type: "video/mp4" }));
    const stored = await harness.app.request("/v1/videos", { method: "POST", body: form });
    expect(stored.status).toBe(200);
    videoId = ((await stored.json()) as { items: Array<{ id: string }> }).items[0]?.id as string;
  }, 180_000);

  afterAll(async () => {
    await harness?.dispose();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  const get = (url: string, headers: Record<string, string> = {}, method = "GET") =>
    harness.app.request(url, { method, headers });
  const bytesOf = async (response: Response) => Buffer.from(await response.arrayBuffer());

  it("answers one range with 206 and exactly those bytes, in all three forms", async () => {
    const size = image.length;
    const whole = await get(`/v1/media/${imageId}`);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("accept-ranges")).toBe("bytes");
    expect(await bytesOf(whole)).toEqual(image);

    const cases: Array<[string, number, number]> = [
      ["bytes=0-99", 0, 99],
      ["bytes=100-", 100, size - 1],
      ["bytes=-50", size - 50, size - 1],
      // An end past the file is cut to its last byte; a suffix longer than the file is all of it.
      [`bytes=10-${size + 1000}`, 10, size - 1],
      [`bytes=-${size + 5}`, 0, size - 1],
      [`bytes=${size - 1}-${size - 1}`, size - 1, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const response = await get(`/v1/media/${imageId}`, { range });
      expect(response.status, range).toBe(206);
      expect(response.headers.get("content-range"), range).toBe(`bytes ${start}-${end}/${size}`);
      expect(response.headers.get("content-length"), range).toBe(String(end - start + 1));
      expect(response.headers.get("content-type")).toBe("image/jpeg");
      expect(response.headers.get("etag")).toBe(whole.headers.get("etag"));
      expect(await bytesOf(response), range).toEqual(image.subarray(start, end + 1));
    }
  });

  it("answers 416 with the size for a range past the end, and the whole file for what it does not serve", async () => {
    const size = image.length;
    for (const range of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, "bytes=-0"]) {
      const response = await get(`/v1/media/${imageId}`, { range });
      expect(response.status, range).toBe(416);
      expect(response.headers.get("content-range")).toBe(`bytes */${size}`);
      expect((await response.arrayBuffer()).byteLength).toBe(0);
    }
    // Several ranges, another unit, bad syntax, a reversed range: the whole file, as RFC 9110 allows.
    for (const range of [
      "bytes=0-1,5-6",
      "items=0-1",
      "bytes=abc",
      "bytes=9-3",
      `bytes=${"9".repeat(300)}-`,
    ]) {
      const response = await get(`/v1/media/${imageId}`, { range });
      expect(response.status, range).toBe(200);
      expect(await bytesOf(response), range).toEqual(image);
    }
  });

  it("serves the range only when If-Range names the current ETag", async () => {
    const etag = (await get(`/v1/media/${imageId}`)).headers.get("etag") as string;
    const current = await get(`/v1/media/${imageId}`, { range: "bytes=0-9", "if-range": etag });
    expect(current.status).toBe(206);
    expect(await bytesOf(current)).toEqual(image.subarray(0, 10));
    for (const ifRange of [`"${"0".repeat(64)}"`, `W/${etag}`, "Wed, 21 Oct 2015 07:28:00 GMT"]) {
      const stale = await get(`/v1/media/${imageId}`, { range: "bytes=0-9", "if-range": ifRange });
      expect(stale.status, ifRange).toBe(200);
      expect(await bytesOf(stale)).toEqual(image);
    }
    // A matching If-None-Match still wins: nothing changed, nothing is sent.
    expect((await get(`/v1/media/${imageId}`, { range: "bytes=0-9", "if-none-match": etag })).status).toBe(
      304,
    );
  });

  it("answers HEAD with GET's headers and no body, ranges included", async () => {
    const head = await get(`/v1/media/${imageId}`, {}, "HEAD");
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(image.length));
    expect(head.headers.get("accept-ranges")).toBe("bytes");
    expect((await head.arrayBuffer()).byteLength).toBe(0);
    const ranged = await get(`/v1/media/${imageId}`, { range: "bytes=0-9" }, "HEAD");
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toBe(`bytes 0-9/${image.length}`);
    expect((await ranged.arrayBuffer()).byteLength).toBe(0);
  });

  it("answers ranges on thumbnails", async () => {
    const whole = await bytesOf(await get(`/v1/media/${imageId}/thumbnail`));
    const tail = await get(`/v1/media/${imageId}/thumbnail`, { range: "bytes=-16" });
    expect(tail.status).toBe(206);
    expect(await bytesOf(tail)).toEqual(whole.subarray(whole.length - 16));
  });

  it("serves a stored video the way a player reads it: the start, then a seek into the middle", async () => {
    const size = video.length;
    // A <video> first asks for everything from 0 and reads the container's header.
    const first = await get(`/v1/media/${videoId}`, { range: "bytes=0-" });
    expect(first.status).toBe(206);
    expect(first.headers.get("content-type")).toBe("video/mp4");
    expect(first.headers.get("content-range")).toBe(`bytes 0-${size - 1}/${size}`);
    expect(await bytesOf(first)).toEqual(video);
    const middle = Math.floor(size / 2);
    const seek = await get(`/v1/media/${videoId}`, { range: `bytes=${middle}-` });
    expect(seek.status).toBe(206);
    expect(await bytesOf(seek)).toEqual(video.subarray(middle));
  });

  it("answers a Range on a signed media link (keys on, no key sent)", async () => {
    const keyId = (await harness.services.keys.create({ tenant: "default", scopes: ["read"] })).record.id;
    const linkPath = `/v1/media/${imageId}`;
    const signed = await harness.services.mediaLinks.sign({ path: linkPath, keyId });
    const query = new URLSearchParams({
      [SIGNED_LINK_PARAMS.expires]: String(signed.expires),
      [SIGNED_LINK_PARAMS.keyId]: signed.keyId,
      [SIGNED_LINK_PARAMS.signature]: signed.signature,
    });
    const ranged = await get(`${linkPath}?${query}`, { range: "bytes=5-14" });
    expect(ranged.status).toBe(206);
    expect(await bytesOf(ranged)).toEqual(image.subarray(5, 15));
    // Without the link, the same request now needs a key.
    expect((await get(linkPath, { range: "bytes=5-14" })).status).toBe(401);
  });
});
