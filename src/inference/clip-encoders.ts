/**
 * The two CLIP towers: batched image and text embedders returning L2-normalized vectors in the shared
 * image-text space, and optionally the token sequences the VQA head reads.
 */
import { InferenceError, ValidationError } from "../errors.ts";
import type { ImageInput, ImageProcessor, PixelBatch } from "./image-processor.ts";
import { MicroBatcher } from "./micro-batcher.ts";
import { type OnnxSession, Tensor } from "./session.ts";
import type { TextTokenizer } from "./tokenizer.ts";
import { chunk, l2Normalize } from "./vector-math.ts";

/** Resolves the session of a model file (opened eagerly or on first use by the model pack). */
export type SessionProvider = () => Promise<OnnxSession>;

/** Token states of one image from the vision tower: `[length, width]` row-major (class token first). */
export interface ImageTokens {
  data: Float32Array;
  length: number;
  width: number;
}

/** Token states of a text batch from the text tower, with its attention mask. */
export interface TextTokenBatch {
  /** `[batch, length, width]` row-major. */
  data: Float32Array;
  dims: [number, number, number];
  /** `[batch, length]`: 1 for real tokens. */
  mask: BigInt64Array;
}

/** Reads a float32 output and checks its rank and, where given, its trailing sizes. */
export function readFloatOutput({
  outputs,
  name,
  model,
  rank,
  trailing = [],
}: {
  outputs: Record<string, Tensor>;
  name: string;
  model: string;
  rank: number;
  trailing?: readonly (number | undefined)[];
}): { data: Float32Array; dims: number[] } {
  const tensor = outputs[name];
  if (tensor === undefined) throw new InferenceError(`${model} returned no "${name}" output.`);
  if (tensor.type !== "float32" || !(tensor.data instanceof Float32Array)) {
    throw new InferenceError(`${model} returned "${name}" as ${tensor.type}; expected float32.`);
  }
  const dims = tensor.dims.map(Number);
  const expectedTail = trailing.map((size) => size ?? "any");
  const tailMatches = trailing.every(
    (size, index) => size === undefined || dims[dims.length - trailing.length + index] === size,
  );
  if (dims.length !== rank || !tailMatches) {
    throw new InferenceError(
      `${model} returned "${name}" with shape [${dims.join(", ")}]; expected rank ${rank}` +
        (trailing.length > 0 ? ` ending in [${expectedTail.join(", ")}]` : "") +
        ". The model does not match config.json.",
      { context: { model, output: name, dims } },
    );
  }
  return { data: tensor.data, dims };
}

function rows(data: Float32Array, count: number, width: number): Float32Array[] {
  return Array.from({ length: count }, (_, index) => data.slice(index * width, (index + 1) * width));
}

/** Rows of a `[batch, dimension]` projection output, L2-normalized when asked. */
function readEmbeddings({
  outputs,
  name,
  model,
  batch,
  dimension,
  normalize,
}: {
  outputs: Record<string, Tensor>;
  name: string;
  model: string;
  batch: number;
  dimension: number;
  normalize: boolean;
}): Float32Array[] {
  const embeds = readFloatOutput({ outputs, name, model, rank: 2, trailing: [dimension] });
  const raw = rows(embeds.data, batch, dimension);
  return normalize ? raw.map(l2Normalize) : raw;
}

function checkBatchSize(batchSize: number, name: string): number {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new ValidationError(`${name} must be a positive integer, got ${batchSize}.`);
  }
  return batchSize;
}

/** Options of {@link ImageEmbedder}. */
export interface ImageEmbedderOptions {
  session: SessionProvider;
  processor: ImageProcessor;
  /** Embedding size (`projection_dim`). */
  dimension: number;
  /** Images per model run. */
  batchSize?: number;
  /**
   * How long a single image waits for others to share its model run, in ms (concurrent searches by
   * image); 0 batches only what arrives in the same tick.
   */
  batchWindowMs?: number;
  /**
   * Batches in flight at once (at least 2: one decoding while one runs). One more than the vision tower's
   * copies keeps every copy busy.
   */
  runsAtOnce?: number;
}

/** Encoded images: one embedding per image, and token states when asked for. */
export interface ImageEncoding {
  embeddings: Float32Array[];
  tokens?: ImageTokens[];
}

