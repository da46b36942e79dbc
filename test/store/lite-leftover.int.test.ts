/**
 * A Milvus Lite already running on the data dir when Loupe starts its own: stopped when the Loupe that
 * owned it is gone (named by the pid file, or orphaned to init by a Loupe that wrote none), left alone
 * when its owner runs (start-up then fails with the lock error). Real Lite processes throughout.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { StoreError } from "../../src/errors.ts";
import { findFreePort } from "../../src/store/free-port.ts";
import { LITE_PID_FILE, processStartTime } from "../../src/store/lite-pid-file.ts";
import { startMilvusLite } from "../../src/store/milvus-lite.ts";
import { REPO_VENV_DIR } from "../helpers/milvus-lite.ts";
import { isAlive } from "../helpers/processes.ts";
import { ROOT } from "../ingest/harness.ts";

const run = promisify(execFile);
const LAUNCHER = path.join(ROOT, "scripts", "milvus-lite-launcher.py");
const PYTHON = path.join(REPO_VENV_DIR, "bin", "python");

async function listening(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`nothing listened on ${port} within ${timeoutMs} ms`);
}

/** A pid that no process has now: that of a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid ?? -1;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-leftover-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts Lite through the launcher as a previous Loupe would have, and records `ownerPid` as its owner. */
async function leftoverLite(dataDir: string, ownerPid: number): Promise<ChildProcess & { pid: number }> {
  const port = await findFreePort();
  // stdin stays open (a pipe held here), so the launcher keeps serving like an owner's child.
  const child = spawn(
    PYTHON,
    [LAUNCHER, "--data-dir", dataDir, "--host", "127.0.0.1", "--port", String(port)],
    {
      stdio: ["pipe", "ignore", "ignore"],
    },
  );
  const pid = child.pid ?? -1;
  cleanups.push(async () => {
    if (isAlive(pid)) child.kill("SIGKILL");
  });
  await listening(port);
  await writeFile(
    path.join(dataDir, LITE_PID_FILE),
    JSON.stringify({
      litePid: pid,
      liteStartTime: await processStartTime(pid),
      ownerPid,
      ownerStartTime: await processStartTime(ownerPid),
      dataDir,
    }),
  );
  return child as ChildProcess & { pid: number };
}

describe("a Milvus Lite left on the data dir", () => {
  it("is stopped when the Loupe that owned it is gone, and a new one starts and records itself", async () => {
    const dataDir = await tempDataDir();
    const leftover = await leftoverLite(dataDir, await deadPid());
    const exited = new Promise((resolve) =>
      leftover.once("exit", (code, signal) => resolve({ code, signal })),
    );

    const lite = await startMilvusLite({ dataDir, venvDir: REPO_VENV_DIR });
    cleanups.push(() => lite.stop());
    // Stopped with SIGINT: a clean shutdown, not a kill.
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(isAlive(leftover.pid)).toBe(false);
    const record = JSON.parse(await readFile(path.join(dataDir, LITE_PID_FILE), "utf8"));
    expect(record).toMatchObject({ litePid: lite.pid, ownerPid: process.pid, dataDir });

    await lite.stop();
    // A clean stop takes its record away.
    await expect(readFile(path.join(dataDir, LITE_PID_FILE), "utf8")).rejects.toThrow();
  }, 60_000);

  it("is left alone while its owner runs: start-up fails with the lock error", async () => {
    const dataDir = await tempDataDir();
    const leftover = await leftoverLite(dataDir, process.pid);
    const error = await startMilvusLite({ dataDir, venvDir: REPO_VENV_DIR }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(StoreError);
    expect(error).toMatchObject({ code: "milvus_lite_locked" });
    expect((error as Error).message).toContain(
      `another Loupe with the same LOUPE_DATA_DIR: process ${process.pid}, whose Milvus Lite is process ${leftover.pid}`,
    );
    expect(isAlive(leftover.pid)).toBe(true);
    const record = JSON.parse(await readFile(path.join(dataDir, LITE_PID_FILE), "utf8"));
    expect(record.litePid).toBe(leftover.pid);
  }, 60_000);

  it("is stopped when an older Loupe left it orphaned without a pid file", async () => {
    const dataDir = await tempDataDir();
    const port = await findFreePort();
    // The way an older Loupe ran it, then gone: the node that started it exits, and init adopts Lite.
    const binary = path.join(REPO_VENV_DIR, "bin", "milvus-lite");
    const args = ["server", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", String(port)];
    const { stdout } = await run(process.execPath, [
      "-e",
      `const c = require("node:child_process").spawn(${JSON.stringify(binary)}, ${JSON.stringify(args)}, { detached: true, stdio: "ignore" }); c.unref(); console.log(c.pid);`,
    ]);
    const orphan = Number(stdout.trim());
    cleanups.push(async () => {
      if (isAlive(orphan)) process.kill(orphan, "SIGKILL");
    });
    await listening(port);
    const parent = (await readFile(`/proc/${orphan}/stat`, "utf8")).split(") ")[1]?.split(" ")[1];
    expect(parent).toBe("1");

    const lite = await startMilvusLite({ dataDir, venvDir: REPO_VENV_DIR });
    cleanups.push(() => lite.stop());
    // Gone (a zombie init has not reaped yet counts as gone).
    expect(await processStartTime(orphan)).toBeUndefined();
    expect(lite.pid).not.toBe(orphan);
  }, 60_000);
});
