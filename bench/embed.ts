/**
 * `npm run bench:embed [-- options]`: images/s and texts/s by batch size for the TypeScript runtime
 * (onnxruntime-node) and, in the same run on the same ONNX files and inputs, for Python onnxruntime; and
 * their ratio.
 *
 * Columns: `ts model` runs the vision tower on preprocessed pixels (the same tensors Python gets);
 * `ts e2e` adds PNG decoding and preprocessing with sharp; text rates include tokenization (small).
 *
 * The Python side runs bench/embed_reference.py with the interpreter given by --python, else
 * `.tmp/bench-venv/bin/python`, which the bench creates on first use (`python3 -m venv` + `pip install
 * onnxruntime==<onnxruntime-node's version> numpy`, from the package index pip is configured for).
 * --no-python skips it.
 *
 * Options: --pack <dir> (default $LOUPE_MODEL_PACK or models/shapes-world-tiny), --batch-sizes 1,8,32,
 * --threads <n> (intra-op threads for both runtimes, default 1), --seconds <s> per measurement (default 1.5),
 * --rounds <n> (TypeScript and Python measurements alternate; the best of n rounds is kept, default 2),
 * --python <path>, --no-python.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs, promisify } from "node:util";
import sharp from "sharp";
import { loadModelPack, type ModelPack, packFiles } from "../src/inference/model-pack.ts";

const run = promisify(execFile);

const { values: args } = parseArgs({
  options: {
    pack: { type: "string" },
    "batch-sizes": { type: "string", default: "1,8,32" },
    threads: { type: "string", default: "1" },
    seconds: { type: "string", default: "1.5" },
    rounds: { type: "string", default: "2" },
    python: { type: "string" },
    "no-python": { type: "boolean", default: false },
  },
});

const packDir = resolve(args.pack ?? process.env.LOUPE_MODEL_PACK ?? "models/shapes-world-tiny");
const batchSizes = (args["batch-sizes"] ?? "1,8,32").split(",").map((value) => Number.parseInt(value, 10));
const threads = Number.parseInt(args.threads ?? "1", 10);
const minSeconds = Number.parseFloat(args.seconds ?? "1.5");
const rounds = Number.parseInt(args.rounds ?? "2", 10);
if (
  batchSizes.some((size) => !Number.isInteger(size) || size < 1) ||
  !(threads >= 1) ||
  !(minSeconds > 0) ||
  !(rounds >= 1)
) {
  throw new Error(
    "--batch-sizes takes positive integers (1,8,32), --threads ≥ 1, --seconds > 0, --rounds ≥ 1.",
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

/** 256 px PNG scenes drawn with sharp: gray background, a few colored discs and squares. */
async function makeImages(count: number): Promise<Buffer[]> {
  const images: Buffer[] = [];
  for (let index = 0; index < count; index += 1) {
    const gray = 70 + ((index * 13) % 80);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256">
      <rect width="256" height="256" fill="rgb(${gray},${gray},${gray})"/>
      <circle cx="${60 + (index % 5) * 10}" cy="180" r="${20 + (index % 4) * 5}" fill="rgb(220,40,40)"/>
      <rect x="160" y="${40 + (index % 3) * 10}" width="50" height="50" fill="rgb(40,80,220)"/>
    </svg>`;
    images.push(await sharp(Buffer.from(svg)).png().toBuffer());
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
  if (!existsSync(python)) {
    process.stderr.write(`Creating ${venv} with onnxruntime and numpy for the Python reference...\n`);
    await run("python3", ["-m", "venv", venv]);
    // The same ONNX Runtime release as onnxruntime-node, so that the comparison is of the bindings alone.
    const { version } = createRequire(import.meta.url)("onnxruntime-node/package.json") as {
      version: string;
    };
    await run(python, ["-m", "pip", "install", "--quiet", `onnxruntime==${version}`, "numpy"], {
      maxBuffer: 1 << 24,
    });
  }
  return python;
}

/** The Python process: loads the models once, then measures on request (see embed_reference.py). */
interface PythonReference {
  version: string;
  rate: (kind: "images" | "texts", batch: number) => Promise<number>;
  close: () => Promise<void>;
}

async function startPython(
  pack: ModelPack,
  pixels: Float32Array,
  pixelDims: number[],
  texts: string[],
): Promise<PythonReference | undefined> {
  const python = await findPython();
  if (python === undefined) return undefined;
  const scratch = await mkdtemp(join(tmpdir(), "loupe-bench-"));
  const pixelsPath = join(scratch, "pixels.f32");
  await writeFile(pixelsPath, Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength));
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
      text: join(pack.info.dir, packFiles.text),
      pixels: pixelsPath,
      pixel_dims: pixelDims,
      texts: textBatches,
      min_seconds: minSeconds,
      threads,
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
  return {
    version: String(ready.onnxruntime),
    rate: async (kind, batch) => {
      child.stdin.write(`${kind} ${batch}\n`);
      return Number((await next()).rate);
    },
    close: async () => {
      child.stdin.end();
      await new Promise((resolveExit) => child.once("exit", resolveExit));
      await rm(scratch, { recursive: true, force: true });
    },
  };
}

function format(value: number | undefined): string {
  return value === undefined ? "-" : value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** Items per second for one batch size. */
interface BenchRow {
  size: number;
  tsModel: number;
  tsEndToEnd: number;
  pyImages?: number;
  tsTexts: number;
  pyTexts?: number;
}

async function main(): Promise<void> {
  const largest = Math.max(...batchSizes);
  const pack = await loadModelPack({
    dir: packDir,
    sessionOptions: { intraOpNumThreads: threads, interOpNumThreads: 1 },
    batchSizes: { image: largest, text: largest },
  });
  try {
    const images = await makeImages(largest);
    const texts = makeTexts(largest);
    const pixelBatch = await pack.imageProcessor.preprocessBatch({ images });
    const python = await startPython(pack, pixelBatch.data, pixelBatch.dims, texts);
    const planeSize = pixelBatch.data.length / largest;
    const rows: BenchRow[] = [];
    try {
      for (const size of batchSizes) {
        const pixels = {
          data: pixelBatch.data.slice(0, size * planeSize),
          dims: [size, ...pixelBatch.dims.slice(1)] as [number, number, number, number],
        };
        // TypeScript and Python take turns, best of `rounds`, so that both see the same machine load.
        const row: BenchRow = { size, tsModel: 0, tsEndToEnd: 0, tsTexts: 0 };
        for (let round = 0; round < rounds; round += 1) {
          row.tsModel = Math.max(
            row.tsModel,
            await measure(() => pack.imageEmbedder.encodePixels({ pixels }), size),
          );
          if (python !== undefined)
            row.pyImages = Math.max(row.pyImages ?? 0, await python.rate("images", size));
          row.tsTexts = Math.max(
            row.tsTexts,
            await measure(() => pack.textEmbedder.embed({ texts: texts.slice(0, size) }), size),
          );
          if (python !== undefined)
            row.pyTexts = Math.max(row.pyTexts ?? 0, await python.rate("texts", size));
        }
        row.tsEndToEnd = await measure(
          () => pack.imageEmbedder.embed({ images: images.slice(0, size) }),
          size,
        );
        rows.push(row);
      }
    } finally {
      await python?.close();
    }
    const lines = [
      `pack ${pack.modelId} (${packDir}); ${pack.imageSize}px images, dimension ${pack.dimension}; ` +
        `intra-op threads ${threads}; ${minSeconds}s per measurement`,
      `onnxruntime-node (TypeScript) vs ${python === undefined ? "(Python skipped)" : `Python onnxruntime ${python.version}`}; ` +
        `best of ${rounds} interleaved rounds`,
      "",
      "batch | images/s ts model | ts e2e | python | ts/py || texts/s ts | python | ts/py",
    ];
    for (const row of rows) {
      const imageRatio = row.pyImages === undefined ? undefined : row.tsModel / row.pyImages;
      const textRatio = row.pyTexts === undefined ? undefined : row.tsTexts / row.pyTexts;
      lines.push(
        `${String(row.size).padStart(5)} | ${format(row.tsModel).padStart(17)} | ${format(row.tsEndToEnd).padStart(6)} | ` +
          `${format(row.pyImages).padStart(6)} | ${(imageRatio === undefined ? "-" : imageRatio.toFixed(2)).padStart(5)} || ` +
          `${format(row.tsTexts).padStart(10)} | ${format(row.pyTexts).padStart(6)} | ${textRatio === undefined ? "-" : textRatio.toFixed(2)}`,
      );
    }
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    await pack.close();
  }
}

await main();
