/**
 * POST /v1/chat — a grounded answer to one turn of a conversation over the caller's corpus and the
 * images attached to it. JSON `{ question, images?, history?, filter?, kinds?, topK?, stream?, composer?,
 * temperature?, maxTokens? }`, or multipart with a `question` field, image uploads under `files` and the
 * other fields as one JSON `payload` field. `stream: true` answers server-sent events `retrieval`,
 * `grounding`, `citation`…, `answer-delta`…, `done` (or `error`); otherwise the same result as one JSON.
 *
 * Also home of the pieces /v1/chat/completions shares: the response schemas, the request limits, and
 * opening a chain stream so that a failure before the first event still answers with its HTTP status.
 */
import { z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { Config } from "../../config.ts";
import { MediaError, ValidationError } from "../../errors.ts";
import { MAX_CHAT_QUESTION_LENGTH, MAX_CHAT_TURN_LENGTH } from "../../rag/chain.ts";
import type { ChatEvent, ChatRequest, ChatTurn, LoupeChain } from "../../rag/types.ts";
import { type ImageQuery, parseImageReference } from "../../search/index.ts";
import { failureEnvelope } from "../errors.ts";
import {
  asList,
  createRouter,
  defineRoute,
  errorResponse,
  eventStreamContent,
  imageInputResponses,
  invalidRequestResponse,
  notReadyResponse,
  payloadTooLargeResponse,
  repeatable,
  uploadSchema,
} from "../openapi.ts";
import { sseResponse } from "../sse.ts";
import { filterSchema, imageFieldSchema, isMultipart, parseRequest, searchOptionsShape } from "./search.ts";

// The chain owns the limits of a turn; the routes check them early to answer with a precise field.
export { MAX_CHAT_QUESTION_LENGTH, MAX_CHAT_TURN_LENGTH } from "../../rag/chain.ts";
/** Most citation ids one earlier turn may carry. */
export const MAX_TURN_CITATIONS = 100;
/** Most tokens a request may ask the LLM composer for (the ceiling of `LOUPE_LLM_MAX_TOKENS`). */
export const MAX_CHAT_MAX_TOKENS = 32_768;
/** Room for everything but the images in a chat body: question, history texts, options. */
const CHAT_TEXT_ALLOWANCE_BYTES = 1024 * 1024;

/** The settings a chat request is checked against. */
export type ChatLimits = Pick<Config, "chatMaxTurns" | "chatMaxImages" | "maxImageBytes" | "maxUploadBytes">;

/**
 * Largest chat body: every allowed image inline as base64 (~4/3 its size), capped by
 * `LOUPE_MAX_UPLOAD_BYTES`, plus room for the texts.
 */
export function maxChatBodyBytes({ chatMaxImages, maxImageBytes, maxUploadBytes }: ChatLimits): number {
  return (
    Math.min(maxUploadBytes, chatMaxImages * Math.ceil((maxImageBytes * 4) / 3)) + CHAT_TEXT_ALLOWANCE_BYTES
  );
}

/** Body limit of the chat routes, answered in the error envelope. */
export function chatBodyLimit(limits: ChatLimits) {
  const maxSize = maxChatBodyBytes(limits);
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new MediaError(
        `The request body is over ${maxSize} bytes; attach fewer or smaller images (LOUPE_MAX_IMAGE_BYTES, LOUPE_CHAT_MAX_IMAGES, LOUPE_MAX_UPLOAD_BYTES), or stored items' ids.`,
        { status: 413, code: "payload_too_large", context: { limit: maxSize } },
      );
    },
  });
}

const temperatureSchema = z
  .number({ error: "temperature must be a number from 0 to 2" })
  .min(0, "temperature must be a number from 0 to 2")
  .max(2, "temperature must be a number from 0 to 2");

const maxTokensSchema = z
  .number({ error: `maxTokens must be an integer from 1 to ${MAX_CHAT_MAX_TOKENS}` })
  .int(`maxTokens must be an integer from 1 to ${MAX_CHAT_MAX_TOKENS}`)
  .min(1, `maxTokens must be an integer from 1 to ${MAX_CHAT_MAX_TOKENS}`)
  .max(MAX_CHAT_MAX_TOKENS, `maxTokens must be an integer from 1 to ${MAX_CHAT_MAX_TOKENS}`);

