import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NotFoundError, ValidationError } from "../../src/errors.ts";
import {
  blobRef,
  claimOwner,
  createFsBlobStore,
  type FsBlobStore,
  ownerOfLabel,
  parseBlobRef,
  sha256Hex,
} from "../../src/media/blob-store.ts";

describe("FsBlobStore", () => {
  let dir: string;
  let blobs: FsBlobStore;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "loupe-blob-test-"));
    blobs = createFsBlobStore({ dir: path.join(dir, "blobs") });
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores bytes under their sha256 with the content type, once", async () => {
    const bytes = Buffer.from("hello blob");
    const first = await blobs.put({ bytes, contentType: "image/png" });
    expect(first).toEqual({ sha256: sha256Hex(bytes), size: bytes.length, created: true });
    const second = await blobs.put({ bytes, contentType: "image/png" });
    expect(second.created).toBe(false);
    expect(await blobs.keys()).toEqual([first.sha256]);

    const stored = await blobs.get(first.sha256);
    expect(stored.contentType).toBe("image/png");
    expect(stored.size).toBe(bytes.length);
    expect((await stored.bytes()).toString()).toBe("hello blob");
    const streamed = Buffer.from(await new Response(stored.stream()).arrayBuffer());
    expect(streamed.toString()).toBe("hello blob");
    expect(await blobs.has(first.sha256)).toBe(true);
  });

  it("leaves no temporary files behind and lays blobs out by key prefix", async () => {
    const { sha256 } = await blobs.put({ bytes: Buffer.from("x"), contentType: "text/plain" });
    const folder = path.join(dir, "blobs", sha256.slice(0, 2), sha256.slice(2, 4));
    expect((await readdir(folder)).sort()).toEqual([sha256, `${sha256}.json`]);
    expect(JSON.parse(await readFile(path.join(folder, `${sha256}.json`), "utf8"))).toMatchObject({
      contentType: "text/plain",
      size: 1,
    });
  });

  it("concurrent puts of the same bytes keep one blob", async () => {
    const bytes = Buffer.alloc(100_000, 7);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => blobs.put({ bytes, contentType: "application/octet-stream" })),
    );
    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(await blobs.keys()).toHaveLength(1);
  });

  it("refuses keys that are not sha256 digests, so no key can name another path", async () => {
    for (const key of ["../../etc/passwd", "ABC", `${"a".repeat(63)}/`, "A".repeat(64), ""]) {
      await expect(blobs.get(key)).rejects.toBeInstanceOf(ValidationError);
      await expect(blobs.has(key)).rejects.toBeInstanceOf(ValidationError);
      await expect(blobs.delete(key)).rejects.toBeInstanceOf(ValidationError);
    }
    await expect(blobs.get("0".repeat(64))).rejects.toBeInstanceOf(NotFoundError);
  });

  it("refuses malformed content types", async () => {
    await expect(
      blobs.put({ bytes: Buffer.from("x"), contentType: "text/html\r\nset-cookie: a=b" }),
    ).rejects.toThrow(/Invalid content type/);
  });

  it("removes a blob only when its last reference is released", async () => {
    const { sha256 } = await blobs.put({ bytes: Buffer.from("shared"), contentType: "image/jpeg" });
    await blobs.addReference({ sha256, owner: "a/img_1" });
    await blobs.addReference({ sha256, owner: "b/img_2" });
    await blobs.addReference({ sha256, owner: "a/img_1" });
    expect(await blobs.references(sha256)).toEqual(["a/img_1", "b/img_2"]);

    expect(await blobs.release({ sha256, owner: "a/img_1" })).toEqual({ removed: false });
    expect(await blobs.has(sha256)).toBe(true);
    expect(await blobs.release({ sha256, owner: "b/img_2" })).toEqual({ removed: true });
    expect(await blobs.has(sha256)).toBe(false);
    expect(await blobs.keys()).toEqual([]);
  });

  it("a put after references keeps them", async () => {
    const bytes = Buffer.from("kept");
    const { sha256 } = await blobs.put({ bytes, contentType: "image/jpeg" });
    await blobs.addReference({ sha256, owner: "t/img_1" });
    await blobs.put({ bytes, contentType: "image/jpeg" });
    expect(await blobs.references(sha256)).toEqual(["t/img_1"]);
  });

  it("scan lists blobs with their references and age, and the leftovers of interrupted writes", async () => {
    const kept = await blobs.put({ bytes: Buffer.from("kept"), contentType: "image/jpeg", owner: "t/img_1" });
    const lost = await blobs.put({ bytes: Buffer.from("lost"), contentType: "image/jpeg" });
    const folder = path.join(dir, "blobs", lost.sha256.slice(0, 2), lost.sha256.slice(2, 4));
    await rm(path.join(folder, `${lost.sha256}.json`));
    await writeFile(path.join(folder, ".tmp-00112233"), "partial");
    const before = Date.now();
    const scan = await blobs.scan();
    expect(scan.blobs).toEqual([
      { sha256: kept.sha256, size: 4, refs: ["t/img_1"], touchedAt: expect.any(Number) },
    ]);
    expect(scan.blobs[0]?.touchedAt).toBeLessThanOrEqual(before + 1);
    expect(
      scan.leftovers
        .map(({ kind, path: file, size }) => ({ kind, file, size }))
        .sort((a, b) => a.kind.localeCompare(b.kind)),
    ).toEqual([
      {
        kind: "temporary",
        file: path.join(lost.sha256.slice(0, 2), lost.sha256.slice(2, 4), ".tmp-00112233"),
        size: 7,
      },
      {
        kind: "unindexed",
        file: path.join(lost.sha256.slice(0, 2), lost.sha256.slice(2, 4), lost.sha256),
        size: 4,
      },
    ]);
    // Young leftovers stay; old ones go; a path outside the store is never removed.
    for (const leftover of scan.leftovers) {
      expect(await blobs.removeLeftover({ leftover, untouchedSince: before - 60_000 })).toBe(false);
    }
    for (const leftover of scan.leftovers) {
      expect(await blobs.removeLeftover({ leftover, untouchedSince: Date.now() + 1000 })).toBe(true);
    }
    expect(await readdir(folder)).toEqual([]);
    const outside = { kind: "temporary" as const, path: "../../etc/.tmp-x", size: 0, touchedAt: 0 };
    expect(await blobs.removeLeftover({ leftover: outside, untouchedSince: Date.now() })).toBe(false);
  });

  it("collect drops dead references, removes a blob left with none, and leaves one touched since", async () => {
    const bytes = Buffer.from("collected");
    const { sha256 } = await blobs.put({ bytes, contentType: "image/jpeg", owner: "a/img_1" });
    await blobs.addReference({ sha256, owner: "b/img_2" });
    const later = Date.now() + 1000;
    expect(await blobs.collect({ sha256, staleOwners: ["a/img_1"], untouchedSince: later })).toEqual({
      removed: false,
      bytes: 0,
      released: ["a/img_1"],
    });
    expect(await blobs.references(sha256)).toEqual(["b/img_2"]);
    // A write that names an existing owner still makes the blob young.
    const scanned = Date.now() - 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
    await blobs.put({ bytes, contentType: "image/jpeg", owner: "b/img_2" });
    expect(await blobs.collect({ sha256, staleOwners: ["b/img_2"], untouchedSince: scanned })).toMatchObject({
      removed: false,
      skipped: "touched",
    });
    expect(
      await blobs.collect({ sha256, staleOwners: ["b/img_2"], untouchedSince: Date.now() + 1000 }),
    ).toEqual({
      removed: true,
      bytes: bytes.length,
      released: ["b/img_2"],
    });
    expect(await blobs.has(sha256)).toBe(false);
    expect(await blobs.collect({ sha256, untouchedSince: Date.now() })).toMatchObject({ skipped: "gone" });
  });

  it("claims of one record stand for it: releasing one keeps the others, releasing the record drops all", async () => {
    const bytes = Buffer.from("claimed twice");
    const first = claimOwner("t/img_1");
    const second = claimOwner("t/img_1");
    expect(first).toMatch(/^t\/img_1\/[0-9a-f]{16}$/);
    expect(second).not.toBe(first);
    const { sha256 } = await blobs.put({ bytes, contentType: "image/jpeg", owner: first });
    await blobs.put({ bytes, contentType: "image/jpeg", owner: second });
    await blobs.addReference({ sha256, owner: "u/img_2" });
    expect(await blobs.references(sha256)).toEqual(["t/img_1", "u/img_2"]);
    expect((await blobs.inventory()).blobs).toEqual([{ sha256, refs: ["t/img_1", "u/img_2"] }]);
    expect((await blobs.scan()).blobs[0]?.refs).toEqual([first, second, "u/img_2"].sort());

    // The ingest that failed releases its claim only.
    expect(await blobs.release({ sha256, owner: first })).toEqual({ removed: false });
    expect(await blobs.references(sha256)).toEqual(["t/img_1", "u/img_2"]);
    // Deleting the record releases every claim under it; a longer id with the same start is untouched.
    await blobs.addReference({ sha256, owner: "t/img_10" });
    expect(await blobs.release({ sha256, owner: "t/img_1" })).toEqual({ removed: false });
    expect(await blobs.references(sha256)).toEqual(["t/img_10", "u/img_2"]);
    await blobs.release({ sha256, owner: "t/img_10" });
    expect(await blobs.release({ sha256, owner: "u/img_2" })).toEqual({ removed: true });
    expect(ownerOfLabel(second)).toBe("t/img_1");
    expect(ownerOfLabel("maintenance:pinned")).toBe("maintenance:pinned");
  });

  it("blob refs round-trip and reject anything else", () => {
    const key = sha256Hex(Buffer.from("a"));
    expect(parseBlobRef(blobRef(key))).toBe(key);
    expect(parseBlobRef("https://example.com/a.jpg")).toBeUndefined();
    expect(parseBlobRef("blob:../x")).toBeUndefined();
  });
});
