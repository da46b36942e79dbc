import { describe, expect, it } from "vitest";
import type { AuditEntry, AuditLog } from "../../src/audit/audit-log.ts";
import { ConflictError, MediaError, NotFoundError, StoreError } from "../../src/errors.ts";
import { AUDIT_BATCH, createJobRegistry, type JobEvent, type JobRunner } from "../../src/ingest/jobs.ts";

/** A runner that stores even inputs, skips multiples of three and fails odd ones. */
const evenOddRunner: JobRunner<number> = async ({ items, report }) => {
  for (const { index, input } of items) {
    await new Promise((resolve) => setImmediate(resolve));
    if (input % 3 === 0) report(index, { status: "skipped", id: `img_${input}` });
    else if (input % 2 === 0) report(index, { status: "stored", id: `img_${input}` });
    else report(index, { status: "failed", error: new MediaError(`item ${input} is odd`) });
  }
};

function items(values: number[]) {
  return values.map((value) => ({ describe: { filename: `${value}.png` }, input: value }));
}

async function collect(iterable: AsyncIterable<JobEvent>): Promise<JobEvent[]> {
  const events: JobEvent[] = [];
  for await (const event of iterable) events.push(event);
  return events;
}

describe("JobRegistry", () => {
  it("runs a job and keeps every item's outcome and the counts", async () => {
    const jobs = createJobRegistry();
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2, 3, 5, 4]),
      run: evenOddRunner,
    });
    expect(created.id).toMatch(/^job_[0-9a-f]{24}$/);
    expect(["queued", "running"]).toContain(created.status);
    const job = await jobs.wait({ id: created.id, tenant: "t" });
    expect(job.status).toBe("done");
    expect(job.counts).toEqual({ total: 4, pending: 0, done: 2, skipped: 1, failed: 1 });
    expect(job.items.map((item) => [item.index, item.status, item.id, item.describe.filename])).toEqual([
      [0, "stored", "img_2", "2.png"],
      [1, "skipped", "img_3", "3.png"],
      [2, "failed", undefined, "5.png"],
      [3, "stored", "img_4", "4.png"],
    ]);
    expect(job.items[2]?.error).toEqual({ code: "media_invalid", message: "item 5 is odd" });
    expect(job.finishedAt).toBeDefined();
  });

  it("a job whose every item failed ends failed; a runner that throws fails the job with its reason", async () => {
    const jobs = createJobRegistry();
    const allBad = jobs.create({ tenant: "t", kind: "images", items: items([1, 5]), run: evenOddRunner });
    expect((await jobs.wait({ id: allBad.id, tenant: "t" })).status).toBe("failed");

    const broken = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2, 4]),
      run: async ({ items: work, report }) => {
        report(work[0]?.index ?? 0, { status: "stored", id: "img_2" });
        throw new StoreError("Milvus at 127.0.0.1:1 is unreachable.");
      },
    });
    const job = await jobs.wait({ id: broken.id, tenant: "t" });
    expect(job.status).toBe("failed");
    expect(job.error).toEqual({ code: "store_error", message: "Milvus at 127.0.0.1:1 is unreachable." });
    expect(job.counts).toMatchObject({ done: 1, pending: 1 });
  });

  it("hides jobs from other tenants", async () => {
    const jobs = createJobRegistry();
    const created = jobs.create({ tenant: "a", kind: "images", items: items([2]), run: evenOddRunner });
    expect(() => jobs.get({ id: created.id, tenant: "b" })).toThrow(NotFoundError);
    expect(() => jobs.get({ id: "job_nope", tenant: "a" })).toThrow(/No job "job_nope"/);
    await jobs.wait({ id: created.id, tenant: "a" });
  });

  it("resume re-runs only the items not done, and refuses while the job runs", async () => {
    const jobs = createJobRegistry();
    const seen: number[][] = [];
    let failOnce = true;
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2, 4, 6, 8]),
      run: async ({ items: work, report }) => {
        seen.push(work.map((item) => item.input));
        for (const { index, input } of work) {
          if (input === 6 && failOnce) {
            failOnce = false;
            throw new StoreError("store went away");
          }
          report(index, { status: "stored", id: `img_${input}` });
        }
      },
    });
    await expect(jobs.resume({ id: created.id, tenant: "t" })).rejects.toThrow(ConflictError);
    const first = await jobs.wait({ id: created.id, tenant: "t" });
    expect(first.status).toBe("failed");
    expect(first.counts).toMatchObject({ done: 2, pending: 2 });

    const resumed = await jobs.resume({ id: created.id, tenant: "t" });
    expect(["queued", "running"]).toContain(resumed.status);
    const second = await jobs.wait({ id: created.id, tenant: "t" });
    expect(second.status).toBe("done");
    expect(second.error).toBeUndefined();
    expect(second.counts).toEqual({ total: 4, pending: 0, done: 4, skipped: 0, failed: 0 });
    expect(seen).toEqual([
      [2, 4, 6, 8],
      [6, 8],
    ]);
    // Nothing left to do: resuming again changes nothing.
    expect((await jobs.resume({ id: created.id, tenant: "t" })).status).toBe("done");
  });

  it("runs one job at a time by default, the others queued", async () => {
    const jobs = createJobRegistry();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2]),
      run: async ({ items: work, report }) => {
        await gate;
        report(work[0]?.index ?? 0, { status: "stored", id: "img_2" });
      },
    });
    const second = jobs.create({ tenant: "t", kind: "images", items: items([4]), run: evenOddRunner });
    expect(jobs.get({ id: first.id, tenant: "t" }).status).toBe("running");
    expect(jobs.get({ id: second.id, tenant: "t" }).status).toBe("queued");
    release();
    expect((await jobs.wait({ id: second.id, tenant: "t" })).status).toBe("done");
  });

  it("streams progress, item and done events, and replays the end of a finished job", async () => {
    const jobs = createJobRegistry();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2, 5]),
      run: async (context) => {
        await gate;
        await evenOddRunner(context);
      },
    });
    const streaming = collect(jobs.events({ id: created.id, tenant: "t" }));
    release();
    const events = await streaming;
    const types = events.map((event) => event.type);
    expect(types[0]).toBe("progress");
    expect(types.filter((type) => type === "item")).toHaveLength(2);
    expect(types.at(-1)).toBe("done");
    const last = events.at(-1);
    expect(last?.type === "done" && last.data.counts).toEqual({
      total: 2,
      pending: 0,
      done: 1,
      skipped: 0,
      failed: 1,
    });

    const replay = await collect(jobs.events({ id: created.id, tenant: "t" }));
    expect(replay.map((event) => event.type)).toEqual(["progress", "done"]);
  });

  it("ends a failed job's stream with an error event", async () => {
    const jobs = createJobRegistry();
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2]),
      run: async () => {
        throw new StoreError("store down");
      },
    });
    await jobs.wait({ id: created.id, tenant: "t" });
    const events = await collect(jobs.events({ id: created.id, tenant: "t" }));
    const last = events.at(-1);
    expect(last?.type).toBe("error");
    expect(last?.type === "error" && last.data.error.message).toBe("store down");
  });

  it("stops waiting for events when the signal aborts", async () => {
    const jobs = createJobRegistry();
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2]),
      run: () => new Promise(() => undefined),
    });
    const abort = new AbortController();
    const streaming = collect(jobs.events({ id: created.id, tenant: "t", signal: abort.signal }));
    setTimeout(() => abort.abort(), 20);
    const events = await streaming;
    expect(events.map((event) => event.type)).toEqual(["progress"]);
  });

  it("close() aborts running jobs and fails queued ones; no new jobs afterwards", async () => {
    const jobs = createJobRegistry();
    const running = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2, 4]),
      run: async ({ items: work, report, signal }) => {
        report(work[0]?.index ?? 0, { status: "stored", id: "img_2" });
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
      },
    });
    const queued = jobs.create({ tenant: "t", kind: "images", items: items([6]), run: evenOddRunner });
    await jobs.close();
    const stopped = jobs.get({ id: running.id, tenant: "t" });
    expect(stopped.status).toBe("failed");
    expect(stopped.error?.code).toBe("shutting_down");
    expect(stopped.counts).toMatchObject({ done: 1, pending: 1 });
    expect(jobs.get({ id: queued.id, tenant: "t" }).status).toBe("failed");
    expect(() => jobs.create({ tenant: "t", kind: "images", items: items([2]), run: evenOddRunner })).toThrow(
      /shutting down/,
    );
  });

  it("refuses new jobs beyond the cap while none has ended", async () => {
    const jobs = createJobRegistry({ maxJobs: 1 });
    jobs.create({ tenant: "t", kind: "images", items: items([2]), run: () => new Promise(() => undefined) });
    expect(() => jobs.create({ tenant: "t", kind: "images", items: items([2]), run: evenOddRunner })).toThrow(
      /jobs are queued or running/,
    );
  });
});

