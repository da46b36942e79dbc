"""Caches the frozen vision tower's frame features of generated clips, for training the video head alone.

Each shard holds `--shard` clips: per frame, the tower's raw CLS token and its patch tokens averaged over
a `grid` x `grid` grid (what the token-reading video head takes, see model.VideoHead), in float16, and
each clip's acting object and action (what its descriptions are drawn from). Frames are degraded the way
a video codec degrades them: one renderer size, noise level, 4:2:0 block-DCT quality and color shift per
group of clips, all 16 frames alike.

    python3 clip_features.py --checkpoint checkpoints/shapes-world-tiny.pt --out cache/clips \
        --seed 11 --minutes 50
"""

from __future__ import annotations

import argparse
import os
import random
import time

import torch
import torch.nn.functional as F

import shapes_world as sw
from data import pack_objects
from model import LoupePack, PackConfig, float_weights, grid_tokens
from render import gaussian_blur, lossy_codec, render
from train import normalize


def load_pack(path: str) -> LoupePack:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = LoupePack(PackConfig.from_dict(state["config"]))
    model.load_state_dict(float_weights(state["model"]), strict=False)
    return model.eval()


def degraded_frames(objects: dict[str, torch.Tensor], out_size: int, rng: random.Random) -> torch.Tensor:
    """Renders a group of clips' frames with one set of degradations shared by all of them."""
    render_size = rng.choice([96, 112, 128, 128, 160])
    image = render(objects, render_size, supersample=2, color_jitter=0.0)
    n = image.shape[0]
    shift = torch.tensor([rng.uniform(-12, 12) for _ in range(3)]).view(1, 3, 1, 1) / 255.0
    image = (image + shift).clamp(0, 1)
    if rng.random() < 0.3:
        image = gaussian_blur(image, rng.uniform(0.2, 0.9))
    noise = rng.uniform(0, 6)
    if noise > 0:
        image = (image + (torch.rand(image.shape) * 2 - 1) * (noise / 255.0)).clamp(0, 1)
    if rng.random() < 0.9:
        image = lossy_codec(image, torch.full((n,), rng.uniform(35, 92)), block=8)
    image = torch.round(image * 255) / 255
    if render_size != out_size:
        image = F.interpolate(image, size=(out_size, out_size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="directory for the shards")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--shard", type=int, default=256, help="clips per shard")
    parser.add_argument("--group", type=int, default=8, help="clips that share one set of degradations")
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_pack(args.checkpoint)
    image_size = model.cfg.vision.image_size
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    deadline = time.time() + args.minutes * 60
    shard = 0
    while time.time() < deadline:
        started = time.time()
        features, actors, actions = [], [], []
        for _ in range(args.shard // args.group):
            clips = [sw.sample_clip(rng) for _ in range(args.group)]
            frames = [(bg, objs) for bg, fr, _, _ in clips for objs in fr]
            objects = {k: v[:, :3] if v.dim() == 2 else v for k, v in pack_objects(frames).items()}
            pixels = degraded_frames(objects, image_size, rng)
            with torch.no_grad():
                _, tokens = model.vision(normalize(pixels))
            pooled = grid_tokens(tokens, args.grid).half()
            features.append(pooled.view(args.group, sw.FRAMES, *pooled.shape[1:]))
            for _, fr, actor, action in clips:
                o = fr[0][actor]
                actors.append((o.shape, o.color, o.size))
                actions.append(action)
        path = os.path.join(args.out, f"seed{args.seed}-{shard:04d}.pt")
        torch.save(
            {"features": torch.cat(features), "actor": torch.tensor(actors), "action": torch.tensor(actions), "grid": args.grid},
            path + ".tmp",
        )
        os.replace(path + ".tmp", path)
        print(f"shard {shard} {args.shard} clips {time.time() - started:.1f}s", flush=True)
        shard += 1


if __name__ == "__main__":
    main()
