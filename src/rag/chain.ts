/**
 * Loupe's retrieval chain, built from LangChain.js Runnables: understand the turn → embed the question
 * and the images → retrieve images, segments and triples in parallel and fuse them → ground with the
 * VQA head → compose (LLM when configured, offline otherwise, offline again when the LLM fails) →
 * verify the answer's visual claims. `invoke` returns the answer; `stream` yields the steps' events as
 * they happen; `runnable` is the same chain as a LangChain `Runnable` for library users.
 */
import { randomUUID } from "node:crypto";
import { dispatchCustomEvent } from "@langchain/core/callbacks/dispatch";
import { type RunnableConfig, RunnableLambda, RunnableSequence } from "@langchain/core/runnables";
import type { IterableReadableStream } from "@langchain/core/utils/stream";
import type { Config } from "../config.ts";
import { AppError, ValidationError } from "../errors.ts";
import {
  EMPTY_VOCABULARY,
  type ModelPack,
  type PackVocabulary,
  sniffImageFormat,
} from "../inference/index.ts";
import type { OcrEngine } from "../inference/ocr/ocr-engine.ts";
import type { Logger } from "../logger.ts";
import type { MediaReader, MediaUrls } from "../media/media-port.ts";
import type { ChainStep, LoupeMetrics } from "../metrics/metrics.ts";
import { type ImageQuery, resolveKinds, resolveTopK, type SearchService } from "../search/index.ts";
import {
  type FilterSpec,
  parseFilterSpec,
  type RecordKind,
  type StoredRecord,
  type VectorStore,
} from "../store/index.ts";
import {
  citationOf,
  DEFAULT_GROUNDING_SETTINGS,
  type GroundingSettings,
  groundEvidence,
  VisualCache,
} from "./ground.ts";
import { composeOffline, OFFLINE_MODEL_NAME, type OfflineAnswer } from "./offline-composer.ts";
import { AnswerGuard, neutralize, ownMediaUrlTest } from "./output-guard.ts";
import { attachText, readTurnText, TEXT_KINDS, textHitsFirst } from "./read-text.ts";
import { type QueryVector, type RetrievalResult, retrieveCandidates, type TextQuery } from "./retrieve.ts";
import type { TextQuestion } from "./text-question.ts";
import type {
  AnswerComposer,
  ChatEvent,
  ChatRequest,
  ChatResult,
  ChatTimings,
  Citation,
  ComposeOutput,
  Evidence,
  LoupeChain,
} from "./types.ts";
import { type UnderstoodTurn, understandTurn } from "./understand.ts";
import { answerDisagreements, extractClaims, verifyClaims } from "./verify.ts";

/** The model name that uses the configured LLM (or the offline composer when there is none). */
export const DEFAULT_MODEL_NAME = "loupe";
/** Longest question accepted, in characters. */
export const MAX_CHAT_QUESTION_LENGTH = 4000;
/** Longest earlier turn accepted, in characters. */
export const MAX_CHAT_TURN_LENGTH = 20_000;
/** Hits per retrieval list when the request names no `topK`. */
export const DEFAULT_CHAT_TOP_K = 10;

