"""Python side of `npm run bench:embed`: the reference stack a user would otherwise run (PIL decoding, Hugging
Face CLIPImageProcessor preprocessing in numpy, onnxruntime), on the same ONNX files, inputs and threads. It
loads the models once, prints `{"ready": ...}`, then answers each stdin line with one JSON line, so that the
TypeScript side can interleave its own measurements with these (on a shared machine, load changes from minute
to minute):
  `model <batch>`  -> {"rate": images/s}   vision tower on the preprocessed pixels the TypeScript side wrote
  `e2e <batch>`    -> {"rate": images/s}   PIL decode + resize (bicubic, shortest edge) + center crop + numpy
                                           rescale/normalize + vision tower, over every image, `batch` per run
  `texts <batch>`  -> {"rate": texts/s}    text tower on the exact token batches the TypeScript side runs
  `flops`          -> {"gflops": per image, "counted": [...], "uncounted": [...]} from the ONNX graph
  `peak`           -> {"gflops": best GFLOP/s of an n×n float32 MatMul in onnxruntime on the same threads}

Input (a JSON file given as argv[1]):
  {"vision": path, "text": path or null, "pixels": path of raw float32 [N,3,H,W], "pixel_dims": [N,3,H,W],
   "images": [paths of encoded images], "preprocessor": preprocessor_config.json contents,
   "texts": {"<batch size>": {"input_ids": [[...]], "attention_mask": [[...]]}},
   "min_seconds": 1.5, "threads": 1, "peak_size": 2048, "scratch": dir for the peak model}
Needs: onnxruntime, numpy, Pillow, onnx (FLOP count and peak model).
"""

import io
import json
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


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


class Preprocessor:
    """CLIPImageProcessor semantics: RGB, resize shortest edge (PIL), center crop, rescale, normalize, CHW."""

    def __init__(self, config: dict):
        self.config = config
        self.resample = int(config.get("resample", 3))
        scale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
        mean = np.array(config.get("image_mean", [0, 0, 0]), dtype=np.float32)
        std = np.array(config.get("image_std", [1, 1, 1]), dtype=np.float32)
        if not config.get("do_normalize", True):
            mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
        self.scale = (scale / std).astype(np.float32)
        self.offset = (-mean / std).astype(np.float32)

    def __call__(self, data: bytes) -> np.ndarray:
        config = self.config
        image = Image.open(io.BytesIO(data)).convert("RGB")
        if config.get("do_resize", True):
            size = config["size"]
            if "shortest_edge" in size:
                short = size["shortest_edge"]
                width, height = image.size
                if width <= height:
                    target = (short, int(short * height / width))
                else:
                    target = (int(short * width / height), short)
            else:
                target = (size["width"], size["height"])
            image = image.resize(target, resample=self.resample)
        if config.get("do_center_crop", True):
            crop_h, crop_w = config["crop_size"]["height"], config["crop_size"]["width"]
            width, height = image.size
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
            image = image.crop((left, top, left + crop_w, top + crop_h))
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels * self.scale + self.offset
        return pixels.transpose(2, 0, 1)


def count_flops(path: str) -> dict:
    """FLOPs per image of MatMul/Gemm/Conv (and their quantized forms), 2 per multiply-add, at batch 1."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for tensor in model.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    total, counted, uncounted = 0, {}, {}
    matmuls = {"MatMul": (0, 1), "FusedMatMul": (0, 1), "MatMulInteger": (0, 1),
               "DynamicQuantizeMatMul": (0, 1), "QLinearMatMul": (0, 3), "MatMulIntegerToFloat": (0, 1)}
    for node in model.graph.node:
        flops = None
        out = shapes.get(node.output[0])
        if node.op_type in matmuls:
            a = shapes.get(node.input[matmuls[node.op_type][0]])
            if a is not None and out is not None:
                flops = 2 * math.prod(out) * a[-1]
        elif node.op_type == "Gemm":
            a = shapes.get(node.input[0])
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            if a is not None and out is not None:
                flops = 2 * math.prod(out) * (a[0] if trans_a else a[1])
        elif node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            weight = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1])
            if weight is not None and out is not None:
                flops = 2 * math.prod(out) * math.prod(weight[1:])
        else:
            continue
        if flops is None:
            uncounted[node.op_type] = uncounted.get(node.op_type, 0) + 1
        else:
            total += flops
            counted[node.op_type] = counted.get(node.op_type, 0) + 1
    return {"gflops": total / 1e9, "counted": counted, "uncounted": uncounted}


def measure_peak(size: int, threads: int, scratch: str, repeats: int = 10) -> float:
    """Best GFLOP/s of a size×size float32 MatMul (weights as an initializer) in onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((size, size), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["c"])],
        "peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
        [weight],
    )
    path = os.path.join(scratch, f"peak-{size}.onnx")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    peak = session(path, threads)
    feed = {"a": rng.standard_normal((size, size), dtype=np.float32)}
    peak.run(None, feed)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        peak.run(None, feed)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def main() -> None:
    spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
    threads = int(spec.get("threads", 1))
    min_seconds = float(spec.get("min_seconds", 1.5))
    pixels = np.fromfile(spec["pixels"], dtype=np.float32).reshape(spec["pixel_dims"])
    vision = session(spec["vision"], threads)
    text = session(spec["text"], threads) if spec.get("text") else None
    text_inputs = {i.name for i in text.get_inputs()} if text is not None else set()
    encoded = [open(path, "rb").read() for path in spec.get("images", [])]
    preprocess = Preprocessor(spec["preprocessor"])
    print(json.dumps({"ready": True, "onnxruntime": ort.__version__}), flush=True)
    for line in sys.stdin:
        words = line.split()
        kind = words[0]
        batch = int(words[1]) if len(words) > 1 else 1
        if kind == "model":
            feed = {"pixel_values": np.ascontiguousarray(np.resize(pixels, (batch, *pixels.shape[1:])))}
            reply = {"rate": measure(lambda: vision.run(["image_embeds"], feed), batch, min_seconds)}
        elif kind == "e2e":

            def run_all() -> None:
                for start in range(0, len(encoded), batch):
                    group = np.stack([preprocess(data) for data in encoded[start : start + batch]])
                    vision.run(["image_embeds"], {"pixel_values": group})

            reply = {"rate": measure(run_all, len(encoded), min_seconds)}
        elif kind == "texts" and text is not None:
            texts = spec["texts"][str(batch)]
            feeds = {
                "input_ids": np.array(texts["input_ids"], dtype=np.int64),
                "attention_mask": np.array(texts["attention_mask"], dtype=np.int64),
            }
            feeds = {k: v for k, v in feeds.items() if k in text_inputs}
            reply = {"rate": measure(lambda: text.run(["text_embeds"], feeds), batch, min_seconds)}
        elif kind == "flops":
            reply = count_flops(spec["vision"])
        elif kind == "peak":
            reply = {"gflops": measure_peak(int(spec.get("peak_size", 2048)), threads, spec["scratch"])}
        else:
            reply = {"error": f"unknown request {line.strip()!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
