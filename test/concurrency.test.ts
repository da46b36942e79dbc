import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { mapWithConcurrency } from "../src/concurrency.ts";

describe("mapWithConcurrency", () => {
  it("keeps the order of the items whatever order the tasks finish in", async () => {
    const delays = [30, 5, 20, 1, 10];
    const results = await mapWithConcurrency({
      items: delays,
      limit: 3,
      task: async (delay, index) => {
        await sleep(delay);
        return `${index}:${delay}`;
      },
    });
    expect(results).toEqual(["0:30", "1:5", "2:20", "3:1", "4:10"]);
  });

  it("never runs more than the limit at once, and uses all of it", async () => {
    let running = 0;
    let most = 0;
    const started: number[] = [];
    await mapWithConcurrency({
      items: Array.from({ length: 12 }, (_, index) => index),
      limit: 4,
      task: async (item) => {
        started.push(item);
        running += 1;
        most = Math.max(most, running);
        await sleep(2 + (item % 3));
        running -= 1;
      },
    });
    expect(most).toBe(4);
    expect(started).toEqual(Array.from({ length: 12 }, (_, index) => index));
  });

  it("runs one at a time when the limit is below 1 or not a number", async () => {
    for (const limit of [0, -2, Number.NaN, 0.5]) {
      let running = 0;
      let most = 0;
      await mapWithConcurrency({
        items: [1, 2, 3],
        limit,
        task: async () => {
          running += 1;
          most = Math.max(most, running);
          await sleep(1);
          running -= 1;
        },
      });
      expect(most).toBe(1);
    }
  });

  it("resolves an empty list without calling the task", async () => {
    const results = await mapWithConcurrency({
      items: [],
      limit: 2,
      task: async () => {
        throw new Error("not called");
      },
    });
    expect(results).toEqual([]);
  });

  it("rejects with the first error and starts no task after it", async () => {
    const started: number[] = [];
    const failure = new Error("item 2 failed");
    const outcome = mapWithConcurrency({
      items: [0, 1, 2, 3, 4, 5],
      limit: 2,
      task: async (item) => {
        started.push(item);
        await sleep(item === 2 ? 1 : 10);
        if (item === 2) throw failure;
        if (item === 3) throw new Error("a later failure");
        return item;
      },
    });
    await expect(outcome).rejects.toBe(failure);
    await sleep(30);
    expect(started).toEqual([0, 1, 2, 3]);
  });

  it("rejects a task that throws synchronously like one that rejects", async () => {
    const outcome = mapWithConcurrency({
      items: [1],
      limit: 1,
      task: (): Promise<number> => {
        throw new Error("at once");
      },
    });
    await expect(outcome).rejects.toThrow("at once");
  });

  it("stops starting tasks and rejects with the reason once the signal aborts", async () => {
    const controller = new AbortController();
    const started: number[] = [];
    const outcome = mapWithConcurrency({
      items: [0, 1, 2, 3, 4],
      limit: 2,
      signal: controller.signal,
      task: async (item) => {
        started.push(item);
        await sleep(20);
        return item;
      },
    });
    await sleep(5);
    const reason = new Error("caller went away");
    controller.abort(reason);
    await expect(outcome).rejects.toBe(reason);
    await sleep(40);
    expect(started).toEqual([0, 1]);
  });

  it("rejects at once, without running a task, when the signal is already aborted", async () => {
    const controller = new AbortController();
    controller.abort(new Error("too late"));
    let calls = 0;
    const outcome = mapWithConcurrency({
      items: [1, 2],
      limit: 2,
      signal: controller.signal,
      task: async () => {
        calls += 1;
      },
    });
    await expect(outcome).rejects.toThrow("too late");
    expect(calls).toBe(0);
  });
});
