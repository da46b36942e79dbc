"""Exports a training checkpoint to a Loupe model pack (HF CLIP ONNX layout) with parity fixtures.

    python export.py --checkpoint runs/main/checkpoint.pt --out ../shapes-world-tiny

Weights are rounded to float16 and stored as float16 initializers behind Cast nodes, which halves
the pack; onnxruntime folds the casts at load, so inference runs in float32. The PyTorch reference
used for the parity fixtures runs the same rounded weights, so parity measures the runtimes, not
the rounding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import shapes_world as sw
from data import load_tokenizer, objects_from, pack_objects
from model import LoupePack, PackConfig, float_weights, grid_tokens
from render import render_augmented
from train import MEAN, STD
from vocabulary import write_vocabulary

OPSET = 17


class VisionExport(torch.nn.Module):
    def __init__(self, model: LoupePack):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.vision(pixel_values)


class TextExport(torch.nn.Module):
    def __init__(self, model: LoupePack):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.text(input_ids, attention_mask)


class MeterExport(torch.nn.Module):
    def __init__(self, model: LoupePack):
        super().__init__()
        self.model = model

    def forward(self, image_tokens, text_tokens, text_mask):
        return self.model.meter(image_tokens, text_tokens, text_mask)


class VideoExport(torch.nn.Module):
    def __init__(self, model: LoupePack):
        super().__init__()
        self.model = model

    def forward(self, frame_features):
        return self.model.video(frame_features)


def export(module, args, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter puts the module back in the mode it found it in; a wrapper fresh from its constructor is in
    # training mode, which would leave the pack's dropout on for the parity fixtures computed next.
    module.eval()
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=dynamic,
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=True,
    )
    store_weights_as_float16(path)


def store_weights_as_float16(path: Path, min_elements: int = 1024) -> None:
    """Replaces large float32 initializers by float16 ones followed by a Cast back to float32."""
    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size < min_elements:
            continue
        name = init.name
        half = numpy_helper.from_array(array.astype(np.float16), name + "__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [name + "__fp16"], [name], to=TensorProto.FLOAT, name=name + "__cast"))
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def to_pixel_values(images: torch.Tensor) -> torch.Tensor:
    return (images - MEAN) / STD


def pil_pixel_values(path: Path, size: int) -> np.ndarray:
    """CLIPImageProcessor semantics: RGB, bicubic resize of the shortest edge, center crop, rescale, normalize."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - MEAN.view(3).numpy()) / STD.view(3).numpy()
    return array.transpose(2, 0, 1)[None]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--model-id", default="shapes-world-tiny@2")
    parser.add_argument("--manifest-only", action="store_true", help="only rewrite manifest.json (after editing the model card)")
    args = parser.parse_args()
    if args.manifest_only:
        write_manifest(Path(args.out), args.model_id)
        return
    out = Path(args.out)
    tokenizer_path = Path(args.tokenizer) if args.tokenizer else out / "tokenizer.json"

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = PackConfig.from_dict(state["config"])
    model = LoupePack(cfg)
    missing, unexpected = model.load_state_dict(
        float_weights(state["model"]), strict=False
    )
    if unexpected or any(not k.endswith("image_pos") for k in missing):
        raise SystemExit(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.eval()

    size = cfg.vision.image_size
    length = cfg.text.max_position_embeddings
    n_tokens = (size // cfg.vision.patch_size) ** 2 + 1
    frames = cfg.video.num_frames

    # ---- ONNX graphs (explicit attention math, same weights)
    model.set_exportable(True)
    with torch.no_grad():
        export(
            VisionExport(model),
            (torch.randn(2, 3, size, size),),
            out / "onnx" / "vision_model.onnx",
            ["pixel_values"],
            ["image_embeds", "last_hidden_state"],
            {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}, "last_hidden_state": {0: "batch"}},
        )
        ids = torch.randint(0, cfg.text.vocab_size, (2, 12))
        mask = torch.ones(2, 12, dtype=torch.long)
        export(
            TextExport(model),
            (ids, mask),
            out / "onnx" / "text_model.onnx",
            ["input_ids", "attention_mask"],
            ["text_embeds", "last_hidden_state"],
            {
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "text_embeds": {0: "batch"},
                "last_hidden_state": {0: "batch", 1: "sequence"},
            },
        )
        export(
            MeterExport(model),
            (torch.randn(2, n_tokens, cfg.vision.hidden_size), torch.randn(2, 12, cfg.text.hidden_size), mask),
            out / "onnx" / "meter_vqa.onnx",
            ["image_tokens", "text_tokens", "text_mask"],
            ["logits"],
            {"image_tokens": {0: "batch"}, "text_tokens": {0: "batch", 1: "sequence"}, "text_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}},
        )
        grid = cfg.video.token_grid
        frame_shape = (1 + grid * grid, cfg.vision.hidden_size) if grid else (cfg.projection_dim,)
        export(
            VideoExport(model),
            (torch.randn(2, frames, *frame_shape),),
            out / "onnx" / "video_model.onnx",
            ["frame_features"],
            ["video_embeds"],
            {"frame_features": {0: "batch", 1: "frames"}, "video_embeds": {0: "batch"}},
        )
    model.set_exportable(False)

    # ---- configuration files in the HF CLIP layout
    config = {
        "model_type": "clip",
        "architectures": ["CLIPModel"],
        "projection_dim": cfg.projection_dim,
        "logit_scale_init_value": float(model.logit_scale.exp().item()),
        "text_config": {
            "model_type": "clip_text_model",
            "hidden_size": cfg.text.hidden_size,
            "intermediate_size": cfg.text.intermediate_size,
            "num_hidden_layers": cfg.text.num_hidden_layers,
            "num_attention_heads": cfg.text.num_attention_heads,
            "max_position_embeddings": cfg.text.max_position_embeddings,
            "vocab_size": cfg.text.vocab_size,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": cfg.vision.hidden_size,
            "intermediate_size": cfg.vision.intermediate_size,
            "num_hidden_layers": cfg.vision.num_hidden_layers,
            "num_attention_heads": cfg.vision.num_attention_heads,
            "image_size": cfg.vision.image_size,
            "patch_size": cfg.vision.patch_size,
        },
        "loupe": {
            "model_id": args.model_id,
            "domain": "shapes-world-v1",
            "vqa": {"answers": "answers.json", "hidden_size": cfg.meter.hidden_size, "num_layers": cfg.meter.num_layers},
            "video": {"num_frames": frames, "fps": 8, "frame_features": "image_embeds"}
            if not grid
            else {"num_frames": frames, "fps": 8, "frame_features": "token_grid", "token_grid": grid},
            "training": {
                "steps": state["step"],
                "seconds": round(state["elapsed_s"]),
                "args": training_args(state["args"]),
                # Every run the weights went through, oldest first (train.py --init carries them forward).
                "phases": [{**phase, "args": training_args(phase["args"])} for phase in state.get("phases", [])],
            },
            "pack_config": cfg.to_dict(),
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": MEAN.view(3).tolist(),
        "image_std": STD.view(3).tolist(),
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    if tokenizer_path.resolve() != (out / "tokenizer.json").resolve():
        shutil.copy(tokenizer_path, out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (out / "answers.json").write_text(json.dumps(sw.ANSWERS) + "\n")
    write_vocabulary(out)

    # ---- parity fixtures from the PyTorch reference
    fixtures = out / "fixtures"
    if fixtures.exists():
        shutil.rmtree(fixtures)
    fixtures.mkdir(parents=True)
    rng = random.Random(20261126)
    tok = load_tokenizer(str(out / "tokenizer.json"))
    scenes = [sw.sample_scene(rng, n_objects=1 + i % 4) for i in range(4)]
    objects = objects_from(pack_objects(scenes), "", torch.device("cpu"))
    images = render_augmented(objects, size, augment=False, render_size=size, codec="none", noise=0)
    records = {"images": [], "texts": [], "vqa": [], "video": [], "preprocessing": []}
    with torch.no_grad():
        for i, image in enumerate(images):
            name = f"image-{i}.png"
            Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(fixtures / name)
            pixel_values = torch.from_numpy(pil_pixel_values(fixtures / name, size))
            embeds, tokens = model.vision(pixel_values)
            records["images"].append(
                {
                    "file": name,
                    "scene": {"background": scenes[i][0], "objects": [o.__dict__ | {"shape": sw.SHAPES[o.shape], "color": sw.COLORS[o.color], "size": sw.SIZES[o.size]} for o in scenes[i][1]]},
                    "pixel_values_sum": float(pixel_values.sum()),
                    "pixel_values_head": pixel_values.flatten()[:16].tolist(),
                    "image_embeds": embeds[0].tolist(),
                }
            )
            for _ in range(3):
                text, answer, qtype = sw.question(rng, scenes[i][1], rng.choice(sw.QUESTION_TYPES))
                enc = tok.encode(text)
                n = sum(enc.attention_mask)
                q_ids = torch.tensor([enc.ids[:n]])
                q_mask = torch.ones_like(q_ids)
                _, q_tokens = model.text(q_ids, q_mask)
                logits = model.meter(tokens, q_tokens, q_mask)[0]
                records["vqa"].append(
                    {"image": name, "question": text, "type": sw.QUESTION_TYPES[qtype], "expected_answer": sw.ANSWERS[answer], "logits": logits.tolist(), "argmax": sw.ANSWERS[int(logits.argmax())]}
                )
        texts = [sw.describe_scene(rng, objs)[0] for _, objs in scenes] + [
            "A Photo of TWO red circles",
            "a zebra riding a unicycle — ünïcödé ✓",
            "",
            "show me " + "a very long query " * 12,
        ]
        for text in texts:
            enc = tok.encode(text)
            n = sum(enc.attention_mask)
            ids = torch.tensor([enc.ids[:n]])
            embeds, _ = model.text(ids, torch.ones_like(ids))
            records["texts"].append({"text": text, "input_ids": enc.ids[:n], "text_embeds": embeds[0].tolist()})
        clip_rng = random.Random(7)
        bg, clip_frames, actor, action = sw.sample_clip(clip_rng)
        clip_objects = objects_from(pack_objects([(bg, objs) for objs in clip_frames]), "", torch.device("cpu"))
        clip_images = render_augmented(clip_objects, size, augment=False, render_size=size, codec="none", noise=0)
        names = []
        for f, image in enumerate(clip_images):
            name = f"clip-frame-{f:02d}.png"
            Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(fixtures / name)
            names.append(name)
        frame_pixels = torch.cat([torch.from_numpy(pil_pixel_values(fixtures / n, size)) for n in names])
        frame_embeds, frame_tokens = model.vision(frame_pixels)
        frame_features = grid_tokens(frame_tokens, grid) if grid else frame_embeds
        video_embeds = model.video(frame_features[None])[0]
        records["video"].append(
            {"frames": names, "description": sw.describe_clip(clip_rng, clip_frames[0][actor], action)[0], "action": sw.ACTIONS[action], "video_embeds": video_embeds.tolist()}
        )
        # Preprocessing reference on a larger, non-square input (resize + center crop).
        big = render_augmented(objects[:1] if False else {k: v[:1] for k, v in objects.items()}, 200, augment=False, render_size=200, codec="none", noise=0)
        big_img = Image.fromarray((big[0].permute(1, 2, 0) * 255).round().byte().numpy()).crop((0, 0, 200, 160))
        big_img.save(fixtures / "preprocess-200x160.png")
        pv = pil_pixel_values(fixtures / "preprocess-200x160.png", size)
        records["preprocessing"].append({"file": "preprocess-200x160.png", "pixel_values_sum": float(pv.sum()), "pixel_values_mean_abs": float(np.abs(pv).mean())})
        np.save(fixtures / "preprocess-200x160.npy", pv.astype(np.float32))
    (fixtures / "parity.json").write_text(json.dumps(records) + "\n")

    # ---- check the ONNX files against the reference before writing the manifest
    check_onnx(out, records, size)

    total = write_manifest(out, args.model_id)
    print(f"pack written to {out}: {total / 1e6:.1f} MB")


def training_args(args: dict) -> dict:
    """The hyperparameters worth keeping in config.json: no paths of the machine that trained."""
    return {k: v for k, v in args.items() if k not in ("out", "tokenizer", "init", "checkpoint_every", "eval_every", "log_every", "eval_size", "workers", "detection_init")}


def write_manifest(out: Path, model_id: str) -> int:
    """sha256 of every pack file except the manifest itself and fixtures/; returns the pack's size in bytes."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json" and "fixtures" not in p.relative_to(out).parts)
    manifest = {"model_id": model_id, "files": {str(p.relative_to(out)): sha256(p) for p in files}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return sum(p.stat().st_size for p in files)


def check_onnx(out: Path, records: dict, size: int) -> None:
    vision = ort.InferenceSession(str(out / "onnx" / "vision_model.onnx"))
    text = ort.InferenceSession(str(out / "onnx" / "text_model.onnx"))
    worst = 1.0
    for rec in records["images"]:
        pv = pil_pixel_values(out / "fixtures" / rec["file"], size).astype(np.float32)
        emb = vision.run(["image_embeds"], {"pixel_values": pv})[0][0]
        ref = np.array(rec["image_embeds"])
        worst = min(worst, float(emb @ ref / np.linalg.norm(emb) / np.linalg.norm(ref)))
    for rec in records["texts"]:
        ids = np.array([rec["input_ids"]], dtype=np.int64)
        emb = text.run(["text_embeds"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        ref = np.array(rec["text_embeds"])
        worst = min(worst, float(emb @ ref / np.linalg.norm(emb) / np.linalg.norm(ref)))
    print(f"onnxruntime vs PyTorch: worst cosine {worst:.6f}")
    if worst < 0.999:
        raise SystemExit("ONNX export does not match the PyTorch reference")


if __name__ == "__main__":
    main()
