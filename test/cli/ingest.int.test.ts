import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatSummary, runIngest } from "../../src/cli/commands/ingest.ts";
import type { IngestProgress } from "../../src/cli/ingest/progress-bar.ts";
import { ImageIngester } from "../../src/ingest/image-ingest.ts";
import { REPO_VENV_DIR } from "../helpers/milvus-lite.ts";
import {
  type IngestHarness,
  ROOT,
  renderShapes,
  startIngestHarness,
  TENANT_HEADER,
} from "../ingest/harness.ts";

const run = promisify(execFile);

describe("loupe ingest", () => {
  let harness: IngestHarness;
  let dir: string;
  let ingester: ImageIngester;

  beforeAll(async () => {
    harness = await startIngestHarness({ name: "cli_ingest" });
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-ingest-"));
    const images = await renderShapes({ count: 8, seed: 21, format: "png" });
    await mkdir(path.join(dir, "photos", "nested"), { recursive: true });
    for (const [index, image] of images.slice(0, 4).entries()) {
      const folder = index < 2 ? "photos" : path.join("photos", "nested");
      await writeFile(path.join(dir, folder, `p${index}.png`), image);
    }
    await writeFile(path.join(dir, "photos", "notes.txt"), "not an image, ignored in directories");
    await writeFile(path.join(dir, "photos", "clip.mp4"), "a video for the video hook");
    await mkdir(path.join(dir, "listed"));
    for (const [index, image] of images.slice(4).entries()) {
      await writeFile(path.join(dir, "listed", `l${index}.png`), image);
    }
    await writeFile(
      path.join(dir, "manifest.jsonl"),
      [
        JSON.stringify({ file: "listed/l0.png", metadata: { tags: ["listed"], title: "first" } }),
        JSON.stringify({ file: "listed/l1.png" }),
        "",
        "{not json",
        JSON.stringify({ file: "listed/missing.png" }),
        JSON.stringify({ file: "listed/l2.png", url: "https://example.com/x.png" }),
        JSON.stringify({ file: "listed/l3.png", metadata: { sha256: "reserved" } }),
      ].join("\n"),
    );
    const { config, store, models, blobs } = harness;
    ingester = new ImageIngester({
      store,
      models,
      blobs,
      maxImageBytes: config.maxImageBytes,
      fetch: { maxBytes: config.urlMaxBytes, timeoutMs: config.urlTimeoutMs },
    });
  }, 120_000);

  afterAll(async () => {
    await harness?.dispose();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("ingests a directory recursively and a JSONL manifest, reporting each failure; a re-run skips everything", async () => {
    const progress: IngestProgress[] = [];
    const inputs = [path.join(dir, "photos"), path.join(dir, "manifest.jsonl")];
    const target = { kind: "local" as const, ingester, tenant: "cli" };
    const first = await runIngest({ inputs, target, onProgress: (update) => progress.push(update) });
    expect(first).toMatchObject({ total: 11, stored: 6, skipped: 0, failed: 5, videos: 1 });
    expect(progress.at(-1)).toEqual({ done: 11, total: 11, stored: 6, skipped: 0, failed: 5 });
    const failures = new Map(first.failures.map((failure) => [failure.name, failure.message]));
    expect(failures.get(`${path.join(dir, "manifest.jsonl")}:4`)).toMatch(/Not valid JSON/);
    expect(failures.get(`${path.join(dir, "manifest.jsonl")}:6`)).toMatch(/exactly one of "file"/);
    expect(failures.get(`${path.join(dir, "manifest.jsonl")}:7`)).toMatch(
      /metadata key "sha256" is reserved/,
    );
    expect(failures.get(path.join(dir, "listed", "missing.png"))).toMatch(/^Cannot read .*missing\.png/);
    expect(failures.has(path.join(dir, "photos", "clip.mp4"))).toBe(true);
    // Directory entries in name order: "nested/" sorts before "p0.png".
    expect(first.ids.map((entry) => path.basename(entry.name))).toEqual([
      "p2.png",
      "p3.png",
      "p0.png",
      "p1.png",
      "l0.png",
      "l1.png",
    ]);
    expect(await harness.store.count({ kind: "image", tenant: "cli" })).toBe(6);
    const [listed] = await harness.store.get({ kind: "image", tenant: "cli", ids: [first.ids[4]?.id ?? ""] });
    expect(listed).toMatchObject({ source: "cli", text: "first\nlisted" });
    expect(listed?.metadata.filename).toBe("l0.png");
    expect(formatSummary(first)).toMatch(
      /^Ingested 11 items in .* 6 stored, 0 already stored, 5 failed\.\nFailures:\n/,
    );

    const again = await runIngest({ inputs, target });
    expect(again).toMatchObject({ stored: 0, skipped: 6, failed: 5 });
    expect(again.ids).toEqual(first.ids);
    expect(await harness.store.count({ kind: "image", tenant: "cli" })).toBe(6);
  });

  it("hands video files to the video hook when there is one", async () => {
    const seen: string[] = [];
    const summary = await runIngest({
      inputs: [path.join(dir, "photos", "clip.mp4")],
      target: { kind: "local", ingester, tenant: "cli" },
      videos: async ({ files, report }) => {
        seen.push(...files);
        report(0, { status: "stored", id: `vid_${"c".repeat(32)}` });
      },
    });
    expect(seen).toEqual([path.join(dir, "photos", "clip.mp4")]);
    expect(summary).toMatchObject({ total: 1, stored: 1, failed: 0 });
  });

  it("refuses inputs that do not exist before doing anything", async () => {
    await expect(
      runIngest({ inputs: [path.join(dir, "nope")], target: { kind: "local", ingester, tenant: "cli" } }),
    ).rejects.toThrow(/nope does not exist\. Give image files, directories/);
  });

  it("--url mode sends the files to a running Loupe over HTTP, in batches", async () => {
    const requests: string[] = [];
    const summary = await runIngest({
      inputs: [path.join(dir, "photos")],
      target: {
        kind: "remote",
        url: "http://loupe.test/",
        batchSize: 3,
        fetch: async (input, init) => {
          requests.push(`${init.method} ${input}`);
          const url = new URL(input);
          return harness.app.request(url.pathname, {
            ...init,
            headers: { ...(init.headers as Record<string, string> | undefined), [TENANT_HEADER]: "remote" },
          });
        },
      },
    });
    expect(summary).toMatchObject({ total: 5, stored: 4, failed: 1 });
    expect(requests).toEqual(["POST http://loupe.test/v1/images", "POST http://loupe.test/v1/images"]);
    const [record] = await harness.store.get({
      kind: "image",
      tenant: "remote",
      ids: [summary.ids[0]?.id ?? ""],
    });
    expect(record?.source).toBe("cli");
  });

  it("runs as a command: in-process against the configured data dir, summary on stdout", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-cli-ingest-data-"));
    try {
      const env = { ...process.env, LOUPE_DATA_DIR: dataDir, LOUPE_VENV_DIR: REPO_VENV_DIR };
      const { stdout } = await run(
        process.execPath,
        ["bin/loupe.js", "ingest", "--json", "--tags", "cli,test", path.join(dir, "listed")],
        { cwd: ROOT, env, timeout: 90_000 },
      );
      const summary = JSON.parse(stdout) as { total: number; stored: number; failed: number };
      expect(summary).toMatchObject({ total: 4, stored: 4, failed: 0 });
      const again = await run(process.execPath, ["bin/loupe.js", "ingest", path.join(dir, "listed")], {
        cwd: ROOT,
        env,
        timeout: 90_000,
      });
      expect(again.stdout).toMatch(/Ingested 4 items in .*: 0 stored, 4 already stored, 0 failed\./);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 180_000);
});
