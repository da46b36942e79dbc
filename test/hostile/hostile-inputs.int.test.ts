/**
 * The hostile-input suite: every case goes over HTTP to a real Loupe and must come back as a 4xx whose
 * message says what was wrong and what is allowed, with nothing stored and the server still healthy
 * (see `expectRefused`). The last tests prove that ordinary requests still work afterwards.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  concatList,
  corrupted,
  endlessVideo,
  hlsPlaylist,
  jpegBomb,
  longVideo,
  manyFrameGif,
  playlistBehindMp4Header,
  pngBomb,
  truncated,
  validImages,
  validVideo,
} from "./fixtures.ts";
import {
  expectRefused,
  type HostileWorld,
  startHostileWorld,
  URL_MAX_BYTES,
  URL_TIMEOUT_MS,
} from "./harness.ts";

let world: HostileWorld;
let images: { jpeg: Buffer; png: Buffer };
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), "loupe-hostile-fixtures-"));
  images = await validImages();
  world = await startHostileWorld();
});

afterAll(async () => {
  await world?.stop();
  await rm(scratch, { recursive: true, force: true });
});

/** Uploads one file to POST /v1/images. */
function uploadImage(bytes: Buffer, name: string, type: string) {
  return () => world.postFiles("/v1/images", { files: [{ bytes, name, type }] });
}

/** Asks POST /v1/images to fetch one URL. */
function imageUrl(url: string) {
  return () => world.postJson("/v1/images", { urls: [url] });
}

/** Uploads one file to POST /v1/videos (its file field is `file`). */
function uploadVideo(bytes: Buffer, name: string, type: string) {
  return () => world.postFiles("/v1/videos", { field: "file", files: [{ bytes, name, type }] });
}

const allowedImageFormats = /jpe?g.*png|png.*jpe?g/i;
const publicOnly = /only public addresses are fetched/;
const allowHint = /LOUPE_URL_ALLOW_HOSTS/;

describe("hostile images (POST /v1/images)", () => {
  it("truncated JPEG", async () => {
    await expectRefused(world, uploadImage(truncated(images.jpeg), "cut.jpg", "image/jpeg"), {
      status: [400, 422],
      says: [/decode|truncat|premature|corrupt/i, allowedImageFormats],
    });
  });

  it("corrupt JPEG (scan data overwritten)", async () => {
    await expectRefused(world, uploadImage(corrupted(images.jpeg), "corrupt.jpg", "image/jpeg"), {
      status: [400, 422],
      says: [/decode|corrupt/i, allowedImageFormats],
    });
  });

  it("truncated PNG", async () => {
    await expectRefused(world, uploadImage(truncated(images.png), "cut.png", "image/png"), {
      status: [400, 422],
      says: [/decode|truncat|read error|corrupt/i, allowedImageFormats],
    });
  });

  it("corrupt PNG (data overwritten, checksums wrong)", async () => {
    await expectRefused(world, uploadImage(corrupted(images.png), "corrupt.png", "image/png"), {
      status: [400, 422],
      says: [/decode|read error|corrupt|crc/i, allowedImageFormats],
    });
  });

  it("a text file sent as image/png", async () => {
    const text = Buffer.from("#!/bin/sh\ncurl http://169.254.169.254/ | sh\n");
    await expectRefused(world, uploadImage(text, "script.png", "image/png"), {
      status: [400, 415, 422],
      says: [/not recognised|not an image|unsupported|format/i, allowedImageFormats],
    });
  });

  it("an SVG (a format outside the allow-list)", async () => {
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><image href="file:///etc/passwd"/></svg>',
    );
    await expectRefused(world, uploadImage(svg, "x.svg", "image/svg+xml"), {
      status: [400, 415, 422],
      says: [/not recognised|not accepted|unsupported|format/i, allowedImageFormats],
    });
  });

  it("zero bytes", async () => {
    await expectRefused(world, uploadImage(Buffer.alloc(0), "empty.jpg", "image/jpeg"), {
      status: [400, 415, 422],
      says: [/empty|0 bytes|no bytes|not recognised/i],
    });
  });

  it("an oversize body (over the 50 MiB image limit)", async () => {
    const big = Buffer.alloc(51 * 1024 * 1024, 0);
    images.png.copy(big, 0, 0, 8);
    await expectRefused(world, uploadImage(big, "huge.png", "image/png"), {
      status: [413, 422],
      code: "media_too_large",
      says: [/limit|too large|larger|over/i, /\d/],
    });
  });

  it("a PNG decompression bomb: 100000×100000 claimed in a 661-byte file", async () => {
    const bomb = pngBomb();
    expect(bomb.length).toBeLessThan(1000);
    await expectRefused(world, uploadImage(bomb, "bomb.png", "image/png"), {
      status: [400, 413, 422],
      says: [/pixel/i, /limit|MP/i],
    });
  });

  it("a JPEG whose header claims 65000×65000", async () => {
    await expectRefused(world, uploadImage(jpegBomb(images.jpeg), "bomb.jpg", "image/jpeg"), {
      status: [400, 413, 422],
      says: [/pixel/i, /limit|MP/i],
    });
  });

  it("an animated GIF with 5000 frames", async () => {
    await expectRefused(world, uploadImage(manyFrameGif(5000), "frames.gif", "image/gif"), {
      status: [400, 413, 422],
      says: [/frame|page/i, /5000|limit|at most/i],
    });
  });
});

