/** The removal of temp uploads that a video ingest killed mid-video left (`removeStaleTempUploads`). */
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { removeStaleTempUploads, STALE_TEMP_UPLOAD_MS } from "../../src/ingest/video-ingest.ts";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "loupe-temp-uploads-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeAged(name: string, ageMs: number): Promise<void> {
  const file = path.join(dir, name);
  await writeFile(file, "bytes");
  const at = new Date(Date.now() - ageMs);
  await utimes(file, at, at);
}

describe("removeStaleTempUploads", () => {
  it("removes the temp uploads untouched for the stale age and keeps the fresh ones and other files", async () => {
    const stale = `video-${"a".repeat(24)}.upload`;
    const fresh = `video-${"b".repeat(24)}.upload`;
    await writeAged(stale, STALE_TEMP_UPLOAD_MS + 1_000);
    await writeAged(fresh, STALE_TEMP_UPLOAD_MS - 60_000);
    // Not a name the ingest writes (the pack migration's temp videos, anything else): never touched.
    await writeAged(`migrate-${"c".repeat(24)}.video`, STALE_TEMP_UPLOAD_MS * 4);
    await writeAged("video-notes.upload", STALE_TEMP_UPLOAD_MS * 4);

    expect(await removeStaleTempUploads({ dir })).toEqual([stale]);
    expect((await readdir(dir)).sort()).toEqual([
      `migrate-${"c".repeat(24)}.video`,
      fresh,
      "video-notes.upload",
    ]);
  });

  it("takes the age it is given, and a missing directory is nothing to remove", async () => {
    const name = `video-${"d".repeat(24)}.upload`;
    await writeAged(name, 5_000);
    expect(await removeStaleTempUploads({ dir, olderThanMs: 10_000 })).toEqual([]);
    expect(await removeStaleTempUploads({ dir, olderThanMs: 1_000 })).toEqual([name]);
    expect(await removeStaleTempUploads({ dir: path.join(dir, "absent") })).toEqual([]);
  });
});