const DECLINE_PATTERN =
  /\b(does not answer|doesn't answer|cannot answer|can't answer|can not answer|no evidence|not enough evidence|unable to answer|do not know|don't know)\b/i;
/** A citation in an answer: `[id]` with a stored item's id (record ids allow `_.:-`) or `att_<n>`. */
const CITATION_MARK = /\[((?:img|seg|tri|reg)_[A-Za-z0-9_.:-]{1,60}|att_\d{1,3})\]/g;

/** Options of {@link createLoupeChain}. */
export interface LoupeChainOptions {
  search: Pick<SearchService, "embedText" | "imageBytes" | "getItem" | "logitScale">;
  store: Pick<VectorStore, "search" | "textSearch">;
  models: Pick<ModelPack, "modelId" | "imageEmbedder" | "textEmbedder" | "vqaHead" | "vocabulary"> &
    Partial<Pick<ModelPack, "detector">>;
  /**
   * The words questions and answers are read in; defaults to the pack's (`models.vocabulary`). Without
   * either, no question names anything the chain can read, and it answers from retrieval and the LLM.
   */
  vocabulary?: PackVocabulary;
  media: MediaReader;
  /** Where cited items' media is served (the HTTP layer's routes). */
  urls: MediaUrls;
  /** The LLM composer; without it the offline composer writes every answer. */
  llm?: AnswerComposer;
  /**
   * Reads the text in attached images that have no stored reading, for questions about text ("what does
   * the error say?"); without it such images have no text. Stored items are never read again: their
   * `metadata.ocr` is used.
   */
  ocr?: OcrEngine;
  logger: Logger;
  config: Pick<Config, "chatMaxTurns" | "chatMaxImages" | "maxImagePixels"> &
    Partial<Pick<Config, "chatGroundingBudgetMs" | "chatGroundingMaxImages">>;
  /** Grounding settings over the defaults and the configured budget. */
  grounding?: Partial<GroundingSettings>;
  /** Where each step's time and each fallback from the LLM are reported; nowhere when absent. */
  metrics?: Pick<LoupeMetrics, "observeChainStep" | "countLlmFallback">;
}

/** The grounding cap of a turn from the settings: at most K images checked, and M ms spent. */
export function groundingCap(
  config: Partial<Pick<Config, "chatGroundingBudgetMs" | "chatGroundingMaxImages">>,
): Partial<GroundingSettings> {
  const cap: Partial<GroundingSettings> = {};
  if (config.chatGroundingBudgetMs !== undefined) cap.budgetMs = config.chatGroundingBudgetMs;
  const most = config.chatGroundingMaxImages;
  if (most !== undefined) {
    cap.imagesToGround = Math.min(DEFAULT_GROUNDING_SETTINGS.imagesToGround, most);
    cap.imagesForImageQuestions = Math.min(DEFAULT_GROUNDING_SETTINGS.imagesForImageQuestions, most);
    cap.imagesToRead = Math.min(DEFAULT_GROUNDING_SETTINGS.imagesToRead, most);
  }
  return cap;
}

/**
 * The chain as built: a LangChain `RunnableSequence` (`ChatRequest` in, `ChatResult` out; its steps are
 * named `prepare`, `understand`, `embed`, `retrieve`, `ground`, `compose`, `verify`, `answer`) whose steps
 * report progress with `dispatchCustomEvent`, so `invoke`, `stream`, `streamEvents` and callbacks work as
 * for any Runnable; plus {@link LoupeChain.events}, the same events as Loupe's routes send them.
 */
export type LoupeChainRunnable = RunnableSequence<ChatRequest, ChatResult> & LoupeChain;

/** The run name of the whole chain in LangChain's callbacks and event streams. */
export const CHAIN_RUN_NAME = "loupe-chain";

interface TurnState {
  request: ChatRequest;
  started: number;
  timings: ChatTimings;
  cache: VisualCache;
  kinds: RecordKind[];
  topK: number;
  filter?: FilterSpec;
  turn?: UnderstoodTurn;
  queries?: QueryVector[];
  namedRecords?: Map<string, StoredRecord>;
  retrieval?: RetrievalResult;
  evidence?: Evidence[];
  offline?: OfflineAnswer;
  composed?: ComposeOutput & { composer: "llm" | "offline"; fallback?: { reason: string; code: string } };
  result?: ChatResult;
}

const elapsed = (since: number) => Math.round((performance.now() - since) * 10) / 10;

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw new AppError("request_aborted", 499, "The client went away; the chat turn was stopped.");
}

