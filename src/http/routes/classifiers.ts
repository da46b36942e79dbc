/**
 * Few-shot classifiers:
 *
 * - `POST /v1/classifiers` (scope `ingest`): fits a classifier from a few example images per label
 *   (stored item ids, data URLs, base64 or http(s) URLs) and stores it for the tenant; 409 when the name is
 *   taken, unless `replace` is true.
 * - `GET /v1/classifiers`, `GET /v1/classifiers/{name}` (scope `read`): the tenant's classifiers, with
 *   their model id, method and measured leave-one-out accuracy.
 * - `POST /v1/classifiers/{name}/examples` (scope `ingest`): more examples (or labels), then fitted again.
 * - `DELETE /v1/classifiers/{name}` (scope `delete`).
 * - `POST /v1/classifiers/{name}/predict` (scope `read`): calibrated probabilities of every label for an
 *   image (JSON `{ image }` or a multipart upload), with `none: true` below the classifier's threshold.
 *
 * The work is `classifiers/classifier-service.ts`'s; this file reads requests and writes answers.
 */
import { z } from "@hono/zod-openapi";
import {
  CLASSIFIER_KINDS,
  CLASSIFIER_NAME_PATTERN,
  type ClassifierService,
  type LabelExamplesInput,
  MAX_CLASSIFIER_LABEL_LENGTH,
  MAX_CLASSIFIER_LABELS,
  MAX_EXAMPLES_PER_LABEL,
} from "../../classifiers/index.ts";
import type { Config } from "../../config.ts";
import { ValidationError } from "../../errors.ts";
import { parseImageReference } from "../../search/index.ts";
import {
  createRouter,
  defineRoute,
  errorResponse,
  imageInputResponses,
  invalidRequestResponse,
  jsonResponse,
  notReadyResponse,
  payloadTooLargeResponse,
  uploadSchema,
} from "../openapi.ts";
import { isMultipart, parseRequest, queryBodyLimit } from "./search.ts";

const nameSchema = z
  .string({ error: "name must be a string" })
  .regex(
    CLASSIFIER_NAME_PATTERN,
    "name must be a letter, then letters, digits and _, at most 58 characters (it becomes the metadata key class_<name>)",
  )
  .describe("The classifier's name; its label is written to `metadata.class_<name>` at ingest.");

const exampleSchema = z
  .string({ error: "each example must be a string" })
  .min(1, "an example must not be empty")
  .describe(
    "A stored item's id (img_…, seg_…, tri_…), a data URL, base64 bytes or an http(s) URL of an image.",
  );

const labelExamplesSchema = z
  .object({
    label: z
      .string({ error: "label must be a string" })
      .trim()
      .min(1, "label must not be empty")
      .max(MAX_CLASSIFIER_LABEL_LENGTH, `label must be at most ${MAX_CLASSIFIER_LABEL_LENGTH} characters`),
    examples: z
      .array(exampleSchema, { error: "examples must be a list of images" })
      .max(MAX_EXAMPLES_PER_LABEL, `a label takes at most ${MAX_EXAMPLES_PER_LABEL} examples`)
      .describe("Example images of the label; at least one."),
  })
  .strict();

const labelsSchema = z
  .array(labelExamplesSchema, { error: "labels must be a list of { label, examples }" })
  .max(
    MAX_CLASSIFIER_LABELS,
    `a classifier takes at most ${MAX_CLASSIFIER_LABELS} labels; split the categories over several classifiers`,
  );

