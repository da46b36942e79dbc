/**
 * `npm run bench:embed [-- options]`: image embedding speed per pack and variant (FP32, INT8) and batch size,
 * against Python's reference stack and against what the machine can do, in one run:
 * - `model`: the vision tower alone on preprocessed pixels (onnxruntime-node, in Loupe's worker thread);
 * - `ts e2e`: encoded JPEG bytes through the real `ImageEmbedder` (sharp decode + resize + crop, normalize,
 *   vision tower), the images submitted at once and run `batch` per model run, as a bulk ingest does;
 * - `ts e2e ×N copies` (`--replicas N`, default 2; 1 turns it off): the same with the vision tower loaded N
 *   times side by side and the threads divided between the copies (Loupe's LOUPE_VISION_REPLICAS), so that
 *   images run through the model in parallel instead of each operator being split over the threads;
 * - `py e2e`: PIL decode + bicubic resize + center crop + numpy normalize + onnxruntime on the same images,
 *   same model and threads, `batch` per run, one after the other (bench/embed_reference.py);
 * - `py model`: Python onnxruntime on the same pixels (the bindings' own cost);
 * - GFLOPs per image of the vision tower (MatMul/Gemm/Conv of the ONNX graph at batch 1, 2 FLOPs per
 *   multiply-add, counted by the Python side with `onnx`), the GFLOP/s achieved by `model` and `ts e2e`, and
 *   the machine's peak: the best of 10 runs, twice, of an n×n float32 MatMul in onnxruntime on the same threads.
 * TypeScript and Python measurements alternate, best of `--rounds`, so both see the same machine load.
 *
 * Test images are photo-like JPEGs (gradients, noise and shapes, quality 90) at `--sizes`, in turn: decoding
 * and resizing cost grows with the input size, so 224 px inputs would flatter every preprocessing stack.
 *
 * The Python side runs with the interpreter given by --python, else `.tmp/bench-venv/bin/python`, which the
 * bench creates on first use (`python3 -m venv` + `pip install onnxruntime==<onnxruntime-node's version>
 * numpy Pillow onnx`, from the package index pip is configured for). --no-python skips it (and the FLOP count
 * and peak with it).
 *
 * Options: --pack <dir> (repeatable or comma-separated; default $LOUPE_MODEL_PACK or models/shapes-world-tiny),
 * --int8 <dir> (the same, labelled INT8), --batch-sizes 1,8, --images <n> per e2e call (default 32),
 * --sizes 640x480,1280x720, --replicas <n> (default 2), --threads <n> (onnxruntime intra-op threads for both runtimes; default 0,
 * onnxruntime's choice, as Loupe's LOUPE_INFERENCE_THREADS), --seconds <s> per measurement (default 1.5),
 * --rounds <n> (default 2), --texts (also texts/s of the text tower), --peak-size <n> (default 2048),
 * --python <path>, --no-python.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs, promisify } from "node:util";
import sharp from "sharp";
import { ImageEmbedder } from "../src/inference/clip-encoders.ts";
import { loadModelPack, type ModelPack, packFiles, sessionContracts } from "../src/inference/model-pack.ts";
import { createSession, type OnnxSession, type SessionSettings } from "../src/inference/session.ts";

const run = promisify(execFile);

const { values: args } = parseArgs({
  options: {
    pack: { type: "string", multiple: true },
    int8: { type: "string", multiple: true },
    "batch-sizes": { type: "string", default: "1,8" },
    images: { type: "string", default: "32" },
    sizes: { type: "string", default: "640x480,1280x720" },
    threads: { type: "string", default: "0" },
    replicas: { type: "string", default: "2" },
    seconds: { type: "string", default: "1.5" },
    rounds: { type: "string", default: "2" },
    texts: { type: "boolean", default: false },
    "peak-size": { type: "string", default: "2048" },
    python: { type: "string" },
    "no-python": { type: "boolean", default: false },
  },
});

const list = (values: readonly string[] | undefined): string[] =>
  (values ?? []).flatMap((value) => value.split(",")).filter((value) => value.length > 0);
const packs: { dir: string; variant: "FP32" | "INT8" }[] = [
  ...list(args.pack).map((dir) => ({ dir: resolve(dir), variant: "FP32" as const })),
  ...list(args.int8).map((dir) => ({ dir: resolve(dir), variant: "INT8" as const })),
];
if (packs.length === 0) {
  packs.push({
    dir: resolve(process.env.LOUPE_MODEL_PACK ?? "models/shapes-world-tiny"),
    variant: "FP32",
  });
}
const batchSizes = (args["batch-sizes"] ?? "1,8").split(",").map((value) => Number.parseInt(value, 10));
const imageCount = Number.parseInt(args.images ?? "32", 10);
const sizes = (args.sizes ?? "640x480,1280x720").split(",").map((value) => {
  const [width, height] = value.split("x").map((part) => Number.parseInt(part, 10));
  return { width: width ?? Number.NaN, height: height ?? Number.NaN };
});
const threads = Number.parseInt(args.threads ?? "0", 10);
const replicas = Number.parseInt(args.replicas ?? "2", 10);
const minSeconds = Number.parseFloat(args.seconds ?? "1.5");
const rounds = Number.parseInt(args.rounds ?? "2", 10);
const peakSize = Number.parseInt(args["peak-size"] ?? "2048", 10);
if (
  batchSizes.some((size) => !Number.isInteger(size) || size < 1) ||
  sizes.some(({ width, height }) => !(width >= 16 && height >= 16)) ||
  !(imageCount >= 1) ||
  !(threads >= 0) ||
  !(replicas >= 1) ||
  !(minSeconds > 0) ||
  !(rounds >= 1) ||
  !(peakSize >= 64)
) {
  throw new Error(
    "--batch-sizes takes positive integers (1,8), --sizes WxH pairs of at least 16 px (640x480,1280x720), " +
      "--images ≥ 1, --threads ≥ 0, --replicas ≥ 1, --seconds > 0, --rounds ≥ 1, --peak-size ≥ 64.",
  );
}

const COLORS = ["red", "green", "blue", "yellow", "purple", "orange"];
const SHAPES = ["circle", "square", "triangle", "star", "hexagon"];

/** Shapes-World-like captions of varied length. */
function makeTexts(count: number): string[] {
  return Array.from({ length: count }, (_, index) => {
    const color = COLORS[index % COLORS.length];
    const shape = SHAPES[index % SHAPES.length];
    const other = `${COLORS[(index + 2) % COLORS.length]} ${SHAPES[(index + 3) % SHAPES.length]}`;
    return index % 3 === 0
      ? `a ${color} ${shape}`
      : index % 3 === 1
        ? `a photo of a large ${color} ${shape} and a small ${other}`
        : `What color is the ${shape} on the left of the ${other}?`;
  });
}