/** Checks a request's sizes and shapes before any work, with messages that name the limit. */
export function validateChatRequest(
  request: ChatRequest,
  limits: Pick<Config, "chatMaxTurns" | "chatMaxImages">,
): { kinds: RecordKind[]; topK: number; filter?: FilterSpec } {
  const question = request.question?.trim() ?? "";
  if (question.length === 0)
    throw new ValidationError("The question is empty; send the text of the question.");
  if (question.length > MAX_CHAT_QUESTION_LENGTH) {
    throw new ValidationError(
      `The question is ${question.length} characters long; the limit is ${MAX_CHAT_QUESTION_LENGTH}.`,
    );
  }
  const history = request.history ?? [];
  if (history.length > limits.chatMaxTurns) {
    throw new ValidationError(
      `The conversation carries ${history.length} earlier turns; the limit is ${limits.chatMaxTurns} (LOUPE_CHAT_MAX_TURNS). Drop the oldest turns.`,
    );
  }
  for (const [index, turn] of history.entries()) {
    if (turn.content.length > MAX_CHAT_TURN_LENGTH) {
      throw new ValidationError(
        `Earlier turn ${index + 1} is ${turn.content.length} characters long; the limit is ${MAX_CHAT_TURN_LENGTH}.`,
      );
    }
  }
  const imageCount =
    (request.images?.length ?? 0) + history.reduce((sum, turn) => sum + (turn.images?.length ?? 0), 0);
  if (imageCount > limits.chatMaxImages) {
    throw new ValidationError(
      `The conversation carries ${imageCount} images; the limit is ${limits.chatMaxImages} (LOUPE_CHAT_MAX_IMAGES).`,
    );
  }
  const filter = request.filter === undefined ? undefined : parseFilterSpec(request.filter);
  return {
    // A chat turn cites whole items unless `kinds` lists `region`: then the objects found at ingest are
    // retrieved too, each cited with its box.
    kinds: resolveKinds(request.kinds),
    topK: request.topK === undefined ? DEFAULT_CHAT_TOP_K : resolveTopK(request.topK),
    ...(filter === undefined ? {} : { filter }),
  };
}

/** The evidence ids an answer cites, in order of first citation (the chain's answers and earlier turns alike). */
export function citedIds(text: string): string[] {
  return [...new Set([...text.matchAll(CITATION_MARK)].map((match) => match[1] as string))];
}

/** Splits text into deltas of about a sentence, so the offline answer streams like a model's; they add up to `text`. */
function deltasOf(text: string): string[] {
  const deltas = text.match(/[^.!?]*[.!?]+\s*|[^.!?]+/g) ?? [];
  return deltas.join("") === text ? deltas : [text];
}

