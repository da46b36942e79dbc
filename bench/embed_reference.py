"""Python onnxruntime side of `npm run bench:embed`: runs the same ONNX files on the same inputs and reports
items per second. It loads the models once, prints `{"ready": ...}`, then answers each stdin line
`images <batch>` or `texts <batch>` with one JSON line `{"rate": <items/s>}`, so that the TypeScript side can
interleave its own measurements with these (on a shared machine, load changes from minute to minute).

Input (a JSON file given as argv[1]):
  {"vision": path, "text": path, "pixels": path of raw float32 [N,3,H,W], "pixel_dims": [N,3,H,W],
   "texts": {"<batch size>": {"input_ids": [[...]], "attention_mask": [[...]]}} (the exact batches the
     TypeScript side runs, padded to their longest row),
   "min_seconds": 1.5, "threads": 1}
Needs: onnxruntime, numpy.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def measure(run, items_per_call: int, min_seconds: float) -> float:
    run()  # warm-up
    calls, start = 0, time.perf_counter()
    while True:
        run()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= 2:
            return calls * items_per_call / elapsed


def main() -> None:
    spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
    threads = int(spec.get("threads", 1))
    min_seconds = float(spec.get("min_seconds", 1.5))
    pixels = np.fromfile(spec["pixels"], dtype=np.float32).reshape(spec["pixel_dims"])
    vision = session(spec["vision"], threads)
    text = session(spec["text"], threads)
    text_inputs = {i.name for i in text.get_inputs()}
    print(json.dumps({"ready": True, "onnxruntime": ort.__version__}), flush=True)
    for line in sys.stdin:
        kind, batch = line.split()
        batch = int(batch)
        if kind == "images":
            feed = {"pixel_values": np.ascontiguousarray(np.resize(pixels, (batch, *pixels.shape[1:])))}
            rate = measure(lambda: vision.run(["image_embeds"], feed), batch, min_seconds)
        else:
            texts = spec["texts"][str(batch)]
            feeds = {
                "input_ids": np.array(texts["input_ids"], dtype=np.int64),
                "attention_mask": np.array(texts["attention_mask"], dtype=np.int64),
            }
            feeds = {k: v for k, v in feeds.items() if k in text_inputs}
            rate = measure(lambda: text.run(["text_embeds"], feeds), batch, min_seconds)
        print(json.dumps({"rate": rate}), flush=True)


if __name__ == "__main__":
    main()
