/**
 * The one place ONNX Runtime sessions are created. Every model file of a pack is opened here, checked
 * against the input and output names its caller needs, run with typed errors, and released.
 */
import { availableParallelism } from "node:os";
import { basename } from "node:path";
import * as ort from "onnxruntime-node";
import { ConfigError, InferenceError, ModelPackError } from "../errors.ts";
import type { LoupeMetrics } from "../metrics/metrics.ts";
import { createWorkerSession, type SessionBackend } from "./session-worker.ts";

export type { TypedTensor } from "onnxruntime-node";
export { Tensor } from "onnxruntime-node";

/** Graph optimization levels that ONNX Runtime accepts. */
export type GraphOptimizationLevel = "disabled" | "basic" | "extended" | "all";

/** Settings applied to every session of a pack. */
export interface SessionSettings {
  /**
   * Threads used inside one operator. `0` lets ONNX Runtime choose (one per physical core). On small
   * shared machines `1` often runs as fast and leaves a core for decoding.
   */
  intraOpNumThreads?: number;
  /** Threads used across independent operators (only matters with parallel execution). `0` = default. */
  interOpNumThreads?: number;
  /** How much ONNX Runtime rewrites the graph when it loads it. */
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Execution providers by name, in order of preference; this build ships `cpu`. */
  executionProviders?: readonly string[];
  /**
   * Run each model in a worker thread of its own (the default). onnxruntime-node runs a model on the
   * calling thread, so without a worker every model run stalls the event loop for its whole length.
   */
  worker?: boolean;
  /**
   * Copies of the model loaded side by side, each with its own worker thread; a run goes to the copy with
   * the fewest runs in progress, so that many runs at once (batch 1 under concurrent requests) run in
   * parallel instead of splitting each operator across threads. With `intraOpNumThreads` 0 the cores are
   * divided between the copies (at least one thread each). Costs the model's memory once per copy.
   */
  replicas?: number;
  /** Where each run's time is reported, by model file and batch size; nowhere when absent. */
  metrics?: Pick<LoupeMetrics, "observeInference">;
}

/** The settings used when none are given. */
export const defaultSessionSettings: Required<Omit<SessionSettings, "metrics">> = {
  intraOpNumThreads: 0,
  interOpNumThreads: 0,
  graphOptimizationLevel: "all",
  executionProviders: ["cpu"],
  worker: true,
  replicas: 1,
};

/** Names a caller needs a model file to have. */
export interface SessionContract {
  /** Inputs the caller always feeds; the model must declare every one. */
  requiredInputs: readonly string[];
  /** Inputs the caller feeds only when the model declares them (e.g. `attention_mask`). */
  optionalInputs?: readonly string[];
  /** Outputs the caller reads; the model must declare every one. */
  requiredOutputs: readonly string[];
  /**
   * Shapes the caller feeds, by input name: a size per axis, `null` where any size goes. A model that declares
   * another number of axes, or another fixed size, does not fit (symbolic sizes fit anything).
   */
  inputShapes?: Readonly<Record<string, readonly (number | null)[]>>;
}

/** What a model declares of one input: its shape, when it is a tensor with a known shape. */
export interface InputDeclaration {
  name: string;
  /** Per axis a fixed size or a symbolic name; absent when the model does not say. */
  shape?: readonly (number | string)[];
}

/** Options of {@link createSession}. */
export interface CreateSessionOptions {
  /** Path of the `.onnx` file. */
  path: string;
  /** What the caller needs of the model's inputs and outputs. */
  contract: SessionContract;
  /** Thread and provider settings; missing fields take {@link defaultSessionSettings}. */
  settings?: SessionSettings;
  /** Label used in error messages, e.g. `onnx/vision_model.onnx`. Defaults to the file name. */
  label?: string;
}

/**
 * Checks a model's declared input and output names against a contract.
 *
 * @returns a list of human-readable problems; empty when the model fits.
 */
