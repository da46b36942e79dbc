/**
 * Hostile payloads for the hostile-input suite, made on the fly (nothing binary is checked in): broken
 * and lying images, decompression bombs, animations with thousands of frames, playlists dressed up as
 * videos, a video far longer than any limit.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { promisify } from "node:util";
import zlib from "node:zlib";
import sharp from "sharp";

const run = promisify(execFile);
const require = createRequire(import.meta.url);

/** A deterministic noisy image, so JPEG and PNG have real entropy-coded data to damage. */
function noisePixels(size: number): Buffer {
  const pixels = Buffer.alloc(size * size * 3);
  let state = 12345;
  for (let index = 0; index < pixels.length; index += 1) {
    state = (state * 1103515245 + 12345) >>> 0;
    pixels[index] = state >>> 24;
  }
  return pixels;
}

/** A valid 96×96 JPEG and PNG of noise. */
export async function validImages(): Promise<{ jpeg: Buffer; png: Buffer }> {
  const raw = { raw: { width: 96, height: 96, channels: 3 as const } };
  const pixels = noisePixels(96);
  return {
    jpeg: await sharp(pixels, raw).jpeg({ quality: 90 }).toBuffer(),
    png: await sharp(pixels, raw).png().toBuffer(),
  };
}

/** The first `fraction` of the bytes. */
export function truncated(bytes: Buffer, fraction = 0.6): Buffer {
  return Buffer.from(bytes.subarray(0, Math.floor(bytes.length * fraction)));
}

