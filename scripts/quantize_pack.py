"""INT8 dynamic quantization of a model pack's ONNX files (`loupe models quantize` runs this).

For each file: float16 initializers that a Cast turns back into float32 (how Loupe's trained packs store their
weights) are folded into float32 initializers, so the quantizer sees constant weights; then onnxruntime's
`quantize_dynamic` stores the weights of every MatMul and Gemm as INT8 (per output channel with --per-channel),
activations quantized at run time. Prints one JSON line per file: its name and sizes before and after.

    python quantize_pack.py --src <pack> --out <dir> --file onnx/vision_model.onnx [--file ...]
        [--weight-type qint8|quint8] [--per-channel]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def fold_float16_casts(model):
    """Replaces `fp16 initializer → Cast(to=float)` by a float32 initializer of the same values (lossless)."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    folded = []
    for node in list(graph.node):
        if node.op_type != "Cast" or len(node.input) != 1:
            continue
        source = initializers.get(node.input[0])
        target = next((attr.i for attr in node.attribute if attr.name == "to"), None)
        if source is None or source.data_type != TensorProto.FLOAT16 or target != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(source).astype("float32")
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        graph.node.remove(node)
        if consumers.get(source.name, 0) <= 1:
            graph.initializer.remove(source)
        folded.append(node.output[0])
    return len(folded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--file", action="append", required=True, help="pack-relative ONNX file (repeatable)")
    parser.add_argument("--weight-type", choices=["qint8", "quint8"], default="qint8")
    parser.add_argument("--per-channel", action="store_true")
    args = parser.parse_args()
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        print(
            f"the Python at {sys.executable} lacks {error.name}: install onnx and onnxruntime into it "
            "(npm run setup does, from scripts/requirements-models.txt)",
            file=sys.stderr,
        )
        sys.exit(3)

    weight_type = QuantType.QInt8 if args.weight_type == "qint8" else QuantType.QUInt8
    for file in args.file:
        source = Path(args.src) / file
        target = Path(args.out) / file
        target.parent.mkdir(parents=True, exist_ok=True)
        model = onnx.load(str(source))
        folded = fold_float16_casts(model)
        with tempfile.TemporaryDirectory() as scratch:
            unfolded = Path(scratch) / "model.onnx"
            onnx.save(model, str(unfolded))
            quantize_dynamic(
                str(unfolded),
                str(target),
                weight_type=weight_type,
                per_channel=args.per_channel,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
        quantized = onnx.load(str(target))
        integer_ops = sum(1 for node in quantized.graph.node if "Integer" in node.op_type or "Quant" in node.op_type)
        print(
            json.dumps(
                {
                    "file": file,
                    "bytes_before": source.stat().st_size,
                    "bytes_after": target.stat().st_size,
                    "folded_float16": folded,
                    "integer_ops": integer_ops,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
