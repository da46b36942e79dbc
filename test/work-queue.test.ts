import { describe, expect, it } from "vitest";
import { OverloadedError } from "../src/errors.ts";
import { WorkQueue } from "../src/work-queue.ts";

/** A task that runs until `release` is called, and records when it started. */
function gate(log: string[], name: string) {
  let release: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    release = resolve;
  });
  return {
    release: () => release(),
    task: async () => {
      log.push(`start ${name}`);
      await done;
      log.push(`end ${name}`);
      return name;
    },
  };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("WorkQueue", () => {
  it("runs at most `concurrency` tasks and starts the waiting ones first in, first out", async () => {
    const queue = new WorkQueue({ name: "test", concurrency: 2, maxWaiting: 10, deadlineMs: 0 });
    const log: string[] = [];
    const gates = ["a", "b", "c", "d", "e"].map((name) => gate(log, name));
    const results = gates.map((entry) => queue.run(entry.task));
    await tick();
    expect(log).toEqual(["start a", "start b"]);
    expect(queue.stats()).toMatchObject({ running: 2, waiting: 3 });
    gates[1]?.release();
    await tick();
    expect(log).toEqual(["start a", "start b", "end b", "start c"]);
    gates[0]?.release();
    await tick();
    expect(log.slice(4)).toEqual(["end a", "start d"]);
    for (const entry of gates) entry.release();
    expect(await Promise.all(results)).toEqual(["a", "b", "c", "d", "e"]);
    expect(log.filter((line) => line.startsWith("start"))).toEqual([
      "start a",
      "start b",
      "start c",
      "start d",
      "start e",
    ]);
    expect(queue.stats()).toMatchObject({ running: 0, waiting: 0 });
  });

  it("a newcomer does not overtake a waiter that a finished task has just started", async () => {
    const queue = new WorkQueue({ name: "test", concurrency: 1, maxWaiting: 10, deadlineMs: 0 });
    const log: string[] = [];
    const first = gate(log, "first");
    const second = gate(log, "second");
    const third = gate(log, "third");
    const running = queue.run(first.task);
    const waiting = queue.run(second.task);
    await tick();
    first.release();
    await running;
    // The slot went to "second" when "first" ended; "third" arrives in the same tick and must wait.
    const late = queue.run(third.task);
    await tick();
    expect(log.filter((line) => line.startsWith("start"))).toEqual(["start first", "start second"]);
    second.release();
    third.release();
    await Promise.all([waiting, late]);
    expect(log.filter((line) => line.startsWith("start"))).toEqual([
      "start first",
      "start second",
      "start third",
    ]);
  });

  it("refuses a task with OverloadedError and a Retry-After when maxWaiting tasks already wait", async () => {
    const queue = new WorkQueue({
      name: "chat",
      concurrency: 1,
      maxWaiting: 2,
      deadlineMs: 0,
      retryAfterSeconds: 3,
    });
    const log: string[] = [];
    const gates = ["a", "b", "c"].map((name) => gate(log, name));
    const accepted = gates.map((entry) => queue.run(entry.task));
    const refused = queue.run(async () => "never");
    await expect(refused).rejects.toBeInstanceOf(OverloadedError);
    const error = (await refused.catch((caught: unknown) => caught)) as OverloadedError;
    expect(error.status).toBe(503);
    expect(error.code).toBe("overloaded");
    expect(error.retryAfterSeconds).toBe(3);
    expect(error.message).toMatch(/chat queue is full: 1 running and 2 waiting/);
    expect(error.message).toMatch(/LOUPE_QUEUE_MAX_WAITING/);
    expect(queue.stats().rejectedFull).toBe(1);
    for (const entry of gates) entry.release();
    expect(await Promise.all(accepted)).toEqual(["a", "b", "c"]);
  });

  it("with maxWaiting 0 refuses whatever cannot start at once", async () => {
    const queue = new WorkQueue({ name: "test", concurrency: 1, maxWaiting: 0, deadlineMs: 0 });
    const log: string[] = [];
    const only = gate(log, "only");
    const running = queue.run(only.task);
    await expect(queue.run(async () => "x")).rejects.toBeInstanceOf(OverloadedError);
    only.release();
    await running;
    await expect(queue.run(async () => "after")).resolves.toBe("after");
  });

  it("drops a task that waited past its deadline without running it, and the others still run", async () => {
    const queue = new WorkQueue({ name: "test", concurrency: 1, maxWaiting: 10, deadlineMs: 30 });
    const log: string[] = [];
    const blocker = gate(log, "blocker");
    const running = queue.run(blocker.task);
    let ran = false;
    const started = performance.now();
    const late = queue.run(async () => {
      ran = true;
    });
    const error = (await late.catch((caught: unknown) => caught)) as OverloadedError;
    expect(error).toBeInstanceOf(OverloadedError);
    expect(error.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(error.message).toMatch(/deadline \(30 ms, LOUPE_REQUEST_DEADLINE_MS\)/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(queue.stats()).toMatchObject({ waiting: 0, rejectedDeadline: 1 });
    // A later task with its own, later deadline runs once the blocker ends.
    const patient = queue.run(async () => "patient", { startBy: performance.now() + 5000 });
    blocker.release();
    await running;
    await expect(patient).resolves.toBe("patient");
    expect(ran).toBe(false);
  });

  it("removes a waiting task whose signal aborts", async () => {
    const queue = new WorkQueue({ name: "test", concurrency: 1, maxWaiting: 10, deadlineMs: 0 });
    const log: string[] = [];
    const blocker = gate(log, "blocker");
    const running = queue.run(blocker.task);
    const controller = new AbortController();
    const waiting = queue.run(async () => "never", { signal: controller.signal });
    controller.abort(new Error("client left"));
    await expect(waiting).rejects.toThrow("client left");
    expect(queue.stats().waiting).toBe(0);
    blocker.release();
    await running;
  });

  it("frees the slot of a task that throws", async () => {
    const queue = new WorkQueue({ name: "test", concurrency: 1, maxWaiting: 1, deadlineMs: 0 });
    await expect(
      queue.run(async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    await expect(queue.run(async () => "next")).resolves.toBe("next");
    expect(queue.stats().running).toBe(0);
  });
});
