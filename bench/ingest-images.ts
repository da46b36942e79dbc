/**
 * `npm run bench:ingest [-- options]`: end-to-end image ingest rate beside the embedding-only rate, in
 * one run, on Loupe's services as `loupe serve` builds them (`createLoupeServices`: an embedded Milvus
 * Lite, the blob store and the pack) over a temporary data directory.
 *
 * - `embed only`: the pack's image embedder over the encoded images (decode, preprocess, vision tower);
 * - `ingest`: the image ingester as `POST /v1/images` runs it — hash and id, existence check, decode and
 *   validate, thumbnail, embed, original and thumbnail into the blob store (fsynced), upsert;
 * - `re-ingest`: the same images again, every one skipped (hash, id and one existence check each).
 *
 * Options: --pack <dir>, --images <n> (default 200), --size <px> (default 128), --format jpeg|png|webp.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseConfig } from "../src/config.ts";
import type { JobItemOutcome } from "../src/ingest/jobs.ts";
import { createLogger } from "../src/logger.ts";
import { createLoupeServices } from "../src/services.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../src/synth/index.ts";

const { values: args } = parseArgs({
  options: {
    pack: { type: "string" },
    images: { type: "string", default: "200" },
    size: { type: "string", default: "128" },
    format: { type: "string", default: "jpeg" },
  },
});
const packDir = resolve(args.pack ?? "models/shapes-world-tiny");
const count = Number.parseInt(args.images ?? "200", 10);
const size = Number.parseInt(args.size ?? "128", 10);
const format = (args.format ?? "jpeg") as "jpeg" | "png" | "webp";
if (!(count >= 1) || !(size >= 64 && size <= 1024) || !["jpeg", "png", "webp"].includes(format)) {
  throw new Error("--images ≥ 1, --size 64–1024, --format jpeg, png or webp.");
}

const work = await mkdtemp(join(tmpdir(), "loupe-bench-ingest-"));
const services = await createLoupeServices({
  config: parseConfig({
    env: { LOUPE_DATA_DIR: work, LOUPE_MODEL_PACK: packDir, LOUPE_COLLECTION_PREFIX: "bench_ingest" },
  }),
  logger: createLogger({ level: "silent" }),
});
const { models, images: ingester } = services;
try {
  process.stdout.write(`rendering ${count} Shapes World images (${size} px ${format})…\n`);
  const images: Buffer[] = [];
  for (let index = 0; index < count; index += 1) {
    const scene = sampleScene(createRng(deriveSeed(9, "scene", index)));
    images.push((await renderScene(scene, { size, format, seed: deriveSeed(9, "render", index) })).data);
  }
  // Warm-up: the first model run pays one-time costs.
  await models.imageEmbedder.embed({ images: images.slice(0, 8) });

  const started = performance.now();
  await models.imageEmbedder.embed({ images });
  const embedSeconds = (performance.now() - started) / 1000;

  const run = async () => {
    const outcomes: JobItemOutcome[] = [];
    const begin = performance.now();
    await ingester.ingest({
      tenant: "bench",
      items: images.map((bytes, index) => ({
        index,
        input: { source: { type: "bytes", bytes, filename: `${index}.${format}` } },
      })),
      report: (index, outcome) => {
        outcomes[index] = outcome;
      },
    });
    return { seconds: (performance.now() - begin) / 1000, outcomes };
  };
  const first = await run();
  const again = await run();
  const stored = first.outcomes.filter((outcome) => outcome.status === "stored").length;
  const skipped = again.outcomes.filter((outcome) => outcome.status === "skipped").length;
  const rate = (seconds: number) => `${(count / seconds).toFixed(1).padStart(7)} images/s`;
  process.stdout.write(
    [
      `pack ${models.modelId}, ${count} images, ${size} px ${format}, load average ${loadavg()
        .map((load) => load.toFixed(2))
        .join(" ")}`,
      `embed only  ${rate(embedSeconds)}  (${embedSeconds.toFixed(2)} s)`,
      `ingest      ${rate(first.seconds)}  (${first.seconds.toFixed(2)} s, ${stored} stored)`,
      `re-ingest   ${rate(again.seconds)}  (${again.seconds.toFixed(2)} s, ${skipped} skipped)`,
      `ingest / embed-only: ${(embedSeconds / first.seconds).toFixed(2)}`,
      "",
    ].join("\n"),
  );
} finally {
  await services.close();
  await rm(work, { recursive: true, force: true });
}