/** The bytes with a stretch in the middle overwritten by a pattern (headers intact, data broken). */
export function corrupted(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  const start = Math.floor(copy.length * 0.4);
  const end = Math.floor(copy.length * 0.6);
  for (let index = start; index < end; index += 1) copy[index] = (index * 31) & 0xff;
  return copy;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A PNG whose header claims `width`×`height` RGB pixels (10 GP by default) while the file holds a few
 * hundred bytes: a decoder that trusts the header allocates gigabytes.
 */
export function pngBomb({ width = 100_000, height = 100_000 } = {}): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  // A few rows of zeros; the rest of the image is "missing", which only a full decode would notice.
  const rows = zlib.deflateSync(Buffer.alloc((width * 3 + 1) * 2));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", header),
    pngChunk("IDAT", rows),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A valid JPEG whose SOF header is rewritten to claim 65000×65000 pixels (4.2 GP). */
export function jpegBomb(jpeg: Buffer): Buffer {
  const copy = Buffer.from(jpeg);
  for (let index = 2; index < copy.length - 9; index += 1) {
    // SOF0 (baseline) or SOF2 (progressive): FF C0/C2, length, precision, height, width.
    if (copy[index] === 0xff && (copy[index + 1] === 0xc0 || copy[index + 1] === 0xc2)) {
      copy.writeUInt16BE(65_000, index + 5);
      copy.writeUInt16BE(65_000, index + 7);
      return copy;
    }
  }
  throw new Error("no SOF marker in the JPEG");
}

/** An animated GIF of `frames` 1×1 frames (5000 by default, ~60 KB). */
export function manyFrameGif(frames = 5000): Buffer {
  const header = Buffer.from([
    ...Buffer.from("GIF89a", "latin1"),
    1,
    0,
    1,
    0,
    0x80,
    0,
    0, // 1×1 screen, global color table of 2 entries
    0,
    0,
    0,
    255,
    255,
    255, // black, white
    0x21,
    0xff,
    0x0b,
    ...Buffer.from("NETSCAPE2.0", "latin1"),
    3,
    1,
    0,
    0,
    0, // loop forever
  ]);
  const frame = Buffer.from([
    0x21,
    0xf9,
    0x04,
    0x00,
    0x01,
    0x00,
    0x00,
    0x00, // graphic control: 10 ms delay
    0x2c,
    0,
    0,
    0,
    0,
    1,
    0,
    1,
    0,
    0, // image descriptor 1×1 at 0,0
    0x02,
    0x02,
    0x44,
    0x01,
    0x00, // LZW data of one pixel
  ]);
  const parts = [header];
  for (let index = 0; index < frames; index += 1) parts.push(frame);
  parts.push(Buffer.from([0x3b]));
  return Buffer.concat(parts);
}

/** An HLS playlist that points at a local file, the cloud metadata service and loopback. */
export const hlsPlaylist = [
  "#EXTM3U",
  "#EXT-X-VERSION:3",
  "#EXT-X-TARGETDURATION:10",
  "#EXT-X-MEDIA-SEQUENCE:0",
  "#EXTINF:10.0,",
  "file:///etc/passwd",
  "#EXTINF:10.0,",
  "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
  "#EXTINF:10.0,",
  "http://127.0.0.1:6379/",
  "#EXT-X-ENDLIST",
  "",
].join("\n");

/** An ffconcat list that pulls in a local file and a URL. */
export const concatList = [
  "ffconcat version 1.0",
  "file '/etc/passwd'",
  "file 'http://169.254.169.254/latest/meta-data/'",
  "",
].join("\n");

/**
 * A polyglot: a well-formed MP4 `ftyp` box (so a signature check says "mp4") followed by an HLS
 * playlist. Only a demuxer allow-list stops ffmpeg from reading it as a playlist.
 */
export function playlistBehindMp4Header(): Buffer {
  const ftyp = Buffer.concat([
    Buffer.from([0, 0, 0, 0x18]),
    Buffer.from("ftypisom\0\0\x02\0isomiso2", "latin1"),
  ]);
  return Buffer.concat([ftyp, Buffer.from(hlsPlaylist, "latin1")]);
}

/** The ffmpeg binary the project ships. */
export function ffmpegPath(): string {
  return (require("@ffmpeg-installer/ffmpeg") as { path: string }).path;
}

/**
 * A 16×16 gray Matroska video of `seconds` seconds at 1 fps, written as a stream so its header carries
 * no duration: a reader learns how long it is only by decoding to the end.
 */
export async function endlessVideo({
  dir,
  seconds = 7200,
}: {
  dir: string;
  seconds?: number;
}): Promise<Buffer> {
  const file = path.join(dir, "endless.mkv");
  await run(
    ffmpegPath(),
    [
      "-nostdin",
      "-loglevel",
      "error",
      "-y",
      "-f",
      "lavfi",
      "-i",
      `color=c=gray:s=16x16:r=1:d=${seconds}`,
      "-c:v",
      "mpeg4",
      "-g",
      "600",
      "-q:v",
      "31",
      "-f",
      "matroska",
      "-live",
      "1",
      file,
    ],
    { timeout: 60_000 },
  );
  return readFile(file);
}

/** A 16×16 gray MP4 of `seconds` seconds at 1 fps whose header states its duration. */
export async function longVideo({ dir, seconds }: { dir: string; seconds: number }): Promise<Buffer> {
  const file = path.join(dir, `long-${seconds}.mp4`);
  await run(
    ffmpegPath(),
    [
      "-nostdin",
      "-loglevel",
      "error",
      "-y",
      "-f",
      "lavfi",
      "-i",
      `color=c=gray:s=16x16:r=1:d=${seconds}`,
      "-c:v",
      "mpeg4",
      "-g",
      "600",
      "-q:v",
      "31",
      file,
    ],
    { timeout: 60_000 },
  );
  return readFile(file);
}

/** A valid 2-second 32×32 MP4, for the "normal request still works" check. */
export async function validVideo({ dir }: { dir: string }): Promise<Buffer> {
  const file = path.join(dir, "valid.mp4");
  await run(
    ffmpegPath(),
    [
      "-nostdin",
      "-loglevel",
      "error",
      "-y",
      "-f",
      "lavfi",
      "-i",
      "testsrc=s=32x32:r=8:d=2",
      "-c:v",
      "mpeg4",
      "-pix_fmt",
      "yuv420p",
      file,
    ],
    { timeout: 60_000 },
  );
  return readFile(file);
}
