/**
 * The LLM composer: writes the answer to a chat turn with the configured chat model, from the `answer`
 * prompt filled with the question, the recent conversation and the evidence (ids, kinds, scores,
 * segment times, triples, stored captions, the lines of text read in images with their boxes and the
 * VQA findings with their probabilities), plus the evidence images for vision models. It streams the
 * answer's deltas as they arrive.
 *
 * Everything that comes from the corpus (captions, triples, text read in images) is hostile: it is
 * rendered inside one `<untrusted-data>` block, with control and invisible characters removed, `<` `>`
 * replaced so that no tag can be closed or forged, every string quoted and capped in length. The system prompt tells the
 * model that the block is data, never instructions. The question and the history come from the caller
 * and get the same cleaning, outside the block.
 */
import { ConfigError, LlmError } from "../errors.ts";
import type { ChatContentPart, ChatMessage, ChatModel } from "../llm/chat-model.ts";
import { type PromptSet, type PromptTemplate, renderPrompt } from "../llm/prompts.ts";
import type { Logger } from "../logger.ts";
import type { AnswerComposer, ChatTurn, ComposeInput, ComposeOutput, Evidence, Finding } from "./types.ts";

/** Id of the prompt the composer uses (`prompts/answer.v<n>.md`). */
export const ANSWER_PROMPT_ID = "answer";
/** The variables the composer fills in the answer prompt; `loadPrompts` checks every version declares exactly these. */
export const ANSWER_PROMPT_VARIABLES = ["question", "history", "evidence"] as const;

/** Opening and closing delimiters of the untrusted-data block; the prompt's system section names them. */
export const UNTRUSTED_OPEN = "<untrusted-data>";
export const UNTRUSTED_CLOSE = "</untrusted-data>";

/** How much of each field reaches the prompt. Long stored text costs tokens and widens injection room. */
export interface PromptLimits {
  /** Pieces of evidence rendered, most relevant first. */
  maxEvidence: number;
  /** Characters of a stored caption or description. */
  maxTextChars: number;
  /** Characters of a question (triple, finding, the user's). */
  maxQuestionChars: number;
  /** Characters of an answer (triple, finding, alternative). */
  maxAnswerChars: number;
  /** Findings per piece of evidence. */
  maxFindings: number;
  /** Alternatives per finding. */
  maxAlternatives: number;
  /** Earlier turns kept, the most recent ones. */
  maxHistoryTurns: number;
  /** Characters of one earlier turn. */
  maxTurnChars: number;
  /** Bytes of one image sent to a vision model. */
  maxImageBytes: number;
  /** Lines of text read in one image (OCR); the lines that answer the question are always among them. */
  maxOcrLines: number;
  /** Characters of one such line. */
  maxOcrLineChars: number;
  /** Characters of all the lines of one image together. */
  maxOcrChars: number;
}

/** The limits used unless {@link CreateLlmComposerOptions.limits} overrides some. */
export const DEFAULT_PROMPT_LIMITS: PromptLimits = {
  maxEvidence: 24,
  maxTextChars: 600,
  maxQuestionChars: 400,
  maxAnswerChars: 120,
  maxFindings: 4,
  maxAlternatives: 3,
  maxHistoryTurns: 6,
  maxTurnChars: 800,
  maxImageBytes: 8 * 1024 * 1024,
  maxOcrLines: 24,
  maxOcrLineChars: 200,
  maxOcrChars: 1500,
};

/** Image types every vision endpoint accepts as data URLs. */
const imageContentTypes = new Set(["image/png", "image/jpeg", "image/webp", "image/gif"]);

/** Options of {@link createLlmComposer}. */
export interface CreateLlmComposerOptions {
  chatModel: ChatModel;
  /** Loaded prompts; the highest version of `answer` is used. */
  prompts: PromptSet;
  /** Whether the model accepts images (`LOUPE_LLM_VISION`): evidence images are then sent as image parts. */
  vision?: boolean;
  logger?: Logger;
  limits?: Partial<PromptLimits>;
}

/**
 * Builds the LLM {@link AnswerComposer}.
 *
 * @throws {ConfigError} when the prompts have no `answer` prompt or it declares other variables.
 */
