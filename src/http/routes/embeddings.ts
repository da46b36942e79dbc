/**
 * POST /v1/embeddings — OpenAI's embeddings endpoint over the model pack, so that OpenAI clients,
 * LangChain's `OpenAIEmbeddings` and LlamaIndex's `OpenAIEmbedding` get vectors in Loupe's multimodal
 * space unchanged. `input` is a string or a list; list items are strings (text) or, as Loupe's
 * extension, `{ "type": "image_url", "image_url": { "url" } }` parts (a data URL, an http(s) URL fetched
 * like ingestion's, or a stored item's id). Text is embedded by the same call `/v1/search` makes for a
 * text query, and images by the same call it makes for a query image, so these vectors are the ones
 * search compares against the stored items.
 */
import { z } from "@hono/zod-openapi";
import { mapWithConcurrency } from "../../concurrency.ts";
import { ValidationError } from "../../errors.ts";
import type { ModelPack } from "../../inference/index.ts";
import type { ImageQuery, ImageReference, SearchService } from "../../search/index.ts";
import { type ImageUrlLimits, parseImageUrl, resolveImageReference } from "../image-url.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  imageInputResponses,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
  payloadTooLargeResponse,
} from "../openapi.ts";

/** Most items one request embeds (OpenAI's limit; LangChain's `OpenAIEmbeddings` sends 512 at a time). */
export const MAX_EMBEDDING_INPUTS = 2048;
/** Longest text, in characters. Text past the pack's token limit is cut there, as in search. */
export const MAX_EMBEDDING_TEXT_LENGTH = 8192;
/**
 * Most characters of all texts of one request together. Tokenizing runs on the event loop (about a
 * microsecond a character, twice: once to count usage, once to embed), so this bounds how long one
 * request can hold it; LangChain's default batch of 512 chunks of 1000 characters fits.
 */
export const MAX_EMBEDDING_TOTAL_CHARACTERS = 1_000_000;
/** Most images one request embeds: each is decoded (and maybe downloaded) and run through the vision tower. */
export const MAX_EMBEDDING_IMAGES = 16;
/** Images fetched and embedded at once within one request. */
const IMAGE_CONCURRENCY = 4;

/** The settings the route reads: image and URL limits. */
export type EmbeddingsConfig = ImageUrlLimits;

/**
 * What the route uses of the model pack: its id and size, its tokenizer to count usage, and the text
 * tower's batch size to pace a long list.
 */
export type EmbeddingModels = Pick<ModelPack, "modelId" | "dimension" | "tokenizer"> & {
  textEmbedder: Pick<ModelPack["textEmbedder"], "batchSize">;
};

const ITEM_FORMS = 'a string, or { "type": "image_url", "image_url": { "url": "…" } }';

/** Whether a value looks like OpenAI's token-id input: a number, or a list of numbers or of such lists. */
function isTokenInput(value: unknown): boolean {
  if (typeof value === "number") return true;
  if (!Array.isArray(value) || value.length === 0) return false;
  return value.every(
    (item) =>
      typeof item === "number" ||
      (Array.isArray(item) && item.length > 0 && item.every((inner) => typeof inner === "number")),
  );
}

/**
 * Says what is wrong with one item of `input`, as a phrase to follow its name ("item 3 is a number; …"),
 * or undefined when it is fine (zod's union message alone says only "Invalid input").
 */
function describeBadItem(item: unknown): string | undefined {
  if (typeof item === "string") {
    if (item.length > MAX_EMBEDDING_TEXT_LENGTH) {
      return `is ${item.length} characters; the most is ${MAX_EMBEDDING_TEXT_LENGTH}`;
    }
    if (item.trim().length === 0) return "is empty; send text to embed";
    return undefined;
  }
  if (typeof item !== "object" || item === null || Array.isArray(item)) {
    const got = Array.isArray(item) ? "a list" : item === null ? "null" : `a ${typeof item}`;
    return `is ${got}; each item is ${ITEM_FORMS}`;
  }
  const part = item as { type?: unknown; image_url?: unknown };
  if (part.type !== "image_url") {
    return `has type ${JSON.stringify(part.type ?? null)}; Loupe embeds text and images: each item is ${ITEM_FORMS}`;
  }
  const url = (part.image_url as { url?: unknown } | null | undefined)?.url;
  if (typeof url !== "string" || url.length === 0) {
    return "has no image_url.url; send a data URL, an http(s) URL or a stored item's id (img_…)";
  }
  return undefined;
}

