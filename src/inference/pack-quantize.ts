/**
 * INT8 variants of model packs: every ONNX file of a pack is quantized dynamically (MatMul and Gemm weights
 * stored as signed 8-bit integers, per output channel by default; activations quantized at run time) by
 * onnxruntime's quantization tools in Python (`scripts/quantize_pack.py`), the JSON files are copied, and the
 * new pack gets a model id of its own (`<source id>+int8`), a `quantization` record in its `loupe` block, a model
 * card section saying what it is, and a manifest written once the quantized models load and pass the contract.
 */
import { spawn } from "node:child_process";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ModelPackError } from "../errors.ts";
import { loadModelPack, type ModelPackInfo, packFiles, packUsedFiles, pathExists } from "./model-pack.ts";
import { importPack } from "./pack-import.ts";

/** The Python script that quantizes; it ships with Loupe. */
export const QUANTIZE_SCRIPT = fileURLToPath(new URL("../../scripts/quantize_pack.py", import.meta.url));

/** What the quantizer stores weights as: `qint8` (signed, fastest on x86 CPUs) or `quint8`. */
export type WeightType = "qint8" | "quint8";

/** One quantized ONNX file. */
export interface QuantizedFile {
  file: string;
  bytesBefore: number;
  bytesAfter: number;
}

/** Options of {@link quantizePack}. */
export interface QuantizePackOptions {
  /** Source pack directory (its manifest is verified first). */
  dir: string;
  /** Directory of the INT8 pack; must not exist or be empty unless `force`. */
  out: string;
  /** Python interpreter with `onnx` and `onnxruntime` (`npm run setup` puts them in Loupe's `.venv`). */
  python: string;
  force?: boolean;
  weightType?: WeightType;
  /** One scale per output channel (default true): better accuracy at the same speed. */
  perChannel?: boolean;
  /** Called after each ONNX file. */
  onFile?: (file: QuantizedFile) => void;
}

/** What {@link quantizePack} wrote. */
export interface QuantizedPack {
  info: ModelPackInfo;
  sourceModelId: string;
  files: QuantizedFile[];
}

async function prepareOut(out: string, force: boolean): Promise<void> {
  if (!(await pathExists(out))) return;
  const entries = (await stat(out)).isDirectory() ? await readdir(out) : ["(a file)"];
  if (entries.length === 0) return;
  if (!force) {
    throw new ModelPackError(
      `${out} already exists and is not empty; choose another --out, or pass --force to replace it.`,
      { context: { out } },
    );
  }
  await rm(out, { recursive: true, force: true });
}

function runQuantizer({
  python,
  args,
  onLine,
}: {
  python: string;
  args: string[];
  onLine: (line: string) => void;
}): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(python, [QUANTIZE_SCRIPT, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      let newline = stdout.indexOf("\n");
      while (newline >= 0) {
        onLine(stdout.slice(0, newline));
        stdout = stdout.slice(newline + 1);
        newline = stdout.indexOf("\n");
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.on("error", (error) => {
      reject(
        new ModelPackError(
          `Could not run ${python} to quantize: ${error.message}. Run \`npm run setup\` (it installs onnx and onnxruntime ` +
            "into Loupe's .venv), or pass --python with an interpreter that has them.",
          { cause: error, context: { python } },
        ),
      );
    });
    child.on("close", (code) => {
      if (code === 0) {
        resolvePromise();
        return;
      }
      const detail = stderr.trim().split("\n").slice(-3).join(" ");
      reject(
        new ModelPackError(
          code === 3
            ? `${detail} `.trim()
            : `Quantization failed (${python} exited with ${code}): ${detail || "no message"}.`,
          { context: { python, code } },
        ),
      );
    });
  });
}

