import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../src/errors.ts";
import { createLogger } from "../src/logger.ts";
import { type RunningLoupe, startLoupe } from "../src/main.ts";
import { createFsBlobStore } from "../src/media/blob-store.ts";
import { LITE_PID_FILE, processStartTime } from "../src/store/lite-pid-file.ts";
import { type MilvusLiteProcess, startMilvusLite } from "../src/store/milvus-lite.ts";
import { unreachableAddress } from "./helpers/milvus-lite.ts";
import { isAlive, processesMentioning } from "./helpers/processes.ts";

const root = path.join(import.meta.dirname, "..");
const quiet = createLogger({ level: "silent" });

/** Settings shared by every Loupe these tests start: a free port and no dependence on the model pack. */
function testEnv(overrides: Record<string, string>): Record<string, string> {
  return { PORT: "0", LOUPE_EMBEDDING_DIM: "8", LOUPE_VENV_DIR: path.join(root, ".venv"), ...overrides };
}

async function startFailure(promise: Promise<RunningLoupe>): Promise<AppError> {
  try {
    const loupe = await promise;
    await loupe.stop();
  } catch (error) {
    if (error instanceof AppError) return error;
    throw error;
  }
  throw new Error("start-up succeeded but was expected to fail");
}

describe("Loupe with embedded Milvus Lite", () => {
  let dataDir: string;
  let loupe: RunningLoupe;
  let orphan: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-main-test-"));
    // What a crash between a blob's write and its record's leaves: a file that nothing references.
    const blobs = createFsBlobStore({ dir: path.join(dataDir, "blobs") });
    orphan = (await blobs.put({ bytes: Buffer.from("left by a crash"), contentType: "text/plain" })).sha256;
    // The embedding dimension comes from the bundled model pack here, as it does for `npm start`.
    const env = testEnv({ LOUPE_DATA_DIR: dataDir, LOUPE_BLOB_GC_GRACE_S: "0" });
    delete env.LOUPE_EMBEDDING_DIM;
    loupe = await startLoupe({ env, cwd: root, logger: quiet });
  });

  afterAll(async () => {
    await loupe?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("is live and ready", async () => {
    expect(loupe.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(loupe.milvusLitePid).toBeGreaterThan(0);
    const healthz = await fetch(`${loupe.url}/healthz`);
    expect(healthz.status).toBe(200);
    const readyz = await fetch(`${loupe.url}/readyz`);
    expect(readyz.status).toBe(200);
    expect(await readyz.json()).toEqual({ status: "ready" });
  });

  it("sweeps the blobs no record references at start-up, in the background", async () => {
    const blobs = createFsBlobStore({ dir: path.join(dataDir, "blobs") });
    const deadline = Date.now() + 20_000;
    while ((await blobs.has(orphan)) && Date.now() < deadline) await sleep(100);
    expect(await blobs.has(orphan)).toBe(false);
  });

  it("a second Loupe on the same data dir fails start-up with the lock error and leaves nothing running", async () => {
    const error = await startFailure(
      startLoupe({ env: testEnv({ LOUPE_DATA_DIR: dataDir }), cwd: root, logger: quiet }),
    );
    expect(error.code).toBe("milvus_lite_locked");
    expect(error.message).toContain(
      `Another process is using the Milvus Lite data dir ${path.join(dataDir, "milvus")}`,
    );
    expect(await processesMentioning(path.join(dataDir, "milvus"))).toEqual([loupe.milvusLitePid]);
  });

  it("a Loupe whose port is taken fails start-up naming PORT and stops its Milvus Lite", async () => {
    const otherDataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-main-test-"));
    try {
      const port = new URL(loupe.url).port;
      const error = await startFailure(
        startLoupe({ env: testEnv({ LOUPE_DATA_DIR: otherDataDir, PORT: port }), cwd: root, logger: quiet }),
      );
      expect(error.code).toBe("config_invalid");
      expect(error.message).toContain(`Port ${port} on 127.0.0.1 is already in use`);
      expect(await processesMentioning(otherDataDir)).toEqual([]);
    } finally {
      await rm(otherDataDir, { recursive: true, force: true });
    }
  });

  it("stop() closes the server and leaves no Milvus Lite process behind", async () => {
    const pid = loupe.milvusLitePid ?? -1;
    expect(isAlive(pid)).toBe(true);
    await loupe.stop();
    expect(isAlive(pid)).toBe(false);
    expect(await processesMentioning(dataDir)).toEqual([]);
    await expect(fetch(`${loupe.url}/healthz`)).rejects.toThrow();
    await loupe.stop();
  });
});

describe("Loupe with an external Milvus", () => {
  it("starts while Milvus is unreachable and /readyz answers 503 with the reason, within a bounded time", async () => {
    const address = await unreachableAddress();
    const started = performance.now();
    const loupe = await startLoupe({
      env: testEnv({ MILVUS_ADDRESS: address, MILVUS_TIMEOUT_MS: "1000" }),
      cwd: root,
      logger: quiet,
    });
    try {
      expect(loupe.milvusLitePid).toBeUndefined();
      const response = await fetch(`${loupe.url}/readyz`);
      expect(performance.now() - started).toBeLessThan(5000);
      expect(response.status).toBe(503);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("not_ready");
      expect(body.error.message).toMatch(/^Not ready: .*Milvus/);
      // Where Milvus lives is for the log, not for whoever can reach /readyz.
      expect(body.error.message).not.toContain(address);
    } finally {
      await loupe.stop();
    }
  });

  it("becomes ready once Milvus comes up after it (retries with backoff)", async () => {
    const address = await unreachableAddress();
    const port = Number(address.split(":")[1]);
    const loupe = await startLoupe({
      env: testEnv({ MILVUS_ADDRESS: address, MILVUS_TIMEOUT_MS: "2000" }),
      cwd: root,
      logger: quiet,
    });
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-main-test-"));
    let milvus: MilvusLiteProcess | undefined;
    try {
      expect((await fetch(`${loupe.url}/readyz`)).status).toBe(503);
      milvus = await startMilvusLite({ dataDir, venvDir: path.join(root, ".venv"), port });
      const deadline = Date.now() + 30_000;
      let status = 503;
      while (status !== 200 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        status = (await fetch(`${loupe.url}/readyz`)).status;
      }
      expect(status).toBe(200);
    } finally {
      await loupe.stop();
      await milvus?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("Loupe without an embedding dimension", () => {
  it("serves, and /readyz says the model pack is missing", async () => {
    const modelPack = path.join(os.tmpdir(), "loupe-no-such-pack");
    const env = testEnv({ LOUPE_MODEL_PACK: modelPack });
    delete env.LOUPE_EMBEDDING_DIM;
    const loupe = await startLoupe({ env, cwd: root, logger: quiet });
    try {
      expect(loupe.milvusLitePid).toBeUndefined();
      expect((await fetch(`${loupe.url}/healthz`)).status).toBe(200);
      const response = await fetch(`${loupe.url}/readyz`);
      expect(response.status).toBe(503);
      const body = (await response.json()) as { error: { message: string } };
      expect(body.error.message).toContain(`there is no model pack at ${modelPack}`);
      expect(body.error.message).toContain("LOUPE_EMBEDDING_DIM");
    } finally {
      await loupe.stop();
    }
  });
});

/** `loupe serve` as a child process (the compiled CLI), once it logs that it listens. */
async function serve(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [path.join(root, "bin", "loupe.js"), "serve"], {
    env: { ...process.env, LOUPE_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`loupe serve did not listen in time:\n${output}`)),
      60_000,
    );
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
      const listening = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"loupe is listening"/.exec(output);
      if (listening?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(listening[1]);
      }
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`loupe serve exited (${code ?? signal}):\n${output}`));
    });
  });
  return { child, url };
}

