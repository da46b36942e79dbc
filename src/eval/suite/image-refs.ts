/**
 * The images cases and triples refer to ({@link ImageRef}): how records name them, what the HTTP API is
 * sent for them, and which file shows them in reports.
 */
import { dataUrlOf } from "./client.ts";
import type { CorpusImage, ImageRef } from "./suite.ts";

/** How a record names an image: `file:…`, `corpus:…` or `stored:…`, never the image itself. */
export function describeImage(ref: ImageRef): string {
  return ref.kind === "file" ? `file:${ref.path}` : `${ref.kind}:${ref.id}`;
}

/**
 * What the HTTP API is sent for an image: a data URL of a file or corpus image, or a stored id as is.
 *
 * @throws Error when a corpus reference names an image the suite does not have.
 */
export async function imageValue({
  ref,
  images,
}: {
  ref: ImageRef;
  images: readonly CorpusImage[];
}): Promise<string> {
  if (ref.kind === "file") return dataUrlOf(ref.path);
  if (ref.kind === "stored") return ref.id;
  const image = images.find((item) => item.id === ref.id);
  if (image === undefined) throw new Error(`Corpus image ${ref.id} is not in the suite.`);
  return dataUrlOf(image.path);
}

/** The file an image reference points at (for thumbnails), or undefined for a stored id. */
export function imagePath({
  ref,
  images,
}: {
  ref: ImageRef;
  images: readonly CorpusImage[];
}): string | undefined {
  return ref.kind === "file"
    ? ref.path
    : ref.kind === "corpus"
      ? images.find((item) => item.id === ref.id)?.path
      : undefined;
}
