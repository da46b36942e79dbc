/**
 * The OpenAPI 3.1 description of the HTTP API, built from the same zod schemas the routes validate
 * with (`z.toJSONSchema`, JSON Schema 2020-12, which OpenAPI 3.1 uses), and a self-contained HTML page
 * that lists it (no scripts, no CDN, nothing fetched at runtime).
 *
 * Each route's schemas are registered in {@link apiOperations}; a route added without an entry there is
 * simply not described, so the test of `/openapi.json` lists the paths it expects.
 */
import { z } from "zod";
import { errorEnvelopeSchema } from "./errors.ts";
import { chatRequestSchema, chatResponseSchema } from "./routes/chat.ts";
import {
  chatCompletionChunkSchema,
  chatCompletionRequestSchema,
  chatCompletionSchema,
} from "./routes/chat-completions.ts";
import { classifyRequestSchema, classifyResponseSchema } from "./routes/classify.ts";
import { healthzResponseSchema } from "./routes/healthz.ts";
import {
  imagesAcceptedSchema,
  imagesAllFailedSchema,
  imagesJsonRequestSchema,
  imagesResponseSchema,
} from "./routes/images.ts";
import { deleteItemResponseSchema } from "./routes/items.ts";
import { jobAcceptedSchema, jobResponseSchema } from "./routes/jobs.ts";
import { modelListSchema, modelSchema } from "./routes/models.ts";
import { readyzResponseSchema } from "./routes/readyz.ts";
import { searchRequestSchema, searchResponseSchema } from "./routes/search.ts";
import { similarRequestSchema } from "./routes/similar.ts";
import {
  tripleItemSchema,
  triplesAllFailedSchema,
  triplesRequestSchema,
  triplesResponseSchema,
} from "./routes/triples.ts";
import { videosJobResponseSchema, videosJsonRequestSchema, videosResponseSchema } from "./routes/videos.ts";
import { vqaRequestSchema, vqaResponseSchema } from "./routes/vqa.ts";

/** A request body of one content type. */
export interface ApiBody {
  contentType: string;
  /** zod schema of the body; for multipart, of its fields. */
  schema?: z.ZodType;
  /** A free-form description when no zod schema fits (JSONL, binary). */
  jsonSchema?: Record<string, unknown>;
}

/** A response of one status. */
export interface ApiResponse {
  description: string;
  schema?: z.ZodType;
  contentType?: string;
}

/** One operation of the API. */
export interface ApiOperation {
  method: "get" | "post" | "put" | "delete";
  /** OpenAPI path, `{param}` style. */
  path: string;
  summary: string;
  description?: string;
  tags: string[];
  pathParams?: { name: string; description: string }[];
  queryParams?: { name: string; description: string; schema: Record<string, unknown> }[];
  requestBodies?: ApiBody[];
  responses: Record<string, ApiResponse>;
}

const errorResponse = (description: string): ApiResponse => ({ description, schema: errorEnvelopeSchema });

const commonErrors: Record<string, ApiResponse> = {
  "400": errorResponse("Invalid request; the message says what is wrong and what is allowed."),
  "503": errorResponse("The vector store or the model pack is not available."),
};

/** Named schemas, emitted once under `components.schemas` and referenced by name. */
const components: Record<string, z.ZodType> = {
  Error: errorEnvelopeSchema,
  SearchRequest: searchRequestSchema,
  SearchResponse: searchResponseSchema,
  SimilarRequest: similarRequestSchema,
  ClassifyRequest: classifyRequestSchema,
  ClassifyResponse: classifyResponseSchema,
  VqaRequest: vqaRequestSchema,
  VqaResponse: vqaResponseSchema,
  TriplesRequest: triplesRequestSchema,
  TripleItem: tripleItemSchema,
  TriplesResponse: triplesResponseSchema,
  ImagesRequest: imagesJsonRequestSchema,
  ImagesResponse: imagesResponseSchema,
  VideosRequest: videosJsonRequestSchema,
  VideosResponse: videosResponseSchema,
  JobResponse: jobResponseSchema,
  ChatRequest: chatRequestSchema,
  ChatResponse: chatResponseSchema,
  ChatCompletionRequest: chatCompletionRequestSchema,
  ChatCompletionResponse: chatCompletionSchema,
  ChatCompletionChunk: chatCompletionChunkSchema,
  ModelList: modelListSchema,
  Model: modelSchema,
};

