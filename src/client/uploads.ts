/**
 * Files sent to Loupe: an {@link Upload} (bytes with a name and a media type), read from disk with
 * {@link readUpload}, and as the data URL that JSON bodies (`/v1/chat`, `/v1/search`, `/v1/triples`)
 * take images in.
 */
import { readFile } from "node:fs/promises";
import { basename, extname } from "node:path";

/** A file to send: its bytes, and the name and media type it is sent under. */
export interface Upload {
  bytes: Uint8Array;
  /** The file name in a multipart body (`upload` when absent). */
  filename?: string;
  /** Sent as the part's type; found from the bytes or the file name when absent. */
  contentType?: string;
}

/** Media types by file extension, for uploads whose bytes do not say. */
const CONTENT_TYPES: Record<string, string> = {
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".png": "image/png",
  ".webp": "image/webp",
  ".gif": "image/gif",
  ".mp4": "video/mp4",
  ".m4v": "video/mp4",
  ".mov": "video/quicktime",
  ".webm": "video/webm",
  ".mkv": "video/x-matroska",
  ".avi": "video/x-msvideo",
};

/** The image type the first bytes announce, if they are one of the four formats Loupe decodes. */
function sniffImageType(bytes: Uint8Array): string | undefined {
  const ascii = (start: number, end: number) => String.fromCharCode(...bytes.subarray(start, end));
  if (bytes[0] === 0x89 && ascii(1, 4) === "PNG") return "image/png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return "image/jpeg";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  if (ascii(0, 4) === "GIF8") return "image/gif";
  return undefined;
}

/**
 * The media type an upload is sent as: its own `contentType`, else what its first bytes announce (PNG,
 * JPEG, WebP, GIF), else its file extension's, else `application/octet-stream`. The server checks the
 * bytes itself; this only labels them.
 */
export function mediaTypeOf(upload: Upload): string {
  return (
    upload.contentType ??
    sniffImageType(upload.bytes) ??
    CONTENT_TYPES[extname(upload.filename ?? "").toLowerCase()] ??
    "application/octet-stream"
  );
}

/** The upload as a `data:` URL, the form JSON bodies take images in. */
export function dataUrlOf(upload: Upload): string {
  return `data:${mediaTypeOf(upload)};base64,${Buffer.from(upload.bytes).toString("base64")}`;
}

/** The upload as a multipart file part. */
export function fileOf(upload: Upload): File {
  // A copy: File wants an ArrayBuffer-backed view, and the caller's bytes may sit in a shared buffer.
  return new File([new Uint8Array(upload.bytes)], upload.filename ?? "upload", { type: mediaTypeOf(upload) });
}

/**
 * Reads a file into an upload named after it.
 *
 * @throws the file system's error when the file cannot be read.
 */
export async function readUpload(path: string): Promise<Upload> {
  const bytes = new Uint8Array(await readFile(path));
  return { bytes, filename: basename(path), contentType: mediaTypeOf({ bytes, filename: path }) };
}