/** One earlier turn in a /v1/chat request. */
export const chatTurnSchema = z
  .object({
    role: z.enum(["user", "assistant"], {
      error: (issue) => `role ${JSON.stringify(issue.input)} is not allowed; use "user" or "assistant"`,
    }),
    content: z
      .string()
      .max(MAX_CHAT_TURN_LENGTH, `content must be at most ${MAX_CHAT_TURN_LENGTH} characters`),
    images: z.array(imageFieldSchema).optional().describe("Images the user attached to that turn."),
    citations: z
      .array(z.string().min(1).max(200))
      .max(MAX_TURN_CITATIONS)
      .optional()
      .describe("Ids the assistant cited in that turn (the `citations[].id` of its answer)."),
  })
  .strict();

/** Body of POST /v1/chat (for multipart: `question`, `files`, and the rest as the JSON field `payload`). */
export const chatRequestSchema = z
  .object({
    question: z
      .string({ error: "question is required: the user's message of this turn" })
      .trim()
      .min(1, "question is empty; send the user's message of this turn")
      .max(MAX_CHAT_QUESTION_LENGTH, `question must be at most ${MAX_CHAT_QUESTION_LENGTH} characters`)
      .describe("The user's message of this turn."),
    images: z
      .array(imageFieldSchema)
      .optional()
      .describe(
        "Images attached to this turn: base64, data URLs or stored items' ids (or upload them as `files`).",
      ),
    history: z
      .array(chatTurnSchema)
      .optional()
      .describe("Earlier turns, oldest first (at most LOUPE_CHAT_MAX_TURNS)."),
    filter: filterSchema.optional(),
    kinds: searchOptionsShape.kinds.describe("Kinds to retrieve; all when absent."),
    topK: searchOptionsShape.topK.describe("Items retrieved per kind before fusion."),
    stream: z
      .boolean({ error: "stream must be true or false" })
      .optional()
      .describe("true: answer server-sent events instead of one JSON."),
    composer: z
      .enum(["auto", "offline"], {
        error: (issue) => `composer ${JSON.stringify(issue.input)} is not allowed; use "auto" or "offline"`,
      })
      .optional()
      .describe("offline: the offline composer writes the answer even when an LLM is configured."),
    temperature: temperatureSchema.optional().describe("Sampling temperature of the LLM composer, 0–2."),
    maxTokens: maxTokensSchema.optional().describe("Most tokens the LLM composer writes."),
  })
  .strict()
  .meta({ id: "ChatRequest" });

const boxSchema = z
  .tuple([z.number(), z.number(), z.number(), z.number()])
  .describe("[x, y, width, height] in pixels of the image the text was read in (its width × height).");

/** A line of text read in an image that an answer rests on. */
export const citedLineSchema = z
  .object({
    line: z
      .number()
      .int()
      .describe("Position of the line in the image's reading (metadata.ocr.lines of a stored item)."),
    text: z.string(),
    confidence: z.number().describe("The recognizer's mean character confidence, 0–1."),
    box: boxSchema,
  })
  .meta({ id: "CitedLine" });

/** Text read in an evidence image. */
const evidenceTextSchema = z.object({
  engine: z.string().describe("The OCR engine and model, e.g. pp-ocrv4."),
  width: z.number().describe("Width of the image the boxes refer to."),
  height: z.number(),
  lines: z.array(z.object({ text: z.string(), confidence: z.number(), box: boxSchema.readonly() })),
  truncated: z
    .boolean()
    .optional()
    .describe("true: the reader stopped at a limit before it had read every line."),
  source: z
    .enum(["stored", "read"])
    .describe("stored: read at ingest (metadata.ocr); read: read during this turn (an attached image)."),
});

/** An object an answer is about, where the detection head found it. */
export const citedBoxSchema = z
  .object({
    box: z
      .object({ x0: z.number(), y0: z.number(), x1: z.number(), y1: z.number() })
      .describe(
        "Normalized to [0, 1] of the original image (a segment's keyframe): x rightwards, y downwards, x0 ≤ x1, y0 ≤ y1. Multiply by the image's width and height for pixels.",
      ),
    label: z.string().describe("The detector's class, e.g. circle."),
    attributes: z
      .record(z.string(), z.string())
      .describe('Attribute name → value, e.g. { "color": "red", "size": "large" }.'),
    score: z.number().describe("Detection score, 0–1."),
  })
  .meta({ id: "CitedBox" });