/** Says what is wrong with `input`, first problem first, as a phrase to follow "input: ". */
function describeBadInput(input: unknown): string {
  if (input === undefined || input === null) return `required: ${ITEM_FORMS}, or a list of those`;
  if (isTokenInput(input)) {
    return "token ids are not accepted: Loupe embeds text and images. Send the text itself (a string or a list of strings), or image_url parts (LangChain for Python sends token ids unless OpenAIEmbeddings has check_embedding_ctx_length=False)";
  }
  if (typeof input === "string") {
    const problem = describeBadItem(input);
    return problem === undefined ? "invalid text" : `the text ${problem}`;
  }
  if (!Array.isArray(input)) {
    return typeof input === "object"
      ? 'must be a string or a list; put an image_url part in a list: [{ "type": "image_url", … }]'
      : `must be ${ITEM_FORMS}, or a list of those; got a ${typeof input}`;
  }
  if (input.length === 0) return `an empty list; send 1–${MAX_EMBEDDING_INPUTS} items`;
  if (input.length > MAX_EMBEDDING_INPUTS) {
    return `${input.length} items; the most is ${MAX_EMBEDDING_INPUTS}. Split them into several requests`;
  }
  for (const [index, item] of input.entries()) {
    const problem = describeBadItem(item);
    if (problem !== undefined) return `item ${index} ${problem}`;
  }
  return `must be ${ITEM_FORMS}, or a list of those`;
}

const textInputSchema = z
  .string()
  .min(1, "text is empty; send text to embed")
  .max(MAX_EMBEDDING_TEXT_LENGTH, `text is over ${MAX_EMBEDDING_TEXT_LENGTH} characters`)
  .refine((text) => text.trim().length > 0, "text is empty; send text to embed");

/** An image to embed: Loupe's extension of OpenAI's input, in the shape of a chat `image_url` part. */
export const embeddingImageInputSchema = z
  .object({
    type: z.literal("image_url"),
    image_url: z.looseObject({
      url: z
        .string()
        .min(1)
        .describe(
          "A data URL (data:image/png;base64,…), an http(s) URL (fetched under the LOUPE_URL_* limits), or a stored item's id (img_…; seg_… embeds a segment's keyframe, tri_… a triple's image).",
        ),
    }),
  })
  .meta({ id: "EmbeddingImageInput" });

const inputItemSchema = z.union([textInputSchema, embeddingImageInputSchema], {
  error: (issue) => `the item ${describeBadItem(issue.input) ?? "is invalid"}`,
});

/** Body of POST /v1/embeddings. Other fields are accepted and ignored, as OpenAI clients add their own. */
export const embeddingsRequestSchema = z
  .looseObject({
    input: z
      .union(
        [
          textInputSchema,
          z
            .array(inputItemSchema)
            .min(1, `an empty list; send 1–${MAX_EMBEDDING_INPUTS} items`)
            .max(
              MAX_EMBEDDING_INPUTS,
              `more than ${MAX_EMBEDDING_INPUTS} items; split them into several requests`,
            ),
        ],
        { error: (issue) => describeBadInput(issue.input) },
      )
      .describe(
        `A text, or a list of up to ${MAX_EMBEDDING_INPUTS} texts and (at most ${MAX_EMBEDDING_IMAGES}) image_url parts; texts of at most ${MAX_EMBEDDING_TEXT_LENGTH} characters, ${MAX_EMBEDDING_TOTAL_CHARACTERS} in all. Token ids are not accepted.`,
      ),
    model: z
      .string({
        error:
          "model is required: the model pack's id (shapes-world-tiny@2 for the bundled pack; GET /v1/items shows it as modelId)",
      })
      .min(1, "model is empty: send the model pack's id")
      .max(200, "model must be at most 200 characters")
      .describe("The model pack's id: the only embedding model a Loupe serves."),
    encoding_format: z
      .enum(["float", "base64"], {
        error: (issue) =>
          `encoding_format ${JSON.stringify(issue.input)} is not supported; use "float" or "base64"`,
      })
      .nullable()
      .optional()
      .describe("`float` (the default): lists of numbers; `base64`: little-endian float32 bytes."),
    dimensions: z
      .number({ error: "dimensions must be an integer" })
      .int("dimensions must be an integer")
      .nullable()
      .optional()
      .describe("If given, must equal the pack's dimension: Loupe does not shorten vectors."),
    user: z.string().nullable().optional().describe("Accepted and ignored."),
  })
  .meta({ id: "EmbeddingsRequest" });

