/**
 * ONNX Runtime sessions hosted in a worker thread. onnxruntime-node's `run` is async in name only: it
 * waits for the next turn of the event loop, then runs the whole model on the calling thread. In a
 * server, every model run then stalls every other request (seen: event-loop delay p50 of 70–200 ms with
 * eight clients). A worker thread per session moves the run off the event loop; the main thread only
 * copies the input tensors over and the outputs back.
 *
 * The worker's code is plain JavaScript evaluated from a string, so it runs the same from `dist/`, under
 * tsx and under vitest, and it loads the same onnxruntime-node the main thread resolved.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import * as ort from "onnxruntime-node";

/** What {@link OnnxSession} needs of a loaded model, whichever thread it runs on. */
export interface SessionBackend {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  run(feeds: Record<string, ort.Tensor>, fetches?: string[]): Promise<Record<string, ort.OnnxValue>>;
  release(): Promise<void>;
}

interface WireTensor {
  type: ort.Tensor.Type;
  data: ort.Tensor.DataType;
  dims: readonly number[];
}

type Reply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string; name?: string };

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const ort = require(workerData.ortPath);
let session;
parentPort.on("message", async (message) => {
  const { id, op } = message;
  try {
    if (op === "create") {
      session = await ort.InferenceSession.create(message.path, message.options);
      const metadata = (list) => list.map((meta) => ({ name: meta.name, isTensor: meta.isTensor, ...(meta.isTensor ? { type: meta.type, shape: meta.shape } : {}) }));
      parentPort.postMessage({ id, ok: true, value: {
        inputNames: [...session.inputNames],
        outputNames: [...session.outputNames],
        inputMetadata: metadata(session.inputMetadata),
      } });
    } else if (op === "run") {
      const feeds = {};
      for (const [name, tensor] of Object.entries(message.feeds)) feeds[name] = new ort.Tensor(tensor.type, tensor.data, tensor.dims);
      const result = message.fetches === undefined ? await session.run(feeds) : await session.run(feeds, message.fetches);
      const outputs = {};
      for (const [name, value] of Object.entries(result)) {
        if (!(value instanceof ort.Tensor)) continue;
        outputs[name] = { type: value.type, data: value.data, dims: [...value.dims] };
      }
      parentPort.postMessage({ id, ok: true, value: outputs });
    } else if (op === "release") {
      if (session !== undefined) await session.release();
      session = undefined;
      parentPort.postMessage({ id, ok: true, value: null });
    }
  } catch (error) {
    parentPort.postMessage({ id, ok: false, message: error instanceof Error ? error.message : String(error), name: error instanceof Error ? error.name : undefined });
  }
});
`;

/** A session living in its own worker thread; one message in flight at a time per call. */
class WorkerSessionBackend implements SessionBackend {
  inputNames: readonly string[] = [];
  outputNames: readonly string[] = [];
  inputMetadata: readonly ort.InferenceSession.ValueMetadata[] = [];
  readonly #worker: Worker;
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  #nextId = 0;
  #exited: Error | undefined;

  constructor(worker: Worker) {
    this.#worker = worker;
    worker.on("message", (reply: Reply) => {
      const waiter = this.#pending.get(reply.id);
      if (waiter === undefined) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if (reply.ok) waiter.resolve(reply.value);
      else {
        const error = new Error(reply.message);
        if (reply.name !== undefined) error.name = reply.name;
        waiter.reject(error);
      }
    });
    const fail = (error: Error) => {
      this.#exited = error;
      for (const waiter of this.#pending.values()) waiter.reject(error);
      this.#pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`the inference worker thread exited (code ${code})`)));
    // An idle session nobody released must not keep the process alive; one with a call in flight does
    // (a CLI command awaiting an embedding has nothing else keeping it running).
    worker.unref();
  }

  call<Value>(message: Record<string, unknown>): Promise<Value> {
    if (this.#exited !== undefined) return Promise.reject(this.#exited);
    const id = this.#nextId++;
    return new Promise<Value>((resolve, reject) => {
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.postMessage({ id, ...message });
    });
  }

  async run(feeds: Record<string, ort.Tensor>, fetches?: string[]): Promise<Record<string, ort.OnnxValue>> {
    const wire: Record<string, WireTensor> = {};
    for (const [name, tensor] of Object.entries(feeds)) {
      wire[name] = { type: tensor.type, data: tensor.data, dims: tensor.dims };
    }
    const outputs = await this.call<Record<string, WireTensor>>({
      op: "run",
      feeds: wire,
      ...(fetches === undefined ? {} : { fetches }),
    });
    const tensors: Record<string, ort.OnnxValue> = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      tensors[name] = new ort.Tensor(tensor.type, tensor.data as never, tensor.dims);
    }
    return tensors;
  }

  async release(): Promise<void> {
    try {
      if (this.#exited === undefined) await this.call({ op: "release" });
    } finally {
      await this.#worker.terminate();
    }
  }
}

/**
 * Opens a model in a new worker thread.
 *
 * @throws the error ONNX Runtime gave (message and name kept) when the model cannot be opened; the
 *   worker is stopped then.
 */
export async function createWorkerSession({
  path,
  options,
}: {
  path: string;
  options: ort.InferenceSession.SessionOptions;
}): Promise<SessionBackend> {
  const ortPath = createRequire(import.meta.url).resolve("onnxruntime-node");
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ortPath } });
  const backend = new WorkerSessionBackend(worker);
  try {
    const described = await backend.call<{
      inputNames: string[];
      outputNames: string[];
      inputMetadata: ort.InferenceSession.ValueMetadata[];
    }>({ op: "create", path, options });
    backend.inputNames = described.inputNames;
    backend.outputNames = described.outputNames;
    backend.inputMetadata = described.inputMetadata;
    return backend;
  } catch (error) {
    await worker.terminate();
    throw error;
  }
}