export function checkContract({
  inputNames,
  outputNames,
  contract,
  inputs = [],
}: {
  inputNames: readonly string[];
  outputNames: readonly string[];
  contract: SessionContract;
  /** The model's input declarations, for {@link SessionContract.inputShapes}. */
  inputs?: readonly InputDeclaration[];
}): string[] {
  const problems: string[] = [];
  const allowedInputs = new Set([...contract.requiredInputs, ...(contract.optionalInputs ?? [])]);
  const missingInputs = contract.requiredInputs.filter((name) => !inputNames.includes(name));
  const unknownInputs = inputNames.filter((name) => !allowedInputs.has(name));
  const missingOutputs = contract.requiredOutputs.filter((name) => !outputNames.includes(name));
  if (missingInputs.length > 0) problems.push(`missing input(s) ${missingInputs.join(", ")}`);
  if (unknownInputs.length > 0) problems.push(`unexpected input(s) ${unknownInputs.join(", ")}`);
  if (missingOutputs.length > 0) problems.push(`missing output(s) ${missingOutputs.join(", ")}`);
  for (const [name, expected] of Object.entries(contract.inputShapes ?? {})) {
    const shape = inputs.find((input) => input.name === name)?.shape;
    if (shape === undefined || shape.length === 0) continue;
    const fits =
      shape.length === expected.length &&
      expected.every(
        (size, axis) => size === null || typeof shape[axis] !== "number" || shape[axis] === size,
      );
    if (!fits) {
      const wanted = expected.map((size) => (size === null ? "any" : String(size))).join(", ");
      problems.push(`input ${name} has shape [${shape.join(", ")}] where [${wanted}] is fed`);
    }
  }
  return problems;
}

function describeNames(names: readonly string[]): string {
  return names.length === 0 ? "(none)" : `[${names.join(", ")}]`;
}

/** One loaded ONNX model. Create it with {@link createSession}; call {@link OnnxSession.release} when done. */
export class OnnxSession {
  /** Label used in messages, e.g. `onnx/text_model.onnx`. */
  readonly label: string;
  /** Names of the inputs the model declares. */
  readonly inputNames: readonly string[];
  /** Names of the outputs the model declares. */
  readonly outputNames: readonly string[];
  #session: SessionBackend | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #metrics: Pick<LoupeMetrics, "observeInference"> | undefined;

  constructor(session: SessionBackend, label: string, metrics?: Pick<LoupeMetrics, "observeInference">) {
    this.#session = session;
    this.label = label;
    this.#metrics = metrics;
    this.inputNames = [...session.inputNames];
    this.outputNames = [...session.outputNames];
  }

  /** Whether the model declares an input of this name. */
  hasInput(name: string): boolean {
    return this.inputNames.includes(name);
  }

