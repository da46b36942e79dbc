/**
 * The METER-style co-attention VQA head: reads the vision tower's token states of one image and the text
 * tower's token states of a question, and scores the pack's fixed answer vocabulary.
 */
import { InferenceError, ValidationError } from "../errors.ts";
import type { ImageEmbedder, ImageTokens, SessionProvider, TextEmbedder } from "./clip-encoders.ts";
import { readFloatOutput } from "./clip-encoders.ts";
import type { ImageInput } from "./image-processor.ts";
import { Tensor } from "./session.ts";
import { softmax } from "./vector-math.ts";

/** One scored answer. */
export interface VqaAnswer {
  answer: string;
  /** Softmax probability over the whole answer vocabulary. */
  probability: number;
}

/** Options of {@link VqaHead}. */
export interface VqaHeadOptions {
  session: SessionProvider;
  imageEmbedder: ImageEmbedder;
  textEmbedder: TextEmbedder;
  /** Answer strings in logit order (`answers.json`). */
  answers: readonly string[];
  /** Questions per model run. */
  batchSize?: number;
}

function isImageTokens(value: ImageInput | ImageTokens): value is ImageTokens {
  return !(value instanceof Uint8Array) && value.data instanceof Float32Array;
}

/** Answers questions about images with the pack's VQA model. */
export class VqaHead {
  /** Answer vocabulary in logit order. */
  readonly answers: readonly string[];
  readonly batchSize: number;
  readonly #session: SessionProvider;
  readonly #imageEmbedder: ImageEmbedder;
  readonly #textEmbedder: TextEmbedder;

  constructor({ session, imageEmbedder, textEmbedder, answers, batchSize = 16 }: VqaHeadOptions) {
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new ValidationError(`VQA batch size must be a positive integer, got ${batchSize}.`);
    }
    this.#session = session;
    this.#imageEmbedder = imageEmbedder;
    this.#textEmbedder = textEmbedder;
    this.answers = answers;
    this.batchSize = batchSize;
  }

  /**
   * Runs the vision tower once and keeps the token states, so that several calls about one image
   * (e.g. when grounding several claims) do not re-encode it.
   */
  async encodeImage({ image }: { image: ImageInput }): Promise<ImageTokens> {
    const encoded = await this.#imageEmbedder.encode({ images: [image], withTokens: true, normalize: false });
    const tokens = encoded.tokens?.[0];
    if (tokens === undefined) throw new InferenceError("The vision model returned no token states.");
    return tokens;
  }

  /** Top answers to one question about an image (encoded bytes, raw pixels, or tokens from {@link encodeImage}). */
  async answer({
    image,
    question,
    topK = 3,
  }: {
    image: ImageInput | ImageTokens;
    question: string;
    topK?: number;
  }): Promise<VqaAnswer[]> {
    const [answers] = await this.answerMany({ image, questions: [question], topK });
    return answers ?? [];
  }

  /**
   * Top answers to several questions about one image: the image is encoded once and the questions run in
   * batches of {@link VqaHead.batchSize}.
   */
  async answerMany({
    image,
    questions,
    topK = 3,
  }: {
    image: ImageInput | ImageTokens;
    questions: readonly string[];
    topK?: number;
  }): Promise<VqaAnswer[][]> {
    if (!Number.isInteger(topK) || topK < 1) {
      throw new ValidationError(`topK must be a positive integer, got ${topK}.`);
    }
    if (questions.length === 0) return [];
    const logits = await this.logits({ image, questions });
    return logits.map((row) => this.#rank(row, topK));
  }

  /** Raw logits (one row of `answers.length` per question). */
  async logits({
    image,
    questions,
  }: {
    image: ImageInput | ImageTokens;
    questions: readonly string[];
  }): Promise<Float32Array[]> {
    const tokens = isImageTokens(image) ? image : await this.encodeImage({ image });
    const session = await this.#session();
    const results: Float32Array[] = [];
    // One text run per group, so each group gets exactly one token batch.
    const step = Math.min(this.batchSize, this.#textEmbedder.batchSize);
    for (let start = 0; start < questions.length; start += step) {
      const group = questions.slice(start, start + step);
      const text = await this.#textEmbedder.encode({ texts: group, withTokens: true, normalize: false });
      const batch = text.tokenBatches?.[0];
      if (batch === undefined) throw new InferenceError("The text model returned no token states.");
      const [count, length, width] = batch.dims;
      const imageData = new Float32Array(count * tokens.data.length);
      for (let index = 0; index < count; index += 1) imageData.set(tokens.data, index * tokens.data.length);
      const outputs = await session.run({
        feeds: {
          image_tokens: new Tensor("float32", imageData, [count, tokens.length, tokens.width]),
          text_tokens: new Tensor("float32", batch.data, [count, length, width]),
          text_mask: new Tensor("int64", batch.mask, [count, length]),
        },
        outputs: ["logits"],
      });
      const logits = readFloatOutput({
        outputs,
        name: "logits",
        model: session.label,
        rank: 2,
        trailing: [this.answers.length],
      });
      for (let index = 0; index < count; index += 1) {
        results.push(logits.data.slice(index * this.answers.length, (index + 1) * this.answers.length));
      }
    }
    return results;
  }

  #rank(logits: Float32Array, topK: number): VqaAnswer[] {
    const probabilities = softmax(logits);
    return Array.from(probabilities, (probability, index) => ({
      answer: this.answers[index] ?? "",
      probability,
    }))
      .sort((left, right) => right.probability - left.probability)
      .slice(0, topK);
  }
}