/** Builds the chain once; it is stateless across turns and safe to call concurrently. */
export function createLoupeChain({
  search,
  store,
  models,
  media,
  urls,
  llm,
  ocr,
  logger,
  config,
  grounding = {},
  vocabulary,
  metrics,
}: LoupeChainOptions): LoupeChainRunnable {
  const groundingSettings = { ...DEFAULT_GROUNDING_SETTINGS, ...groundingCap(config), ...grounding };
  // Every answer path goes through the same neutralizer; links to Loupe's own media stay links.
  const isOwnUrl = ownMediaUrlTest(urls);
  // Read per turn, not here: a pack that failed to load answers every read with its error.
  const turnVocabulary = () => vocabulary ?? models.vocabulary ?? EMPTY_VOCABULARY;
  const step = (runName: ChainStep, body: StepBody) => chainStep(runName, body, metrics);

  const understand = step("understand", async (state) => {
    const { request } = state;
    const turn = understandTurn({
      question: request.question,
      images: request.images ?? [],
      history: request.history ?? [],
      vocabulary: turnVocabulary(),
    });
    return { ...state, turn };
  });

  const embed = step("embed", async (state) => {
    const started = performance.now();
    const { request, cache } = state;
    const turn = state.turn as UnderstoodTurn;
    checkAborted(request.signal);
    const namedRecords = new Map<string, StoredRecord>();
    await Promise.all(
      turn.images.map(async (turnImage) => {
        const image: ImageQuery = turnImage.image;
        if ("id" in image)
          namedRecords.set(image.id, await search.getItem({ tenant: request.tenant, id: image.id }));
        cache.register(turnImage.evidenceId, () => search.imageBytes({ tenant: request.tenant, image }));
      }),
    );
    const [textVector] = await Promise.all([
      search.embedText(turn.retrievalText),
      cache.encodeMany(turn.images.map((image) => image.evidenceId)),
    ]);
    const queries: QueryVector[] = [{ name: "text", vector: textVector, modality: "text" }];
    for (const turnImage of turn.images) {
      queries.push({
        name: turnImage.evidenceId,
        vector: (await cache.encoded(turnImage.evidenceId)).embedding,
        modality: "image",
      });
    }
    state.timings.embed = elapsed(started);
    return { ...state, queries, namedRecords };
  });

  const retrieve = step("retrieve", async (state, emit) => {
    const started = performance.now();
    const { request } = state;
    const turn = state.turn as UnderstoodTurn;
    checkAborted(request.signal);
    // A question about the text of stored items also searches their text (BM25), codes and quoted
    // phrases as phrases; one about the text of the turn's own images needs no text search.
    const text = turn.textQuestion;
    const searchText = text !== undefined && (text.corpusScope || turn.images.length === 0);
    const retrieval = await retrieveCandidates({
      store,
      tenant: request.tenant,
      queries: state.queries ?? [],
      kinds: state.kinds,
      topK: state.topK,
      ...(state.filter === undefined ? {} : { filter: state.filter }),
      videoIds: turn.intent.ids.filter((id) => id.startsWith("vid_")),
      ...(searchText ? { textQuery: textQueryOf(text) } : {}),
    });
    state.timings.retrieve = elapsed(started);
    emit({
      type: "retrieval",
      data: {
        standaloneQuestion: turn.standaloneQuestion,
        items: retrieval.fused
          .slice(0, groundingSettings.maxEvidence)
          .map((item) => citationOf(item.value, item.bestScore, urls)),
        ms: state.timings.retrieve,
      },
    });
    return { ...state, retrieval };
  });

  const ground = step("ground", async (state, emit) => {
    const started = performance.now();
    const turn = state.turn as UnderstoodTurn;
    const retrieval = state.retrieval as RetrievalResult;
    checkAborted(state.request.signal);
    const namedRecords = state.namedRecords ?? new Map<string, StoredRecord>();
    const text = turn.textQuestion;
    // A question about text is answered from the images' text, not by the VQA head.
    const [grounded, readings] = await Promise.all([
      groundEvidence({
        models,
        media,
        urls,
        cache: state.cache,
        intent: text === undefined ? turn.intent : { ...turn.intent, type: "unknown", objects: [] },
        vocabulary: turnVocabulary(),
        standaloneQuestion: turn.standaloneQuestion,
        images: turn.images,
        candidates: text === undefined ? retrieval.fused : textHitsFirst(retrieval),
        lists: retrieval.lists,
        namedRecords,
        inspectCandidates: llm !== undefined && state.request.composer !== "offline",
        logitScale: await search.logitScale(),
        settings: groundingSettings,
      }),
      text === undefined
        ? new Map()
        : readTurnText({
            ocr,
            images: turn.images,
            cache: state.cache,
            namedRecords,
            most: groundingSettings.imagesToRead,
            ...(state.request.signal === undefined ? {} : { signal: state.request.signal }),
            logger,
          }),
    ]);
    const records = new Map<string, StoredRecord>(namedRecords);
    for (const item of retrieval.fused) records.set(item.id, item.value);
    const evidence = attachText({
      evidence: grounded,
      records,
      readings,
      ...(text === undefined ? {} : { textQuestion: text }),
      turnImageIds: turn.images.map((image) => image.evidenceId),
    });
    state.timings.ground = elapsed(started);
    emit({
      type: "grounding",
      data: {
        findings: evidence.flatMap((entry) =>
          entry.findings.map((finding) => ({ evidenceId: entry.citation.id, ...finding })),
        ),
        ms: state.timings.ground,
      },
    });
    return { ...state, evidence };
  });

  const compose = step("compose", async (state, emit) => {
    const started = performance.now();
    const { request } = state;
    const turn = state.turn as UnderstoodTurn;
    const evidence = state.evidence ?? [];
    checkAborted(request.signal);
    const offline = composeOffline({
      intent: turn.intent,
      standaloneQuestion: turn.standaloneQuestion,
      evidence,
      turnImageIds: turn.images.map((image) => image.evidenceId),
      ...(turn.textQuestion === undefined ? {} : { textQuestion: turn.textQuestion }),
      canGround: models.vqaHead !== undefined,
    });
    const byId = new Map(evidence.map((entry) => [entry.citation.id, entry.citation]));
    const emitted = new Set<string>();
    const emitCitations = (text: string) => {
      for (const id of citedIds(text)) {
        const citation = byId.get(id);
        if (citation === undefined || emitted.has(id)) continue;
        emitted.add(id);
        emit({ type: "citation", data: citation });
      }
    };

    const writeOffline = (fallback?: { reason: string; code: string }) => {
      // The offline answer repeats stored text (a triple's answer) and the question: untrusted both.
      const text = neutralize(offline.text, { isOwnUrl });
      emitCitations(text);
      for (const delta of deltasOf(text)) emit({ type: "answer-delta", data: { text: delta } });
      return {
        text,
        model: OFFLINE_MODEL_NAME,
        composer: "offline" as const,
        ...(fallback === undefined ? {} : { fallback }),
      };
    };

    let composed: NonNullable<TurnState["composed"]>;
    if (llm === undefined || request.composer === "offline") {
      composed = writeOffline();
    } else {
      let streamed = "";
      const guard = new AnswerGuard({ isOwnUrl });
      const relay = (text: string) => {
        if (text.length === 0) return;
        streamed += text;
        emitCitations(streamed);
        emit({ type: "answer-delta", data: { text } });
      };
      try {
        const images = await imagesForLlm({ llm, state, evidence });
        const output = await llm.compose(
          {
            question: request.question,
            standaloneQuestion: turn.standaloneQuestion,
            history: request.history ?? [],
            evidence,
            images,
            ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
            ...(request.maxTokens === undefined ? {} : { maxTokens: request.maxTokens }),
            ...(request.signal === undefined ? {} : { signal: request.signal }),
          },
          (text) => relay(guard.push(text)),
        );
        relay(guard.flush());
        if (streamed.length === 0) {
          relay(guard.push(output.text));
          relay(guard.flush());
        }
        // The answer is what was streamed, neutralised the same way.
        composed = { ...output, text: streamed, composer: "llm" };
      } catch (error) {
        checkAborted(request.signal);
        const code = error instanceof AppError ? error.code : "llm_failed";
        const reason = error instanceof Error ? error.message : String(error);
        logger.warn({ err: error }, "LLM composer failed; answering with the offline composer");
        metrics?.countLlmFallback(code);
        if (streamed.length > 0) {
          emit({ type: "answer-reset", data: { reason } });
        }
        composed = writeOffline({ reason, code });
      }
    }
    state.timings.compose = elapsed(started);
    return { ...state, offline, composed };
  });

  const verify = step("verify", async (state, emit) => {
    const started = performance.now();
    const turn = state.turn as UnderstoodTurn;
    const composed = state.composed as NonNullable<TurnState["composed"]>;
    const offline = state.offline as OfflineAnswer;
    const evidence = state.evidence ?? [];
    const turnImageIds = turn.images.map((image) => image.evidenceId);
    // An answer about text quotes what images say, which is no visual claim for the VQA head to judge.
    const claims =
      turn.textQuestion === undefined
        ? extractClaims({
            answer: composed.text,
            defaultEvidenceIds: turnImageIds.length === 1 ? turnImageIds : [],
            vocabulary: turnVocabulary(),
          })
        : [];
    const checked = await verifyClaims({ claims, cache: state.cache });
    let text = composed.text;
    if (checked.note.length > 0) {
      // The note quotes the answer's words; it is neutralized like the answer it follows.
      const addition = neutralize(`\n\n${checked.note}`, { isOwnUrl });
      text += addition;
      emit({ type: "answer-delta", data: { text: addition } });
    }
    state.timings.verify = elapsed(started);

    const answered =
      composed.composer === "llm"
        ? offline.answered && !DECLINE_PATTERN.test(composed.text)
        : offline.answered;
    let confidence = answered ? offline.confidence : 0;
    if (checked.verification.contradictions.length > 0) {
      confidence = Math.min(confidence, Math.round((1 - checked.strongestContradiction) * 1000) / 1000);
    }
    const byId = new Map(evidence.map((entry) => [entry.citation.id, entry.citation]));
    const cited = citedIds(text);
    const citations = cited
      .map((id) => byId.get(id))
      .filter((citation): citation is Citation => citation !== undefined);
    const verification = answerDisagreements({
      verification: checked.verification,
      evidence,
      citedIds: cited,
    });
    state.timings.total = elapsed(state.started);
    const result: ChatResult = {
      answer: text,
      answered,
      confidence,
      citations,
      evidence,
      standaloneQuestion: turn.standaloneQuestion,
      composer: composed.composer,
      model: composed.model,
      ...(composed.fallback === undefined ? {} : { fallback: composed.fallback }),
      verification,
      timings: state.timings,
      ...(composed.usage === undefined ? {} : { usage: composed.usage }),
    };
    return { ...state, result };
  });

  // The request is checked before any work, with messages that name the limit.
  const prepare = RunnableLambda.from((request: ChatRequest): TurnState => {
    const { kinds, topK, filter } = validateChatRequest(request, config);
    return {
      request,
      started: performance.now(),
      timings: { embed: 0, retrieve: 0, ground: 0, compose: 0, verify: 0, total: 0 },
      cache: new VisualCache({ models, maxImagePixels: config.maxImagePixels }),
      kinds,
      topK,
      ...(filter === undefined ? {} : { filter }),
    };
  }).withConfig({ runName: "prepare" });

  const answer = RunnableLambda.from((state: TurnState): ChatResult => {
    if (state.result === undefined) throw new Error("unreachable: the chain ended without a result");
    return state.result;
  }).withConfig({ runName: "answer" });

  const sequence = new LoupeChainSequence({
    first: prepare,
    middle: [understand, embed, retrieve, ground, compose, verify],
    last: answer,
    name: CHAIN_RUN_NAME,
  });

  /** The turn's events, read off LangChain's event stream: the steps' custom events, then `done`. */
  async function* events(request: ChatRequest): AsyncGenerator<ChatEvent> {
    const rootRunId = randomUUID();
    const stream = sequence.streamEvents(request, {
      version: "v2",
      runId: rootRunId,
      ...(request.signal === undefined ? {} : { signal: request.signal }),
    });
    for await (const event of stream) {
      if (event.event === "on_custom_event" && isChatEventType(event.name)) {
        yield { type: event.name, data: event.data } as ChatEvent;
      } else if (event.event === "on_chain_end" && event.run_id === rootRunId) {
        yield { type: "done", data: event.data.output as ChatResult };
      }
    }
  }

  return Object.assign(sequence, {
    modelNames: [DEFAULT_MODEL_NAME, OFFLINE_MODEL_NAME] as const,
    events,
  });
}

