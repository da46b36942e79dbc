/**
 * POST /v1/responses — a minimal OpenAI Responses API, because some clients (the OpenAI Agents SDK,
 * LibreChat's and others' "Responses" option, newer OpenAI SDK helpers) call it instead of chat
 * completions. It is the same turn as POST /v1/chat/completions in another envelope: `input` is a string
 * or a list of messages whose content is a string or `input_text` and `input_image` parts (earlier
 * answers' `output_text` parts are history); the answer is one `message` output item holding one
 * `output_text` part, whose `annotations` are the sources as `url_citation`s. `stream: true` answers the
 * Responses event sequence: `response.created`, `response.in_progress`, `response.output_item.added`,
 * `response.content_part.added`, `response.output_text.delta`…, `response.output_text.annotation.added`…,
 * `response.output_text.done`, `response.content_part.done`, `response.output_item.done`,
 * `response.completed`.
 *
 * Loupe keeps no responses: `previous_response_id` and `conversation` are refused (send the whole
 * conversation in `input`), and `store` is accepted and ignored. Tools, reasoning and structured output
 * are not Loupe's to offer: those fields are accepted and ignored, as chat completions do with theirs.
 */
import { randomUUID } from "node:crypto";
import { z } from "@hono/zod-openapi";
import type { MediaLinkSigner } from "../../auth/media-link-signer.ts";
import type { ChatRequest, ChatResult, LoupeChain } from "../../rag/types.ts";
import { answerPieces } from "../answer-stream.ts";
import {
  citedSources,
  mediaLinker,
  type SourcesMode,
  sourcesList,
  type UrlCitation,
  urlCitations,
} from "../chat-sources.ts";
import { failureEnvelope } from "../errors.ts";
import { createRouter, defineRoute, errorResponse, eventStreamContent } from "../openapi.ts";
import { eventStreamResponse } from "../sse.ts";
import { chatBodyLimit, chatErrorResponses, MAX_CHAT_MAX_TOKENS, openChatStream } from "./chat.ts";
import {
  type ChatCompletionsConfig,
  chatCompletionRequestSchema,
  logCaller,
  loupeExtraSchema,
  toChatRequest,
} from "./chat-completions.ts";
import { composerForModel } from "./models.ts";

/** An `input_text` part. */
const inputTextSchema = z.object({ type: z.literal("input_text"), text: z.string() });

/** An `input_image` part: the image as a URL string, as the Responses API sends it. */
const inputImageSchema = z.object({
  type: z.literal("input_image"),
  image_url: z
    .string({
      error:
        "input_image needs image_url: a data URL, an http(s) URL or a stored item's id (file_id is not supported)",
    })
    .min(1, "input_image's image_url is empty")
    .describe("A data URL (data:image/png;base64,…), an http(s) URL, or a stored item's id (img_…)."),
  detail: z.enum(["auto", "low", "high"]).optional().describe("Accepted and ignored."),
});

/** An earlier answer's text, sent back as history (its annotations are dropped). */
const outputTextSchema = z.object({ type: z.literal("output_text"), text: z.string() });

const PART_TYPES = ["input_text", "input_image", "output_text"];

/**
 * The first problem of a string-or-list union inside the branch the value was meant for (the one that
 * did not fail on the value's type alone); `undefined` when the value was neither.
 */
function meantBranchIssue(issue: z.core.$ZodRawIssue): z.core.$ZodIssue | undefined {
  if (issue.code !== "invalid_union") return undefined;
  const meant = issue.errors.find(
    (branch) => !branch.every((inner) => inner.path.length === 0 && inner.code === "invalid_type"),
  );
  return meant?.[0];
}

