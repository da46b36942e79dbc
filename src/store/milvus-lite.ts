/**
 * Launcher of the embedded Milvus Lite: a child process from the project's Python environment running
 * `scripts/milvus-lite-launcher.py`, which serves Milvus Lite on loopback on a free port and exits when
 * this process goes away (its stdin, a pipe from here, reaches end-of-file), however it goes. Before it
 * starts, a Lite left running on the data dir by a Loupe that is gone is stopped (see `lite-pid-file.ts`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { ConfigError, StoreError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { findFreePort, isPortFree } from "./free-port.ts";
import { readLitePidFile, removeLitePidFile, stopLeftoverLite, writeLitePidFile } from "./lite-pid-file.ts";
import { callMilvus, createMilvusClient } from "./milvus-client.ts";

/** Options of {@link startMilvusLite}. */
export interface StartMilvusLiteOptions {
  /** Directory of Lite's data; created when missing. One Lite process per directory. */
  dataDir: string;
  /** Python virtual environment holding the `milvus-lite` command (made by `npm run setup`). */
  venvDir: string;
  /** Loopback address to bind. Lite has no authentication or TLS, so nothing else is accepted. */
  host?: string;
  /** TCP port; a free one is picked when absent. */
  port?: number;
  /** A port not to pick (that of a Lite which exited: its client may still reconnect to it). */
  avoidPort?: number;
  /** How long to wait for Lite to answer before giving up. */
  startTimeoutMs?: number;
  /**
   * How long stop() waits after SIGINT before escalating to SIGTERM (then SIGKILL). Lite drains
   * in-flight calls for up to 5 s on SIGINT, so the default leaves it room.
   */
  stopGraceMs?: number;
  logger?: Logger;
}

/** A running Milvus Lite. */
export interface MilvusLiteProcess {
  /** `host:port` to hand to the Milvus client. */
  address: string;
  /** Process id of the server. */
  pid: number;
  /** Settles when the server has exited, whether stopped or not, with how it ended. */
  exited: Promise<MilvusLiteExit>;
  /**
   * Stops the server: SIGINT (clean shutdown), then SIGTERM, then SIGKILL, each after a bounded wait.
   * Resolves once the process has exited; calling it again is harmless.
   */
  stop(): Promise<void>;
}

const STDERR_TAIL_BYTES = 4096;
const PROBE_INTERVAL_MS = 100;
const PROBE_CALL_TIMEOUT_MS = 2000;
const SIGTERM_WAIT_MS = 3000;
const OUTPUT_DRAIN_MS = 1000;
const SIGKILL_WAIT_MS = 5000;
const LOOPBACK_HOST = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost)$/;

/** How a Milvus Lite process ended. */
export interface MilvusLiteExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

type ExitInfo = MilvusLiteExit;

/** The launcher script, beside `src/` and `dist/` alike (both are two levels below the install dir). */
const LAUNCHER = fileURLToPath(new URL("../../scripts/milvus-lite-launcher.py", import.meta.url));

/** Keeps the last bytes of a stream, so errors can show how the process ended. */
class OutputTail {
  #text = "";
  constructor(private readonly limit: number) {}
  push(chunk: string): void {
    this.#text = (this.#text + chunk).slice(-this.limit);
  }
  get text(): string {
    return this.#text.trim();
  }
}

function tcpAccepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

async function answersMilvus(address: string, timeoutMs: number): Promise<boolean> {
  const client = createMilvusClient({ address, timeoutMs });
  try {
    await callMilvus({
      what: "listCollections",
      timeoutMs,
      call: () => client.listCollections({ timeout: timeoutMs }),
    });
    return true;
  } catch {
    return false;
  } finally {
    await client.closeConnection().catch(() => undefined);
  }
}

async function assertInstalled(binary: string, venvDir: string): Promise<void> {
  try {
    await access(binary, constants.X_OK);
  } catch (error) {
    throw new StoreError(
      `Milvus Lite is not installed: ${binary} is missing or not executable. Run \`npm run setup\` to create the Python environment in ${venvDir} (or point LOUPE_VENV_DIR at one that has milvus-lite).`,
      { code: "milvus_lite_missing", status: 500, cause: error, context: { binary, venvDir } },
    );
  }
}

/**
 * Starts Milvus Lite on `host` and a free (or the given) port and waits until it answers Milvus calls.
 *
 * The child shares this process's process group, so Ctrl-C in a terminal reaches both; it is killed
 * when this process exits without having stopped it, and shuts itself down when this process is killed
 * (SIGKILL included). A Lite left on the data dir by a Loupe that is gone is stopped first; once ready,
 * `<dataDir>/loupe-lite.pid` records this process as its owner.
 *
 * @throws ConfigError when `host` is not a loopback address.
 * @throws StoreError with code `milvus_lite_missing` (run `npm run setup`), `milvus_lite_port_in_use`,
 *   `milvus_lite_locked` (another process uses the data dir), `milvus_lite_exited` (with the tail of
 *   its stderr) or `milvus_lite_start_timeout`.
 */