/** One embedding of the response. */
export const embeddingSchema = z
  .object({
    object: z.literal("embedding"),
    index: z.number().int().describe("Position of the input item it embeds."),
    embedding: z
      .union([z.array(z.number()), z.string()])
      .describe("A unit vector: numbers, or base64 of little-endian float32 with encoding_format base64."),
  })
  .meta({ id: "Embedding" });

/** Body of a 200 from POST /v1/embeddings. */
export const embeddingsResponseSchema = z
  .object({
    object: z.literal("list"),
    data: z.array(embeddingSchema),
    model: z.string().describe("The model pack's id."),
    usage: z
      .object({
        prompt_tokens: z
          .number()
          .int()
          .describe("Tokens of the text items as the pack's tokenizer cut them; images count 0."),
        total_tokens: z.number().int(),
      })
      .describe("What was embedded, in tokens."),
  })
  .meta({ id: "EmbeddingsResponse" });

type InputItem = string | z.infer<typeof embeddingImageInputSchema>;

/** Little-endian float32 bytes of a vector, base64-encoded, as OpenAI's `encoding_format: "base64"`. */
export function encodeBase64Float32(vector: Float32Array): string {
  const bytes = Buffer.alloc(vector.length * 4);
  for (const [index, value] of vector.entries()) bytes.writeFloatLE(value, index * 4);
  return bytes.toString("base64");
}

/**
 * Checks the request against the pack: its `model` must be the pack's id and `dimensions`, if given,
 * its dimension.
 *
 * @throws ValidationError naming the allowed value.
 */
function checkModel({
  model,
  dimensions,
  models,
}: {
  model: string;
  dimensions: number | null | undefined;
  models: Pick<EmbeddingModels, "modelId" | "dimension">;
}): void {
  if (model !== models.modelId) {
    throw new ValidationError(
      `Model ${JSON.stringify(model.slice(0, 200))} is not served here; the embedding model is ${JSON.stringify(models.modelId)} (the model pack's id).`,
      { context: { model: model.slice(0, 200), allowed: [models.modelId] } },
    );
  }
  if (dimensions !== undefined && dimensions !== null && dimensions !== models.dimension) {
    throw new ValidationError(
      `dimensions ${dimensions} is not available: ${models.modelId} makes ${models.dimension}-dimensional vectors and Loupe does not shorten them; send ${models.dimension} or leave dimensions out.`,
      { context: { dimensions, allowed: [models.dimension] } },
    );
  }
}