describe("hostile videos (POST /v1/videos)", () => {
  it("an HLS playlist uploaded as a video", async () => {
    await expectRefused(
      world,
      uploadVideo(Buffer.from(hlsPlaylist), "list.m3u8", "application/vnd.apple.mpegurl"),
      {
        status: [400, 415, 422],
        says: [/content type|container|format|not recognised|not accepted/i, /mp4/i],
      },
    );
  });

  it("an HLS playlist named clip.mp4 with type video/mp4", async () => {
    await expectRefused(world, uploadVideo(Buffer.from(hlsPlaylist), "clip.mp4", "video/mp4"), {
      status: [400, 415, 422],
      says: [/container|format|not recognised|not accepted/i, /mp4/i],
    });
  });

  it("an ffconcat list named clip.mp4", async () => {
    await expectRefused(world, uploadVideo(Buffer.from(concatList), "clip.mp4", "video/mp4"), {
      status: [400, 415, 422],
      says: [/container|format|not recognised|not accepted/i, /mp4/i],
    });
  });

  it("an HLS playlist behind a genuine MP4 ftyp box", async () => {
    await expectRefused(world, uploadVideo(playlistBehindMp4Header(), "polyglot.mp4", "video/mp4"), {
      status: [400, 415, 422],
      says: [/probe|decode|invalid|could not|not a/i],
    });
  });

  it("a video that never ends decoding (2 hours, no duration in its header)", async () => {
    const video = await endlessVideo({ dir: scratch });
    const started = performance.now();
    await expectRefused(world, uploadVideo(video, "endless.mkv", "video/x-matroska"), {
      status: [400, 413, 422],
      says: [/duration|long|frames|time/i, /limit|at most|LOUPE_|send/i],
    });
    expect(performance.now() - started).toBeLessThan(60_000);
  });

  it("a video that states a 2-hour duration (over the duration limit)", async () => {
    const video = await longVideo({ dir: scratch, seconds: 7200 });
    expect(video.length).toBeLessThan(1_000_000);
    await expectRefused(world, uploadVideo(video, "long.mp4", "video/mp4"), {
      status: [400, 413, 422],
      says: [/7200|2 h|duration|long/i, /1800|limit|LOUPE_VIDEO_MAX_DURATION_S/i],
    });
  });

  it("a video URL pointing at the cloud metadata service", async () => {
    await expectRefused(
      world,
      () => world.postJson("/v1/videos", { urls: ["http://169.254.169.254/latest/meta-data/"] }),
      {
        status: [400, 422],
        code: "url_address_refused",
        says: [/169\.254\.169\.254, a link-local address/, publicOnly],
      },
    );
  });
});

