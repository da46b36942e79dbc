/**
 * The object detection head: reads the vision tower's token states of an image and outputs a fixed number of
 * scored slots, each a box in the tower's input crop with a class, attribute values and (optionally) a region
 * embedding. The runtime maps the boxes back to the original image, drops the slots under the threshold and
 * L2-normalizes the embeddings; a head without region embeddings gets them from the boxes' crops through the
 * vision tower.
 *
 * The tower sees the center crop the image processor makes (shortest edge resized, then cropped), so an
 * object outside that crop (at the ends of a long panorama) is not seen.
 */
import { InferenceError, ValidationError } from "../errors.ts";
import type { ImageEmbedder, ImageTokens, SessionProvider } from "./clip-encoders.ts";
import { readFloatOutput } from "./clip-encoders.ts";
import { type CropFrame, decodeImage, type ImageInput, type RawImage } from "./image-processor.ts";
import type { DetectionConfig } from "./pack-config.ts";
import { Tensor } from "./session.ts";
import { chunk, l2Normalize } from "./vector-math.ts";

/** A box as fractions of an image's width (`x`, rightwards) and height (`y`, downwards), `x0 ≤ x1`, `y0 ≤ y1`. */
export interface NormalizedBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** One detected object. */
export interface Detection {
  /** Class name: the most probable class. */
  label: string;
  /** Its probability. */
  labelScore: number;
  /** Most probable value of each attribute (e.g. `color`, `size`), with its probability. */
  attributes: Record<string, { value: string; score: number }>;
  /** Detection confidence in [0, 1]. */
  score: number;
  /** In [0, 1] of the original (EXIF-oriented) image, clipped to it. */
  box: NormalizedBox;
  /** L2-normalized region embedding in the pack's image-text space. */
  embedding?: Float32Array;
  /**
   * The whole distributions behind `label` and `attributes`: class name → probability, and attribute name →
   * value → probability. A second-best class can still name the object a question means (see
   * {@link findObject}).
   */
  probabilities?: { label: Record<string, number>; attributes: Record<string, Record<string, number>> };
}

/**
 * The detection that best stands for an object described by class and attribute values (`red circle`: label
 * `circle`, color `red`): the one whose probabilities give the description the highest likelihood, its
 * detection score times the probability of each named value. The argmax labels alone would miss an object
 * whose class came second (a small circle read as a hexagon). Undefined when no detection gives the
 * description any probability.
 */
export function findObject({
  detections,
  label,
  attributes = {},
}: {
  detections: readonly Detection[];
  label?: string;
  attributes?: Readonly<Record<string, string>>;
}): { detection: Detection; likelihood: number } | undefined {
  let best: { detection: Detection; likelihood: number } | undefined;
  for (const detection of detections) {
    const probabilityOf = (name: string | undefined, value: string): number => {
      const distribution =
        name === undefined ? detection.probabilities?.label : detection.probabilities?.attributes[name];
      if (distribution !== undefined) return distribution[value] ?? 0;
      // Without distributions, the argmax values only.
      const top = name === undefined ? detection.label : detection.attributes[name]?.value;
      return top === value ? 1 : 0;
    };
    let likelihood = detection.score;
    if (label !== undefined) likelihood *= probabilityOf(undefined, label);
    for (const [name, value] of Object.entries(attributes)) likelihood *= probabilityOf(name, value);
    if (likelihood > 0 && (best === undefined || likelihood > best.likelihood))
      best = { detection, likelihood };
  }
  return best;
}

/** The detections of one image, highest score first. */
export interface ImageDetections {
  /** Width of the original image in (EXIF-oriented) pixels. */
  width: number;
  /** Height of the original image in (EXIF-oriented) pixels. */
  height: number;
  detections: Detection[];
}

/** Options of {@link ObjectDetector}. */
export interface ObjectDetectorOptions {
  session: SessionProvider;
  imageEmbedder: ImageEmbedder;
  /** Parsed `loupe.detection`. */
  config: DetectionConfig;
  /** Embedding size (`projection_dim`): the width of the region embeddings. */
  dimension: number;
  /** Images per head run. */
  batchSize?: number;
}

/** Every slot of one image as the head outputs it, before thresholding and mapping. */
export interface DetectionSlots {
  scores: Float32Array;
  /** `[slots, 4]`: `x0, y0, x1, y1` in [0, 1] of the tower's input crop. */
  boxes: Float32Array;
  /** `[slots, classes]` probabilities. */
  classes: Float32Array;
  /** Attribute name → `[slots, values]` probabilities. */
  attributes: Record<string, Float32Array>;
  /** `[slots, dimension]` raw region embeddings, when the head outputs them. */
  embeddings?: Float32Array;
}

