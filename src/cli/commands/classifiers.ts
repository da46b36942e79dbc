/**
 * `loupe classifiers create|list|predict`: few-shot classifiers, in-process on the data dir (the embedded
 * Milvus Lite and the model pack, so not while a `loupe serve` holds them) or, with `--url`, on a running
 * Loupe through the HTTP client.
 *
 * - `loupe classifiers create <name> --label red=a.jpg,b.jpg --label blue=img_…,https://…/c.png
 *   [--apply-on-ingest] [--threshold p] [--replace]`: examples are image files, stored item ids or URLs;
 * - `loupe classifiers list`;
 * - `loupe classifiers predict <name> <image>`: an image file, a stored item's id or a URL;
 * - `loupe classifiers eval [--pack dir] [--seed n] [--draws n] [--json file]`: few-shot accuracy at 1, 5
 *   and 10 shots on Shapes World attribute tasks beside zero-shot, and the predict timing (no server, no
 *   store: the pack alone).
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { type Command, Option } from "commander";
import type { ClassifierInfo, ClassifierPrediction, FetchLike } from "../../client/index.ts";
import { dataUrlOf, readUpload } from "../../client/uploads.ts";
import { BUNDLED_MODEL_PACK } from "../../config.ts";
import { ValidationError } from "../../errors.ts";
import type { ImageReference } from "../../media/media-port.ts";
import { isValidRecordId } from "../../store/record-id.ts";
import { callServer } from "../call-server.ts";
import { wholeNumber } from "../command-inputs.ts";
import { formatTable } from "../table.ts";

/** Where a command's output goes (tests collect it). */
type Write = (text: string) => void;

/** Where a command runs: on a server (`url`) or in-process over `env`'s data dir. */
interface Target {
  url?: string;
  tenant?: string;
  env?: Record<string, string | undefined>;
  fetch?: FetchLike;
}

/** What an example or query image named on the command line is: an item id, a URL or a file. */
async function imageArgument(value: string): Promise<{ text: string; reference: ImageReference }> {
  const trimmed = value.trim();
  if (/^https?:\/\//i.test(trimmed)) return { text: trimmed, reference: { url: trimmed } };
  if (isValidRecordId(trimmed)) return { text: trimmed, reference: { id: trimmed } };
  try {
    const upload = await readUpload(trimmed);
    return { text: dataUrlOf(upload), reference: { bytes: upload.bytes } };
  } catch (error) {
    throw new ValidationError(
      `Cannot read the image ${JSON.stringify(trimmed)}: ${(error as Error).message}. Give an image file, a stored item's id (img_…) or an http(s) URL.`,
      { cause: error },
    );
  }
}

/** Parses `--label name=example,example` options. */
export function parseLabelOptions(values: readonly string[]): Array<{ label: string; examples: string[] }> {
  if (values.length === 0) {
    throw new ValidationError(
      "Give each label with its examples: --label red=a.jpg,b.jpg --label blue=c.jpg.",
    );
  }
  return values.map((value) => {
    const equals = value.indexOf("=");
    if (equals <= 0) {
      throw new ValidationError(
        `--label ${JSON.stringify(value.slice(0, 80))} is not label=example,example (e.g. --label red=a.jpg,img_…).`,
      );
    }
    const examples = value
      .slice(equals + 1)
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part.length > 0);
    return { label: value.slice(0, equals).trim(), examples };
  });
}

/** Runs `work` in-process over the configured data dir. */
async function inProcess<Result>(
  { env = process.env }: Target,
  work: (
    services: Awaited<ReturnType<typeof import("../local-services.ts")["openLocalServices"]>>,
  ) => Promise<Result>,
): Promise<Result> {
  // Imported on use: the store pulls in the Milvus SDK.
  const { openLocalServices } = await import("../local-services.ts");
  const services = await openLocalServices({ env });
  try {
    return await work(services);
  } finally {
    await services.close();
  }
}