const asyncParam = {
  name: "async",
  description: "true: answer 202 with a job at once and ingest in the background (follow /v1/jobs/{id}).",
  schema: { type: "string", enum: ["true", "false"] },
};

const fileUpload = (description: string) => ({
  type: "string",
  contentMediaType: "application/octet-stream",
  description,
});

/** Every described operation. */
export const apiOperations: ApiOperation[] = [
  {
    method: "get",
    path: "/healthz",
    summary: "Liveness",
    description: "200 while the process serves requests; checks no dependency.",
    tags: ["probes"],
    responses: { "200": { description: "Alive.", schema: healthzResponseSchema } },
  },
  {
    method: "get",
    path: "/readyz",
    summary: "Readiness",
    description: "200 when the vector store answers its health check, else 503 with the reason.",
    tags: ["probes"],
    responses: {
      "200": { description: "Ready.", schema: readyzResponseSchema },
      "503": errorResponse("Not ready; the message says why."),
    },
  },
  {
    method: "post",
    path: "/v1/search",
    summary: "Search by text, image or both",
    description:
      "Searches the caller's images, video segments and triples. With text and image, the query is the normalized sum of both embeddings. Scores share one scale across kinds (one embedding space, one metric).",
    tags: ["search"],
    requestBodies: [
      { contentType: "application/json", schema: searchRequestSchema },
      {
        contentType: "multipart/form-data",
        jsonSchema: {
          type: "object",
          properties: {
            image: {
              type: "string",
              contentMediaType: "application/octet-stream",
              description: "image file",
            },
            text: { type: "string" },
            kinds: { type: "string", description: "comma-separated kinds" },
            topK: { type: "string", description: "integer 1–100" },
            filter: { type: "string", description: "the filter as JSON" },
          },
        },
      },
    ],
    responses: {
      "200": { description: "Results, best first.", schema: searchResponseSchema },
      ...commonErrors,
    },
  },
  {
    method: "post",
    path: "/v1/similar/{id}",
    summary: "Items like this one",
    description:
      "Recommendation: the caller's items nearest to the item's own embedding, excluding the item.",
    tags: ["search"],
    pathParams: [{ name: "id", description: "An item id (img_…, seg_…, tri_…)." }],
    requestBodies: [{ contentType: "application/json", schema: similarRequestSchema }],
    responses: {
      "200": { description: "Results, best first.", schema: searchResponseSchema },
      "404": errorResponse("No item with that id for the caller."),
      ...commonErrors,
    },
  },
  {
    method: "post",
    path: "/v1/classify",
    summary: "Zero-shot labels and auto-tags",
    description:
      "Softmax over the image's similarity to each label prompt (scaled by the pack's logit scale), and tags voted by the nearest tagged items, weighted by similarity.",
    tags: ["search"],
    requestBodies: [
      { contentType: "application/json", schema: classifyRequestSchema },
      {
        contentType: "multipart/form-data",
        jsonSchema: {
          type: "object",
          properties: {
            image: { type: "string", contentMediaType: "application/octet-stream" },
            labels: { type: "string", description: "comma-separated labels, or a JSON list" },
            template: { type: "string" },
            autoTag: { type: "string", description: 'JSON, e.g. {"k":10}' },
          },
        },
      },
    ],
    responses: {
      "200": { description: "Labels and tags.", schema: classifyResponseSchema },
      ...commonErrors,
    },
  },
  {
    method: "post",
    path: "/v1/vqa",
    summary: "Answer a question about one image",
    description:
      "The model pack's VQA head on one image (base64, data URL, a stored item's id, or an uploaded file): the top answers with their probabilities, without retrieval.",
    tags: ["search"],
    requestBodies: [
      { contentType: "application/json", schema: vqaRequestSchema },
      {
        contentType: "multipart/form-data",
        jsonSchema: {
          type: "object",
          properties: {
            image: { type: "string", contentMediaType: "application/octet-stream" },
            question: { type: "string" },
            topK: { type: "string", description: "an integer 1–22" },
          },
          required: ["question"],
        },
      },
    ],
    responses: {
      "200": { description: "Answers, most probable first.", schema: vqaResponseSchema },
      "404": errorResponse("No item with that id for the caller."),
      ...commonErrors,
    },
  },
  {
    method: "post",
    path: "/v1/chat",
    summary: "Ask a question (grounded answer)",
    description:
      "Retrieves evidence from the caller's images, video segments and triples and the attached images, grounds it with the VQA head, and writes an answer that cites it as [id] (with the configured LLM, or offline). `stream: true` answers server-sent events: `retrieval`, `grounding`, `citation`…, `answer-delta`…, `done` with the ChatResponse; `answer-reset` when the LLM failed mid-answer (discard the deltas so far; the offline answer follows); `error` with the error envelope when the turn fails after the stream began. A failure before the first event is answered with its HTTP status.",
    tags: ["chat"],
    requestBodies: [
      { contentType: "application/json", schema: chatRequestSchema },
      {
        contentType: "multipart/form-data",
        jsonSchema: {
          type: "object",
          properties: {
            question: { type: "string" },
            files: { type: "array", items: fileUpload("an image attached to this turn") },
            payload: {
              type: "string",
              description: "the other fields of ChatRequest as JSON (history, filter, kinds, topK, …)",
            },
            stream: { type: "string", enum: ["true", "false"] },
          },
          required: ["question"],
        },
      },
    ],
    responses: {
      "200": {
        description:
          "The answer (application/json), or its events (text/event-stream) when `stream` is true.",
        schema: chatResponseSchema,
      },
      "404": errorResponse("An attached item id is not one of the caller's items."),
      "413": errorResponse("The body or an image is over the limit."),
      ...commonErrors,
    },
  },
  {
    method: "post",
    path: "/v1/chat/completions",
    summary: "OpenAI-compatible chat",
    description:
      "The chat endpoint in OpenAI's format for OpenAI clients and chat UIs. The last user message is the question; earlier user and assistant messages are the history; system messages are ignored (Loupe answers with its own instructions). `image_url` parts take data URLs, stored items' ids, or http(s) URLs fetched under the same rules as ingestion by URL. `stream: true` answers `chat.completion.chunk` data events and `data: [DONE]`. Citations, confidence, verification and fallback are in the extra field `loupe` (on the final chunk when streaming). Other OpenAI parameters are accepted and ignored.",
    tags: ["chat"],
    requestBodies: [{ contentType: "application/json", schema: chatCompletionRequestSchema }],
    responses: {
      "200": {
        description:
          "A chat.completion (application/json), or chat.completion.chunk events (text/event-stream, see ChatCompletionChunk) when `stream` is true.",
        schema: chatCompletionSchema,
      },
      "404": errorResponse(
        "`model` is not one of GET /v1/models (code model_not_found), or an item id is unknown.",
      ),
      "413": errorResponse("The body or an image is over the limit."),
      ...commonErrors,
    },
  },
  {
    method: "get",
    path: "/v1/models",
    summary: "Model names of the chat endpoints",
    description:
      "OpenAI's list format. `loupe`: the configured LLM writes answers (offline when none is configured); `loupe-offline`: always offline.",
    tags: ["chat"],
    responses: { "200": { description: "The models.", schema: modelListSchema } },
  },
  {
    method: "get",
    path: "/v1/models/{model}",
    summary: "One model name",
    tags: ["chat"],
    pathParams: [{ name: "model", description: "A model name from GET /v1/models." }],
    responses: {
      "200": { description: "The model.", schema: modelSchema },
      "404": errorResponse("Not a model name of this server (code model_not_found)."),
    },
  },
  {
    method: "post",
    path: "/v1/triples",
    summary: "Ingest image-question-answer triples",
    description:
      "Each image and question is embedded and the triple stored with a deterministic id (re-ingest adds nothing). Items are answered in order; when every item fails, the first failure is the error.",
    tags: ["ingest"],
    queryParams: [asyncParam],
    requestBodies: [
      { contentType: "application/json", schema: triplesRequestSchema },
      {
        contentType: "application/x-ndjson",
        jsonSchema: { type: "string", description: "One TripleItem JSON object per line." },
      },
      {
        contentType: "multipart/form-data",
        jsonSchema: {
          type: "object",
          properties: {
            items: { type: "string", description: "The items as a JSON list or JSONL." },
          },
          additionalProperties: {
            type: "string",
            contentMediaType: "application/octet-stream",
            description: "Image files, named by the items' image fields.",
          },
        },
      },
    ],
    responses: {
      "200": { description: "Per-item outcomes and counts.", schema: triplesResponseSchema },
      "202": { description: "Started as a job.", schema: jobAcceptedSchema },
      "413": errorResponse("The body is over the limit."),
      "422": { description: "Every item failed; each says why.", schema: triplesAllFailedSchema },
      ...commonErrors,
    },
  },
  {
    method: "post",
    path: "/v1/images",
    summary: "Ingest images",
    description:
      "Multipart uploads (repeatable field `files`) or JSON `urls`. Each image is validated, embedded and stored with its deterministic id: the same image twice is one record.",
    tags: ["ingest"],
    queryParams: [asyncParam],
    requestBodies: [
      { contentType: "application/json", schema: imagesJsonRequestSchema },
      {
        contentType: "multipart/form-data",
        jsonSchema: {
          type: "object",
          properties: {
            files: { type: "array", items: fileUpload("an image file") },
            metadata: { type: "string", description: "caller metadata as JSON, applied to every file" },
          },
        },
      },
    ],
    responses: {
      "200": { description: "One item per file or URL, in order.", schema: imagesResponseSchema },
      "202": { description: "Started as a job.", schema: imagesAcceptedSchema },
      "422": { description: "Every item failed; each says why.", schema: imagesAllFailedSchema },
      ...commonErrors,
    },
  },
  {
    method: "post",
    path: "/v1/videos",
    summary: "Ingest videos",
    description:
      "Upload or URL. Each video is probed under limits, sampled, split into segments (fixed windows and shot changes) and each segment embedded and stored with its start, end and keyframe.",
    tags: ["ingest"],
    queryParams: [asyncParam],
    requestBodies: [
      { contentType: "application/json", schema: videosJsonRequestSchema },
      {
        contentType: "multipart/form-data",
        jsonSchema: {
          type: "object",
          properties: {
            files: { type: "array", items: fileUpload("a video file") },
            metadata: { type: "string", description: "caller metadata as JSON" },
          },
        },
      },
    ],
    responses: {
      "200": { description: "One item per video, with its segments.", schema: videosResponseSchema },
      "202": { description: "Started as a job.", schema: videosJobResponseSchema },
      ...commonErrors,
    },
  },
  {
    method: "get",
    path: "/v1/media/{id}",
    summary: "An item's stored original",
    description:
      "Streamed with its content type; a segment's original is its video. Only the owning tenant sees it (404 otherwise). The sha256 is the ETag.",
    tags: ["media"],
    pathParams: [{ name: "id", description: "An item id (img_…, seg_…, tri_…)." }],
    responses: {
      "200": { description: "The bytes, with their content type." },
      "304": { description: "Not modified (If-None-Match)." },
      "404": errorResponse("No such item for the caller, or it has no stored media."),
    },
  },
  {
    method: "get",
    path: "/v1/media/{id}/thumbnail",
    summary: "An item's thumbnail (a segment's keyframe)",
    tags: ["media"],
    pathParams: [{ name: "id", description: "An item id (img_…, seg_…, tri_…)." }],
    responses: {
      "200": { description: "The thumbnail, WebP." },
      "304": { description: "Not modified (If-None-Match)." },
      "404": errorResponse("No such item for the caller, or it has no thumbnail."),
    },
  },
  {
    method: "delete",
    path: "/v1/items/{id}",
    summary: "Delete an item",
    description:
      "Removes the vectors and, once nothing refers to them, the blobs; a video id (vid_…) removes all its segments.",
    tags: ["items"],
    pathParams: [{ name: "id", description: "An item id (img_…, seg_…, tri_…) or a video id (vid_…)." }],
    responses: {
      "200": { description: "What was removed.", schema: deleteItemResponseSchema },
      "404": errorResponse("No such item for the caller."),
      ...commonErrors,
    },
  },
  {
    method: "get",
    path: "/v1/jobs/{id}",
    summary: "A job's status, counts and items",
    tags: ["jobs"],
    pathParams: [{ name: "id", description: "The job id from a 202." }],
    responses: {
      "200": { description: "The job.", schema: jobResponseSchema },
      "404": errorResponse("No such job for the caller."),
    },
  },
  {
    method: "get",
    path: "/v1/jobs/{id}/events",
    summary: "A job's progress as server-sent events",
    description:
      "Named events with the job's counts and item outcomes, ending when the job is done or failed.",
    tags: ["jobs"],
    pathParams: [{ name: "id", description: "The job id from a 202." }],
    responses: {
      "200": { description: "An event stream (text/event-stream)." },
      "404": errorResponse("No such job for the caller."),
    },
  },
  {
    method: "post",
    path: "/v1/jobs/{id}/resume",
    summary: "Resume a job",
    description: "Runs the items that are not done again; stored items are skipped.",
    tags: ["jobs"],
    pathParams: [{ name: "id", description: "The job id." }],
    responses: {
      "200": { description: "The job.", schema: jobResponseSchema },
      "404": errorResponse("No such job for the caller."),
    },
  },
];

