/**
 * Video segment embeddings in the image-text space. With a pack's video head, the given frames are resampled
 * to the head's frame count and their raw image embeddings fed to it; without one (public CLIP packs), the
 * embedding is the mean of the L2-normalized frame embeddings. The result is always L2-normalized.
 */
import { ValidationError } from "../errors.ts";
import type { ImageEmbedder, SessionProvider } from "./clip-encoders.ts";
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

/** The pack's video head, when it has one. */
export interface VideoHeadSpec {
  session: SessionProvider;
  /** Frames the head takes (`loupe.video.num_frames`). */
  numFrames: number;
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
    const encoded = await this.#imageEmbedder.encode({
      images: unique.map((index) => frames[index] as ImageInput),
      normalize: false,
    });
    const byIndex = new Map(unique.map((frameIndex, position) => [frameIndex, encoded.embeddings[position]]));
    const features = indices.map((index) => byIndex.get(index) as Float32Array);
    const [embedding] = await this.embedFrameFeatures({ videos: [features] });
    return embedding as Float32Array;
  }

  /**
   * Embeds segments from per-frame raw (unnormalized) image embeddings that were computed already. With a
   * head, each video must have exactly {@link VideoEmbedder.numFrames} rows (resample first); without one,
   * the rows are normalized and averaged.
   */
  async embedFrameFeatures({
    videos,
  }: {
    videos: readonly (readonly Float32Array[])[];
  }): Promise<Float32Array[]> {
    const dimension = this.#imageEmbedder.dimension;
    for (const [videoIndex, features] of videos.entries()) {
      if (features.length === 0) throw new ValidationError(`Video ${videoIndex} has no frame features.`);
      for (const row of features) {
        if (row.length !== dimension) {
          throw new ValidationError(
            `Video ${videoIndex} has a frame feature of length ${row.length}; the pack's dimension is ${dimension}.`,
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
    const data = new Float32Array(videos.length * head.numFrames * dimension);
    videos.forEach((features, videoIndex) => {
      features.forEach((row, frameIndex) => {
        data.set(row, (videoIndex * head.numFrames + frameIndex) * dimension);
      });
    });
    const outputs = await session.run({
      feeds: { frame_features: new Tensor("float32", data, [videos.length, head.numFrames, dimension]) },
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
