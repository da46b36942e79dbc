/**
 * Digits inside words, put right after recognition. SVTR reads a round `O` as `0`, an `I` or `l` as `1`
 * and an `S` as `5` when the font makes them alike: `ERR0R`, `INF0`, `c0de`, `fai1ed`, `0RA-12541`. A
 * word of letters with such a digit between two letters (or a `0` at an end of an upper-case word of two
 * or more letters, or a `0` opening a lower-case word: `0ut`) is a word, not a code: the digit becomes
 * the letter, in the word's case. Tokens with any other digit (`E1234`, `0x8007`, `v2`), or with as many
 * digits as letters (`l10n`), are left alone, and so are words whose digit sits at an end (`eth0`,
 * `sha1`, `MD5`) unless the case rule says so.
 * Search and quoted phrases fold the same confusions on both sides (the store's `phraseKey`); this makes
 * the stored words themselves right, so BM25 and exact word matches find `ERROR` in a line read `ERR0R`.
 */

/** A run of Latin letters and the digits a recognizer confuses with them, bounded by anything else. */
const WORDLIKE = /(?<![\p{L}\p{N}])[A-Za-z015]{2,}(?![\p{L}\p{N}])/gu;

const UPPER: Record<string, string> = { "0": "O", "1": "I", "5": "S" };
const LOWER: Record<string, string> = { "0": "o", "1": "l", "5": "s" };

/** One token read as a word when its digits are letters a recognizer misread, else unchanged. */
function wordFromToken(token: string): string {
  const letters = token.replace(/[015]/g, "");
  const digits = token.length - letters.length;
  if (digits === 0 || letters.length < 2 || digits >= letters.length) return token;
  const upper = letters === letters.toUpperCase();
  const table = upper ? UPPER : LOWER;
  const chars = [...token];
  let changed = false;
  for (let index = 0; index < chars.length; index += 1) {
    const char = chars[index] as string;
    if (!/[015]/.test(char)) continue;
    const before = chars[index - 1];
    const after = chars[index + 1];
    const inside =
      before !== undefined && after !== undefined && /[A-Za-z]/.test(before) && /[A-Za-z]/.test(after);
    // A `0` opening a lower-case word is the capital O of a sentence's first word (`0ut of memory`).
    if (index === 0 && char === "0" && /^[a-z]{2,}$/.test(token.slice(1))) {
      chars[index] = "O";
      changed = true;
      continue;
    }
    // At an end, only an upper-case word's `0` (INF0, 0RA): `eth0`, `sha1` and `MD5` are names.
    const atEnd =
      !inside &&
      char === "0" &&
      upper &&
      letters.length >= 2 &&
      (before === undefined || after === undefined);
    if (!inside && !atEnd) return token;
    chars[index] = table[char] as string;
    changed = true;
  }
  return changed ? chars.join("") : token;
}

/** A recognized line with the letters read as digits inside its words put right (see the module). */
export function correctRecognizedText(text: string): string {
  return text.replace(WORDLIKE, wordFromToken);
}
