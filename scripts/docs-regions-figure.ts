/**
 * Draws the figure of docs/http-api.md's region search: Shapes World scenes ingested into a scratch data
 * directory with the shipped pack (its detection head stores their objects as regions), a region search for
 * one object description, and each hit's box drawn on its parent image.
 *
 *   npx tsx scripts/docs-regions-figure.ts [--query "a small green star"] [--out docs/screenshots/regions.png]
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { parseConfig } from "../src/config.ts";
import { createLogger } from "../src/logger.ts";
import { createLoupeServices } from "../src/services.ts";
import { createRng, deriveSeed, renderScene, sampleScene } from "../src/synth/index.ts";

const { values } = parseArgs({
  options: {
    query: { type: "string", default: "a small green star" },
    out: { type: "string", default: "docs/screenshots/regions.png" },
    scenes: { type: "string", default: "60" },
    seed: { type: "string", default: "2026" },
  },
});
const root = path.join(import.meta.dirname, "..");
const dataDir = await mkdtemp(path.join(os.tmpdir(), "loupe-regions-figure-"));
const services = await createLoupeServices({
  config: parseConfig({
    env: { LOUPE_DATA_DIR: dataDir, LOUPE_OCR: "off", LOUPE_LOG_LEVEL: "silent" },
    cwd: root,
  }),
  logger: createLogger({ level: "silent" }),
});
try {
  const seed = Number(values.seed);
  const count = Number(values.scenes);
  const items = [];
  for (let index = 0; index < count; index += 1) {
    const scene = sampleScene(createRng(deriveSeed(seed, "scene", index)));
    const rendered = await renderScene(scene, {
      size: 256,
      format: "jpeg",
      seed: deriveSeed(seed, "render", index),
    });
    items.push({
      index,
      input: { source: { type: "bytes" as const, filename: `scene-${index}.jpg`, bytes: rendered.data } },
    });
  }
  await services.images.ingest({ tenant: "default", items, report: () => undefined });
  const { items: hits } = await services.search.search({
    tenant: "default",
    text: values.query,
    kinds: ["region"],
    topK: 3,
    mode: "dense",
  });
  const size = 256;
  const tiles: Buffer[] = [];
  for (const hit of hits) {
    const region = hit.region;
    if (region === undefined) continue;
    const [parent] = await services.store.get({ kind: "image", tenant: "default", ids: [region.parentId] });
    if (parent === undefined) continue;
    const image = await services.media.read({ ref: parent.mediaRef });
    const { x0, y0, x1, y1 } = region.box;
    const words = [region.attributes.size, region.attributes.color, region.label].filter(Boolean).join(" ");
    const label = `${words} · ${hit.score.toFixed(2)}`;
    const overlay = Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size + 28}">` +
        `<rect x="${x0 * size}" y="${y0 * size}" width="${(x1 - x0) * size}" height="${(y1 - y0) * size}" ` +
        `fill="none" stroke="#00e5ff" stroke-width="3"/>` +
        `<rect x="0" y="${size}" width="${size}" height="28" fill="#111"/>` +
        `<text x="8" y="${size + 19}" font-family="DejaVu Sans, sans-serif" font-size="14" fill="#fff">${label}</text></svg>`,
    );
    tiles.push(
      await sharp(await sharp(image).resize(size, size).png().toBuffer())
        .extend({ bottom: 28, background: "#111" })
        .composite([{ input: overlay, top: 0, left: 0 }])
        .png()
        .toBuffer(),
    );
  }
  if (tiles.length === 0) throw new Error(`No region matched ${JSON.stringify(values.query)}.`);
  const gap = 8;
  await sharp({
    create: {
      width: tiles.length * size + (tiles.length - 1) * gap,
      height: size + 28,
      channels: 3,
      background: "#ffffff",
    },
  })
    .composite(tiles.map((tile, index) => ({ input: tile, top: 0, left: index * (size + gap) })))
    .png()
    .toFile(path.resolve(root, values.out));
  process.stdout.write(`wrote ${values.out}: ${tiles.length} hits for ${JSON.stringify(values.query)}\n`);
} finally {
  await services.close();
  await rm(dataDir, { recursive: true, force: true });
}
