"""Trains the video head and the text tower on cached frame features (clip_features.py); the vision tower
and the VQA head stay frozen.

The head becomes a token-reading one (model.VideoHead with `token_grid`): its temporal part starts from
the checkpoint's head, its motion branch from zero, so step 0 scores as the old head did. Every step
draws fresh descriptions (and false descriptions, as in train.py) for cached clips, and plays half of the
clips backwards with the opposite action (left <-> right, up <-> down, growing <-> shrinking).

The text tower trains too (the jointly trained one gave "moving left" and "moving right" embeddings with
cosine 0.9999: with frame features that could not tell them apart, nothing taught it to), held to its old
meaning on every other text: scene descriptions, hard negatives and partial queries keep their embeddings
and questions keep their tokens (the VQA head reads them), through a distillation loss against a frozen
copy. The vision tower and the VQA head do not change.

    python3 train_video.py --init checkpoints/shapes-world-tiny.pt --cache cache/clips \
        --tokenizer ../shapes-world-tiny/tokenizer.json --out checkpoints/shapes-world-tiny.pt --minutes 30
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import shapes_world as sw
from data import encode, load_tokenizer
from model import LoupePack, PackConfig, float_weights
from train import multi_positive_nce, video_relevance

REVERSED = [sw.ACTIONS.index(sw.OPPOSITE_ACTION[name]) for name in sw.ACTIONS]


def load_shards(paths: list[str]) -> dict[str, torch.Tensor]:
    shards = [torch.load(p, weights_only=True) for p in paths]
    return {k: torch.cat([s[k] for s in shards]) for k in ("features", "actor", "action")}


def texts_for(rng: random.Random, tok, actor: torch.Tensor, action: torch.Tensor, negatives: bool):
    """Descriptions of the clips (and false ones) with the fields video_relevance compares."""
    objs = [sw.Obj(int(s), int(c), int(z), 0.0, 0.0, 0.0, 0.0) for s, c, z in actor.tolist()]
    acts = action.tolist()
    descs = [sw.describe_clip(rng, o, a) for o, a in zip(objs, acts)]
    ids, mask = encode(tok, [d[0] for d in descs])
    fields = {
        "color": actor[:, 1],
        "shape": actor[:, 0],
        "action": action,
        "sizeword": torch.tensor([d[1] for d in descs]),
    }
    out = {"ids": ids, "mask": mask, "fields": fields}
    if negatives:
        negs = [sw.clip_negative(rng, o, a) for o, a in zip(objs, acts)]
        out["neg_ids"], out["neg_mask"] = encode(tok, [x[0] for x in negs])
        out["neg_fields"] = {
            "sizeword": torch.tensor([x[1] for x in negs]),
            "color": torch.tensor([x[2] for x in negs]),
            "shape": torch.tensor([x[3] for x in negs]),
            "action": torch.tensor([x[4] for x in negs]),
        }
    return out


def scene_texts(rng: random.Random, tok, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Texts about still scenes (descriptions, hard negatives, partial queries; and questions apart)."""
    scenes = [sw.sample_scene(rng)[1] for _ in range(n)]
    texts = [sw.describe_scene(rng, objs)[0] for objs in scenes]
    texts += [x[0] for x in (sw.hard_negative(rng, objs) for objs in scenes) if x is not None]
    texts += [sw.partial_query(rng, objs, relevant=rng.random() < 0.8)[0] for objs in scenes]
    questions = [sw.question(rng, objs)[0] for objs in scenes]
    ids, mask = encode(tok, texts)
    q_ids, q_mask = encode(tok, questions)
    return ids, mask, q_ids, q_mask


def keep_loss(text: torch.nn.Module, reference: torch.nn.Module, batch) -> torch.Tensor:
    """How far the text tower has moved on texts that are not about clips: 1 - cosine of the embeddings of
    scene texts (what image search compares), and the relative squared change of the question tokens (what
    the VQA head reads)."""
    ids, mask, q_ids, q_mask = batch
    n = ids.shape[0]
    # One pass per tower: every text is padded to the same length.
    all_ids, all_mask = torch.cat([ids, q_ids]), torch.cat([mask, q_mask])
    with torch.no_grad():
        old_embeds, old_tokens = reference(all_ids, all_mask)
    new_embeds, new_tokens = text(all_ids, all_mask)
    embed_drift = (1 - F.cosine_similarity(new_embeds[:n], old_embeds[:n], dim=-1)).mean()
    real = q_mask.bool()
    old_q, new_q = old_tokens[n:][real], new_tokens[n:][real]
    token_drift = ((new_q - old_q).pow(2).sum(-1) / old_q.pow(2).sum(-1)).mean()
    return embed_drift + token_drift


def clip_truth(actor: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"color": actor[:, 1], "shape": actor[:, 0], "size": actor[:, 2], "action": action}


