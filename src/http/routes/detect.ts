/**
 * POST /v1/detect — the pack's detection head on one image: JSON `{ image, threshold?, query? }` (image as
 * base64, a data URL, an http(s) URL or a stored item's id) or multipart with an `image` file. Answers the
 * objects found, each with its class, attribute values, score and box (normalized to the original image and
 * in its pixels), highest score first; a `query` adds each region's cosine with the query's text embedding
 * and ranks by it. The head sees the center crop the image processor makes, so objects outside it are not
 * found. No retrieval: this is the object-level step on its own.
 */
import { z } from "@hono/zod-openapi";
import { NotReadyError, ValidationError } from "../../errors.ts";
import type { Detection, ModelPack } from "../../inference/index.ts";
import type { ImageQuery, SearchService } from "../../search/index.ts";
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
import {
  isMultipart,
  MAX_QUERY_TEXT_LENGTH,
  queryBodyLimit,
  queryFormShape,
  readImageQuery,
} from "./search.ts";

const THRESHOLD_ERROR = "threshold must be a number from 0 to 1";

/** Body of POST /v1/detect. */
export const detectRequestSchema = z
  .object({
    image: z
      .string()
      .min(1)
      .optional()
      .describe(
        "The image: base64 bytes, a data URL (data:image/png;base64,…), an http(s) URL (fetched like ingestion's) or a stored item's id (img_…, seg_…, tri_…); or upload it as the multipart file `image`.",
      ),
    threshold: z
      .number({ error: THRESHOLD_ERROR })
      .min(0, THRESHOLD_ERROR)
      .max(1, THRESHOLD_ERROR)
      .optional()
      .describe("Lowest detection score returned (default: the pack's `score_threshold`)."),
    query: z
      .string({ error: `query must be a text of 1 to ${MAX_QUERY_TEXT_LENGTH} characters` })
      .trim()
      .min(1, "query must not be empty")
      .max(MAX_QUERY_TEXT_LENGTH, `query must be at most ${MAX_QUERY_TEXT_LENGTH} characters`)
      .optional()
      .describe(
        'A description ("the red circle"): each detection gets `match`, the cosine of its region with the text, and the list is sorted by it.',
      ),
  })
  .strict()
  .meta({ id: "DetectRequest" });
/** Parsed body of POST /v1/detect. */
export type DetectRequest = z.infer<typeof detectRequestSchema>;

const boxSchema = (description: string) =>
  z
    .object({ x0: z.number(), y0: z.number(), x1: z.number(), y1: z.number() })
    .describe(`${description}; x rightwards, y downwards, x0 ≤ x1, y0 ≤ y1.`);

/** One object of a 200 from /v1/detect. */
export const detectionSchema = z
  .object({
    label: z
      .string()
      .describe("The object's class (e.g. `circle`): the most probable of the pack's classes."),
    labelScore: z.number().describe("The class's probability."),
    attributes: z
      .record(z.string(), z.string())
      .describe(
        "The most probable value of each attribute the pack declares, e.g. `{ color: red, size: large }`.",
      ),
    score: z.number().describe("Detection confidence, 0–1."),
    box: boxSchema("The box in [0, 1] of the image's width and height (after EXIF orientation)"),
    boxPixels: boxSchema("The box in pixels of the image (after EXIF orientation), to 0.1 px"),
    match: z
      .number()
      .optional()
      .describe("With a `query`: the cosine of the region's embedding with the query's, −1 to 1."),
  })
  .meta({ id: "Detection" });

/** Body of a 200 from /v1/detect. */
export const detectResponseSchema = z
  .object({
    model: z.string().describe("The model pack's id."),
    image: z
      .object({ width: z.number().int(), height: z.number().int() })
      .describe("The image's size in pixels after EXIF orientation."),
    detections: z
      .array(detectionSchema)
      .describe("Objects scoring at least the threshold, highest score first (highest match with a query)."),
  })
  .meta({ id: "DetectResponse" });

/** What the route uses of the model pack. */
export type DetectModels = Pick<ModelPack, "detector" | "modelId" | "textEmbedder">;

const tenths = (value: number): number => Math.round(value * 10) / 10;

function dot(left: Float32Array, right: Float32Array): number {
  let sum = 0;
  for (let index = 0; index < left.length; index += 1) sum += (left[index] ?? 0) * (right[index] ?? 0);
  return sum;
}

