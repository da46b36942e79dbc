/**
 * Queries and chat cases over a set of screens, with their relevant screens computed from the ground
 * truth (never assumed): an exact error code, a quoted phrase cut from one line, a paraphrase of the
 * problem (optionally naming the app), Chinese phrases and paraphrases for Chinese screens, and chat
 * questions whose answers are on the screen.
 */
import type { Rng } from "../rng.ts";
import type { ScreenLine } from "./render.ts";
import { scriptOf } from "./render.ts";
import type { ScreenLanguage } from "./vocabulary.ts";
import { ERROR_TOPICS } from "./vocabulary.ts";

/** Query types, as figures break recall down. */
export const SCREEN_QUERY_TYPES = ["code", "phrase", "paraphrase", "chinese"] as const;
export type ScreenQueryType = (typeof SCREEN_QUERY_TYPES)[number];

/** What ground truth a query or chat case needs of a screen. */
export interface ScreenFacts {
  id: string;
  language: ScreenLanguage;
  app: string;
  topic: string;
  code: string;
  message: string;
  facts: Record<string, string>;
  lines: readonly Pick<ScreenLine, "text" | "role" | "script">[];
}

/** A text→screenshot query. */
export interface ScreenQuery {
  id: string;
  type: ScreenQueryType;
  /** `phrase` or `paraphrase` for Chinese queries; the type itself otherwise. */
  form: "code" | "phrase" | "paraphrase";
  language: ScreenLanguage;
  text: string;
  /** The screen it was made from. */
  screen: string;
  /** Every screen the query is about, the source first. */
  relevant: string[];
}

/** Kinds of chat questions. */
export const SCREEN_CHAT_TYPES = ["what-says", "which-code", "which-screenshot", "fact"] as const;
export type ScreenChatType = (typeof SCREEN_CHAT_TYPES)[number];

/** A chat question about a screenshot, attached or stored. */
export interface ScreenChatCase {
  id: string;
  type: ScreenChatType;
  language: ScreenLanguage;
  question: string;
  /** The screen asked about: attached to the question, or stored and to be found. */
  screen: string;
  attached: boolean;
  /** Accepted answers: one of them should appear in the answer. */
  answers: string[];
  /** What the answer should cite: `att_1` for the attached screen, else the screen id. */
  evidence: string[];
}

const normalize = (text: string) => text.normalize("NFKC").toLowerCase().replace(/\s+/gu, " ").trim();

/** True when a line of the screen holds `phrase` (case and spacing aside). */
export function screenHasPhrase(screen: Pick<ScreenFacts, "lines">, phrase: string): boolean {
  const wanted = normalize(phrase);
  return screen.lines.some((line) => normalize(line.text).includes(wanted));
}

/**
 * A span of a line to quote: 3–6 words holding a number or a long word, or, for Chinese, one clause (a run
 * of 4–12 Chinese characters between punctuation, spaces or Latin text), as a person would copy it.
 */
function phraseOf(rng: Rng, line: string): string | undefined {
  if (scriptOf(line) === "cjk") {
    const clauses = (line.match(/[\u4e00-\u9fff]+/gu) ?? []).filter(
      (run) => run.length >= 4 && run.length <= 12,
    );
    return clauses.length === 0 ? undefined : rng.pick(clauses);
  }
  const words = line.split(" ").filter((word) => word.length > 0);
  if (words.length < 3) return undefined;
  const length = Math.min(words.length, rng.int(3, 6));
  const starts = [...Array(words.length - length + 1).keys()];
  const specific = (start: number) =>
    words.slice(start, start + length).some((word) => /\d/u.test(word) || word.length >= 7);
  const preferred = starts.filter(specific);
  const start = rng.pick(preferred.length > 0 ? preferred : starts);
  return words
    .slice(start, start + length)
    .join(" ")
    .replace(/^[^\p{L}\p{N}/\\]+|[^\p{L}\p{N}]+$/gu, "");
}

