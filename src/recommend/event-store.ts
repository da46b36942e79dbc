/**
 * The event store port: where users' interactions are kept, per tenant and per user. The file adapter is
 * in `file-event-store.ts`, the PostgreSQL one (`LOUPE_DATABASE_URL`) in `pg-event-store.ts`.
 */
import type { UserEvent } from "./profile.ts";

/** The event store port. Every call is scoped to `tenant`, decided by the server from the caller's key. */
export interface EventStore {
  /** Appends one event to its user's history; durable once the promise resolves. */
  append(request: { tenant: string; event: UserEvent }): Promise<void>;
  /** The user's kept events, oldest first; empty for a user with none. */
  list(request: { tenant: string; user: string }): Promise<UserEvent[]>;
  /** Removes every event of the user; resolves to how many there were. */
  deleteUser(request: { tenant: string; user: string }): Promise<number>;
  /** Waits for writes under way. */
  close(): Promise<void>;
}