/** Says what is wrong with a message's `content`. */
function describeBadContent(input: unknown): string {
  if (!Array.isArray(input)) return "content must be a string or a list of input_text and input_image parts";
  const bad = input.find(
    (part: unknown) =>
      typeof part !== "object" ||
      part === null ||
      !PART_TYPES.includes(String((part as { type?: unknown }).type)),
  ) as { type?: unknown } | undefined;
  if (bad === undefined) {
    return 'content parts are { "type": "input_text", "text": "…" } or { "type": "input_image", "image_url": "…" }';
  }
  const type = typeof bad === "object" && bad !== null ? bad.type : bad;
  const advice =
    type === "input_file"
      ? ". Loupe reads no files: send a document's text as an input_text part"
      : type === "input_audio"
        ? ". Loupe hears no audio: send a transcript as an input_text part"
        : "";
  return `content part type ${JSON.stringify(typeof type === "string" ? type.slice(0, 40) : type)} is not supported; use "input_text" or "input_image" (an image as a data URL, an http(s) URL or a stored item's id)${advice}`;
}

/** One message of `input`. Other item types (tool calls, reasoning, item references) are refused. */
const inputMessageSchema = z.looseObject({
  type: z
    .literal("message", {
      error: (issue) =>
        `input item type ${JSON.stringify(String(issue.input).slice(0, 40))} is not supported; input items are messages (Loupe calls no tools)`,
    })
    .optional(),
  role: z.enum(["system", "developer", "user", "assistant"], {
    error: (issue) =>
      `role ${JSON.stringify(issue.input)} is not supported; use system, developer, user or assistant`,
  }),
  content: z
    .union(
      [
        z.string(),
        z.array(z.discriminatedUnion("type", [inputTextSchema, inputImageSchema, outputTextSchema])),
      ],
      {
        error: (issue) => {
          // A known part with a bad field says what is wrong with it; an unknown part type, which part types there are.
          const nested = meantBranchIssue(issue);
          if (nested === undefined || nested.code === "invalid_union") return describeBadContent(issue.input);
          return nested.path.length === 0
            ? nested.message
            : `part ${String(nested.path[0])}: ${nested.message}`;
        },
      },
    )
    .describe("A string, or a list of input_text and input_image parts (output_text for earlier answers)."),
});

/**
 * Says what is wrong with `input`: the problem inside the branch (string or list) the value was meant
 * for, since zod's union message alone says only "Invalid input".
 */
function describeBadInput(issue: z.core.$ZodRawIssue): string {
  const first = meantBranchIssue(issue);
  if (first === undefined) return "input must be a string or a list of messages ({ role, content })";
  const where = first.path.map((part) => `[${String(part)}]`).join("");
  return where === "" ? first.message : `at ${where}: ${first.message}`;
}

function tokenLimitSchema(name: string) {
  const message = `${name} must be an integer from 1 to ${MAX_CHAT_MAX_TOKENS}`;
  return z.number({ error: message }).int(message).min(1, message).max(MAX_CHAT_MAX_TOKENS, message);
}

const statelessMessage =
  "Loupe keeps no responses or conversations: send the whole conversation in input, and leave it unset";

/** Body of POST /v1/responses. Other Responses parameters are accepted and ignored. */
export const responseRequestSchema = z
  .looseObject({
    model: chatCompletionRequestSchema.shape.model,
    input: z
      .union([z.string().min(1, "input is empty"), z.array(inputMessageSchema).min(1, "input is empty")], {
        error: describeBadInput,
      })
      .describe("The question, or the conversation oldest first; the last message is the user's question."),
    instructions: z
      .string()
      .nullable()
      .optional()
      .describe("Accepted and ignored, like system messages: Loupe answers with its own instructions."),
    stream: z.boolean().nullable().optional().describe("true: answer the Responses event stream."),
    temperature: z
      .number()
      .min(0, "temperature must be 0–2")
      .max(2, "temperature must be 0–2")
      .nullable()
      .optional(),
    max_output_tokens: tokenLimitSchema("max_output_tokens").nullable().optional(),
    previous_response_id: z
      .null({ error: `previous_response_id is not supported. ${statelessMessage}` })
      .optional(),
    conversation: z.null({ error: `conversation is not supported. ${statelessMessage}` }).optional(),
    loupe: chatCompletionRequestSchema.shape.loupe,
  })
  .meta({ id: "ResponseRequest" });

