/**
 * The embedded Milvus Lite, supervised: {@link SupervisedVectorStore} starts Lite and the store over it,
 * notices when Lite exits without being asked to, and restarts it with backoff, a bounded number of
 * times in a row, connecting a fresh store (which loads the collections again: Lite does not keep load
 * state). While Lite is down every call fails at once with a `NotReadyError` that says why and when to
 * retry (`Retry-After`), and so do the calls that were in flight when it went; `health()` reports the
 * same reason, which `/readyz` answers with.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { NotReadyError, StoreError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { type ForwardedCall, ForwardingVectorStore } from "./forwarding-vector-store.ts";
import type { MilvusLiteExit, MilvusLiteProcess } from "./milvus-lite.ts";
import type { RecordKind } from "./record-id.ts";
import {
  MAX_IDS_PER_CALL,
  type StoreHealth,
  type UpdateRequest,
  type UpsertRequest,
  type VectorStore,
} from "./vector-store.ts";

/** Options of {@link SupervisedVectorStore.start}. */
export interface SupervisedVectorStoreOptions {
  /** Starts Milvus Lite; `avoidPort` is the port of the Lite that exited (a write queued for it must not reach the new one). */
  startLite(options: { avoidPort?: number }): Promise<MilvusLiteProcess>;
  /** Connects the store to a started Lite, making sure the collections exist and are loaded. */
  connect(address: string): Promise<VectorStore>;
  /** Restarts tried in a row before giving up (`LOUPE_MILVUS_RESTART_ATTEMPTS`); 0 never restarts. */
  restartAttempts: number;
  /** Wait before the second restart attempt; each later one waits twice as long. The first waits none. */
  restartDelayMs?: number;
  /** Longest wait between attempts. */
  maxRestartDelayMs?: number;
  /** A Lite that ran this long before exiting starts a fresh count of attempts. */
  stableAfterMs?: number;
  logger?: Logger;
}

/** A call in flight on one Lite: failed at once if that Lite exits first. */
interface InFlight {
  settled: boolean;
  fail(error: unknown): void;
  /** For an upsert: the rows it writes, rolled back after a restart if Lite died before confirming them. */
  upsert?: { kind: RecordKind; tenant: string; ids: string[] };
  /**
   * For an update: the rows it rewrites. They existed before it, so an unconfirmed update is never
   * rolled back (deleting them would lose stored items); once confirmed, its rows are kept out of the
   * roll-back of other upserts, as a confirmed upsert's are.
   */
  update?: { kind: RecordKind; tenant: string; ids: string[] };
}

/** One Lite and the store connected to it. */
interface Generation {
  lite: MilvusLiteProcess;
  store: VectorStore;
  readyAt: number;
  inFlight: Set<InFlight>;
  exited: boolean;
}

type State =
  | { kind: "ready"; generation: Generation }
  | { kind: "restarting"; reason: string; nextAttemptAt: number }
  | { kind: "failed"; reason: string }
  | { kind: "closed" };

/** How long a call that failed on its connection waits for Lite's exit to be seen, to report the restart instead. */
const EXIT_NOTICE_MS = 1000;
/** What a Lite start and reconnect usually take, added to the wait when telling callers when to retry. */
const EXPECTED_START_SECONDS = 2;

/** Codes of store failures that concern the data or the call, not the connection to Lite. */
const NOT_CONNECTION_FAILURES = new Set(["store_rejected", "store_unsupported", "store_closed"]);

function describeExit({ code, signal }: MilvusLiteExit): string {
  return signal === null ? `exit code ${code}` : `signal ${signal}`;
}

/** The embedded Milvus Lite and its store, restarted when Lite exits. See the module comment. */
export class SupervisedVectorStore extends ForwardingVectorStore {
  readonly #options: Required<Omit<SupervisedVectorStoreOptions, "logger">> & { logger?: Logger };
  #state: State;
  #attempt = 0;
  #restarting: Promise<void> | undefined;
  readonly #closing = new AbortController();

