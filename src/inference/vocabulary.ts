/**
 * A pack's visual vocabulary (`vocabulary.json`): the colors, shapes, sizes and actions its VQA head and
 * the chain's composer understand, with the plural forms, synonyms and phrasings questions use for them.
 * The training export writes it beside the models; the chain's question parser and answer verifier read
 * questions and answers with it. A pack without the file declares no vocabulary (public CLIP packs).
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { readPackJson } from "./pack-config.ts";

/** Name of the vocabulary file at the root of a pack. */
export const VOCABULARY_FILE = "vocabulary.json";

/** The format version this runtime reads. */
export const VOCABULARY_VERSION = 1;

const WORD = /^[a-z][a-z0-9]*$/;
const PHRASE = /^[a-z0-9]+( [a-z0-9]+)*$/;

/** One lowercase word: questions are read word by word after lower-casing and dropping punctuation. */
function word(what: string) {
  return z.string().regex(WORD, {
    error: (issue) =>
      `${JSON.stringify(issue.input)} is not one lowercase word (a-z, 0-9); a ${what} must be one, as questions are read word by word`,
  });
}

function phrase(what: string) {
  return z.string().regex(PHRASE, {
    error: (issue) =>
      `${JSON.stringify(issue.input)} is not lowercase words separated by single spaces, as a ${what} must be`,
  });
}

const patternSchema = z.string().superRefine((source, context) => {
  try {
    new RegExp(source);
  } catch (error) {
    context.addIssue({
      code: "custom",
      message: `${JSON.stringify(source)} is not a valid regular expression (${error instanceof Error ? error.message : String(error)}); write it in JavaScript syntax, with backslashes doubled in JSON`,
    });
  }
});

const actionSchema = z
  .strictObject({
    /** What the action is called in answers and intents: `moving left`. */
    name: phrase("action name"),
    /** The action as the verb of a question about it: "When does the red circle `move left`?" */
    verb: phrase("verb"),
    /**
     * Regular expressions (JavaScript syntax) that name the action in a question, tried in order on the
     * question lower-cased, with `colour` spelled `color`, `grey` as `gray` and punctuation as spaces.
     */
    patterns: z.array(patternSchema).default([]),
    /**
     * Looser evidence, consulted only when no action's pattern matched: the question names the action
     * when it contains a word of every group (`[["move", "moves", "moving"], ["left"]]`).
     */
    cues: z.array(z.array(word("cue word")).min(1)).default([]),
  })
  .refine((action) => action.patterns.length > 0 || action.cues.length > 0, {
    error: (issue) =>
      `action ${JSON.stringify((issue.input as { name?: unknown }).name)} has neither patterns nor cues, so no question can name it; add a pattern`,
  });

/** Schema of `vocabulary.json`. */
export const vocabularySchema = z
  .strictObject({
    version: z.literal(VOCABULARY_VERSION, {
      error: (issue) =>
        `version ${JSON.stringify(issue.input)} is not one this Loupe reads; it reads version ${VOCABULARY_VERSION}`,
    }),
    /** Color words, in the order the pack lists them. */
    colors: z.array(word("color")).default([]),
    /** Shape nouns with their plurals (`How many circles are there?`). */
    shapes: z.array(z.strictObject({ name: word("shape"), plural: word("plural") })).default([]),
    /** Size classes with the other words that mean them (`big` for `large`). */
    sizes: z
      .array(z.strictObject({ name: word("size"), synonyms: z.array(word("size synonym")).default([]) }))
      .default([]),
    actions: z.array(actionSchema).default([]),
  })
  .superRefine((vocabulary, context) => {
    // A word with two meanings would make the parser's reading depend on the order of its checks.
    const seen = new Map<string, string>();
    const claim = (value: string, path: Array<string | number>) => {
      const where = path.join(".");
      const earlier = seen.get(value);
      if (earlier === undefined) {
        seen.set(value, where);
        return;
      }
      context.addIssue({
        code: "custom",
        path,
        message: `${JSON.stringify(value)} is already declared at ${earlier}; a word may have one meaning`,
      });
    };
    for (const [index, color] of vocabulary.colors.entries()) claim(color, ["colors", index]);
    for (const [index, shape] of vocabulary.shapes.entries()) {
      claim(shape.name, ["shapes", index, "name"]);
      claim(shape.plural, ["shapes", index, "plural"]);
    }
    for (const [index, size] of vocabulary.sizes.entries()) {
      claim(size.name, ["sizes", index, "name"]);
      for (const [position, synonym] of size.synonyms.entries()) {
        claim(synonym, ["sizes", index, "synonyms", position]);
      }
    }
    const actions = new Map<string, number>();
    for (const [index, action] of vocabulary.actions.entries()) {
      const earlier = actions.get(action.name);
      if (earlier !== undefined) {
        context.addIssue({
          code: "custom",
          path: ["actions", index, "name"],
          message: `action ${JSON.stringify(action.name)} is already declared at actions.${earlier}`,
        });
      } else actions.set(action.name, index);
    }
  });

/** A pack's visual vocabulary, as `vocabulary.json` declares it. Treat it as immutable. */
export type PackVocabulary = z.infer<typeof vocabularySchema>;

/** One action of a {@link PackVocabulary}. */
export type VocabularyAction = PackVocabulary["actions"][number];

/** The vocabulary of a pack that declares none: questions name nothing the chain can read. */
export const EMPTY_VOCABULARY: PackVocabulary = Object.freeze({
  version: VOCABULARY_VERSION,
  colors: [],
  shapes: [],
  sizes: [],
  actions: [],
});

/** True when a vocabulary names no color, shape, size or action. */
export function isEmptyVocabulary(vocabulary: PackVocabulary): boolean {
  return (
    vocabulary.colors.length === 0 &&
    vocabulary.shapes.length === 0 &&
    vocabulary.sizes.length === 0 &&
    vocabulary.actions.length === 0
  );
}

/**
 * Reads and validates a pack's `vocabulary.json`; `undefined` when the pack has none.
 *
 * @throws ModelPackError naming the file, the offending value and the fix when the file is unreadable,
 *   not JSON, or does not fit {@link vocabularySchema}.
 */
export async function readPackVocabulary({ dir }: { dir: string }): Promise<PackVocabulary | undefined> {
  try {
    await access(join(dir, VOCABULARY_FILE));
  } catch {
    return undefined;
  }
  return readPackJson({
    dir,
    file: VOCABULARY_FILE,
    schema: vocabularySchema,
    fix: "Correct the file (models/README.md describes its format) or re-export the pack.",
  });
}
