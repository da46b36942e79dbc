/**
 * POST /v1/chat/completions — the chat endpoint in OpenAI's format, so OpenAI clients and chat UIs (Open
 * WebUI, LibreChat) can talk to Loupe unchanged. Messages carry string content or `text` and `image_url`
 * parts (data URLs, a stored item's id, or http(s) URLs fetched like ingestion's); the last user message
 * is the question and earlier turns are its history. Fields Loupe has no use for (`user`, `seed`,
 * `metadata`, `cache_control`, …) are accepted and ignored, as chat UIs send them unasked. `stream: true`
 * answers `chat.completion.chunk` data events ending with `data: [DONE]`.
 *
 * Sources reach clients in three ways: OpenAI `url_citation` annotations on the message (on the stop
 * chunk when streaming) with absolute, openable links (`../chat-sources.ts`); when asked, a Sources list
 * appended to the text; and, for Loupe-aware clients, the extra top-level field `loupe` with citations,
 * confidence, verification and fallback. Errors keep Loupe's envelope, whose `error.message` OpenAI
 * clients read.
 */
import { randomUUID } from "node:crypto";
import { z } from "@hono/zod-openapi";
import type { MediaLinkSigner } from "../../auth/media-link-signer.ts";
import type { Config } from "../../config.ts";
import { ValidationError } from "../../errors.ts";
import { fetchUrl } from "../../media/url-fetcher.ts";
import { citedIds } from "../../rag/chain.ts";
import type { ChatRequest, ChatResult, ChatTurn, LoupeChain } from "../../rag/types.ts";
import { type ImageQuery, parseImageReference } from "../../search/index.ts";
import { answerPieces } from "../answer-stream.ts";
import {
  citedSources,
  mediaLinker,
  type SourcesMode,
  sourcesList,
  stripSourcesList,
  urlCitationSchema,
  urlCitations,
} from "../chat-sources.ts";
import type { AppContext } from "../context.ts";
import { failureEnvelope } from "../errors.ts";
import { createRouter, defineRoute, errorResponse, eventStreamContent } from "../openapi.ts";
import { eventStreamResponse } from "../sse.ts";
import {
  type ChatLimits,
  chatBodyLimit,
  chatErrorResponses,
  chatTimingsSchema,
  checkChatLimits,
  citationSchema,
  fallbackSchema,
  MAX_CHAT_MAX_TOKENS,
  MAX_CHAT_QUESTION_LENGTH,
  MAX_CHAT_TURN_LENGTH,
  openChatStream,
  verificationSchema,
} from "./chat.ts";
import { composerForModel } from "./models.ts";
import { filterSchema, searchOptionsShape } from "./search.ts";

/** The settings the route reads: chat limits, the URL fetcher's limits, and how sources are linked and shown. */
export type ChatCompletionsConfig = ChatLimits &
  Pick<
    Config,
    "urlAllowHosts" | "urlMaxBytes" | "urlTimeoutMs" | "urlMaxRedirects" | "publicUrl" | "chatSources"
  >;

export { ANSWER_RESET_NOTE } from "../answer-stream.ts";

/** Image types accepted from an http(s) `image_url` (as for ingestion by URL). */
const URL_IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"];

/** A `text` content part. */
export const textPartSchema = z.object({ type: z.literal("text"), text: z.string() });

/** An `image_url` content part. */
export const imageUrlPartSchema = z.object({
  type: z.literal("image_url"),
  image_url: z.object({
    url: z
      .string()
      .min(1)
      .describe("A data URL (data:image/png;base64,…), an http(s) URL, or a stored item's id (img_…)."),
    detail: z.enum(["auto", "low", "high"]).optional().describe("Accepted and ignored."),
  }),
});

const contentPartSchema = z.discriminatedUnion("type", [textPartSchema, imageUrlPartSchema]);

/** What to do instead, for part types chat UIs send that Loupe cannot read. */
const UNSUPPORTED_PART_ADVICE: Readonly<Record<string, string>> = {
  file: "Loupe reads no files: send a document's text as a text part, and images as image_url parts",
  input_file: "Loupe reads no files: send a document's text as a text part, and images as image_url parts",
  input_audio: "Loupe hears no audio: send a transcript as a text part",
};