  private constructor(options: SupervisedVectorStoreOptions, generation: Generation) {
    super();
    this.#options = {
      restartDelayMs: 1000,
      maxRestartDelayMs: 30_000,
      stableAfterMs: 60_000,
      ...options,
    };
    this.#state = { kind: "ready", generation };
    this.#watch(generation);
  }

  /**
   * Starts Lite and connects the store; a failure here stops start-up (nothing is left running).
   *
   * @throws what `startLite` or `connect` threw.
   */
  static async start(options: SupervisedVectorStoreOptions): Promise<SupervisedVectorStore> {
    const generation = await SupervisedVectorStore.#open(options, {});
    return new SupervisedVectorStore(options, generation);
  }

  static async #open(
    { startLite, connect }: Pick<SupervisedVectorStoreOptions, "startLite" | "connect">,
    { avoidPort }: { avoidPort?: number },
  ): Promise<Generation> {
    const lite = await startLite({ avoidPort });
    try {
      const store = await connect(lite.address);
      return { lite, store, readyAt: Date.now(), inFlight: new Set(), exited: false };
    } catch (error) {
      await lite.stop().catch(() => undefined);
      throw error;
    }
  }

  /** Process id of the running Lite; absent while it is down. */
  get pid(): number | undefined {
    return this.#state.kind === "ready" ? this.#state.generation.lite.pid : undefined;
  }

  /** `host:port` of the running Lite, for a connection of its own (a pack migration); absent while it is down. */
  get address(): string | undefined {
    return this.#state.kind === "ready" ? this.#state.generation.lite.address : undefined;
  }

  protected forward<T>({ method, request, run }: ForwardedCall<T>): Promise<T> {
    const state = this.#state;
    if (state.kind !== "ready") return Promise.reject(this.#notReady(state));
    const generation = state.generation;
    return new Promise<T>((resolve, reject) => {
      const entry: InFlight = {
        settled: false,
        fail: (error) => {
          if (entry.settled) return;
          entry.settled = true;
          reject(error);
        },
      };
      if (method === "upsert") {
        const { kind, tenant, records } = request as UpsertRequest<RecordKind>;
        entry.upsert = { kind, tenant, ids: records.map((record) => record.id) };
      }
      if (method === "update") {
        const { kind, tenant, patches } = request as UpdateRequest;
        entry.update = { kind, tenant, ids: patches.map((patch) => patch.id) };
      }
      generation.inFlight.add(entry);
      run(generation.store).then(
        (value) => {
          generation.inFlight.delete(entry);
          const confirmed = entry.upsert ?? entry.update;
          if (confirmed !== undefined) forgetConfirmed(generation, confirmed);
          if (entry.settled) return;
          entry.settled = true;
          resolve(value);
        },
        async (error: unknown) => {
          // The connection may drop before the exit is seen; a call failing then reports the restart.
          if (isConnectionFailure(error)) await exitNoticed(generation);
          generation.inFlight.delete(entry);
          entry.fail(error);
        },
      );
    });
  }

  async health(): Promise<StoreHealth> {
    const state = this.#state;
    if (state.kind === "ready") {
      const { generation } = state;
      const health = await generation.store.health();
      // Failing because Lite just died: report the restart, not the dropped connection.
      if (health.ok || !(await exitNoticed(generation))) return health;
      return this.health();
    }
    if (state.kind === "closed") return { ok: false, reason: "the vector store is closed" };
    return { ok: false, reason: state.reason };
  }

  /** Stops supervising, waits for queued writes, closes the store and stops Lite. Safe to call again. */
  async close(): Promise<void> {
    const state = this.#state;
    this.#state = { kind: "closed" };
    this.#closing.abort();
    await this.#restarting;
    if (state.kind === "ready") await this.#retire(state.generation, { stop: true });
  }

  #isClosed(): boolean {
    return this.#closing.signal.aborted;
  }

  #notReady(state: Exclude<State, { kind: "ready" }>): NotReadyError {
    if (state.kind === "closed") {
      return new NotReadyError("The vector store is not available: it is closed (Loupe is shutting down).");
    }
    if (state.kind === "failed") {
      return new NotReadyError(`The vector store is not available: ${state.reason}`, {
        context: { reason: state.reason },
      });
    }
    const retryAfterSeconds =
      Math.max(0, Math.ceil((state.nextAttemptAt - Date.now()) / 1000)) + EXPECTED_START_SECONDS;
    return new NotReadyError(
      `The vector store is not available: ${state.reason}. Retry in ${retryAfterSeconds} s.`,
      { retryAfterSeconds, context: { reason: state.reason } },
    );
  }

  #watch(generation: Generation): void {
    void generation.lite.exited.then((exit) => {
      generation.exited = true;
      if (this.#state.kind !== "ready" || this.#state.generation !== generation) return;
      this.#restarting = this.#recover(generation, exit).finally(() => {
        this.#restarting = undefined;
      });
    });
  }

  /** After an unexpected exit: fails the calls in flight, then restarts Lite until it answers or attempts run out. */
  async #recover(generation: Generation, exit: MilvusLiteExit): Promise<void> {
    const { restartAttempts, logger } = this.#options;
    const exited = `Milvus Lite exited (${describeExit(exit)})`;
    if (Date.now() - generation.readyAt >= this.#options.stableAfterMs) this.#attempt = 0;
    this.#state = { kind: "restarting", reason: `${exited}; restarting`, nextAttemptAt: Date.now() };

    const inDoubt: NonNullable<InFlight["upsert"]>[] = [];
    const failure = this.#notReady(this.#state);
    const failedCalls = generation.inFlight.size;
    for (const entry of generation.inFlight) {
      if (entry.upsert !== undefined && !entry.settled) inDoubt.push(entry.upsert);
      entry.fail(failure);
    }
    generation.inFlight.clear();
    logger?.error(
      { pid: generation.lite.pid, ...exit, failedCalls, upsertsInDoubt: inDoubt.length },
      "Milvus Lite exited unexpectedly; restarting it",
    );
    void this.#retire(generation, { stop: false });

    const avoidPort = Number(generation.lite.address.split(":").at(-1));
    let lastError = "";
    for (;;) {
      if (this.#isClosed()) return;
      this.#attempt += 1;
      const attempt = this.#attempt;
      if (attempt > restartAttempts) {
        const reason =
          restartAttempts === 0
            ? `${exited}, and restarts are off (LOUPE_MILVUS_RESTART_ATTEMPTS=0). Restart Loupe.`
            : `${exited} and did not come back after ${restartAttempts} restart attempts (last: ${lastError.replace(/\.$/, "")}). Restart Loupe, or raise LOUPE_MILVUS_RESTART_ATTEMPTS; the log has each attempt.`;
        this.#state = { kind: "failed", reason };
        logger?.error({ attempts: restartAttempts }, "Milvus Lite did not come back; giving up");
        return;
      }
      const delayMs =
        attempt === 1
          ? 0
          : Math.min(this.#options.restartDelayMs * 2 ** (attempt - 2), this.#options.maxRestartDelayMs);
      this.#state = {
        kind: "restarting",
        reason: `${exited}; restarting, attempt ${attempt} of ${restartAttempts}`,
        nextAttemptAt: Date.now() + delayMs,
      };
      logger?.warn({ attempt, of: restartAttempts, delayMs }, "restarting Milvus Lite");
      if (delayMs > 0) {
        await sleep(delayMs, undefined, { signal: this.#closing.signal }).catch(() => undefined);
      }
      if (this.#isClosed()) return;
      let next: Generation | undefined;
      try {
        next = await SupervisedVectorStore.#open(this.#options, { avoidPort });
        await rollBack({ store: next.store, upserts: inDoubt, logger });
      } catch (error) {
        if (next !== undefined) await this.#retire(next, { stop: true });
        lastError = error instanceof Error ? error.message : String(error);
        logger?.error({ err: error, attempt, of: restartAttempts }, "restarting Milvus Lite failed");
        continue;
      }
      if (this.#isClosed()) {
        await this.#retire(next, { stop: true });
        return;
      }
      this.#state = { kind: "ready", generation: next };
      this.#watch(next);
      logger?.info({ attempt, pid: next.lite.pid, address: next.lite.address }, "Milvus Lite restarted");
      return;
    }
  }

  /** Closes a generation's store (its queued writes settle first) and, when asked, stops its Lite. */
  async #retire(generation: Generation, { stop }: { stop: boolean }): Promise<void> {
    await generation.store
      .close()
      .catch((error: unknown) => this.#options.logger?.warn({ err: error }, "closing the store failed"));
    if (stop) await generation.lite.stop();
  }
}

/**
 * Takes the rows a confirmed upsert (or update) wrote out of the other upserts still in flight: should
 * Lite die before those are confirmed, their roll-back must not delete a row this one stored (the same
 * item sent twice at once).
 */
function forgetConfirmed(
  generation: Generation,
  confirmed: { kind: RecordKind; tenant: string; ids: readonly string[] },
): void {
  const ids = new Set(confirmed.ids);
  for (const other of generation.inFlight) {
    const upsert = other.upsert;
    if (upsert === undefined || upsert.kind !== confirmed.kind || upsert.tenant !== confirmed.tenant)
      continue;
    upsert.ids = upsert.ids.filter((id) => !ids.has(id));
  }
}

/** Whether the generation's Lite has exited, or does within {@link EXIT_NOTICE_MS}. */
async function exitNoticed(generation: Generation): Promise<boolean> {
  if (generation.exited) return true;
  return Promise.race([generation.lite.exited.then(() => true), sleep(EXIT_NOTICE_MS).then(() => false)]);
}

function isConnectionFailure(error: unknown): boolean {
  return error instanceof StoreError && !NOT_CONNECTION_FAILURES.has(error.code);
}

/**
 * Deletes the rows of upserts that were in flight when Lite died. Their callers were told they failed
 * (and released what they wrote for them), but Lite may have written them before dying; deleting them
 * makes the store agree with what the callers were told. Loupe's upserts write records not stored yet
 * (ingests skip what is stored), and rows another upsert confirmed meanwhile are left out
 * ({@link forgetConfirmed}), so no row a caller was told is stored is lost.
 */
async function rollBack({
  store,
  upserts,
  logger,
}: {
  store: VectorStore;
  upserts: ReadonlyArray<{ kind: RecordKind; tenant: string; ids: readonly string[] }>;
  logger?: Logger;
}): Promise<void> {
  for (const { kind, tenant, ids } of upserts) {
    let deleted = 0;
    for (let start = 0; start < ids.length; start += MAX_IDS_PER_CALL) {
      const result = await store.delete({ kind, tenant, ids: ids.slice(start, start + MAX_IDS_PER_CALL) });
      deleted += result.deleted;
    }
    logger?.warn(
      { kind, tenant, records: ids.length, deleted },
      "rolled back an upsert that Milvus Lite did not confirm before it exited",
    );
  }
}
