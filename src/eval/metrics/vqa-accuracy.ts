/**
 * VQAv2 accuracy as the official evaluation script (`vqaEval.py` of the VQA API) computes it, including
 * its answer normalization, and plain accuracy for questions with a single reference answer.
 *
 * The official rules, reproduced here quirks included, so figures compare with published ones:
 * - The predicted answer has tabs and newlines turned into spaces and is trimmed, then goes through
 *   punctuation handling and digit/article handling.
 * - Reference answers are not trimmed; they only get punctuation handling, and only when the humans
 *   disagree (the set of their raw answers has more than one member). The official annotation files are
 *   already normalized (lowercase, digits), so this only matters for hand-made references: write them
 *   lowercase, with digits and without articles.
 * - Punctuation: each of `; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !` is deleted when the text has it next
 *   to a space, or when the text has a comma between two digits anywhere (so `1,000` becomes `1000`);
 *   otherwise it becomes a space. Then a period not followed by a digit is deleted (`3.5` keeps its
 *   period). The official call passes `re.UNICODE` where Python expects the count, so at most 32 periods
 *   are deleted.
 * - Digits and articles: lowercase, split on whitespace, number words `none`, `zero` … `ten` become
 *   digits, the articles `a`, `an`, `the` are dropped, and unapostrophed contractions get their
 *   apostrophe back (`dont` → `don't`).
 * - Accuracy: for each of the n references, the other n − 1 form a subset; the subset scores
 *   min(#references equal to the prediction / 3, 1); the accuracy is the mean over the n subsets.
 */
import { ValidationError } from "../../errors.ts";

/** The official contractions table, as written there (keys with capitals never match lowercased words). */
export const VQA_CONTRACTIONS: Readonly<Record<string, string>> = {
  aint: "ain't",
  arent: "aren't",
  cant: "can't",
  couldve: "could've",
  couldnt: "couldn't",
  "couldn'tve": "couldn't've",
  "couldnt've": "couldn't've",
  didnt: "didn't",
  doesnt: "doesn't",
  dont: "don't",
  hadnt: "hadn't",
  "hadnt've": "hadn't've",
  "hadn'tve": "hadn't've",
  hasnt: "hasn't",
  havent: "haven't",
  hed: "he'd",
  "hed've": "he'd've",
  "he'dve": "he'd've",
  hes: "he's",
  howd: "how'd",
  howll: "how'll",
  hows: "how's",
  "Id've": "I'd've",
  "I'dve": "I'd've",
  Im: "I'm",
  Ive: "I've",
  isnt: "isn't",
  itd: "it'd",
  "itd've": "it'd've",
  "it'dve": "it'd've",
  itll: "it'll",
  "let's": "let's",
  maam: "ma'am",
  mightnt: "mightn't",
  "mightnt've": "mightn't've",
  "mightn'tve": "mightn't've",
  mightve: "might've",
  mustnt: "mustn't",
  mustve: "must've",
  neednt: "needn't",
  notve: "not've",
  oclock: "o'clock",
  oughtnt: "oughtn't",
  "ow's'at": "'ow's'at",
  "'ows'at": "'ow's'at",
  "'ow'sat": "'ow's'at",
  shant: "shan't",
  "shed've": "she'd've",
  "she'dve": "she'd've",
  "she's": "she's",
  shouldve: "should've",
  shouldnt: "shouldn't",
  "shouldnt've": "shouldn't've",
  "shouldn'tve": "shouldn't've",
  "somebody'd": "somebodyd",
  "somebodyd've": "somebody'd've",
  "somebody'dve": "somebody'd've",
  somebodyll: "somebody'll",
  somebodys: "somebody's",
  someoned: "someone'd",
  "someoned've": "someone'd've",
  "someone'dve": "someone'd've",
  someonell: "someone'll",
  someones: "someone's",
  somethingd: "something'd",
  "somethingd've": "something'd've",
  "something'dve": "something'd've",
  somethingll: "something'll",
  thats: "that's",
  thered: "there'd",
  "thered've": "there'd've",
  "there'dve": "there'd've",
  therere: "there're",
  theres: "there's",
  theyd: "they'd",
  "theyd've": "they'd've",
  "they'dve": "they'd've",
  theyll: "they'll",
  theyre: "they're",
  theyve: "they've",
  twas: "'twas",
  wasnt: "wasn't",
  "wed've": "we'd've",
  "we'dve": "we'd've",
  weve: "we've",
  werent: "weren't",
  whatll: "what'll",
  whatre: "what're",
  whats: "what's",
  whatve: "what've",
  whens: "when's",
  whered: "where'd",
  wheres: "where's",
  whereve: "where've",
  whod: "who'd",
  "whod've": "who'd've",
  "who'dve": "who'd've",
  wholl: "who'll",
  whos: "who's",
  whove: "who've",
  whyll: "why'll",
  whyre: "why're",
  whys: "why's",
  wont: "won't",
  wouldve: "would've",
  wouldnt: "wouldn't",
  "wouldnt've": "wouldn't've",
  "wouldn'tve": "wouldn't've",
  yall: "y'all",
  "yall'll": "y'all'll",
  "y'allll": "y'all'll",
  "yall'd've": "y'all'd've",
  "y'alld've": "y'all'd've",
  "y'all'dve": "y'all'd've",
  youd: "you'd",
  "youd've": "you'd've",
  "you'dve": "you'd've",
  youll: "you'll",
  youre: "you're",
  youve: "you've",
};

