/**
 * POST /v1/vqa — the pack's VQA head on one image: JSON `{ image, question, topK? }` (image as base64, a
 * data URL or a stored item's id) or multipart with an `image` file. Answers the top answers with their
 * probabilities and the time the model took. No retrieval: this is the grounding step on its own.
 */
import { z } from "@hono/zod-openapi";
import { NotReadyError, ValidationError } from "../../errors.ts";
import type { ModelPack } from "../../inference/index.ts";
import type { SearchService } from "../../search/index.ts";
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
  imageFieldSchema,
  isMultipart,
  type QueryLimits,
  queryBodyLimit,
  queryFormShape,
  readImageQuery,
} from "./search.ts";

/** Longest question accepted, in characters. */
export const MAX_QUESTION_LENGTH = 500;
/** Most answers returned. */
export const MAX_VQA_TOP_K = 22;

const TOP_K_ERROR = `topK must be an integer from 1 to ${MAX_VQA_TOP_K}`;

/** Body of POST /v1/vqa. */
export const vqaRequestSchema = z
  .object({
    image: imageFieldSchema.optional().describe("The image (or upload it as the multipart file `image`)."),
    question: z
      .string({ error: `question must be a text of 1 to ${MAX_QUESTION_LENGTH} characters` })
      .trim()
      .min(1, "question must not be empty")
      .max(MAX_QUESTION_LENGTH, `question must be at most ${MAX_QUESTION_LENGTH} characters`)
      .describe("A question about the image."),
    topK: z
      .number({ error: TOP_K_ERROR })
      .int(TOP_K_ERROR)
      .min(1, TOP_K_ERROR)
      .max(MAX_VQA_TOP_K, TOP_K_ERROR)
      .optional()
      .describe("Answers returned (default 3)."),
  })
  .strict()
  .meta({ id: "VqaRequest" });

/** Body of a 200 from /v1/vqa. */
export const vqaResponseSchema = z
  .object({
    answer: z.string().describe("The most probable answer."),
    probability: z.number().describe("Its softmax probability."),
    alternatives: z
      .array(z.object({ answer: z.string(), probability: z.number() }))
      .describe("The next most probable answers."),
    modelId: z.string(),
    ms: z.number().describe("Time spent decoding the image and running the models, in milliseconds."),
  })
  .meta({ id: "VqaResponse" });

/** The /v1/vqa route. */
export function createVqaRoute({
  search,
  models,
  config,
}: {
  search: SearchService;
  models: Pick<ModelPack, "vqaHead" | "modelId">;
  config: QueryLimits;
}) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/vqa",
      operationId: "vqa",
      tags: ["search"],
      summary: "Answer a question about one image",
      description:
        "The model pack's VQA head on one image (base64, data URL, a stored item's id, or an uploaded file): the top answers with their probabilities, without retrieval.",
      middleware: [queryBodyLimit(config)],
      request: {
        body: {
          description: "An image and a question.",
          content: {
            "application/json": { schema: vqaRequestSchema },
            "multipart/form-data": {
              schema: z.strictObject({
                image: queryFormShape.image,
                question: z.string().describe("A question about the image."),
                topK: z.string().optional().describe(`Answers returned, an integer 1–${MAX_VQA_TOP_K}.`),
              }),
            },
          },
        },
      },
      responses: {
        200: jsonResponse("Answers, most probable first.", vqaResponseSchema),
        400: invalidRequestResponse,
        404: errorResponse("No item with that id for the caller."),
        413: payloadTooLargeResponse("about 4/3 of LOUPE_MAX_IMAGE_BYTES"),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    { access: { scope: "read", cost: 2 } },
  );
  return createRouter().openapi(route, async (c) => {
    const { body, image } = await readImageQuery({
      multipart: isMultipart(c),
      json: c.req.valid("json"),
      form: c.req.valid("form"),
      schema: vqaRequestSchema,
      limits: config,
    });
    if (image === undefined) {
      throw new ValidationError(
        "vqa needs an image: base64, a data URL, a stored item's id or an uploaded file `image`.",
      );
    }
    const head = models.vqaHead;
    if (head === undefined) {
      throw new NotReadyError(
        `The model pack ${models.modelId} has no VQA head (onnx/meter_vqa.onnx); use a Loupe pack such as shapes-world-tiny.`,
      );
    }
    const bytes = await search.imageBytes({ tenant: c.get("tenant"), image });
    const started = performance.now();
    const [best, ...alternatives] = await head.answer({
      image: bytes,
      question: body.question,
      topK: body.topK ?? 3,
    });
    if (best === undefined) throw new Error("unreachable: the VQA head returned no answer");
    const ms = Math.round((performance.now() - started) * 10) / 10;
    return c.json({ ...best, alternatives, modelId: models.modelId, ms }, 200);
  });
}