/** The queries of one screen: its code, a quoted phrase, and a paraphrase (Chinese ones for Chinese screens). */
export function screenQueries({
  rng,
  screen,
  screens,
  nextId,
}: {
  rng: Rng;
  screen: ScreenFacts;
  screens: readonly ScreenFacts[];
  nextId: () => string;
}): ScreenQuery[] {
  const queries: ScreenQuery[] = [];
  const relevantTo = (test: (other: ScreenFacts) => boolean) => [
    screen.id,
    ...screens.filter((other) => other.id !== screen.id && test(other)).map((other) => other.id),
  ];
  const codeText = rng.pick([screen.code, screen.code, `error ${screen.code}`, `${screen.code} screenshot`]);
  queries.push({
    id: nextId(),
    type: "code",
    form: "code",
    language: "en",
    text: codeText,
    screen: screen.id,
    relevant: relevantTo((other) => screenHasPhrase(other, screen.code)),
  });
  const zh = screen.language === "zh";
  const sources = screen.lines.filter(
    (line) =>
      (line.role === "message" || line.role === "detail" || line.role === "title") &&
      (zh ? line.script === "cjk" : true),
  );
  for (const line of rng.shuffle(sources)) {
    const phrase = phraseOf(rng, line.text);
    if (phrase === undefined || phrase.length < 4 || phrase === screen.code) continue;
    queries.push({
      id: nextId(),
      type: zh ? "chinese" : "phrase",
      form: "phrase",
      language: screen.language,
      text: `"${phrase}"`,
      screen: screen.id,
      relevant: relevantTo((other) => screenHasPhrase(other, phrase)),
    });
    break;
  }
  const topic = ERROR_TOPICS.find((entry) => entry.id === screen.topic);
  if (topic !== undefined) {
    const paraphrase = rng.pick(topic.paraphrase[screen.language]);
    const withApp = rng.bool(0.5);
    const text = withApp
      ? zh
        ? `${screen.app} ${paraphrase}`
        : `${paraphrase} in ${screen.app}`
      : paraphrase;
    queries.push({
      id: nextId(),
      type: zh ? "chinese" : "paraphrase",
      form: "paraphrase",
      language: screen.language,
      text,
      screen: screen.id,
      relevant: relevantTo(
        (other) =>
          other.topic === screen.topic &&
          other.language === screen.language &&
          (!withApp || other.app === screen.app),
      ),
    });
  }
  return queries;
}

/**
 * What a "what does the error say" answer should quote: the message, or when it wrapped over several
 * lines, any of its pieces.
 */
export function messageAnswers(screen: ScreenFacts): string[] {
  if (screenHasPhrase(screen, screen.message)) return [screen.message];
  const pieces = screen.lines.filter((line) => line.role === "message").map((line) => line.text);
  return pieces.length === 0 ? [screen.message] : pieces;
}

const QUESTIONS: Record<ScreenChatType, Record<ScreenLanguage, readonly string[]>> = {
  "what-says": {
    en: ["What does the error say?", "What does the error message say?"],
    zh: ["错误信息是什么？", "这个报错说了什么？"],
  },
  "which-code": {
    en: ["What is the error code?", "Which error code is shown?"],
    zh: ["错误代码是什么？"],
  },
  "which-screenshot": {
    en: ["Which screenshot shows error {code}?", "Which screenshot has the error {code}?"],
    zh: ["哪张截图显示错误 {code}？"],
  },
  fact: { en: [], zh: [] },
};

/** One chat case of `type` about `screen`. */
export function screenChatCase({
  rng,
  screen,
  type,
  id,
}: {
  rng: Rng;
  screen: ScreenFacts;
  type: ScreenChatType;
  id: string;
}): ScreenChatCase {
  const language = screen.language;
  if (type === "fact") {
    const topic = ERROR_TOPICS.find((entry) => entry.id === screen.topic);
    const fact = topic?.factQuestion.fact ?? "port";
    const value = screen.facts[fact] ?? "";
    if (topic !== undefined && value !== "" && screenHasPhrase(screen, value)) {
      return {
        id,
        type,
        language,
        question: rng.pick(topic.factQuestion.question[language]),
        screen: screen.id,
        attached: true,
        answers: [value],
        evidence: ["att_1"],
      };
    }
    return screenChatCase({ rng, screen, type: "which-code", id });
  }
  const question = rng.pick(QUESTIONS[type][language]).replace("{code}", screen.code);
  if (type === "which-screenshot") {
    return {
      id,
      type,
      language,
      question,
      screen: screen.id,
      attached: false,
      answers: [screen.code],
      evidence: [screen.id],
    };
  }
  const answers = type === "what-says" ? messageAnswers(screen) : [screen.code];
  return { id, type, language, question, screen: screen.id, attached: true, answers, evidence: ["att_1"] };
}
