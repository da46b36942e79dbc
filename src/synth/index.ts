/**
 * Shapes World generator: seeded scenes, clips and videos, their renders, texts, queries and questions,
 * and a dataset writer. The wording lives in `phrasing.json`, shared with the training scripts.
 */

export type {
  Clip,
  ClipDescription,
  ClipFrame,
  SampleClipOptions,
  SampleVideoOptions,
  Segment,
  Video,
} from "./clip.ts";
export { clipViolations, describeClip, sampleClip, sampleVideo, videoSegments } from "./clip.ts";
export type {
  DatasetManifest,
  DatasetOptions,
  DatasetProgress,
  DatasetSummary,
  ResolvedDatasetOptions,
} from "./dataset.ts";
export { DATASET_SPEC, datasetOptionsSchema, generateDataset, resolveDatasetOptions } from "./dataset.ts";
export type { DescribeSceneOptions, Description, ObjectGroup } from "./describe.ts";
export { describeScene, groupObjects, sceneKey } from "./describe.ts";
export type {
  Action,
  Answer,
  Color,
  ObjectKind,
  ObjectSet,
  Scene,
  SceneObject,
  Shape,
  Size,
} from "./domain.ts";
export {
  ACTION_VERBS,
  ACTIONS,
  ANSWER_VOCABULARY,
  BACKGROUND_RANGE,
  CANVAS_MARGIN,
  CENTER_BAND,
  CLIP_FRAMES,
  CLIP_OBJECT_COUNT_RANGE,
  COLOR_RGB,
  COLORS,
  IMAGE_SIZE_RANGE,
  MAX_COLOR_JITTER,
  MAX_PIXEL_NOISE,
  MIN_GROWTH_FACTOR,
  MIN_TRAVEL,
  OBJECT_COUNT_RANGE,
  OBJECT_GAP,
  ROTATION_RANGE,
  SHAPES,
  SIZE_RADIUS,
  SIZES,
  STAR_INNER_RATIO,
  sceneObjectSchema,
  sceneSchema,
  VIDEO_CLIP_COUNT_RANGE,
  VIDEO_FPS,
} from "./domain.ts";
export { readJsonl } from "./jsonl-reader.ts";
export type {
  GalleryItem,
  GalleryPartialQuery,
  GeneratePartialQueriesOptions,
  PartialQuery,
  PartialQueryKind,
  PhrasedPartialQuery,
  SamplePartialQueryOptions,
} from "./partial-query.ts";
export {
  countMatches,
  generatePartialQueries,
  isRelevant,
  PARTIAL_QUERY_KINDS,
  partialQueryKey,
  partialQueryKind,
  phrasePartialQuery,
  QUERY_COUNTS,
  samplePartialQuery,
} from "./partial-query.ts";
export type { ObjectPhraseParts, Phrasing } from "./phrasing.ts";
export { objectPhrase, PHRASING, withArticle } from "./phrasing.ts";
export type {
  GenerateQuestionsOptions,
  Question,
  QuestionSpec,
  QuestionType,
  QuestionVariant,
} from "./questions.ts";
export {
  answerQuestion,
  generateQuestions,
  isAskable,
  paraphraseQuestion,
  phraseQuestion,
  QUESTION_TYPES,
  QUESTION_VARIANTS,
  questionType,
} from "./questions.ts";
export type {
  EncodeImageOptions,
  ImageFormat,
  RawImage,
  RenderedImage,
  RenderRawOptions,
  RenderSceneOptions,
  Rgb,
} from "./render.ts";
export {
  encodeImage,
  IMAGE_EXTENSIONS,
  IMAGE_FORMATS,
  objectColors,
  renderScene,
  renderSceneRaw,
  sceneToSvg,
  shapeVertices,
} from "./render.ts";
export type { Rng } from "./rng.ts";
export { createRng, deriveSeed } from "./rng.ts";
export type { SampleSceneOptions } from "./scene.ts";
export { circleGap, objectKinds, placementViolations, sampleScene } from "./scene.ts";
export * from "./screens/index.ts";
export type { EncodeVideoOptions, RenderFramesOptions, VideoFormat } from "./video.ts";
export { encodeVideo, ffmpegBinary, renderClipFrames, renderVideoFrames, VIDEO_FORMATS } from "./video.ts";
