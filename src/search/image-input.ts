/**
 * Reading the `image` string of a search, classify or triple request: a data URL, base64, the id of a
 * stored item, or (where the caller allows it) an http(s) URL. Anything else is refused with a message
 * that lists the accepted forms, before any decoder sees the bytes.
 */
import { ValidationError } from "../errors.ts";
import type { ImageReference } from "../media/media-port.ts";
import { isValidRecordId } from "../store/index.ts";
import { kindOfId } from "./search-service.ts";

export type { ImageReference };

const DATA_URL = /^data:([a-z0-9.+-]+\/[a-z0-9.+-]+)?((?:;[a-z0-9-]+=[^;,]*)*);base64,/i;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const BASE64_URL = /^[A-Za-z0-9_-]+={0,2}$/;

function describeForms(allowUrl: boolean): string {
  return `a data URL (data:image/png;base64,…), base64 bytes, the id of a stored item (img_…, seg_…, tri_…)${allowUrl ? " or an http(s) URL" : ""}`;
}

/**
 * Parses an `image` string into bytes, an item id or a URL.
 *
 * @param field name of the field, for messages (`image`, `items[3].image`).
 * @param allowUrl whether an http(s) URL is accepted (the caller then fetches it with `fetchUrl`).
 * @param maxBytes largest decoded image accepted.
 * @throws ValidationError naming the field, what was wrong and the accepted forms.
 */
export function parseImageReference({
  value,
  field = "image",
  allowUrl = false,
  maxBytes,
}: {
  value: string;
  field?: string;
  allowUrl?: boolean;
  maxBytes: number;
}): ImageReference {
  const forms = describeForms(allowUrl);
  const text = value.trim();
  if (text.length === 0) throw new ValidationError(`${field} is empty; send ${forms}.`);
  if (/^https?:\/\//i.test(text)) {
    if (!allowUrl) {
      throw new ValidationError(`${field} is a URL, which this endpoint does not fetch; send ${forms}.`, {
        context: { field },
      });
    }
    return { url: text };
  }
  if (kindOfId(text) !== undefined && isValidRecordId(text) && !text.includes("=")) {
    return { id: text };
  }
  let payload = text;
  const dataUrl = DATA_URL.exec(text);
  if (dataUrl !== null) {
    payload = text.slice(dataUrl[0].length);
  } else if (/^data:/i.test(text)) {
    throw new ValidationError(
      `${field} is a data URL without base64 encoding; use data:<type>;base64,<bytes>.`,
      { context: { field } },
    );
  }
  payload = payload.replace(/\s+/g, "");
  if (!(BASE64.test(payload) || BASE64_URL.test(payload)) || payload.length % 4 === 1) {
    throw new ValidationError(
      `${field} is not valid base64 and not an item id (starts ${JSON.stringify(text.slice(0, 24))}); send ${forms}.`,
      { context: { field } },
    );
  }
  // Decoded size is 3/4 of the text; refuse before decoding a payload that is over the limit.
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 2) {
    throw new ValidationError(
      `${field} holds about ${Math.floor((payload.length * 3) / 4)} bytes; the limit is ${maxBytes} bytes.`,
      { context: { field, limit: maxBytes } },
    );
  }
  const bytes = Buffer.from(payload, BASE64.test(payload) ? "base64" : "base64url");
  if (bytes.length === 0) throw new ValidationError(`${field} decodes to zero bytes; send an image.`);
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) };
}