export function createLlmComposer({
  chatModel,
  prompts,
  vision = false,
  logger,
  limits: limitOverrides = {},
}: CreateLlmComposerOptions): AnswerComposer {
  const prompt = prompts.get(ANSWER_PROMPT_ID);
  checkAnswerPrompt(prompt);
  const limits = { ...DEFAULT_PROMPT_LIMITS, ...limitOverrides };

  return {
    kind: "llm",
    model: chatModel.model,
    vision,
    async compose(input: ComposeInput, onDelta: (text: string) => void): Promise<ComposeOutput> {
      const { messages, skippedImages } = buildAnswerMessages({ input, prompt, vision, limits });
      for (const skipped of skippedImages) {
        logger?.warn(skipped, "evidence image not sent to the LLM");
      }
      const started = performance.now();
      const result = await chatModel.complete({
        messages,
        temperature: input.temperature,
        maxTokens: input.maxTokens,
        signal: input.signal,
        onDelta,
      });
      if (result.text.trim() === "") {
        throw new LlmError(
          `The LLM endpoint ${chatModel.endpoint} returned an empty answer (finish_reason ${result.finishReason}). Check model "${chatModel.model}" and LOUPE_LLM_MAX_TOKENS.`,
          { code: "llm_bad_response", context: { endpoint: chatModel.endpoint, model: chatModel.model } },
        );
      }
      logger?.info(
        {
          model: result.model,
          prompt: `${prompt.id}.v${prompt.version}`,
          evidence: input.evidence.length,
          usage: result.usage,
          finishReason: result.finishReason,
          attempts: result.attempts,
          ms: Math.round(performance.now() - started),
        },
        result.finishReason === "length" ? "LLM answer cut at the token limit" : "LLM answer composed",
      );
      return { text: result.text, model: result.model, usage: result.usage };
    },
  };
}

/** Options of {@link buildAnswerMessages}. */
export interface BuildAnswerMessagesOptions {
  input: ComposeInput;
  prompt: PromptTemplate;
  vision: boolean;
  limits?: PromptLimits;
}

/**
 * The messages the composer sends: the prompt's system section, then one user message with the filled
 * user section and, for vision models, each evidence image preceded by a line naming its id.
 */
export function buildAnswerMessages({
  input,
  prompt,
  vision,
  limits = DEFAULT_PROMPT_LIMITS,
}: BuildAnswerMessagesOptions): {
  messages: ChatMessage[];
  /** Images left out, with why (type or size). */
  skippedImages: Array<{ evidenceId: string; contentType: string; bytes: number; reason: string }>;
} {
  const { system, user } = renderPrompt({
    prompt,
    values: {
      question: renderQuestion({ input, limits }),
      history: renderHistory({ history: input.history, limits }),
      evidence: renderEvidence({ evidence: input.evidence, limits }),
    },
  });
  const skippedImages: Array<{ evidenceId: string; contentType: string; bytes: number; reason: string }> = [];
  const imageParts: ChatContentPart[] = [];
  if (vision) {
    for (const image of input.images) {
      const contentType = image.contentType.toLowerCase();
      const skip = { evidenceId: image.evidenceId, contentType, bytes: image.bytes.byteLength };
      if (!imageContentTypes.has(contentType)) {
        skippedImages.push({ ...skip, reason: `type not in ${[...imageContentTypes].join(", ")}` });
        continue;
      }
      if (image.bytes.byteLength > limits.maxImageBytes) {
        skippedImages.push({ ...skip, reason: `larger than ${limits.maxImageBytes} bytes` });
        continue;
      }
      imageParts.push(
        { type: "text", text: `Image [${safeId(image.evidenceId)}] (untrusted data, like the block above):` },
        { type: "image", url: `data:${contentType};base64,${Buffer.from(image.bytes).toString("base64")}` },
      );
    }
  }
  const userMessage: ChatMessage =
    imageParts.length === 0
      ? { role: "user", content: user }
      : { role: "user", content: [{ type: "text", text: user }, ...imageParts] };
  return { messages: [{ role: "system", content: system }, userMessage], skippedImages };
}

/**
 * Renders the evidence as the untrusted-data block: one entry per piece of evidence, its id first in
 * square brackets (the form the model cites), then its kind, score, time span, stored text, triple and
 * findings. Every string is cleaned with {@link untrustedString}.
 */