type ResponseRequest = z.output<typeof responseRequestSchema>;

/** A `url_citation` annotation of the Responses API (flat, unlike chat completions' nested one). */
const responseUrlCitationSchema = z.object({
  type: z.literal("url_citation"),
  url: z
    .string()
    .describe("Absolute link to the cited item's media; signed and short-lived while API keys are on."),
  title: z.string(),
  start_index: z.number().int().describe("Where the citation's `[id]` mark starts, in Unicode code points."),
  end_index: z.number().int().describe("Where it ends (exclusive)."),
});

const outputTextPartSchema = z.object({
  type: z.literal("output_text"),
  text: z.string(),
  annotations: z.array(responseUrlCitationSchema),
  logprobs: z.array(z.unknown()).max(0).describe("Always empty."),
});

const outputMessageSchema = z.object({
  type: z.literal("message"),
  id: z.string(),
  status: z.enum(["in_progress", "completed"]),
  role: z.literal("assistant"),
  content: z.array(outputTextPartSchema),
});

/** Body of a 200 from POST /v1/responses without `stream`, and the `response` of its stream events. */
export const responseSchema = z
  .object({
    id: z.string(),
    object: z.literal("response"),
    created_at: z.number().int(),
    status: z.enum(["in_progress", "completed"]),
    model: z.string(),
    output: z.array(outputMessageSchema),
    usage: z
      .object({
        input_tokens: z.number().int(),
        input_tokens_details: z.object({ cached_tokens: z.number().int() }),
        output_tokens: z.number().int(),
        output_tokens_details: z.object({ reasoning_tokens: z.number().int() }),
        total_tokens: z.number().int(),
      })
      .nullable()
      .describe(
        "LLM token counts (0 when the offline composer answered); null until the response completes.",
      ),
    error: z.null(),
    incomplete_details: z.null(),
    instructions: z.null(),
    max_output_tokens: z.number().int().nullable(),
    metadata: z.object({}),
    parallel_tool_calls: z.boolean(),
    previous_response_id: z.null(),
    store: z.literal(false),
    temperature: z.number().nullable(),
    tool_choice: z.literal("none"),
    tools: z.array(z.unknown()).max(0).describe("Always empty: Loupe calls no tools."),
    top_p: z.null(),
    loupe: loupeExtraSchema
      .optional()
      .describe(
        "Loupe's grounding of the answer, as on chat completions; absent until the response completes.",
      ),
  })
  .meta({ id: "Response" });

type ResponseBody = z.infer<typeof responseSchema>;
type ResponseAnnotation = z.infer<typeof responseUrlCitationSchema>;

/** One event of a streamed response (its `data:`); `type` names it, as does the `event:` line. */
export const responseStreamEventSchema = z
  .looseObject({
    type: z.string().describe("response.created, response.output_text.delta, response.completed, error, …"),
    sequence_number: z.number().int(),
  })
  .meta({ id: "ResponseStreamEvent" });

/** The chat completions request a Responses request amounts to. */
function asCompletionRequest(body: ResponseRequest) {
  const messages =
    typeof body.input === "string"
      ? [{ role: "user" as const, content: body.input }]
      : body.input.map((item) => ({
          role: item.role,
          content:
            typeof item.content === "string"
              ? item.content
              : item.content.map((part) =>
                  part.type === "input_image"
                    ? { type: "image_url" as const, image_url: { url: part.image_url } }
                    : { type: "text" as const, text: part.text },
                ),
        }));
  return {
    model: body.model,
    messages,
    ...(body.temperature === null || body.temperature === undefined ? {} : { temperature: body.temperature }),
    ...(body.max_output_tokens === null || body.max_output_tokens === undefined
      ? {}
      : { max_tokens: body.max_output_tokens }),
    ...(body.loupe === undefined ? {} : { loupe: body.loupe }),
  };
}