const componentNames = new Map<z.ZodType, string>(
  Object.entries(components).map(([name, schema]) => [schema, name]),
);

function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  const name = componentNames.get(schema);
  if (name !== undefined) return { $ref: `#/components/schemas/${name}` };
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  return rest;
}

/** Options of {@link buildOpenApiDocument}. */
export interface BuildOpenApiDocumentOptions {
  version: string;
  operations?: readonly ApiOperation[];
}

/** The OpenAPI 3.1 document of the API. */
export function buildOpenApiDocument({
  version,
  operations = apiOperations,
}: BuildOpenApiDocumentOptions): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const operation of operations) {
    const parameters = [
      ...(operation.pathParams ?? []).map((param) => ({
        name: param.name,
        in: "path",
        required: true,
        description: param.description,
        schema: { type: "string" },
      })),
      ...(operation.queryParams ?? []).map((param) => ({
        name: param.name,
        in: "query",
        required: false,
        description: param.description,
        schema: param.schema,
      })),
    ];
    const entry: Record<string, unknown> = {
      operationId: `${operation.method}${operation.path.replace(/[^A-Za-z0-9]+(.)?/g, (_, next: string | undefined) => (next ?? "").toUpperCase())}`,
      summary: operation.summary,
      ...(operation.description === undefined ? {} : { description: operation.description }),
      tags: operation.tags,
      ...(parameters.length > 0 ? { parameters } : {}),
      responses: Object.fromEntries(
        Object.entries(operation.responses).map(([status, response]) => [
          status,
          {
            description: response.description,
            ...(response.schema === undefined
              ? {}
              : {
                  content: {
                    [response.contentType ?? "application/json"]: {
                      schema: jsonSchemaOf(response.schema, "output"),
                    },
                  },
                }),
          },
        ]),
      ),
    };
    if (operation.requestBodies !== undefined) {
      entry.requestBody = {
        required: true,
        content: Object.fromEntries(
          operation.requestBodies.map((body) => [
            body.contentType,
            {
              schema:
                body.schema === undefined ? (body.jsonSchema ?? {}) : jsonSchemaOf(body.schema, "input"),
            },
          ]),
        ),
      };
    }
    paths[operation.path] = { ...(paths[operation.path] ?? {}), [operation.method]: entry };
  }
  const schemas = Object.fromEntries(
    Object.entries(components).map(([name, schema]) => {
      const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, {
        io: name.endsWith("Response") || name === "Error" ? "output" : "input",
        unrepresentable: "any",
      }) as Record<string, unknown>;
      return [name, rest];
    }),
  );
  return {
    openapi: "3.1.0",
    info: {
      title: "Loupe API",
      version,
      description:
        "Multimodal retrieval over images, video segments and image-question-answer triples. Every error has the body { error: { code, message, requestId } }.",
    },
    paths,
    components: { schemas },
  };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/**
 * A plain HTML page listing every operation of an OpenAPI document with its request and response
 * schemas. Static: no scripts, nothing loaded from elsewhere.
 */