export function renderEvidence({
  evidence,
  limits = DEFAULT_PROMPT_LIMITS,
}: {
  evidence: readonly Evidence[];
  limits?: PromptLimits;
}): string {
  const lines: string[] = [UNTRUSTED_OPEN];
  if (evidence.length === 0) lines.push("(no evidence was found for this question)");
  for (const item of evidence.slice(0, limits.maxEvidence)) {
    const { citation } = item;
    const head = [`[${safeId(citation.id)}]`, kindLabel(item)];
    if (citation.start !== null && citation.end !== null) {
      head.push(`${formatSeconds(citation.start)}–${formatSeconds(citation.end)} s`);
    }
    if (item.videoId !== undefined) head.push(`of video ${safeId(item.videoId)}`);
    // A region is an object in another item: the answer may cite either.
    if (citation.parentId !== undefined) head.push(`an object in ${safeId(citation.parentId)}`);
    head.push(`score ${citation.score.toFixed(2)}`);
    lines.push(head.join(" · "));
    if (citation.question !== null || citation.answer !== null) {
      lines.push(
        `  stored question: ${untrustedString(citation.question ?? "", limits.maxQuestionChars)}; stored answer: ${untrustedString(citation.answer ?? "", limits.maxAnswerChars)}`,
      );
    }
    if (item.text.trim() !== "")
      lines.push(`  stored text: ${untrustedString(item.text, limits.maxTextChars)}`);
    lines.push(...renderOcr({ item, limits }));
    for (const finding of item.findings.slice(0, limits.maxFindings)) {
      lines.push(`  ${renderFinding({ finding, limits })}`);
    }
  }
  if (evidence.length > limits.maxEvidence) {
    lines.push(`(${evidence.length - limits.maxEvidence} less relevant pieces of evidence left out)`);
  }
  lines.push(UNTRUSTED_CLOSE);
  return lines.join("\n");
}

/**
 * The text read in an evidence image, one line per OCR line in reading order with its box, the lines that
 * answer the question marked; at most {@link PromptLimits.maxOcrLines} lines and
 * {@link PromptLimits.maxOcrChars} characters, the answering lines kept first. Each line is cleaned with
 * {@link untrustedString}: a screenshot can say anything, instructions included.
 */
function renderOcr({ item, limits }: { item: Evidence; limits: PromptLimits }): string[] {
  const reading = item.ocr;
  if (reading === undefined || reading.lines.length === 0) return [];
  const answering = new Set((item.citation.lines ?? []).map((line) => line.line));
  const indexes = reading.lines.map((_, index) => index);
  const order = [
    ...indexes.filter((index) => answering.has(index)),
    ...indexes.filter((index) => !answering.has(index)),
  ];
  const chosen = new Set<number>();
  let chars = 0;
  for (const index of order) {
    if (chosen.size >= limits.maxOcrLines) break;
    const length = Math.min(reading.lines[index]?.text.length ?? 0, limits.maxOcrLineChars);
    if (chosen.size > 0 && chars + length > limits.maxOcrChars) break;
    chosen.add(index);
    chars += length;
  }
  const rendered = indexes
    .filter((index) => chosen.has(index))
    .map((index) => {
      const line = reading.lines[index] as (typeof reading.lines)[number];
      const box = line.box.map((value) => Math.round(value)).join(", ");
      const mark = answering.has(index) ? " (answers the question)" : "";
      return `    ${untrustedString(line.text, limits.maxOcrLineChars)} at [${box}] p=${formatProbability(line.confidence)}${mark}`;
    });
  const left = reading.lines.length - chosen.size;
  return [
    `  text read in the image (OCR, ${reading.lines.length} lines; box = [x, y, width, height] in pixels):`,
    ...rendered,
    ...(left > 0 || reading.truncated === true
      ? [`    (${left > 0 ? `${left} more lines left out` : "the reader stopped at its limit"})`]
      : []),
  ];
}