function flatCitations(annotations: UrlCitation[]): ResponseAnnotation[] {
  return annotations.map(({ url_citation }) => ({ type: "url_citation", ...url_citation }));
}

function usageOf(result: ChatResult): NonNullable<ResponseBody["usage"]> {
  const input = result.usage?.promptTokens ?? 0;
  const output = result.usage?.completionTokens ?? 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + output,
  };
}

function loupeOf(result: ChatResult, exact = true): NonNullable<ResponseBody["loupe"]> {
  return {
    citations: result.citations,
    confidence: result.confidence,
    answered: result.answered,
    verification: result.verification,
    ...(result.fallback === undefined ? {} : { fallback: result.fallback }),
    composer: result.composer,
    model: result.model,
    standaloneQuestion: result.standaloneQuestion,
    timings: result.timings,
    ...(exact ? {} : { answer: result.answer }),
  };
}

/** What the route uses. */
export interface ResponsesRouteOptions {
  chain: LoupeChain;
  config: ChatCompletionsConfig;
  /** Signs the media links of sources while API keys are on; absent: links are plain. */
  mediaLinks?: MediaLinkSigner;
}

/** The /v1/responses route. */
export function createResponsesRoute({ chain, config, mediaLinks }: ResponsesRouteOptions) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/responses",
      operationId: "createResponse",
      tags: ["chat"],
      summary: "OpenAI Responses API (minimal)",
      description:
        "The chat turn of POST /v1/chat/completions in the OpenAI Responses format, for clients that call it by default. `input` is a string or a list of messages whose content is a string or `input_text` and `input_image` parts (`image_url`: a data URL, an http(s) URL or a stored item's id; earlier answers' `output_text` parts are history); `instructions` and system messages are ignored. The answer is one `message` output item with one `output_text` part whose `annotations` are the sources as `url_citation`s (absolute media links, signed while API keys are on); `loupe.sources: markdown` (or LOUPE_CHAT_SOURCES) also appends a Sources list to the text. `stream: true` answers the Responses events (ResponseStreamEvent): response.created, response.in_progress, response.output_item.added, response.content_part.added, response.output_text.delta…, response.output_text.annotation.added…, response.output_text.done, response.content_part.done, response.output_item.done, response.completed; a failure after the stream began is one `error` event (with Loupe's envelope in `error`). Loupe keeps no responses: `previous_response_id` and `conversation` are refused and `store` is ignored; tools, reasoning and text formats are accepted and ignored.",
      middleware: [chatBodyLimit(config)],
      request: {
        body: { required: true, content: { "application/json": { schema: responseRequestSchema } } },
      },
      responses: {
        200: {
          description:
            "A response (application/json), or the Responses event stream (text/event-stream) when `stream` is true.",
          content: { "application/json": { schema: responseSchema }, ...eventStreamContent },
        },
        ...chatErrorResponses,
        404: errorResponse(
          "`model` is not one of GET /v1/models (code model_not_found), or an item id is not one of the caller's.",
        ),
      },
    },
    { access: { scope: "read", cost: 5 } },
  );
  const router = createRouter();
  router.openAPIRegistry.register("ResponseStreamEvent", responseStreamEventSchema);
  return router.openapi(route, async (c) => {
    const body = c.req.valid("json");
    logCaller(c, body.user);
    const composer = composerForModel({ chain, model: body.model });
    const signal = c.req.raw.signal;
    const request: ChatRequest = {
      ...(await toChatRequest({ body: asCompletionRequest(body), config, signal, field: "input" })),
      composer,
      tenant: c.get("tenant"),
    };
    const sourcesMode: SourcesMode = body.loupe?.sources ?? config.chatSources;
    const link = mediaLinker({ c, publicUrl: config.publicUrl, signer: mediaLinks });
    const id = `resp_${randomUUID().replaceAll("-", "")}`;
    const messageId = `msg_${randomUUID().replaceAll("-", "")}`;
    const createdAt = Math.floor(Date.now() / 1000);
    const envelope = (
      status: ResponseBody["status"],
      output: ResponseBody["output"],
      result?: ChatResult,
      exact?: boolean,
    ): ResponseBody => ({
      id,
      object: "response",
      created_at: createdAt,
      status,
      model: body.model,
      output,
      usage: result === undefined ? null : usageOf(result),
      error: null,
      incomplete_details: null,
      instructions: null,
      max_output_tokens: body.max_output_tokens ?? null,
      metadata: {},
      parallel_tool_calls: false,
      previous_response_id: null,
      store: false,
      temperature: body.temperature ?? null,
      tool_choice: "none",
      tools: [],
      top_p: null,
      ...(result === undefined ? {} : { loupe: loupeOf(result, exact) }),
    });
    const message = (
      status: "in_progress" | "completed",
      content: ResponseBody["output"][number]["content"],
    ): ResponseBody["output"][number] => ({
      type: "message",
      id: messageId,
      status,
      role: "assistant",
      content,
    });
    const part = (text: string, annotations: ResponseAnnotation[]) => ({
      type: "output_text" as const,
      text,
      annotations,
      logprobs: [],
    });

    if (body.stream !== true) {
      const result = await chain.invoke({ ...request, signal });
      const sources = await citedSources({ citations: result.citations, link });
      const text = sourcesMode === "markdown" ? result.answer + sourcesList(sources) : result.answer;
      const annotations = flatCitations(urlCitations({ content: text, sources }));
      return c.json(envelope("completed", [message("completed", [part(text, annotations)])], result), 200);
    }

    const opened = await openChatStream({ chain, request, signal });
    const requestId = c.get("requestId");
    const logger = c.get("logger");
    let sequence = 0;
    const frame = (type: string, data: Record<string, unknown>) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...data })}\n\n`;
    const at = { item_id: messageId, output_index: 0, content_index: 0 };
    return eventStreamResponse({
      frames: async function* (streamSignal): AsyncGenerator<string, void> {
        streamSignal.addEventListener("abort", opened.abort, { once: true });
        let finished = false;
        try {
          yield frame("response.created", { response: envelope("in_progress", []) });
          yield frame("response.in_progress", { response: envelope("in_progress", []) });
          yield frame("response.output_item.added", { output_index: 0, item: message("in_progress", []) });
          yield frame("response.content_part.added", { ...at, part: part("", []) });
          const pieces = answerPieces({ opened, logger });
          let piece = await pieces.next();
          while (piece.done !== true) {
            yield frame("response.output_text.delta", { ...at, delta: piece.value, logprobs: [] });
            piece = await pieces.next();
          }
          finished = true;
          const { result, answerStart, exact } = piece.value;
          let { sent } = piece.value;
          const sources = await citedSources({ citations: result.citations, link });
          const list = sourcesMode === "markdown" ? sourcesList(sources) : "";
          if (list.length > 0) {
            sent += list;
            yield frame("response.output_text.delta", { ...at, delta: list, logprobs: [] });
          }
          const annotations = flatCitations(urlCitations({ content: sent, sources, from: answerStart }));
          for (const [index, annotation] of annotations.entries()) {
            yield frame("response.output_text.annotation.added", {
              ...at,
              annotation_index: index,
              annotation,
            });
          }
          const done = part(sent, annotations);
          yield frame("response.output_text.done", { ...at, text: sent, logprobs: [] });
          yield frame("response.content_part.done", { ...at, part: done });
          yield frame("response.output_item.done", { output_index: 0, item: message("completed", [done]) });
          yield frame("response.completed", {
            response: envelope("completed", [message("completed", [done])], result, exact),
          });
        } catch (error) {
          if (opened.aborted) return;
          const failure = failureEnvelope({ error, requestId, logger });
          // OpenAI's error event, plus Loupe's envelope, which the OpenAI SDKs raise as the error.
          yield frame("error", {
            code: failure.error.code,
            message: failure.error.message,
            param: null,
            error: failure.error,
          });
        } finally {
          if (!finished) await opened.rest.return?.();
        }
      },
    });
  });
}
