/**
 * `npm run bench:detect [-- options]`: what the detection head costs, in ms per image, beside the vision tower
 * alone in the same run, on rendered Shapes World images (256 px JPEG, as the pack eval's baseline):
 * - `tower`: the pack's image embedder end to end (decode, preprocess, vision tower), what ingest ran before
 *   regions;
 * - `tower + tokens`: the same, also reading the tower's token states out of the session;
 * - `tower + head`: `detector.encodeAndDetect`, one tower pass giving the embedding and the detections, what
 *   ingest runs with regions on;
 * - `head alone`: the head on token states computed beforehand (`detector.runHead`) and the decoding of its
 *   slots into detections, per head batch size;
 * - image ingest with regions on and off (`LOUPE_REGIONS`, OCR off in both so that only regions differ):
 *   Loupe's own services (`createLoupeServices`: an embedded Milvus Lite, the blob store, the pack) over a
 *   temporary data directory, each mode into fresh collections; images/s and the on/off ratio.
 *
 * Options: --pack <dir> (default $LOUPE_MODEL_PACK or models/shapes-world-tiny), --images <n> per model
 * measurement (default 64), --batch-sizes 1,8 (head alone), --size <px> (default 256), --threads <n>
 * (onnxruntime intra-op threads; default 0, onnxruntime's choice), --seconds <s> per measurement (default 1.5),
 * --rounds <n> (default 2, best kept), --ingest-images <n> (default 200; 0 skips the ingest comparison),
 * --region-min-score <s> (LOUPE_REGION_MIN_SCORE for the regions-on ingest; default the pack's threshold).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseConfig } from "../src/config.ts";
import { decodeDetections } from "../src/inference/detection-head.ts";
import { loadModelPack } from "../src/inference/model-pack.ts";
import type { JobItemOutcome } from "../src/ingest/jobs.ts";
import { createLogger } from "../src/logger.ts";
import { createLoupeServices } from "../src/services.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../src/synth/index.ts";

const { values: args } = parseArgs({
  options: {
    pack: { type: "string" },
    images: { type: "string", default: "64" },
    "batch-sizes": { type: "string", default: "1,8" },
    size: { type: "string", default: "256" },
    threads: { type: "string", default: "0" },
    seconds: { type: "string", default: "1.5" },
    rounds: { type: "string", default: "2" },
    "ingest-images": { type: "string", default: "200" },
    "region-min-score": { type: "string" },
  },
});
const packDir = resolve(args.pack ?? process.env.LOUPE_MODEL_PACK ?? "models/shapes-world-tiny");
const imageCount = Number.parseInt(args.images ?? "64", 10);
const batchSizes = (args["batch-sizes"] ?? "1,8").split(",").map((value) => Number.parseInt(value, 10));
const size = Number.parseInt(args.size ?? "256", 10);
const threads = Number.parseInt(args.threads ?? "0", 10);
const minSeconds = Number.parseFloat(args.seconds ?? "1.5");
const rounds = Number.parseInt(args.rounds ?? "2", 10);
const ingestCount = Number.parseInt(args["ingest-images"] ?? "200", 10);
const regionMinScore = args["region-min-score"];
if (
  !(imageCount >= 1) ||
  batchSizes.some((batch) => !Number.isInteger(batch) || batch < 1 || batch > imageCount) ||
  !(size >= 64 && size <= 1024) ||
  !(threads >= 0) ||
  !(minSeconds > 0) ||
  !(rounds >= 1) ||
  !(ingestCount >= 0) ||
  (regionMinScore !== undefined && !(Number(regionMinScore) >= 0 && Number(regionMinScore) <= 1))
) {
  throw new Error(
    "--images ≥ 1, --batch-sizes positive integers up to --images (1,8), --size 64–1024, --threads ≥ 0, " +
      "--seconds > 0, --rounds ≥ 1, --ingest-images ≥ 0, --region-min-score 0–1.",
  );
}

async function renderImages(count: number): Promise<Buffer[]> {
  const images: Buffer[] = [];
  for (let index = 0; index < count; index += 1) {
    const scene = sampleScene(createRng(deriveSeed(19, "scene", index)));
    images.push(
      (await renderScene(scene, { size, format: "jpeg", quality: 90, seed: deriveSeed(19, "render", index) }))
        .data,
    );
  }
  return images;
}

/** Milliseconds per item of `task` (which handles `items` items), after one warm-up call. */
async function msPerItem(task: () => Promise<unknown>, items: number): Promise<number> {
  await task();
  let calls = 0;
  const started = performance.now();
  for (;;) {
    await task();
    calls += 1;
    const elapsed = performance.now() - started;
    if (elapsed >= minSeconds * 1000 && calls >= 2) return elapsed / (calls * items);
  }
}

