/**
 * The PostgreSQL adapter of the {@link EventStore} port, for several Loupe processes sharing users'
 * events (`LOUPE_DATABASE_URL`): one row per event in `loupe_user_events` (migration 5), in the order
 * `seq` gives, indexed by tenant, user and seq. As the file store, it keeps the newest
 * `maxEventsPerUser` events of a user: once a user has more than twice that many, an append trims them
 * to the newest `maxEventsPerUser` (one statement; two replicas trimming at once delete the same rows).
 * `at` is kept as a timestamp, to the millisecond.
 */
import type pg from "pg";
import { runQuery } from "../db/query-failure.ts";
import type { EventStore } from "./event-store.ts";
import { DEFAULT_MAX_EVENTS_PER_USER } from "./file-event-store.ts";
import type { EventType, UserEvent } from "./profile.ts";

/** Options of {@link createPgEventStore}. */
export interface PgEventStoreOptions {
  /** The pool of `LOUPE_DATABASE_URL`, migrated; the store does not close it. */
  pool: pg.Pool;
  /** Newest events kept per user; older ones go once a user has twice as many. */
  maxEventsPerUser?: number;
}

interface EventRow {
  item: string;
  type: EventType;
  at: Date;
}

/** The event store over the `loupe_user_events` table of a migrated database. */
export function createPgEventStore({
  pool,
  maxEventsPerUser = DEFAULT_MAX_EVENTS_PER_USER,
}: PgEventStoreOptions): EventStore {
  const writing = new Set<Promise<unknown>>();
  const tracked = async <Result>(write: Promise<Result>): Promise<Result> => {
    writing.add(write);
    try {
      return await write;
    } finally {
      writing.delete(write);
    }
  };

  const append = async ({ tenant, event }: { tenant: string; event: UserEvent }) => {
    const what = `Recording an event of user ${event.user}`;
    await runQuery(pool, {
      what,
      text: "insert into loupe_user_events (tenant, user_id, item, type, at) values ($1, $2, $3, $4, $5)",
      values: [tenant, event.user, event.item, event.type, new Date(event.at)],
    });
    // Reads at most 2·max + 1 index entries; deletes only when the user has more than 2·max events.
    await runQuery(pool, {
      what,
      text: `delete from loupe_user_events
              where tenant = $1 and user_id = $2
                and exists (select 1 from loupe_user_events
                             where tenant = $1 and user_id = $2 order by seq desc offset $4 limit 1)
                and seq <= (select seq from loupe_user_events
                             where tenant = $1 and user_id = $2 order by seq desc offset $3 limit 1)`,
      values: [tenant, event.user, maxEventsPerUser, 2 * maxEventsPerUser],
    });
  };

  return {
    async append(request) {
      await tracked(append(request));
    },

    async list({ tenant, user }) {
      const found = await runQuery<EventRow>(pool, {
        what: `Reading the events of user ${user}`,
        text: `select item, type, at from (
                 select seq, item, type, at from loupe_user_events
                  where tenant = $1 and user_id = $2 order by seq desc limit $3
               ) as newest order by seq`,
        values: [tenant, user, maxEventsPerUser],
      });
      return found.rows.map((row) => ({ user, item: row.item, type: row.type, at: row.at.getTime() }));
    },

    async deleteUser({ tenant, user }) {
      const deleted = await tracked(
        runQuery(pool, {
          what: `Deleting the events of user ${user}`,
          text: "delete from loupe_user_events where tenant = $1 and user_id = $2",
          values: [tenant, user],
        }),
      );
      return deleted.rowCount ?? 0;
    },

    async close() {
      await Promise.allSettled([...writing]);
    },
  };
}