/** One cited piece of evidence; the same shape for every kind, `null` where a field does not apply. */
export const citationSchema = z
  .object({
    id: z
      .string()
      .describe("Stored item id (img_…, seg_…, tri_…, reg_…) or att_<n> for the n-th attached image."),
    kind: z.enum(["image", "video_segment", "triple", "region"]),
    mediaUrl: z.string().nullable().describe("/v1/media/{id}; null for attached images."),
    thumbnailUrl: z.string().nullable().describe("/v1/media/{id}/thumbnail; null for attached images."),
    start: z.number().nullable().describe("Video segments: start, in seconds."),
    end: z.number().nullable().describe("Video segments: end, in seconds."),
    question: z.string().nullable().describe("Triples: the stored question."),
    answer: z.string().nullable().describe("Triples: the stored answer."),
    score: z.number().describe("Relevance to the question, 0–1 (1 for attached images)."),
    lines: z
      .array(citedLineSchema)
      .optional()
      .describe(
        "Questions about text in images: the lines read in this image (a segment's keyframe) that answer the question, with their boxes, for highlighting. Absent otherwise.",
      ),
    boxes: z
      .array(citedBoxSchema)
      .optional()
      .describe(
        "The objects the answer is about, as the detection head found them in this image, for drawing: those counted, the one whose side, colour, shape or size was asked, those in the part of the image asked about. Only where the detection head agrees with the answer. A region citation: its own box. Absent when no detection backs the answer.",
      ),
    parentId: z
      .string()
      .optional()
      .describe(
        "Regions: the image or video segment the object is part of; its box is normalized to that image.",
      ),
  })
  .meta({ id: "Citation" });

/** What the detection head and the VQA head each answered, and whose answer stands. */
const headOpinionsSchema = z.object({
  detector: z.object({ answer: z.string(), probability: z.number() }),
  vqa: z.object({ answer: z.string(), probability: z.number() }),
  followed: z
    .enum(["detector", "vqa"])
    .describe("Whose answer stands: the detection head's when it is confident, else the VQA head's."),
});

const findingSchema = z.object({
  question: z.string(),
  answer: z.string(),
  probability: z.number(),
  alternatives: z.array(z.object({ answer: z.string(), probability: z.number() })),
  source: z
    .enum(["vqa", "triple", "detector"])
    .describe(
      "vqa: the VQA head; detector: read off the detection head's boxes (a count or side it is confident of, what is in a part of the image); triple: a stored triple's answer.",
    ),
  tripleId: z.string().optional(),
  disagreement: headOpinionsSchema
    .optional()
    .describe("Set when the detection head and the VQA head answered this count or side differently."),
});

const evidenceSchema = z.object({
  citation: citationSchema,
  attachment: z.boolean(),
  text: z.string().describe("The stored caption or description."),
  ocr: evidenceTextSchema
    .optional()
    .describe("Text read in the image (a segment's keyframe) by OCR, when it has any."),
  videoId: z.string().optional(),
  findings: z.array(findingSchema).describe("What the VQA head found on this evidence."),
  unchecked: z
    .boolean()
    .optional()
    .describe(
      "true: a retrieved image the turn's grounding budget (LOUPE_CHAT_GROUNDING_BUDGET_MS, LOUPE_CHAT_GROUNDING_MAX_IMAGES) left unchecked; evidence as retrieved, never cited.",
    ),
});

/** What the verify step found. */
export const verificationSchema = z.object({
  checked: z.number().int(),
  confirmed: z.number().int(),
  contradictions: z.array(
    z.object({
      claim: z.string(),
      evidenceId: z.string(),
      stated: z.string(),
      observed: z.string(),
      probability: z.number(),
    }),
  ),
  corrected: z.boolean(),
  disagreements: z
    .array(
      headOpinionsSchema.extend({
        question: z.string().describe("The canonical question both heads answered."),
        evidenceId: z.string(),
      }),
    )
    .optional()
    .describe(
      "Counts and sides the answer rests on where the detection head and the VQA head disagreed, with both answers and the one followed. Absent when they agreed.",
    ),
});

/** Set when the LLM failed and the offline composer answered instead. */
export const fallbackSchema = z.object({ reason: z.string(), code: z.string() });

/** Time spent in each step, in milliseconds. */
export const chatTimingsSchema = z.object({
  embed: z.number(),
  retrieve: z.number(),
  ground: z.number(),
  compose: z.number(),
  verify: z.number(),
  total: z.number(),
});