/**
 * The chain's sequence. LangChain names a sequence's own run after its class unless the call says
 * otherwise, so `invoke` and `stream` (and through it `streamEvents`) default the run name to
 * {@link CHAIN_RUN_NAME}: callbacks and event streams show the chain as `loupe-chain`.
 */
class LoupeChainSequence extends RunnableSequence<ChatRequest, ChatResult> {
  override invoke(input: ChatRequest, options?: Partial<RunnableConfig>): Promise<ChatResult> {
    return super.invoke(input, { runName: CHAIN_RUN_NAME, ...options });
  }

  override stream(
    input: ChatRequest,
    options?: Partial<RunnableConfig>,
  ): Promise<IterableReadableStream<ChatResult>> {
    return super.stream(input, { runName: CHAIN_RUN_NAME, ...options });
  }
}

/** The events the steps dispatch, by name (`done` is the chain's own end). */
const STEP_EVENT_TYPES = new Set<string>([
  "retrieval",
  "grounding",
  "citation",
  "answer-delta",
  "answer-reset",
]);

function isChatEventType(name: string): name is Exclude<ChatEvent["type"], "done"> {
  return STEP_EVENT_TYPES.has(name);
}

/** Sends one of the turn's events through LangChain's callbacks, as a custom event named after its type. */
type Emit = (event: Exclude<ChatEvent, { type: "done" }>) => void;

