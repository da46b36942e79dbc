/**
 * Questions about the text in images: "what does the error say?", "which screenshot shows error
 * E1234?", "what port does it fail on?", "错误信息是什么？". {@link readTextQuestion} tells such a question
 * from one about the pack's visual vocabulary (a question the shapes parser reads as a VQA type stays
 * one) and pulls out what a line of text must hold: the codes it names, its quoted phrases, its content
 * words and what kind of text it asks for. {@link matchLines} then scores the OCR lines of an image
 * against it, so the answer quotes the line that holds the asked code, phrase or kind of message.
 */
import type { OcrLine } from "../media/ocr-lines.ts";
import { type Intent, VQA_INTENT_TYPES } from "./question-parser.ts";

/**
 * The kinds of text a question asks for, besides its own words: an error message, a code, a port, a
 * date, a host, a path or file, a number; `any` when it asks only what the text says.
 */
export type TextFocus = "error" | "code" | "port" | "date" | "host" | "path" | "number" | "any";

/** What a question about text in images asks. */
export interface TextQuestion {
  /** Code-like tokens the question names (`E1234`, `0x80070005`, `ERR_CONNECTION_REFUSED`, `5432`). */
  codes: string[];
  /** The question's quoted phrases (`"license expired"`, `「连接失败」`). */
  phrases: string[];
  /** The question's content words (lower case), the ones a line may hold. */
  keywords: string[];
  /** Pairs of Han characters of the question's content (`冲突`, `尾号`), for text without spaces. */
  cjkKeywords: string[];
  /** The kinds of text asked for ({@link TextFocus}); `any` when only "what does it say". */
  focus: TextFocus[];
  /** True when it asks which stored item shows the text, rather than what an image says. */
  corpusScope: boolean;
  /** What the BM25 search runs on: codes, phrases and content words (or the question, for CJK text). */
  searchText: string;
}

/** An OCR line scored against a question. */
export interface LineMatch {
  line: OcrLine;
  /** Index of the line in its reading. */
  index: number;
  /** How well it answers: larger is better; 0 or less does not answer. */
  score: number;
  /** True when it holds one of the question's codes or quoted phrases. */
  exact: boolean;
}

const ID_PATTERN = /\b(?:img|seg|tri|att)_[A-Za-z0-9]{1,64}\b|\bvid_[0-9a-f]{32}\b/g;
const CJK = /[\u3400-\u9fff\uf900-\ufaff]/;

/** Words that make a question one about text (English), stemmed loosely by prefix. */
const TEXT_CUES =
  /\b(says?|said|saying|reads?|text|texts|written|writes?|wording|words?|messages?|errors?|err|warnings?|codes?|dialog(ue)?s?|popups?|pop-ups?|toasts?|notifications?|alerts?|banners?|logs?|terminal|console|screenshots?|screens?|windows?|titles?|labels?|buttons?|ports?|status|exceptions?|stack ?traces?|crash(es|ed)?|fail(s|ed|ing|ure)?|refused|denied|timeouts?|timed out|receipts?|totals?|invoices?|prices?|amounts?|versions?|hosts?|urls?|addresses|usernames?|e-?mails?|filenames?|paths?|headings?|captions? text|spelled|quoted?)\b/;
/** The same in Chinese. */
const TEXT_CUES_ZH =
  /错误|报错|出错|失败|异常|警告|提示|信息|消息|文字|文本|内容|写(的|着|了)|说(的|了)?什么|显示(的|了)?什么|端口|代码|错误码|编号|截图|日志|弹窗|对话框|通知|标题|按钮|收据|金额|版本/;

const ERROR_FOCUS =
  /\b(errors?|err|wrong|problems?|issues?|fail\w*|crash\w*|exceptions?|warnings?|alerts?|refused|denied|broke\w*|happen\w*)\b|错误|报错|出错|失败|异常|问题|警告/;