/** Says what is wrong with a message's `content` (zod's union message alone says only "Invalid input"). */
function describeBadContent(input: unknown): string {
  if (!Array.isArray(input)) return "content must be a string or a list of text and image_url parts";
  const bad = input.find(
    (part: unknown) =>
      typeof part !== "object" ||
      part === null ||
      !["text", "image_url"].includes(String((part as { type?: unknown }).type)),
  ) as { type?: unknown } | undefined;
  if (bad !== undefined) {
    const type = typeof bad === "object" && bad !== null ? bad.type : bad;
    const advice = typeof type === "string" ? UNSUPPORTED_PART_ADVICE[type] : undefined;
    return `content part type ${JSON.stringify(typeof type === "string" ? type.slice(0, 40) : type)} is not supported; use "text" or "image_url" (an image as a data URL, an http(s) URL or a stored item's id)${advice === undefined ? "" : `. ${advice}`}`;
  }
  return 'content parts are { "type": "text", "text": "…" } or { "type": "image_url", "image_url": { "url": "…" } }';
}

/** One message. Fields other than `role` and `content` (e.g. `name`) are accepted and ignored. */
export const chatCompletionMessageSchema = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant"], {
    error: (issue) =>
      `role ${JSON.stringify(issue.input)} is not supported; use system, developer, user or assistant (Loupe calls no tools)`,
  }),
  content: z
    .union([z.string(), z.array(contentPartSchema)], { error: (issue) => describeBadContent(issue.input) })
    .nullable()
    .optional()
    .describe("A string, or a list of text and image_url parts."),
});

function tokenLimitSchema(name: string) {
  const message = `${name} must be an integer from 1 to ${MAX_CHAT_MAX_TOKENS}`;
  return z.number({ error: message }).int(message).min(1, message).max(MAX_CHAT_MAX_TOKENS, message);
}

const nullableOptional = <Schema extends z.ZodType>(schema: Schema) => schema.nullable().optional();

/**
 * Body of POST /v1/chat/completions. Other OpenAI parameters and what chat UIs add (`top_p`, `seed`,
 * `user`, `metadata`, `reasoning`, `cache_control`, …) are accepted and ignored; `n` must be 1. `user`
 * is recorded in the request's log lines.
 */
export const chatCompletionRequestSchema = z
  .looseObject({
    model: z
      .string({ error: "model is required: a name from GET /v1/models (loupe or loupe-offline)" })
      .min(1, "model is empty: send a name from GET /v1/models (loupe or loupe-offline)")
      .max(200, "model must be at most 200 characters")
      .describe("A name from GET /v1/models: loupe or loupe-offline."),
    messages: z
      .array(chatCompletionMessageSchema)
      .min(1, "messages must hold at least one user message")
      .describe("The conversation, oldest first; the last one is the user's question."),
    stream: nullableOptional(z.boolean()).describe("true: answer chat.completion.chunk events."),
    stream_options: nullableOptional(z.looseObject({ include_usage: z.boolean().optional() })).describe(
      "include_usage: one more chunk with the token usage before [DONE].",
    ),
    temperature: nullableOptional(
      z.number().min(0, "temperature must be 0–2").max(2, "temperature must be 0–2"),
    ),
    max_tokens: nullableOptional(tokenLimitSchema("max_tokens")),
    max_completion_tokens: nullableOptional(tokenLimitSchema("max_completion_tokens")),
    // A union rather than .nullable(): the document generator drops null from a nullable literal's enum.
    n: z
      .union([z.literal(1), z.null()], { error: "n must be 1: Loupe writes one answer per request" })
      .optional(),
    loupe: z
      .strictObject(
        {
          filter: filterSchema.optional(),
          kinds: searchOptionsShape.kinds,
          topK: searchOptionsShape.topK,
          sources: z
            .enum(["annotations", "markdown"], {
              error: "sources must be annotations or markdown",
            })
            .optional()
            .describe(
              "annotations: sources as url_citation annotations only; markdown: also a Sources list appended to the answer text. Default: LOUPE_CHAT_SOURCES.",
            ),
        },
        {
          error: (issue) =>
            issue.code === "unrecognized_keys"
              ? `unknown field ${issue.keys.map((key) => JSON.stringify(key.slice(0, 40))).join(", ")}; loupe takes only filter, kinds, topK and sources`
              : undefined,
        },
      )
      .optional()
      .describe(
        "Loupe's own options: a metadata filter, the kinds to retrieve, items per kind, how sources are shown.",
      ),
  })
  .meta({ id: "ChatCompletionRequest" });

