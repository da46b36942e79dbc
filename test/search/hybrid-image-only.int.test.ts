/**
 * Hybrid search must not hurt image-only queries: over a Shapes World corpus (no text in the images, no
 * titles or tags), ingested with the real OCR engine reading every image, BM25 finds nothing and a text
 * query's hybrid ranking is the dense ranking, id for id (real Milvus Lite, pack and PP-OCRv4).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPpOcrEngine } from "../../src/inference/ocr/pp-ocr.ts";
import type { SearchResultItem } from "../../src/search/index.ts";
import { generateDataset } from "../../src/synth/index.ts";
import { type IngestHarness, multipart, startIngestHarness, TENANT_HEADER } from "../ingest/harness.ts";

interface SceneLine {
  id: string;
  file: string;
  descriptions: { text: string }[];
}

const IMAGES = 40;

describe("hybrid search over images without text (real Lite, pack and PP-OCRv4)", () => {
  const engine = createPpOcrEngine({ limits: { maxSide: 2560, maxLines: 512, timeoutMs: 20_000 } });
  let harness: IngestHarness;
  let workDir: string;
  let scenes: SceneLine[];

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-hybrid-shapes-"));
    await generateDataset({
      outDir: workDir,
      seed: 5,
      images: IMAGES,
      size: 224,
      format: "png",
      questionsPerType: 1,
      triples: 0,
      descriptionQueries: 2,
      partialQueries: 1,
    });
    scenes = (await readFile(path.join(workDir, "scenes.jsonl"), "utf8"))
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as SceneLine);
    harness = await startIngestHarness({ name: "hybrid_shapes", ocr: engine });
    const files = await Promise.all(
      scenes.map(async (scene) => ({
        name: path.basename(scene.file),
        bytes: await readFile(path.resolve(workDir, scene.file)),
        type: "image/png",
      })),
    );
    const response = await harness.app.request("/v1/images", {
      method: "POST",
      headers: { [TENANT_HEADER]: "shapes" },
      body: multipart({ files }),
    });
    expect(response.status).toBe(200);
  }, 240_000);

  afterAll(async () => {
    await harness?.dispose();
    await engine.close();
    await rm(workDir, { recursive: true, force: true });
  });

  const ranked = async (text: string, mode?: string): Promise<string[]> => {
    const response = await harness.app.request("/v1/search", {
      method: "POST",
      headers: { [TENANT_HEADER]: "shapes", "content-type": "application/json" },
      body: JSON.stringify({ text, kinds: ["image"], topK: 10, ...(mode === undefined ? {} : { mode }) }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { items: SearchResultItem[] }).items.map((item) => item.id);
  };

  it("reads no text in the shapes, so the text side finds nothing", async () => {
    const { rows } = await harness.store.list({ kind: "image", tenant: "shapes", limit: 100 });
    expect(rows).toHaveLength(IMAGES);
    expect(rows.filter((row) => row.ocrText !== "")).toEqual([]);
    expect(await ranked("a large red circle on the left", "text")).toEqual([]);
  });

  it("ranks every description query the same in the default (hybrid) mode as in dense", async () => {
    const queries = scenes.flatMap((scene) => scene.descriptions.map((description) => description.text));
    for (const query of queries.slice(0, 30)) {
      expect(await ranked(query), query).toEqual(await ranked(query, "dense"));
    }
  });
});
