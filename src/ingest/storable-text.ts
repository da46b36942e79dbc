/**
 * Text the store can keep. Milvus stores strings as UTF-8, and a JavaScript string can hold what UTF-8
 * cannot encode: a lone UTF-16 surrogate (`"\ud800"` in JSON), which Milvus refuses for the whole
 * upsert. Pipelines check every caller string (metadata keys and values, a triple's question and answer,
 * names and URLs) before any blob is written, so such an item fails alone, naming the field.
 */
import { ValidationError } from "../errors.ts";

/** A lone surrogate: with the `u` flag, a surrogate that is half of a pair is not matched. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const LONE_SURROGATES = /[\uD800-\uDFFF]/gu;

/** Deepest nesting of a value that is walked; deeper values are refused (metadata is small and flat). */
const MAX_DEPTH = 32;

/** Where a value holds text the store cannot keep, and what is wrong there. */
export interface MalformedText {
  /** The field, as the caller wrote it: `metadata.tags[1]`, `metadata.<key>` for a bad key, `question`. */
  field: string;
  /** The code unit at fault, as `U+D800`. */
  codeUnit: string;
  /** Its position in the string, in UTF-16 code units. */
  at: number;
}

function loneSurrogateIn(text: string): { codeUnit: string; at: number } | undefined {
  const match = LONE_SURROGATE.exec(text);
  if (match === null) return undefined;
  const unit = match[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
  return { codeUnit: `U+${unit}`, at: match.index };
}

function fieldOfKey(parent: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/** The first string in `value` (keys included, depth first) the store cannot keep, if any. */
export function findMalformedText(value: unknown, field: string, depth = 0): MalformedText | undefined {
  if (typeof value === "string") {
    const bad = loneSurrogateIn(value);
    return bad === undefined ? undefined : { field, ...bad };
  }
  if (typeof value !== "object" || value === null || depth > MAX_DEPTH) return undefined;
  if (Array.isArray(value)) {
    for (const [index, entry] of value.entries()) {
      const bad = findMalformedText(entry, `${field}[${index}]`, depth + 1);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }
  for (const [key, entry] of Object.entries(value)) {
    const keyProblem = loneSurrogateIn(key);
    // The key itself cannot be echoed as it is (it would not encode either), so it is named by position.
    if (keyProblem !== undefined)
      return { field: `${field} key ${JSON.stringify(toStorableText(key))}`, ...keyProblem };
    const bad = findMalformedText(entry, fieldOfKey(field, key), depth + 1);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

/**
 * @throws {ValidationError} naming the field when `value` holds text the store cannot keep.
 */
export function assertStorableText(value: unknown, field: string): void {
  const bad = findMalformedText(value, field);
  if (bad === undefined) return;
  throw new ValidationError(
    `${bad.field} holds a lone UTF-16 surrogate (${bad.codeUnit} at position ${bad.at}), which UTF-8 cannot encode, so it cannot be stored. Send well-formed Unicode text (surrogates only in pairs).`,
    { context: { field: bad.field, codeUnit: bad.codeUnit, at: bad.at } },
  );
}

/** `text` with each lone surrogate replaced by U+FFFD, for names Loupe keeps but does not validate. */
export function toStorableText(text: string): string {
  return text.replace(LONE_SURROGATES, "\uFFFD");
}