/** The request body and its image: an uploaded file, or the `image` string (an http(s) URL is fetched). */
async function readDetectRequest({
  multipart,
  json,
  form,
  config,
  signal,
}: {
  multipart: boolean;
  /** The JSON body, validated by the route's declaration (ignored for multipart). */
  json: unknown;
  /** The form fields, validated by the route's declaration (ignored for JSON). */
  form: object;
  config: ImageUrlLimits;
  signal: AbortSignal;
}): Promise<{ body: DetectRequest; image: ImageQuery | undefined }> {
  const body = json as DetectRequest;
  if (!multipart && body.image !== undefined && /^\s*https?:\/\//i.test(body.image)) {
    const reference = parseImageUrl({ url: body.image, field: "image", limits: config });
    return { body, image: await resolveImageReference({ reference, limits: config, signal }) };
  }
  // A form's fields are text; the threshold is a number in the JSON shape the schema checks.
  const threshold = multipart ? (form as { threshold?: unknown }).threshold : undefined;
  return readImageQuery({
    multipart,
    json,
    form:
      typeof threshold === "string"
        ? { ...form, threshold: threshold.trim() === "" ? undefined : Number(threshold) }
        : form,
    schema: detectRequestSchema,
    limits: config,
  });
}

/** The /v1/detect route. */
export function createDetectRoute({
  search,
  models,
  config,
}: {
  search: SearchService;
  models: DetectModels;
  config: ImageUrlLimits;
}) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/detect",
      operationId: "detect",
      tags: ["search"],
      summary: "Find the objects in one image",
      description:
        "The model pack's detection head on one image (base64, data URL, http(s) URL, a stored item's id, or an uploaded file): each object's class, attributes, score and box, normalized to the image and in its pixels, highest score first. With `query`, each object also gets `match` (cosine of its region with the text) and the list is sorted by it. The head sees the center crop the pack's image processor makes (the shortest edge resized, then the middle cut out), so objects outside that crop are not found.",
      middleware: [queryBodyLimit(config)],
      request: {
        body: {
          description: "An image, and optionally a threshold and a description to match.",
          content: {
            "application/json": { schema: detectRequestSchema },
            "multipart/form-data": {
              schema: z.strictObject({
                image: queryFormShape.image,
                threshold: z.string().optional().describe("Lowest detection score returned, a number 0–1."),
                query: z
                  .string()
                  .optional()
                  .describe(
                    `A description to match the regions against (at most ${MAX_QUERY_TEXT_LENGTH} characters).`,
                  ),
              }),
            },
          },
        },
      },
      responses: {
        200: jsonResponse("The objects found, highest score (or match) first.", detectResponseSchema),
        400: invalidRequestResponse,
        404: errorResponse("No item with that id for the caller."),
        413: payloadTooLargeResponse(
          "about 4/3 of LOUPE_MAX_IMAGE_BYTES; an image over LOUPE_MAX_IMAGE_PIXELS or a fetched one over LOUPE_URL_MAX_BYTES",
        ),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    { access: { scope: "read", cost: 2 } },
  );
  return createRouter().openapi(route, async (c) => {
    const { body, image } = await readDetectRequest({
      multipart: isMultipart(c),
      json: c.req.valid("json"),
      form: c.req.valid("form"),
      config,
      signal: c.req.raw.signal,
    });
    if (image === undefined) {
      throw new ValidationError(
        "detect needs an image: base64, a data URL, an http(s) URL, a stored item's id or an uploaded file `image`.",
      );
    }
    const detector = models.detector;
    if (detector === undefined) {
      throw new NotReadyError(
        `The model pack ${models.modelId} has no detection head (onnx/detection_model.onnx); use a Loupe pack such as shapes-world-tiny.`,
      );
    }
    const bytes = await search.imageBytes({ tenant: c.get("tenant"), image });
    const [found] = await detector.detect({ images: [bytes], threshold: body.threshold });
    if (found === undefined) throw new Error("unreachable: the detector returned no result for the image");
    const [queryEmbedding] =
      body.query === undefined ? [] : await models.textEmbedder.embed({ texts: [body.query] });
    const toItem = (detection: Detection) => ({
      label: detection.label,
      labelScore: detection.labelScore,
      attributes: Object.fromEntries(
        Object.entries(detection.attributes).map(([name, attribute]) => [name, attribute.value]),
      ),
      score: detection.score,
      box: detection.box,
      boxPixels: {
        x0: tenths(detection.box.x0 * found.width),
        y0: tenths(detection.box.y0 * found.height),
        x1: tenths(detection.box.x1 * found.width),
        y1: tenths(detection.box.y1 * found.height),
      },
      ...(queryEmbedding === undefined || detection.embedding === undefined
        ? {}
        : { match: dot(detection.embedding, queryEmbedding) }),
    });
    const detections = found.detections.map(toItem);
    if (queryEmbedding !== undefined) {
      detections.sort((left, right) => (right.match ?? -1) - (left.match ?? -1) || right.score - left.score);
    }
    return c.json(
      { model: models.modelId, image: { width: found.width, height: found.height }, detections },
      200,
    );
  });
}
