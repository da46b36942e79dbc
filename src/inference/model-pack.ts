/**
 * Loading a model pack: a directory in the Hugging Face CLIP ONNX layout (as `Xenova/clip-vit-base-patch32`),
 * optionally extended by Loupe's `loupe` block in `config.json` with a METER VQA head, a video head and an
 * object detection head, and by `vocabulary.json` with the words those heads and the chain understand.
 * models/README.md describes the layout.
 */
import { access, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { ModelPackError } from "../errors.ts";
import { ImageEmbedder, type SessionProvider, TextEmbedder } from "./clip-encoders.ts";
import { ObjectDetector } from "./detection-head.ts";
import { type ImageLimits, ImageProcessor } from "./image-processor.ts";
import { MANIFEST_FILE, verifyManifest } from "./manifest.ts";
import {
  answersSchema,
  type ClipConfig,
  clipConfigSchema,
  type DetectionConfig,
  type Manifest,
  manifestSchema,
  type PreprocessorConfig,
  preprocessorConfigSchema,
  readPackJson,
  type TokenizerConfig,
  tokenizerConfigSchema,
} from "./pack-config.ts";
import { createSession, type OnnxSession, type SessionContract, type SessionSettings } from "./session.ts";
import { loadTokenizer, type TextTokenizer } from "./tokenizer.ts";
import { VideoEmbedder } from "./video-embedder.ts";
import { type PackVocabulary, readPackVocabulary, VOCABULARY_FILE } from "./vocabulary.ts";
import { VqaHead } from "./vqa-head.ts";

/** Relative paths of the files of a pack. */
export const packFiles = {
  config: "config.json",
  preprocessor: "preprocessor_config.json",
  tokenizer: "tokenizer.json",
  tokenizerConfig: "tokenizer_config.json",
  manifest: MANIFEST_FILE,
  vocabulary: VOCABULARY_FILE,
  vision: "onnx/vision_model.onnx",
  text: "onnx/text_model.onnx",
  vqa: "onnx/meter_vqa.onnx",
  video: "onnx/video_model.onnx",
  detection: "onnx/detection_model.onnx",
} as const;

/** What a pack can do beyond embedding images and texts. */
export interface ModelPackCapabilities {
  /** Has a METER VQA head and its answer list. */
  vqa: boolean;
  /** Has a learned video head (without one, video embeddings average frame embeddings). */
  video: boolean;
  /** Has an object detection head (`loupe.detection`). */
  detection: boolean;
}

/** What can be known of a pack from its JSON files, without opening models. */
export interface ModelPackInfo {
  /** Absolute path of the pack directory. */
  dir: string;
  /** `loupe.model_id`, or the directory name for packs without a `loupe` block. */
  modelId: string;
  /** Embedding size (`projection_dim`). */
  dimension: number;
  /** Side of the square model input in pixels. */
  imageSize: number;
  /** Longest token sequence fed to the text tower. */
  textMaxLength: number;
  capabilities: ModelPackCapabilities;
  /** Frames taken by the video head, when there is one. */
  videoFrames: number | undefined;
  /** Grid side of the token features the video head reads per frame; undefined when it reads image embeddings. */
  videoTokenGrid: number | undefined;
  /** What the video head is fed per frame: `[dimension]`, or `[1 + grid², vision width]` for token grids. */
  videoFrameShape: number[];
  /** Relative paths of the ONNX files the pack uses. */
  modelFiles: string[];
  /** The colors, shapes, sizes and actions the pack declares in `vocabulary.json`; undefined without one. */
  vocabulary: PackVocabulary | undefined;
  config: ClipConfig;
  preprocessorConfig: PreprocessorConfig;
}

/** Whether something is at `path` (a file or a directory). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads a pack's JSON files and derives its id, dimension, input size and capabilities. Opens no model.
 *
 * @throws ModelPackError naming the file that is missing or invalid.
 */
export async function readModelPackInfo({ dir }: { dir: string }): Promise<ModelPackInfo> {
  const absolute = resolve(dir);
  let directory: Awaited<ReturnType<typeof stat>>;
  try {
    directory = await stat(absolute);
  } catch (error) {
    throw new ModelPackError(
      `Model pack directory ${absolute} does not exist. Fetch or install the pack first.`,
      {
        cause: error,
        context: { dir: absolute },
      },
    );
  }
  if (!directory.isDirectory()) {
    throw new ModelPackError(`Model pack path ${absolute} is not a directory.`, {
      context: { dir: absolute },
    });
  }
  const config = await readPackJson({ dir: absolute, file: packFiles.config, schema: clipConfigSchema });
  const preprocessorConfig = await readPackJson({
    dir: absolute,
    file: packFiles.preprocessor,
    schema: preprocessorConfigSchema,
  });
  const loupe = config.loupe;
  const modelFiles: string[] = [packFiles.vision, packFiles.text];
  let vqa = false;
  if (loupe?.vqa !== undefined) {
    for (const file of [packFiles.vqa, loupe.vqa.answers]) {
      if (!(await pathExists(join(absolute, file)))) {
        throw new ModelPackError(
          `config.json declares a VQA head but ${file} is missing from ${absolute}. Re-fetch or reinstall the pack.`,
          { context: { dir: absolute, file } },
        );
      }
    }
    modelFiles.push(packFiles.vqa);
    vqa = true;
  }
  let video = false;
  if (loupe?.video !== undefined) {
    if (!(await pathExists(join(absolute, packFiles.video)))) {
      throw new ModelPackError(
        `config.json declares a video head but ${packFiles.video} is missing from ${absolute}. Re-fetch or reinstall the pack.`,
        { context: { dir: absolute, file: packFiles.video } },
      );
    }
    modelFiles.push(packFiles.video);
    video = true;
  }
  let detection = false;
  if (loupe?.detection !== undefined) {
    if (!(await pathExists(join(absolute, packFiles.detection)))) {
      throw new ModelPackError(
        `config.json declares a detection head but ${packFiles.detection} is missing from ${absolute}. Re-fetch or reinstall the pack.`,
        { context: { dir: absolute, file: packFiles.detection } },
      );
    }
    modelFiles.push(packFiles.detection);
    detection = true;
  }
  const videoTokenGrid = loupe?.video?.frame_features === "token_grid" ? loupe.video.token_grid : undefined;
  if (videoTokenGrid !== undefined) {
    const { image_size: size, patch_size: patch } = config.vision_config;
    const patches = size / patch;
    if (!Number.isInteger(patches) || patches % videoTokenGrid !== 0) {
      throw new ModelPackError(
        `config.json's loupe.video.token_grid is ${videoTokenGrid}, which does not divide the vision tower's ` +
          `${size}/${patch} patch grid; it must be a divisor of ${Number.isInteger(patches) ? patches : "a whole patch grid"}.`,
        { context: { dir: absolute, file: "config.json" } },
      );
    }
  }
  const vocabulary = await readPackVocabulary({ dir: absolute });
  const processor = new ImageProcessor({ config: preprocessorConfig });
  const imageSize = processor.outputHeight;
  if (processor.outputHeight !== processor.outputWidth || imageSize !== config.vision_config.image_size) {
    throw new ModelPackError(
      `preprocessor_config.json makes ${processor.outputWidth}x${processor.outputHeight} images but config.json's ` +
        `vision_config.image_size is ${config.vision_config.image_size}; the two must agree.`,
      { context: { dir: absolute } },
    );
  }
  return {
    dir: absolute,
    modelId: loupe?.model_id ?? basename(absolute),
    dimension: config.projection_dim,
    imageSize,
    textMaxLength: config.text_config.max_position_embeddings,
    capabilities: { vqa, video, detection },
    videoFrames: loupe?.video?.num_frames,
    videoTokenGrid,
    videoFrameShape:
      videoTokenGrid === undefined
        ? [config.projection_dim]
        : [1 + videoTokenGrid * videoTokenGrid, config.vision_config.hidden_size],
    modelFiles,
    vocabulary,
    config,
    preprocessorConfig,
  };
}

/**
 * Input and output names each model file must have, and the shape the video head is fed: `[batch, frames,
 * dimension]` of image embeddings, or `[batch, frames, 1 + G², vision width]` of token grids.
 */
export function sessionContracts({
  vqa,
  videoFrameShape,
  detection,
  detectionTokenShape,
}: {
  vqa: boolean;
  /** Per-frame shape of the video head's input; absent: not checked. */
  videoFrameShape?: readonly number[];
  /** The detection head's declaration, when the pack has one. */
  detection?: DetectionConfig;
  /** `[tokens, width]` of the vision tower's token states the detection head is fed; absent: not checked. */
  detectionTokenShape?: readonly number[];
}): Record<string, SessionContract> {
  const detectionOutputs =
    detection === undefined
      ? []
      : [
          detection.outputs.scores,
          detection.outputs.boxes,
          detection.outputs.classes,
          ...Object.values(detection.outputs.attributes),
          ...(detection.outputs.embeddings === undefined ? [] : [detection.outputs.embeddings]),
        ];
  const detectionInput = detection?.input ?? "last_hidden_state";
  return {
    [packFiles.vision]: {
      requiredInputs: ["pixel_values"],
      requiredOutputs:
        vqa || detection !== undefined ? ["image_embeds", "last_hidden_state"] : ["image_embeds"],
    },
    [packFiles.text]: {
      requiredInputs: ["input_ids"],
      optionalInputs: ["attention_mask"],
      requiredOutputs: vqa ? ["text_embeds", "last_hidden_state"] : ["text_embeds"],
    },
    [packFiles.vqa]: {
      requiredInputs: ["image_tokens", "text_tokens", "text_mask"],
      requiredOutputs: ["logits"],
    },
    [packFiles.video]: {
      requiredInputs: ["frame_features"],
      requiredOutputs: ["video_embeds"],
      ...(videoFrameShape === undefined
        ? {}
        : { inputShapes: { frame_features: [null, null, ...videoFrameShape] } }),
    },
    [packFiles.detection]: {
      requiredInputs: [detectionInput],
      requiredOutputs: detectionOutputs,
      ...(detectionTokenShape === undefined
        ? {}
        : { inputShapes: { [detectionInput]: [null, ...detectionTokenShape] } }),
    },
  };
}

/**
 * `[tokens, width]` of the vision tower's `last_hidden_state`: the class token and the patch grid, each
 * `hidden_size` wide; undefined when the patch size does not divide the image size.
 */
export function visionTokenShape(config: ClipConfig): [number, number] | undefined {
  const { image_size: size, patch_size: patch, hidden_size: width } = config.vision_config;
  const side = size / patch;
  return Number.isInteger(side) ? [1 + side * side, width] : undefined;
}

/** Batch sizes of the model runs. */
export interface BatchSizes {
  /** Images per vision run (default 8). */
  image?: number;
  /** Texts per text run (default 32). */
  text?: number;
  /** Questions per VQA run (default 16). */
  vqa?: number;
  /** Images per detection head run (default 16). */
  detection?: number;
}

/** Options of {@link loadModelPack}. */
export interface LoadModelPackOptions {
  /** Pack directory. */
  dir: string;
  /** Check every file against `manifest.json` before use (a missing manifest is then an error). */
  verifyHashes?: boolean;
  /** Thread and provider settings of every session. */
  sessionOptions?: SessionSettings;
  /**
   * `eager` (default) opens and checks every model at load, so a broken pack fails at start-up and the first
   * request pays no load time; `lazy` opens each model on first use (for tools that need one tower only).
   */
  sessions?: "eager" | "lazy";
  /** Limits on images given to the image processor. */
  imageLimits?: ImageLimits;
  /** How many images of a batch are decoded at once. */
  decodeConcurrency?: number;
  batchSizes?: BatchSizes;
  /**
   * Copies of the vision tower run side by side (`SessionSettings.replicas`; `LOUPE_VISION_REPLICAS`), so
   * concurrent images are embedded in parallel; the other models are loaded once. Default 1.
   */
  visionReplicas?: number;
}

/** A loaded model pack. Create with {@link loadModelPack}; call {@link ModelPack.close} when done. */
export class ModelPack {
  readonly info: ModelPackInfo;
  readonly tokenizer: TextTokenizer;
  readonly imageProcessor: ImageProcessor;
  readonly imageEmbedder: ImageEmbedder;
  readonly textEmbedder: TextEmbedder;
  readonly videoEmbedder: VideoEmbedder;
  /** Present when the pack has a VQA head. */
  readonly vqaHead: VqaHead | undefined;
  /** VQA answer strings in logit order, when the pack has a VQA head. */
  readonly answers: readonly string[] | undefined;
  /** Present when the pack has an object detection head (`loupe.detection`). */
  readonly detector: ObjectDetector | undefined;
  readonly #sessions: Map<string, Promise<OnnxSession>>;
  #closed = false;

  constructor(options: {
    info: ModelPackInfo;
    tokenizer: TextTokenizer;
    imageProcessor: ImageProcessor;
    answers: readonly string[] | undefined;
    sessionFor: (file: string) => SessionProvider;
    sessions: Map<string, Promise<OnnxSession>>;
    batchSizes: BatchSizes;
    /** Image batches in flight at once: one more than the vision tower's copies, so one is always decoding. */
    imageRunsAtOnce?: number;
  }) {
    const { info, tokenizer, imageProcessor, answers, sessionFor, sessions, batchSizes, imageRunsAtOnce } =
      options;
    this.info = info;
    this.tokenizer = tokenizer;
    this.imageProcessor = imageProcessor;
    this.answers = answers;
    this.#sessions = sessions;
    this.imageEmbedder = new ImageEmbedder({
      session: sessionFor(packFiles.vision),
      processor: imageProcessor,
      dimension: info.dimension,
      batchSize: batchSizes.image,
      ...(imageRunsAtOnce === undefined ? {} : { runsAtOnce: imageRunsAtOnce }),
    });
    this.textEmbedder = new TextEmbedder({
      session: sessionFor(packFiles.text),
      tokenizer,
      dimension: info.dimension,
      batchSize: batchSizes.text,
    });
    this.videoEmbedder = new VideoEmbedder({
      imageEmbedder: this.imageEmbedder,
      head:
        info.capabilities.video && info.videoFrames !== undefined
          ? {
              session: sessionFor(packFiles.video),
              numFrames: info.videoFrames,
              tokenGrid: info.videoTokenGrid,
              frameShape: info.videoFrameShape,
            }
          : undefined,
    });
    this.vqaHead =
      info.capabilities.vqa && answers !== undefined
        ? new VqaHead({
            session: sessionFor(packFiles.vqa),
            imageEmbedder: this.imageEmbedder,
            textEmbedder: this.textEmbedder,
            answers,
            batchSize: batchSizes.vqa,
          })
        : undefined;
    const detection = info.config.loupe?.detection;
    this.detector =
      info.capabilities.detection && detection !== undefined
        ? new ObjectDetector({
            session: sessionFor(packFiles.detection),
            imageEmbedder: this.imageEmbedder,
            config: detection,
            dimension: info.dimension,
            batchSize: batchSizes.detection,
          })
        : undefined;
  }

  /** `loupe.model_id`, or the directory name. */
  get modelId(): string {
    return this.info.modelId;
  }

  /** Embedding size. */
  get dimension(): number {
    return this.info.dimension;
  }

  /** Side of the square model input in pixels. */
  get imageSize(): number {
    return this.info.imageSize;
  }

  get capabilities(): ModelPackCapabilities {
    return this.info.capabilities;
  }

  /** The visual vocabulary the pack declares (`vocabulary.json`); undefined when it declares none. */
  get vocabulary(): PackVocabulary | undefined {
    return this.info.vocabulary;
  }

  /** Whether {@link ModelPack.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Finishes the embeddings already asked for, then releases every opened session. Safe to call more than once. */
  async close(): Promise<void> {
    if (!this.#closed) await Promise.all([this.imageEmbedder.drain(), this.textEmbedder.drain()]);
    this.#closed = true;
    const opened = [...this.#sessions.values()];
    this.#sessions.clear();
    const settled = await Promise.allSettled(opened);
    await Promise.all(
      settled.map((result) => (result.status === "fulfilled" ? result.value.release() : Promise.resolve())),
    );
  }
}

/** Pack-relative paths of every file Loupe reads of a pack: what its manifest must list. */
export async function packUsedFiles({ info }: { info: ModelPackInfo }): Promise<string[]> {
  const used: string[] = [packFiles.config, packFiles.preprocessor, packFiles.tokenizer, ...info.modelFiles];
  if (info.config.loupe?.vqa !== undefined) used.push(info.config.loupe.vqa.answers);
  if (await pathExists(join(info.dir, packFiles.tokenizerConfig))) used.push(packFiles.tokenizerConfig);
  if (info.vocabulary !== undefined) used.push(packFiles.vocabulary);
  return used;
}

function checkManifestCovers({ manifest, files }: { manifest: Manifest; files: readonly string[] }): void {
  const missing = files.filter((file) => manifest.files[file] === undefined);
  if (missing.length > 0) {
    throw new ModelPackError(
      `manifest.json does not list ${missing.join(", ")}, so ${missing.length === 1 ? "it" : "they"} cannot be verified. ` +
        "Re-fetch or reinstall the pack, or check it and regenerate its manifest with: loupe models import --force <dir>",
      { context: { files: missing } },
    );
  }
}

/**
 * Loads a model pack: reads and validates its JSON files, verifies every file against `manifest.json`
 * (unless `verifyHashes` is false), loads the tokenizer and image processor, and opens the ONNX sessions
 * (eagerly by default), checking their input and output names.
 *
 * @throws ModelPackError naming the file and the fix when anything is missing, corrupt or mismatched.
 */
export async function loadModelPack({
  dir,
  verifyHashes = true,
  sessionOptions = {},
  sessions: sessionMode = "eager",
  imageLimits = {},
  decodeConcurrency = 2,
  batchSizes = {},
  visionReplicas = 1,
}: LoadModelPackOptions): Promise<ModelPack> {
  const absolute = resolve(dir);
  let manifest: Manifest | undefined;
  if (verifyHashes) {
    if (!(await pathExists(join(absolute, packFiles.manifest)))) {
      throw new ModelPackError(
        `Model pack ${absolute} has no manifest.json, so its files cannot be verified. A pack copied from the ` +
          `Hugging Face hub or exported by hand is checked and given one by: loupe models import ${absolute}`,
        { context: { dir: absolute, file: packFiles.manifest } },
      );
    }
    manifest = await readPackJson({ dir: absolute, file: packFiles.manifest, schema: manifestSchema });
    await verifyManifest({ dir: absolute, manifest });
  }
  const info = await readModelPackInfo({ dir: absolute });
  const hasTokenizerConfig = await pathExists(join(absolute, packFiles.tokenizerConfig));
  if (manifest !== undefined) {
    checkManifestCovers({ manifest, files: await packUsedFiles({ info }) });
  }
  let tokenizerConfig: TokenizerConfig = {};
  if (hasTokenizerConfig) {
    tokenizerConfig = await readPackJson({
      dir: absolute,
      file: packFiles.tokenizerConfig,
      schema: tokenizerConfigSchema,
    });
  }
  const tokenizer = await loadTokenizer({
    path: join(absolute, packFiles.tokenizer),
    tokenizerConfig,
    maxLength: info.textMaxLength,
  });
  let answers: string[] | undefined;
  const vqaConfig = info.config.loupe?.vqa;
  if (vqaConfig !== undefined) {
    answers = await readPackJson({ dir: absolute, file: vqaConfig.answers, schema: answersSchema });
  }
  const imageProcessor = new ImageProcessor({
    config: info.preprocessorConfig,
    limits: imageLimits,
    decodeConcurrency,
  });

  const contracts = sessionContracts({
    vqa: info.capabilities.vqa,
    videoFrameShape: info.videoFrameShape,
    detection: info.config.loupe?.detection,
    detectionTokenShape: visionTokenShape(info.config),
  });
  const sessions = new Map<string, Promise<OnnxSession>>();
  let pack: ModelPack | undefined;
  const open = (file: string): Promise<OnnxSession> => {
    if (pack?.closed === true) {
      return Promise.reject(
        new ModelPackError(`Model pack ${info.modelId} is closed; load it again to run ${file}.`),
      );
    }
    const existing = sessions.get(file);
    if (existing !== undefined) return existing;
    const contract = contracts[file];
    if (contract === undefined)
      return Promise.reject(new ModelPackError(`No contract for model file ${file}.`));
    const created = createSession({
      path: join(absolute, file),
      contract,
      settings: file === packFiles.vision ? { ...sessionOptions, replicas: visionReplicas } : sessionOptions,
      label: file,
    });
    sessions.set(file, created);
    // A failed open is not cached, so a later call can retry (e.g. after the file was restored).
    created.catch(() => {
      if (sessions.get(file) === created) sessions.delete(file);
    });
    return created;
  };
  pack = new ModelPack({
    info,
    tokenizer,
    imageProcessor,
    answers,
    sessionFor: (file) => () => open(file),
    sessions,
    batchSizes,
    imageRunsAtOnce: visionReplicas + 1,
  });
  if (sessionMode === "eager") {
    try {
      for (const file of info.modelFiles) await open(file);
    } catch (error) {
      await pack.close();
      throw error;
    }
  }
  return pack;
}