  /**
   * Runs the model. Feeds the model does not declare are dropped (an optional input such as
   * `attention_mask`), so callers can always pass everything they have.
   *
   * @param feeds tensors by input name.
   * @param outputs output names to fetch; all outputs when omitted.
   */
  async run({
    feeds,
    outputs,
  }: {
    feeds: Record<string, ort.Tensor>;
    outputs?: readonly string[];
  }): Promise<Record<string, ort.Tensor>> {
    const session = this.#session;
    if (session === undefined) {
      throw new InferenceError(`${this.label} was already released; load the model pack again to use it.`);
    }
    const declared: Record<string, ort.Tensor> = {};
    for (const name of this.inputNames) {
      const tensor = feeds[name];
      if (tensor === undefined) {
        throw new InferenceError(
          `${this.label} needs input "${name}" but it was not given (given: ${describeNames(Object.keys(feeds))}).`,
          { context: { model: this.label, input: name } },
        );
      }
      declared[name] = tensor;
    }
    let result: Record<string, ort.OnnxValue>;
    const started = performance.now();
    const running = outputs === undefined ? session.run(declared) : session.run(declared, [...outputs]);
    this.#inFlight.add(running);
    try {
      result = await running;
      this.#metrics?.observeInference({
        model: this.label,
        batchSize: batchSizeOf(declared),
        seconds: (performance.now() - started) / 1000,
      });
    } catch (error) {
      const shapes = Object.entries(declared)
        .map(([name, tensor]) => `${name} ${tensor.type}[${tensor.dims.join(",")}]`)
        .join(", ");
      throw new InferenceError(
        `Running ${this.label} failed with inputs ${shapes}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error, context: { model: this.label } },
      );
    } finally {
      this.#inFlight.delete(running);
    }
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, value] of Object.entries(result)) {
      if (value instanceof ort.Tensor) tensors[name] = value;
    }
    return tensors;
  }

  /** Frees the native session once runs in progress have finished. Safe to call more than once. */
  async release(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    await Promise.allSettled([...this.#inFlight]);
    if (session !== undefined) await session.release();
  }
}

/** The batch size of a run: the first axis of its first input (images, texts or text lines); 1 for a scalar. */
function batchSizeOf(feeds: Record<string, ort.Tensor>): number {
  for (const tensor of Object.values(feeds)) return Number(tensor.dims[0] ?? 1);
  return 1;
}

/** An ONNX Runtime session run on the calling thread, as a {@link SessionBackend}. */
function inThisThread(session: ort.InferenceSession): SessionBackend {
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    inputMetadata: session.inputMetadata,
    run: (feeds, fetches) => (fetches === undefined ? session.run(feeds) : session.run(feeds, fetches)),
    release: () => session.release(),
  };
}

/**
 * `replicas` copies of one model as one backend: each run goes to the copy with the fewest runs in
 * progress (the earliest opened among equals), so concurrent runs spread over the copies. A copy that fails
 * to open releases the ones already open.
 */
async function openReplicas({
  open,
  replicas,
}: {
  open: () => Promise<SessionBackend>;
  replicas: number;
}): Promise<SessionBackend> {
  const copies: SessionBackend[] = [];
  try {
    for (let index = 0; index < replicas; index += 1) copies.push(await open());
  } catch (error) {
    await Promise.allSettled(copies.map((copy) => copy.release()));
    throw error;
  }
  const first = copies[0] as SessionBackend;
  const busy = copies.map(() => 0);
  return {
    inputNames: first.inputNames,
    outputNames: first.outputNames,
    inputMetadata: first.inputMetadata,
    async run(feeds, fetches) {
      let chosen = 0;
      for (let index = 1; index < copies.length; index += 1)
        if ((busy[index] ?? 0) < (busy[chosen] ?? 0)) chosen = index;
      busy[chosen] = (busy[chosen] ?? 0) + 1;
      try {
        return await (copies[chosen] as SessionBackend).run(feeds, fetches);
      } finally {
        busy[chosen] = (busy[chosen] ?? 0) - 1;
      }
    },
    async release() {
      await Promise.all(copies.map((copy) => copy.release()));
    },
  };
}

/**
 * Opens an ONNX model and checks its input and output names against what the caller needs.
 *
 * @throws ModelPackError when the file is missing, cannot be parsed, or its names do not fit the contract.
 */
export async function createSession({
  path,
  contract,
  settings = {},
  label = basename(path),
}: CreateSessionOptions): Promise<OnnxSession> {
  const merged = { ...defaultSessionSettings, ...settings };
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [...merged.executionProviders],
    graphOptimizationLevel: merged.graphOptimizationLevel,
    intraOpNumThreads: merged.intraOpNumThreads,
    interOpNumThreads: merged.interOpNumThreads,
  };
  const replicas = Math.max(1, Math.floor(merged.replicas));
  if (replicas > 1 && merged.intraOpNumThreads === 0) {
    sessionOptions.intraOpNumThreads = Math.max(1, Math.floor(availableParallelism() / replicas));
  }
  const openOne = async (): Promise<SessionBackend> =>
    merged.worker
      ? await createWorkerSession({ path, options: sessionOptions })
      : inThisThread(await ort.InferenceSession.create(path, sessionOptions));
  let session: SessionBackend;
  try {
    session = replicas === 1 ? await openOne() : await openReplicas({ open: openOne, replicas });
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).replace(/\.+$/, "");
    const providers = merged.executionProviders;
    if (providers.some((provider) => provider !== "cpu")) {
      throw new ConfigError(
        `Could not open ${label} with execution providers [${providers.join(", ")}]: ${reason}. ` +
          "Install the provider's ONNX Runtime libraries, or use the bundled cpu provider.",
        { cause: error, context: { file: label, executionProviders: providers } },
      );
    }
    throw new ModelPackError(
      `Could not load the ONNX model ${label}: ${reason}. Re-fetch or reinstall the model pack.`,
      { cause: error, context: { file: label } },
    );
  }
  const problems = checkContract({
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    contract,
    inputs: session.inputMetadata.map((meta) => ({
      name: meta.name,
      ...(meta.isTensor ? { shape: meta.shape } : {}),
    })),
  });
  if (problems.length > 0) {
    await session.release();
    const expectedInputs = [
      ...contract.requiredInputs,
      ...(contract.optionalInputs ?? []).map((name) => `${name} (optional)`),
    ];
    throw new ModelPackError(
      `${label} does not have the expected inputs/outputs: ${problems.join("; ")}. ` +
        `Expected inputs ${describeNames(expectedInputs)} and outputs ${describeNames(contract.requiredOutputs)}; ` +
        `found inputs ${describeNames(session.inputNames)} and outputs ${describeNames(session.outputNames)}.`,
      {
        context: {
          file: label,
          expectedInputs,
          expectedOutputs: contract.requiredOutputs,
          foundInputs: session.inputNames,
          foundOutputs: session.outputNames,
        },
      },
    );
  }
  return new OnnxSession(session, label, settings.metrics);
}
