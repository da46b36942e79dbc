/**
 * The event store contract, run against both adapters: the file store on a temporary directory and the
 * PostgreSQL store on a database of this file's own (migrated with `migrate`). Events come back in the
 * order they were appended, per tenant and user, trimmed to the newest ones the same way, counted when a
 * user is deleted; two stores on one backing store (two replicas) see each other's events and deletions,
 * and a new store (a restart) finds them. Then what only the database store does.
 */
import { expect, it } from "vitest";
import { ValidationError } from "../../src/errors.ts";
import { createFileEventStore, type EventStore, type UserEvent } from "../../src/recommend/index.ts";
import { createPgEventStore } from "../../src/recommend/pg-event-store.ts";
import { type ContractAdapter, describeContract, onDatabase, onDirectory } from "../db/contract-adapters.ts";

const event = (user: string, index: number, type: UserEvent["type"] = "like"): UserEvent => ({
  user,
  item: `img_${index}`,
  type,
  at: 1_700_000_000_000 + index,
});

/** One adapter under the contract. */
interface Adapter extends ContractAdapter {
  open(options?: { maxEventsPerUser?: number }): EventStore;
}

const fileAdapter: Adapter = onDirectory("loupe-events-", (directory) => ({
  open: (options = {}) => createFileEventStore({ dir: directory.path, ...options }),
}));

const pgAdapter = onDatabase<Adapter>({ empty: "truncate loupe_user_events" }, (database) => ({
  // Each store gets a pool of its own, as two processes would.
  open: (options = {}) => createPgEventStore({ pool: database.ownPool(), ...options }),
}));

describeContract("the event store contract: $name adapter", [fileAdapter, pgAdapter], (adapter) => {
  it("keeps each tenant's and user's events apart, in the order appended, across a restart", async () => {
    const first = adapter.open();
    await first.append({ tenant: "acme", event: event("ann", 2) });
    await first.append({ tenant: "acme", event: event("ann", 1, "dislike") });
    await first.append({ tenant: "acme", event: event("bob", 3, "select") });
    await first.append({ tenant: "other", event: event("ann", 4, "view") });
    await first.close();

    const second = adapter.open();
    // Appended order, not the order of `at`.
    expect(await second.list({ tenant: "acme", user: "ann" })).toEqual([
      event("ann", 2),
      event("ann", 1, "dislike"),
    ]);
    expect(await second.list({ tenant: "acme", user: "bob" })).toEqual([event("bob", 3, "select")]);
    expect(await second.list({ tenant: "other", user: "ann" })).toEqual([event("ann", 4, "view")]);
    expect(await second.list({ tenant: "other", user: "bob" })).toEqual([]);
  });

  it("lists the newest events and trims a user to them once past twice the limit", async () => {
    const store = adapter.open({ maxEventsPerUser: 10 });
    for (let index = 0; index < 20; index += 1)
      await store.append({ tenant: "acme", event: event("ann", index) });
    expect((await store.list({ tenant: "acme", user: "ann" })).map(({ item }) => item)).toEqual(
      Array.from({ length: 10 }, (_value, index) => `img_${index + 10}`),
    );
    // 20 kept until the 21st arrives, then the newest 10.
    await store.append({ tenant: "acme", event: event("ann", 20) });
    expect(await store.list({ tenant: "acme", user: "ann" })).toHaveLength(10);
    expect(await store.deleteUser({ tenant: "acme", user: "ann" })).toBe(10);
  });

  it("counts a deleted user's events, keeps other users and tenants, and counts 0 the second time", async () => {
    const store = adapter.open();
    await Promise.all([1, 2, 3].map((index) => store.append({ tenant: "acme", event: event("ann", index) })));
    await store.append({ tenant: "acme", event: event("bob", 5) });
    await store.append({ tenant: "other", event: event("ann", 9) });
    expect(await store.deleteUser({ tenant: "acme", user: "ann" })).toBe(3);
    expect(await store.list({ tenant: "acme", user: "ann" })).toEqual([]);
    expect(await store.list({ tenant: "acme", user: "bob" })).toHaveLength(1);
    expect(await store.list({ tenant: "other", user: "ann" })).toHaveLength(1);
    expect(await store.deleteUser({ tenant: "acme", user: "ann" })).toBe(0);
  });

  it("shows one replica's events and deletions to another", async () => {
    const first = adapter.open();
    const second = adapter.open();
    await first.append({ tenant: "acme", event: event("ann", 1) });
    await second.append({ tenant: "acme", event: event("ann", 2) });
    expect((await first.list({ tenant: "acme", user: "ann" })).map(({ item }) => item)).toEqual([
      "img_1",
      "img_2",
    ]);
    expect(await second.deleteUser({ tenant: "acme", user: "ann" })).toBe(2);
    expect(await first.list({ tenant: "acme", user: "ann" })).toEqual([]);
  });

  it("loses no event appended concurrently", async () => {
    const store = adapter.open();
    await Promise.all(
      Array.from({ length: 40 }, (_value, index) =>
        store.append({ tenant: "acme", event: event("ann", index) }),
      ),
    );
    const items = (await store.list({ tenant: "acme", user: "ann" })).map(({ item }) => item);
    expect(items.sort()).toEqual(Array.from({ length: 40 }, (_value, index) => `img_${index}`).sort());
  });
});

describeContract("the PostgreSQL event store", [pgAdapter], (adapter) => {
  it("refuses a user id outside the pattern with a ValidationError, and keeps `at` to the millisecond", async () => {
    const store = adapter.open();
    const error = await store
      .append({ tenant: "acme", event: event("../x", 1) })
      .catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toContain("loupe_user_events");
    await store.append({
      tenant: "acme",
      event: { user: "ann", item: "img_1", type: "view", at: 946_684_800_123 },
    });
    expect(await store.list({ tenant: "acme", user: "ann" })).toEqual([
      { user: "ann", item: "img_1", type: "view", at: 946_684_800_123 },
    ]);
    const stored = await adapter.database.pool.query<{ at: Date }>("select at from loupe_user_events");
    expect(stored.rows[0]?.at.toISOString()).toBe("2000-01-01T00:00:00.123Z");
  });
});
