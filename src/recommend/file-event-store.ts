/**
 * The file {@link EventStore}, under `<LOUPE_DATA_DIR>/events/`:
 *
 * - `t_<tenant>/u_<user>.jsonl` (both names in base64url, so no tenant or user id is a special path): one
 *   JSON line per event, `{ item, type, at }`, appended whole with one `write` in append mode (mode 0600).
 * - When a user's file holds more than twice `maxEventsPerUser` lines it is compacted: the newest
 *   `maxEventsPerUser` events are written to a temporary file that is flushed and renamed over it, so a
 *   reader sees the old file or the new one, never a mix. A line cut short by a crash is skipped on read.
 *
 * Writes to one user's file are queued one at a time in this process; the queue is dropped once idle, and
 * nothing else about a user is held in memory. One server process should own the folder.
 */
import { appendFile, mkdir, open, readFile, rmdir, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "../auth/atomic-file.ts";
import type { EventStore } from "./event-store.ts";
import { EVENT_TYPES, type EventType, type UserEvent } from "./profile.ts";

/** Events kept per user unless configured otherwise: the newest 1000. */
export const DEFAULT_MAX_EVENTS_PER_USER = 1000;

/** The shortest a line can be: `{"item":"","type":"view","at":0}` and its newline. */
const MIN_LINE_BYTES = 33;

/** Options of {@link createFileEventStore}. */
export interface FileEventStoreOptions {
  /** `<LOUPE_DATA_DIR>/events`. */
  dir: string;
  /** Newest events kept per user; older ones go at the next compaction. */
  maxEventsPerUser?: number;
}

/** A file {@link EventStore} that can say which writes are queued (for tests of what stays in memory). */
export interface FileEventStore extends EventStore {
  /** Number of users with writes queued. */
  readonly pendingUsers: number;
}

/** The folder of a tenant's events. */
export function tenantEventsFolder(dir: string, tenant: string): string {
  return path.join(dir, `t_${Buffer.from(tenant, "utf8").toString("base64url")}`);
}

/** The file of a user's events. */
export function userEventsFile(dir: string, tenant: string): (user: string) => string {
  const folder = tenantEventsFolder(dir, tenant);
  return (user) => path.join(folder, `u_${Buffer.from(user, "utf8").toString("base64url")}.jsonl`);
}

/** Parses a file's lines, skipping any that is not a whole event (a write cut short by a crash). */
function parseEvents(text: string, user: string): UserEvent[] {
  const events: UserEvent[] = [];
  for (const line of text.split("\n")) {
    if (line.length === 0) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    const { item, type, at } = (value ?? {}) as Record<string, unknown>;
    if (typeof item !== "string" || typeof at !== "number" || !EVENT_TYPES.includes(type as EventType))
      continue;
    events.push({ user, item, type: type as EventType, at });
  }
  return events;
}

/** Whether `file` is missing, empty or ends with a newline. */
async function endsWithNewline(file: string): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return true;
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    return last[0] === 0x0a;
  } finally {
    await handle.close();
  }
}

function lineOf(event: UserEvent): string {
  return `${JSON.stringify({ item: event.item, type: event.type, at: event.at })}\n`;
}

/** The file event store under `dir`. */
export function createFileEventStore({
  dir,
  maxEventsPerUser = DEFAULT_MAX_EVENTS_PER_USER,
}: FileEventStoreOptions): FileEventStore {
  const queues = new Map<string, Promise<unknown>>();

  /** Runs `task` after the writes queued for `file`; drops the queue once nothing follows it. */
  const serial = <T>(file: string, task: () => Promise<T>): Promise<T> => {
    const result = (queues.get(file) ?? Promise.resolve()).then(task);
    const tail = result.catch(() => undefined);
    queues.set(file, tail);
    void tail.then(() => {
      if (queues.get(file) === tail) queues.delete(file);
    });
    return result;
  };

  const readEvents = async (file: string, user: string): Promise<UserEvent[]> => {
    try {
      return parseEvents(await readFile(file, "utf8"), user);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
  };

  return {
    get pendingUsers() {
      return queues.size;
    },
    async append({ tenant, event }) {
      const file = userEventsFile(dir, tenant)(event.user);
      await serial(file, async () => {
        const write = async () => {
          await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
          // A line cut short by a crash gets its newline first, so it does not swallow this event.
          const prefix = (await endsWithNewline(file)) ? "" : "\n";
          await appendFile(file, `${prefix}${lineOf(event)}`, { mode: 0o600, flag: "a" });
        };
        // Another user's deletion may remove the tenant's folder between the mkdir and the write.
        await write().catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== "ENOENT") throw error;
          await write();
        });
        // Every line is longer than MIN_LINE_BYTES, so a smaller file cannot need compacting.
        if ((await stat(file)).size <= 2 * maxEventsPerUser * MIN_LINE_BYTES) return;
        const events = await readEvents(file, event.user);
        if (events.length > 2 * maxEventsPerUser) {
          await writeFileAtomic(file, events.slice(-maxEventsPerUser).map(lineOf).join(""));
        }
      });
    },
    async list({ tenant, user }) {
      const file = userEventsFile(dir, tenant)(user);
      const events = await serial(file, () => readEvents(file, user));
      return events.slice(-maxEventsPerUser);
    },
    async deleteUser({ tenant, user }) {
      const file = userEventsFile(dir, tenant)(user);
      return serial(file, async () => {
        const count = (await readEvents(file, user)).length;
        await unlink(file).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "ENOENT") throw error;
        });
        // The tenant's folder goes with its last user, so no empty trace of the tenant stays either.
        await rmdir(path.dirname(file)).catch(() => undefined);
        return count;
      });
    },
    async close() {
      await Promise.all([...queues.values()]);
    },
  };
}
