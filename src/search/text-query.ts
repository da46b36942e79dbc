/**
 * The text of a search query as the text side reads it: quoted phrases (`"license expired"`, also with
 * curly quotes “…” and „…“), which must occur as written, and the terms of the rest; and the OCR lines of
 * a result that contain a phrase or a term ({@link matchOcrLines}), which a client highlights.
 */
import { readOcrMetadata } from "../media/ocr-lines.ts";
import { phraseKey } from "../store/index.ts";

/** A query split into its quoted phrases and BM25 text. */
export interface TextQuery {
  /**
   * What BM25 ranks by: the whole query without its quote marks (a quoted phrase's words are query terms
   * too, so a query that is only a phrase still ranks).
   */
  text: string;
  /** Quoted phrases, whitespace runs folded to one space; each must occur in a hit's text. */
  phrases: string[];
  /** Words and CJK runs of the query, lower-cased, common English function words left out. */
  terms: string[];
  /**
   * Identifiers written outside quotes, as the query has them: tokens that mix letters and digits
   * (`E1234`, `0x80070005`) or join words with `_` (`ERR_CONN_REFUSED`). A hybrid search ranks the items
   * that contain them first.
   */
  identifiers: string[];
}

/** Most phrases one query may quote. */
export const MAX_QUERY_PHRASES = 8;

/** Opening quote → closing quote. */
const QUOTES: Readonly<Record<string, string>> = { '"': '"', "“": "”", "„": "“", "”": "”", "«": "»" };

/** Words too common to say where a match is (they still count for BM25, which weighs them down itself). */
const FUNCTION_WORDS = new Set([
  "a",
  "an",
  "and",
  "are",
  "as",
  "at",
  "be",
  "by",
  "does",
  "for",
  "from",
  "in",
  "is",
  "it",
  "of",
  "on",
  "or",
  "say",
  "says",
  "shows",
  "that",
  "the",
  "this",
  "to",
  "what",
  "which",
  "with",
]);

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;
const TOKEN = /[\p{L}\p{N}][\p{L}\p{N}_.:-]*[\p{L}\p{N}]|[\p{L}\p{N}]/gu;

function foldSpaces(text: string): string {
  return text.replace(/\s+/gu, " ").trim();
}

/** The tokens of a text, lower-cased (letters and digits, keeping inner `_ . : -` as in `E1234` or `db-01`). */
export function textTokens(text: string): string[] {
  return [...text.toLowerCase().matchAll(TOKEN)].map((match) => match[0]);
}

const IDENTIFIER_TOKEN = /[\p{L}\p{N}][\p{L}\p{N}_.:-]*[\p{L}\p{N}]/gu;

/** Whether a token reads as an identifier: letters and digits mixed, or words joined by `_`. */
function isIdentifier(token: string): boolean {
  if (token.length < 3 || CJK.test(token)) return false;
  const hasDigit = /\p{N}/u.test(token);
  const hasLetter = /\p{L}/u.test(token);
  return (hasDigit && hasLetter) || /[\p{L}\p{N}]_[\p{L}\p{N}]/u.test(token);
}

/** Splits a query into quoted phrases, the BM25 text and the terms that say where a line matches. */
export function parseTextQuery(query: string): TextQuery {
  const phrases: string[] = [];
  let unquoted = "";
  let rest = "";
  let position = 0;
  while (position < query.length) {
    const char = query[position] as string;
    const close = QUOTES[char];
    const end = close === undefined ? -1 : query.indexOf(close, position + 1);
    if (close !== undefined && end > position) {
      const phrase = foldSpaces(query.slice(position + 1, end));
      if (phrase.length > 0 && phrases.length < MAX_QUERY_PHRASES && !phrases.includes(phrase)) {
        phrases.push(phrase);
      }
      rest += ` ${query.slice(position + 1, end)} `;
      position = end + 1;
      continue;
    }
    // An unmatched quote mark is not a phrase: it is dropped like punctuation.
    rest += close === undefined ? char : " ";
    unquoted += close === undefined ? char : " ";
    position += 1;
  }
  const terms = [...new Set(textTokens(rest))].filter((term) => !FUNCTION_WORDS.has(term));
  const identifiers = [...new Set([...unquoted.matchAll(IDENTIFIER_TOKEN)].map((match) => match[0]))]
    .filter(isIdentifier)
    .slice(0, MAX_QUERY_PHRASES);
  return { text: foldSpaces(rest), phrases, terms, identifiers };
}

/** An OCR line of a result that contains a phrase or a term of the query. */
export interface TextMatch {
  /** Position of the line in `metadata.ocr.lines`. */
  line: number;
  text: string;
  /** `[x, y, width, height]` in pixels of the image `metadata.ocr` was read from. */
  box: [number, number, number, number];
  confidence: number;
  /** The query's phrases and terms found in the line, as the query has them (lower-cased terms). */
  matched: string[];
}

/** Most matching lines returned per result. */
export const MAX_TEXT_MATCHES = 20;

/**
 * The OCR lines of a record (its `metadata.ocr`, read through the validating reader) that contain one of
 * the query's phrases (case-insensitive, whitespace folded) or terms (whole tokens; a CJK run anywhere
 * in the line), in reading order, phrase matches before term-only ones, at most {@link MAX_TEXT_MATCHES}.
 */
export function matchOcrLines({
  metadata,
  query,
}: {
  metadata: Record<string, unknown>;
  query: TextQuery;
}): TextMatch[] {
  const reading = readOcrMetadata(metadata);
  if (reading === undefined || (query.phrases.length === 0 && query.terms.length === 0)) return [];
  const matches: Array<TextMatch & { phrase: boolean }> = [];
  reading.lines.forEach((line, index) => {
    const folded = foldSpaces(line.text).toLowerCase();
    const tokens = new Set(textTokens(line.text));
    // Compared as the store compares phrases: letters and digits, OCR's confusions folded.
    const key = phraseKey(line.text);
    const phrases = query.phrases.filter((phrase) => key.includes(phraseKey(phrase)));
    const terms = query.terms.filter((term) =>
      CJK.test(term)
        ? folded.includes(term)
        : tokens.has(term) || (/[\d_.:-]/.test(term) && folded.includes(term)),
    );
    if (phrases.length === 0 && terms.length === 0) return;
    matches.push({
      line: index,
      text: line.text,
      box: [...line.box],
      confidence: line.confidence,
      matched: [...phrases, ...terms],
      phrase: phrases.length > 0,
    });
  });
  return matches
    .sort((left, right) => Number(right.phrase) - Number(left.phrase) || left.line - right.line)
    .slice(0, MAX_TEXT_MATCHES)
    .map(({ phrase: _phrase, ...match }) => match);
}