/** Body of POST /v1/classifiers. */
export const createClassifierRequestSchema = z
  .object({
    name: nameSchema,
    labels: labelsSchema.describe(`The labels, 2–${MAX_CLASSIFIER_LABELS}, each with its example images.`),
    kinds: z
      .array(z.enum(CLASSIFIER_KINDS, { error: `kinds may list ${CLASSIFIER_KINDS.join(", ")}` }))
      .optional()
      .describe("Kinds of new items it is applied to at ingest (`image`, the default)."),
    applyOnIngest: z
      .boolean({ error: "applyOnIngest must be true or false" })
      .optional()
      .describe("Write the predicted label of every new image into `metadata.class_<name>` (filterable)."),
    threshold: z
      .number({ error: "threshold must be a number from 0 to 1" })
      .min(0, "threshold must be a number from 0 to 1")
      .max(1, "threshold must be a number from 0 to 1")
      .optional()
      .describe("Probability under which a prediction is `none`; fitted from the examples when absent."),
    replace: z
      .boolean({ error: "replace must be true or false" })
      .optional()
      .describe("Replace a classifier of the same name (else 409)."),
  })
  .strict()
  .meta({ id: "CreateClassifierRequest" });

/** Body of POST /v1/classifiers/{name}/examples. */
export const addExamplesRequestSchema = z
  .object({
    labels: labelsSchema.describe("Labels with the examples to add."),
    addLabels: z
      .boolean({ error: "addLabels must be true or false" })
      .optional()
      .describe("Allow labels the classifier does not have yet (else they are refused)."),
  })
  .strict()
  .meta({ id: "AddClassifierExamplesRequest" });

/** Body of POST /v1/classifiers/{name}/predict. */
export const predictRequestSchema = z
  .object({
    image: z
      .string({ error: "image must be a string" })
      .min(1, "image must not be empty")
      .optional()
      .describe(
        "A data URL, base64 bytes, a stored item's id or an http(s) URL (or upload it as the multipart file `image`).",
      ),
  })
  .strict()
  .meta({ id: "PredictClassifierRequest" });

/** A classifier as the API shows it. */
export const classifierSchema = z
  .object({
    name: z.string(),
    labels: z.array(
      z.object({
        label: z.string(),
        examples: z.number().int().describe("Examples kept."),
        itemIds: z.array(z.string()).describe("The examples that were stored items."),
      }),
    ),
    kinds: z.array(z.string()),
    applyOnIngest: z.boolean(),
    metadataKey: z.string().describe("`class_<name>`: where the label is written at ingest."),
    modelId: z.string().describe("The model pack it was fitted under."),
    features: z
      .enum(["embedding", "objects", "both"])
      .describe("What its vectors are: the image embedding, the detection head's object summary, or both."),
    method: z
      .string()
      .describe("`nearest-mean`, `logistic` or `diagonal-discriminant`, whichever measured best."),
    looAccuracy: z.number().describe("Leave-one-out accuracy over the examples."),
    validation: z.string().describe("`leave-one-out`, or `10-fold` past 40 examples."),
    threshold: z.number().describe("Probability under which a prediction is `none`."),
    scores: z.array(
      z.object({
        method: z.string(),
        priorStrength: z.number().optional(),
        accuracy: z.number(),
        logLoss: z.number(),
      }),
    ),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "Classifier" });

/** A prediction. */
export const predictionSchema = z
  .object({
    labels: z
      .array(z.object({ label: z.string(), probability: z.number() }))
      .describe("Every label with its calibrated probability, most probable first."),
    none: z.literal(true).optional().describe("Present when the best probability is below the threshold."),
    threshold: z.number(),
    modelId: z.string(),
  })
  .meta({ id: "ClassifierPrediction" });

const paramsSchema = z.object({
  name: z.string().min(1, "name must not be empty").max(100, "name must be at most 100 characters"),
});

const notFound = errorResponse(
  "No classifier of that name for the caller's tenant, or an example id it does not have.",
);

/** What the routes use. */
export interface ClassifiersRouteOptions {
  classifiers: ClassifierService;
  config: Pick<Config, "maxImageBytes">;
}

