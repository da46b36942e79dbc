/**
 * The record of which Loupe owns the Milvus Lite on a data dir, and the clean-up of a Lite left behind
 * by a Loupe that is gone. `<lite data dir>/loupe-lite.pid` names the Lite's pid and the owning Loupe's
 * pid, each with its process start time, so a pid the system has since given to another process is
 * never mistaken for either. A Lite whose owner is alive is never touched.
 */
import { readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../logger.ts";

/** Name of the pid file inside Lite's data dir. */
export const LITE_PID_FILE = "loupe-lite.pid";

/** What the pid file holds. */
export interface LitePidRecord {
  /** Pid of the Milvus Lite server. */
  litePid: number;
  /** Its start time (clock ticks since boot, from `/proc/<pid>/stat`); absent where there is no /proc. */
  liteStartTime?: number;
  /** Pid of the Loupe process that started it. */
  ownerPid: number;
  ownerStartTime?: number;
  /** Lite's data dir, absolute. */
  dataDir: string;
}

const POLL_MS = 100;

/** The process's start time in clock ticks since boot, or undefined when it does not exist (or is a zombie). */
export async function processStartTime(pid: number): Promise<number | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces; the fields after it are plain.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  const ticks = Number(fields[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

async function processCmdline(pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return text.split("\0").filter((part) => part !== "");
}

async function parentPid(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  return Number.isFinite(parent) ? parent : undefined;
}

/** Whether `pid` is still the process recorded with `startTime` (a reused pid is not). */
async function isSameProcess(pid: number, startTime: number | undefined): Promise<boolean> {
  const now = await processStartTime(pid);
  return now !== undefined && (startTime === undefined || now === startTime);
}

/** Whether the process's command line runs a Milvus Lite server on `dataDir`. */
function servesDataDir(cmdline: readonly string[], dataDir: string): boolean {
  const at = cmdline.indexOf("--data-dir");
  return at >= 0 && cmdline[at + 1] === dataDir && cmdline.some((part) => /milvus[-_]lite/.test(part));
}

/** Records this process as the owner of the Lite `litePid` on `dataDir` (written whole, then renamed). */
export async function writeLitePidFile({ dataDir, litePid }: { dataDir: string; litePid: number }) {
  const record: LitePidRecord = {
    litePid,
    liteStartTime: await processStartTime(litePid),
    ownerPid: process.pid,
    ownerStartTime: await processStartTime(process.pid),
    dataDir,
  };
  const file = path.join(dataDir, LITE_PID_FILE);
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(record)}\n`);
  await rename(temporary, file);
}

/** The pid file of `dataDir`, when there is a readable one. */
export async function readLitePidFile(dataDir: string): Promise<LitePidRecord | undefined> {
  const text = await readFile(path.join(dataDir, LITE_PID_FILE), "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const record = JSON.parse(text) as Partial<LitePidRecord>;
    if (typeof record.litePid !== "number" || typeof record.ownerPid !== "number") return undefined;
    return record as LitePidRecord;
  } catch {
    return undefined;
  }
}

/** Removes the pid file if it still names `litePid` (a later Lite's record is left alone). */
export async function removeLitePidFile({ dataDir, litePid }: { dataDir: string; litePid: number }) {
  const record = await readLitePidFile(dataDir);
  if (record?.litePid === litePid) await rm(path.join(dataDir, LITE_PID_FILE), { force: true });
}

/** SIGINT (Lite's clean shutdown), then SIGTERM, then SIGKILL, each with a bounded wait. */
async function stopProcess(pid: number, startTime: number | undefined, logger: Logger | undefined) {
  const steps: Array<[NodeJS.Signals, number]> = [
    ["SIGINT", 8000],
    ["SIGTERM", 3000],
    ["SIGKILL", 5000],
  ];
  for (const [signal, waitMs] of steps) {
    if (!(await isSameProcess(pid, startTime))) return true;
    try {
      process.kill(pid, signal);
    } catch {
      return true;
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      await sleep(POLL_MS);
      if (!(await isSameProcess(pid, startTime))) {
        logger?.info({ pid, signal }, "leftover Milvus Lite stopped");
        return true;
      }
    }
    logger?.warn({ pid, signal, waitMs }, "leftover Milvus Lite did not stop in time; escalating");
  }
  return !(await isSameProcess(pid, startTime));
}

/**
 * Stops a Milvus Lite left running on `dataDir` by a Loupe that no longer runs, so a new one can take the
 * data dir: one named by the pid file whose owner is dead, or (left by a Loupe that wrote no pid file)
 * one serving `dataDir` that was orphaned to init. A Lite whose owner is alive is left alone; starting
 * then fails with the data dir locked, as it should. Where `/proc` is missing, nothing is stopped.
 */
export async function stopLeftoverLite({
  dataDir,
  logger,
}: {
  dataDir: string;
  logger?: Logger;
}): Promise<void> {
  const record = await readLitePidFile(dataDir);
  if (record !== undefined) {
    const liteAlive = await isSameProcess(record.litePid, record.liteStartTime);
    const isLite = liteAlive && servesDataDir(await processCmdline(record.litePid), dataDir);
    if (!isLite) {
      await rm(path.join(dataDir, LITE_PID_FILE), { force: true });
    } else if (await isSameProcess(record.ownerPid, record.ownerStartTime)) {
      logger?.debug(
        { litePid: record.litePid, ownerPid: record.ownerPid },
        "Milvus Lite on this data dir belongs to a running Loupe",
      );
      return;
    } else {
      logger?.warn(
        { litePid: record.litePid, ownerPid: record.ownerPid, dataDir },
        "stopping a Milvus Lite left running by a Loupe that is gone",
      );
      if (await stopProcess(record.litePid, record.liteStartTime, logger)) {
        await rm(path.join(dataDir, LITE_PID_FILE), { force: true });
      }
      return;
    }
  }
  for (const pid of await orphanedLites(dataDir)) {
    logger?.warn({ litePid: pid, dataDir }, "stopping an orphaned Milvus Lite serving this data dir");
    await stopProcess(pid, await processStartTime(pid), logger);
  }
}

/** Lite servers on `dataDir` whose parent is init: whatever started them has exited. */
async function orphanedLites(dataDir: string): Promise<number[]> {
  const entries = await readdir("/proc").catch(() => [] as string[]);
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    if (!servesDataDir(await processCmdline(pid), dataDir)) continue;
    if ((await parentPid(pid)) === 1) found.push(pid);
  }
  return found;
}
