/**
 * The retrieval step: searches the caller's images, video segments and triples with the question's text
 * vector and with each attached image's vector, all in parallel, and fuses the lists by reciprocal rank.
 * Triples are searched by question (text) and by image (attachments), the other kinds by their one vector.
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

/** Options of {@link retrieveCandidates}. */
export interface RetrieveOptions {
  store: Pick<VectorStore, "search">;
  tenant: string;
  queries: readonly QueryVector[];
  kinds: readonly RecordKind[];
  /** Hits per list. */
  topK: number;
  /** The caller's filter, applied to every list. */
  filter?: FilterSpec;
  /** Restricts video segments to these videos (a question naming `vid_…`). */
  videoIds?: readonly string[];
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
}: RetrieveOptions): Promise<RetrievalResult> {
  const searches: Array<Promise<{ name: string; hits: SearchHit[] }>> = [];
  for (const query of queries) {
    for (const kind of kinds) {
      let kindFilter = filter;
      if (kind === "video_segment" && videoIds.length > 0) {
        kindFilter = [...(filter ?? []), { field: "video_id", op: "in", value: [...videoIds] }];
      }
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
  const results = await Promise.all(searches);
  const lists: Record<string, SearchHit[]> = {};
  const ranked: RankedList<StoredRecord>[] = [];
  for (const { name, hits } of results) {
    lists[name] = hits;
    ranked.push({ name, items: hits.map((hit) => ({ id: hit.id, score: hit.score, value: hit.fields })) });
  }
  return { fused: reciprocalRankFusion({ lists: ranked }), lists };
}
