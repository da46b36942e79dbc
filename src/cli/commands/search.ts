/**
 * `loupe search "a red circle" [--image file] [--mode dense|text|hybrid] [--kinds image,triple] [--top-k 10]
 * [--filter json] [--url http://127.0.0.1:8080] [--tenant t] [--json]`: searches and prints the results as a
 * table (rank, id, kind, score, segment span, tags or the triple's question, else the first OCR line that
 * matched). Like `loupe ingest`, it works in-process
 * against the configured store by default (the embedded Milvus Lite under `LOUPE_DATA_DIR`, so not while
 * a `loupe serve` holds that directory), or asks a running Loupe (`POST /v1/search`) with `--url`.
 */
import type { Command } from "commander";
import type { FetchLike, Upload } from "../../client/index.ts";
import { ValidationError } from "../../errors.ts";
import type { SearchMode } from "../../search/index.ts";
import { callServer } from "../call-server.ts";
import { listOption, parseFilterOption, readImageFile, wholeNumber } from "../command-inputs.ts";
import { formatTable } from "../table.ts";

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
  /** OCR lines that matched the text query. */
  textMatches?: Array<{ text: string }>;
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
  /** `dense`, `text` or `hybrid`; the server's default for the query when absent. */
  mode?: SearchMode;
  kinds?: string[];
  topK?: number;
  /** The filter, as JSON text. */
  filter?: string;
  /** The fetch to use (tests pass the app's own). */
  fetch?: FetchLike;
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
  mode,
  kinds,
  topK,
  filter,
  fetch,
}: RunSearchOptions): Promise<SearchResultRow[]> {
  if ((text === undefined || text.trim() === "") && imagePath === undefined) {
    throw new ValidationError(
      'loupe search needs a text query, --image <file>, or both: loupe search "a red circle".',
    );
  }
  const parsedFilter = parseFilterOption(filter);
  const image = imagePath === undefined ? undefined : await readImageFile(imagePath);
  const query = { text, image, ...(mode === undefined ? {} : { mode }), kinds, topK, filter: parsedFilter };
  if (url === undefined) return searchInProcess({ env, tenant, ...query });
  return callServer({ url, tenant, fetch, action: "Search", doing: "search" }, (client) =>
    client.search(query),
  );
}

/** Opens the configured store and model pack in this process, searches, and closes them. */
async function searchInProcess({
  env,
  tenant,
  text,
  image,
  mode,
  kinds,
  topK,
  filter,
}: {
  env: Record<string, string | undefined>;
  tenant: string | undefined;
  text: string | undefined;
  image: Upload | undefined;
  mode?: SearchMode;
  kinds: string[] | undefined;
  topK: number | undefined;
  filter: unknown;
}): Promise<SearchResultRow[]> {
  // Imported on use, like `serve` and `ingest`: the store pulls in the Milvus SDK.
  const { withLocalServices } = await import("../local-services.ts");
  return withLocalServices({ env }, async ({ search, config }) => {
    const { items } = await search.search({
      tenant: tenant ?? config.defaultTenant,
      text,
      image: image === undefined ? undefined : { bytes: image.bytes },
      ...(mode === undefined ? {} : { mode }),
      kinds,
      topK,
      filter,
    });
    return items;
  });
}

function formatSpan(row: SearchResultRow): string {
  if (row.start === undefined || row.end === undefined) return "";
  return `${row.start.toFixed(1)}–${row.end.toFixed(1)}s`;
}

function formatDetail(row: SearchResultRow): string {
  if (row.question !== undefined) return `Q: ${row.question} A: ${row.answer ?? ""}`;
  const line = row.textMatches?.[0]?.text;
  if (line !== undefined) return `“${line}”`;
  const tags = row.metadata?.tags;
  return Array.isArray(tags) ? tags.filter((tag) => typeof tag === "string").join(", ") : "";
}

/** The results as an aligned text table, one line per result, best first. */
export function formatSearchTable(rows: readonly SearchResultRow[]): string {
  if (rows.length === 0) return "No results.\n";
  const header = ["#", "id", "kind", "score", "start–end", "text / tags / question"];
  const lines = rows.map((row, index) => [
    String(index + 1),
    row.id,
    row.kind,
    row.score.toFixed(4),
    formatSpan(row),
    formatDetail(row),
  ]);
  return `${formatTable([header, ...lines])}\n`;
}

/** Registers `loupe search`. */
export function registerSearchCommand(program: Command): void {
  program
    .command("search")
    .description("search a running Loupe by text, image or both, and print the results as a table")
    .argument("[text]", 'text query, e.g. "a red circle"')
    .option("--image <file>", "an image file to search with (with text: both are combined)")
    .option(
      "--mode <mode>",
      "dense (embeddings), text (BM25 over the text read in images, titles and tags) or hybrid (both; the default with text)",
    )
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
          mode?: string;
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
          ...(flags.mode === undefined ? {} : { mode: flags.mode as SearchMode }),
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
