/**
 * A {@link VectorStore} that times every call of the store it wraps and reports it as a Milvus call
 * (method, outcome, error code): the composition root wraps the store once, so the Milvus adapter keeps
 * no metrics code of its own. Only the call is timed; no request or result is looked into, so the cost
 * does not grow with the vectors or rows a call carries.
 */
import { type ForwardedCall, ForwardingVectorStore } from "../store/forwarding-vector-store.ts";
import type { StoreHealth, VectorStore } from "../store/vector-store.ts";
import { errorCodeOf, type LoupeMetrics } from "./metrics.ts";

/** See the module comment. */
export class InstrumentedVectorStore extends ForwardingVectorStore {
  readonly #store: VectorStore;
  readonly #metrics: Pick<LoupeMetrics, "observeStoreCall">;

  constructor({ store, metrics }: { store: VectorStore; metrics: Pick<LoupeMetrics, "observeStoreCall"> }) {
    super();
    this.#store = store;
    this.#metrics = metrics;
  }

  /**
   * `store`, its calls reported to `metrics`: a store already reporting to them is returned as it is, so
   * services assembled again over assembled ones count each call once.
   */
  static wrap({
    store,
    metrics,
  }: {
    store: VectorStore;
    metrics: Pick<LoupeMetrics, "observeStoreCall">;
  }): VectorStore {
    if (store instanceof InstrumentedVectorStore) {
      if (store.#metrics === metrics) return store;
      return new InstrumentedVectorStore({ store: store.#store, metrics });
    }
    return new InstrumentedVectorStore({ store, metrics });
  }

  protected async forward<T>({ method, run }: ForwardedCall<T>): Promise<T> {
    const started = performance.now();
    try {
      const result = await run(this.#store);
      this.#metrics.observeStoreCall({ call: method, seconds: (performance.now() - started) / 1000 });
      return result;
    } catch (error) {
      this.#metrics.observeStoreCall({
        call: method,
        errorCode: errorCodeOf(error),
        seconds: (performance.now() - started) / 1000,
      });
      throw error;
    }
  }

  async health(): Promise<StoreHealth> {
    const started = performance.now();
    const health = await this.#store.health();
    this.#metrics.observeStoreCall({
      call: "health",
      ...(health.ok ? {} : { errorCode: "unhealthy" }),
      seconds: (performance.now() - started) / 1000,
    });
    return health;
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}
