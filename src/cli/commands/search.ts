/**
 * `loupe search "a red circle" [--image file] [--kinds image,triple] [--top-k 10] [--filter json]
 * [--url http://127.0.0.1:8080] [--tenant t] [--json]`: searches and prints the results as a table (rank,
 * id, kind, score, segment span, tags or the triple's question). Like `loupe ingest`, it works in-process
 * against the configured store by default (the embedded Milvus Lite under `LOUPE_DATA_DIR`, so not while
 * a `loupe serve` holds that directory), or asks a running Loupe (`POST /v1/search`) with `--url`.
 */
import { basename } from "node:path";
import type { Command } from "commander";
import { AppError, ValidationError } from "../../errors.ts";
import {
  listOption,
  parseFilterOption,
  readImageFile,
  serverUnreachable,
  wholeNumber,
} from "../command-inputs.ts";

/** A result as the server returns it (the fields the table shows). */
export interface SearchResultRow {
  kind: string;
  id: string;
  score: number;
  start?: number;
  end?: number;
  question?: string;
  answer?: string;
  metadata?: Record<string, unknown>;
}

/** Options of {@link runSearch}. */
export interface RunSearchOptions {
  /** Base URL of a running Loupe; absent: search in-process. */
  url?: string;
  /** In-process only: the tenant to search (default `LOUPE_DEFAULT_TENANT`). */
  tenant?: string;
  /** In-process only: the environment to configure from (default `process.env`). */
  env?: Record<string, string | undefined>;
  text?: string;
  /** Path of an image file to search with. */
  imagePath?: string;
  kinds?: string[];
  topK?: number;
  /** The filter, as JSON text. */
  filter?: string;
  /** The fetch to use (tests pass the app's own). */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
}

/**
 * Runs the search in-process (no `url`) or on the server at `url`, and returns its items.
 *
 * @throws ValidationError for a missing query, unreadable image or malformed filter; in-process, the
 *   search's own errors; with `url`, an AppError carrying the server's code and message when it answers
 *   with an error, or `server_unreachable` when it cannot be reached.
 */
export async function runSearch({
  url,
  tenant,
  env = process.env,
  text,
  imagePath,
  kinds,
  topK,
  filter,
  fetch: send = (input, init) => fetch(input, init),
}: RunSearchOptions): Promise<SearchResultRow[]> {
  if ((text === undefined || text.trim() === "") && imagePath === undefined) {
    throw new ValidationError(
      'loupe search needs a text query, --image <file>, or both: loupe search "a red circle".',
    );
  }
  const parsedFilter = parseFilterOption(filter);
  let bytes: Buffer | undefined;
  if (imagePath !== undefined) bytes = await readImageFile(imagePath);
  if (url === undefined) {
    return searchInProcess({ env, tenant, text, bytes, kinds, topK, filter: parsedFilter });
  }
  if (tenant !== undefined) {
    throw new ValidationError("--tenant applies in-process only; with --url the server decides the tenant.");
  }
  let init: RequestInit;
  if (bytes !== undefined && imagePath !== undefined) {
    const form = new FormData();
    form.set("image", new Blob([new Uint8Array(bytes)]), basename(imagePath));
    if (text !== undefined && text.trim() !== "") form.set("text", text);
    if (kinds !== undefined) form.set("kinds", kinds.join(","));
    if (topK !== undefined) form.set("topK", String(topK));
    if (parsedFilter !== undefined) form.set("filter", JSON.stringify(parsedFilter));
    init = { method: "POST", body: form };
  } else {
    init = {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text, kinds, topK, filter: parsedFilter }),
    };
  }
  const endpoint = `${url.replace(/\/+$/, "")}/v1/search`;
  let response: Response;
  try {
    response = await send(endpoint, init);
  } catch (error) {
    throw serverUnreachable({ url, error, doing: "search" });
  }
  const body = (await response.json().catch(() => undefined)) as
    | { items?: SearchResultRow[]; error?: { code: string; message: string } }
    | undefined;
  if (!response.ok || body?.items === undefined) {
    const code = body?.error?.code ?? "search_failed";
    const message = body?.error?.message ?? `The server answered HTTP ${response.status}.`;
    throw new AppError(code, response.status, `Search failed (${response.status} ${code}): ${message}`);
  }
  return body.items;
}

