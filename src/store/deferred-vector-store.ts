/**
 * A {@link VectorStore} that stands in until a real one is connected: {@link DeferredVectorStore.connect}
 * keeps trying an external Milvus with backoff (Loupe starts, and `/readyz` says why it is not ready),
 * {@link DeferredVectorStore.unavailable} never connects (no embedding dimension is known).
 */
import { NotReadyError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { type ForwardedCall, ForwardingVectorStore } from "./forwarding-vector-store.ts";
import { redactAddresses } from "./milvus-client.ts";
import type { StoreHealth, VectorStore } from "./vector-store.ts";

const reconnectFirstDelayMs = 1000;
const reconnectMaxDelayMs = 30_000;

/**
 * A {@link VectorStore} that is not connected yet, or cannot be: until a real store is in place, its
 * health is not ok with the reason, and every call fails with a `NotReadyError` carrying that reason.
 */
export class DeferredVectorStore extends ForwardingVectorStore {
  #store: VectorStore | undefined;
  #reason: string;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #attempt: Promise<void> | undefined;
  /** When the next connection attempt starts (epoch ms); absent when none is planned. */
  #nextAttemptAt: number | undefined;

  private constructor(reason: string) {
    super();
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
          deferred.#nextAttemptAt = Date.now() + delayMs;
          deferred.#timer = setTimeout(() => attempt(Math.min(delayMs * 2, reconnectMaxDelayMs)), delayMs);
        },
      );
    };
    deferred.#nextAttemptAt = Date.now();
    attempt(reconnectFirstDelayMs);
    return deferred;
  }

  protected forward<T>({ run }: ForwardedCall<T>): Promise<T> {
    if (this.#store === undefined) {
      // A store that is still being connected may answer soon: say when to try again.
      const retryAfterSeconds =
        this.#nextAttemptAt === undefined
          ? undefined
          : Math.max(1, Math.ceil((this.#nextAttemptAt - Date.now()) / 1000) + 1);
      return Promise.reject(
        new NotReadyError(`The vector store is not available: ${this.#reason.replace(/\.$/, "")}.`, {
          context: { reason: this.#reason },
          ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
        }),
      );
    }
    return run(this.#store);
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