/** The best (lowest) of `rounds` measurements per name, the names taking turns within each round. */
async function bestOf(tasks: Record<string, () => Promise<number>>): Promise<Record<string, number>> {
  const best: Record<string, number> = {};
  for (let round = 0; round < rounds; round += 1) {
    for (const [name, task] of Object.entries(tasks)) {
      best[name] = Math.min(best[name] ?? Number.POSITIVE_INFINITY, await task());
    }
  }
  return best;
}

const ms = (value: number | undefined): string =>
  value === undefined ? "-" : value >= 10 ? value.toFixed(1) : value.toFixed(2);

async function benchModels(images: readonly Buffer[]): Promise<string[]> {
  const pack = await loadModelPack({
    dir: packDir,
    sessionOptions: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  });
  try {
    const detector = pack.detector;
    if (detector === undefined) {
      throw new Error(
        `${pack.modelId} (${packDir}) has no detection head (no loupe.detection in its config.json); give a pack with one.`,
      );
    }
    const encoded = await pack.imageEmbedder.encode({ images, withTokens: true });
    const tokens = encoded.tokens ?? [];
    const headAlone = (batch: number) => async (): Promise<number> =>
      msPerItem(async () => {
        const slots = await detector.runHead({ tokens: tokens.slice(0, batch) });
        for (const imageSlots of slots) {
          decodeDetections({
            slots: imageSlots,
            config: detector.config,
            threshold: detector.config.score_threshold,
          });
        }
      }, batch);
    const best = await bestOf({
      tower: () => msPerItem(() => pack.imageEmbedder.embed({ images }), images.length),
      towerTokens: () =>
        msPerItem(() => pack.imageEmbedder.encode({ images, withTokens: true }), images.length),
      towerHead: () => msPerItem(() => detector.encodeAndDetect({ images }), images.length),
      ...Object.fromEntries(batchSizes.map((batch) => [`head${batch}`, headAlone(batch)])),
    });
    const found = await detector.detect({ images });
    const detections = found.reduce((sum, image) => sum + image.detections.length, 0);
    const tower = best.tower as number;
    const towerHead = best.towerHead as number;
    const first = tokens[0];
    return [
      `${pack.modelId} (${packDir}): ${images.length} Shapes World images, ${size} px JPEG; tokens ` +
        `[${first?.length ?? "?"}, ${first?.width ?? "?"}] per image; head batch ${detector.batchSize}, ` +
        `${detector.config.max_detections} slots, threshold ${detector.config.score_threshold} ` +
        `(${(detections / images.length).toFixed(2)} detections per image)`,
      "",
      "| path                                  | ms per image | images/s | vs tower |",
      "| ------------------------------------- | -----------: | -------: | -------: |",
      ...[
        ["tower (embed)", tower],
        ["tower + tokens (encode withTokens)", best.towerTokens as number],
        ["tower + head (encodeAndDetect)", towerHead],
        ...batchSizes.map((batch) => [
          `head alone on cached tokens, batch ${batch}`,
          best[`head${batch}`] as number,
        ]),
      ].map(
        ([name, value]) =>
          `| ${String(name).padEnd(37)} | ${ms(value as number).padStart(12)} | ${(1000 / (value as number)).toFixed(1).padStart(8)} | ${((value as number) / tower).toFixed(2).padStart(8)} |`,
      ),
      "",
      `tower + head throughput: ${((100 * tower) / towerHead).toFixed(0)} % of the tower alone`,
    ];
  } finally {
    await pack.close();
  }
}