describe("hostile URLs (POST /v1/images with urls)", () => {
  it("127.0.0.1 (Loupe itself; loopback is not on the allow-list)", async () => {
    await expectRefused(world, imageUrl(`${world.loupe.url}/healthz`), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/127\.0\.0\.1, a loopback address/, publicOnly, allowHint],
    });
  });

  it("169.254.169.254 (cloud metadata)", async () => {
    await expectRefused(
      world,
      imageUrl("http://169.254.169.254/latest/meta-data/iam/security-credentials/"),
      {
        status: [400, 422],
        code: "url_address_refused",
        says: [/169\.254\.169\.254, a link-local address/, publicOnly, allowHint],
      },
    );
  });

  it("[::1]", async () => {
    await expectRefused(world, imageUrl(`http://[::1]:${new URL(world.loupe.url).port}/healthz`), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/::1, a loopback address/, publicOnly],
    });
  });

  it("0x7f000001 (hex-encoded loopback)", async () => {
    await expectRefused(world, imageUrl(`http://0x7f000001:${new URL(world.loupe.url).port}/healthz`), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/127\.0\.0\.1, a loopback address/, publicOnly],
    });
  });

  it("2130706433 (decimal loopback) and 0177.0.0.1 (octal loopback)", async () => {
    const port = new URL(world.loupe.url).port;
    await expectRefused(world, imageUrl(`http://2130706433:${port}/`), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/127\.0\.0\.1/, publicOnly],
    });
    await expectRefused(world, imageUrl(`http://0177.0.0.1:${port}/`), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/127\.0\.0\.1/, publicOnly],
    });
  });

  it("[::ffff:127.0.0.1] (IPv4-mapped loopback)", async () => {
    await expectRefused(world, imageUrl("http://[::ffff:127.0.0.1]/"), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/IPv4-mapped/, publicOnly],
    });
  });

  it("a name that resolves to a private address", async () => {
    await expectRefused(
      world,
      imageUrl(`http://${world.privateName}:${new URL(world.loupe.url).port}/healthz`),
      {
        status: [400, 422],
        code: "url_address_refused",
        says: [/resolves to .*(loopback|private|link-local)/, publicOnly, allowHint],
      },
    );
  });

  it("a redirect from an allowed host to the metadata service", async () => {
    const target = encodeURIComponent("http://169.254.169.254/latest/meta-data/");
    await expectRefused(world, imageUrl(`${world.hostile.url}/redirect?to=${target}`), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/169\.254\.169\.254, a link-local address/, publicOnly],
    });
  });

  it("a redirect from an allowed host to Loupe on 127.0.0.1", async () => {
    const target = encodeURIComponent(`${world.loupe.url}/healthz`);
    await expectRefused(world, imageUrl(`${world.hostile.url}/redirect?to=${target}&status=307`), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/127\.0\.0\.1, a loopback address/, publicOnly],
    });
  });

  it("a redirect loop", async () => {
    await expectRefused(world, imageUrl(`${world.hostile.url}/loop`), {
      status: [400, 422],
      code: "url_too_many_redirects",
      says: [/redirected more than \d+ times/, /at most \d+ redirects/],
    });
  });

  it("a slow-loris body, one byte every 300 ms", async () => {
    const started = performance.now();
    await expectRefused(world, imageUrl(`${world.hostile.url}/slow-body?ms=300`), {
      status: [408, 422],
      code: "url_timeout",
      says: [new RegExp(`did not finish within ${URL_TIMEOUT_MS} ms`), /LOUPE_URL_TIMEOUT_MS/],
    });
    expect(performance.now() - started).toBeLessThan(URL_TIMEOUT_MS + 5_000);
  });

  it("a body over the URL byte limit, without Content-Length", async () => {
    await expectRefused(world, imageUrl(`${world.hostile.url}/lying?bytes=${URL_MAX_BYTES * 5}`), {
      status: [413, 422],
      code: "url_too_large",
      says: [new RegExp(`limit of ${URL_MAX_BYTES} bytes`), /LOUPE_URL_MAX_BYTES/],
    });
  });

  it("text served as image/png", async () => {
    await expectRefused(world, imageUrl(`${world.hostile.url}/text-as-png`), {
      status: [415, 422],
      code: "url_content_type",
      says: [/declared as image\/png but its bytes/, /expected one of: .*image\/jpeg/],
    });
  });

  it("a file: URL", async () => {
    await expectRefused(world, imageUrl("file:///etc/passwd"), {
      status: [400, 422],
      code: "url_invalid",
      says: [/scheme "file"/, /only http and https/],
    });
  });

  it("credentials in the URL", async () => {
    await expectRefused(world, imageUrl(`http://admin:hunter2@${world.hostile.url.slice(7)}/png`), {
      status: [400, 422],
      code: "url_invalid",
      says: [/credentials/, /no login/],
    });
  });
});

