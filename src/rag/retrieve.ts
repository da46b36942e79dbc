/**
 * The retrieval step: searches the caller's images, video segments and triples with the question's text
 * vector and with each attached image's vector, all in parallel, and fuses the lists by reciprocal rank.
 * Triples are searched by question (text) and by image (attachments), the other kinds by their one vector.
 * A question about text in images also runs the store's BM25 search over the images' and video
 * segments' text (OCR text included), with its codes and quoted phrases as phrases every hit must hold;
 * those lists (`bm25:<kind>`) are fused by rank with the dense ones.
 */
import type { FilterSpec, RecordKind, SearchHit, StoredRecord, VectorStore } from "../store/index.ts";
import { type FusedItem, type RankedList, reciprocalRankFusion } from "./fusion.ts";

/** A query vector and the name its lists are reported under (`text`, `att_1`, …). */
export interface QueryVector {
  name: string;
  vector: Float32Array;
  /** `text` vectors search triples by question, `image` vectors by image. */
  modality: "text" | "image";
}

/** A BM25 search over stored text, beside the dense searches. */
export interface TextQuery {
  /** The query text (analyzed like the stored text). */
  text: string;
  /** Phrases every hit must hold (codes, quoted phrases). */
  phrases: readonly string[];
  /** Kinds searched by text (those of {@link RetrieveOptions.kinds} that hold text read in images). */
  kinds: readonly RecordKind[];
  /**
   * A second BM25 search without the phrases (`bm25-loose:<kind>` lists), for text OCR may have read with
   * a code spaced or misread, so that the exact-phrase search finds nothing.
   */
  loose?: { text: string; phrases: readonly string[] };
}

/** Options of {@link retrieveCandidates}. */
export interface RetrieveOptions {
  store: Pick<VectorStore, "search" | "textSearch">;
  tenant: string;
  queries: readonly QueryVector[];
  kinds: readonly RecordKind[];
  /** Hits per list. */
  topK: number;
  /** The caller's filter, applied to every list. */
  filter?: FilterSpec;
  /** Restricts video segments to these videos (a question naming `vid_…`). */
  videoIds?: readonly string[];
  /** A BM25 search to run too (questions about text in images). */
  textQuery?: TextQuery;
}

/** The name of a BM25 list of {@link RetrievalResult.lists} (`loose`: the one without the code phrases). */
export function textListName(kind: RecordKind, { loose = false }: { loose?: boolean } = {}): string {
  return `${loose ? "bm25-loose" : "bm25"}:${kind}`;
}

/** What {@link retrieveCandidates} returns. */
export interface RetrievalResult {
  /** Every candidate once, best fused rank first. */
  fused: FusedItem<StoredRecord>[];
  /** The raw lists, named `<query>:<kind>` (e.g. `att_1:triple`), best first. */
  lists: Record<string, SearchHit[]>;
}

/** Runs every (query, kind) search in parallel and fuses the results. */
export async function retrieveCandidates({
  store,
  tenant,
  queries,
  kinds,
  topK,
  filter,
  videoIds = [],
  textQuery,
}: RetrieveOptions): Promise<RetrievalResult> {
  const searches: Array<Promise<{ name: string; hits: SearchHit[] }>> = [];
  const filterFor = (kind: RecordKind) =>
    kind === "video_segment" && videoIds.length > 0
      ? [...(filter ?? []), { field: "video_id", op: "in" as const, value: [...videoIds] }]
      : filter;
  for (const query of queries) {
    for (const kind of kinds) {
      const kindFilter = filterFor(kind);
      const vectorField =
        kind === "triple" ? (query.modality === "text" ? "question_vector" : "image_vector") : undefined;
      const name = `${query.name}:${kind}`;
      searches.push(
        store
          .search({
            kind,
            tenant,
            vector: query.vector,
            topK,
            ...(kindFilter === undefined ? {} : { filter: kindFilter }),
            ...(vectorField === undefined ? {} : { vectorField }),
          })
          .then((hits) => ({ name, hits: hits as SearchHit[] })),
      );
    }
  }
  for (const kind of textQuery?.kinds ?? []) {
    if (textQuery === undefined || !kinds.includes(kind)) continue;
    const kindFilter = filterFor(kind);
    const searchText = (text: string, phrases: readonly string[], loose: boolean) =>
      searches.push(
        store
          .textSearch({
            kind,
            tenant,
            text,
            topK,
            ...(phrases.length === 0 ? {} : { phrases }),
            ...(kindFilter === undefined ? {} : { filter: kindFilter }),
          })
          .then((hits) => ({ name: textListName(kind, { loose }), hits: hits as SearchHit[] })),
      );
    searchText(textQuery.text, textQuery.phrases, false);
    if (textQuery.loose !== undefined) searchText(textQuery.loose.text, textQuery.loose.phrases, true);
  }
  const results = await Promise.all(searches);
  const lists: Record<string, SearchHit[]> = {};
  const ranked: RankedList<StoredRecord>[] = [];
  for (const { name, hits } of results) {
    lists[name] = hits;
    ranked.push({ name, items: hits.map((hit) => ({ id: hit.id, score: hit.score, value: hit.fields })) });
  }
  return { fused: reciprocalRankFusion({ lists: ranked }), lists };
}