const CODE_FOCUS = /\bcodes?\b|\berror (numbers?|ids?)\b|错误码|错误代码|代码|编号/;
const PORT_FOCUS = /\bports?\b|端口/;
const DATE_FOCUS = /\bwhen\b|\bwhat (?:day|date|time)\b|\bwhich (?:day|date)\b|什么时候|何时|哪天|日期|几号/;
const HOST_FOCUS =
  /\b(?:which|what) (?:server|host|hostname|domain|address|ip|machine|site)\b|\b(?:server|host)s? (?:name|address)\b|哪个(?:服务器|主机|地址|域名)|(?:服务器|主机)(?:是|地址)/;
const PATH_FOCUS =
  /\b(?:which|what) (?:path|folder|directory|file|filename|document|drive)\b|哪个(?:路径|文件|目录)|(?:路径|文件名)是/;
const NUMBER_FOCUS = /\bhow (?:many|much|long|big|large)\b|多少|几(?:个|次|秒|分钟|天)/;

/** Words a line of text answers with: failure words, in English and Chinese. */
const ERROR_WORDS =
  /\b(?:err\b|full\b|lost\b|wrong\b|limit\b|out of\b|error|fail|fatal|exception|refused|denied|declined|rejected|timeout|timed ?out|cannot|can't|could ?not|couldn't|may ?not|not ?allowed|unable|invalid|incorrect|expired|not ?found|no ?such|no ?space|not ?enough|insufficient|unreachable|unavailable|no ?route|not ?responding|no ?response|did ?not ?answer|panic|critical|warning|abort|interrupt|stopped|terminated|killed|forbidden|unauthori[sz]ed|missing|corrupt|crash|conflict|locked|blocked|offline|disconnected|overflow|exceeded|too ?many)|错误|失败|异常|拒绝|超时|无法|不能|未能|过期|到期|警告|崩溃|无效|找不到|未找到|不可用|不可达|不足|已满|无权|冲突|中断|终止|过多|上限|没有响应/giu;