export async function startMilvusLite({
  dataDir,
  venvDir,
  host = "127.0.0.1",
  port,
  avoidPort,
  startTimeoutMs = 30_000,
  stopGraceMs = 8000,
  logger,
}: StartMilvusLiteOptions): Promise<MilvusLiteProcess> {
  if (!LOOPBACK_HOST.test(host)) {
    throw new ConfigError(
      `Milvus Lite has no authentication or TLS, so it only listens on loopback; got host ${JSON.stringify(host)}. Use 127.0.0.1.`,
      { context: { host } },
    );
  }
  // The launcher runs Lite in the venv's Python; the milvus-lite command tells the package is installed.
  await assertInstalled(path.resolve(venvDir, "bin", "milvus-lite"), venvDir);
  const binary = path.resolve(venvDir, "bin", "python");
  await assertInstalled(binary, venvDir);
  const absoluteDataDir = path.resolve(dataDir);
  await mkdir(absoluteDataDir, { recursive: true });
  await stopLeftoverLite({ dataDir: absoluteDataDir, logger });

  let chosenPort: number;
  if (port === undefined) {
    chosenPort = await findFreePort({ host });
    if (chosenPort === avoidPort) chosenPort = await findFreePort({ host });
  } else {
    // Lite binds with SO_REUSEPORT: on a port another Lite holds it would start and share the traffic.
    if (!(await isPortFree({ host, port }))) {
      throw new StoreError(
        `Port ${port} on ${host} is already in use, so Milvus Lite cannot take it. Choose another port, or leave it unset to pick a free one.`,
        { code: "milvus_lite_port_in_use", status: 500, context: { host, port } },
      );
    }
    chosenPort = port;
  }
  const address = `${host}:${chosenPort}`;

  const args = [LAUNCHER, "--data-dir", absoluteDataDir, "--host", host, "--port", String(chosenPort)];
  logger?.info({ binary, args }, "starting Milvus Lite");
  // stdin is a pipe nobody writes to: the launcher stops Lite when it closes, i.e. when this process ends.
  const child = spawn(binary, args, {
    env: { ...process.env, PYTHONUNBUFFERED: "1" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stdin?.on("error", () => undefined);
  const stderrTail = new OutputTail(STDERR_TAIL_BYTES);
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    logger?.debug({ milvusLite: chunk.trimEnd() }, "Milvus Lite output");
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderrTail.push(chunk);
    logger?.debug({ milvusLite: chunk.trimEnd() }, "Milvus Lite stderr");
  });

  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("exit", (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  const spawnFailed = new Promise<Error>((resolve) => child.once("error", resolve));
  // "close" comes after "exit" once stdout and stderr are drained: the error text may arrive late.
  const outputClosed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  // Last resort when this process exits without calling stop(): never leave a server behind.
  const killOnExit = () => {
    if (exitInfo === undefined) child.kill("SIGKILL");
  };
  process.on("exit", killOnExit);
  void exited.then(() => process.off("exit", killOnExit));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= stopChild({
      child,
      exited,
      isExited: () => exitInfo !== undefined,
      waits: [
        ["SIGINT", stopGraceMs],
        ["SIGTERM", SIGTERM_WAIT_MS],
        ["SIGKILL", SIGKILL_WAIT_MS],
      ],
      logger,
      address,
    });
    return stopping;
  };

  let ready = false;
  void exited.then((info) => {
    if (ready && stopping === undefined) {
      logger?.error({ ...info, stderr: stderrTail.text }, "Milvus Lite exited unexpectedly");
    }
  });

  const outcome = await waitUntilReady({
    host,
    port: chosenPort,
    address,
    startTimeoutMs,
    exited,
    spawnFailed,
  });
  if (outcome.kind === "ready") {
    ready = true;
    const pid = child.pid ?? -1;
    // Written once Lite holds the data dir's lock, so a start that loses the lock never claims it.
    await writeLitePidFile({ dataDir: absoluteDataDir, litePid: pid }).catch((error: unknown) =>
      logger?.warn({ err: error }, "could not write the Milvus Lite pid file"),
    );
    const recordRemoved = exited.then(() =>
      removeLitePidFile({ dataDir: absoluteDataDir, litePid: pid }).catch(() => undefined),
    );
    logger?.info({ address, pid, dataDir: absoluteDataDir, ms: outcome.ms }, "Milvus Lite is ready");
    return { address, pid, exited, stop: () => stop().then(() => recordRemoved) };
  }

  await stop().catch(() => undefined);
  await Promise.race([outputClosed, sleep(OUTPUT_DRAIN_MS)]);
  const stderr = stderrTail.text;
  if (outcome.kind === "spawn-failed") {
    throw new StoreError(
      `Could not run ${binary}: ${outcome.error.message}. Run \`npm run setup\` to reinstall it.`,
      {
        code: "milvus_lite_missing",
        status: 500,
        cause: outcome.error,
        context: { binary },
      },
    );
  }
  if (outcome.kind === "exited" && stderr.includes("DataDirLockedError")) {
    const owner = await readLitePidFile(absoluteDataDir);
    const who =
      owner === undefined
        ? "probably another Loupe with the same LOUPE_DATA_DIR"
        : `held by another Loupe with the same LOUPE_DATA_DIR: process ${owner.ownerPid}, whose Milvus Lite is process ${owner.litePid}`;
    throw new StoreError(
      `Another process is using the Milvus Lite data dir ${absoluteDataDir} (${who}). Stop it, or give this one another data dir.`,
      {
        code: "milvus_lite_locked",
        status: 500,
        context: { dataDir: absoluteDataDir, owner, stderr: lastLines(stderr, 3) },
      },
    );
  }
  if (outcome.kind === "exited") {
    const how =
      outcome.info.signal === null ? `exit code ${outcome.info.code}` : `signal ${outcome.info.signal}`;
    throw new StoreError(
      `Milvus Lite exited during start-up (${how}). Last lines of its stderr:\n${lastLines(stderr, 20) || "(empty)"}`,
      {
        code: "milvus_lite_exited",
        status: 500,
        context: { ...outcome.info, dataDir: absoluteDataDir, stderr },
      },
    );
  }
  throw new StoreError(
    `Milvus Lite did not answer on ${address} within ${startTimeoutMs} ms. Raise LOUPE_MILVUS_START_TIMEOUT_MS on a slow machine. Last lines of its stderr:\n${lastLines(stderr, 20) || "(empty)"}`,
    { code: "milvus_lite_start_timeout", status: 500, context: { address, startTimeoutMs, stderr } },
  );
}

function lastLines(text: string, count: number): string {
  return text.split("\n").slice(-count).join("\n");
}

type ReadyOutcome =
  | { kind: "ready"; ms: number }
  | { kind: "exited"; info: ExitInfo }
  | { kind: "spawn-failed"; error: Error }
  | { kind: "timeout" };

interface WaitUntilReadyOptions {
  host: string;
  port: number;
  address: string;
  startTimeoutMs: number;
  exited: Promise<ExitInfo>;
  spawnFailed: Promise<Error>;
}

async function waitUntilReady({
  host,
  port,
  address,
  startTimeoutMs,
  exited,
  spawnFailed,
}: WaitUntilReadyOptions): Promise<ReadyOutcome> {
  const startedAt = Date.now();
  const deadline = startedAt + startTimeoutMs;
  let done = false;
  const probe = async (): Promise<ReadyOutcome> => {
    while (!done && Date.now() < deadline) {
      const left = deadline - Date.now();
      if (
        (await tcpAccepts(host, port, Math.min(500, left))) &&
        !done &&
        (await answersMilvus(address, Math.max(1, Math.min(PROBE_CALL_TIMEOUT_MS, deadline - Date.now()))))
      ) {
        return { kind: "ready", ms: Date.now() - startedAt };
      }
      await sleep(PROBE_INTERVAL_MS);
    }
    return { kind: "timeout" };
  };
  const outcome = await Promise.race([
    probe(),
    exited.then((info): ReadyOutcome => ({ kind: "exited", info })),
    spawnFailed.then((error): ReadyOutcome => ({ kind: "spawn-failed", error })),
  ]);
  done = true;
  return outcome;
}

interface StopChildOptions {
  child: ChildProcess;
  exited: Promise<ExitInfo>;
  isExited: () => boolean;
  /** Signals to send in turn, each with how long to wait for the exit. */
  waits: ReadonlyArray<readonly [NodeJS.Signals, number]>;
  address: string;
  logger: Logger | undefined;
}

async function stopChild({
  child,
  exited,
  isExited,
  waits,
  address,
  logger,
}: StopChildOptions): Promise<void> {
  // A process that never spawned has nothing to stop.
  if (child.pid === undefined) return;
  for (const [signal, waitMs] of waits) {
    if (isExited()) return;
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), waitMs);
    });
    const result = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (result !== "timeout") {
      logger?.info({ address, signal, exit: result }, "Milvus Lite stopped");
      return;
    }
    logger?.warn({ address, signal, waitMs }, "Milvus Lite did not stop in time; escalating");
  }
  if (!isExited()) {
    throw new StoreError(`Milvus Lite (pid ${child.pid}) did not exit even after SIGKILL.`, {
      code: "milvus_lite_stop_failed",
      status: 500,
      context: { pid: child.pid, address },
    });
  }
}
