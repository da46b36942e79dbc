/**
 * Schemas of the JSON files of a model pack (Hugging Face CLIP layout plus Loupe's optional `loupe` block),
 * with the defaults Hugging Face applies when a field is absent, and a reader that turns every problem
 * into a {@link ModelPackError} naming the file.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { ModelPackError } from "../errors.ts";

const positiveInt = z.number().int().positive();

const labelName = z.string().min(1);
const outputName = z.string().min(1);

/**
 * `loupe.detection`: the object detection head (`onnx/detection_model.onnx`). It reads the vision tower's
 * token states and outputs `max_detections` slots per image, sorted by score: scores, boxes (`x0, y0, x1,
 * y1` in [0, 1] of the tower's input crop), softmax probabilities over `classes` and over each attribute's
 * values, and optionally a raw region embedding in the shared image-text space.
 */
export const detectionConfigSchema = z
  .object({
    /** Class names in the order of the class probability axis. */
    classes: z.array(labelName).min(1),
    /** Attribute name → value names in the order of that attribute's probability axis. */
    attributes: z.record(labelName, z.array(labelName).min(1)).default({}),
    /** The head's input: the vision tower's `last_hidden_state`. */
    input: z.string().min(1).default("last_hidden_state"),
    outputs: z.object({
      scores: outputName,
      boxes: outputName,
      classes: outputName,
      /** Attribute name → output name. */
      attributes: z.record(labelName, outputName).default({}),
      /** Raw region embeddings (`projection_dim` wide); absent: regions are embedded from their crops. */
      embeddings: outputName.optional(),
    }),
    /** Slots the head outputs per image (K). */
    max_detections: positiveInt,
    /** Detections below this score are dropped unless the caller asks for another threshold. */
    score_threshold: z.number().min(0).max(1),
    /** How the head was trained (informational). */
    training: z.record(z.string(), z.unknown()).optional(),
  })
  .refine(
    (detection) =>
      Object.keys(detection.attributes).length === Object.keys(detection.outputs.attributes).length &&
      Object.keys(detection.attributes).every((name) => detection.outputs.attributes[name] !== undefined),
    {
      message: "every attribute needs an output in outputs.attributes, and every output an attribute",
      path: ["outputs", "attributes"],
    },
  );
/** Parsed `loupe.detection`. */
export type DetectionConfig = z.infer<typeof detectionConfigSchema>;

/** `config.json`: the CLIP configuration, with Loupe's optional extension block. */
export const clipConfigSchema = z.object({
  model_type: z.string().optional(),
  projection_dim: positiveInt.default(512),
  text_config: z
    .object({
      hidden_size: positiveInt.default(512),
      max_position_embeddings: positiveInt.default(77),
      vocab_size: positiveInt.optional(),
    })
    .prefault({}),
  vision_config: z
    .object({
      hidden_size: positiveInt.default(768),
      image_size: positiveInt.default(224),
      patch_size: positiveInt.default(32),
    })
    .prefault({}),
  loupe: z
    .object({
      model_id: z.string().min(1),
      vqa: z.object({ answers: z.string().min(1) }).optional(),
      video: z
        .object({
          num_frames: positiveInt,
          fps: z.number().positive(),
          /**
           * What the head reads per frame: `image_embeds` ([frames, projection_dim]), or `token_grid`
           * ([frames, 1 + G·G, vision width]: the vision tower's raw CLS token, then its patch tokens
           * averaged over a G × G grid, G being `token_grid`).
           */
          frame_features: z.enum(["image_embeds", "token_grid"]).default("image_embeds"),
          token_grid: positiveInt.optional(),
        })
        .refine((video) => video.frame_features !== "token_grid" || video.token_grid !== undefined, {
          message: 'frame_features "token_grid" needs token_grid (the grid side, e.g. 4)',
          path: ["token_grid"],
        })
        .optional(),
      /** An object detection head; absent: the pack detects nothing. */
      detection: detectionConfigSchema.optional(),
      /** Set on an INT8 variant written by `loupe models quantize`: how it was made and from which pack. */
      quantization: z
        .object({
          method: z.string(),
          weight_type: z.enum(["qint8", "quint8"]),
          per_channel: z.boolean(),
          source_model_id: z.string().min(1),
        })
        .optional(),
    })
    .optional(),
});
/** Parsed `config.json`. */
export type ClipConfig = z.infer<typeof clipConfigSchema>;

