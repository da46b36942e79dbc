/**
 * Turning an OpenAI-style `image_url.url` into an image query: a data URL or base64 is decoded under
 * the image size limit, a stored item's id is kept (the search layer reads it for the caller's tenant),
 * and an http(s) URL is fetched through the SSRF-safe fetcher under the same limits as ingestion by URL.
 */
import type { Config } from "../config.ts";
import { IMAGE_URL_CONTENT_TYPES } from "../ingest/index.ts";
import { fetchUrl } from "../media/url-fetcher.ts";
import { type ImageQuery, type ImageReference, parseImageReference } from "../search/index.ts";

/** The settings an image URL is read under. */
export type ImageUrlLimits = Pick<
  Config,
  "maxImageBytes" | "urlAllowHosts" | "urlMaxBytes" | "urlTimeoutMs" | "urlMaxRedirects"
>;

/**
 * Parses an `image_url.url` without fetching anything, so that every reference of a request can be
 * checked before the first download starts.
 *
 * @throws ValidationError naming `field`, what was wrong and the accepted forms.
 */
export function parseImageUrl({
  url,
  field,
  limits,
}: {
  url: string;
  field: string;
  limits: Pick<ImageUrlLimits, "maxImageBytes">;
}): ImageReference {
  return parseImageReference({ value: url, field, allowUrl: true, maxBytes: limits.maxImageBytes });
}

/**
 * The image query of a parsed reference: bytes and ids as they are, an http(s) URL downloaded (at most
 * the smaller of `LOUPE_URL_MAX_BYTES` and `LOUPE_MAX_IMAGE_BYTES`, image types only).
 *
 * @throws UrlFetchError when the URL is refused or its download fails.
 */
export async function resolveImageReference({
  reference,
  limits,
  signal,
}: {
  reference: ImageReference;
  limits: ImageUrlLimits;
  signal?: AbortSignal;
}): Promise<ImageQuery> {
  if (!("url" in reference)) return reference;
  const fetched = await fetchUrl({
    url: reference.url,
    maxBytes: Math.min(limits.urlMaxBytes, limits.maxImageBytes),
    timeoutMs: limits.urlTimeoutMs,
    maxRedirects: limits.urlMaxRedirects,
    allowHosts: limits.urlAllowHosts,
    allowedContentTypes: IMAGE_URL_CONTENT_TYPES,
    ...(signal === undefined ? {} : { signal }),
  });
  return { bytes: new Uint8Array(fetched.bytes.buffer, fetched.bytes.byteOffset, fetched.bytes.length) };
}
