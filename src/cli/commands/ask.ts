/**
 * `loupe ask "<question>" [--image file]... [--kinds image,video_segment,triple] [--top-k n] [--filter json]
 * [--offline] [--url http://127.0.0.1:8080] [--tenant t] [--json]`: asks Loupe one question and streams
 * the answer to stdout as it is written, then lists the citations and the confidence. Like
 * `loupe search`, it runs the chain in-process against the configured store by default (so not while a
 * `loupe serve` holds `LOUPE_DATA_DIR`), or asks a running Loupe (`POST /v1/chat`, server-sent events)
 * with `--url`.
 */
import type { Command } from "commander";
import type { FetchLike, Upload } from "../../client/index.ts";
import { ValidationError } from "../../errors.ts";
import type { ChatEvent, ChatRequest, ChatResult } from "../../rag/types.ts";
import { callServer } from "../call-server.ts";
import { listOption, parseFilterOption, readImageFile, wholeNumber } from "../command-inputs.ts";

/** Options of {@link runAsk}. */
export interface RunAskOptions {
  /** Base URL of a running Loupe; absent: answer in-process. */
  url?: string;
  /** In-process only: the tenant to ask (default `LOUPE_DEFAULT_TENANT`). */
  tenant?: string;
  /** In-process only: the environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  question?: string;
  /** Paths of image files attached to the question (cited as `att_1`, `att_2`, … in order). */
  imagePaths?: readonly string[];
  kinds?: string[];
  topK?: number;
  /** The filter, as JSON text. */
  filter?: string;
  /** Write the answer with the offline composer even when an LLM is configured. */
  offline?: boolean;
  /** Called with each event of the turn as it arrives, `done` last. */
  onEvent?: (event: ChatEvent) => void;
  /** The fetch to use (tests pass the app's own). */
  fetch?: FetchLike;
}

/**
 * Asks one question in-process (no `url`) or on the server at `url`, passes each event of the turn to
 * `onEvent` as it arrives, and returns the final result.
 *
 * @throws ValidationError for a missing question, an unreadable image or a malformed filter; in-process,
 *   the chain's own errors; with `url`, an AppError carrying the server's code and message when it answers
 *   with an error (before or during the stream), or `server_unreachable` when it cannot be reached.
 */
export async function runAsk({
  url,
  tenant,
  env = process.env,
  question,
  imagePaths = [],
  kinds,
  topK,
  filter,
  offline = false,
  onEvent = () => undefined,
  fetch,
}: RunAskOptions): Promise<ChatResult> {
  if (question === undefined || question.trim() === "") {
    throw new ValidationError(
      'loupe ask needs a question: loupe ask "What color is the circle?" [--image photo.png].',
    );
  }
  const parsedFilter = parseFilterOption(filter);
  const images: Upload[] = [];
  for (const imagePath of imagePaths) images.push(await readImageFile(imagePath));
  const turn = {
    question,
    ...(parsedFilter === undefined ? {} : { filter: parsedFilter }),
    ...(kinds === undefined ? {} : { kinds }),
    ...(topK === undefined ? {} : { topK }),
    ...(offline ? { composer: "offline" as const } : {}),
  };
  if (url === undefined) {
    const attached = images.map(({ bytes }) => ({ bytes }));
    const request = { ...turn, ...(attached.length > 0 ? { images: attached } : {}) };
    return askInProcess({ env, tenant, request, onEvent });
  }
  const body = { ...turn, ...(images.length > 0 ? { images } : {}) };
  return callServer({ url, tenant, fetch, action: "Ask", doing: "ask" }, (client) =>
    lastResult(client.chatEvents(body), onEvent),
  );
}

/** Passes each event of a turn to `onEvent` and returns the result that `done` carries. */
async function lastResult(
  events: AsyncIterable<ChatEvent>,
  onEvent: (event: ChatEvent) => void,
): Promise<ChatResult> {
  for await (const event of events) {
    onEvent(event);
    if (event.type === "done") return event.data;
  }
  throw new Error("The chat stream ended without a done event.");
}

