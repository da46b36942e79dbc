/**
 * The base of the vector stores that stand in front of another one (a Milvus not connected yet, a Milvus
 * Lite that is restarting): each call of the port is handed to {@link ForwardingVectorStore.forward},
 * which decides whether, and to which store, it goes. A method added to the port is added here once,
 * and every such wrapper forwards it.
 */
import type { RecordKind } from "./record-id.ts";
import type {
  CountRequest,
  DeleteRequest,
  DeleteResult,
  GetRequest,
  HybridSearchRequest,
  ListPage,
  ListRequest,
  QueryRequest,
  SearchHit,
  SearchRequest,
  StoredByKind,
  StoreHealth,
  TextSearchRequest,
  UpdateRequest,
  UpdateResult,
  UpsertRequest,
  UpsertResult,
  VectorStore,
} from "./vector-store.ts";

/** The port's methods that read or write data (all but `health` and `close`). */
export type ForwardedMethod = Exclude<keyof VectorStore, "health" | "close">;

/** One call to forward: which method, its request, and how to make it on a store. */
export interface ForwardedCall<T> {
  method: ForwardedMethod;
  request: unknown;
  run(store: VectorStore): Promise<T>;
}

/** A {@link VectorStore} whose data calls go through {@link ForwardingVectorStore.forward}. */
export abstract class ForwardingVectorStore implements VectorStore {
  /** Makes the call on the store in place, or fails it with the reason there is none. */
  protected abstract forward<T>(call: ForwardedCall<T>): Promise<T>;

  abstract health(): Promise<StoreHealth>;
  abstract close(): Promise<void>;

  upsert<K extends RecordKind>(request: UpsertRequest<K>): Promise<UpsertResult> {
    return this.forward({ method: "upsert", request, run: (store) => store.upsert(request) });
  }
  search<K extends RecordKind>(request: SearchRequest<K>): Promise<SearchHit<K>[]> {
    return this.forward({ method: "search", request, run: (store) => store.search(request) });
  }
  textSearch<K extends RecordKind>(request: TextSearchRequest<K>): Promise<SearchHit<K>[]> {
    return this.forward({ method: "textSearch", request, run: (store) => store.textSearch(request) });
  }
  hybridSearch<K extends RecordKind>(request: HybridSearchRequest<K>): Promise<SearchHit<K>[]> {
    return this.forward({ method: "hybridSearch", request, run: (store) => store.hybridSearch(request) });
  }
  update(request: UpdateRequest): Promise<UpdateResult> {
    return this.forward({ method: "update", request, run: (store) => store.update(request) });
  }
  query<K extends RecordKind>(request: QueryRequest<K>): Promise<StoredByKind[K][]> {
    return this.forward({ method: "query", request, run: (store) => store.query(request) });
  }
  get<K extends RecordKind>(request: GetRequest<K>): Promise<StoredByKind[K][]> {
    return this.forward({ method: "get", request, run: (store) => store.get(request) });
  }
  list<K extends RecordKind>(request: ListRequest<K>): Promise<ListPage<K>> {
    return this.forward({ method: "list", request, run: (store) => store.list(request) });
  }
  delete<K extends RecordKind>(request: DeleteRequest<K>): Promise<DeleteResult> {
    return this.forward({ method: "delete", request, run: (store) => store.delete(request) });
  }
  count(request: CountRequest): Promise<number> {
    return this.forward({ method: "count", request, run: (store) => store.count(request) });
  }
}
