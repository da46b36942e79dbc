/**
 * The file event store: per tenant and user, kept across a restart, compacted atomically, a user's
 * deletion leaving nothing on disk or in memory.
 */
import { appendFile, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileEventStore, type UserEvent, userEventsFile } from "../../src/recommend/index.ts";
import { testDirectory } from "../db/contract-adapters.ts";

const event = (user: string, index: number, type: UserEvent["type"] = "like"): UserEvent => ({
  user,
  item: `img_${index}`,
  type,
  at: 1_700_000_000_000 + index,
});

describe("createFileEventStore", () => {
  const directory = testDirectory("loupe-events-");
  beforeEach(directory.reset);
  afterEach(directory.cleanup);

  it("keeps each tenant's and user's events apart, across a restart", async () => {
    const first = createFileEventStore({ dir: directory.path });
    await first.append({ tenant: "acme", event: event("ann", 1) });
    await first.append({ tenant: "acme", event: event("ann", 2, "dislike") });
    await first.append({ tenant: "acme", event: event("bob", 3) });
    await first.append({ tenant: "other", event: event("ann", 4) });
    await first.close();

    const second = createFileEventStore({ dir: directory.path });
    expect(await second.list({ tenant: "acme", user: "ann" })).toEqual([
      event("ann", 1),
      event("ann", 2, "dislike"),
    ]);
    expect(await second.list({ tenant: "acme", user: "bob" })).toEqual([event("bob", 3)]);
    expect(await second.list({ tenant: "other", user: "ann" })).toEqual([event("ann", 4)]);
    expect(await second.list({ tenant: "other", user: "bob" })).toEqual([]);
  });

  it("names no file after a raw tenant or user id", async () => {
    const store = createFileEventStore({ dir: directory.path });
    await store.append({ tenant: "..", event: event("../x", 1) });
    const file = userEventsFile(directory.path, "..")("../x");
    expect(path.dirname(path.dirname(file))).toBe(directory.path);
    expect(await store.list({ tenant: "..", user: "../x" })).toHaveLength(1);
  });

  it("compacts to the newest events, written whole, once a file holds twice the limit", async () => {
    const store = createFileEventStore({ dir: directory.path, maxEventsPerUser: 10 });
    for (let index = 0; index < 21; index += 1)
      await store.append({ tenant: "acme", event: event("ann", index) });
    const file = userEventsFile(directory.path, "acme")("ann");
    const lines = (await readFile(file, "utf8")).trim().split("\n");
    expect(lines).toHaveLength(10);
    expect((await store.list({ tenant: "acme", user: "ann" })).map(({ item }) => item)).toEqual(
      Array.from({ length: 10 }, (_value, index) => `img_${index + 11}`),
    );
    // No temporary file of the compaction is left beside it.
    expect(await readdir(path.dirname(file))).toEqual([path.basename(file)]);
  });

  it("skips a line cut short by a crash", async () => {
    const store = createFileEventStore({ dir: directory.path });
    await store.append({ tenant: "acme", event: event("ann", 1) });
    await appendFile(userEventsFile(directory.path, "acme")("ann"), '{"item":"img_2","ty');
    await store.append({ tenant: "acme", event: event("ann", 3) });
    expect((await store.list({ tenant: "acme", user: "ann" })).map(({ item }) => item)).toEqual([
      "img_1",
      "img_3",
    ]);
  });

  it("deletes a user: nothing on disk, nothing queued in memory, other users kept", async () => {
    const store = createFileEventStore({ dir: directory.path });
    await Promise.all([1, 2, 3].map((index) => store.append({ tenant: "acme", event: event("ann", index) })));
    await store.append({ tenant: "other", event: event("ann", 9) });
    expect(await store.deleteUser({ tenant: "acme", user: "ann" })).toBe(3);
    expect(await store.list({ tenant: "acme", user: "ann" })).toEqual([]);
    expect(await store.list({ tenant: "other", user: "ann" })).toHaveLength(1);
    const left = await readdir(directory.path, { recursive: true });
    expect(left.filter((name) => name.includes(Buffer.from("acme").toString("base64url")))).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.pendingUsers).toBe(0);
    expect(await store.deleteUser({ tenant: "acme", user: "ann" })).toBe(0);
  });
});
