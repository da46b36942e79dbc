/**
 * A {@link VectorStore} that stands in until a real one is connected: {@link DeferredVectorStore.connect}
 * keeps trying an external Milvus with backoff (Loupe starts, and `/readyz` says why it is not ready),
 * {@link DeferredVectorStore.unavailable} never connects (no embedding dimension is known).
 */
import { NotReadyError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { redactAddresses } from "./milvus-client.ts";
import type { RecordKind } from "./record-id.ts";
import type {
  CountRequest,
  DeleteRequest,
  DeleteResult,
  GetRequest,
  QueryRequest,
  SearchHit,
  SearchRequest,
  StoredByKind,
  StoreHealth,
  UpsertRequest,
  UpsertResult,
  VectorStore,
} from "./vector-store.ts";

const reconnectFirstDelayMs = 1000;
const reconnectMaxDelayMs = 30_000;

/**
 * A {@link VectorStore} that is not connected yet, or cannot be: until a real store is in place, its
 * health is not ok with the reason, and every call fails with a `NotReadyError` carrying that reason.
 */
export class DeferredVectorStore implements VectorStore {
  #store: VectorStore | undefined;
  #reason: string;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #attempt: Promise<void> | undefined;

  private constructor(reason: string) {
    this.#reason = reason;
  }

  /** A store that never becomes available, for the given reason. */
  static unavailable(reason: string): DeferredVectorStore {
    return new DeferredVectorStore(reason);
  }

  /** Calls `connect` now and again with backoff until it succeeds or the store is closed. */
  static connect({
    address,
    connect,
    logger,
  }: {
    address: string;
    connect: () => Promise<VectorStore>;
    logger: Logger;
  }): DeferredVectorStore {
    // Reasons reach /readyz and error bodies: the address stays in the log.
    const deferred = new DeferredVectorStore("connecting to Milvus (MILVUS_ADDRESS)");
    const attempt = (delayMs: number) => {
      deferred.#attempt = connect().then(
        async (store) => {
          if (deferred.#closed) {
            await store.close();
            return;
          }
          deferred.#store = store;
          logger.info({ address }, "connected to Milvus");
        },
        (error: unknown) => {
          deferred.#reason = redactAddresses(error instanceof Error ? error.message : String(error));
          if (deferred.#closed) return;
          logger.warn({ err: error, address, retryInMs: delayMs }, "Milvus is not available; retrying");
          deferred.#timer = setTimeout(() => attempt(Math.min(delayMs * 2, reconnectMaxDelayMs)), delayMs);
        },
      );
    };
    attempt(reconnectFirstDelayMs);
    return deferred;
  }

  #ready(): VectorStore {
    if (this.#store === undefined) {
      throw new NotReadyError(`The vector store is not available: ${this.#reason.replace(/\.$/, "")}.`, {
        context: { reason: this.#reason },
      });
    }
    return this.#store;
  }

  upsert<K extends RecordKind>(request: UpsertRequest<K>): Promise<UpsertResult> {
    return this.#ready().upsert(request);
  }
  search<K extends RecordKind>(request: SearchRequest<K>): Promise<SearchHit<K>[]> {
    return this.#ready().search(request);
  }
  query<K extends RecordKind>(request: QueryRequest<K>): Promise<StoredByKind[K][]> {
    return this.#ready().query(request);
  }
  get<K extends RecordKind>(request: GetRequest<K>): Promise<StoredByKind[K][]> {
    return this.#ready().get(request);
  }
  delete<K extends RecordKind>(request: DeleteRequest<K>): Promise<DeleteResult> {
    return this.#ready().delete(request);
  }
  count(request: CountRequest): Promise<number> {
    return this.#ready().count(request);
  }
  async health(): Promise<StoreHealth> {
    return this.#store === undefined ? { ok: false, reason: this.#reason } : this.#store.health();
  }
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#attempt;
    await this.#store?.close();
  }
}