/** Body of a 200 from /v1/chat, and the data of its `done` event. */
export const chatResponseSchema = z
  .object({
    answer: z.string().describe("The answer, with citations written as [id]."),
    answered: z.boolean().describe("false when the corpus and the images do not answer the question."),
    confidence: z.number().describe("0–1: how far the evidence supports the answer."),
    citations: z.array(citationSchema).describe("Evidence the answer cites, in order of first citation."),
    evidence: z.array(evidenceSchema).describe("Every piece of evidence considered, with its grounding."),
    standaloneQuestion: z.string(),
    composer: z.enum(["llm", "offline"]),
    model: z.string(),
    fallback: fallbackSchema.optional(),
    verification: verificationSchema,
    timings: chatTimingsSchema,
    usage: z.object({ promptTokens: z.number(), completionTokens: z.number() }).optional(),
  })
  .meta({ id: "ChatResponse" });

/** Counts images and turns against the configured limits. */
export function checkChatLimits({
  turns,
  images,
  limits,
}: {
  turns: number;
  images: number;
  limits: Pick<ChatLimits, "chatMaxTurns" | "chatMaxImages">;
}): void {
  if (turns > limits.chatMaxTurns) {
    throw new ValidationError(
      `The conversation has ${turns} earlier turns; the limit is ${limits.chatMaxTurns} (LOUPE_CHAT_MAX_TURNS). Drop the oldest turns.`,
      { context: { turns, limit: limits.chatMaxTurns } },
    );
  }
  if (images > limits.chatMaxImages) {
    throw new ValidationError(
      `The conversation attaches ${images} images; the limit is ${limits.chatMaxImages} over all turns (LOUPE_CHAT_MAX_IMAGES).`,
      { context: { images, limit: limits.chatMaxImages } },
    );
  }
}

/** An image string of a chat request as bytes or a stored id (URLs are refused here). */
function chatImage(value: string, field: string, maxImageBytes: number): ImageQuery {
  const reference = parseImageReference({ value, field, maxBytes: maxImageBytes });
  if ("url" in reference) throw new Error("unreachable: URLs are refused when allowUrl is false");
  return reference;
}

/** An uploaded image file, checked against the image size limit. */
function uploadedImage(bytes: Uint8Array, name: string, maxImageBytes: number): ImageQuery {
  if (bytes.length === 0) throw new ValidationError(`The uploaded file ${JSON.stringify(name)} is empty.`);
  if (bytes.length > maxImageBytes) {
    throw new MediaError(
      `The uploaded file ${JSON.stringify(name)} is ${bytes.length} bytes; the limit is ${maxImageBytes} bytes (LOUPE_MAX_IMAGE_BYTES).`,
      { status: 413, code: "payload_too_large" },
    );
  }
  return { bytes };
}

const FORM_FIELDS_TEXT = "question, files (uploads), payload (JSON of the other fields), stream";

/** A text field of the multipart form, given once. */
const formText = (name: string) =>
  z.string({ error: `form field ${name} must be text, given once; upload images under the field "files"` });

/** The multipart form of POST /v1/chat. */
export const chatFormSchema = z.strictObject(
  {
    question: formText("question")
      .optional()
      .describe("The user's message of this turn (or inside payload)."),
    files: repeatable(
      uploadSchema("An image attached to this turn.", "files must be uploaded image files"),
      "files must be uploaded image files, one or more",
    )
      .optional()
      .describe("Images attached to this turn; repeat the field for more."),
    payload: formText("payload")
      .optional()
      .describe("The other fields of ChatRequest as one JSON object (history, filter, kinds, topK, …)."),
    stream: z
      .enum(["true", "false"], { error: "stream must be true or false" })
      .optional()
      .describe("true: answer server-sent events."),
  },
  {
    error: (issue) => {
      if (issue.code !== "unrecognized_keys") return undefined;
      const form = (issue.input ?? {}) as Record<string, unknown>;
      const [key = ""] = issue.keys;
      return asList(form[key]).some((value) => value instanceof File)
        ? `Uploaded file under ${JSON.stringify(key.slice(0, 80))}; upload images under the field "files"`
        : `Unknown form field ${JSON.stringify(key.slice(0, 80))}; allowed: ${FORM_FIELDS_TEXT}`;
    },
  },
);