describe("JobRegistry audit trail", () => {
  /** An audit log that keeps its entries in memory (this tests the registry's logic, not the file). */
  function memoryAudit() {
    const entries: AuditEntry[] = [];
    const log: AuditLog = {
      async record(entry) {
        entries.push(entry);
      },
      async close() {},
    };
    return { entries, log };
  }

  it("records the ids a run stores for its creator, in lines of at most AUDIT_BATCH", async () => {
    const { entries, log } = memoryAudit();
    const jobs = createJobRegistry();
    const values = Array.from({ length: AUDIT_BATCH + 3 }, (_, index) => 2 * (index + 1) * 5 + 2);
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items(values),
      run: async ({ items: work, report }) => {
        for (const { index, input } of work) report(index, { status: "stored", id: `img_${input}` });
      },
      audit: { log, keyId: "key_0123456789abcdef", route: "POST /v1/images", requestId: "req-1" },
    });
    await jobs.wait({ id: created.id, tenant: "t" });
    expect(entries.map((entry) => entry.itemIds.length)).toEqual([AUDIT_BATCH, 3]);
    expect(entries[0]).toMatchObject({
      action: "ingest",
      keyId: "key_0123456789abcdef",
      tenant: "t",
      route: "POST /v1/images",
      requestId: "req-1",
      detail: { jobId: created.id, kind: "images" },
    });
    expect(entries.flatMap((entry) => entry.itemIds)).toEqual(values.map((value) => `img_${value}`));
  });

  it("records a resume before its run, whose writes are the resumer's; skipped and failed items are not writes", async () => {
    const { entries, log } = memoryAudit();
    const jobs = createJobRegistry();
    let failFirst = true;
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2, 3, 4]),
      run: async ({ items: work, report }) => {
        for (const { index, input } of work) {
          if (input === 4 && failFirst) {
            failFirst = false;
            report(index, { status: "failed", error: { code: "x", message: "not yet" } });
          } else if (input === 3) report(index, { status: "skipped", id: "img_3" });
          else report(index, { status: "stored", id: `img_${input}` });
        }
      },
      audit: { log, keyId: "key_aaaaaaaaaaaaaaaa", route: "POST /v1/images", requestId: "req-create" },
    });
    await jobs.wait({ id: created.id, tenant: "t" });
    await jobs.resume({
      id: created.id,
      tenant: "t",
      actor: { keyId: "key_bbbbbbbbbbbbbbbb", route: "POST /v1/jobs/{id}/resume", requestId: "req-resume" },
    });
    await jobs.wait({ id: created.id, tenant: "t" });
    expect(entries.map((entry) => [entry.action, entry.keyId, entry.requestId, entry.itemIds])).toEqual([
      ["ingest", "key_aaaaaaaaaaaaaaaa", "req-create", ["img_2"]],
      ["job.resume", "key_bbbbbbbbbbbbbbbb", "req-resume", [created.id]],
      ["ingest", "key_bbbbbbbbbbbbbbbb", "req-resume", ["img_4"]],
    ]);
  });

  it("keeps the job's outcome when the audit log fails", async () => {
    const jobs = createJobRegistry();
    const created = jobs.create({
      tenant: "t",
      kind: "images",
      items: items([2]),
      run: evenOddRunner,
      audit: {
        log: {
          record: async () => {
            throw new Error("disk full");
          },
          close: async () => undefined,
        },
        keyId: null,
        route: "POST /v1/images",
        requestId: null,
      },
    });
    expect((await jobs.wait({ id: created.id, tenant: "t" })).status).toBe("done");
  });
});