/** Batched image tower. */
export class ImageEmbedder {
  readonly dimension: number;
  readonly batchSize: number;
  readonly processor: ImageProcessor;
  readonly #session: SessionProvider;
  readonly #batcher: MicroBatcher<ImageInput, Float32Array>;
  /** Settles when the batch being preprocessed is done; the next batch starts its preprocessing then. */
  #preprocessing: Promise<unknown> = Promise.resolve();

  constructor({
    session,
    processor,
    dimension,
    batchSize = 8,
    batchWindowMs = 2,
    runsAtOnce = 2,
  }: ImageEmbedderOptions) {
    this.#session = session;
    this.processor = processor;
    this.dimension = dimension;
    this.batchSize = checkBatchSize(batchSize, "Image batch size");
    // Two batches at once: one is decoded (sharp, on libuv's threads) while the other runs the model. The
    // preprocessing gate keeps them a pipeline: without it both would decode at once and then queue for the
    // model together, leaving the model idle while they decode.
    this.#batcher = new MicroBatcher({
      maxBatch: this.batchSize,
      windowMs: batchWindowMs,
      concurrency: Math.max(2, runsAtOnce),
      run: async (images) => (await this.encode({ images })).embeddings,
    });
  }

  /** Resolves once every submitted image has been embedded (before the pack closes its sessions). */
  drain(): Promise<void> {
    return this.#batcher.drain();
  }

  /**
   * L2-normalized embeddings of encoded or raw images, in input order. Concurrent calls share model runs
   * (up to {@link ImageEmbedder.batchSize} images each); a run that fails fails every call it served.
   */
  async embed({ images }: { images: readonly ImageInput[] }): Promise<Float32Array[]> {
    return this.#batcher.submitMany(images);
  }

  /**
   * Runs the vision tower over images in batches of {@link ImageEmbedder.batchSize}.
   *
   * @param normalize L2-normalize the embeddings (the video head wants them raw).
   * @param withTokens also return `last_hidden_state` per image (for the VQA head).
   */
  async encode({
    images,
    normalize = true,
    withTokens = false,
  }: {
    images: readonly ImageInput[];
    normalize?: boolean;
    withTokens?: boolean;
  }): Promise<ImageEncoding> {
    const embeddings: Float32Array[] = [];
    const tokens: ImageTokens[] = [];
    const groups = chunk(images, this.batchSize);
    // Batch k + 1 is preprocessed while batch k runs through the model.
    let next = groups.length > 0 ? this.#preprocess(groups[0] as ImageInput[]) : undefined;
    for (let index = 0; index < groups.length; index += 1) {
      const pixels = await (next as Promise<PixelBatch>);
      const following = groups[index + 1];
      next = following === undefined ? undefined : this.#preprocess(following);
      // A failure of the next batch surfaces when it is awaited, not as an unhandled rejection meanwhile.
      next?.catch(() => undefined);
      const encoded = await this.encodePixels({ pixels, normalize, withTokens });
      embeddings.push(...encoded.embeddings);
      if (encoded.tokens !== undefined) tokens.push(...encoded.tokens);
    }
    return withTokens ? { embeddings, tokens } : { embeddings };
  }

  /**
   * Preprocesses one batch once the batch before it (of any caller) is preprocessed, so that concurrent
   * batches take turns decoding and each one's decoding overlaps the model run of the one before.
   */
  #preprocess(images: readonly ImageInput[]): Promise<PixelBatch> {
    const started = this.#preprocessing.then(() => this.processor.preprocessBatch({ images }));
    this.#preprocessing = started.catch(() => undefined);
    return started;
  }

  /** Runs the vision tower on already preprocessed `pixel_values`. */
  async encodePixels({
    pixels,
    normalize = true,
    withTokens = false,
  }: {
    pixels: PixelBatch;
    normalize?: boolean;
    withTokens?: boolean;
  }): Promise<ImageEncoding> {
    const session = await this.#session();
    const batch = pixels.dims[0];
    const outputNames = withTokens ? ["image_embeds", "last_hidden_state"] : ["image_embeds"];
    const outputs = await session.run({
      feeds: { pixel_values: new Tensor("float32", pixels.data, pixels.dims) },
      outputs: outputNames,
    });
    const embeddings = readEmbeddings({
      outputs,
      name: "image_embeds",
      model: session.label,
      batch,
      dimension: this.dimension,
      normalize,
    });
    if (!withTokens) return { embeddings };
    const hidden = readFloatOutput({ outputs, name: "last_hidden_state", model: session.label, rank: 3 });
    const [, length = 0, width = 0] = hidden.dims;
    const tokens = rows(hidden.data, batch, length * width).map((data) => ({ data, length, width }));
    return { embeddings, tokens };
  }
}

