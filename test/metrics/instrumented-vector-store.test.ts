import { describe, expect, it } from "vitest";
import { StoreError } from "../../src/errors.ts";
import { InstrumentedVectorStore } from "../../src/metrics/instrumented-vector-store.ts";
import type { StoreCallObservation } from "../../src/metrics/metrics.ts";
import type { VectorStore } from "../../src/store/index.ts";

/** A store answering `count` with 7, failing `search`, and reporting the given health. */
function fakeStore(health: { ok: boolean; reason?: string }) {
  const calls: string[] = [];
  let closed = 0;
  const store = new Proxy({} as VectorStore, {
    get(_target, property) {
      if (property === "then") return undefined;
      return async () => {
        calls.push(String(property));
        if (property === "count") return 7;
        if (property === "search")
          throw new StoreError("Milvus at 127.0.0.1:19530 is unreachable.", { code: "store_unavailable" });
        if (property === "health") return health;
        if (property === "close") closed += 1;
        return undefined;
      };
    },
  });
  return { store, calls, closed: () => closed };
}

function recorder() {
  const observed: StoreCallObservation[] = [];
  return { observed, metrics: { observeStoreCall: (call: StoreCallObservation) => observed.push(call) } };
}

describe("InstrumentedVectorStore", () => {
  it("times each call, answering what the store answered", async () => {
    const { store, calls } = fakeStore({ ok: true });
    const { observed, metrics } = recorder();
    const instrumented = new InstrumentedVectorStore({ store, metrics });
    expect(await instrumented.count({ kind: "image", tenant: "t" })).toBe(7);
    expect(calls).toEqual(["count"]);
    expect(observed).toEqual([{ call: "count", seconds: expect.any(Number) }]);
    expect(observed[0]?.seconds).toBeGreaterThanOrEqual(0);
  });

  it("reports a failed call with its error code and throws the same error", async () => {
    const { store } = fakeStore({ ok: true });
    const { observed, metrics } = recorder();
    const instrumented = new InstrumentedVectorStore({ store, metrics });
    const failure = instrumented.search({ kind: "image", tenant: "t", vector: [1, 0], topK: 1 });
    await expect(failure).rejects.toBeInstanceOf(StoreError);
    await expect(failure).rejects.toThrow("unreachable");
    expect(observed).toEqual([
      { call: "search", errorCode: "store_unavailable", seconds: expect.any(Number) },
    ]);
  });

  it("reports an unhealthy store as an error of the health call, and passes the health on", async () => {
    const { store } = fakeStore({ ok: false, reason: "Lite is restarting" });
    const { observed, metrics } = recorder();
    const instrumented = new InstrumentedVectorStore({ store, metrics });
    expect(await instrumented.health()).toEqual({ ok: false, reason: "Lite is restarting" });
    expect(observed).toEqual([{ call: "health", errorCode: "unhealthy", seconds: expect.any(Number) }]);
  });

  it("closes the store it wraps", async () => {
    const fake = fakeStore({ ok: true });
    const { observed, metrics } = recorder();
    await new InstrumentedVectorStore({ store: fake.store, metrics }).close();
    expect(fake.closed()).toBe(1);
    expect(observed).toEqual([]);
  });

  it("wraps a store once per metrics, so services assembled again count each call once", async () => {
    const { store } = fakeStore({ ok: true });
    const first = recorder();
    const second = recorder();
    const wrapped = InstrumentedVectorStore.wrap({ store, metrics: first.metrics });
    expect(InstrumentedVectorStore.wrap({ store: wrapped, metrics: first.metrics })).toBe(wrapped);
    const rewrapped = InstrumentedVectorStore.wrap({ store: wrapped, metrics: second.metrics });
    await rewrapped.count({ kind: "image", tenant: "t" });
    expect(first.observed).toEqual([]);
    expect(second.observed.map((call) => call.call)).toEqual(["count"]);
  });
});