describe("JobRegistry: items found while running", () => {
  it("counts added items and unlisted skipped ones, and a resume re-runs only the failed added items", async () => {
    const jobs = createJobRegistry();
    let runs = 0;
    const run: JobRunner<string> = async ({ items: work, report, add, setUnlistedSkipped }) => {
      runs += 1;
      if (runs === 1) {
        for (const id of ["img_a", "img_b", "img_c"]) {
          const index = add({ describe: { kind: "image" }, input: id, id });
          if (id === "img_b") report(index, { status: "failed", error: new MediaError("unreadable") });
          else report(index, { status: "stored", id });
        }
        setUnlistedSkipped(5);
        return;
      }
      expect(work.map((item) => item.input)).toEqual(["img_b"]);
      for (const { index, input } of work) report(index, { status: "stored", id: input });
    };
    const created = jobs.create({ tenant: "t", kind: "ocr", items: [], run });
    const first = await jobs.wait({ id: created.id, tenant: "t" });
    expect(first.counts).toEqual({ total: 8, pending: 0, done: 2, skipped: 5, failed: 1 });
    expect(first.items.map((item) => [item.id, item.status, item.describe.kind])).toEqual([
      ["img_a", "stored", "image"],
      ["img_b", "failed", "image"],
      ["img_c", "stored", "image"],
    ]);
    await jobs.resume({ id: created.id, tenant: "t" });
    const second = await jobs.wait({ id: created.id, tenant: "t" });
    expect(second.counts).toEqual({ total: 8, pending: 0, done: 3, skipped: 5, failed: 0 });
  });
});

describe("JobRegistry.active", () => {
  it("names the tenant's queued or running job of a kind, and none once it ended", async () => {
    const jobs = createJobRegistry();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const created = jobs.create<number>({
      tenant: "t",
      kind: "ocr",
      items: [],
      run: async () => {
        await gate;
      },
    });
    expect(jobs.active({ tenant: "t", kind: "ocr" })?.id).toBe(created.id);
    expect(jobs.active({ tenant: "other", kind: "ocr" })).toBeUndefined();
    expect(jobs.active({ tenant: "t", kind: "images" })).toBeUndefined();
    release();
    await jobs.wait({ id: created.id, tenant: "t" });
    expect(jobs.active({ tenant: "t", kind: "ocr" })).toBeUndefined();
  });
});
