/**
 * Detection and region cases end to end, in-process over a real embedded Milvus Lite and the bundled
 * model pack (which has a detection head): a tiny Shapes World split is ingested (regions are written at
 * ingest), `/v1/detect` is asked about each stored image and single-object descriptions are searched among
 * the images' regions; the run's summary carries the detection and region figures and the report their
 * tables. At most two cases of each kind run, so this stays small.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EvalOutcome, runEval } from "../../../src/eval/suite/cli.ts";
import type { RunResults } from "../../../src/eval/suite/results.ts";
import { generateDataset } from "../../../src/synth/index.ts";

describe("detection and region cases, in-process end to end", () => {
  let workDir: string;
  let outcome: EvalOutcome;
  let printed: string[];

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), "loupe-eval-objects-int-"));
    const dataset = path.join(workDir, "split");
    await generateDataset({
      outDir: dataset,
      seed: 9200,
      images: 6,
      size: 256,
      format: "jpeg",
      triples: 0,
      videos: 0,
    });
    printed = [];
    outcome = await runEval({
      suite: dataset,
      out: path.join(workDir, "run"),
      limit: 2,
      env: { ...process.env, LOUPE_LOG_LEVEL: "silent" },
      print: (line) => printed.push(line),
    });
  }, 240_000);

  afterAll(async () => {
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("scores /v1/detect on stored images and region search against the scenes", async () => {
    const results = JSON.parse(
      await readFile(path.join(outcome.outDir, "results.json"), "utf8"),
    ) as RunResults;
    const detection = results.cases.filter((record) => record.kind === "detection");
    const regions = results.cases.filter((record) => record.kind === "region");
    expect(detection).toHaveLength(2);
    expect(regions).toHaveLength(2);
    for (const record of [...detection, ...regions]) expect(record.error).toBeUndefined();
    expect(detection[0]?.output.detections?.length).toBeGreaterThan(0);
    // Regions are the images' own: every parent is a corpus image id.
    for (const record of regions) {
      expect(record.output.regions?.length).toBeGreaterThan(0);
      for (const region of record.output.regions ?? []) expect(region.image).toMatch(/^img-\d{6}$/u);
    }
    const figures = results.summary.figures;
    for (const name of ["detection.ap50", "detection.counting", "regions.recallAt1", "regions.recallAt5"]) {
      expect(figures[name]).toEqual(expect.any(Number));
    }
    expect(figures["detection.ap50"]).toBeGreaterThan(0.5);
    expect(printed.join("\n")).toContain("text→region: R@1");
    const markdown = await readFile(path.join(outcome.outDir, "report.md"), "utf8");
    expect(markdown).toContain("## Detection (2 images");
    expect(markdown).toContain("## Text→region search");
  });
});
