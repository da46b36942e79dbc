/**
 * Reads a question (or a sentence of an answer) in the visual vocabulary of the model pack: which kind of
 * visual fact it asks about (the six VQA types, a search for objects, when an action happens in a video,
 * or what is in a part of an image) and which objects it names. The chain uses the result to put
 * canonical questions to the VQA head (worded like the ones it was trained on), to recognise follow-ups,
 * to tell whether two questions mean the same, and to decline questions outside what the corpus and the
 * models can answer.
 *
 * The vocabulary (colors, shapes, sizes, actions and the words for them) is the pack's own
 * (`vocabulary.json`); the question grammar around it ("how many", "what color", "is there") is
 * English. A question that names none of the vocabulary parses as `unknown`. Over a pack that declares
 * no vocabulary every question does, and the chain then relies on retrieval scores and the LLM alone.
 */
import { isEmptyVocabulary, type PackVocabulary } from "../inference/index.ts";
import { areaNamed, type ImageArea } from "./image-area.ts";

/** One object a question names: any of its attributes may be missing (`a blue object`, `two stars`). */
export interface ObjectMention {
  /** One of the vocabulary's colors. */
  color?: string;
  /** One of the vocabulary's shape names (singular). */
  shape?: string;
  /** One of the vocabulary's size names. */
  size?: string;
  /** A count word or digit in front of it (`two stars`). */
  count?: number;
}

/** The kinds of question the parser recognises. */
export type IntentType =
  | "color"
  | "shape"
  | "count"
  | "exist"
  | "size"
  | "position"
  | "find"
  | "when"
  | "describe"
  | "area"
  | "unknown";

/** What a question asks, in the pack's vocabulary. */
export interface Intent {
  type: IntentType;
  /** The objects named, in order (one for color/shape/size/position/count, any number for exist/find). */
  objects: ObjectMention[];
  /** For `when`: the action asked about (its name in the vocabulary). */
  action?: string;
  /**
   * For `area` ("what is in the top-left?"): the part of the image asked about (see `image-area.ts`);
   * also on an `unknown` follow-up that names only an area ("and the bottom-right?").
   */
  area?: ImageArea;
  /** Ids of stored items or videos the question names (`img_…`, `seg_…`, `tri_…`, `vid_…`). */
  ids: string[];
  /** True when the question asks about the corpus ("is there an image with…", "which video…"). */
  corpusScope: boolean;
  /** True when the question leans on an earlier turn ("and how many are blue?", "what about the star?"). */
  followUp: boolean;
  /**
   * True when the question uses any of the pack's visual vocabulary, and for every question when the
   * pack declares none (nothing rules a question out then). A question outside the vocabulary is one
   * the corpus cannot answer: the offline composer declines it whatever retrieval found.
   */
  inVocabulary: boolean;
}

/** Types the VQA head answers directly. */
export const VQA_INTENT_TYPES: readonly IntentType[] = [
  "color",
  "shape",
  "count",
  "exist",
  "size",
  "position",
];

const COUNT_WORDS: Record<string, number> = {
  no: 0,
  zero: 0,
  one: 1,
  single: 1,
  two: 2,
  three: 3,
  four: 4,
  "0": 0,
  "1": 1,
  "2": 2,
  "3": 3,
  "4": 4,
};

const GENERIC_NOUNS = new Set([
  "object",
  "objects",
  "thing",
  "things",
  "shape",
  "shapes",
  "one",
  "ones",
  "item",
  "items",
]);

const ID_PATTERN = /\b(?:img|seg|tri)_[A-Za-z0-9]{6,64}\b|\bvid_[0-9a-f]{32}\b/g;

const CORPUS_PATTERN =
  /\b(any|an|which|what|some)\s+(images?|pictures?|photos?|videos?|clips?|segments?|items?)\b|\b(images|pictures|photos|videos|clips)\b|\b(corpus|collection|library|database|gallery|stored)\b|\bin (the )?video\b|\bshow me\b|\bfind\b|\bsearch\b/;
const ATTACHED_PATTERN =
  /\b(this|the attached|my|that|attached)\s+(image|picture|photo|one)\b|\bin it\b|\bhere\b/;
const FOLLOW_UP_PATTERN =
  /^(and|also|what about|how about|and what about|then|ok(ay)?,? and)\b|\b(it|they|them|those|these|that one|this one)\b/;

