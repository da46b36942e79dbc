/**
 * Video segment embeddings in the image-text space. With a pack's video head, the given frames are resampled
 * to the head's frame count and their features fed to it: raw image embeddings, or (a token-grid head)
 * the vision tower's CLS token and its patch tokens averaged over a small grid, which say where things are.
 * Without a head (public CLIP packs), the embedding is the mean of the L2-normalized frame embeddings. The
 * result is always L2-normalized.
 */
import { ValidationError } from "../errors.ts";
import type { ImageEmbedder, ImageTokens, SessionProvider } from "./clip-encoders.ts";
import { readFloatOutput } from "./clip-encoders.ts";
import type { ImageInput } from "./image-processor.ts";
import { Tensor } from "./session.ts";
import { l2Normalize } from "./vector-math.ts";

/**
 * Indices of `frames` frames spread evenly over `count` given frames, first and last included
 * (`round(i · (count − 1) / (frames − 1))`, halves rounded up); the middle frame when `frames` is 1.
 */
export function resampleIndices({ count, frames }: { count: number; frames: number }): number[] {
  if (!Number.isInteger(count) || count < 1)
    throw new ValidationError(`A video needs at least one frame, got ${count}.`);
  if (frames === 1) return [Math.floor((count - 1) / 2)];
  return Array.from({ length: frames }, (_, index) => Math.floor((index * (count - 1)) / (frames - 1) + 0.5));
}

/**
 * One frame's vision tower tokens as a token-grid video head reads them: the CLS token, then the patch tokens
 * averaged over a `grid` × `grid` grid in row-major order; `[1 + grid², width]` row-major.
 *
 * @throws ValidationError when the tokens are not a CLS token and a square patch grid that `grid` divides.
 */
export function poolTokenGrid({ tokens, grid }: { tokens: ImageTokens; grid: number }): Float32Array {
  const { data, length, width } = tokens;
  const side = Math.round(Math.sqrt(length - 1));
  if (side * side !== length - 1 || side % grid !== 0 || data.length !== length * width) {
    throw new ValidationError(
      `Frame tokens of length ${length} are not a class token and a square patch grid divisible by ${grid}.`,
    );
  }
  const cell = side / grid;
  const out = new Float32Array((1 + grid * grid) * width);
  out.set(data.subarray(0, width), 0);
  const scale = 1 / (cell * cell);
  for (let row = 0; row < side; row += 1) {
    for (let col = 0; col < side; col += 1) {
      const source = (1 + row * side + col) * width;
      const target = (1 + Math.floor(row / cell) * grid + Math.floor(col / cell)) * width;
      for (let channel = 0; channel < width; channel += 1) {
        out[target + channel] = (out[target + channel] ?? 0) + (data[source + channel] ?? 0) * scale;
      }
    }
  }
  return out;
}

/** The pack's video head, when it has one. */
export interface VideoHeadSpec {
  session: SessionProvider;
  /** Frames the head takes (`loupe.video.num_frames`). */
  numFrames: number;
  /** Grid side when the head reads pooled tower tokens (`loupe.video.token_grid`); absent: image embeddings. */
  tokenGrid?: number;
  /** What the head is fed per frame: `[dimension]`, or `[1 + tokenGrid², vision width]` (see ModelPackInfo). */
  frameShape: readonly number[];
}

/** Frames through the vision tower once: their raw image embeddings and what the video head reads of each. */
export interface EncodedFrames {
  /** Raw (unnormalized) image embeddings, one per frame. */
  embeddings: Float32Array[];
  /** The head's per-frame features (the same arrays as `embeddings` unless the head reads tokens). */
  features: Float32Array[];
}

/** Options of {@link VideoEmbedder}. */
export interface VideoEmbedderOptions {
  imageEmbedder: ImageEmbedder;
  /** Absent for packs without a video head: frame embeddings are averaged instead. */
  head?: VideoHeadSpec;
}

/** Embeds video segments from their frames. */
export class VideoEmbedder {
  readonly #imageEmbedder: ImageEmbedder;
  readonly #head: VideoHeadSpec | undefined;

  constructor({ imageEmbedder, head }: VideoEmbedderOptions) {
    this.#imageEmbedder = imageEmbedder;
    this.#head = head;
  }

  /** Whether a learned video head is used (otherwise the mean of frame embeddings). */
  get hasHead(): boolean {
    return this.#head !== undefined;
  }

  /** Frames the head takes, or undefined without a head (any number of frames is then used). */
  get numFrames(): number | undefined {
    return this.#head?.numFrames;
  }

