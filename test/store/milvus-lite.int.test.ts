/**
 * The embedded Milvus Lite launcher: start, stop, restart durability, and each start-up failure.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, StoreError } from "../../src/errors.ts";
import { createVectorStore, startMilvusLite } from "../../src/store/index.ts";
import {
  REPO_VENV_DIR,
  startTestMilvusLite,
  type TestMilvusLite,
  uniquePrefix,
} from "../helpers/milvus-lite.ts";
import { isAlive } from "../helpers/processes.ts";

const DIM = 8;

/** A fake venv whose `python` (which runs the Lite launcher) runs `script` (bash). */
async function fakeVenv(script: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "loupe-fake-venv-"));
  await mkdir(path.join(dir, "bin"));
  for (const name of ["milvus-lite", "python"]) {
    const binary = path.join(dir, "bin", name);
    await writeFile(binary, `#!/usr/bin/env bash\n${script}\n`);
    await chmod(binary, 0o755);
  }
  return dir;
}

let scratch: string;
let lite: TestMilvusLite;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), "loupe-lite-test-"));
  lite = await startTestMilvusLite();
});

afterAll(async () => {
  await lite?.dispose();
  await rm(scratch, { recursive: true, force: true });
});

describe("startMilvusLite", () => {
  it("listens on loopback and stops cleanly on SIGINT, leaving no process", async () => {
    const server = await startMilvusLite({ dataDir: path.join(scratch, "clean"), venvDir: REPO_VENV_DIR });
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(isAlive(server.pid)).toBe(true);
    const started = Date.now();
    await server.stop();
    // SIGINT shuts Lite down in well under a second; escalation would take 8 s or more.
    expect(Date.now() - started).toBeLessThan(5000);
    expect(isAlive(server.pid)).toBe(false);
    await server.stop();
  });

  it("keeps data across a restart on the same data dir", async () => {
    const prefix = uniquePrefix("restart");
    const open = () =>
      createVectorStore({
        address: lite.address,
        collectionPrefix: prefix,
        dimension: DIM,
        timeoutMs: 15_000,
      });
    const vector = [1, 0, 0, 0, 0, 0, 0, 0];
    const first = await open();
    await first.upsert({
      kind: "image",
      tenant: "acme",
      records: [
        {
          id: "img_keep",
          modelId: "m",
          mediaRef: "blob/k.png",
          source: "upload",
          vector,
          metadata: { a: 1 },
        },
      ],
    });
    await first.close();

    const oldPid = lite.pid;
    await lite.restart();
    expect(isAlive(oldPid)).toBe(false);

    // A fresh start has the collections unloaded; createVectorStore loads them again.
    const second = await open();
    try {
      expect(await second.health()).toEqual({ ok: true });
      expect(await second.count({ kind: "image", tenant: "acme" })).toBe(1);
      const hits = await second.search({ kind: "image", tenant: "acme", vector, topK: 1 });
      expect(hits[0]).toMatchObject({ id: "img_keep", fields: { metadata: { a: 1 } } });
    } finally {
      await second.close();
    }
  });

  it("reports a data dir locked by another Lite", async () => {
    const error = await startMilvusLite({ dataDir: lite.dataDir, venvDir: REPO_VENV_DIR }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(StoreError);
    expect(error).toMatchObject({ code: "milvus_lite_locked" });
    expect((error as Error).message).toMatch(
      /Another process is using the Milvus Lite data dir .* another Loupe/,
    );
  });

  it("refuses a port that is already taken", async () => {
    const port = Number(lite.address.split(":")[1]);
    const error = await startMilvusLite({
      dataDir: path.join(scratch, "taken"),
      venvDir: REPO_VENV_DIR,
      port,
    }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: "milvus_lite_port_in_use" });
  });

  it("refuses to listen beyond loopback", async () => {
    await expect(
      startMilvusLite({ dataDir: path.join(scratch, "any"), venvDir: REPO_VENV_DIR, host: "0.0.0.0" }),
    ).rejects.toThrow(ConfigError);
  });

  it("says to run npm run setup when the venv is missing", async () => {
    const error = await startMilvusLite({
      dataDir: path.join(scratch, "x"),
      venvDir: path.join(scratch, "no-venv"),
    }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: "milvus_lite_missing" });
    expect((error as Error).message).toMatch(/npm run setup/);
  });

  it("shows the tail of stderr when Lite exits during start-up", async () => {
    const venv = await fakeVenv(
      'echo "Traceback: something broke" >&2; echo "ImportError: no module named pymilvus" >&2; exit 3',
    );
    try {
      const error = await startMilvusLite({ dataDir: path.join(scratch, "early"), venvDir: venv }).catch(
        (caught: unknown) => caught,
      );
      expect(error).toMatchObject({ code: "milvus_lite_exited" });
      expect((error as Error).message).toMatch(/exit code 3/);
      expect((error as Error).message).toMatch(/ImportError: no module named pymilvus/);
    } finally {
      await rm(venv, { recursive: true, force: true });
    }
  });

  it("gives up after the start timeout and kills what it started", async () => {
    const pidFile = path.join(scratch, "hung.pid");
    // Ignores SIGINT and SIGTERM like a wedged server, so stopping has to escalate to SIGKILL.
    const venv = await fakeVenv(
      `trap '' INT TERM; echo $$ > ${JSON.stringify(pidFile)}; while true; do sleep 0.1; done`,
    );
    try {
      const started = Date.now();
      const error = await startMilvusLite({
        dataDir: path.join(scratch, "hung"),
        venvDir: venv,
        startTimeoutMs: 1500,
        stopGraceMs: 500,
      }).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: "milvus_lite_start_timeout" });
      expect((error as Error).message).toMatch(/did not answer on 127\.0\.0\.1:\d+ within 1500 ms/);
      const pid = Number((await readFile(pidFile, "utf8")).trim());
      expect(isAlive(pid)).toBe(false);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await rm(venv, { recursive: true, force: true });
    }
  });
});