/** What one step of the chain does with the turn's state. */
type StepBody = (state: TurnState, emit: Emit) => Promise<TurnState>;

/**
 * One step of the chain: a named `RunnableLambda` whose events go out with `dispatchCustomEvent`, in the
 * order they are emitted, and have all been delivered when the step ends. Its time, failed or not, is
 * reported to `metrics` (the response's `timings` carry the same spans for one turn).
 */
function chainStep(
  runName: ChainStep,
  body: StepBody,
  metrics: Pick<LoupeMetrics, "observeChainStep"> | undefined,
): RunnableLambda<TurnState, TurnState> {
  return RunnableLambda.from(async (state: TurnState, config?: RunnableConfig): Promise<TurnState> => {
    let delivered: Promise<void> = Promise.resolve();
    const emit: Emit = (event) => {
      delivered = delivered.then(() => dispatchCustomEvent(event.type, event.data, config));
    };
    const started = performance.now();
    try {
      return await body(state, emit);
    } finally {
      metrics?.observeChainStep(runName, (performance.now() - started) / 1000);
      await delivered;
    }
  }).withConfig({ runName }) as RunnableLambda<TurnState, TurnState>;
}

/**
 * The BM25 search of a question about stored text: its codes and quoted phrases as phrases every hit
 * must hold; with codes, also a search without them whose text has the codes' parts (`ERR AUTH FAILED
 * 52`), which finds an item whose text OCR read with the code spaced or split.
 */