const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

const sizeSchema = z.union([
  positiveInt.transform((value) => ({ shortest_edge: value })),
  z.object({ shortest_edge: positiveInt }),
  z.object({ height: positiveInt, width: positiveInt }),
]);

const cropSizeSchema = z.union([
  positiveInt.transform((value) => ({ height: value, width: value })),
  z.object({ height: positiveInt, width: positiveInt }),
]);

const channelTriple = z.union([
  z.number().transform((value) => [value, value, value]),
  z.array(z.number()).length(3),
]);

/** `preprocessor_config.json`: Hugging Face `CLIPImageProcessor` fields with their defaults. */
export const preprocessorConfigSchema = z.object({
  do_resize: z.boolean().default(true),
  size: sizeSchema.default({ shortest_edge: 224 }),
  resample: z.number().int().min(0).max(5).default(3),
  do_center_crop: z.boolean().default(true),
  crop_size: cropSizeSchema.default({ height: 224, width: 224 }),
  do_rescale: z.boolean().default(true),
  rescale_factor: z
    .number()
    .positive()
    .default(1 / 255),
  do_normalize: z.boolean().default(true),
  image_mean: channelTriple.default(OPENAI_CLIP_MEAN),
  image_std: channelTriple
    .default(OPENAI_CLIP_STD)
    .refine((values) => values.every((value) => value > 0), "image_std values must be > 0"),
  do_convert_rgb: z.boolean().default(true),
});
/** Parsed `preprocessor_config.json`. */
export type PreprocessorConfig = z.infer<typeof preprocessorConfigSchema>;

const tokenSchema = z.union([
  z.string(),
  z.object({ content: z.string() }).transform((token) => token.content),
]);

/** `tokenizer_config.json` (optional file): the fields Loupe reads. */
export const tokenizerConfigSchema = z.object({
  model_max_length: z.number().positive().optional(),
  pad_token: tokenSchema.nullable().optional(),
});
/** Parsed `tokenizer_config.json`. */
export type TokenizerConfig = z.infer<typeof tokenizerConfigSchema>;

/** `manifest.json`: sha256 of every file of the pack except itself. */
export const manifestSchema = z.object({
  files: z.record(z.string().min(1), z.string().regex(/^[0-9a-f]{64}$/i, "a sha256 hex digest")),
});
/** Parsed `manifest.json`. */
export type Manifest = z.infer<typeof manifestSchema>;

/** `answers.json`: the VQA answer strings in logit order. */
export const answersSchema = z.array(z.string().min(1)).min(2);

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "(root)"}: ${issue.message}`)
    .join("; ");
}

/**
 * Reads and validates one JSON file of a pack.
 *
 * @throws ModelPackError naming the file when it is missing, is not JSON, or does not fit the schema.
 */
export async function readPackJson<Schema extends z.ZodType>({
  dir,
  file,
  schema,
  fix = "Re-fetch or reinstall the pack.",
}: {
  dir: string;
  file: string;
  schema: Schema;
  /** The sentence that ends every message: what to do about the file. */
  fix?: string;
}): Promise<z.output<Schema>> {
  let text: string;
  try {
    text = await readFile(join(dir, file), "utf8");
  } catch (error) {
    throw new ModelPackError(`Model pack file ${file} is missing or unreadable in ${dir}. ${fix}`, {
      cause: error,
      context: { dir, file },
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? ` (${error.message})` : "";
    throw new ModelPackError(`Model pack file ${file} is not valid JSON${detail}. ${fix}`, {
      cause: error,
      context: { dir, file },
    });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new ModelPackError(
      `Model pack file ${file} has invalid fields: ${formatIssues(parsed.error)}. ${fix}`,
      { context: { dir, file } },
    );
  }
  return parsed.data;
}
