/**
 * `loupe gc` end to end: bin/loupe.js in a child process, on a data dir whose Milvus Lite holds real
 * images, with orphan blobs beside theirs: the grace period spares young ones, a dry run lists them and
 * removes nothing, and a run removes exactly them.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, utimes } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { BlobSweepReport } from "../../src/ingest/blob-gc.ts";
import { createFsBlobStore, type FsBlobStore } from "../../src/media/blob-store.ts";
import { recordId } from "../../src/store/index.ts";
import { createRng, renderScene, sampleScene } from "../../src/synth/index.ts";
import { openTestServices } from "../helpers/app.ts";

const run = promisify(execFile);
const root = path.join(import.meta.dirname, "..", "..");

async function loupe(args: string[], env: Record<string, string>) {
  try {
    const { stdout, stderr } = await run(process.execPath, ["bin/loupe.js", ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      timeout: 90_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** Sets every file under `dir` to have last changed `ageSeconds` ago. */
async function age(dir: string, ageSeconds: number): Promise<void> {
  const when = new Date(Date.now() - ageSeconds * 1000);
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) await utimes(path.join(entry.parentPath, entry.name), when, when);
  }
}

describe("loupe gc", () => {
  let dir: string;
  let env: Record<string, string>;
  let blobs: FsBlobStore;
  let liveKeys: string[];
  let orphans: string[];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-gc-int-"));
    env = {
      LOUPE_DATA_DIR: dir,
      LOUPE_MODEL_PACK: path.join(root, "models", "shapes-world-tiny"),
      LOUPE_VENV_DIR: path.join(root, ".venv"),
      LOUPE_LOG_LEVEL: "silent",
      LOUPE_BLOB_GC_AT_START: "off",
    };
    const opened = await openTestServices({ env });
    try {
      const form = new FormData();
      const rng = createRng(9);
      for (let index = 0; index < 3; index += 1) {
        const { data } = await renderScene(sampleScene(rng), { size: 96, format: "png", seed: index });
        form.append("files", new Blob([new Uint8Array(data)], { type: "image/png" }), `${index}.png`);
      }
      const response = await createApp(opened).request("/v1/images", { method: "POST", body: form });
      expect(response.status).toBe(200);
    } finally {
      await opened.close();
    }
    blobs = createFsBlobStore({ dir: path.join(dir, "blobs") });
    liveKeys = (await blobs.keys()).sort();
    expect(liveKeys).toHaveLength(6);
    // Orphans: one without a reference, one whose record was never stored.
    const ghost = recordId({ kind: "image", tenant: "default", contentSha256: "a".repeat(64), modelId: "m" });
    orphans = [
      (await blobs.put({ bytes: Buffer.from("orphan"), contentType: "image/png" })).sha256,
      (await blobs.put({ bytes: Buffer.from("ghost"), contentType: "image/png", owner: `default/${ghost}` }))
        .sha256,
    ].sort();
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("spares young blobs, lists orphans on a dry run, and removes exactly them", async () => {
    const young = await loupe(["gc", "--dry-run"], env);
    expect(young.stderr).toBe("");
    expect(young.code).toBe(0);
    expect(young.stdout).toContain("No orphan blobs.");
    expect(young.stdout).toContain("8 younger than 600 s kept");

    await age(path.join(dir, "blobs"), 120);
    const dry = await loupe(["gc", "--dry-run", "--grace-seconds", "60"], env);
    expect(dry.code).toBe(0);
    for (const sha256 of orphans) expect(dry.stdout).toContain(sha256);
    expect(dry.stdout).toContain("no reference");
    expect(dry.stdout).toContain("records gone: default/img_");
    expect(dry.stdout).toMatch(/Dry run: would remove 2 orphan blobs \(11 B\)/);
    expect((await blobs.keys()).sort()).toEqual([...liveKeys, ...orphans].sort());

    const wet = await loupe(["gc", "--grace-seconds", "60", "--json"], env);
    expect(wet.code).toBe(0);
    const report = JSON.parse(wet.stdout) as BlobSweepReport;
    expect(report).toMatchObject({ dryRun: false, checkedRecords: true, removedBytes: 11, young: 0 });
    expect(report.removed.map((blob) => blob.sha256).sort()).toEqual(orphans);
    expect((await blobs.keys()).sort()).toEqual(liveKeys);
    expect((await blobs.inventory()).unreferenced).toEqual([]);
  }, 240_000);

  it("refuses a grace period that is not a whole number, naming the flag", async () => {
    const { code, stderr } = await loupe(["gc", "--grace-seconds", "soon"], env);
    expect(code).toBe(1);
    expect(stderr).toContain('--grace-seconds takes a whole number from 0 to 2592000; got "soon"');
  });
});