  /**
   * Embeds one segment from its frames in time order (encoded images or raw RGB frames). With a head, only
   * the resampled frames are decoded and embedded.
   *
   * @throws ValidationError when no frame is given.
   */
  async embed({ frames }: { frames: readonly ImageInput[] }): Promise<Float32Array> {
    if (frames.length === 0) throw new ValidationError("A video segment needs at least one frame, got none.");
    const head = this.#head;
    if (head === undefined) {
      const embeddings = await this.#imageEmbedder.embed({ images: frames });
      return this.#meanOfNormalized(embeddings);
    }
    const indices = resampleIndices({ count: frames.length, frames: head.numFrames });
    const unique = [...new Set(indices)];
    const encoded = await this.encodeFrames({ images: unique.map((index) => frames[index] as ImageInput) });
    const byIndex = new Map(unique.map((frameIndex, position) => [frameIndex, encoded.features[position]]));
    const features = indices.map((index) => byIndex.get(index) as Float32Array);
    const [embedding] = await this.embedFrameFeatures({ videos: [features] });
    return embedding as Float32Array;
  }

  /** Length of one frame's features as {@link VideoEmbedder.embedFrameFeatures} takes them. */
  get frameFeatureLength(): number {
    const shape = this.#head?.frameShape ?? [this.#imageEmbedder.dimension];
    return shape.reduce((product, size) => product * size, 1);
  }

  /**
   * Runs frames through the vision tower once, in batches, returning their raw image embeddings (for shot
   * detection) and the per-frame features {@link VideoEmbedder.embedFrameFeatures} takes.
   */
  async encodeFrames({ images }: { images: readonly ImageInput[] }): Promise<EncodedFrames> {
    const grid = this.#head?.tokenGrid;
    if (grid === undefined) {
      const { embeddings } = await this.#imageEmbedder.encode({ images, normalize: false });
      return { embeddings, features: embeddings };
    }
    const { embeddings, tokens = [] } = await this.#imageEmbedder.encode({
      images,
      normalize: false,
      withTokens: true,
    });
    return {
      embeddings,
      features: tokens.map((frameTokens) => poolTokenGrid({ tokens: frameTokens, grid })),
    };
  }

  /**
   * Embeds segments from per-frame features computed already by {@link VideoEmbedder.encodeFrames}. With a
   * head, each video must have exactly {@link VideoEmbedder.numFrames} rows (resample first); without one,
   * the rows (raw image embeddings) are normalized and averaged.
   */
  async embedFrameFeatures({
    videos,
  }: {
    videos: readonly (readonly Float32Array[])[];
  }): Promise<Float32Array[]> {
    const dimension = this.#imageEmbedder.dimension;
    const rowLength = this.frameFeatureLength;
    for (const [videoIndex, features] of videos.entries()) {
      if (features.length === 0) throw new ValidationError(`Video ${videoIndex} has no frame features.`);
      for (const row of features) {
        if (row.length !== rowLength) {
          throw new ValidationError(
            `Video ${videoIndex} has a frame feature of length ${row.length}; the pack's video features have length ${rowLength}.`,
          );
        }
      }
    }
    const head = this.#head;
    if (head === undefined) return videos.map((features) => this.#meanOfNormalized(features));
    if (videos.length === 0) return [];
    for (const [videoIndex, features] of videos.entries()) {
      if (features.length !== head.numFrames) {
        throw new ValidationError(
          `Video ${videoIndex} has ${features.length} frame features; the video head takes exactly ${head.numFrames}. ` +
            "Resample with resampleIndices() first.",
        );
      }
    }
    const session = await head.session();
    const data = new Float32Array(videos.length * head.numFrames * rowLength);
    videos.forEach((features, videoIndex) => {
      features.forEach((row, frameIndex) => {
        data.set(row, (videoIndex * head.numFrames + frameIndex) * rowLength);
      });
    });
    const outputs = await session.run({
      feeds: {
        frame_features: new Tensor("float32", data, [videos.length, head.numFrames, ...head.frameShape]),
      },
      outputs: ["video_embeds"],
    });
    const embeds = readFloatOutput({
      outputs,
      name: "video_embeds",
      model: session.label,
      rank: 2,
      trailing: [dimension],
    });
    return videos.map((_, index) =>
      l2Normalize(embeds.data.slice(index * dimension, (index + 1) * dimension)),
    );
  }

  #meanOfNormalized(embeddings: readonly Float32Array[]): Float32Array {
    const sum = new Float32Array(this.#imageEmbedder.dimension);
    for (const embedding of embeddings) {
      const unit = l2Normalize(embedding);
      for (let index = 0; index < sum.length; index += 1) sum[index] = (sum[index] ?? 0) + (unit[index] ?? 0);
    }
    return l2Normalize(sum);
  }
}