async function until(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("loupe serve killed with SIGKILL", () => {
  it("takes its Milvus Lite along, and the next loupe serve on the data dir is ready within 30 s", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-main-test-"));
    const env = testEnv({ LOUPE_DATA_DIR: dataDir });
    const children: ChildProcess[] = [];
    try {
      const first = await serve(env);
      children.push(first.child);
      const record = JSON.parse(await readFile(path.join(dataDir, "milvus", LITE_PID_FILE), "utf8"));
      expect(record.ownerPid).toBe(first.child.pid);
      const litePid = record.litePid as number;
      expect(await processStartTime(litePid)).toBeDefined();

      first.child.kill("SIGKILL");
      const killedAt = Date.now();
      await until(
        "the first Lite exiting",
        5000,
        async () => (await processStartTime(litePid)) === undefined,
      );
      expect(Date.now() - killedAt).toBeLessThan(5000);

      const second = await serve(env);
      children.push(second.child);
      await until(
        "/readyz 200",
        30_000,
        async () => (await fetch(`${second.url}/readyz`).catch(() => undefined))?.status === 200,
      );
      const exited = new Promise((resolve) => second.child.once("exit", resolve));
      second.child.kill("SIGINT");
      await exited;
      expect(await processesMentioning(dataDir)).toEqual([]);
    } finally {
      for (const child of children)
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
