/**
 * Text tokenization for the text tower: wraps `@huggingface/tokenizers` (pure JS) loaded from a pack's
 * `tokenizer.json`, and adds what that library leaves out — batch padding, truncation that keeps the end
 * token, and two fixes where the library differs from the Python `tokenizers` library that packs are made
 * with: WordLevel lookups of out-of-vocabulary words return no id (mapped here to the model's unknown token), and
 * the `Whitespace` pre-tokenizer splits on ASCII word characters only (replaced here by the Unicode split).
 * test/inference/tokenizer.test.ts checks the result against Python on BPE, CLIP-style and WordLevel files.
 */
import { readFile } from "node:fs/promises";
import * as tokenizersLibrary from "@huggingface/tokenizers";
import { Tokenizer } from "@huggingface/tokenizers";
import { z } from "zod";
import { InferenceError, ModelPackError, ValidationError } from "../errors.ts";
import type { TokenizerConfig } from "./pack-config.ts";

const END_OF_TEXT = "<|endoftext|>";

/**
 * Rust's `\w` / `\s` (Unicode) as used by the Python library's `Whitespace` pre-tokenizer. The JS port splits
 * with ASCII `\w`, which turns every accented or non-Latin word into unknown tokens.
 */
const UNICODE_WORDS =
  /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\s]+/gu;

interface PreTokenizerLike {
  pre_tokenize_text: (text: string) => string[];
  tokenizers?: unknown[];
}

// The package's type declarations re-export its pre-tokenizer classes through paths that NodeNext resolution
// cannot follow, so the runtime exports are typed here.
const preTokenizerClasses = tokenizersLibrary as unknown as {
  WhitespacePreTokenizer?: abstract new (...args: never[]) => PreTokenizerLike;
  SequencePreTokenizer?: abstract new (...args: never[]) => PreTokenizerLike;
};

function alignWhitespacePreTokenizers(preTokenizer: unknown): void {
  const { WhitespacePreTokenizer, SequencePreTokenizer } = preTokenizerClasses;
  if (WhitespacePreTokenizer !== undefined && preTokenizer instanceof WhitespacePreTokenizer) {
    preTokenizer.pre_tokenize_text = (text: string): string[] => text.match(UNICODE_WORDS) ?? [];
  } else if (SequencePreTokenizer !== undefined && preTokenizer instanceof SequencePreTokenizer) {
    for (const inner of preTokenizer.tokenizers ?? []) alignWhitespacePreTokenizers(inner);
  }
}

/** Padding strategy of {@link TextTokenizer.encodeBatch}. */
export type PaddingStrategy = "longest" | "max_length";

/** A padded batch of token ids, ready for `input_ids` / `attention_mask` int64 tensors. */
export interface EncodedBatch {
  /** Row-major `[batchSize, sequenceLength]` token ids. */
  inputIds: BigInt64Array;
  /** Row-major `[batchSize, sequenceLength]`: 1 for real tokens, 0 for padding. */
  attentionMask: BigInt64Array;
  batchSize: number;
  sequenceLength: number;
  /** Number of real tokens of each row (after truncation). */
  lengths: number[];
}

const tokenizerJsonSchema = z.looseObject({
  model: z.looseObject({ type: z.string().optional(), unk_token: z.string().nullable().optional() }),
  padding: z.looseObject({ pad_id: z.number().int().nonnegative().optional() }).nullable().optional(),
  added_tokens: z.array(z.looseObject({ id: z.number().int(), content: z.string() })).optional(),
});

/** Options of {@link loadTokenizer}. */
export interface LoadTokenizerOptions {
  /** Path of `tokenizer.json`. */
  path: string;
  /** Parsed `tokenizer_config.json`, when the pack has one. */
  tokenizerConfig?: TokenizerConfig;
  /** Longest sequence the text model accepts (`text_config.max_position_embeddings`), special tokens included. */
  maxLength: number;
  /** Label used in error messages. */
  label?: string;
}

/** Tokenizes text batches for a CLIP-style text tower. Create it with {@link loadTokenizer}. */
export class TextTokenizer {
  /** Longest sequence produced, special tokens included. */
  readonly maxLength: number;
  /** Id used for padding. */
  readonly padId: number;
  /** Id that replaces tokens the vocabulary lookup cannot resolve, if the model names one. */
  readonly unknownId: number | undefined;
  /** Id of the end-of-text token kept at the end of truncated rows, if the vocabulary has one. */
  readonly endId: number | undefined;
  readonly #tokenizer: Tokenizer;

  constructor({
    tokenizer,
    maxLength,
    padId,
    unknownId,
    endId,
  }: {
    tokenizer: Tokenizer;
    maxLength: number;
    padId: number;
    unknownId: number | undefined;
    endId: number | undefined;
  }) {
    this.#tokenizer = tokenizer;
    this.maxLength = maxLength;
    this.padId = padId;
    this.unknownId = unknownId;
    this.endId = endId;
  }

