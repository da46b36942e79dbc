/**
 * Loupe's search as a LangChain retriever: a query string in, `Document`s out, so Loupe's multimodal
 * index can feed any LangChain chain. Each document's text is the stored item's text (caption, tags,
 * title, or a triple's question and answer); its metadata carries the id, kind, score and media URLs.
 */
import type { CallbackManagerForRetrieverRun } from "@langchain/core/callbacks/manager";
import { Document } from "@langchain/core/documents";
import { BaseRetriever, type BaseRetrieverInput } from "@langchain/core/retrievers";
import type { SearchResultItem, SearchService } from "../search/index.ts";

/** Metadata of a document {@link LoupeRetriever} returns. */
export type LoupeDocumentMetadata = Omit<SearchResultItem, "text">;

/** Options of {@link LoupeRetriever}. */
export interface LoupeRetrieverOptions extends BaseRetrieverInput {
  search: Pick<SearchService, "search">;
  /** The tenant whose items are searched. */
  tenant: string;
  /** Kinds to search (`image`, `video_segment`, `triple`); all when absent. */
  kinds?: readonly string[];
  /** How many documents to return (default 10). */
  topK?: number;
  /** A filter in Loupe's filter syntax, applied to every query. */
  filter?: unknown;
}

/** A LangChain `BaseRetriever` over Loupe's text search, for one tenant. */
export class LoupeRetriever extends BaseRetriever<LoupeDocumentMetadata> {
  static override lc_name(): string {
    return "LoupeRetriever";
  }

  override lc_namespace = ["loupe", "retrievers"];

  readonly #search: Pick<SearchService, "search">;
  readonly #tenant: string;
  readonly #kinds: readonly string[] | undefined;
  readonly #topK: number;
  readonly #filter: unknown;

  constructor({ search, tenant, kinds, topK = 10, filter, ...fields }: LoupeRetrieverOptions) {
    super(fields);
    this.#search = search;
    this.#tenant = tenant;
    this.#kinds = kinds;
    this.#topK = topK;
    this.#filter = filter;
  }

  override async _getRelevantDocuments(
    query: string,
    _runManager?: CallbackManagerForRetrieverRun,
  ): Promise<Document<LoupeDocumentMetadata>[]> {
    const { items } = await this.#search.search({
      tenant: this.#tenant,
      text: query,
      topK: this.#topK,
      ...(this.#kinds === undefined ? {} : { kinds: this.#kinds }),
      ...(this.#filter === undefined ? {} : { filter: this.#filter }),
    });
    return items.map(
      ({ text, ...metadata }) =>
        new Document<LoupeDocumentMetadata>({ pageContent: text, metadata, id: metadata.id }),
    );
  }
}