const cardSection = ({
  sourceModelId,
  modelId,
  weightType,
  perChannel,
  files,
}: {
  sourceModelId: string;
  modelId: string;
  weightType: WeightType;
  perChannel: boolean;
  files: readonly QuantizedFile[];
}): string => {
  const megabytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  const rows = files
    .map((file) => `| ${file.file} | ${megabytes(file.bytesBefore)} | ${megabytes(file.bytesAfter)} |`)
    .join("\n");
  return (
    `\n## INT8 variant\n\nThis is \`${modelId}\`, the INT8 variant of \`${sourceModelId}\`, written by ` +
    "`loupe models quantize`: onnxruntime's dynamic quantization of every MatMul and Gemm weight " +
    `(${weightType === "qint8" ? "signed" : "unsigned"} 8-bit, ${perChannel ? "one scale per output channel" : "one scale per tensor"}); ` +
    "activations are quantized at run time, everything else stays float32. Its embeddings differ slightly from the " +
    "source pack's, so the two have different model ids and collections do not mix them. Quality and speed beside " +
    "the source: models/README.md, INT8 variants.\n\n| File | FP32 | INT8 |\n| --- | ---: | ---: |\n" +
    `${rows}\n`
  );
};

/**
 * Writes the INT8 variant of a pack into `out`, through a staging directory moved into place only when every
 * file is written and the result loads.
 *
 * @throws ModelPackError when the source is not a valid pack, `out` is taken, or Python cannot quantize.
 */
export async function quantizePack({
  dir,
  out,
  python,
  force = false,
  weightType = "qint8",
  perChannel = true,
  onFile,
}: QuantizePackOptions): Promise<QuantizedPack> {
  const source = resolve(dir);
  const target = resolve(out);
  if (source === target) {
    throw new ModelPackError("--out must be another directory than the source pack.", { context: { dir } });
  }
  // Verifies the source's manifest and JSON files; opens no model.
  const pack = await loadModelPack({ dir: source, sessions: "lazy" });
  const info = pack.info;
  await pack.close();
  if (info.config.loupe?.quantization !== undefined) {
    throw new ModelPackError(
      `${source} is already an INT8 variant (${info.modelId}); quantize its source pack.`,
      {
        context: { dir: source },
      },
    );
  }
  await prepareOut(target, force);
  const staging = `${target}.partial-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const files: QuantizedFile[] = [];
    await runQuantizer({
      python,
      args: [
        "--src",
        source,
        "--out",
        staging,
        "--weight-type",
        weightType,
        ...(perChannel ? ["--per-channel"] : []),
        ...info.modelFiles.flatMap((file) => ["--file", file]),
      ],
      onLine: (line) => {
        const parsed = JSON.parse(line) as { file: string; bytes_before: number; bytes_after: number };
        const file = { file: parsed.file, bytesBefore: parsed.bytes_before, bytesAfter: parsed.bytes_after };
        files.push(file);
        onFile?.(file);
      },
    });
    const copied = (await packUsedFiles({ info })).filter(
      (file) => !info.modelFiles.includes(file) && file !== packFiles.config,
    );
    for (const file of copied) {
      await mkdir(dirname(join(staging, file)), { recursive: true });
      await copyFile(join(source, file), join(staging, file));
    }
    const modelId = `${info.modelId}+int8`;
    const config = JSON.parse(await readFile(join(source, packFiles.config), "utf8")) as {
      loupe?: Record<string, unknown>;
    };
    config.loupe = {
      ...(config.loupe ?? {}),
      model_id: modelId,
      quantization: {
        method: "onnxruntime dynamic quantization (MatMul, Gemm)",
        weight_type: weightType,
        per_channel: perChannel,
        source_model_id: info.modelId,
      },
    };
    await writeFile(join(staging, packFiles.config), `${JSON.stringify(config, null, 2)}\n`);
    const card = (await pathExists(join(source, "MODEL_CARD.md")))
      ? await readFile(join(source, "MODEL_CARD.md"), "utf8")
      : `# ${modelId}\n`;
    await writeFile(
      join(staging, "MODEL_CARD.md"),
      card + cardSection({ sourceModelId: info.modelId, modelId, weightType, perChannel, files }),
    );
    await rm(target, { recursive: true, force: true });
    await rename(staging, target);
    // Opens every quantized model and checks its contract, then writes the manifest.
    const imported = await importPack({ dir: target });
    return { info: imported.info, sourceModelId: info.modelId, files };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}