type CompletionRequest = z.output<typeof chatCompletionRequestSchema>;
type CompletionMessage = z.output<typeof chatCompletionMessageSchema>;

/** What Loupe adds to a completion: the grounding of the answer. */
export const loupeExtraSchema = z.object({
  citations: z.array(citationSchema).describe("Evidence the answer cites, in order of first citation."),
  confidence: z.number().describe("0–1: how far the evidence supports the answer."),
  answered: z.boolean().describe("false when the corpus and the images do not answer the question."),
  verification: verificationSchema,
  fallback: fallbackSchema.optional().describe("Set when the LLM failed and the offline composer answered."),
  composer: z.enum(["llm", "offline"]),
  model: z.string().describe("The model that wrote the answer (loupe-offline for the offline composer)."),
  standaloneQuestion: z.string(),
  timings: chatTimingsSchema,
  answer: z
    .string()
    .optional()
    .describe(
      "Streams only: the final answer, when the streamed text differs from it (the LLM failed mid-answer and the offline answer followed).",
    ),
});

const usageSchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
});

/** Body of a 200 from POST /v1/chat/completions without `stream`. */
export const chatCompletionSchema = z
  .object({
    id: z.string(),
    object: z.literal("chat.completion"),
    created: z.number().int(),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.number().int(),
        message: z.object({
          role: z.literal("assistant"),
          content: z.string(),
          refusal: z.null(),
          annotations: z
            .array(urlCitationSchema)
            .describe("One url_citation per cited stored item (attached images have no link)."),
        }),
        finish_reason: z.literal("stop"),
        logprobs: z.null(),
      }),
    ),
    usage: usageSchema.describe("LLM token counts; 0 when the offline composer answered."),
    loupe: loupeExtraSchema,
  })
  .meta({ id: "ChatCompletion" });

/** One `data:` event of a streamed completion. */
export const chatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal("chat.completion.chunk"),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({
        role: z.literal("assistant").optional(),
        content: z.string().optional(),
        annotations: z
          .array(urlCitationSchema)
          .optional()
          .describe("On the chunk with finish_reason stop: one url_citation per cited stored item."),
      }),
      // A union rather than .nullable(): the document generator drops null from a nullable literal's enum.
      finish_reason: z.union([z.literal("stop"), z.null()]),
      logprobs: z.null(),
    }),
  ),
  usage: usageSchema.nullable().optional(),
  loupe: loupeExtraSchema.optional().describe("On the chunk with finish_reason stop."),
});

type Chunk = z.infer<typeof chatCompletionChunkSchema>;

function loupeExtra(result: ChatResult): z.infer<typeof loupeExtraSchema> {
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
  };
}