/** Number words the official script turns into digits. */
export const VQA_NUMBER_WORDS: Readonly<Record<string, string>> = {
  none: "0",
  zero: "0",
  one: "1",
  two: "2",
  three: "3",
  four: "4",
  five: "5",
  six: "6",
  seven: "7",
  eight: "8",
  nine: "9",
  ten: "10",
};

const ARTICLES: ReadonlySet<string> = new Set(["a", "an", "the"]);

/** The official punctuation list; the period has its own rule. */
const PUNCTUATION = [
  ";",
  "/",
  "[",
  "]",
  '"',
  "{",
  "}",
  "(",
  ")",
  "=",
  "+",
  "\\",
  "_",
  "-",
  ">",
  "<",
  "@",
  "`",
  ",",
  "?",
  "!",
];

// Python 3's `\d` matches any Unicode decimal digit, hence \p{Nd}. The official period pattern starts with
// `(?!<=\d)`, a lookahead that can never fail before a period (not the lookbehind it looks like), so only
// "not followed by a digit" is left.
const COMMA_BETWEEN_DIGITS = /\p{Nd},\p{Nd}/u;
const PERIOD_NOT_BEFORE_DIGIT = /\.(?!\p{Nd})/gu;
/** `re.UNICODE` (32) lands in `sub`'s count parameter in the official call. */
const MAX_PERIODS_STRIPPED = 32;

/** Python's `str.split()` with no argument: runs of whitespace, no empty words. */
function splitWords(text: string): string[] {
  return text.split(/\s+/u).filter((word) => word.length > 0);
}

/** `\n` and `\t` become spaces and the ends are trimmed, as the script does before anything else. */
function cleanWhitespace(text: string): string {
  return text.replaceAll("\n", " ").replaceAll("\t", " ").trim();
}

/** The official `processPunctuation`. */
export function processPunctuation(text: string): string {
  const commaInDigits = COMMA_BETWEEN_DIGITS.test(text);
  let out = text;
  for (const mark of PUNCTUATION) {
    // The test looks at the input text, not at what earlier marks left, as in the official script.
    const touchesSpace = text.includes(`${mark} `) || text.includes(` ${mark}`);
    out = out.replaceAll(mark, touchesSpace || commaInDigits ? "" : " ");
  }
  let stripped = 0;
  return out.replace(PERIOD_NOT_BEFORE_DIGIT, (period) => {
    stripped += 1;
    return stripped <= MAX_PERIODS_STRIPPED ? "" : period;
  });
}

/** The official `processDigitArticle`: lowercase, number words to digits, no articles, contractions. */
export function processDigitArticle(text: string): string {
  const words: string[] = [];
  for (const raw of splitWords(text.toLowerCase())) {
    const word = VQA_NUMBER_WORDS[raw] ?? raw;
    if (!ARTICLES.has(word)) words.push(word);
  }
  return words
    .map((word) => (Object.hasOwn(VQA_CONTRACTIONS, word) ? VQA_CONTRACTIONS[word] : word))
    .join(" ");
}

/**
 * A predicted answer normalized as the official script normalizes predictions: whitespace cleaned,
 * punctuation, then digits, articles and contractions.
 *
 * @example normalizeVqaAnswer("Two dogs.") // "2 dogs"
 */
export function normalizeVqaAnswer(answer: string): string {
  return processDigitArticle(processPunctuation(cleanWhitespace(answer)));
}

/** A predicted answer and the reference answers it is scored against (the human answers for VQAv2). */
export interface VqaPrediction {
  prediction: string;
  references: readonly string[];
}

function checkReferences(references: readonly string[]): void {
  if (references.length === 0) {
    throw new ValidationError(
      "A VQA accuracy needs at least one reference answer, got none; give the human answers (VQAv2 has 10).",
    );
  }
}

/**
 * The official VQAv2 accuracy of one predicted answer against the human answers (10 in VQAv2): the mean,
 * over the leave-one-out subsets of the references, of min(#subset answers equal to the prediction / 3, 1).
 * References are normalized as the official script does (see the module comment); with a single
 * reference, use {@link plainVqaAccuracy} (no subset is left, so this would always be 0).
 *
 * @example vqaAccuracy({ prediction: "two", references: ["2","2","2","2","two","2","3","2","2","2"] }) // 1
 * @throws ValidationError for an empty reference list.
 */
export function vqaAccuracy({ prediction, references }: VqaPrediction): number {
  checkReferences(references);
  const predicted = normalizeVqaAnswer(prediction);
  // References are used as given (not even trimmed), as the official script does.
  const disagree = new Set(references).size > 1;
  const normalized = disagree ? references.map(processPunctuation) : references;
  const matches = normalized.filter((answer) => answer === predicted).length;
  let sum = 0;
  for (const answer of normalized) {
    const others = matches - (answer === predicted ? 1 : 0);
    sum += Math.min(1, others / 3);
  }
  return sum / normalized.length;
}

/**
 * Accuracy against one reference: 1 when prediction and reference are equal after the full normalization
 * (both go through punctuation, digit and article handling), else 0.
 */
export function plainVqaAccuracy({
  prediction,
  reference,
}: {
  prediction: string;
  reference: string;
}): number {
  return normalizeVqaAnswer(prediction) === normalizeVqaAnswer(reference) ? 1 : 0;
}

/**
 * VQA accuracy of a prediction whatever the number of references: the official accuracy for two or more,
 * plain accuracy for one.
 */
export function answerAccuracy({ prediction, references }: VqaPrediction): number {
  checkReferences(references);
  const [only] = references;
  if (references.length === 1 && only !== undefined) return plainVqaAccuracy({ prediction, reference: only });
  return vqaAccuracy({ prediction, references });
}
