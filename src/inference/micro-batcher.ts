/**
 * A micro-batcher: items submitted within a few milliseconds of each other (concurrent requests each
 * embedding one query) run as one batch, and each caller gets back its own result. One model run over a
 * batch of eight costs far less than eight runs of one, and the runs stop competing for the same cores.
 */

/** Options of {@link MicroBatcher}. */
export interface MicroBatcherOptions<Item, Result> {
  /** Runs one batch; must return one result per item, in order. */
  run: (items: Item[]) => Promise<Result[]>;
  /** Most items per batch; a fuller queue is split into several batches. */
  maxBatch: number;
  /** How long the first item of a batch waits for company, in ms; 0 batches what arrives in one tick. */
  windowMs?: number;
  /** Batches running at once; the rest wait their turn, so the model's runs do not fight over cores. */
  concurrency?: number;
}

interface Pending<Item, Result> {
  item: Item;
  resolve: (result: Result) => void;
  reject: (error: unknown) => void;
}

/** See the module comment. */
export class MicroBatcher<Item, Result> {
  readonly maxBatch: number;
  readonly windowMs: number;
  readonly concurrency: number;
  readonly #run: (items: Item[]) => Promise<Result[]>;
  #pending: Pending<Item, Result>[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running = 0;
  #idle: Array<() => void> = [];

  constructor({ run, maxBatch, windowMs = 2, concurrency = 1 }: MicroBatcherOptions<Item, Result>) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1) {
      throw new RangeError(`maxBatch must be a positive integer, got ${maxBatch}.`);
    }
    this.#run = run;
    this.maxBatch = maxBatch;
    this.windowMs = Math.max(0, windowMs);
    this.concurrency = Math.max(1, Math.floor(concurrency) || 1);
  }

  /** Items waiting for a batch. */
  get waiting(): number {
    return this.#pending.length;
  }

  /** Submits one item; resolves with its result, or rejects with its batch's failure. */
  submit(item: Item): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  /** Submits several items; they may share batches with other callers'. */
  submitMany(items: readonly Item[]): Promise<Result[]> {
    return Promise.all(items.map((item) => this.submit(item)));
  }

  /** Starts what waits at once and resolves when no batch is waiting or running (before a close). */
  drain(): Promise<void> {
    if (this.#pending.length === 0 && this.#running === 0) return Promise.resolve();
    this.#flush();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #schedule(): void {
    if (this.#running >= this.concurrency) return;
    if (this.#pending.length >= this.maxBatch) {
      this.#flush();
      return;
    }
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#flush();
      }, this.windowMs);
    }
  }

  #flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#running < this.concurrency && this.#pending.length > 0) {
      const batch = this.#pending.splice(0, this.maxBatch);
      this.#running += 1;
      void this.#runBatch(batch);
    }
  }

  async #runBatch(batch: Pending<Item, Result>[]): Promise<void> {
    try {
      const results = await Promise.resolve().then(() => this.#run(batch.map((entry) => entry.item)));
      if (results.length !== batch.length) {
        throw new Error(`a batch of ${batch.length} items returned ${results.length} results`);
      }
      batch.forEach((entry, index) => {
        entry.resolve(results[index] as Result);
      });
    } catch (error) {
      for (const entry of batch) entry.reject(error);
    } finally {
      this.#running -= 1;
      // What arrived while this batch ran goes at once: it has already waited longer than the window.
      if (this.#pending.length > 0) this.#flush();
      else if (this.#running === 0) for (const resolve of this.#idle.splice(0)) resolve();
    }
  }
}
