import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { SerialQueue } from "../../src/store/serial-queue.ts";

describe("SerialQueue", () => {
  it("runs tasks one at a time in order, past failures", async () => {
    const queue = new SerialQueue();
    const log: string[] = [];
    let running = 0;
    const task = (name: string, ms: number, fail = false) =>
      queue.run(async () => {
        running += 1;
        expect(running).toBe(1);
        log.push(`start ${name}`);
        await sleep(ms);
        log.push(`end ${name}`);
        running -= 1;
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([task("a", 20), task("b", 1, true), task("c", 5)]);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(log).toEqual(["start a", "end a", "start b", "end b", "start c", "end c"]);
    await queue.idle();
  });
});