/** The JSON shape of a multipart /v1/chat request, and its uploads. */
async function fromForm(
  form: z.output<typeof chatFormSchema>,
  maxImageBytes: number,
): Promise<{ fields: Record<string, unknown>; uploads: ImageQuery[] }> {
  const uploads: ImageQuery[] = [];
  for (const file of asList(form.files)) {
    uploads.push(uploadedImage(new Uint8Array(await file.arrayBuffer()), file.name, maxImageBytes));
  }
  let payload: unknown = {};
  if (form.payload !== undefined) {
    try {
      payload = JSON.parse(form.payload);
    } catch {
      throw new ValidationError(
        `Form field payload must be JSON; got ${JSON.stringify(form.payload.slice(0, 80))}.`,
      );
    }
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      throw new ValidationError("Form field payload must be a JSON object of the request's other fields.");
    }
  }
  const fields: Record<string, unknown> = { ...(payload as Record<string, unknown>) };
  if (form.question !== undefined) {
    if (fields.question !== undefined) {
      throw new ValidationError("question is given both as a form field and inside payload; send it once.");
    }
    fields.question = form.question;
  }
  if (form.stream !== undefined) fields.stream = form.stream === "true";
  return { fields, uploads };
}

/**
 * Checks a /v1/chat request, JSON (validated by the declaration) or multipart (its form validated by
 * the declaration, then turned into the JSON shape and validated with {@link chatRequestSchema}), into
 * the chain's {@link ChatRequest} (without tenant and signal) and whether it asks for a stream.
 */
export async function readChatRequest({
  json,
  form,
  limits,
}: {
  json?: z.output<typeof chatRequestSchema>;
  form?: z.output<typeof chatFormSchema>;
  limits: ChatLimits;
}): Promise<{ request: Omit<ChatRequest, "tenant" | "signal">; stream: boolean }> {
  let body: z.output<typeof chatRequestSchema>;
  let uploads: ImageQuery[] = [];
  if (form !== undefined) {
    const read = await fromForm(form, limits.maxImageBytes);
    body = parseRequest(chatRequestSchema, read.fields);
    uploads = read.uploads;
  } else if (json !== undefined) {
    body = json;
  } else {
    throw new Error("unreachable: a chat request is JSON or multipart");
  }
  const history = body.history ?? [];
  const imageCount =
    (body.images?.length ?? 0) +
    uploads.length +
    history.reduce((sum, turn) => sum + (turn.images?.length ?? 0), 0);
  checkChatLimits({ turns: history.length, images: imageCount, limits });
  const turns: ChatTurn[] = history.map((turn, index) => {
    if (turn.role === "assistant" && turn.images !== undefined && turn.images.length > 0) {
      throw new ValidationError(
        `history[${index}] is an assistant turn with images; only user turns carry attached images.`,
      );
    }
    return {
      role: turn.role,
      content: turn.content,
      ...(turn.images === undefined
        ? {}
        : {
            images: turn.images.map((value, imageIndex) =>
              chatImage(value, `history[${index}].images[${imageIndex}]`, limits.maxImageBytes),
            ),
          }),
      ...(turn.citations === undefined ? {} : { citations: turn.citations }),
    };
  });
  const images = [
    ...(body.images ?? []).map((value, index) => chatImage(value, `images[${index}]`, limits.maxImageBytes)),
    ...uploads,
  ];
  return {
    stream: body.stream === true,
    request: {
      question: body.question,
      ...(images.length > 0 ? { images } : {}),
      ...(turns.length > 0 ? { history: turns } : {}),
      ...(body.filter === undefined ? {} : { filter: body.filter }),
      ...(body.kinds === undefined ? {} : { kinds: body.kinds }),
      ...(body.topK === undefined ? {} : { topK: body.topK }),
      ...(body.composer === undefined ? {} : { composer: body.composer }),
      ...(body.temperature === undefined ? {} : { temperature: body.temperature }),
      ...(body.maxTokens === undefined ? {} : { maxTokens: body.maxTokens }),
    },
  };
}

/** A chain stream whose first event has arrived. */
export interface OpenedChatStream {
  /** The first event. */
  first: ChatEvent;
  /** The events after it. */
  rest: AsyncIterator<ChatEvent>;
  /** Aborts the turn (the client went away). */
  abort: () => void;
  /** Whether the turn was aborted. */
  readonly aborted: boolean;
}

/**
 * Starts a streamed turn and waits for its first event, so that a request the chain refuses (an
 * unknown item id, a bad filter, a missing model pack) is answered with its HTTP status and envelope
 * rather than as a 200 stream holding one error. The turn aborts when `signal` does.
 */
