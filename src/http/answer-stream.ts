/**
 * The text of a streamed chat turn as OpenAI's streaming formats carry it (chat completion chunks, the
 * Responses API's `response.output_text.delta`): pieces that are only ever appended. The chain can
 * restart its answer (the LLM failed mid-answer and the offline composer's answer follows), which
 * appended text cannot undo, so a note saying so is sent and the new answer follows it; the final answer
 * is reported at the end, with whether the text sent is exactly that answer.
 */
import type { Logger } from "../logger.ts";
import type { ChatEvent, ChatResult } from "../rag/types.ts";
import type { OpenedChatStream } from "./routes/chat.ts";

/** Sent when the LLM fails after part of its answer and the offline composer's answer follows. */
export const ANSWER_RESET_NOTE = "\n\n(The language model failed; Loupe's offline answer follows.)\n\n";

/** How a streamed answer ended. */
export interface StreamedAnswer {
  result: ChatResult;
  /** Everything sent, notes included. */
  sent: string;
  /** Where the final answer begins in `sent` (after the last reset note). */
  answerStart: number;
  /** Whether `sent` is exactly the final answer (no restart, nothing streamed that the answer lacks). */
  exact: boolean;
}

/**
 * Yields the text to append, in order, and returns how the answer ended. A tail of the final answer the
 * chain did not stream (a correction the verify step added) is yielded last, so the pieces add up to
 * the final answer whenever they can.
 *
 * @throws when the chain fails, or its events end without a `done`.
 */
export async function* answerPieces({
  opened,
  logger,
}: {
  opened: OpenedChatStream;
  logger: Logger;
}): AsyncGenerator<string, StreamedAnswer> {
  let sent = "";
  let answerStart = 0;
  // Text sent since the answer last (re)started, and whether an earlier start was abandoned.
  let streamed = "";
  let restarted = false;
  let event: ChatEvent | undefined = opened.first;
  while (event !== undefined) {
    if (event.type === "answer-delta" && event.data.text.length > 0) {
      streamed += event.data.text;
      sent += event.data.text;
      yield event.data.text;
    } else if (event.type === "answer-reset") {
      if (streamed.length > 0) {
        restarted = true;
        sent += ANSWER_RESET_NOTE;
        answerStart = sent.length;
        yield ANSWER_RESET_NOTE;
      }
      streamed = "";
    } else if (event.type === "done") {
      const result = event.data;
      const continues = result.answer.startsWith(streamed);
      if (continues && result.answer.length > streamed.length) {
        const tail = result.answer.slice(streamed.length);
        sent += tail;
        yield tail;
      } else if (!continues) {
        logger.warn(
          { streamedLength: streamed.length, answerLength: result.answer.length },
          "the streamed answer differs from the final answer; loupe.answer holds the final one",
        );
      }
      return { result, sent, answerStart, exact: continues && !restarted };
    }
    const next: IteratorResult<ChatEvent> = await opened.rest.next();
    event = next.done === true ? undefined : next.value;
  }
  throw new Error("The chat chain's stream ended without a done event.");
}