function examplesOf(
  labels: ReadonlyArray<{ label: string; examples: readonly string[] }>,
  { maxImageBytes }: Pick<Config, "maxImageBytes">,
): LabelExamplesInput[] {
  return labels.map((entry, labelIndex) => ({
    label: entry.label,
    examples: entry.examples.map((value, exampleIndex) =>
      parseImageReference({
        value,
        field: `labels[${labelIndex}].examples[${exampleIndex}]`,
        allowUrl: true,
        maxBytes: maxImageBytes,
      }),
    ),
  }));
}

/** The /v1/classifiers routes. */
export function createClassifiersRoute({ classifiers, config }: ClassifiersRouteOptions) {
  const createRoute = defineRoute(
    {
      method: "post",
      path: "/v1/classifiers",
      operationId: "createClassifier",
      tags: ["classifiers"],
      summary: "Teach a classifier from examples",
      description:
        "Fits a classifier on the embeddings of a few example images per label (nearest class mean or logistic regression with the labels' zero-shot prior, whichever leave-one-out measures better; calibrated probabilities) and stores it for the tenant with its examples, model id and leave-one-out accuracy.",
      request: {
        body: { content: { "application/json": { schema: createClassifierRequestSchema } }, required: true },
      },
      responses: {
        201: jsonResponse("Fitted and stored.", classifierSchema),
        400: invalidRequestResponse,
        404: notFound,
        409: errorResponse("A classifier of that name exists and `replace` was not set (code `conflict`)."),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    { access: { scope: "ingest", cost: 5 } },
  );
  const listRoute = defineRoute(
    {
      method: "get",
      path: "/v1/classifiers",
      operationId: "listClassifiers",
      tags: ["classifiers"],
      summary: "The tenant's classifiers",
      responses: {
        200: jsonResponse(
          "Every classifier of the tenant, by name.",
          z.object({ classifiers: z.array(classifierSchema) }),
        ),
      },
    },
    { access: { scope: "read", cost: 1 } },
  );
  const getRoute = defineRoute(
    {
      method: "get",
      path: "/v1/classifiers/{name}",
      operationId: "getClassifier",
      tags: ["classifiers"],
      summary: "One classifier",
      description:
        "A classifier fitted under another model pack is fitted again first, from its kept example images embedded with the loaded pack.",
      request: { params: paramsSchema },
      responses: {
        200: jsonResponse("The classifier.", classifierSchema),
        400: invalidRequestResponse,
        404: notFound,
        409: errorResponse(
          "It was fitted under another pack and its examples can no longer be read (code `conflict`).",
        ),
        503: notReadyResponse,
      },
    },
    { access: { scope: "read", cost: 1 } },
  );
  const deleteRoute = defineRoute(
    {
      method: "delete",
      path: "/v1/classifiers/{name}",
      operationId: "deleteClassifier",
      tags: ["classifiers"],
      summary: "Delete a classifier",
      description: "Removes it and lets go of its example images. Labels it wrote into items' metadata stay.",
      request: { params: paramsSchema },
      responses: {
        200: jsonResponse("Deleted.", z.object({ name: z.string(), deleted: z.literal(true) })),
        400: invalidRequestResponse,
        404: notFound,
      },
    },
    { access: { scope: "delete", cost: 1 } },
  );
  const examplesRoute = defineRoute(
    {
      method: "post",
      path: "/v1/classifiers/{name}/examples",
      operationId: "addClassifierExamples",
      tags: ["classifiers"],
      summary: "Add examples and fit again",
      request: {
        params: paramsSchema,
        body: { content: { "application/json": { schema: addExamplesRequestSchema } }, required: true },
      },
      responses: {
        200: jsonResponse("Fitted again with the new examples.", classifierSchema),
        400: invalidRequestResponse,
        404: notFound,
        409: errorResponse(
          "It was fitted under another pack and its examples can no longer be read (code `conflict`).",
        ),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    { access: { scope: "ingest", cost: 5 } },
  );
  const predictRoute = defineRoute(
    {
      method: "post",
      path: "/v1/classifiers/{name}/predict",
      operationId: "predictClassifier",
      tags: ["classifiers"],
      summary: "Classify an image",
      description:
        "Calibrated probabilities of every label, most probable first; `none: true` when the best is below the classifier's threshold. JSON `{ image }`, or multipart with an `image` file.",
      middleware: [queryBodyLimit(config)],
      request: {
        params: paramsSchema,
        body: {
          content: {
            "application/json": { schema: predictRequestSchema },
            "multipart/form-data": {
              schema: z.strictObject({ image: uploadSchema("The image to classify.").optional() }),
            },
          },
          required: true,
        },
      },
      responses: {
        200: jsonResponse("The labels with their probabilities.", predictionSchema),
        400: invalidRequestResponse,
        404: notFound,
        409: errorResponse(
          "It was fitted under another pack and its examples can no longer be read (code `conflict`).",
        ),
        413: payloadTooLargeResponse("about 4/3 of LOUPE_MAX_IMAGE_BYTES"),
        ...imageInputResponses,
        503: notReadyResponse,
      },
    },
    { access: { scope: "read", cost: 2 } },
  );

  return createRouter()
    .openapi(createRoute, async (c) => {
      const body = c.req.valid("json");
      const summary = await classifiers.create({
        tenant: c.get("tenant"),
        name: body.name,
        labels: examplesOf(body.labels, config),
        ...(body.kinds === undefined ? {} : { kinds: body.kinds }),
        ...(body.applyOnIngest === undefined ? {} : { applyOnIngest: body.applyOnIngest }),
        ...(body.threshold === undefined ? {} : { threshold: body.threshold }),
        ...(body.replace === undefined ? {} : { replace: body.replace }),
      });
      return c.json(summary, 201);
    })
    .openapi(listRoute, async (c) => {
      return c.json({ classifiers: await classifiers.list({ tenant: c.get("tenant") }) }, 200);
    })
    .openapi(getRoute, async (c) => {
      return c.json(await classifiers.get({ tenant: c.get("tenant"), name: c.req.valid("param").name }), 200);
    })
    .openapi(deleteRoute, async (c) => {
      const name = c.req.valid("param").name;
      await classifiers.delete({ tenant: c.get("tenant"), name });
      return c.json({ name, deleted: true as const }, 200);
    })
    .openapi(examplesRoute, async (c) => {
      const body = c.req.valid("json");
      const summary = await classifiers.addExamples({
        tenant: c.get("tenant"),
        name: c.req.valid("param").name,
        labels: examplesOf(body.labels, config),
        ...(body.addLabels === undefined ? {} : { addLabels: body.addLabels }),
      });
      return c.json(summary, 200);
    })
    .openapi(predictRoute, async (c) => {
      const name = c.req.valid("param").name;
      let image: ReturnType<typeof parseImageReference> | undefined;
      if (isMultipart(c)) {
        const { image: upload, ...fields } = c.req.valid("form") as { image?: File } & Record<
          string,
          unknown
        >;
        const body = parseRequest(predictRequestSchema, fields);
        if (upload !== undefined) {
          if (upload.size === 0) throw new ValidationError("The uploaded image file is empty.");
          image = { bytes: new Uint8Array(await upload.arrayBuffer()) };
        } else if (body.image !== undefined) {
          image = parseImageReference({ value: body.image, allowUrl: true, maxBytes: config.maxImageBytes });
        }
      } else {
        const body = c.req.valid("json") as z.output<typeof predictRequestSchema>;
        if (body.image !== undefined) {
          image = parseImageReference({ value: body.image, allowUrl: true, maxBytes: config.maxImageBytes });
        }
      }
      if (image === undefined) {
        throw new ValidationError(
          "predict needs an image: a data URL, base64 bytes, a stored item's id, an http(s) URL or an uploaded file `image`.",
        );
      }
      const prediction = await classifiers.predict({ tenant: c.get("tenant"), name, image });
      return c.json(prediction, 200);
    });
}