@torch.no_grad()
def evaluate(model: LoupePack, tok, data: dict[str, torch.Tensor], seed: int = 5) -> dict[str, float]:
    """Text->clip R@1 over the held-out clips, one description each (a size word on every other)."""
    model.eval()
    rng = random.Random(seed)
    embeds = torch.cat([model.video(data["features"][i : i + 64].float()) for i in range(0, len(data["action"]), 64)])
    texts = texts_for(rng, tok, data["actor"], data["action"], negatives=False)
    text_embeds, _ = model.text(texts["ids"], texts["mask"])
    truth = clip_truth(data["actor"], data["action"])
    rel = video_relevance(texts["fields"], truth)
    sims = F.normalize(text_embeds, dim=-1) @ F.normalize(embeds, dim=-1).T
    top = sims.topk(5, dim=1).indices
    hits = torch.gather(rel, 1, top)
    model.train()
    return {"r@1": hits[:, 0].float().mean().item(), "r@5": hits.any(1).float().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, help="the pack checkpoint whose video head is trained")
    parser.add_argument("--cache", required=True, help="directory of clip_features.py shards")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the motion branch")
    parser.add_argument("--base-lr", type=float, default=2e-4, help="learning rate of the rest of the head")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--validation", type=int, default=1, help="shards held out for validation")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--reload-every", type=int, default=200, help="steps between looks for new shards (0: never)")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0, help="minutes between checkpoints")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--motion-channels", type=int, default=16, help="channels per grid token in a new motion branch")
    parser.add_argument("--text-lr", type=float, default=3e-4, help="learning rate of the text tower (0: frozen)")
    parser.add_argument("--keep-weight", type=float, default=20.0, help="weight of the text tower's keep-meaning loss")
    parser.add_argument("--scene-texts", type=int, default=32, help="scenes per step whose texts must keep their meaning")
    parser.add_argument(
        "--align",
        default="action,shape,color",
        help="fields one linear map must read from clip and description embeddings alike",
    )
    parser.add_argument("--aux-weight", type=float, default=0.5, help="weight of the training-only probes: the motion branch naming the action, the shared probes")
    parser.add_argument("--reverse", type=float, default=0.5, help="share of clips played backwards")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tok = load_tokenizer(args.tokenizer)

    paths = sorted(glob.glob(f"{args.cache}/*.pt"))
    if len(paths) <= args.validation:
        raise SystemExit(f"{args.cache} has {len(paths)} shards; need more than the {args.validation} held out.")
    held_out, train_paths = paths[: args.validation], paths[args.validation :]
    grid = torch.load(paths[0], weights_only=True)["grid"]
    validation = load_shards(held_out)
    data = load_shards(train_paths)

    init = torch.load(args.init, map_location="cpu", weights_only=False)
    cfg_dict = json.loads(json.dumps(init["config"]))
    fresh_head = not cfg_dict["video"].get("token_grid")
    cfg_dict["video"]["token_grid"] = grid
    if fresh_head:
        cfg_dict["video"]["motion_channels"] = args.motion_channels
    cfg = PackConfig.from_dict(cfg_dict)
    model = LoupePack(cfg)
    missing, _ = model.load_state_dict(float_weights(init["model"]), strict=False)
    if fresh_head:
        model.video.copy_frame_projection(model.vision)
    elif missing:
        raise SystemExit(f"the checkpoint lacks {missing[:3]}")
    for p in model.parameters():
        p.requires_grad_(False)
    # The text tower as it was: what every text other than a clip description must keep meaning.
    reference_text = copy.deepcopy(model.text).eval()
    motion = [p for n, p in model.video.named_parameters() if n.startswith(("grid_", "motion"))]
    base = [p for n, p in model.video.named_parameters() if not n.startswith(("grid_", "motion", "frame_"))]
    # Training only: the motion branch also learns to name the action outright (not exported).
    action_probe = torch.nn.Linear(cfg.video.motion_hidden_size, len(sw.ACTIONS))
    # Training only: one linear map must name the action from clip embeddings and from their descriptions'
    # embeddings alike, which puts the action in the same directions of the shared space on both sides. The
    # contrastive loss alone starts from a saddle: texts whose actions embed alike give the head no reason
    # to separate actions, and a head that does not gives the text tower none.
    aligned = [name for name in args.align.split(",") if name]
    unknown = set(aligned) - {"action", "shape", "color"}
    if unknown:
        raise SystemExit(f"--align: unknown fields {sorted(unknown)}; use action, shape, color")
    classes = {"action": len(sw.ACTIONS), "shape": len(sw.SHAPES), "color": len(sw.COLORS)}
    shared_probes = torch.nn.ModuleDict({name: torch.nn.Linear(cfg.projection_dim, classes[name]) for name in aligned})
    motion += list(action_probe.parameters()) + list(shared_probes.parameters())
    for p in motion + base:
        p.requires_grad_(True)
    text_params = list(model.text.parameters()) if args.text_lr > 0 else []
    for p in text_params:
        p.requires_grad_(True)
    groups = [{"params": motion, "lr": args.lr}, {"params": base, "lr": args.base_lr}]
    if text_params:
        groups.append({"params": text_params, "lr": args.text_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.05)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scale = model.logit_scale.exp().clamp(max=100).item()
    n_clips = len(data["action"])
    print(
        f"train clips {n_clips} held out {len(validation['action'])} grid {grid} trainable "
        f"{sum(p.numel() for p in motion + base) / 1e6:.2f}M",
        flush=True,
    )
    print("step 0 held-out " + json.dumps({k: round(v, 4) for k, v in evaluate(model, tok, validation).items()}), flush=True)

    def save(seconds: float) -> None:
        phase = {
            "from": "checkpoint",
            "part": "video head and text tower",
            "steps": step,
            "seconds": round(seconds),
            "clips": n_clips,
            "clip_seeds": sorted({Path(p).name.split("-")[0] for p in train_paths}),
            "args": {k: v for k, v in vars(args).items() if k not in ("init", "cache", "tokenizer", "out")},
        }
        state = {
            "config": cfg.to_dict(),
            "model": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
            "step": step,
            "elapsed_s": seconds,
            "args": phase["args"],
            "phases": [*init.get("phases", []), phase],
        }
        torch.save(state, args.out + ".tmp")
        os.replace(args.out + ".tmp", args.out)

    started = time.time()
    last_save = started
    budget = args.minutes * 60
    step = 0
    while time.time() - started < budget:
        progress = (time.time() - started) / budget
        for g, lr in zip(optimizer.param_groups, base_lrs):
            warm = min(1.0, (step + 1) / args.warmup)
            g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * progress))
        if args.reload_every and step % args.reload_every == 0 and step > 0:
            # clip_features.py may still be writing shards: take the new ones in.
            fresh = [p for p in sorted(glob.glob(f"{args.cache}/*.pt")) if p not in held_out and p not in train_paths]
            if fresh:
                more = load_shards(fresh)
                data = {k: torch.cat([data[k], more[k]]) for k in data}
                train_paths += fresh
                n_clips = len(data["action"])
                print(f"step {step} train clips {n_clips}", flush=True)
        idx = torch.tensor(rng.sample(range(n_clips), args.batch))
        features = data["features"][idx].float()
        actor, action = data["actor"][idx], data["action"][idx].clone()
        backwards = torch.rand(args.batch) < args.reverse
        features[backwards] = features[backwards].flip(1)
        action[backwards] = torch.tensor(REVERSED)[action[backwards]]
        # Renderer differences between clips: a little feature noise.
        features = features + torch.randn_like(features) * 0.02 * features.std()
        texts = texts_for(rng, tok, actor, action, negatives=True)
        all_ids = torch.cat([texts["ids"], texts["neg_ids"]])
        all_mask = torch.cat([texts["mask"], texts["neg_mask"]])
        with torch.set_grad_enabled(bool(text_params)):
            text_embeds, _ = model.text(all_ids, all_mask)
        text_embeds = F.normalize(text_embeds, dim=-1)
        loss_keep = torch.zeros(())
        if text_params:
            loss_keep = keep_loss(model.text, reference_text, scene_texts(rng, tok, args.scene_texts))
        vt, vn = text_embeds[: args.batch], text_embeds[args.batch :]
        v = F.normalize(model.video(features), dim=-1)
        loss_action = F.cross_entropy(action_probe(model.video.motion_state(features)), action)
        truth = clip_truth(actor, action)
        vrel = video_relevance(texts["fields"], truth)
        nrel = video_relevance(texts["neg_fields"], truth)
        loss_c2t = multi_positive_nce(scale * v @ torch.cat([vt, vn]).T, torch.cat([vrel, nrel]).T)
        loss_t2c = multi_positive_nce(scale * vt @ v.T, vrel)
        loss_align = torch.zeros(())
        for name, probe in shared_probes.items():
            clip_labels, text_labels = truth[name], torch.cat([texts["fields"][name], texts["neg_fields"][name]])
            part = F.cross_entropy(probe(v * 10), clip_labels)
            if text_params:
                part = 0.5 * (part + F.cross_entropy(probe(text_embeds * 10), text_labels))
            loss_align = loss_align + part
        loss = (
            0.5 * (loss_c2t + loss_t2c)
            + args.aux_weight * (loss_action + loss_align)
            + args.keep_weight * loss_keep
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(motion + base + text_params, 1.0)
        optimizer.step()
        step += 1
        if time.time() - last_save > args.checkpoint_minutes * 60:
            save(time.time() - started)
            last_save = time.time()
            print(f"step {step} checkpoint {args.out}", flush=True)
        if step % 20 == 0:
            print(
                f"step {step} loss {loss.item():.4f} action {loss_action.item():.4f} align {loss_align.item():.4f} "
                f"keep {loss_keep.item():.5f} "
                f"{time.time() - started:.0f}s",
                flush=True,
            )
        if step % args.eval_every == 0:
            print(f"step {step} held-out " + json.dumps({k: round(v, 4) for k, v in evaluate(model, tok, validation).items()}), flush=True)

    final = evaluate(model, tok, validation)
    print(f"final step {step} held-out " + json.dumps({k: round(v, 4) for k, v in final.items()}), flush=True)
    save(time.time() - started)
    print(f"saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