/** How much a box is enlarged, in total per axis, before its crop is embedded by the vision tower. */
const CROP_MARGIN = 0.2;

const clip01 = (value: number): number => Math.min(1, Math.max(0, value));

/**
 * Maps a box in [0, 1] of the tower's input crop to [0, 1] of the original image: through the crop's
 * offset in the resized image, then the resize scale (a fraction of the resized image is the same fraction
 * of the original). The result is clipped to the image; where the crop was zero padding, it may be empty.
 */
export function cropBoxToImage({ box, frame }: { box: NormalizedBox; frame: CropFrame }): NormalizedBox {
  const x = (value: number): number => clip01((frame.left + value * frame.cropWidth) / frame.resizedWidth);
  const y = (value: number): number => clip01((frame.top + value * frame.cropHeight) / frame.resizedHeight);
  const [x0, x1] = box.x0 <= box.x1 ? [box.x0, box.x1] : [box.x1, box.x0];
  const [y0, y1] = box.y0 <= box.y1 ? [box.y0, box.y1] : [box.y1, box.y0];
  return { x0: x(x0), y0: y(y0), x1: x(x1), y1: y(y1) };
}

/** `names[i]` → `values[start + i]`. */
function distributionOf(
  values: Float32Array,
  start: number,
  names: readonly string[],
): Record<string, number> {
  return Object.fromEntries(names.map((name, index) => [name, values[start + index] ?? 0]));
}

function argmax(values: Float32Array, start: number, length: number): { index: number; value: number } {
  let index = 0;
  let value = values[start] ?? Number.NEGATIVE_INFINITY;
  for (let offset = 1; offset < length; offset += 1) {
    const candidate = values[start + offset] ?? Number.NEGATIVE_INFINITY;
    if (candidate > value) {
      index = offset;
      value = candidate;
    }
  }
  return { index, value };
}

/**
 * The detections of one image from its slots: those scoring at least `threshold`, their boxes mapped
 * through `frame` to the original image (boxes left empty by the mapping are dropped), labels and attribute
 * values by argmax, embeddings L2-normalized; highest score first.
 */
export function decodeDetections({
  slots,
  config,
  frame,
  threshold,
}: {
  slots: DetectionSlots;
  config: Pick<DetectionConfig, "classes" | "attributes">;
  /** Where the crop lies in the original image; absent: boxes stay in [0, 1] of the crop. */
  frame?: CropFrame;
  threshold: number;
}): Detection[] {
  const classCount = config.classes.length;
  const count = slots.scores.length;
  const width = slots.embeddings === undefined ? 0 : slots.embeddings.length / Math.max(1, count);
  const detections: { detection: Detection; slot: number }[] = [];
  for (let slot = 0; slot < count; slot += 1) {
    const score = slots.scores[slot] ?? 0;
    if (!(score >= threshold)) continue;
    const raw = {
      x0: slots.boxes[slot * 4] ?? 0,
      y0: slots.boxes[slot * 4 + 1] ?? 0,
      x1: slots.boxes[slot * 4 + 2] ?? 0,
      y1: slots.boxes[slot * 4 + 3] ?? 0,
    };
    const box =
      frame === undefined
        ? cropBoxToImage({
            box: raw,
            frame: { resizedWidth: 1, resizedHeight: 1, left: 0, top: 0, cropWidth: 1, cropHeight: 1 },
          })
        : cropBoxToImage({ box: raw, frame });
    if (box.x1 <= box.x0 || box.y1 <= box.y0) continue;
    const best = argmax(slots.classes, slot * classCount, classCount);
    const attributes: Detection["attributes"] = {};
    const distributions: Record<string, Record<string, number>> = {};
    for (const [name, values] of Object.entries(config.attributes)) {
      const probabilities = slots.attributes[name];
      if (probabilities === undefined) continue;
      const top = argmax(probabilities, slot * values.length, values.length);
      attributes[name] = { value: values[top.index] ?? "", score: top.value };
      distributions[name] = distributionOf(probabilities, slot * values.length, values);
    }
    const detection: Detection = {
      label: config.classes[best.index] ?? "",
      labelScore: best.value,
      attributes,
      score,
      box,
      probabilities: {
        label: distributionOf(slots.classes, slot * classCount, config.classes),
        attributes: distributions,
      },
    };
    if (slots.embeddings !== undefined && width > 0) {
      detection.embedding = l2Normalize(slots.embeddings.slice(slot * width, (slot + 1) * width));
    }
    detections.push({ detection, slot });
  }
  // Stable on ties: the head's own order breaks them.
  detections.sort((left, right) => right.detection.score - left.detection.score || left.slot - right.slot);
  return detections.map(({ detection }) => detection);
}

