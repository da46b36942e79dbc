"""Fine-tunes the METER VQA head alone on frozen towers, cheaply enough for a CPU.

The towers' token outputs for a pool of rendered scenes are computed once and cached; the head then
trains on fresh questions about those scenes (position questions oversampled with --position-share;
a checkpoint without the head's own image positions starts them as 2D sine-cosine positions, from which
a head learns left/right within a few hundred steps). The towers, and so every embedding in the pack,
stay unchanged.

    python finetune_vqa.py --checkpoint runs/gpu/checkpoint.pt --out runs/vqa --minutes 40
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import shapes_world as sw
from data import encode, load_tokenizer, objects_from, pack_objects
from model import LoupePack, PackConfig, float_weights
from render import render_augmented
from train import normalize


def load(checkpoint: str) -> tuple[LoupePack, dict]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = LoupePack(PackConfig.from_dict(state["config"]))
    missing, unexpected = model.load_state_dict(
        float_weights(state["model"]), strict=False
    )
    if unexpected or any(not k.endswith("image_pos") for k in missing):
        raise SystemExit(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    if "meter.image_pos" not in state["model"]:
        model.meter.init_image_pos()
    return model, state


@torch.no_grad()
def image_tokens(model: LoupePack, scenes, augment: bool, chunk: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(scenes), chunk):
        objects = objects_from(pack_objects(scenes[i : i + chunk]), "", torch.device("cpu"))
        if augment:
            images = render_augmented(objects, model.cfg.vision.image_size, augment=True, max_render=256)
        else:
            images = render_augmented(objects, model.cfg.vision.image_size, augment=False, render_size=256, codec="jpeg", quality=85, noise=4)
        _, tokens = model.vision(normalize(images))
        out.append(tokens.half())
    return torch.cat(out)


def questions_for(rng: random.Random, scenes, indices, position_share: float):
    qs = []
    for i in indices:
        qtype = "position" if rng.random() < position_share else rng.choice(sw.QUESTION_TYPES)
        qs.append(sw.question(rng, scenes[i][1], qtype))
    return qs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", default=str(Path(__file__).resolve().parents[1] / "shapes-world-tiny" / "tokenizer.json"))
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--eval", type=int, default=400)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument("--position-share", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "a")

    def say(msg: str) -> None:
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    model, state = load(args.checkpoint)
    model.eval()
    tok = load_tokenizer(args.tokenizer)
    rng = random.Random(args.seed)
    started = time.time()
    pool = [sw.sample_scene(rng) for _ in range(args.pool)]
    held_out = [sw.sample_scene(random.Random(777 + i)) for i in range(args.eval)]
    pool_tokens = image_tokens(model, pool, augment=True)
    eval_tokens = image_tokens(model, held_out, augment=False)
    say(f"cached tokens for {len(pool)} + {len(held_out)} scenes in {time.time() - started:.0f}s")

    eval_rng = random.Random(4242)
    eval_q = [sw.question(eval_rng, held_out[i][1], sw.QUESTION_TYPES[i % 6]) for i in range(len(held_out))]
    with torch.no_grad():
        eval_ids, eval_mask = encode(tok, [q[0] for q in eval_q])
        _, eval_text = model.text(eval_ids, eval_mask)

    def evaluate() -> dict:
        model.meter.eval()
        with torch.no_grad():
            pred = model.meter(eval_tokens.float(), eval_text, eval_mask).argmax(-1)
        model.meter.train()
        answers = torch.tensor([q[1] for q in eval_q])
        types = torch.tensor([q[2] for q in eval_q])
        correct = (pred == answers).float()
        result = {"vqa": round(correct.mean().item(), 4)}
        for t, name in enumerate(sw.QUESTION_TYPES):
            result[name] = round(correct[types == t].mean().item(), 4)
        return result

    say("before " + json.dumps(evaluate()))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.meter.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.meter.parameters(), lr=args.lr, weight_decay=0.01)
    model.meter.train()
    total = args.minutes * 60
    loop_start = time.time()
    step = 0
    best = evaluate()["vqa"]

    def save() -> None:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save({**state, "model": weights, "vqa_finetune": vars(args)}, out / "checkpoint.pt")

    while time.time() - loop_start < total:
        progress = (time.time() - loop_start) / total
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (0.1 + 0.9 * (1 - progress))
        idx = [rng.randrange(len(pool)) for _ in range(args.batch)]
        qs = questions_for(rng, pool, idx, args.position_share)
        ids, mask = encode(tok, [q[0] for q in qs])
        with torch.no_grad():
            _, text_tokens = model.text(ids, mask)
        logits = model.meter(pool_tokens[idx].float(), text_tokens, mask)
        loss = F.cross_entropy(logits, torch.tensor([q[1] for q in qs]), label_smoothing=0.05)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.meter.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0:
            figures = evaluate()
            say(f"step {step} t {time.time() - loop_start:.0f}s loss {loss.item():.3f} " + json.dumps(figures))
            if figures["vqa"] > best:
                best = figures["vqa"]
                save()
                say(f"saved (best held-out vqa {best})")
    say(f"done: {step} steps; best held-out vqa {best}")


if __name__ == "__main__":
    main()