/** Opens the configured store and model pack in this process, searches, and closes them. */
async function searchInProcess({
  env,
  tenant,
  text,
  bytes,
  kinds,
  topK,
  filter,
}: {
  env: Record<string, string | undefined>;
  tenant: string | undefined;
  text: string | undefined;
  bytes: Buffer | undefined;
  kinds: string[] | undefined;
  topK: number | undefined;
  filter: unknown;
}): Promise<SearchResultRow[]> {
  // Imported on use, like `serve` and `ingest`: the store pulls in the Milvus SDK.
  const { openLocalServices } = await import("../local-services.ts");
  const services = await openLocalServices({ env });
  try {
    const { items } = await services.search.search({
      tenant: tenant ?? services.config.defaultTenant,
      text,
      image: bytes === undefined ? undefined : { bytes: new Uint8Array(bytes) },
      kinds,
      topK,
      filter,
    });
    return items;
  } finally {
    await services.close();
  }
}

function formatSpan(row: SearchResultRow): string {
  if (row.start === undefined || row.end === undefined) return "";
  return `${row.start.toFixed(1)}–${row.end.toFixed(1)}s`;
}

function formatDetail(row: SearchResultRow): string {
  if (row.question !== undefined) return `Q: ${row.question} A: ${row.answer ?? ""}`;
  const tags = row.metadata?.tags;
  return Array.isArray(tags) ? tags.filter((tag) => typeof tag === "string").join(", ") : "";
}

/** The results as an aligned text table, one line per result, best first. */
export function formatSearchTable(rows: readonly SearchResultRow[]): string {
  if (rows.length === 0) return "No results.\n";
  const header = ["#", "id", "kind", "score", "start–end", "tags / question"];
  const lines = rows.map((row, index) => [
    String(index + 1),
    row.id,
    row.kind,
    row.score.toFixed(4),
    formatSpan(row),
    formatDetail(row),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => (line[column] ?? "").length)),
  );
  const render = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd();
  return `${[render(header), ...lines.map(render)].join("\n")}\n`;
}

/** Registers `loupe search`. */
export function registerSearchCommand(program: Command): void {
  program
    .command("search")
    .description("search a running Loupe by text, image or both, and print the results as a table")
    .argument("[text]", 'text query, e.g. "a red circle"')
    .option("--image <file>", "an image file to search with (with text: both are combined)")
    .option("--kinds <list>", "comma-separated kinds: image, video_segment, triple (default: all)")
    .option("--top-k <n>", "results wanted, 1–100 (default 10)", wholeNumber("--top-k"))
    .option(
      "--filter <json>",
      'typed filter as JSON, e.g. \'[{"field":"metadata.tags","op":"contains","value":"red"}]\'',
    )
    .option(
      "--url <base>",
      "ask a running Loupe (e.g. http://127.0.0.1:8080) instead of searching in-process",
    )
    .option("--tenant <tenant>", "tenant to search, in-process only (default: LOUPE_DEFAULT_TENANT)")
    .option("--json", "print the server's JSON instead of a table", false)
    .action(
      async (
        text: string | undefined,
        flags: {
          image?: string;
          kinds?: string;
          topK?: number;
          filter?: string;
          url?: string;
          tenant?: string;
          json: boolean;
        },
      ) => {
        const items = await runSearch({
          url: flags.url,
          tenant: flags.tenant,
          text,
          imagePath: flags.image,
          kinds: listOption(flags.kinds),
          topK: flags.topK,
          filter: flags.filter,
        });
        process.stdout.write(
          flags.json ? `${JSON.stringify({ items }, null, 2)}\n` : formatSearchTable(items),
        );
      },
    );
}