describe("hostile search requests (POST /v1/search)", () => {
  const search = (body: unknown) => () => world.postJson("/v1/search", body);

  it("an unknown kind", async () => {
    await expectRefused(world, search({ text: "a red circle", kinds: ["audio"] }), {
      status: 400,
      says: [/unknown kind "audio"/, /image, video_segment, triple/],
    });
  });

  it.each([0, 101, 2.5, -1, 1e9])("topK %s", async (topK) => {
    await expectRefused(world, search({ text: "a red circle", topK }), {
      status: 400,
      says: [/topK must be an integer from 1 to 100/],
    });
  });

  it('topK as a string ("10")', async () => {
    await expectRefused(world, search({ text: "a red circle", topK: "10" }), {
      status: 400,
      says: [/topK/, /1 to 100/],
    });
  });

  it("a filter given as an expression string", async () => {
    await expectRefused(world, search({ text: "a red circle", filter: 'tenant != "" or true' }), {
      status: 400,
      says: [/expression strings are not accepted/, /field, op, value/],
    });
  });

  it("a filter on the tenant field", async () => {
    await expectRefused(
      world,
      search({ text: "x", filter: [{ field: "tenant", op: "eq", value: "other" }] }),
      {
        status: 400,
        says: [/tenant/, /source|metadata\.<key>/],
      },
    );
  });

  it("a metadata key that tries to close the JSON path", async () => {
    const field = 'metadata.x"] or true or ["y';
    await expectRefused(world, search({ text: "x", filter: [{ field, op: "eq", value: 1 }] }), {
      status: 400,
      says: [/metadata/, /letters, digits and _/],
    });
  });

  it("a raw operator", async () => {
    await expectRefused(world, search({ text: "x", filter: [{ field: "source", op: "||", value: "a" }] }), {
      status: 400,
      says: [/op/, /eq/, /got "\|\|"/],
    });
  });

  it("a control character in a filter value", async () => {
    await expectRefused(
      world,
      search({ text: "x", filter: [{ field: "source", op: "eq", value: 'a"\n) or (true' }] }),
      { status: 400, says: [/control characters/] },
    );
  });

  it("groups nested past the depth limit", async () => {
    let item: unknown = { field: "source", op: "eq", value: "a" };
    for (let depth = 0; depth < 6; depth += 1) item = { any: [item] };
    await expectRefused(world, search({ text: "x", filter: [item] }), {
      status: 400,
      says: [/nest at most 3 deep|unknown key/],
    });
  });

  it("an unknown top-level field", async () => {
    await expectRefused(world, search({ text: "x", tenant: "other" }), {
      status: 400,
      says: [/unknown field "tenant"/],
    });
  });

  it("neither text nor image", async () => {
    await expectRefused(world, search({ kinds: ["image"] }), { status: 400, says: [/text|image/] });
  });

  it("a corrupt inline query image", async () => {
    await expectRefused(world, search({ image: truncated(images.png).toString("base64") }), {
      status: [400, 415, 422],
      says: [/decode|read error|corrupt/i, allowedImageFormats],
    });
  });

  it("a query image given as a URL to the metadata service", async () => {
    await expectRefused(world, search({ image: "http://169.254.169.254/latest/meta-data/" }), {
      status: 400,
      says: [/URL/, /base64|data URL|id/],
    });
  });
});

describe("hostile triples (POST /v1/triples)", () => {
  const triple = (image: string) => () =>
    world.postJson("/v1/triples", {
      items: [{ image, question: "What color is the circle?", answer: "red" }],
    });

  it("an image URL to the metadata service", async () => {
    await expectRefused(world, triple("http://169.254.169.254/latest/meta-data/"), {
      status: [400, 422],
      code: "url_address_refused",
      says: [/169\.254\.169\.254, a link-local address/, publicOnly],
    });
  });

  it("a decompression bomb as the image", async () => {
    await expectRefused(world, triple(pngBomb().toString("base64")), {
      status: [400, 413, 422],
      says: [/pixel/i, /limit|MP/i],
    });
  });

  it("an unknown field in an item", async () => {
    await expectRefused(
      world,
      () =>
        world.postJson("/v1/triples", {
          items: [{ image: images.png.toString("base64"), question: "q?", answer: "a", tenant: "other" }],
        }),
      { status: [400, 422], says: [/unknown field "tenant"/] },
    );
  });
});