/** The /v1/embeddings route. */
export function createEmbeddingsRoute({
  search,
  models,
  config,
}: {
  search: Pick<SearchService, "embedText" | "embedImage">;
  models: EmbeddingModels;
  config: EmbeddingsConfig;
}) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/embeddings",
      operationId: "createEmbeddings",
      tags: ["search"],
      summary: "Embeddings in OpenAI's format, for text and images",
      description: `OpenAI's embeddings endpoint over the model pack: \`model\` is the pack's id; \`input\` a text or a list of up to ${MAX_EMBEDDING_INPUTS} texts, and, as Loupe's extension, image_url parts (at most ${MAX_EMBEDDING_IMAGES}: data URLs, http(s) URLs fetched under the LOUPE_URL_* limits, or stored items' ids), mixed in one list. Texts are embedded exactly as /v1/search embeds a text query, images as it embeds a query image, so the vectors are comparable with each other and with the stored items'. \`encoding_format\`: float or base64 (little-endian float32). \`dimensions\` must equal the pack's. \`usage\` counts the text items' tokens as the pack's tokenizer cuts them (text past its limit, 77 tokens for CLIP and 32 for the bundled pack, is not embedded, as in search); images count 0. Token-id input is refused.`,
      request: {
        body: {
          description: "What to embed, and how to encode the vectors.",
          content: { "application/json": { schema: embeddingsRequestSchema } },
        },
      },
      responses: {
        200: jsonResponse("One embedding per input item, in order.", embeddingsResponseSchema),
        400: invalidRequestResponse,
        404: errorResponse("A stored item's id names no item of the caller's tenant (code `not_found`)."),
        413: payloadTooLargeResponse("LOUPE_MAX_JSON_BYTES; a fetched image over LOUPE_URL_MAX_BYTES"),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    // Heavy, as classify: one request may run the towers over many texts and images.
    { access: { scope: "read", cost: 2 } },
  );
  return createRouter().openapi(route, async (c) => {
    const body = c.req.valid("json");
    checkModel({ model: body.model, dimensions: body.dimensions, models });
    const items: InputItem[] = typeof body.input === "string" ? [body.input] : body.input;
    const imageCount = items.filter((item) => typeof item !== "string").length;
    if (imageCount > MAX_EMBEDDING_IMAGES) {
      throw new ValidationError(
        `input holds ${imageCount} images; the most is ${MAX_EMBEDDING_IMAGES} per request. Split them into several requests.`,
        { context: { images: imageCount, limit: MAX_EMBEDDING_IMAGES } },
      );
    }
    const characters = items.reduce((sum, item) => sum + (typeof item === "string" ? item.length : 0), 0);
    if (characters > MAX_EMBEDDING_TOTAL_CHARACTERS) {
      throw new ValidationError(
        `input holds ${characters} characters of text; the most is ${MAX_EMBEDDING_TOTAL_CHARACTERS} per request. Split it into several requests (LangChain: a smaller batchSize).`,
        { context: { characters, limit: MAX_EMBEDDING_TOTAL_CHARACTERS } },
      );
    }
    // Every image reference is parsed before any is fetched or embedded, so a bad one costs nothing.
    const images: Array<{ index: number; reference: ImageReference }> = [];
    const texts: Array<{ index: number; text: string }> = [];
    for (const [index, item] of items.entries()) {
      if (typeof item === "string") {
        texts.push({ index, text: item });
      } else {
        const field = `input[${index}].image_url.url`;
        images.push({ index, reference: parseImageUrl({ url: item.image_url.url, field, limits: config }) });
      }
    }

    const tenant = c.get("tenant");
    // Stops the other list's work once one item has failed, or the client has gone.
    const failed = new AbortController();
    const signal = AbortSignal.any([c.req.raw.signal, failed.signal]);
    const vectors = new Array<Float32Array>(items.length);
    let promptTokens = 0;
    const embedding = Promise.all([
      // One search call per text, a batch's worth in flight at a time: they share the text tower's runs,
      // and other callers' queries join between those runs instead of waiting behind the whole list.
      mapWithConcurrency({
        items: texts,
        limit: models.textEmbedder.batchSize,
        signal,
        task: async ({ index, text }) => {
          // Counted here, a text at a time, so that a long list does not hold the event loop in one go.
          promptTokens += models.tokenizer.encode({ text }).length;
          vectors[index] = await search.embedText(text);
        },
      }),
      mapWithConcurrency({
        items: images,
        limit: IMAGE_CONCURRENCY,
        signal,
        task: async ({ index, reference }) => {
          const image: ImageQuery = await resolveImageReference({ reference, limits: config, signal });
          vectors[index] = await search.embedImage({ tenant, image });
        },
      }),
    ]);
    await embedding.catch((error: unknown) => {
      failed.abort(error);
      throw error;
    });

    const base64 = body.encoding_format === "base64";
    return c.json(
      {
        object: "list" as const,
        data: vectors.map((vector, index) => ({
          object: "embedding" as const,
          index,
          embedding: base64 ? encodeBase64Float32(vector) : Array.from(vector),
        })),
        model: models.modelId,
        usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
      },
      200,
    );
  });
}