/** Finds objects in images with the pack's detection head. */
export class ObjectDetector {
  /** Parsed `loupe.detection`. */
  readonly config: DetectionConfig;
  readonly batchSize: number;
  readonly #session: SessionProvider;
  readonly #imageEmbedder: ImageEmbedder;
  readonly #dimension: number;

  constructor({ session, imageEmbedder, config, dimension, batchSize = 16 }: ObjectDetectorOptions) {
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new ValidationError(`Detection batch size must be a positive integer, got ${batchSize}.`);
    }
    this.#session = session;
    this.#imageEmbedder = imageEmbedder;
    this.#dimension = dimension;
    this.config = config;
    this.batchSize = batchSize;
  }

  /**
   * Objects in each image, scoring at least `threshold` (default `score_threshold` of the pack), highest
   * score first, with boxes in [0, 1] of the original image.
   *
   * @throws ValidationError when `threshold` is not a number from 0 to 1; MediaError for an image that
   * cannot be read (as the image embedder).
   */
  async detect({
    images,
    threshold,
  }: {
    images: readonly ImageInput[];
    threshold?: number;
  }): Promise<ImageDetections[]> {
    return (await this.encodeAndDetect({ images, threshold })).detections;
  }

  /**
   * One vision-tower pass per image giving both its L2-normalized image embedding (as
   * {@link ImageEmbedder.embed}) and its detections (as {@link ObjectDetector.detect}).
   */
  async encodeAndDetect({
    images,
    threshold,
  }: {
    images: readonly ImageInput[];
    threshold?: number;
  }): Promise<{ embeddings: Float32Array[]; detections: ImageDetections[] }> {
    const minimum = this.#threshold(threshold);
    if (images.length === 0) return { embeddings: [], detections: [] };
    const encoded = await this.#imageEmbedder.encode({ images, withTokens: true });
    const tokens = encoded.tokens;
    if (tokens === undefined || tokens.length !== images.length) {
      throw new InferenceError("The vision model returned no token states.");
    }
    const processor = this.#imageEmbedder.processor;
    const sizes = await Promise.all(images.map((image) => processor.imageSize({ image })));
    const detections = await this.detectTokens({ tokens, sizes, images, threshold: minimum });
    return { embeddings: encoded.embeddings, detections };
  }

  /**
   * Detections from token states already computed by the vision tower (`last_hidden_state`, e.g. by an
   * ingest that embedded the images with `withTokens`), as {@link ObjectDetector.detect} gives them.
   *
   * @param sizes displayed (EXIF-oriented) size of each image: boxes are mapped through its crop frame.
   * @param images the images themselves, for region embeddings from their crops when the head outputs
   *   none; absent, such detections have no embedding.
   * @throws ValidationError when the lists differ in length or `threshold` is not a number from 0 to 1.
   */
  async detectTokens({
    tokens,
    sizes,
    images,
    threshold,
  }: {
    tokens: readonly ImageTokens[];
    sizes: readonly { width: number; height: number }[];
    images?: readonly ImageInput[];
    threshold?: number;
  }): Promise<ImageDetections[]> {
    const minimum = this.#threshold(threshold);
    if (sizes.length !== tokens.length || (images !== undefined && images.length !== tokens.length)) {
      throw new ValidationError(
        `detectTokens needs one size${images === undefined ? "" : " and one image"} per token state; got ${tokens.length} token states, ${sizes.length} sizes${images === undefined ? "" : ` and ${images.length} images`}.`,
      );
    }
    if (tokens.length === 0) return [];
    const processor = this.#imageEmbedder.processor;
    const slots = await this.runHead({ tokens });
    const detections: ImageDetections[] = [];
    for (const [index, size] of sizes.entries()) {
      const imageSlots = slots[index] as DetectionSlots;
      const found = decodeDetections({
        slots: imageSlots,
        config: this.config,
        frame: processor.cropFrame(size),
        threshold: minimum,
      });
      const image = images?.[index];
      if (imageSlots.embeddings === undefined && image !== undefined && found.length > 0) {
        await this.#embedCrops({ image, size, detections: found });
      }
      detections.push({ width: size.width, height: size.height, detections: found });
    }
    return detections;
  }

  /**
   * The head on token states already computed (`last_hidden_state` of the vision tower): every slot of each
   * image, boxes in [0, 1] of the tower's input crop. Runs in batches of {@link ObjectDetector.batchSize}.
   */
  async runHead({ tokens }: { tokens: readonly ImageTokens[] }): Promise<DetectionSlots[]> {
    const session = await this.#session();
    const { outputs: names, classes, attributes, max_detections: slotCount } = this.config;
    const attributeNames = Object.keys(attributes);
    const wanted = [
      names.scores,
      names.boxes,
      names.classes,
      ...attributeNames.map((name) => names.attributes[name] as string),
      ...(names.embeddings === undefined ? [] : [names.embeddings]),
    ];
    const results: DetectionSlots[] = [];
    for (const group of chunk(tokens, this.batchSize)) {
      const first = group[0] as ImageTokens;
      const size = first.length * first.width;
      const data = new Float32Array(group.length * size);
      for (const [index, image] of group.entries()) {
        if (image.length !== first.length || image.width !== first.width) {
          throw new ValidationError(
            `Token states of one head run must share a shape; got [${image.length}, ${image.width}] after [${first.length}, ${first.width}].`,
          );
        }
        data.set(image.data, index * size);
      }
      const outputs = await session.run({
        feeds: {
          [this.config.input]: new Tensor("float32", data, [group.length, first.length, first.width]),
        },
        outputs: wanted,
      });
      const read = (name: string, trailing: readonly number[]) => {
        const output = readFloatOutput({
          outputs,
          name,
          model: session.label,
          rank: 2 + (trailing.length > 0 ? 1 : 0),
          trailing: [slotCount, ...trailing],
        });
        if (output.dims[0] !== group.length) {
          throw new InferenceError(
            `${session.label} returned "${name}" for ${output.dims[0]} images; ${group.length} were fed.`,
            { context: { model: session.label, output: name, dims: output.dims } },
          );
        }
        return output.data;
      };
      const scores = read(names.scores, []);
      const boxes = read(names.boxes, [4]);
      const classProbs = read(names.classes, [classes.length]);
      const attributeProbs = Object.fromEntries(
        attributeNames.map((name) => [
          name,
          read(names.attributes[name] as string, [(attributes[name] as string[]).length]),
        ]),
      );
      const embeddings =
        names.embeddings === undefined ? undefined : read(names.embeddings, [this.#dimension]);
      for (let index = 0; index < group.length; index += 1) {
        const slice = (values: Float32Array, width: number): Float32Array =>
          values.slice(index * slotCount * width, (index + 1) * slotCount * width);
        results.push({
          scores: slice(scores, 1),
          boxes: slice(boxes, 4),
          classes: slice(classProbs, classes.length),
          attributes: Object.fromEntries(
            attributeNames.map((name) => [
              name,
              slice(attributeProbs[name] as Float32Array, (attributes[name] as string[]).length),
            ]),
          ),
          ...(embeddings === undefined ? {} : { embeddings: slice(embeddings, this.#dimension) }),
        });
      }
    }
    return results;
  }

  #threshold(threshold: number | undefined): number {
    if (threshold === undefined) return this.config.score_threshold;
    if (typeof threshold !== "number" || !Number.isFinite(threshold) || threshold < 0 || threshold > 1) {
      throw new ValidationError(`threshold must be a number from 0 to 1, got ${String(threshold)}.`, {
        context: { threshold },
      });
    }
    return threshold;
  }

  /**
   * Embeds each detection's region through the vision tower: its box enlarged by {@link CROP_MARGIN},
   * cut from the decoded image, then preprocessed as any image.
   */
  async #embedCrops({
    image,
    size,
    detections,
  }: {
    image: ImageInput;
    size: { width: number; height: number };
    detections: Detection[];
  }): Promise<void> {
    const decoded = await decodeImage({ image, limits: this.#imageEmbedder.processor.limits });
    if (decoded.width !== size.width || decoded.height !== size.height) {
      throw new InferenceError(
        `The image decoded to ${decoded.width}x${decoded.height} but its header says ${size.width}x${size.height}.`,
      );
    }
    const crops: RawImage[] = detections.map(({ box }) => {
      const padX = ((box.x1 - box.x0) * CROP_MARGIN) / 2;
      const padY = ((box.y1 - box.y0) * CROP_MARGIN) / 2;
      const left = Math.floor(clip01(box.x0 - padX) * decoded.width);
      const top = Math.floor(clip01(box.y0 - padY) * decoded.height);
      const right = Math.max(left + 1, Math.ceil(clip01(box.x1 + padX) * decoded.width));
      const bottom = Math.max(top + 1, Math.ceil(clip01(box.y1 + padY) * decoded.height));
      const width = Math.min(right, decoded.width) - left;
      const height = Math.min(bottom, decoded.height) - top;
      const data = new Uint8Array(width * height * 3);
      for (let row = 0; row < height; row += 1) {
        const from = ((top + row) * decoded.width + left) * 3;
        data.set(decoded.data.subarray(from, from + width * 3), row * width * 3);
      }
      return { data, width, height, channels: 3 };
    });
    const embeddings = await this.#imageEmbedder.embed({ images: crops });
    for (const [index, detection] of detections.entries()) detection.embedding = embeddings[index];
  }
}
