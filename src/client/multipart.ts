/**
 * The multipart bodies the client sends: image and video uploads, and a search by an uploaded image.
 * Field names are the routes': `files` (repeatable) with `metadata` JSON for images and videos, `image`
 * with the other search options as text fields.
 */
import type { Metadata, SearchRequest } from "./types.ts";
import { fileOf, type Upload } from "./uploads.ts";

/**
 * `POST /v1/images`: every file under `files`; when any has metadata, one `metadata` field per file in
 * the same order (`{}` for a file without), since the route takes one for all or one for each.
 */
export function imagesForm(files: ReadonlyArray<{ file: Upload; metadata?: Metadata }>): FormData {
  const form = new FormData();
  for (const { file } of files) form.append("files", fileOf(file));
  if (files.some(({ metadata }) => metadata !== undefined)) {
    for (const { metadata } of files) form.append("metadata", JSON.stringify(metadata ?? {}));
  }
  return form;
}

/** `POST /v1/videos`: every file under `files`, and one `metadata` field for all of them. */
export function videosForm(files: readonly Upload[], metadata: Metadata | undefined): FormData {
  const form = new FormData();
  for (const file of files) form.append("files", fileOf(file));
  if (metadata !== undefined) form.set("metadata", JSON.stringify(metadata));
  return form;
}

/** `POST /v1/search` by an uploaded image: the file under `image`, `kinds` comma-separated, `filter` as JSON. */
export function searchForm({
  image,
  text,
  mode,
  kinds,
  topK,
  filter,
}: SearchRequest & { image: Upload }): FormData {
  const form = new FormData();
  form.set("image", fileOf(image));
  if (text !== undefined && text.trim() !== "") form.set("text", text);
  if (mode !== undefined) form.set("mode", mode);
  if (kinds !== undefined) form.set("kinds", kinds.join(","));
  if (topK !== undefined) form.set("topK", String(topK));
  if (filter !== undefined) form.set("filter", JSON.stringify(filter));
  return form;
}
