/**
 * Loupe's local inference runtime (onnxruntime-node, sharp, @huggingface/tokenizers). Load a pack with
 * {@link loadModelPack}; its embedders and heads are the API the ingest and RAG layers use.
 */
export type {
  ImageEncoding,
  ImageTokens,
  SessionProvider,
  TextEncoding,
  TextTokenBatch,
} from "./clip-encoders.ts";
export { ImageEmbedder, TextEmbedder } from "./clip-encoders.ts";
export type {
  Detection,
  DetectionSlots,
  ImageDetections,
  NormalizedBox,
  ObjectDetectorOptions,
} from "./detection-head.ts";
export { cropBoxToImage, decodeDetections, findObject, ObjectDetector } from "./detection-head.ts";
export type {
  CropFrame,
  ImageInput,
  ImageLimits,
  PixelBatch,
  RawImage,
  RgbImage,
} from "./image-processor.ts";
export { decodeImage, defaultImageLimits, ImageProcessor, sniffImageFormat } from "./image-processor.ts";
export { sha256File, verifyManifest, writeManifest } from "./manifest.ts";
export type {
  BatchSizes,
  LoadModelPackOptions,
  ModelPackCapabilities,
  ModelPackInfo,
} from "./model-pack.ts";
export { loadModelPack, ModelPack, packFiles, readModelPackInfo, visionTokenShape } from "./model-pack.ts";
export type { OcrEngine, OcrLimits } from "./ocr/ocr-engine.ts";
export type { PpOcrEngineOptions } from "./ocr/pp-ocr.ts";
export { createPpOcrEngine, PP_OCR_FILES, PP_OCR_MODELS_PACKAGE, ppOcrModelDir } from "./ocr/pp-ocr.ts";
export type {
  ClipConfig,
  DetectionConfig,
  Manifest,
  PreprocessorConfig,
  TokenizerConfig,
} from "./pack-config.ts";
export { detectionConfigSchema } from "./pack-config.ts";
export type { FetchedPack, FetchPackOptions, FetchProgress, KnownPack } from "./pack-fetch.ts";
export { fetchPack, knownPacks, resolvePackName } from "./pack-fetch.ts";
export type { SessionSettings } from "./session.ts";
export { defaultSessionSettings } from "./session.ts";
export type { EncodedBatch, PaddingStrategy } from "./tokenizer.ts";
export { loadTokenizer, TextTokenizer } from "./tokenizer.ts";
export { cosineSimilarity, l2Normalize, softmax } from "./vector-math.ts";
export { resampleIndices, VideoEmbedder } from "./video-embedder.ts";
export type { PackVocabulary, VocabularyAction } from "./vocabulary.ts";
export {
  EMPTY_VOCABULARY,
  isEmptyVocabulary,
  readPackVocabulary,
  VOCABULARY_FILE,
  vocabularySchema,
} from "./vocabulary.ts";
export type { VqaAnswer } from "./vqa-head.ts";
export { VqaHead } from "./vqa-head.ts";