export async function openChatStream({
  chain,
  request,
  signal,
}: {
  chain: LoupeChain;
  request: ChatRequest;
  signal: AbortSignal;
}): Promise<OpenedChatStream> {
  const controller = new AbortController();
  const abort = () => controller.abort();
  if (signal.aborted) abort();
  else signal.addEventListener("abort", abort, { once: true });
  const iterator = chain.events({ ...request, signal: controller.signal })[Symbol.asyncIterator]();
  let first: IteratorResult<ChatEvent>;
  try {
    first = await iterator.next();
  } catch (error) {
    signal.removeEventListener("abort", abort);
    throw error;
  }
  if (first.done === true) {
    throw new Error("The chat chain's stream ended before its first event.");
  }
  return {
    first: first.value,
    rest: iterator,
    abort,
    get aborted() {
      return controller.signal.aborted;
    },
  };
}

/** The responses of the chat routes besides their 200. */
export const chatErrorResponses = {
  400: invalidRequestResponse,
  404: errorResponse("An attached item id is not one of the caller's items."),
  413: payloadTooLargeResponse(
    "the images allowed inline, LOUPE_MAX_UPLOAD_BYTES at most, and 1 MiB of text",
  ),
  ...imageInputResponses,
  503: notReadyResponse,
};

/** The /v1/chat route. */
export function createChatRoute({ chain, config }: { chain: LoupeChain; config: ChatLimits }) {
  const route = defineRoute(
    {
      method: "post",
      path: "/v1/chat",
      operationId: "chat",
      tags: ["chat"],
      summary: "Ask a question (grounded answer)",
      description:
        "Retrieves evidence from the caller's images, video segments and triples and the attached images, grounds it with the VQA head, and writes an answer that cites it as [id] (with the configured LLM, or offline). `stream: true` answers server-sent events: `retrieval`, `grounding`, `citation`…, `answer-delta`…, `done` with the ChatResponse; `answer-reset` when the LLM failed mid-answer (discard the deltas so far; the offline answer follows); `error` with the error envelope when the turn fails after the stream began. A failure before the first event is answered with its HTTP status. When the answer rests on the detection head's objects (a count, a side, a named object, \"what is in the top-left?\"), the image's citation carries their `boxes` (normalized to the image); `kinds` may list `region` to cite objects found at ingest with their box; `verification.disagreements` lists counts and sides on which the detection head and the VQA head disagreed.",
      middleware: [chatBodyLimit(config)],
      request: {
        body: {
          description:
            "JSON, or multipart with the question, uploads under `files`, and the rest as `payload`.",
          content: {
            "application/json": { schema: chatRequestSchema },
            "multipart/form-data": { schema: chatFormSchema },
          },
        },
      },
      responses: {
        200: {
          description:
            "The answer (application/json), or its named events (text/event-stream) when `stream` is true; the `done` event carries the ChatResponse.",
          content: {
            "application/json": { schema: chatResponseSchema },
            ...eventStreamContent,
          },
        },
        ...chatErrorResponses,
      },
    },
    { access: { scope: "read", cost: 5 } },
  );
  return createRouter().openapi(route, async (c) => {
    // The declaration types each body target as either content type; the content type tells which.
    const { request: fields, stream } = await readChatRequest({
      ...(isMultipart(c)
        ? { form: c.req.valid("form") as z.output<typeof chatFormSchema> }
        : { json: c.req.valid("json") as z.output<typeof chatRequestSchema> }),
      limits: config,
    });
    const request: ChatRequest = { ...fields, tenant: c.get("tenant") };
    if (!stream) {
      const result = await chain.invoke({ ...request, signal: c.req.raw.signal });
      return c.json(result, 200);
    }
    const opened = await openChatStream({ chain, request, signal: c.req.raw.signal });
    const requestId = c.get("requestId");
    const logger = c.get("logger");
    return sseResponse({
      requestId,
      logger,
      events: async function* (signal) {
        signal.addEventListener("abort", opened.abort, { once: true });
        let finished = false;
        try {
          yield { event: opened.first.type, data: opened.first.data };
          finished = opened.first.type === "done";
          while (!finished) {
            const next = await opened.rest.next();
            if (next.done === true) break;
            yield { event: next.value.type, data: next.value.data };
            finished = next.value.type === "done";
          }
          if (!finished) throw new Error("The chat chain's stream ended without a done event.");
        } catch (error) {
          if (opened.aborted) return;
          yield { event: "error", data: failureEnvelope({ error, requestId, logger }) };
        } finally {
          if (!finished) await opened.rest.return?.();
        }
      },
    });
  });
}