/** `loupe classifiers create`. */
export async function createClassifierCommand({
  name,
  labels,
  options,
  target,
  write = (text) => process.stdout.write(text),
}: {
  name: string;
  labels: readonly string[];
  options: { applyOnIngest?: boolean; threshold?: string; replace?: boolean; json?: boolean };
  target: Target;
  write?: Write;
}): Promise<ClassifierInfo> {
  const parsed = parseLabelOptions(labels);
  const threshold = options.threshold === undefined ? undefined : Number(options.threshold);
  if (threshold !== undefined && !(threshold >= 0 && threshold <= 1)) {
    throw new ValidationError(`--threshold must be a probability from 0 to 1; got ${options.threshold}.`);
  }
  const resolved = await Promise.all(
    parsed.map(async (entry) => ({
      label: entry.label,
      examples: await Promise.all(entry.examples.map(imageArgument)),
    })),
  );
  const settings = {
    ...(options.applyOnIngest === true ? { applyOnIngest: true } : {}),
    ...(threshold === undefined ? {} : { threshold }),
    ...(options.replace === true ? { replace: true } : {}),
  };
  const info: ClassifierInfo =
    target.url === undefined
      ? await inProcess(target, ({ classifiers, config }) =>
          classifiers.create({
            tenant: target.tenant ?? config.defaultTenant,
            name,
            labels: resolved.map((entry) => ({
              label: entry.label,
              examples: entry.examples.map((example) => example.reference),
            })),
            ...settings,
          }),
        )
      : await callServer(
          {
            url: target.url,
            tenant: target.tenant,
            fetch: target.fetch,
            action: "Creating the classifier",
            doing: "create it",
          },
          (client) =>
            client.createClassifier({
              name,
              labels: resolved.map((entry) => ({
                label: entry.label,
                examples: entry.examples.map((example) => example.text),
              })),
              ...settings,
            }),
        );
  write(
    options.json === true
      ? `${JSON.stringify(info, null, 2)}\n`
      : `Classifier ${info.name}: ${info.labels.length} labels, ${info.labels.reduce((sum, entry) => sum + entry.examples, 0)} examples; ${info.method}, ${info.validation} accuracy ${info.looAccuracy.toFixed(3)}, threshold ${info.threshold.toFixed(3)} (${info.modelId}).\n`,
  );
  return info;
}

/** `loupe classifiers list`. */
export async function listClassifiersCommand({
  options,
  target,
  write = (text) => process.stdout.write(text),
}: {
  options: { json?: boolean };
  target: Target;
  write?: Write;
}): Promise<ClassifierInfo[]> {
  const list =
    target.url === undefined
      ? await inProcess(target, ({ classifiers, config }) =>
          classifiers.list({ tenant: target.tenant ?? config.defaultTenant }),
        )
      : await callServer(
          {
            url: target.url,
            tenant: target.tenant,
            fetch: target.fetch,
            action: "Listing classifiers",
            doing: "list them",
          },
          (client) => client.listClassifiers(),
        );
  if (options.json === true) {
    write(`${JSON.stringify({ classifiers: list }, null, 2)}\n`);
    return list;
  }
  if (list.length === 0) {
    write("No classifiers.\n");
    return list;
  }
  const rows = [["NAME", "LABELS", "EXAMPLES", "METHOD", "LOO ACC", "ON INGEST", "MODEL"]];
  for (const info of list) {
    rows.push([
      info.name,
      info.labels
        .map((entry) => entry.label)
        .join(", ")
        .slice(0, 60),
      String(info.labels.reduce((sum, entry) => sum + entry.examples, 0)),
      info.method,
      info.looAccuracy.toFixed(3),
      info.applyOnIngest ? info.metadataKey : "-",
      info.modelId,
    ]);
  }
  write(`${formatTable(rows)}\n`);
  return list;
}

/** `loupe classifiers predict`. */
export async function predictClassifierCommand({
  name,
  image,
  options,
  target,
  write = (text) => process.stdout.write(text),
}: {
  name: string;
  image: string;
  options: { json?: boolean };
  target: Target;
  write?: Write;
}): Promise<ClassifierPrediction> {
  const argument = await imageArgument(image);
  const prediction: ClassifierPrediction =
    target.url === undefined
      ? await inProcess(target, ({ classifiers, config }) =>
          classifiers.predict({
            tenant: target.tenant ?? config.defaultTenant,
            name,
            image: argument.reference,
          }),
        )
      : await callServer(
          {
            url: target.url,
            tenant: target.tenant,
            fetch: target.fetch,
            action: "Predicting",
            doing: "predict",
          },
          (client) => client.predictClassifier(name, argument.text),
        );
  if (options.json === true) {
    write(`${JSON.stringify(prediction, null, 2)}\n`);
    return prediction;
  }
  const rows = [["LABEL", "PROBABILITY"]];
  for (const entry of prediction.labels.slice(0, 10)) rows.push([entry.label, entry.probability.toFixed(3)]);
  write(`${formatTable(rows)}\n`);
  if (prediction.none === true) {
    write(
      `none: the best probability is below the classifier's threshold ${prediction.threshold.toFixed(3)}.\n`,
    );
  }
  return prediction;
}