export function renderDocsPage(document: Record<string, unknown>): string {
  const info = document.info as { title: string; version: string; description?: string };
  const paths = document.paths as Record<string, Record<string, Record<string, unknown>>>;
  const schemas = (document.components as { schemas: Record<string, unknown> }).schemas;
  const pretty = (value: unknown) => `<pre>${escapeHtml(JSON.stringify(value, null, 2))}</pre>`;
  const sections: string[] = [];
  const toc: string[] = [];
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      const anchor = escapeHtml(String(operation.operationId));
      toc.push(
        `<li><a href="#${anchor}"><code>${method.toUpperCase()} ${escapeHtml(path)}</code></a> — ${escapeHtml(String(operation.summary))}</li>`,
      );
      const parts = [
        `<section id="${anchor}"><h2><code>${method.toUpperCase()} ${escapeHtml(path)}</code></h2>`,
        `<p><strong>${escapeHtml(String(operation.summary))}</strong></p>`,
      ];
      if (typeof operation.description === "string")
        parts.push(`<p>${escapeHtml(operation.description)}</p>`);
      if (operation.parameters !== undefined) parts.push("<h3>Parameters</h3>", pretty(operation.parameters));
      const body = operation.requestBody as { content: Record<string, { schema: unknown }> } | undefined;
      if (body !== undefined) {
        for (const [type, { schema }] of Object.entries(body.content)) {
          parts.push(`<h3>Request body <code>${escapeHtml(type)}</code></h3>`, pretty(schema));
        }
      }
      const responses = operation.responses as Record<
        string,
        { description: string; content?: Record<string, { schema: unknown }> }
      >;
      for (const [status, response] of Object.entries(responses)) {
        parts.push(`<h3>${escapeHtml(status)} — ${escapeHtml(response.description)}</h3>`);
        for (const { schema } of Object.values(response.content ?? {})) parts.push(pretty(schema));
      }
      parts.push("</section>");
      sections.push(parts.join("\n"));
    }
  }
  const schemaSections = Object.entries(schemas).map(
    ([name, schema]) =>
      `<section id="schema-${escapeHtml(name)}"><h3>${escapeHtml(name)}</h3>${pretty(schema)}</section>`,
  );
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(info.title)} ${escapeHtml(info.version)}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; }
pre { background: #f5f5f5; padding: 0.75rem; overflow-x: auto; font-size: 0.85rem; }
section { border-top: 1px solid #ddd; margin-top: 1.5rem; }
</style>
</head>
<body>
<h1>${escapeHtml(info.title)} <small>${escapeHtml(info.version)}</small></h1>
<p>${escapeHtml(info.description ?? "")}</p>
<p>The machine-readable description is at <a href="/openapi.json"><code>/openapi.json</code></a> (OpenAPI 3.1).</p>
<ul>
${toc.join("\n")}
</ul>
${sections.join("\n")}
<h2>Schemas</h2>
${schemaSections.join("\n")}
</body>
</html>
`;
}
