import { describe, expect, it } from "vitest";
import { MicroBatcher } from "../../src/inference/micro-batcher.ts";

describe("MicroBatcher", () => {
  it("runs items submitted together as one batch and gives each caller its own result", async () => {
    const batches: number[][] = [];
    const batcher = new MicroBatcher<number, string>({
      maxBatch: 8,
      windowMs: 5,
      run: async (items) => {
        batches.push(items);
        // Results come back out of order in time, but in item order in the array.
        await new Promise((resolve) => setTimeout(resolve, 5));
        return items.map((item) => `r${item}`);
      },
    });
    const results = await Promise.all([1, 2, 3, 4].map((item) => batcher.submit(item)));
    expect(results).toEqual(["r1", "r2", "r3", "r4"]);
    expect(batches).toEqual([[1, 2, 3, 4]]);
  });

  it("bounds batches at maxBatch and keeps every caller's items in order", async () => {
    const batches: number[][] = [];
    const batcher = new MicroBatcher<number, number>({
      maxBatch: 3,
      windowMs: 5,
      run: async (items) => {
        batches.push(items);
        return items.map((item) => item * 10);
      },
    });
    const [many, one] = await Promise.all([batcher.submitMany([1, 2, 3, 4, 5, 6, 7]), batcher.submit(8)]);
    expect(many).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(one).toBe(80);
    expect(batches.every((batch) => batch.length <= 3)).toBe(true);
    expect(batches.flat()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("fails every caller of a failing batch, and only them", async () => {
    let call = 0;
    const batcher = new MicroBatcher<string, string>({
      maxBatch: 2,
      windowMs: 5,
      run: async (items) => {
        call += 1;
        if (call === 1) throw new Error("model run failed");
        return items.map((item) => item.toUpperCase());
      },
    });
    const outcomes = await Promise.allSettled(["a", "b", "c"].map((item) => batcher.submit(item)));
    expect(outcomes[0]).toMatchObject({ status: "rejected", reason: new Error("model run failed") });
    expect(outcomes[1]).toMatchObject({ status: "rejected", reason: new Error("model run failed") });
    expect(outcomes[2]).toEqual({ status: "fulfilled", value: "C" });
  });

  it("fails the batch when the run returns a result count that does not match", async () => {
    const batcher = new MicroBatcher<number, number>({ maxBatch: 4, windowMs: 1, run: async () => [1] });
    await expect(batcher.submitMany([1, 2])).rejects.toThrow(/batch of 2 items returned 1 results/);
  });

  it("runs at most `concurrency` batches at once; what arrives meanwhile goes in the next batch", async () => {
    let running = 0;
    let most = 0;
    const batches: number[][] = [];
    const batcher = new MicroBatcher<number, number>({
      maxBatch: 4,
      windowMs: 1,
      concurrency: 1,
      run: async (items) => {
        running += 1;
        most = Math.max(most, running);
        batches.push(items);
        await new Promise((resolve) => setTimeout(resolve, 20));
        running -= 1;
        return items;
      },
    });
    const first = batcher.submit(1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const rest = [2, 3, 4].map((item) => batcher.submit(item));
    expect(await Promise.all([first, ...rest])).toEqual([1, 2, 3, 4]);
    expect(most).toBe(1);
    expect(batches).toEqual([[1], [2, 3, 4]]);
  });

  it("refuses a batch size that is not a positive integer", () => {
    expect(() => new MicroBatcher({ maxBatch: 0, run: async () => [] })).toThrow(/maxBatch/);
  });
});

describe("MicroBatcher.drain", () => {
  it("starts waiting items at once and resolves when every batch has ended", async () => {
    const done: number[] = [];
    const batcher = new MicroBatcher<number, number>({
      maxBatch: 8,
      windowMs: 10_000,
      run: async (items) => {
        await new Promise((resolve) => setTimeout(resolve, 10));
        done.push(...items);
        return items;
      },
    });
    const results = batcher.submitMany([1, 2]);
    await batcher.drain();
    expect(done).toEqual([1, 2]);
    expect(await results).toEqual([1, 2]);
    await batcher.drain();
  });
});