  /**
   * Token ids of one text with the special tokens of the tokenizer's post-processor, truncated to
   * {@link TextTokenizer.maxLength}. A truncated row keeps its final end token, as the text tower reads
   * the sentence embedding there.
   */
  encode({ text }: { text: string }): number[] {
    if (typeof text !== "string") {
      throw new ValidationError(`Text to tokenize must be a string, got ${typeof text}.`);
    }
    // Typed number[], but some models (WordLevel) yield undefined for out-of-vocabulary words.
    const raw: readonly (number | undefined)[] = this.#tokenizer.encode(text, {}).ids;
    const ids = raw.map((id) => {
      if (typeof id === "number" && Number.isInteger(id)) return id;
      if (this.unknownId !== undefined) return this.unknownId;
      throw new InferenceError(
        `The tokenizer returned no id for a token of ${JSON.stringify(text.slice(0, 80))} and its model names no unknown token.`,
      );
    });
    if (ids.length <= this.maxLength) return ids;
    const last = ids[ids.length - 1];
    if (last !== undefined && last === this.endId) {
      return [...ids.slice(0, this.maxLength - 1), last];
    }
    return ids.slice(0, this.maxLength);
  }

  /**
   * Encodes a batch, padded with {@link TextTokenizer.padId} to the longest row (or to the maximum length).
   *
   * @throws ValidationError when `texts` is empty.
   */
  encodeBatch({
    texts,
    padding = "longest",
  }: {
    texts: readonly string[];
    padding?: PaddingStrategy;
  }): EncodedBatch {
    if (texts.length === 0) throw new ValidationError("Cannot tokenize an empty batch of texts.");
    const rows = texts.map((text) => this.encode({ text }));
    const lengths = rows.map((row) => row.length);
    const sequenceLength = padding === "max_length" ? this.maxLength : Math.max(1, ...lengths);
    const inputIds = new BigInt64Array(rows.length * sequenceLength).fill(BigInt(this.padId));
    const attentionMask = new BigInt64Array(rows.length * sequenceLength);
    rows.forEach((row, rowIndex) => {
      const offset = rowIndex * sequenceLength;
      row.forEach((id, position) => {
        inputIds[offset + position] = BigInt(id);
        attentionMask[offset + position] = 1n;
      });
    });
    return { inputIds, attentionMask, batchSize: rows.length, sequenceLength, lengths };
  }

  /** Id of a token string, or undefined when it is not in the vocabulary. */
  tokenToId(token: string): number | undefined {
    return this.#tokenizer.token_to_id(token);
  }
}

/**
 * Loads `tokenizer.json` (Hugging Face tokenizers format) and resolves the pad, unknown and end ids:
 * pad from the file's `padding` block, else `tokenizer_config.json`'s `pad_token`, else `<|endoftext|>`.
 *
 * @throws ModelPackError when the file is missing, invalid, or no pad token can be resolved.
 */
export async function loadTokenizer({
  path,
  tokenizerConfig = {},
  maxLength,
  label = "tokenizer.json",
}: LoadTokenizerOptions): Promise<TextTokenizer> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new ModelPackError(`Could not read ${label}: ${error instanceof Error ? error.message : error}.`, {
      cause: error,
      context: { file: label },
    });
  }
  const parsed = tokenizerJsonSchema.safeParse(json);
  if (!parsed.success) {
    throw new ModelPackError(
      `${label} is not a Hugging Face tokenizers file (it needs a "model" object). Re-fetch or reinstall the pack.`,
      { context: { file: label } },
    );
  }
  let tokenizer: Tokenizer;
  try {
    // The second argument carries transformers-style tokenizer_config flags (e.g. remove_space); the
    // Python `tokenizers` library that packs are built with ignores them, so none are passed.
    tokenizer = new Tokenizer(json as object, {});
    alignWhitespacePreTokenizers(tokenizer.pre_tokenizer);
  } catch (error) {
    throw new ModelPackError(
      `Could not build the tokenizer from ${label}: ${error instanceof Error ? error.message : error}.`,
      { cause: error, context: { file: label } },
    );
  }
  const spec = parsed.data;
  const idOf = (token: string | null | undefined): number | undefined =>
    token === null || token === undefined
      ? undefined
      : (tokenizer.token_to_id(token) ?? spec.added_tokens?.find((added) => added.content === token)?.id);

  const endId = idOf(END_OF_TEXT);
  const padId = spec.padding?.pad_id ?? idOf(tokenizerConfig.pad_token) ?? endId;
  if (padId === undefined) {
    throw new ModelPackError(
      `${label} defines no padding token: add a "padding" block, a pad_token in tokenizer_config.json, or a ${END_OF_TEXT} token.`,
      { context: { file: label } },
    );
  }
  if (!Number.isInteger(maxLength) || maxLength < 2) {
    throw new ModelPackError(`Text max length must be an integer ≥ 2, got ${maxLength}.`, {
      context: { file: label, maxLength },
    });
  }
  const configMax = tokenizerConfig.model_max_length;
  const effectiveMax =
    configMax !== undefined && Number.isInteger(configMax) && configMax >= 2 && configMax < maxLength
      ? configMax
      : maxLength;
  return new TextTokenizer({
    tokenizer,
    maxLength: effectiveMax,
    padId,
    unknownId: idOf(spec.model.unk_token),
    endId,
  });
}
