/**
 * The file adapter of the classifier store: one JSON file per classifier under the tenant's folder,
 * written whole, read back by a new adapter (a restart), kept apart per tenant, and refusing names and
 * tenants that could leave their folder.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { decodeVector, encodeVector, type StoredClassifier } from "../../src/classifiers/classifier.ts";
import { createFileClassifierStore } from "../../src/classifiers/classifier-store.ts";
import { parseLabelOptions } from "../../src/cli/commands/classifiers.ts";
import { testDirectory } from "../db/contract-adapters.ts";

function classifier(tenant: string, name: string): StoredClassifier {
  return {
    version: 1,
    name,
    tenant,
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-01T00:00:00.000Z",
    modelId: "pack@1",
    dimension: 2,
    labels: [
      { label: "a", examples: [{ mediaRef: "blob:aa", vector: encodeVector(Float32Array.from([1, 0])) }] },
      { label: "b", examples: [{ mediaRef: "blob:bb", vector: encodeVector(Float32Array.from([0, 1])) }] },
    ],
    kinds: ["image"],
    applyOnIngest: false,
    fitted: {
      model: { method: "nearest-mean", weights: [], bias: [0, 0], temperature: 1 },
      looAccuracy: 1,
      validation: "leave-one-out",
      scores: [],
      threshold: 0.75,
    },
  };
}

describe("createFileClassifierStore", () => {
  const directory = testDirectory("loupe-classifier-store-");
  beforeEach(directory.reset);
  afterEach(directory.cleanup);

  it("keeps each classifier as one file per tenant, read back by a new adapter", async () => {
    const store = createFileClassifierStore({ dir: directory.path });
    await store.put(classifier("acme", "tone"));
    await store.put(classifier("acme", "shape"));
    await store.put(classifier("globex", "tone"));
    expect(await readdir(path.join(directory.path, "t_acme"))).toEqual(
      expect.arrayContaining(["tone.json", "shape.json"]),
    );
    // No temporary file is left behind by the atomic writes.
    expect(
      (await readdir(path.join(directory.path, "t_acme"))).filter((name) => name.endsWith(".tmp")),
    ).toEqual([]);

    const reopened = createFileClassifierStore({ dir: directory.path });
    expect((await reopened.list({ tenant: "acme" })).map((entry) => entry.name)).toEqual(["shape", "tone"]);
    const tone = await reopened.get({ tenant: "acme", name: "tone" });
    expect(Array.from(decodeVector(tone?.labels[1]?.examples[0]?.vector ?? ""))).toEqual([0, 1]);
    expect(await reopened.get({ tenant: "initech", name: "tone" })).toBeUndefined();
    expect(await reopened.list({ tenant: "initech" })).toEqual([]);

    expect(await reopened.delete({ tenant: "acme", name: "tone" })).toBe(true);
    expect(await reopened.delete({ tenant: "acme", name: "tone" })).toBe(false);
    expect(await reopened.get({ tenant: "globex", name: "tone" })).toBeDefined();
  });

  it("refuses names and tenants that could leave their folder", async () => {
    const store = createFileClassifierStore({ dir: directory.path });
    expect(await store.get({ tenant: "acme", name: "../t_globex/tone" })).toBeUndefined();
    await expect(store.put(classifier("acme", "../escape"))).rejects.toThrow(/Invalid classifier name/);
    await expect(store.put(classifier("../acme", "tone"))).rejects.toThrow(/Invalid tenant/);
  });
});

describe("parseLabelOptions", () => {
  it("reads label=example,example and refuses anything else", () => {
    expect(parseLabelOptions(["billing page=a.png, img_1 ,https://x/y.png", "login=b.png"])).toEqual([
      { label: "billing page", examples: ["a.png", "img_1", "https://x/y.png"] },
      { label: "login", examples: ["b.png"] },
    ]);
    expect(() => parseLabelOptions([])).toThrow(/--label red=a.jpg/);
    expect(() => parseLabelOptions(["=a.png"])).toThrow(/not label=example,example/);
  });
});
