/**
 * `loupe models quantize <pack> --out <dir>`: writes the INT8 variant of a pack (dynamic quantization of its
 * MatMul and Gemm weights with onnxruntime's tools, in the Python of Loupe's `.venv`).
 */
import { join } from "node:path";
import { type Command, Option } from "commander";
import { INSTALL_DIR } from "../../config.ts";
import { quantizePack, type WeightType } from "../../inference/pack-quantize.ts";

/** Adds `models quantize` to `loupe models`. */
export function registerModelsQuantizeCommand(models: Command): void {
  models
    .command("quantize")
    .description(
      "write the INT8 variant of a pack (MatMul/Gemm weights as 8-bit integers) with its own model id",
    )
    .argument("<pack>", "source pack directory")
    .requiredOption("--out <dir>", "directory of the INT8 pack")
    .addOption(
      new Option("--weight-type <type>", "integer type of the weights")
        .choices(["qint8", "quint8"])
        .default("qint8", "qint8, the faster on x86 CPUs"),
    )
    .option("--per-tensor", "one scale per weight tensor instead of per output channel", false)
    .option("--force", "replace --out when it is not empty", false)
    .option(
      "--python <path>",
      "Python interpreter with onnx and onnxruntime (default: the one in LOUPE_VENV_DIR)",
    )
    // Carries the default of --python: Loupe's .venv, where `npm run setup` installs the tools.
    .addOption(
      new Option("--venv-dir <dir>").env("LOUPE_VENV_DIR").default(join(INSTALL_DIR, ".venv")).hideHelp(),
    )
    .action(
      async (
        pack: string,
        flags: {
          out: string;
          weightType: WeightType;
          perTensor: boolean;
          force: boolean;
          python?: string;
          venvDir: string;
        },
      ) => {
        const python = flags.python ?? join(flags.venvDir, "bin", "python");
        const result = await quantizePack({
          dir: pack,
          out: flags.out,
          python,
          force: flags.force,
          weightType: flags.weightType,
          perChannel: !flags.perTensor,
          onFile: (file) =>
            process.stderr.write(
              `  ${file.file}: ${(file.bytesBefore / 1048576).toFixed(1)} MB → ${(file.bytesAfter / 1048576).toFixed(1)} MB\n`,
            ),
        });
        process.stdout.write(
          `Wrote ${result.info.modelId} (INT8 variant of ${result.sourceModelId}) to ${result.info.dir}. ` +
            `Switch a corpus to it with: loupe models migrate --to ${result.info.dir}\n`,
        );
      },
    );
}