describe("hostile chat requests (POST /v1/chat, /v1/chat/completions)", () => {
  const chat = (body: unknown) => () => world.postJson("/v1/chat", body);
  const completions = (body: unknown) => () => world.postJson("/v1/chat/completions", body);
  const dataUrl = (bytes: Buffer, type = "image/png") => `data:${type};base64,${bytes.toString("base64")}`;

  it("a question over the length limit", async () => {
    await expectRefused(world, chat({ question: "a".repeat(4001) }), { status: 400, says: [/4000/] });
  });

  it("more images than LOUPE_CHAT_MAX_IMAGES", async () => {
    const image = dataUrl(images.png);
    await expectRefused(
      world,
      chat({ question: "what is this?", images: [image, image, image, image, image] }),
      {
        status: 400,
        says: [/5/, /4/],
      },
    );
  });

  it("more earlier turns than LOUPE_CHAT_MAX_TURNS", async () => {
    const history = Array.from({ length: 21 }, (_, index) => ({
      role: index % 2 === 0 ? "user" : "assistant",
      content: "hello",
    }));
    await expectRefused(world, chat({ question: "and then?", history }), { status: 400, says: [/21/, /20/] });
  });

  it("a corrupt attached image", async () => {
    await expectRefused(
      world,
      chat({ question: "what color is the star?", images: [dataUrl(truncated(images.png))] }),
      {
        status: [400, 415, 422],
        says: [/decode|read error|corrupt/i, allowedImageFormats],
      },
    );
  });

  it("a decompression bomb attached", async () => {
    await expectRefused(world, chat({ question: "what color is the star?", images: [dataUrl(pngBomb())] }), {
      status: [400, 413, 422],
      says: [/pixels|MP|GP/i, /LOUPE_MAX_IMAGE_PIXELS|limit/],
    });
  });

  it("a filter given as an expression string", async () => {
    await expectRefused(world, chat({ question: "a red circle", filter: 'tenant != "" or true' }), {
      status: 400,
      says: [/expression strings are not accepted/, /field, op, value/],
    });
  });

  it("an image URL to the metadata service", async () => {
    await expectRefused(
      world,
      completions({
        model: "loupe",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "what is this?" },
              { type: "image_url", image_url: { url: "http://169.254.169.254/latest/meta-data/" } },
            ],
          },
        ],
      }),
      { status: [400, 422], says: [/169\.254\.169\.254/, /public|not allowed|refused/i] },
    );
  });

  it("an unknown model", async () => {
    await expectRefused(
      world,
      completions({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
      { status: 404, code: "model_not_found", says: [/gpt-4o/, /loupe-offline/] },
    );
  });

  it("a conversation that ends with the assistant", async () => {
    await expectRefused(
      world,
      completions({
        model: "loupe",
        messages: [
          { role: "user", content: "hi" },
          { role: "assistant", content: "hello" },
        ],
      }),
      { status: 400, says: [/last message/i, /user/] },
    );
  });

  it("an attached item id that does not exist", async () => {
    await expectRefused(
      world,
      chat({ question: "what color is the star?", images: ["img_0123456789abcdef0123456789abcdef"] }),
      {
        status: 404,
        says: [/img_0123456789abcdef0123456789abcdef/],
      },
    );
  });
});

describe("bodies far over the limits", () => {
  it.each([
    ["/v1/images", "multipart/form-data; boundary=x"],
    ["/v1/videos", "multipart/form-data; boundary=x"],
    ["/v1/search", "application/json"],
    ["/v1/triples", "application/json"],
    ["/v1/chat", "application/json"],
    ["/v1/chat/completions", "application/json"],
  ])("%s announcing a 10 GiB body is answered before the body is read", async (pathname, contentType) => {
    await expectRefused(
      world,
      () =>
        world.postDeclaringHugeBody(pathname, {
          declaredBytes: 10 * 1024 ** 3,
          sentBytes: 1024,
          contentType,
        }),
      { status: 413, says: [/larger than|over|limit|too large/i, /\d+ bytes|bytes/] },
    );
  });
});

describe("after the hostile cases", () => {
  it("the server is healthy and ordinary requests work", async () => {
    expect((await fetch(`${world.loupe.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${world.loupe.url}/readyz`)).status).toBe(200);

    const search = await world.postJson("/v1/search", { text: "a red circle", topK: 5 });
    expect(search.status, await search.clone().text()).toBe(200);
    expect(await search.json()).toHaveProperty("items");

    const before = await world.holdings();
    const upload = await world.postFiles("/v1/images", {
      files: [{ bytes: images.png, name: "ok.png", type: "image/png" }],
    });
    expect(upload.status, await upload.clone().text()).toBeLessThan(300);
    const fetched = await world.postJson("/v1/images", { urls: [`${world.hostile.url}/jpeg`] });
    expect(fetched.status, await fetched.clone().text()).toBeLessThan(300);
    const after = await world.holdings();
    expect(after.image).toBe(before.image + 2);

    const video = await world.postFiles("/v1/videos", {
      field: "file",
      files: [{ bytes: await validVideo({ dir: scratch }), name: "ok.mp4", type: "video/mp4" }],
    });
    expect(video.status, await video.clone().text()).toBeLessThan(300);

    const answer = await world.postJson("/v1/chat", {
      question: "What color is the circle?",
      images: [images.png.toString("base64")],
    });
    expect(answer.status, await answer.clone().text()).toBe(200);
    expect(((await answer.json()) as { citations: Array<{ id: string }> }).citations[0]?.id).toBe("att_1");
  });
});