/** Opens the configured store, model pack and LLM in this process, runs one turn, and closes them. */
async function askInProcess({
  env,
  tenant,
  request,
  onEvent,
}: {
  env: Record<string, string | undefined>;
  tenant: string | undefined;
  request: Omit<ChatRequest, "tenant">;
  onEvent: (event: ChatEvent) => void;
}): Promise<ChatResult> {
  // Imported on use, like `search`: the store pulls in the Milvus SDK and the chain LangChain.
  const { withLocalServices } = await import("../local-services.ts");
  return withLocalServices({ env }, ({ chain, config }) =>
    lastResult(chain.events({ ...request, tenant: tenant ?? config.defaultTenant }), onEvent),
  );
}

function formatSpan(start: number | null, end: number | null): string {
  return start === null || end === null ? "" : ` ${start.toFixed(1)}–${end.toFixed(1)}s`;
}

/** The lines printed after the answer: the cited evidence, best first, and the confidence. */
export function formatAskFooter(result: ChatResult): string {
  const lines = ["", result.citations.length === 0 ? "No citations." : "Citations:"];
  for (const citation of result.citations) {
    lines.push(
      `  [${citation.id}] ${citation.kind}${formatSpan(citation.start, citation.end)} score ${citation.score.toFixed(4)}`,
    );
  }
  const note = result.fallback === undefined ? "" : ` (offline answer: ${result.fallback.reason})`;
  lines.push(`Confidence: ${result.confidence.toFixed(2)}${result.answered ? "" : ", not answered"}${note}`);
  return `${lines.join("\n")}\n`;
}

/**
 * An `onEvent` that prints the answer as it streams: deltas as they come, a notice when the LLM failed
 * mid-answer and the offline answer follows, then {@link formatAskFooter}.
 */
export function createAnswerPrinter(write: (text: string) => void): (event: ChatEvent) => void {
  let lineOpen = false;
  const endLine = () => {
    if (lineOpen) write("\n");
    lineOpen = false;
  };
  return (event) => {
    if (event.type === "answer-delta") {
      if (event.data.text === "") return;
      write(event.data.text);
      lineOpen = !event.data.text.endsWith("\n");
    } else if (event.type === "answer-reset") {
      endLine();
      write(`[The LLM failed (${event.data.reason}); the offline answer follows.]\n`);
    } else if (event.type === "done") {
      endLine();
      write(formatAskFooter(event.data));
    }
  };
}

/** Registers `loupe ask`. */
export function registerAskCommand(program: Command): void {
  program
    .command("ask")
    .description("ask a question about the corpus (and attached images) and stream the cited answer")
    .argument("[question]", 'the question, e.g. "What color is the circle?"')
    .option(
      "--image <file>",
      "an image file to ask about; repeat for several (cited as att_1, att_2, …)",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option("--kinds <list>", "comma-separated kinds: image, video_segment, triple (default: all)")
    .option("--top-k <n>", "items retrieved per kind, 1–100 (default 10)", wholeNumber("--top-k"))
    .option(
      "--filter <json>",
      'typed filter as JSON, e.g. \'[{"field":"metadata.tags","op":"contains","value":"red"}]\'',
    )
    .option("--offline", "answer with the offline composer even when an LLM is configured", false)
    .option("--url <base>", "ask a running Loupe (e.g. http://127.0.0.1:8080) instead of in-process")
    .option("--tenant <tenant>", "tenant to ask, in-process only (default: LOUPE_DEFAULT_TENANT)")
    .option("--json", "print the final result as JSON instead of streaming the answer", false)
    .action(
      async (
        question: string | undefined,
        flags: {
          image: string[];
          kinds?: string;
          topK?: number;
          filter?: string;
          offline: boolean;
          url?: string;
          tenant?: string;
          json: boolean;
        },
      ) => {
        const result = await runAsk({
          url: flags.url,
          tenant: flags.tenant,
          question,
          imagePaths: flags.image,
          kinds: listOption(flags.kinds),
          topK: flags.topK,
          filter: flags.filter,
          offline: flags.offline,
          onEvent: flags.json ? undefined : createAnswerPrinter((text) => process.stdout.write(text)),
        });
        if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      },
    );
}