/** Options of {@link TextEmbedder}. */
export interface TextEmbedderOptions {
  session: SessionProvider;
  tokenizer: TextTokenizer;
  /** Embedding size (`projection_dim`). */
  dimension: number;
  /** Texts per model run. */
  batchSize?: number;
  /** How long a single text waits for others to share its model run, in ms (concurrent searches). */
  batchWindowMs?: number;
}

/** Encoded texts: one embedding per text, and token states per batch when asked for. */
export interface TextEncoding {
  embeddings: Float32Array[];
  /** One entry per model run, in order; present when `withTokens` was set. */
  tokenBatches?: TextTokenBatch[];
}

/** Batched text tower. */
export class TextEmbedder {
  readonly dimension: number;
  readonly batchSize: number;
  readonly tokenizer: TextTokenizer;
  readonly #session: SessionProvider;
  readonly #batcher: MicroBatcher<string, Float32Array>;

  constructor({ session, tokenizer, dimension, batchSize = 32, batchWindowMs = 2 }: TextEmbedderOptions) {
    this.#session = session;
    this.tokenizer = tokenizer;
    this.dimension = dimension;
    this.batchSize = checkBatchSize(batchSize, "Text batch size");
    this.#batcher = new MicroBatcher({
      maxBatch: this.batchSize,
      windowMs: batchWindowMs,
      run: async (texts) => (await this.encode({ texts })).embeddings,
    });
  }

  /** Resolves once every submitted text has been embedded (before the pack closes its sessions). */
  drain(): Promise<void> {
    return this.#batcher.drain();
  }

  /**
   * L2-normalized embeddings of texts, in input order. Concurrent calls (each search embeds one query)
   * share model runs of up to {@link TextEmbedder.batchSize} texts; a run that fails fails every call it served.
   */
  async embed({ texts }: { texts: readonly string[] }): Promise<Float32Array[]> {
    return this.#batcher.submitMany(texts);
  }

  /**
   * Runs the text tower over texts in batches of {@link TextEmbedder.batchSize}, each padded to its longest
   * text. `attention_mask` is fed only when the model declares it.
   */
  async encode({
    texts,
    normalize = true,
    withTokens = false,
  }: {
    texts: readonly string[];
    normalize?: boolean;
    withTokens?: boolean;
  }): Promise<TextEncoding> {
    const session = await this.#session();
    const embeddings: Float32Array[] = [];
    const tokenBatches: TextTokenBatch[] = [];
    for (const group of chunk(texts, this.batchSize)) {
      const encoded = this.tokenizer.encodeBatch({ texts: group });
      const dims = [encoded.batchSize, encoded.sequenceLength];
      const outputs = await session.run({
        feeds: {
          input_ids: new Tensor("int64", encoded.inputIds, dims),
          attention_mask: new Tensor("int64", encoded.attentionMask, dims),
        },
        outputs: withTokens ? ["text_embeds", "last_hidden_state"] : ["text_embeds"],
      });
      embeddings.push(
        ...readEmbeddings({
          outputs,
          name: "text_embeds",
          model: session.label,
          batch: encoded.batchSize,
          dimension: this.dimension,
          normalize,
        }),
      );
      if (withTokens) {
        const hidden = readFloatOutput({ outputs, name: "last_hidden_state", model: session.label, rank: 3 });
        const [batch = 0, length = 0, width = 0] = hidden.dims;
        tokenBatches.push({ data: hidden.data, dims: [batch, length, width], mask: encoded.attentionMask });
      }
    }
    return withTokens ? { embeddings, tokenBatches } : { embeddings };
  }
}