/** Lower-cases, spells `colour` as `color`, and reduces punctuation to spaces (ids are kept). */
export function normalizeQuestion(text: string): string {
  return text
    .toLowerCase()
    .replace(/colou?rs?\b/g, (word) => (word.endsWith("s") ? "colors" : "color"))
    .replace(/\bgrey\b/g, "gray")
    .replace(/[^a-z0-9_\s]/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

/** A vocabulary turned into the lookups the parser runs on every word. */
interface VocabularyIndex {
  empty: boolean;
  colors: ReadonlySet<string>;
  /** Shape names and plurals → the shape name. */
  shapes: ReadonlyMap<string, string>;
  /** Shape names → their plurals. */
  plurals: ReadonlyMap<string, string>;
  /** Size names and synonyms → the size name. */
  sizes: ReadonlyMap<string, string>;
  actions: ReadonlyArray<{ name: string; patterns: RegExp[]; cues: ReadonlyArray<ReadonlySet<string>> }>;
}

const indexes = new WeakMap<PackVocabulary, VocabularyIndex>();

function indexOf(vocabulary: PackVocabulary): VocabularyIndex {
  let index = indexes.get(vocabulary);
  if (index === undefined) {
    const shapes = new Map<string, string>();
    const plurals = new Map<string, string>();
    for (const { name, plural } of vocabulary.shapes) {
      shapes.set(name, name);
      shapes.set(plural, name);
      plurals.set(name, plural);
    }
    const sizes = new Map<string, string>();
    for (const { name, synonyms } of vocabulary.sizes) {
      sizes.set(name, name);
      for (const synonym of synonyms) sizes.set(synonym, name);
    }
    index = {
      empty: isEmptyVocabulary(vocabulary),
      colors: new Set(vocabulary.colors),
      shapes,
      plurals,
      sizes,
      actions: vocabulary.actions.map((action) => ({
        name: action.name,
        patterns: action.patterns.map((pattern) => new RegExp(pattern)),
        cues: action.cues.map((group) => new Set(group)),
      })),
    };
    indexes.set(vocabulary, index);
  }
  return index;
}

/** The shape a word names in a vocabulary (a shape's name or its plural), as the shape's name. */
export function shapeNamed(word: string, vocabulary: PackVocabulary): string | undefined {
  return indexOf(vocabulary).shapes.get(word);
}

/** The size a word names in a vocabulary (a size's name or a synonym), as the size's name. */
export function sizeNamed(word: string, vocabulary: PackVocabulary): string | undefined {
  return indexOf(vocabulary).sizes.get(word);
}

/**
 * The objects a text names, read left to right: modifiers (count, size, color) gather until a noun (a
 * shape, or `object`/`thing`/`one`) closes the mention. A color with no noun after it (`how many are
 * blue`) is a mention of its own. Colors, shapes and sizes are the vocabulary's.
 */
export function extractObjects(normalized: string, vocabulary: PackVocabulary): ObjectMention[] {
  const index = indexOf(vocabulary);
  const words = normalized.split(" ");
  const mentions: ObjectMention[] = [];
  let pending: ObjectMention = {};
  const hasAny = (mention: ObjectMention) =>
    mention.color !== undefined || mention.shape !== undefined || mention.size !== undefined;
  const flush = () => {
    if (hasAny(pending)) mentions.push(pending);
    pending = {};
  };
  for (const word of words) {
    const shape = index.shapes.get(word);
    if (shape !== undefined) {
      if (pending.shape !== undefined) flush();
      pending.shape = shape;
      flush();
      continue;
    }
    if (index.colors.has(word)) {
      if (pending.color !== undefined) flush();
      pending.color = word;
      continue;
    }
    const size = index.sizes.get(word);
    if (size !== undefined) {
      pending.size = size;
      continue;
    }
    // An own key only: `constructor` and the like are no count.
    const count = Object.hasOwn(COUNT_WORDS, word) ? COUNT_WORDS[word] : undefined;
    if (count !== undefined && word !== "no" && word !== "one") {
      flush();
      pending.count = count;
      continue;
    }
    if (GENERIC_NOUNS.has(word)) {
      flush();
      continue;
    }
    if (word === "and" || word === "with" || word === "plus" || word === "or" || word === "next") flush();
  }
  flush();
  return mentions;
}

/** The first action whose pattern matches; failing that, the first whose cues all appear. */
function detectAction(normalized: string, index: VocabularyIndex): string | undefined {
  for (const action of index.actions) {
    if (action.patterns.some((pattern) => pattern.test(normalized))) return action.name;
  }
  const words = new Set(normalized.split(" "));
  for (const action of index.actions) {
    if (action.cues.length === 0) continue;
    if (action.cues.every((group) => [...group].some((word) => words.has(word)))) return action.name;
  }
  return undefined;
}

/** Words that ask what is somewhere ("what is in the top-left?", "anything on the right?"). */
const AREA_ASK = /\b(what|which|anything|something|list|name|tell me|describe|show)\b/;

function classify(
  normalized: string,
  objects: readonly ObjectMention[],
  action: string | undefined,
  area: ImageArea | undefined,
): IntentType {
  const first = objects[0];
  if (action !== undefined) return "when";
  if (/\b(how many|count|number of)\b/.test(normalized)) return "count";
  if (/\b(left or (the )?right|right or (the )?left|which side|what side)\b/.test(normalized))
    return "position";
  if (
    /\b(small or large|large or small|big or small|small or big|what size|which size|how big|how large)\b/.test(
      normalized,
    )
  ) {
    return "size";
  }
  if (/\bcolor\b/.test(normalized) && first?.shape !== undefined && first.color === undefined) return "color";
  if (
    /\b(what|which|name the|kind of)\b.*\bshape\b|\bshape (is|of)\b/.test(normalized) &&
    first?.color !== undefined
  ) {
    return "shape";
  }
  if (area !== undefined && objects.length === 0 && AREA_ASK.test(normalized)) return "area";
  if (/\b(describe|what is in|what s in|what do you see|what does .* show|caption)\b/.test(normalized))
    return "describe";
  if (
    /\b(is there|are there|is a|are any|can you see|do you see|does (the|this|it|that) (image|picture|photo)? ?(contain|show|have)|contain|present|any)\b/.test(
      normalized,
    ) &&
    objects.length > 0
  ) {
    return "exist";
  }
  if (
    /\b(show me|find|search|look for|images? (with|of)|pictures? (with|of)|photos? (with|of)|which (image|picture|photo)s?)\b/.test(
      normalized,
    ) &&
    objects.length > 0
  ) {
    return "find";
  }
  return "unknown";
}

/**
 * Parses a question in a pack's vocabulary. Pure and fast: safe to run on every turn and on every
 * sentence of an answer. With a vocabulary that declares nothing, only the ids a question names, whether
 * it is about the corpus and whether it follows up are read; its type is `unknown`, and it is not ruled
 * out of the vocabulary, so the chain answers it from retrieval.
 */
export function parseQuestion(text: string, vocabulary: PackVocabulary): Intent {
  const index = indexOf(vocabulary);
  const ids = [...new Set(text.match(ID_PATTERN) ?? [])];
  const normalized = normalizeQuestion(text.replace(ID_PATTERN, " "));
  const followUp = FOLLOW_UP_PATTERN.test(normalized);
  if (index.empty) {
    const corpusScope = CORPUS_PATTERN.test(normalized) && !ATTACHED_PATTERN.test(normalized);
    return { type: "unknown", objects: [], ids, corpusScope, followUp, inVocabulary: true };
  }
  // The alternatives a size question offers ("small or large", "how big") name no object's size.
  const withoutChoices = normalized
    .replace(/\b(small|large|big|little) or (small|large|big|little)\b/g, " ")
    .replace(/\bhow (big|large|small)\b/g, "how_size");
  let objects = extractObjects(withoutChoices, vocabulary);
  const action = detectAction(normalized, index);
  const area = areaNamed(normalized);
  const type = classify(normalized, objects, action, area);
  if (type === "size") objects = objects.map(({ size: _size, ...rest }) => rest);
  objects = objects.filter(
    (object) => object.color !== undefined || object.shape !== undefined || object.count !== undefined,
  );
  const inVocabulary =
    objects.length > 0 ||
    action !== undefined ||
    type === "area" ||
    /\b(color|shape|objects?|left|right|small|large|how many)\b/.test(normalized);
  const keepsArea = area !== undefined && (type === "area" || (type === "unknown" && followUp));
  return {
    type,
    objects,
    ...(action === undefined ? {} : { action }),
    ...(keepsArea ? { area } : {}),
    ids,
    corpusScope: (CORPUS_PATTERN.test(normalized) && !ATTACHED_PATTERN.test(normalized)) || type === "when",
    followUp,
    inVocabulary,
  };
}

/**
 * The plural of a shape: the one the vocabulary declares, else the noun with an `s` (`objects`, and
 * every shape when no vocabulary is given).
 */
export function pluralOf(noun: string, vocabulary?: PackVocabulary): string {
  return (vocabulary === undefined ? undefined : indexOf(vocabulary).plurals.get(noun)) ?? `${noun}s`;
}

/** `a red star`, `two blue objects`, `a small circle`: a mention in words. */
export function describeObject(
  object: ObjectMention,
  {
    article = true,
    vocabulary,
  }: {
    article?: boolean;
    /** Where the plurals of shapes come from (see {@link pluralOf}). */
    vocabulary?: PackVocabulary;
  } = {},
): string {
  const count = object.count;
  const plural = count !== undefined && count !== 1;
  const noun = object.shape ?? "object";
  const nounWord = plural ? pluralOf(noun, vocabulary) : noun;
  const words = [object.size, object.color, nounWord].filter((word) => word !== undefined);
  if (count !== undefined && count !== 1) return [String(count), ...words].join(" ");
  if (!article) return words.join(" ");
  const phrase = words.join(" ");
  return `${/^[aeiou]/.test(phrase) ? "an" : "a"} ${phrase}`;
}

/** `the red star`: the definite form of a mention. */
export function theObject(object: ObjectMention): string {
  return `the ${[object.size, object.color, object.shape ?? "object"].filter((word) => word !== undefined).join(" ")}`;
}

/**
 * The question in the wording the VQA head was trained on, or `undefined` when the intent is not one
 * the head answers or lacks what its type needs (a color question without a shape).
 */
export function canonicalQuestion(
  intent: Pick<Intent, "type" | "objects">,
  {
    objectIndex = 0,
    vocabulary,
  }: {
    /** Which of the intent's objects the question is about. */
    objectIndex?: number;
    /** Where the plurals of shapes come from (see {@link pluralOf}). */
    vocabulary?: PackVocabulary;
  } = {},
): string | undefined {
  const object = intent.objects[objectIndex];
  switch (intent.type) {
    case "color":
      return object?.shape === undefined ? undefined : `What color is the ${object.shape}?`;
    case "shape":
      return object?.color === undefined ? undefined : `What shape is the ${object.color} object?`;
    case "count":
      if (object?.shape !== undefined && object.color === undefined)
        return `How many ${pluralOf(object.shape, vocabulary)} are there?`;
      if (object?.color !== undefined && object.shape === undefined)
        return `How many ${object.color} objects are there?`;
      if (object === undefined) return "How many objects are there?";
      return undefined;
    case "exist":
    case "find":
      if (object?.color !== undefined && object.shape !== undefined)
        return `Is there a ${object.color} ${object.shape}?`;
      return undefined;
    case "size":
      return object?.color !== undefined && object.shape !== undefined
        ? `Is the ${object.color} ${object.shape} small or large?`
        : undefined;
    case "position":
      return object?.color !== undefined && object.shape !== undefined
        ? `Is the ${object.color} ${object.shape} on the left or the right?`
        : undefined;
    default:
      return undefined;
  }
}

/**
 * A key equal for two questions that mean the same (`color|star` for "What colour is the star?" and
 * "Tell me the color of the star."), or `undefined` when the question is not one the parser can pin down.
 */
export function questionMeaningKey(text: string, vocabulary: PackVocabulary): string | undefined {
  const intent = parseQuestion(text, vocabulary);
  if (!VQA_INTENT_TYPES.includes(intent.type)) return undefined;
  const canonical = canonicalQuestion(intent, { vocabulary });
  if (canonical === undefined || intent.objects.length > 1) return undefined;
  return canonical.toLowerCase();
}

/** The questions put to the VQA head for an intent: one per object it can judge. */
export function vqaQuestionsFor(
  intent: Pick<Intent, "type" | "objects">,
  { vocabulary }: { vocabulary?: PackVocabulary } = {},
): string[] {
  if (intent.type === "exist" || intent.type === "find") {
    return intent.objects
      .map((_, objectIndex) =>
        canonicalQuestion({ type: "exist", objects: intent.objects }, { objectIndex, vocabulary }),
      )
      .filter((question) => question !== undefined);
  }
  const question = canonicalQuestion(intent, { vocabulary });
  return question === undefined ? [] : [question];
}

/** Every color-shape pair of a vocabulary, colors outer. */
export function colorsAndShapes(vocabulary: PackVocabulary): Array<{ color: string; shape: string }> {
  return vocabulary.colors.flatMap((color) => vocabulary.shapes.map(({ name: shape }) => ({ color, shape })));
}