/**
 * Photo-like JPEGs: a colour gradient, sensor-like noise and a few soft shapes, so that JPEG decoding has
 * real texture to work through (flat synthetic scenes decode unrealistically fast).
 */
async function makeImages(count: number): Promise<Buffer[]> {
  const images: Buffer[] = [];
  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  for (let index = 0; index < count; index += 1) {
    const { width, height } = sizes[index % sizes.length] as { width: number; height: number };
    const data = Buffer.alloc(width * height * 3);
    const base = [random() * 255, random() * 255, random() * 255];
    const slope = [random() - 0.5, random() - 0.5, random() - 0.5];
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const offset = (y * width + x) * 3;
        const wave = 30 * Math.sin((x + index * 17) / 23) * Math.cos(y / 31);
        for (let channel = 0; channel < 3; channel += 1) {
          const gradient = (base[channel] ?? 0) + (slope[channel] ?? 0) * (x + y) * (200 / (width + height));
          data[offset + channel] = Math.max(0, Math.min(255, gradient + wave + (random() - 0.5) * 24));
        }
      }
    }
    const shapes = Array.from({ length: 5 }, (_, shape) => {
      const cx = Math.round(random() * width);
      const cy = Math.round(random() * height);
      const r = Math.round((0.05 + random() * 0.15) * Math.min(width, height));
      const fill = `rgb(${Math.round(random() * 255)},${Math.round(random() * 255)},${Math.round(random() * 255)})`;
      return shape % 2 === 0
        ? `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fill}" fill-opacity="0.8"/>`
        : `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${r}" fill="${fill}" fill-opacity="0.8"/>`;
    });
    const overlay = Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes.join("")}</svg>`,
    );
    images.push(
      await sharp(data, { raw: { width, height, channels: 3 } })
        .composite([{ input: overlay }])
        .jpeg({ quality: 90 })
        .toBuffer(),
    );
  }
  return images;
}

async function measure(task: () => Promise<unknown>, items: number): Promise<number> {
  await task();
  let calls = 0;
  const started = performance.now();
  for (;;) {
    await task();
    calls += 1;
    const elapsed = (performance.now() - started) / 1000;
    if (elapsed >= minSeconds && calls >= 2) return (calls * items) / elapsed;
  }
}

async function findPython(): Promise<string | undefined> {
  if (args["no-python"]) return undefined;
  if (args.python !== undefined) return args.python;
  const venv = resolve(".tmp/bench-venv");
  const python = join(venv, "bin", "python");
  const hasModules = async (): Promise<boolean> =>
    run(python, ["-c", "import onnxruntime, numpy, PIL, onnx"]).then(
      () => true,
      () => false,
    );
  if (!existsSync(python) || !(await hasModules())) {
    process.stderr.write(
      `Setting up ${venv} with onnxruntime, numpy, Pillow and onnx for the Python reference...\n`,
    );
    if (!existsSync(python)) await run("python3", ["-m", "venv", venv]);
    // The same ONNX Runtime release as onnxruntime-node, so that the comparison is of the stacks alone.
    const { version } = createRequire(import.meta.url)("onnxruntime-node/package.json") as {
      version: string;
    };
    await run(
      python,
      ["-m", "pip", "install", "--quiet", `onnxruntime==${version}`, "numpy", "Pillow", "onnx"],
      { maxBuffer: 1 << 24 },
    );
  }
  return python;
}

/** The Python process of one pack: loads its models once, then answers requests (see embed_reference.py). */
interface PythonReference {
  version: string;
  ask: (request: string) => Promise<Record<string, unknown>>;
  rate: (request: string) => Promise<number>;
  close: () => Promise<void>;
}

async function startPython({
  python,
  pack,
  pixels,
  pixelDims,
  images,
  texts,
}: {
  python: string;
  pack: ModelPack;
  pixels: Float32Array;
  pixelDims: number[];
  images: readonly Buffer[];
  texts: string[];
}): Promise<PythonReference> {
  const scratch = await mkdtemp(join(tmpdir(), "loupe-bench-"));
  const pixelsPath = join(scratch, "pixels.f32");
  await writeFile(pixelsPath, Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength));
  const imagePaths = await Promise.all(
    images.map(async (bytes, index) => {
      const path = join(scratch, `image-${index}.jpg`);
      await writeFile(path, bytes);
      return path;
    }),
  );
  const textBatches = Object.fromEntries(
    batchSizes.map((size) => {
      const encoded = pack.tokenizer.encodeBatch({ texts: texts.slice(0, size) });
      const rows = (data: BigInt64Array): number[][] =>
        Array.from({ length: encoded.batchSize }, (_, row) =>
          Array.from(data.slice(row * encoded.sequenceLength, (row + 1) * encoded.sequenceLength), Number),
        );
      return [
        String(size),
        { input_ids: rows(encoded.inputIds), attention_mask: rows(encoded.attentionMask) },
      ];
    }),
  );
  const specPath = join(scratch, "spec.json");
  await writeFile(
    specPath,
    JSON.stringify({
      vision: join(pack.info.dir, packFiles.vision),
      text: args.texts ? join(pack.info.dir, packFiles.text) : null,
      pixels: pixelsPath,
      pixel_dims: pixelDims,
      images: imagePaths,
      preprocessor: pack.imageProcessor.config,
      texts: textBatches,
      min_seconds: minSeconds,
      threads,
      peak_size: peakSize,
      scratch,
    }),
  );
  const child = spawn(python, [resolve(import.meta.dirname, "embed_reference.py"), specPath], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const line = await lines.next();
    if (line.done === true) throw new Error("the Python reference exited early (see its error above)");
    return JSON.parse(line.value) as Record<string, unknown>;
  };
  const ready = await next();
  const ask = async (request: string): Promise<Record<string, unknown>> => {
    child.stdin.write(`${request}\n`);
    const reply = await next();
    if (typeof reply.error === "string") throw new Error(`the Python reference: ${reply.error}`);
    return reply;
  };
  return {
    version: String(ready.onnxruntime),
    ask,
    rate: async (request) => Number((await ask(request)).rate),
    close: async () => {
      child.stdin.end();
      await new Promise((resolveExit) => child.once("exit", resolveExit));
      await rm(scratch, { recursive: true, force: true });
    },
  };
}

function format(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value)
    ? "-"
    : value >= 100
      ? value.toFixed(0)
      : value.toFixed(1);
}

function ratio(numerator: number | undefined, denominator: number | undefined): string {
  return numerator === undefined || denominator === undefined || !(denominator > 0)
    ? "-"
    : (numerator / denominator).toFixed(2);
}

/** Items per second for one pack and batch size. */
interface BenchRow {
  label: string;
  batch: number;
  model: number;
  tsEndToEnd: number;
  /** End to end with the vision tower in `replicas` copies (threads divided between them). */
  tsReplicas?: number;
  pyModel?: number;
  pyEndToEnd?: number;
  tsTexts?: number;
  pyTexts?: number;
}

/** The session settings both sides use (Python mirrors intra-op threads, one inter-op thread, level all). */
const sessionSettings: SessionSettings = { intraOpNumThreads: threads, interOpNumThreads: 1 };

async function benchPack({
  dir,
  variant,
  python,
  images,
  texts,
}: {
  dir: string;
  variant: string;
  python: string | undefined;
  images: readonly Buffer[];
  texts: string[];
}): Promise<{ rows: BenchRow[]; header: string; gflops?: number; flopNote?: string; peak?: number }> {
  const largest = Math.max(...batchSizes);
  // Texts through the pack's own text embedder; the vision tower through one session of our own, shared by
  // an ImageEmbedder per batch size (what the pack builds for its configured batch size).
  const pack = await loadModelPack({
    dir,
    sessionOptions: sessionSettings,
    sessions: "lazy",
    batchSizes: { text: largest },
  });
  let vision: OnnxSession | undefined;
  let copies: OnnxSession | undefined;
  let reference: PythonReference | undefined;
  try {
    vision = await createSession({
      path: join(pack.info.dir, packFiles.vision),
      contract: sessionContracts({ vqa: false })[packFiles.vision] as never,
      settings: sessionSettings,
      label: packFiles.vision,
    });
    const session = vision;
    if (replicas > 1) {
      copies = await createSession({
        path: join(pack.info.dir, packFiles.vision),
        contract: sessionContracts({ vqa: false })[packFiles.vision] as never,
        settings: { ...sessionSettings, replicas },
        label: packFiles.vision,
      });
    }
    const copied = copies;
    const replicated = new Map(
      copied === undefined
        ? []
        : batchSizes.map((size) => [
            size,
            new ImageEmbedder({
              session: async () => copied,
              processor: pack.imageProcessor,
              dimension: pack.dimension,
              batchSize: size,
              runsAtOnce: replicas + 1,
            }),
          ]),
    );
    const embedders = new Map(
      batchSizes.map((size) => [
        size,
        new ImageEmbedder({
          session: async () => session,
          processor: pack.imageProcessor,
          dimension: pack.dimension,
          batchSize: size,
        }),
      ]),
    );
    const pixelBatch = await pack.imageProcessor.preprocessBatch({ images: images.slice(0, largest) });
    const planeSize = pixelBatch.data.length / pixelBatch.dims[0];
    if (python !== undefined) {
      reference = await startPython({
        python,
        pack,
        pixels: pixelBatch.data,
        pixelDims: pixelBatch.dims,
        images,
        texts,
      });
    }
    const label = `${pack.modelId} ${variant}`;
    const rows: BenchRow[] = [];
    // The peak is taken before and after the rows, best kept: on a shared machine one reading can be low.
    let peak = reference === undefined ? undefined : Number((await reference.ask("peak")).gflops);
    for (const size of batchSizes) {
      const embedder = embedders.get(size) as ImageEmbedder;
      const pixels = {
        data: pixelBatch.data.slice(0, size * planeSize),
        dims: [size, ...pixelBatch.dims.slice(1)] as [number, number, number, number],
      };
      const row: BenchRow = { label, batch: size, model: 0, tsEndToEnd: 0 };
      const best = (current: number | undefined, value: number): number => Math.max(current ?? 0, value);
      // TypeScript and Python take turns, best of `rounds`, so that both see the same machine load; which
      // of the two goes first alternates from round to round, so that neither always follows the other.
      const inTurn = async (
        round: number,
        ts: () => Promise<void>,
        py: () => Promise<void>,
      ): Promise<void> => {
        if (round % 2 === 0) {
          await ts();
          await py();
        } else {
          await py();
          await ts();
        }
      };
      for (let round = 0; round < rounds; round += 1) {
        await inTurn(
          round,
          async () => {
            row.model = best(row.model, await measure(() => embedder.encodePixels({ pixels }), size));
          },
          async () => {
            if (reference !== undefined)
              row.pyModel = best(row.pyModel, await reference.rate(`model ${size}`));
          },
        );
        await inTurn(
          round,
          async () => {
            row.tsEndToEnd = best(
              row.tsEndToEnd,
              await measure(() => embedder.embed({ images }), images.length),
            );
            const copiesEmbedder = replicated.get(size);
            if (copiesEmbedder !== undefined) {
              row.tsReplicas = best(
                row.tsReplicas,
                await measure(() => copiesEmbedder.embed({ images }), images.length),
              );
            }
          },
          async () => {
            if (reference !== undefined)
              row.pyEndToEnd = best(row.pyEndToEnd, await reference.rate(`e2e ${size}`));
          },
        );
        if (args.texts) {
          row.tsTexts = best(
            row.tsTexts,
            await measure(() => pack.textEmbedder.embed({ texts: texts.slice(0, size) }), size),
          );
          if (reference !== undefined) row.pyTexts = best(row.pyTexts, await reference.rate(`texts ${size}`));
        }
      }
      rows.push(row);
    }
    let gflops: number | undefined;
    let flopNote: string | undefined;
    if (reference !== undefined) {
      const flops = await reference.ask("flops");
      gflops = Number(flops.gflops);
      const uncounted = Object.entries((flops.uncounted ?? {}) as Record<string, number>);
      const counted = Object.entries((flops.counted ?? {}) as Record<string, number>);
      flopNote =
        `counted ${counted.map(([op, count]) => `${count} ${op}`).join(", ")}` +
        (uncounted.length > 0
          ? `; shapes unknown for ${uncounted.map(([op, count]) => `${count} ${op}`).join(", ")}`
          : "");
      peak = Math.max(peak ?? 0, Number((await reference.ask("peak")).gflops));
    }
    const header =
      `${label} (${dir}): ${pack.imageSize} px input, dimension ${pack.dimension}` +
      (reference === undefined ? "" : `; Python onnxruntime ${reference.version}`);
    return {
      rows,
      header,
      ...(gflops === undefined ? {} : { gflops }),
      ...(flopNote === undefined ? {} : { flopNote }),
      ...(peak === undefined ? {} : { peak }),
    };
  } finally {
    await reference?.close();
    await vision?.release();
    await copies?.release();
    await pack.close();
  }
}

async function main(): Promise<void> {
  const images = await makeImages(imageCount);
  const texts = makeTexts(Math.max(...batchSizes));
  const python = await findPython();
  const lines = [
    `images: ${imageCount} JPEGs (${sizes.map(({ width, height }) => `${width}x${height}`).join(", ")} in turn, ` +
      `${(images.reduce((sum, image) => sum + image.length, 0) / images.length / 1024).toFixed(0)} KiB on average); ` +
      `onnxruntime intra-op threads ${threads === 0 ? "0 (onnxruntime's choice)" : threads}, ${availableParallelism()} CPUs; ` +
      `${minSeconds} s per measurement, best of ${rounds} interleaved rounds`,
  ];
  for (const { dir, variant } of packs) {
    const result = await benchPack({ dir, variant, python, images, texts });
    lines.push("", result.header);
    lines.push(
      "batch | img/s model | ts e2e | py e2e | py model | ts e2e/model | ts/py e2e | GFLOP/s model | ts e2e | % of peak (model, e2e)" +
        (replicas > 1 ? ` | ts e2e ×${replicas} copies | ×${replicas}/py e2e` : "") +
        (args.texts ? " || texts/s ts | py" : ""),
    );
    for (const row of result.rows) {
      const gflops = result.gflops;
      const achieved = gflops === undefined ? undefined : row.model * gflops;
      const achievedEndToEnd = gflops === undefined ? undefined : row.tsEndToEnd * gflops;
      const percent = (value: number | undefined): string =>
        value === undefined || result.peak === undefined
          ? "-"
          : `${((100 * value) / result.peak).toFixed(0)} %`;
      lines.push(
        `${String(row.batch).padStart(5)} | ${format(row.model).padStart(11)} | ${format(row.tsEndToEnd).padStart(6)} | ` +
          `${format(row.pyEndToEnd).padStart(6)} | ${format(row.pyModel).padStart(8)} | ` +
          `${ratio(row.tsEndToEnd, row.model).padStart(12)} | ${ratio(row.tsEndToEnd, row.pyEndToEnd).padStart(9)} | ` +
          `${format(achieved).padStart(13)} | ${format(achievedEndToEnd).padStart(6)} | ${percent(achieved)}, ${percent(achievedEndToEnd)}` +
          (replicas > 1
            ? ` | ${format(row.tsReplicas).padStart(6)} | ${ratio(row.tsReplicas, row.pyEndToEnd)}`
            : "") +
          (args.texts ? ` || ${format(row.tsTexts)} | ${format(row.pyTexts)}` : ""),
      );
    }
    if (result.gflops !== undefined) {
      lines.push(
        `vision tower: ${result.gflops.toFixed(3)} GFLOPs per image (MatMul/Gemm/Conv at batch 1, 2 per multiply-add; ${result.flopNote}); ` +
          `peak: ${format(result.peak)} GFLOP/s (best ${peakSize}x${peakSize} float32 MatMul in onnxruntime, same threads)` +
          (variant === "INT8"
            ? "; INT8 runs integer multiply-adds, so its % of the float32 peak can pass 100 %"
            : ""),
      );
    }
  }
  lines.push(
    "",
    `load average at the end: ${loadavg()
      .map((value) => value.toFixed(1))
      .join(" ")}`,
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

await main();