export function textQueryOf(question: TextQuestion): TextQuery {
  const parts = question.codes.flatMap((code) => code.split(/[_\-.:/]+/).filter((part) => part.length > 0));
  return {
    text: question.searchText,
    phrases: [...question.codes, ...question.phrases],
    kinds: TEXT_KINDS,
    ...(question.codes.length === 0
      ? {}
      : { loose: { text: [question.searchText, ...parts].join(" "), phrases: question.phrases } }),
  };
}

/** Images a vision-capable LLM gets: the turn's images, then the top retrieved images. */
async function imagesForLlm({
  llm,
  state,
  evidence,
}: {
  llm: AnswerComposer;
  state: TurnState;
  evidence: readonly Evidence[];
}): Promise<Array<{ evidenceId: string; bytes: Uint8Array; contentType: string }>> {
  if (!llm.vision) return [];
  const ids = evidence
    .filter((entry) => entry.citation.kind === "image" && state.cache.has(entry.citation.id))
    .slice(0, 4)
    .map((entry) => entry.citation.id);
  return Promise.all(
    ids.map(async (evidenceId) => {
      const bytes = await state.cache.bytes(evidenceId);
      return { evidenceId, bytes, contentType: sniffContentType(bytes) };
    }),
  );
}

function sniffContentType(bytes: Uint8Array): string {
  const format = sniffImageFormat(bytes);
  return format === undefined ? "application/octet-stream" : `image/${format}`;
}