/** A code in a line: `E1234`, `ORA-12541`, `0x80070005`, `ERR_CONNECTION_REFUSED`, `HTTP 503`, `code 42`. */
const CODE_IN_LINE =
  /\b[A-Z]{1,8}[-_]?\d{2,8}\b|\b0[xX][0-9A-Fa-f]{4,16}\b|\b[A-Z][A-Z0-9]*(?:_[A-Za-z0-9]+)+\b|\b[A-Z]{2,}(?:[ _]+[A-Z]{2,}){1,6}[ _]+\d{1,3}\b|\b(?:HTTP|[Cc]ode|CODE|[Ss]tatus|STATUS)\s*[:#]?\s*\d{2,6}\b|(?:错误码|代码|编号)\s*[:：]?\s*[A-Za-z0-9_-]+(?:[ _]+[A-Z0-9][A-Z0-9_-]*)*/;
/** Code-like tokens, to take out of a line before reading its words (`ERR_AUTH_FAILED` is no sentence). */
const CODE_TOKENS = /[A-Za-z0-9_.:/\\-]*\d[A-Za-z0-9_.:/\\-]*|\b[A-Z]{2,}(?:_[A-Z0-9]*)+\b/g;
/** What is left of a line that only names a code: `Error code:`, `Reference`, `错误代码：`. */
const CODE_LABEL = /^(?:error|err|error code|code|codes|reference|ref|id|错误|错误代码|错误码|代码|编号)?$/;
const DATE_IN_LINE =
  /\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|\d{4}年\d{1,2}月|\b\d{1,2}:\d{2}(?::\d{2})?\b/;
const HOST_IN_LINE = /\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b|\b\d{1,3}(?:\.\d{1,3}){3}\b/i;
const PATH_IN_LINE = /(?:^|[\s:：(])(?:[A-Za-z]:\\|\/|~\/)[^\s]+|\b[\w.-]+\.[A-Za-z][A-Za-z0-9]{1,4}\b/;
const VALUE_IN_LINE: Partial<Record<TextFocus, RegExp>> = {
  date: DATE_IN_LINE,
  host: HOST_IN_LINE,
  path: PATH_IN_LINE,
  number: /\d/,
};
const PORT_IN_LINE = /(?:\bport|端口)\s*[:#：]?\s*(\d{2,5})\b|(?<![\d.]):(\d{2,5})\b/i;

/** Words of a question that say nothing about what the text holds. */
const STOPWORDS = new Set(
  (
    "a an the this that these those it its it's is are was were be been being am do does did done doing " +
    "what which who whom whose where when why how there here my me our your you we i us they them their " +
    "of in on at to for from by with about into onto over under as and or but if than then so not no " +
    "can could would should will shall may might must please tell show shows shown showing give list " +
    "say says said saying read reads reading text texts written write writes wording word words message " +
    "messages screenshot screenshots screen screens image images picture pictures photo photos item items " +
    "one ones any some all find search see seen display displayed displays appear appears exactly " +
    "stored corpus collection library attached attachment file kind sort type"
  ).split(" "),
);

/**
 * Words that name the kind of text asked for: {@link TextFocus} covers them, so a line is not matched on
 * them again (a dialog titled "Error" says less than its message), but the text search still uses them.
 */
const FOCUS_WORDS = new Set(
  "error errors err code codes port ports problem problems issue issues wrong warning warnings happened happen".split(
    " ",
  ),
);

/** Han characters that carry no content in a question (question words, particles, "screenshot"). */
const CJK_FUNCTION =
  /哪个|哪张|哪些|哪里|哪|什么|多少|怎么|为什么|是否|是不是|这个|这张|那个|截图|图片|图中|屏幕|显示|说了|写着|写的|请问|是|的|了|吗|呢|吧|在|有|和|与|中|上|个|张/gu;

/** Overlapping pairs of Han characters in the content of a question. */
function cjkPairs(text: string): string[] {
  const pairs = new Set<string>();
  for (const run of text.replace(CJK_FUNCTION, " ").match(/[\u3400-\u9fff\uf900-\ufaff]+/gu) ?? []) {
    for (let at = 0; at + 2 <= run.length; at += 1) pairs.add(run.slice(at, at + 2));
  }
  return [...pairs];
}

/** Quoted phrases: "…", “…”, «…», 「…」, 『…』, ‘…’ and '…' (not an apostrophe). */
const QUOTED =
  /"([^"\n]{1,200})"|“([^”\n]{1,200})”|«([^»\n]{1,200})»|「([^」\n]{1,200})」|『([^』\n]{1,200})』|‘([^’\n]{1,200})’|(?<![\p{L}\p{N}])'([^'\n]{2,200})'(?![\p{L}\p{N}])/gu;

const CORPUS_NOUNS =
  "(?:screenshots?|screens?|screen ?shots?|images?|pictures?|photos?|items?|videos?|clips?|frames?|segments?|ones?|files?|captures?|receipts?|dialogs?|windows?)";
const CORPUS_SCOPE = new RegExp(
  [
    `\\b(?:which|what|any|find|search(?: for)?|show me|list|locate)\\s+(?:of (?:the|my) )?(?:\\w+\\s+)?${CORPUS_NOUNS}\\b`,
    `\\b(?:is there|are there|do i have|do we have|have i got)\\s+(?:an?|any)\\s+(?:\\w+\\s+)?${CORPUS_NOUNS}\\b`,
    `\\b(?:in|among|across|from) (?:my|our|the stored|all(?: the)?|the) (?:\\w+\\s+)?(?:screenshots|images|pictures|photos|items|videos|clips|files)\\b`,
    "\\b(?:corpus|collection|library|gallery|stored|indexed)\\b",
  ].join("|"),
);
const CORPUS_SCOPE_ZH =
  /哪(?:个|张|些|一张|一个|幅)?(?:截图|图片|图|屏幕|视频|文件)|找(?:到|出)?.{0,8}(?:截图|图片)|有没有.{0,8}(?:截图|图片)/;
const ATTACHED_SCOPE =
  /\b(?:this|the attached|my attached|attached|that)\s+(?:screenshot|screen|image|picture|photo|one|dialog|window)\b|这张|这个截图|附件/;

/**
 * Codes a question names: letters mixed with digits (`E1234`, `ORA-12541`, `0x80070005`, `v2.3.1`),
 * upper-case words joined by `_` (`ERR_CONNECTION_REFUSED`), and numbers of three digits or more (`5432`).
 * Item ids (`img_…`) are not codes.
 */
export function codesIn(text: string): string[] {
  const codes: string[] = [];
  for (const raw of text.replace(ID_PATTERN, " ").split(/[\s,;!?()[\]{}<>"“”'‘’«»「」『』，。？！：]+/u)) {
    const token = raw.replace(/^[.:#-]+|[.:#-]+$/g, "");
    if (token.length < 3 || token.length > 64) continue;
    const mixed = /[A-Za-z]/.test(token) && /\d/.test(token) && /^[A-Za-z0-9][A-Za-z0-9_.:/-]*$/.test(token);
    const snake = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/.test(token);
    const number = /^\d{3,}$/.test(token);
    if ((mixed || snake || number) && !codes.includes(token)) codes.push(token);
  }
  return codes;
}

/** The quoted phrases of a question, as written. */
export function quotedPhrases(text: string): string[] {
  const phrases: string[] = [];
  for (const match of text.matchAll(QUOTED)) {
    const phrase = match
      .slice(1)
      .find((group) => group !== undefined)
      ?.trim();
    if (phrase !== undefined && phrase.length > 0 && !phrases.includes(phrase)) phrases.push(phrase);
  }
  return phrases;
}

/** Lower-cased, compatibility forms folded, whitespace runs collapsed. */
export function normalizeText(text: string): string {
  return text.normalize("NFKC").toLowerCase().replace(/\s+/g, " ").trim();
}

/**
 * A code as OCR may have read it: upper case, and the letters a recognizer confuses with digits read as
 * those digits (`O`→0, `I`/`L`→1, `Z`→2, `S`→5, `B`→8), so `E1Z34` in a line still matches `E1234`.
 */
function codeKey(code: string): string {
  return code
    .toUpperCase()
    .replace(/O/g, "0")
    .replace(/[IL]/g, "1")
    .replace(/Z/g, "2")
    .replace(/S/g, "5")
    .replace(/B/g, "8");
}

/** A text squashed for comparing codes: its {@link codeKey}, with spaces, `_`, `-` and `.` taken out. */
function squash(text: string): string {
  return codeKey(text.normalize("NFKC")).replace(/[\s_.-]+/g, "");
}

/**
 * Whether a line holds a code, read as OCR reads codes: confusable letters as digits, and spaces, `_`, `-`
 * or `.` inserted or lost (`ERR AUTH_FAILED_52` holds `ERR_AUTH_FAILED_52`), but not a longer number
 * (`E12345` does not hold `E1234`).
 */
function lineHasCode(lineText: string, code: string): boolean {
  const key = squash(code);
  if (key.length === 0) return false;
  const line = squash(lineText);
  for (let at = line.indexOf(key); at >= 0; at = line.indexOf(key, at + 1)) {
    const after = line[at + key.length];
    const before = line[at - 1];
    const digitAfter = after !== undefined && /\d/.test(after) && /\d$/.test(key);
    const digitBefore = before !== undefined && /\d/.test(before) && /^\d/.test(key);
    if (!digitAfter && !digitBefore) return true;
  }
  return false;
}

/**
 * Reads a question as one about text in images, or returns `undefined` when it is not one. A question
 * the shapes parser reads as a VQA type (color, shape, count, presence, size, position) or as a video
 * action stays the parser's: text questions never change how the pack's questions are answered.
 */
export function readTextQuestion(
  question: string,
  intent?: Pick<Intent, "type" | "corpusScope" | "objects" | "inVocabulary">,
  { imageInTurn = false }: { imageInTurn?: boolean } = {},
): TextQuestion | undefined {
  const phrases = quotedPhrases(question);
  const unquoted = question.replace(QUOTED, " ");
  const codes = codesIn(unquoted);
  const lower = normalizeText(unquoted.replace(ID_PATTERN, " "));
  // "How many MB did it need?" counts something no image of the pack shows: a number in the text.
  const countsText =
    intent?.type === "count" &&
    intent.objects.length === 0 &&
    /\bhow (?:many|much)\s+(?!objects?\b|things?\b|shapes?\b|items?\b|ones?\b|are\b|is\b|can\b|do\b)[\p{L}]/u.test(
      lower,
    );
  if (
    intent !== undefined &&
    (VQA_INTENT_TYPES.includes(intent.type) || intent.type === "when") &&
    !countsText
  )
    return undefined;
  const cued = TEXT_CUES.test(lower) || TEXT_CUES_ZH.test(lower);
  // About an image in the turn, a question the pack's vocabulary cannot read is about its text.
  const unread = imageInTurn && intent?.type === "unknown" && intent.inVocabulary === false;
  if (!cued && !countsText && !unread && phrases.length === 0 && codes.length === 0) return undefined;

  const focus: TextFocus[] = [];
  if (ERROR_FOCUS.test(lower)) focus.push("error");
  if (CODE_FOCUS.test(lower)) focus.push("code");
  if (PORT_FOCUS.test(lower)) focus.push("port");
  if (DATE_FOCUS.test(lower)) focus.push("date");
  if (HOST_FOCUS.test(lower)) focus.push("host");
  if (PATH_FOCUS.test(lower)) focus.push("path");
  if (NUMBER_FOCUS.test(lower) && !focus.includes("port")) focus.push("number");
  if (focus.length === 0) focus.push("any");

  const codeWords = new Set(codes.map((code) => code.toLowerCase()));
  const contentWords = [
    ...new Set(
      lower
        .replace(/[^\p{L}\p{N}_\s-]/gu, " ")
        .split(/\s+/)
        .filter(
          (word) =>
            word.length >= 3 &&
            !STOPWORDS.has(word) &&
            !codeWords.has(word) &&
            !CJK.test(word) &&
            /\p{L}/u.test(word),
        ),
    ),
  ];
  const keywords = contentWords.filter((word) => !FOCUS_WORDS.has(word));
  const corpusScope =
    !ATTACHED_SCOPE.test(lower) &&
    (CORPUS_SCOPE.test(lower) || CORPUS_SCOPE_ZH.test(lower) || (intent?.corpusScope ?? false));
  const searchText = CJK.test(question)
    ? question
        .replace(/[^\p{L}\p{N}_\s-]/gu, " ")
        .replace(/\s+/g, " ")
        .trim()
    : [...codes, ...phrases, ...contentWords].join(" ").trim() || question.trim();
  return { codes, phrases, keywords, cjkKeywords: cjkPairs(unquoted), focus, corpusScope, searchText };
}

/** Whether a keyword occurs in a line: as a word, or as the stem of one (`fail` in `failed`). */
function hasKeyword(words: readonly string[], keyword: string): boolean {
  const stem = keyword.length > 4 ? keyword.replace(/(ing|ed|es|s)$/, "") : keyword;
  return words.some((word) => word === keyword || (stem.length >= 3 && word.startsWith(stem)));
}

/** How much a line says: its words, counting about three Han characters as a word. */
function sizeOf(text: string): number {
  const han = (text.match(/[\u3400-\u9fff\uf900-\ufaff]/gu) ?? []).length;
  const other = (
    text.replace(/[\u3400-\u9fff\uf900-\ufaff]/gu, " ").match(/[\p{L}\p{N}][\p{L}\p{N}_.:/\\-]*/gu) ?? []
  ).length;
  return Math.ceil(han / 3) + other;
}

/** Digits OCR put inside a word read as the letters they look like (`ERR0R` → `ERROR`, `INF0` → `INFO`). */
function readAsLetters(text: string): string {
  return text.replace(/\b[A-Za-z]+[015][A-Za-z]*\b|\b[A-Za-z]*[015][A-Za-z]+\b/g, (word) =>
    /\d.*\d/.test(word) ? word : word.replace(/0/g, "O").replace(/1/g, "I").replace(/5/g, "S"),
  );
}

/**
 * Scores every line of a reading against a question, best first (ties in reading order). A question
 * that names codes or quoted phrases is answered only by lines holding one of them; otherwise a line
 * scores for what the question asks (an error message, a code, a port) and for the question's words
 * it holds. A lone word such as a dialog's title ("Error") scores below a line that says what went wrong.
 */
export function matchLines(question: TextQuestion, lines: readonly OcrLine[]): LineMatch[] {
  const needsExact = question.codes.length > 0 || question.phrases.length > 0;
  const matches = lines.map((line, index): LineMatch => {
    const text = normalizeText(line.text);
    const words = text.split(/[^\p{L}\p{N}_-]+/u).filter((word) => word.length > 0);
    const size = sizeOf(text);
    let score = 0;
    let exact = false;
    for (const code of question.codes) {
      if (lineHasCode(line.text, code)) {
        score += 4;
        exact = true;
      }
    }
    for (const phrase of question.phrases) {
      if (text.includes(normalizeText(phrase))) {
        score += 4;
        exact = true;
      }
    }
    const none = { line, index, score: 0, exact };
    if (needsExact && !exact) return none;
    const hasCode = CODE_IN_LINE.test(line.text);
    const hasPort = PORT_IN_LINE.test(line.text);
    // A question after a value (a port, a code) is answered only by a line that holds one.
    if (question.focus.includes("port") && !hasPort) return none;
    if (question.focus.includes("code") && !hasCode && !exact) return none;
    if (question.focus.includes("port")) score += 3;
    if (question.focus.includes("code")) score += 3;
    // A question after a date, a host, a path or a number prefers lines that hold one.
    for (const focus of question.focus)
      if (VALUE_IN_LINE[focus]?.test(line.text)) score += focus === "number" ? 1 : 2;
    if (question.focus.includes("error")) {
      // What the line says besides codes: "Error code: E1234" only names a code.
      const prose = normalizeText(
        readAsLetters(line.text)
          .replace(CODE_TOKENS, " ")
          .replace(/[^\p{L}\p{N}\s'-]/gu, " "),
      );
      if (CODE_LABEL.test(prose) && !question.focus.includes("code") && !exact) return none;
      const failures = new Set((prose.match(ERROR_WORDS) ?? []).map((word) => word.toLowerCase())).size;
      if (failures > 0) score += 2 + 0.5 * (Math.min(failures, 3) - 1);
      // A line that is mostly a code ("ERR AUTH FAILED 59", OCR having dropped the `_`) names the error
      // without saying it.
      const code = CODE_IN_LINE.exec(line.text)?.[0] ?? "";
      const solid = (part: string) => part.replace(/\s+/g, "").length;
      if (!question.focus.includes("code") && !exact && solid(code) >= 0.7 * solid(line.text)) return none;
    }
    for (const keyword of question.keywords) if (hasKeyword(words, keyword)) score += 1;
    const pairs = question.cjkKeywords.filter((pair) => text.includes(pair)).length;
    score += Math.min(pairs, 4) * 0.75;
    if (question.focus.includes("any") && score === 0 && /[\p{L}\p{N}]{2,}/u.test(text)) score = 0.5;
    if (score <= 0) return none;
    // Among lines that answer alike, the one that says more: a message over its dialog's title.
    score += Math.min(size, 8) * 0.15;
    // A single word says little: a title, a button, a label; a row of capitalized words is a menu.
    if (size <= 1 && !exact) score -= 0.75;
    if (!exact && words.length >= 4 && line.text.split(/\s+/).every((word) => /^\p{Lu}/u.test(word)))
      score -= 0.5;
    return { line, index, score, exact };
  });
  return matches.filter((match) => match.score > 0).sort((a, b) => b.score - a.score || a.index - b.index);
}

/**
 * The lines an answer quotes: the best-scoring ones (within half a point of the best), at most
 * `most`, in reading order; for a question that asks only "what does it say", the first lines that say
 * something. Empty when no line answers.
 */
export function bestLines(question: TextQuestion, lines: readonly OcrLine[], most = 3): LineMatch[] {
  let matches = matchLines(question, lines);
  // An error whose message uses no failure word ("X changed Y at the same time"): where the image
  // shows an error code, its longest lines are what the error says.
  const errorOnly = question.focus.length === 1 && question.focus[0] === "error";
  const exactAsked = question.codes.length > 0 || question.phrases.length > 0;
  if (matches.length === 0 && errorOnly && !exactAsked && lines.some((line) => CODE_IN_LINE.test(line.text)))
    matches = matchLines({ ...question, focus: ["any"] }, lines).filter(
      (match) => !CODE_IN_LINE.test(match.line.text),
    );
  const [best] = matches;
  if (best === undefined) return [];
  const chosen = matches
    .filter((match) => match.score >= best.score - 0.5)
    .slice(0, most)
    .sort((a, b) => a.index - b.index);
  // A short error line is often a title ("Sync conflict"): the sentence right after it says what
  // happened, whatever its words (code-only lines and short labels in between are skipped).
  const last = chosen.at(-1);
  if (question.focus.includes("error") && !exactAsked && last !== undefined && chosen.length < most) {
    const titles = chosen.every(
      (match) => sizeOf(normalizeText(match.line.text)) <= 3 && !CODE_IN_LINE.test(match.line.text),
    );
    if (titles) {
      for (let index = last.index + 1; index < Math.min(lines.length, last.index + 4); index += 1) {
        const next = lines[index] as OcrLine;
        const size = sizeOf(normalizeText(next.text.replace(CODE_TOKENS, " ")));
        if (size >= 4) {
          chosen.push({ line: next, index, score: best.score - 0.5, exact: false });
          break;
        }
      }
    }
  }
  return chosen;
}

/**
 * A code as written, where OCR lost its underscores: no space next to `_` or `-`, and upper-case words
 * and a number that are spaced (`ERR FORBIDDEN 60`, `ERR REQUEST TIMEOUT_38`) joined by `_` when there
 * are two words or more before the number, or a `_` already. `HTTP 503` stays as it is.
 */
function asSnakeCode(code: string): string {
  // A hex number is written `0x…`; OCR reads the `x` as a capital as often as not.
  if (/^0X[0-9A-Fa-f]+$/.test(code)) return `0x${code.slice(2)}`;
  const tight = code.replace(/\s*([_-])\s*/g, "$1");
  if (!/^[A-Z]{2,}(?:[ _]+[A-Z0-9]+)+$/.test(tight) || !/ /.test(tight)) return tight;
  const words = tight.split(/[ _]+/);
  return tight.includes("_") || words.length >= 3 ? words.join("_") : tight;
}

/** The value a question asks for in a line: the port number, or the code (the question's, else the line's). */
export function askedValue(
  question: TextQuestion,
  lineText: string,
): { kind: "port" | "code"; value: string } | undefined {
  if (question.focus.includes("port")) {
    const port = PORT_IN_LINE.exec(lineText);
    const value = port?.[1] ?? port?.[2];
    if (value !== undefined) return { kind: "port", value };
  }
  if (question.focus.includes("code")) {
    const named = question.codes.find((code) => lineHasCode(lineText, code));
    if (named !== undefined) return { kind: "code", value: named };
    const found = CODE_IN_LINE.exec(lineText)?.[0];
    // A code has no space next to its `_` or `-`: OCR put it there (`ERR _NETWORK_UNREACHABLE_69`).
    if (found !== undefined)
      return {
        kind: "code",
        value: asSnakeCode(found.replace(/^(?:code|status|错误码|代码|编号)\s*[:#：]?\s*/i, "")),
      };
  }
  return undefined;
}