function usageOf(result: ChatResult): z.infer<typeof usageSchema> {
  const prompt = result.usage?.promptTokens ?? 0;
  const completion = result.usage?.completionTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** A message's text: the string, or its text parts joined by newlines. */
function messageText(message: CompletionMessage): string {
  const content = message.content;
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  return content
    .flatMap((part) => (part.type === "text" ? [part.text] : []))
    .join("\n")
    .trim();
}

/**
 * The text of an earlier turn: an assistant message loses the Sources list Loupe appended to it, since
 * chat UIs send answers back whole and the list's expiring links mean nothing to the next turn.
 */
function turnText(message: CompletionMessage): string {
  const text = messageText(message);
  return message.role === "assistant" ? stripSourcesList(text) : text;
}

function imageUrls(message: CompletionMessage): string[] {
  const content = message.content;
  if (content === null || content === undefined || typeof content === "string") return [];
  return content.flatMap((part) => (part.type === "image_url" ? [part.image_url.url] : []));
}

/**
 * Turns an `image_url` into an image query: data URLs and base64 are decoded under the image size
 * limit, ids kept, http(s) URLs fetched through the SSRF-safe fetcher with ingestion's limits.
 */
async function resolveImage({
  url,
  field,
  config,
  signal,
}: {
  url: string;
  field: string;
  config: ChatCompletionsConfig;
  signal: AbortSignal;
}): Promise<ImageQuery> {
  const reference = parseImageReference({
    value: url,
    field,
    allowUrl: true,
    maxBytes: config.maxImageBytes,
  });
  if (!("url" in reference)) return reference;
  const fetched = await fetchUrl({
    url: reference.url,
    maxBytes: Math.min(config.urlMaxBytes, config.maxImageBytes),
    timeoutMs: config.urlTimeoutMs,
    maxRedirects: config.urlMaxRedirects,
    allowHosts: config.urlAllowHosts,
    allowedContentTypes: URL_IMAGE_TYPES,
    signal,
  });
  return { bytes: new Uint8Array(fetched.bytes.buffer, fetched.bytes.byteOffset, fetched.bytes.length) };
}

/**
 * The chain request of a completion request: the last message is the question (it must be the user's),
 * earlier user and assistant messages are the history, system and developer messages are left out
 * (Loupe answers with its own instructions). Counts are checked before any image is fetched.
 */
export async function toChatRequest({
  body,
  config,
  signal,
  field = "messages",
}: {
  body: CompletionRequest;
  config: ChatCompletionsConfig;
  signal: AbortSignal;
  /** What error messages call the list of messages (`input` for the Responses API). */
  field?: string;
}): Promise<Omit<ChatRequest, "tenant" | "signal" | "composer">> {
  const indexed = body.messages
    .map((message, index) => ({ message, index }))
    .filter(({ message }) => message.role === "user" || message.role === "assistant");
  const last = indexed.at(-1);
  if (last === undefined || last.index !== body.messages.length - 1 || last.message.role !== "user") {
    throw new ValidationError(
      `The last message must be the user's question; got ${body.messages.length === 0 ? "none" : `role ${JSON.stringify(body.messages.at(-1)?.role)}`}.`,
    );
  }
  const question = messageText(last.message);
  if (question.length === 0) {
    throw new ValidationError(
      `${field}[${last.index}] has no text; the last user message must ask a question (an image alone is not one).`,
    );
  }
  if (question.length > MAX_CHAT_QUESTION_LENGTH) {
    throw new ValidationError(
      `${field}[${last.index}] is ${question.length} characters; the question may be at most ${MAX_CHAT_QUESTION_LENGTH}.`,
    );
  }
  const earlier = indexed.slice(0, -1);
  for (const { message, index } of earlier) {
    if (message.role === "assistant" && imageUrls(message).length > 0) {
      throw new ValidationError(
        `${field}[${index}] is an assistant message with images; only users attach images.`,
      );
    }
    const length = turnText(message).length;
    if (length > MAX_CHAT_TURN_LENGTH) {
      throw new ValidationError(
        `${field}[${index}] is ${length} characters; earlier messages may be at most ${MAX_CHAT_TURN_LENGTH}.`,
      );
    }
  }
  checkChatLimits({
    turns: earlier.length,
    images: indexed.reduce((sum, { message }) => sum + imageUrls(message).length, 0),
    limits: config,
  });
  const imagesOf = async ({ message, index }: { message: CompletionMessage; index: number }) => {
    const images: ImageQuery[] = [];
    for (const [partIndex, url] of imageUrls(message).entries()) {
      images.push(
        await resolveImage({ url, field: `${field}[${index}] image ${partIndex}`, config, signal }),
      );
    }
    return images;
  };
  const history: ChatTurn[] = [];
  for (const entry of earlier) {
    const content = turnText(entry.message);
    if (entry.message.role === "user") {
      const images = await imagesOf(entry);
      history.push({ role: "user", content, ...(images.length > 0 ? { images } : {}) });
    } else {
      const citations = citedIds(content);
      history.push({ role: "assistant", content, ...(citations.length > 0 ? { citations } : {}) });
    }
  }
  const images = await imagesOf(last);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  return {
    question,
    ...(images.length > 0 ? { images } : {}),
    ...(history.length > 0 ? { history } : {}),
    ...(body.loupe?.filter === undefined ? {} : { filter: body.loupe.filter }),
    ...(body.loupe?.kinds === undefined ? {} : { kinds: body.loupe.kinds }),
    ...(body.loupe?.topK === undefined ? {} : { topK: body.loupe.topK }),
    ...(body.temperature === null || body.temperature === undefined ? {} : { temperature: body.temperature }),
    ...(maxTokens === null || maxTokens === undefined ? {} : { maxTokens }),
  };
}

/**
 * A `text/event-stream` of unnamed `data:` events, OpenAI's streaming format: each chunk as JSON, then
 * `data: [DONE]` when the chunks end. `signal` aborts when the client goes away.
 */
function dataStreamResponse({
  chunks,
}: {
  /** Yields the chunks; returns `done` to end with `data: [DONE]`, `error` after an error chunk. */
  chunks: (signal: AbortSignal) => AsyncGenerator<unknown, "done" | "error">;
}): Response {
  return eventStreamResponse({
    frames: (signal) => {
      const source = chunks(signal);
      let ended = false;
      return {
        next: async () => {
          if (ended) return { done: true, value: undefined };
          const next = await source.next();
          if (next.done !== true) return { done: false, value: `data: ${JSON.stringify(next.value)}\n\n` };
          ended = true;
          return next.value === "done"
            ? { done: false, value: "data: [DONE]\n\n" }
            : { done: true, value: undefined };
        },
        return: async () => {
          await source.return("error");
          return { done: true, value: undefined };
        },
      };
    },
  });
}

/** The longest a caller label (`user`, the Open WebUI ids) is logged, in code points. */
const MAX_CALLER_LABEL = 128;

/** A caller label as logged: no control, format or private-use characters, trimmed, capped. */
function callerLabel(value: unknown): string | undefined {
  if (typeof value !== "string") return undefined;
  const cleaned = Array.from(value.replace(/\p{C}/gu, "").trim()).slice(0, MAX_CALLER_LABEL).join("");
  return cleaned.length === 0 ? undefined : cleaned;
}

/**
 * Who a chat UI says the end user is: the OpenAI `user` field and Open WebUI's forwarded user and chat
 * ids. Whoever sends the request chooses them, so they label log lines and never decide access.
 */
export function callerLabels({
  user,
  header,
}: {
  user: unknown;
  header: (name: string) => string | undefined;
}): Record<string, string> | undefined {
  const labels = Object.entries({
    user: callerLabel(user),
    openWebUiUserId: callerLabel(header("x-openwebui-user-id")),
    openWebUiChatId: callerLabel(header("x-openwebui-chat-id")),
  }).filter((entry): entry is [string, string] => entry[1] !== undefined);
  return labels.length === 0 ? undefined : Object.fromEntries(labels);
}

/**
 * Binds the caller labels of a chat request to its logger, so every later line of the request carries
 * them, and writes one line naming them.
 */
export function logCaller(c: AppContext, user: unknown): void {
  const caller = callerLabels({ user, header: (name) => c.req.header(name) });
  if (caller === undefined) return;
  const logger = c.get("logger").child({ caller });
  c.set("logger", logger);
  logger.info("chat request from a labelled caller");
}

/** What the route uses. */
export interface ChatCompletionsRouteOptions {
  chain: LoupeChain;
  config: ChatCompletionsConfig;
  /** Signs the media links of sources while API keys are on; absent: links are plain. */
  mediaLinks?: MediaLinkSigner;
}

/** The /v1/chat/completions route. */
export function createChatCompletionsRoute({ chain, config, mediaLinks }: ChatCompletionsRouteOptions) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/chat/completions",
      operationId: "createChatCompletion",
      tags: ["chat"],
      summary: "OpenAI-compatible chat",
      description:
        "The chat endpoint in OpenAI's format for OpenAI clients and chat UIs (Open WebUI, LibreChat). The last user message is the question; earlier user and assistant messages are the history (a Sources list Loupe appended to an earlier answer is left out); system messages are ignored (Loupe answers with its own instructions). `image_url` parts take data URLs, stored items' ids, or http(s) URLs fetched under the same rules as ingestion by URL; other part types (`file`, `input_audio`) are refused. `stream: true` answers `chat.completion.chunk` data events (ChatCompletionChunk) and `data: [DONE]`; `stream_options.include_usage` adds a chunk with no choices and the usage before `[DONE]`; a failure after the stream began is one data event holding the error envelope, without `[DONE]`. Each cited stored item is a `url_citation` annotation on the message (on the stop chunk's delta when streaming) whose absolute URL opens its media (a video segment: the video at its start), signed and short-lived while API keys are on (LOUPE_MEDIA_URL_TTL_S), under LOUPE_PUBLIC_URL when set. `loupe.sources: markdown` (or LOUPE_CHAT_SOURCES=markdown) also appends a Sources list to the text. Citations, confidence, verification and fallback are in the extra field `loupe` (on the stop chunk when streaming). Other OpenAI parameters and fields chat UIs add (`user`, `seed`, `metadata`, `cache_control`, …) are accepted and ignored; `user` and the X-OpenWebUI-User-Id and X-OpenWebUI-Chat-Id headers label the request's log lines. Errors are Loupe's envelope, whose `error.message` OpenAI clients show.",
      middleware: [chatBodyLimit(config)],
      request: {
        body: { required: true, content: { "application/json": { schema: chatCompletionRequestSchema } } },
      },
      responses: {
        200: {
          description:
            "A chat.completion (application/json), or chat.completion.chunk data events (text/event-stream) when `stream` is true.",
          content: {
            "application/json": { schema: chatCompletionSchema },
            ...eventStreamContent,
          },
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
  // Chunks are data events of the stream, not a response body: the document lists their schema on its own.
  router.openAPIRegistry.register("ChatCompletionChunk", chatCompletionChunkSchema);
  return router.openapi(route, async (c) => {
    const body = c.req.valid("json");
    logCaller(c, body.user);
    const composer = composerForModel({ chain, model: body.model });
    const signal = c.req.raw.signal;
    const request: ChatRequest = {
      ...(await toChatRequest({ body, config, signal })),
      composer,
      tenant: c.get("tenant"),
    };
    const sourcesMode: SourcesMode = body.loupe?.sources ?? config.chatSources;
    const link = mediaLinker({ c, publicUrl: config.publicUrl, signer: mediaLinks });
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const model = body.model;
    if (body.stream !== true) {
      const result = await chain.invoke({ ...request, signal });
      const sources = await citedSources({ citations: result.citations, link });
      const content = sourcesMode === "markdown" ? result.answer + sourcesList(sources) : result.answer;
      return c.json(
        {
          id,
          object: "chat.completion",
          created,
          model,
          choices: [
            {
              index: 0,
              message: {
                role: "assistant",
                content,
                refusal: null,
                annotations: urlCitations({ content, sources }),
              },
              finish_reason: "stop",
              logprobs: null,
            },
          ],
          usage: usageOf(result),
          loupe: loupeExtra(result),
        } satisfies z.infer<typeof chatCompletionSchema>,
        200,
      );
    }
    const includeUsage = body.stream_options?.include_usage === true;
    const opened = await openChatStream({ chain, request, signal });
    const requestId = c.get("requestId");
    const logger = c.get("logger");
    const chunk = (delta: Chunk["choices"][number]["delta"]): Chunk => ({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: null, logprobs: null }],
    });
    return dataStreamResponse({
      chunks: async function* (streamSignal): AsyncGenerator<unknown, "done" | "error"> {
        streamSignal.addEventListener("abort", opened.abort, { once: true });
        let finished = false;
        try {
          yield chunk({ role: "assistant", content: "" });
          const pieces = answerPieces({ opened, logger });
          let piece = await pieces.next();
          while (piece.done !== true) {
            yield chunk({ content: piece.value });
            piece = await pieces.next();
          }
          finished = true;
          const { result, answerStart, exact } = piece.value;
          let { sent } = piece.value;
          const sources = await citedSources({ citations: result.citations, link });
          const list = sourcesMode === "markdown" ? sourcesList(sources) : "";
          if (list.length > 0) {
            sent += list;
            yield chunk({ content: list });
          }
          yield {
            ...chunk({}),
            choices: [
              {
                index: 0,
                delta: { annotations: urlCitations({ content: sent, sources, from: answerStart }) },
                finish_reason: "stop",
                logprobs: null,
              },
            ],
            // Sent text cannot be taken back in this format: when it is not the final answer (the LLM
            // failed mid-answer and the offline answer followed), loupe.answer holds the final one.
            loupe: { ...loupeExtra(result), ...(exact ? {} : { answer: result.answer }) },
          };
          if (includeUsage) yield { ...chunk({}), choices: [], usage: usageOf(result) };
          return "done";
        } catch (error) {
          if (opened.aborted) return "error";
          yield failureEnvelope({ error, requestId, logger });
          return "error";
        } finally {
          if (!finished) await opened.rest.return?.();
        }
      },
    });
  });
}