/** `loupe classifiers eval`: the few-shot figures of a pack, printed (and written as JSON when asked). */
export async function evalClassifiersCommand({
  options,
  write = (text) => process.stdout.write(text),
}: {
  options: { pack: string; seed: number; draws: number; test: number; threads: number; json?: string };
  write?: Write;
}): Promise<void> {
  // Imported on use: the evaluation loads ONNX Runtime.
  const { loadModelPack } = await import("../../inference/model-pack.ts");
  const { readLogitScale } = await import("../../search/search-service.ts");
  const { evaluateFewShot, formatFewShotReport } = await import("../../eval/pack/few-shot-eval.ts");
  const dir = resolve(options.pack);
  const pack = await loadModelPack({ dir, sessionOptions: { intraOpNumThreads: options.threads } });
  try {
    const detector = pack.detector;
    const report = await evaluateFewShot({
      pack,
      ...(detector === undefined ? {} : { detector }),
      logitScale: await readLogitScale({ packDir: dir }),
      seed: options.seed,
      draws: options.draws,
      testPerClass: options.test,
      onProgress: (message) => process.stderr.write(`  ${message}\n`),
    });
    write(formatFewShotReport(report));
    if (options.json !== undefined) {
      await writeFile(resolve(options.json), `${JSON.stringify(report, null, 2)}\n`);
      process.stderr.write(`Report written to ${options.json}\n`);
    }
  } finally {
    await pack.close();
  }
}

/** Adds `loupe classifiers` and its subcommands. */
export function registerClassifiersCommand(program: Command): void {
  const command = program
    .command("classifiers")
    .description("few-shot classifiers taught from a few example images per label");
  const targetOptions = (sub: Command) =>
    sub
      .option(
        "--url <base>",
        "talk to a running Loupe (e.g. http://127.0.0.1:8080) instead of working in-process",
      )
      .option("--tenant <tenant>", "tenant, in-process only (default: LOUPE_DEFAULT_TENANT)")
      .option("--json", "print JSON", false);
  targetOptions(
    command
      .command("create")
      .description("fit a classifier from examples (image files, stored item ids or URLs) and store it")
      .argument("<name>", "a letter, then letters, digits and _ (its label goes to metadata.class_<name>)")
      .option(
        "--label <label=examples>",
        "a label and its comma-separated examples; repeat per label",
        (value: string, previous: string[] = []) => [...previous, value],
        [] as string[],
      )
      .option("--apply-on-ingest", "write the predicted label of every new image into its metadata", false)
      .option("--threshold <p>", "probability under which a prediction is none (default: fitted)")
      .option("--replace", "replace a classifier of the same name", false),
  ).action(
    async (
      name: string,
      flags: {
        label: string[];
        applyOnIngest: boolean;
        threshold?: string;
        replace: boolean;
        url?: string;
        tenant?: string;
        json: boolean;
      },
    ) => {
      await createClassifierCommand({
        name,
        labels: flags.label,
        options: flags,
        target: { url: flags.url, tenant: flags.tenant },
      });
    },
  );
  targetOptions(command.command("list").description("list the tenant's classifiers")).action(
    async (flags: { url?: string; tenant?: string; json: boolean }) => {
      await listClassifiersCommand({ options: flags, target: { url: flags.url, tenant: flags.tenant } });
    },
  );
  targetOptions(
    command
      .command("predict")
      .description("classify an image: its labels with calibrated probabilities")
      .argument("<name>", "the classifier")
      .argument("<image>", "an image file, a stored item's id or an http(s) URL"),
  ).action(async (name: string, image: string, flags: { url?: string; tenant?: string; json: boolean }) => {
    await predictClassifierCommand({
      name,
      image,
      options: flags,
      target: { url: flags.url, tenant: flags.tenant },
    });
  });
  command
    .command("eval")
    .description("few-shot accuracy at 1, 5 and 10 shots on Shapes World attribute tasks, beside zero-shot")
    .addOption(
      new Option("--pack <dir>", "pack directory")
        .env("LOUPE_MODEL_PACK")
        .default(BUNDLED_MODEL_PACK, "the bundled shapes-world-tiny"),
    )
    .addOption(
      new Option("--seed <n>", "seed of the dev sets")
        .argParser(wholeNumber("--seed", { min: 0, max: 999_999_999 }))
        .default(4242),
    )
    .addOption(
      new Option("--draws <n>", "draws of shots averaged per shot count")
        .argParser(wholeNumber("--draws", { min: 1, max: 100 }))
        .default(5),
    )
    .addOption(
      new Option("--test <n>", "test images per class")
        .argParser(wholeNumber("--test", { min: 5, max: 10_000 }))
        .default(60),
    )
    .addOption(
      new Option("--threads <n>", "ONNX Runtime intra-op threads")
        .argParser(wholeNumber("--threads", { min: 1, max: 64 }))
        .default(1),
    )
    .option("--json <file>", "also write the report as JSON")
    .action(
      async (flags: {
        pack: string;
        seed: number;
        draws: number;
        test: number;
        threads: number;
        json?: string;
      }) => {
        await evalClassifiersCommand({ options: flags });
      },
    );
}