/** Earlier turns, oldest first, the most recent {@link PromptLimits.maxHistoryTurns} of them. */
export function renderHistory({
  history,
  limits = DEFAULT_PROMPT_LIMITS,
}: {
  history: readonly ChatTurn[];
  limits?: PromptLimits;
}): string {
  if (history.length === 0) return "(no earlier turns)";
  const kept = history.slice(-limits.maxHistoryTurns);
  const lines = kept.map((turn) => {
    const role = turn.role === "assistant" ? "Assistant" : "User";
    const cited =
      turn.citations !== undefined && turn.citations.length > 0
        ? ` (cited ${turn.citations.slice(0, 12).map(safeId).join(", ")})`
        : "";
    const images =
      turn.images !== undefined && turn.images.length > 0 ? ` (attached ${turn.images.length} image(s))` : "";
    return `${role}: ${untrustedString(turn.content, limits.maxTurnChars)}${cited}${images}`;
  });
  if (kept.length < history.length) lines.unshift(`(${history.length - kept.length} earlier turns left out)`);
  return lines.join("\n");
}

/**
 * Cleans text that did not come from Loupe for a prompt: removes control and invisible format
 * characters (zero-width, bidi overrides), folds compatibility forms (so full-width `＜` becomes `<`),
 * replaces `<` and `>` so that no tag can be closed or forged, collapses whitespace, caps the length,
 * and quotes the result as a JSON string (quotes and backslashes escaped).
 */
export function untrustedString(value: string, maxChars: number): string {
  let text = value
    .normalize("NFKC")
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, " ")
    .replace(/</g, "‹")
    .replace(/>/g, "›")
    .replace(/\s+/g, " ")
    .trim();
  if (text.length > maxChars) text = `${text.slice(0, Math.max(0, maxChars - 1)).trimEnd()}…`;
  return JSON.stringify(text);
}

function renderQuestion({ input, limits }: { input: ComposeInput; limits: PromptLimits }): string {
  const question = untrustedString(input.question, limits.maxQuestionChars);
  const standalone = untrustedString(input.standaloneQuestion, limits.maxQuestionChars);
  return standalone === question || input.standaloneQuestion.trim() === ""
    ? question
    : `${question} (with the conversation: ${standalone})`;
}

function renderFinding({ finding, limits }: { finding: Finding; limits: PromptLimits }): string {
  const source =
    finding.source === "triple"
      ? `stored answer${finding.tripleId !== undefined ? ` from [${safeId(finding.tripleId)}]` : ""}`
      : finding.source === "detector"
        ? "detection head"
        : "VQA";
  const alternatives = finding.alternatives
    .slice(0, limits.maxAlternatives)
    .map(
      (alternative) =>
        `${untrustedString(alternative.answer, limits.maxAnswerChars)} ${formatProbability(alternative.probability)}`,
    );
  // The head whose answer was not followed, when the two disagreed.
  const disagreement = finding.disagreement;
  const other =
    disagreement === undefined
      ? ""
      : disagreement.followed === "detector"
        ? `; the VQA head answered ${untrustedString(disagreement.vqa.answer, limits.maxAnswerChars)} p=${formatProbability(disagreement.vqa.probability)}`
        : `; the detection head answered ${untrustedString(disagreement.detector.answer, limits.maxAnswerChars)} p=${formatProbability(disagreement.detector.probability)}`;
  return `${source} ${untrustedString(finding.question, limits.maxQuestionChars)} → ${untrustedString(finding.answer, limits.maxAnswerChars)} p=${formatProbability(finding.probability)}${alternatives.length > 0 ? ` (next: ${alternatives.join(", ")})` : ""}${other}`;
}

function kindLabel(item: Evidence): string {
  if (item.attachment) return "image attached by the user";
  if (item.citation.kind === "video_segment") return "video segment";
  return item.citation.kind;
}

/** Ids are Loupe's own (`img_…`, `att_1`); anything outside their alphabet is replaced so it cannot break the line. */
function safeId(id: string): string {
  return id.replace(/[^A-Za-z0-9_.:-]/g, "_").slice(0, 100);
}

function formatSeconds(seconds: number): string {
  return seconds.toFixed(1);
}

function formatProbability(probability: number): string {
  return Number.isFinite(probability) ? probability.toFixed(2) : "?";
}

function checkAnswerPrompt(prompt: PromptTemplate): void {
  const expected = [...ANSWER_PROMPT_VARIABLES].sort();
  const declared = [...prompt.variables].sort();
  if (expected.join(",") !== declared.join(",")) {
    throw new ConfigError(
      `Prompt file ${prompt.file}: it declares variables ${declared.join(", ") || "none"}, but the LLM composer fills ${expected.join(", ")}. Declare exactly those (prompts/README.md).`,
      { context: { file: prompt.file, declared, expected } },
    );
  }
}
