/**
 * Runs async tasks one at a time, in the order they were queued. Milvus Lite supports a single writer
 * per collection, so the store sends each collection's writes through one of these.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Queues `task`; resolves or rejects with its outcome. A failed task does not stop later ones. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every task queued so far has settled. */
  async idle(): Promise<void> {
    await this.#tail;
  }
}
