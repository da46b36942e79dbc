/**
 * POST /v1/classify — zero-shot labels for an image from the caller's label list (softmax over the
 * image's similarity to each label put in a prompt, "a photo of {label}" by default), and auto-tags voted
 * by the nearest tagged images and segments. JSON `{ image, labels?, template?, autoTag?: { k? } }` or
 * multipart with an `image` file (`labels` comma-separated or repeated, `autoTag` as JSON).
 */
import { z } from "@hono/zod-openapi";
import { ValidationError } from "../../errors.ts";
import {
  DEFAULT_AUTO_TAG_K,
  DEFAULT_LABEL_TEMPLATE,
  MAX_CLASSIFY_LABELS,
  MAX_LABEL_LENGTH,
  MAX_SEARCH_TOP_K,
  type SearchService,
} from "../../search/index.ts";
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

/** Body of POST /v1/classify. */
export const classifyRequestSchema = z
  .object({
    image: imageFieldSchema.optional().describe("The image (or upload it as the multipart file `image`)."),
    labels: z
      .array(z.string().min(1).max(MAX_LABEL_LENGTH))
      .max(MAX_CLASSIFY_LABELS)
      .optional()
      .describe(`Candidate labels for zero-shot classification, at most ${MAX_CLASSIFY_LABELS}.`),
    template: z
      .string({ error: "template must be a text of at most 200 characters containing {label}" })
      .max(200, "template must be at most 200 characters, containing {label}")
      .optional()
      .describe(`Prompt each label is put into; must contain {label}. Default "${DEFAULT_LABEL_TEMPLATE}".`),
    autoTag: z
      .object({
        k: z
          .number({ error: `autoTag.k must be an integer from 1 to ${MAX_SEARCH_TOP_K}` })
          .int(`autoTag.k must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
          .min(1, `autoTag.k must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
          .max(MAX_SEARCH_TOP_K, `autoTag.k must be an integer from 1 to ${MAX_SEARCH_TOP_K}`)
          .optional()
          .describe(`Tagged neighbours that vote (default ${DEFAULT_AUTO_TAG_K}).`),
      })
      .strict()
      .optional()
      .describe("Auto-tags from the metadata tags of the nearest tagged items."),
  })
  .strict()
  .meta({ id: "ClassifyRequest" });

/** Body of a 200 from /v1/classify. */
export const classifyResponseSchema = z
  .object({
    labels: z.array(z.object({ label: z.string(), score: z.number().describe("softmax probability") })),
    tags: z.array(
      z.object({
        tag: z.string(),
        score: z.number().describe("similarity-weighted share of the voting neighbours that carry the tag"),
        support: z.number().int().describe("neighbours carrying the tag"),
      }),
    ),
  })
  .meta({ id: "ClassifyResponse" });

/** The /v1/classify route. */
export function createClassifyRoute({ search, config }: { search: SearchService; config: QueryLimits }) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/classify",
      operationId: "classify",
      tags: ["search"],
      summary: "Zero-shot labels and auto-tags",
      description:
        "Softmax over the image's similarity to each label prompt (scaled by the pack's logit scale), and tags voted by the nearest tagged items, weighted by similarity. JSON, or multipart with an `image` file.",
      middleware: [queryBodyLimit(config)],
      request: {
        body: {
          description: "An image, with labels, autoTag, or both.",
          content: {
            "application/json": { schema: classifyRequestSchema },
            "multipart/form-data": {
              schema: z.strictObject({
                image: queryFormShape.image,
                labels: queryFormShape.kinds.describe(
                  "Candidate labels: comma-separated, a JSON list, or the field repeated.",
                ),
                template: z
                  .string()
                  .optional()
                  .describe("Prompt each label is put into; must contain {label}."),
                autoTag: z.string().optional().describe('Auto-tag options as JSON, e.g. {"k":10}.'),
              }),
            },
          },
        },
      },
      responses: {
        200: jsonResponse("Labels and tags.", classifyResponseSchema),
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
      schema: classifyRequestSchema,
      limits: config,
    });
    if (image === undefined) {
      throw new ValidationError(
        "classify needs an image: base64, a data URL, a stored item's id or an uploaded file.",
      );
    }
    const result = await search.classify({
      tenant: c.get("tenant"),
      image,
      labels: body.labels,
      template: body.template,
      autoTag: body.autoTag,
    });
    return c.json(result, 200);
  });
}