/** Images/s of one ingest of `images` with `LOUPE_REGIONS=mode`, into fresh collections. */
async function ingestRate(
  images: readonly Buffer[],
  mode: "on" | "off",
): Promise<{ rate: number; stored: number }> {
  const work = await mkdtemp(join(tmpdir(), `loupe-bench-detect-${mode}-`));
  const services = await createLoupeServices({
    config: parseConfig({
      env: {
        LOUPE_DATA_DIR: work,
        LOUPE_MODEL_PACK: packDir,
        LOUPE_COLLECTION_PREFIX: `bench_detect_${mode}`,
        LOUPE_REGIONS: mode,
        LOUPE_OCR: "off",
        ...(regionMinScore === undefined ? {} : { LOUPE_REGION_MIN_SCORE: regionMinScore }),
        ...(threads > 0 ? { LOUPE_INFERENCE_THREADS: String(threads) } : {}),
      },
    }),
    logger: createLogger({ level: "silent" }),
  });
  try {
    // Warm-up: the first model runs pay one-time costs.
    await services.models.imageEmbedder.embed({ images: images.slice(0, 8) });
    const outcomes: JobItemOutcome[] = [];
    const started = performance.now();
    await services.images.ingest({
      tenant: "bench",
      items: images.map((bytes, index) => ({
        index,
        input: { source: { type: "bytes", bytes, filename: `${index}.jpg` } },
      })),
      report: (index, outcome) => {
        outcomes[index] = outcome;
      },
    });
    const seconds = (performance.now() - started) / 1000;
    return {
      rate: images.length / seconds,
      stored: outcomes.filter((outcome) => outcome.status === "stored").length,
    };
  } finally {
    await services.close();
    await rm(work, { recursive: true, force: true });
  }
}

async function benchIngest(): Promise<string[]> {
  if (ingestCount === 0) return ["ingest with regions on/off: skipped (--ingest-images 0)"];
  const images = await renderImages(ingestCount);
  // Best of `rounds`, the modes taking turns and the first of each round alternating, so that neither
  // always runs on a warmer or a busier machine.
  const best = { off: { rate: 0, stored: 0 }, on: { rate: 0, stored: 0 } };
  for (let round = 0; round < rounds; round += 1) {
    for (const mode of round % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
      const result = await ingestRate(images, mode);
      if (result.rate > best[mode].rate) best[mode] = result;
    }
  }
  const { off, on } = best;
  return [
    `image ingest, ${ingestCount} images, OCR off, fresh collections per mode and round, best of ${rounds}` +
      (regionMinScore === undefined
        ? ":"
        : `, regions from score ${regionMinScore} (LOUPE_REGION_MIN_SCORE):`),
    `  regions off ${off.rate.toFixed(1).padStart(7)} images/s (${off.stored} stored)`,
    `  regions on  ${on.rate.toFixed(1).padStart(7)} images/s (${on.stored} stored)`,
    `  on / off: ${(on.rate / off.rate).toFixed(2)} (target ≥ 0.70)`,
  ];
}

async function main(): Promise<void> {
  const images = await renderImages(imageCount);
  const lines = [
    `onnxruntime intra-op threads ${threads === 0 ? "0 (onnxruntime's choice)" : threads}, ${availableParallelism()} CPUs; ` +
      `${minSeconds} s per measurement, best of ${rounds} rounds taken in turn`,
    "",
    ...(await benchModels(images)),
    "",
    ...(await benchIngest()),
    "",
    `load average at the end: ${loadavg()
      .map((value) => value.toFixed(1))
      .join(" ")}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

await main();
