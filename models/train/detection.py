"""Trains, evaluates and exports the pack's detection head on frozen towers, cheaply enough for a CPU.

The head reads the vision tower's tokens (`last_hidden_state`: the class token, then the 16x16 patch grid)
and finds objects anchor-free, CenterNet style: per grid cell a center heatmap (focal loss), a sub-cell
center offset, a radius, shape class, color and size logits, and a region embedding in the pack's shared
image-text space. Its features come from a few Dynamic-Head-style blocks over the grid (scale-aware
attention over a three-level pooled pyramid, spatial depthwise convolutions and self-attention,
channel-aware gating). Peak extraction (3x3 max-pool equality) and TopK run inside the graph, so the ONNX
model returns the K best detections per image, sorted by score.

A Shapes World object's ground-truth box is the square [x - r, y - r, x + r, y + r] of its bounding circle,
normalized to the tower's input. Region embeddings learn, by InfoNCE against the frozen text tower's
`text_embeds` of single-object descriptions ("a small green star", "a green star", "a star"), to retrieve
regions from text.

The towers' tokens for a pool of rendered scenes are computed once and cached; the towers, and so every
other file of the pack, stay unchanged.

    python detection.py export --untrained --pack ../shapes-world-tiny     # an untrained head of the right shape
    python detection.py train --run runs/detect --minutes 30               # checkpoint.pt (best on dev) in the run
    python detection.py evaluate --run runs/detect --scenes 1000 --crops   # eval.json in the run
    python detection.py export --run runs/detect --pack ../shapes-world-tiny
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import shapes_world as sw
from data import encode, load_tokenizer, objects_from, pack_objects
from model import Attention, Block, LoupePack, PackConfig, float_weights
from render import render_augmented
from train import normalize

HERE = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = HERE / "checkpoints" / "shapes-world-tiny.pt"
DEFAULT_PACK = HERE.parents[0] / "shapes-world-tiny"
OPSET = 17
MAX_DETECTIONS = 16
SCORE_THRESHOLD = 0.5
EVAL_SEED = 31_337_000  # fresh scenes: training pools use seeds below 1,000 (see cache_pool)
DEV_SEED = 27_182_000


# ---------------------------------------------------------------- the head


class ScaleAware(nn.Module):
    """DyHead's scale-aware attention on one feature map: a three-level pyramid (the grid, 2x and 4x
    average-pooled), each level weighted by a hard sigmoid of a linear map of its global mean, summed back
    at the grid's resolution."""

    def __init__(self, dim: int, grid: int):
        super().__init__()
        self.grid = grid
        self.weight = nn.Linear(dim, 1)
        self.mix = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, C, G, G]
        levels = [(x, 1), (F.avg_pool2d(x, 2), 2), (F.avg_pool2d(x, 4), 4)]
        out = 0
        for level, factor in levels:
            w = F.hardsigmoid(self.weight(level.mean((2, 3))))  # [B, 1]
            up = level if factor == 1 else F.interpolate(level, scale_factor=float(factor), mode="nearest")
            out = out + w[:, :, None, None] * up
        return self.mix((out / len(levels)).flatten(2).transpose(1, 2))  # [B, G*G, C]


class DyBlock(nn.Module):
    """Scale-aware (pyramid attention), space-aware (depthwise 3x3 convolution) and channel-aware
    (squeeze-excitation gate) steps over the grid, each residual, then a feed-forward."""

    def __init__(self, dim: int, grid: int, hidden: int):
        super().__init__()
        self.grid = grid
        self.norm_scale = nn.LayerNorm(dim)
        self.scale = ScaleAware(dim, grid)
        self.norm_space = nn.LayerNorm(dim)
        self.depthwise = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.pointwise = nn.Linear(dim, dim)
        self.gate = nn.Sequential(nn.Linear(dim, dim // 4), nn.GELU(), nn.Linear(dim // 4, dim))
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def as_map(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(-1, x.shape[2], self.grid, self.grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, G*G, C]
        x = x + self.scale(self.as_map(self.norm_scale(x)))
        y = self.depthwise(self.as_map(self.norm_space(x))).flatten(2).transpose(1, 2)
        y = self.pointwise(F.gelu(y))
        x = x + y * torch.sigmoid(self.gate(y.mean(1)))[:, None, :]
        return x + self.mlp(self.norm_mlp(x))


class DetectionHead(nn.Module):
    """Tower tokens [B, 1 + G*G, width] -> K detections per image (see the module docstring)."""

    def __init__(self, width: int = 192, grid: int = 16, dim: int = 128, blocks: int = 2, attention: int = 1,
                 classes: int = 5, colors: int = 6, sizes: int = 2, embed_dim: int = 256, max_detections: int = MAX_DETECTIONS,
                 roi: int = 0, roi_dim: int = 48, dropout: float = 0.0):
        super().__init__()
        self.grid, self.k, self.roi = grid, max_detections, roi
        self.sizes = (classes, colors, sizes)
        self.inp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        self.context = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        self.blocks = nn.ModuleList([DyBlock(dim, grid, dim * 2) for _ in range(blocks)])
        self.attention = nn.ModuleList([Block(dim, 4, dim * 2) for _ in range(attention)])
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.dense = nn.Linear(dim, 1 + 2 + 1 + classes + colors + sizes)
        self.embed = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, embed_dim))
        if roi:
            # A region branch: the tower's own tokens in a roi x roi window around a center cell (projected
            # to roi_dim each), with the cell's features, give the shape class and the region embedding.
            self.roi_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, roi_dim))
            self.roi_mlp = nn.Sequential(nn.Linear(roi * roi * roi_dim + dim, dim * 2), nn.GELU(), nn.LayerNorm(dim * 2))
            self.roi_class = nn.Linear(dim * 2, classes)
            self.embed = nn.Sequential(nn.Linear(dim * 2, dim * 2), nn.GELU(), nn.Linear(dim * 2, embed_dim))
        with torch.no_grad():
            self.dense.bias.zero_()
            self.dense.bias[0] = -4.6  # heatmap prior 0.01, as CenterNet starts
        self.logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    def set_exportable(self, value: bool) -> None:
        for module in self.modules():
            if isinstance(module, Attention):
                module.exportable = value

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, G*G, dim] per-cell features."""
        x = self.inp(tokens[:, 1:]) + self.context(tokens[:, :1])
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        for block in self.attention:
            x = block(x)
        return self.norm(x)

    def region(self, tokens: torch.Tensor, feats_at: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(class logits or None, region embedding) at cells [B, K] given the features there [B, K, dim]."""
        if not self.roi:
            return None, self.embed(feats_at)
        g, h = self.grid, self.roi // 2
        p = self.roi_in(tokens[:, 1:])  # [B, G*G, R]
        r = p.shape[-1]
        padded = F.pad(p.transpose(1, 2).reshape(-1, r, g, g), (h, h, h, h)).flatten(2).transpose(1, 2)  # [B, (G+2h)^2, R]
        width = g + 2 * h
        row, col = torch.div(cells, g, rounding_mode="floor"), cells % g
        offsets = torch.tensor([dy * width + dx for dy in range(self.roi) for dx in range(self.roi)])
        window = ((row * width + col)[:, :, None] + offsets[None, None, :]).flatten(1)  # [B, K*roi*roi]
        taken = torch.gather(padded, 1, window[:, :, None].expand(-1, -1, r)).reshape(cells.shape[0], cells.shape[1], -1)
        hidden = self.roi_mlp(torch.cat([taken, feats_at], -1))
        return self.roi_class(hidden), self.embed(hidden)

    def dense_outputs(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.dense(feats)  # [B, G*G, 4 + classes + colors + sizes]
        c, k, s = self.sizes
        return {
            "heat": out[..., 0],
            "offset": torch.sigmoid(out[..., 1:3]),
            "radius": torch.exp(out[..., 3].clamp(-3, 3)),  # in cells
            "class": out[..., 4 : 4 + c],
            "color": out[..., 4 + c : 4 + c + k],
            "size": out[..., 4 + c + k : 4 + c + k + s],
        }

    def forward(self, tokens: torch.Tensor):
        feats = self.features(tokens)
        dense = self.dense_outputs(feats)
        g = self.grid
        heat = torch.sigmoid(dense["heat"]).reshape(-1, 1, g, g)
        peaks = (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).float()
        # Cells that are not peaks rank below every peak, by their own heat (so that no zero scores tie).
        ranked, idx = torch.topk((heat - 1 + peaks).flatten(1), self.k, dim=1)  # [B, K], sorted
        scores = ranked.clamp(min=0)

        def take(t: torch.Tensor) -> torch.Tensor:
            return torch.gather(t, 1, idx[:, :, None].expand(-1, -1, t.shape[-1]))

        offset = take(dense["offset"])
        radius = take(dense["radius"][..., None])[..., 0]
        cx = ((idx % g).float() + offset[..., 0]) / g
        cy = (torch.div(idx, g, rounding_mode="floor").float() + offset[..., 1]) / g
        r = radius / g
        boxes = torch.stack([cx - r, cy - r, cx + r, cy + r], -1).clamp(0, 1)
        class_logits, embeds = self.region(tokens, take(feats), idx)
        return (
            scores,
            boxes,
            torch.softmax(take(dense["class"]) if class_logits is None else class_logits, -1),
            torch.softmax(take(dense["color"]), -1),
            torch.softmax(take(dense["size"]), -1),
            embeds,
        )


OUTPUT_NAMES = ["scores", "boxes", "class_probs", "color_probs", "size_probs", "region_embeds"]


# ---------------------------------------------------------------- data


def load_pack(checkpoint: Path) -> LoupePack:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = LoupePack(PackConfig.from_dict(state["config"]))
    missing, unexpected = model.load_state_dict(float_weights(state["model"]), strict=False)
    if unexpected or any(not k.endswith("image_pos") for k in missing):
        raise SystemExit(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def render_scenes(scenes, size: int, augment: bool, out_size: int, seed: int) -> torch.Tensor:
    """Augmented training renders, or the 256 px JPEG-like (quality 85, light noise) evaluation renders."""
    objects = objects_from(pack_objects(scenes), "", torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    if augment:
        return render_augmented(objects, out_size, rng=gen, augment=True, max_render=256)
    return render_augmented(objects, out_size, rng=gen, augment=False, render_size=size, codec="jpeg", quality=85, noise=4)


def to_tower(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return normalize(images)


@torch.no_grad()
def tower_tokens(model: LoupePack, scenes, augment: bool, seed: int, chunk: int = 64, keep_images: bool = False):
    size = model.cfg.vision.image_size
    tokens, images = [], []
    for i in range(0, len(scenes), chunk):
        part = scenes[i : i + chunk]
        img = render_scenes(part, 256, augment, size if augment else 256, seed + i)
        _, t = model.vision(to_tower(img, size))
        tokens.append(t.half())
        if keep_images:
            images.append((img * 255).round().byte())
    return torch.cat(tokens), (torch.cat(images) if keep_images else None)


def scenes_from(seed: int, n: int):
    rng = random.Random(seed)
    return [sw.sample_scene(rng) for _ in range(n)]


def targets(scenes, grid: int) -> dict[str, torch.Tensor]:
    """Per scene and object slot: the center cell, offsets, radius (cells), labels, and the heatmap."""
    n, k = len(scenes), sw.MAX_OBJECTS
    t = {
        "cell": torch.zeros(n, k, dtype=torch.long),
        "offset": torch.zeros(n, k, 2),
        "radius": torch.zeros(n, k),
        "shape": torch.zeros(n, k, dtype=torch.long),
        "color": torch.zeros(n, k, dtype=torch.long),
        "size": torch.zeros(n, k, dtype=torch.long),
        "valid": torch.zeros(n, k, dtype=torch.bool),
        "box": torch.zeros(n, k, 4),
        "heat": torch.zeros(n, grid * grid),
    }
    centers = (torch.arange(grid).float() + 0.5)
    cy, cx = torch.meshgrid(centers, centers, indexing="ij")
    for i, (_, objects) in enumerate(scenes):
        heat = torch.zeros(grid, grid)
        for j, o in enumerate(objects):
            gx, gy = o.x * grid, o.y * grid
            col, row = min(int(gx), grid - 1), min(int(gy), grid - 1)
            t["cell"][i, j] = row * grid + col
            t["offset"][i, j] = torch.tensor([gx - col, gy - row])
            t["radius"][i, j] = o.r * grid
            t["shape"][i, j], t["color"][i, j], t["size"][i, j] = o.shape, o.color, o.size
            t["valid"][i, j] = True
            t["box"][i, j] = torch.tensor([o.x - o.r, o.y - o.r, o.x + o.r, o.y + o.r])
            sigma = max(0.5, 2 * o.r * grid / 6)
            g = torch.exp(-((cx - gx) ** 2 + (cy - gy) ** 2) / (2 * sigma * sigma))
            g[row, col] = 1.0
            heat = torch.maximum(heat, g)
        t["heat"][i] = heat.flatten()
    return t


def targets_from_objects(objects: dict[str, torch.Tensor], grid: int) -> dict[str, torch.Tensor]:
    """`targets` for a batch of scenes given as object tensors (data.pack_objects' fields: x, y, r, shape,
    color, size, valid, each [N, K]), computed on the objects' device."""
    x, y, r, valid = objects["x"].float(), objects["y"].float(), objects["r"].float(), objects["valid"]
    gx, gy = x * grid, y * grid
    col = gx.floor().clamp(0, grid - 1)
    row = gy.floor().clamp(0, grid - 1)
    cell = (row * grid + col).long()
    centers = torch.arange(grid, device=x.device).float() + 0.5
    cy, cx = torch.meshgrid(centers, centers, indexing="ij")
    sigma = (2 * r * grid / 6).clamp(min=0.5)
    d2 = (cx.flatten()[None, None, :] - gx[..., None]) ** 2 + (cy.flatten()[None, None, :] - gy[..., None]) ** 2
    g = torch.exp(-d2 / (2 * sigma[..., None] ** 2))  # [N, K, G*G]
    g = g.scatter(2, cell[..., None], 1.0)
    heat = (g * valid[..., None]).amax(1)
    return {
        "cell": torch.where(valid, cell, torch.zeros_like(cell)),
        "offset": torch.stack([gx - col, gy - row], -1) * valid[..., None],
        "radius": r * grid * valid,
        "shape": objects["shape"].long() * valid,
        "color": objects["color"].long() * valid,
        "size": objects["size"].long() * valid,
        "valid": valid,
        "box": torch.stack([x - r, y - r, x + r, y + r], -1) * valid[..., None],
        "heat": heat,
    }


def head_from_onnx(head: DetectionHead, path: Path) -> int:
    """Loads an exported head's weights back into `head` (same configuration): named initializers as they
    are, MatMul weights by the module path in their node's name (transposed back). Returns how many of the
    head's tensors were loaded."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    own = head.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for name, array in values.items():
        if name in own and tuple(own[name].shape) == array.shape:
            loaded[name] = torch.from_numpy(array.copy()).float()
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        for inp in node.input:
            if inp not in values or inp in own:
                continue
            parts: list[str] = []
            for comp in node.name.strip("/").split("/")[:-1]:
                if parts and comp.startswith(parts[-1] + "."):
                    parts[-1] = comp
                else:
                    parts.append(comp)
            key = ".".join(parts) + ".weight"
            weight = torch.from_numpy(values[inp].copy()).float().T
            if key in own and own[key].shape == weight.shape:
                loaded[key] = weight
    head.load_state_dict(loaded, strict=False)
    return len(loaded)


# ---------------------------------------------------------------- texts


def phrase_kinds() -> list[tuple[int, int, int]]:
    """(size, color, shape) with -1 for a word left out; at least one word."""
    return [(s, c, h) for s in range(-1, 2) for c in range(-1, 6) for h in range(-1, 5) if (s, c, h) != (-1, -1, -1)]


def phrase(kind: tuple[int, int, int]) -> str:
    s, c, h = kind
    return sw.object_phrase(1, sw.SIZES[s] if s >= 0 else None, sw.COLORS[c] if c >= 0 else None, sw.SHAPES[h] if h >= 0 else None)


@torch.no_grad()
def text_bank(model: LoupePack, tokenizer: str) -> tuple[list[tuple[int, int, int]], torch.Tensor]:
    """text_embeds [kinds, templates, dim] of every single-object phrase in every partial-query template
    (the bare phrase first)."""
    tok = load_tokenizer(tokenizer)
    kinds = phrase_kinds()
    templates = ["{object}"] + [t for t in dict.fromkeys(sw.PHRASING["partialTemplates"]) if t != "{object}"]
    texts = [sw.fix_articles(t.replace("{object}", phrase(k))) for k in kinds for t in templates]
    out = []
    for i in range(0, len(texts), 256):
        ids, mask = encode(tok, texts[i : i + 256])
        emb, _ = model.text(ids, mask)
        out.append(emb)
    return kinds, torch.cat(out).view(len(kinds), len(templates), -1)


def kind_matches(kinds: torch.Tensor, shape: torch.Tensor, color: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """kinds [T, 3] (size, color, shape; -1 = any) vs objects [R] -> [T, R] bool."""
    s, c, h = kinds[:, 0:1], kinds[:, 1:2], kinds[:, 2:3]
    return ((s < 0) | (s == size[None])) & ((c < 0) | (c == color[None])) & ((h < 0) | (h == shape[None]))


# ---------------------------------------------------------------- training


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalized by the number of objects."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target >= 1.0
    pos_loss = -torch.log(p) * (1 - p) ** 2
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4
    n = pos.sum().clamp(min=1)
    return (pos_loss[pos].sum() + neg_loss[~pos].sum()) / n


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    rows = positives.any(1)
    pos = torch.logsumexp(logits.masked_fill(~positives, -1e4), 1)
    return (torch.logsumexp(logits, 1) - pos)[rows].mean()


def head_losses(head: DetectionHead, tokens: torch.Tensor, t: dict[str, torch.Tensor], kinds: torch.Tensor, bank: torch.Tensor,
                rng: random.Random, weights: dict[str, float]) -> dict[str, torch.Tensor]:
    feats = head.features(tokens)
    dense = head.dense_outputs(feats)
    valid = t["valid"]
    device = tokens.device
    b_idx = torch.arange(tokens.shape[0], device=device)[:, None].expand_as(valid)[valid]
    cells = t["cell"][valid]
    at = lambda x: x[b_idx, cells]  # noqa: E731
    out = {"heat": focal_loss(dense["heat"], t["heat"])}
    out["offset"] = F.l1_loss(at(dense["offset"]), t["offset"][valid])
    radius = at(dense["radius"])
    out["radius"] = F.l1_loss(radius, t["radius"][valid]) + F.l1_loss(torch.log(radius), torch.log(t["radius"][valid]))
    class_logits, region_embeds = head.region(tokens, torch.gather(feats, 1, t["cell"][:, :, None].expand(-1, -1, feats.shape[-1])), t["cell"])
    out["class"] = F.cross_entropy(at(dense["class"]) if class_logits is None else class_logits[valid], t["shape"][valid])
    out["color"] = F.cross_entropy(at(dense["color"]), t["color"][valid])
    out["size"] = F.cross_entropy(at(dense["size"]), t["size"][valid])
    # Region embeddings vs single-object phrases: one phrase per object (a random kind of description of
    # it, in a random template), positives every region the phrase is true of.
    regions = F.normalize(region_embeds[valid], dim=-1)
    shape, color, size = t["shape"][valid], t["color"][valid], t["size"][valid]
    chosen, template = [], []
    for sh, co, si in zip(shape.tolist(), color.tolist(), size.tolist()):
        mode = rng.random()
        kind = (si, co, sh) if mode < 0.4 else (-1, co, sh) if mode < 0.6 else (-1, -1, sh) if mode < 0.7 else (si, -1, sh) if mode < 0.8 else (-1, co, -1) if mode < 0.9 else (si, co, -1)
        chosen.append(KIND_INDEX[kind])
        template.append(0 if rng.random() < 0.5 else rng.randrange(bank.shape[1]))
    chosen_t, template_t = torch.tensor(chosen, device=bank.device), torch.tensor(template, device=bank.device)
    text = F.normalize(bank[chosen_t, template_t].to(device), dim=-1)
    positives = kind_matches(kinds.to(device)[chosen_t.to(device)], shape, color, size)
    logits = head.logit_scale.exp().clamp(max=100) * text @ regions.T
    out["embed"] = 0.5 * (multi_positive_nce(logits, positives) + multi_positive_nce(logits.T, positives.T))
    out["total"] = sum(weights.get(k, 1.0) * v for k, v in out.items())
    return out


KIND_INDEX = {k: i for i, k in enumerate(phrase_kinds())}


def cache_pool(model: LoupePack, run: Path, pool: int, jpeg_share: float, seed: int, say) -> tuple[torch.Tensor, list]:
    """Tower tokens of the training pool (augmented renders plus some evaluation-like JPEG renders),
    cached in the run directory so that a restarted run skips the rendering."""
    path = run / "pool.pt"
    if path.exists():
        cached = torch.load(path, weights_only=False)
        if cached["pool"] == pool and cached["seed"] == seed:
            say(f"loaded the cached pool of {pool} scenes")
            return cached["tokens"], cached["scenes"]
    started = time.time()
    n_jpeg = int(pool * jpeg_share)
    scenes_aug = scenes_from(seed, pool - n_jpeg)
    scenes_jpeg = scenes_from(seed + 500, n_jpeg)
    tok_aug, _ = tower_tokens(model, scenes_aug, augment=True, seed=seed)
    tok_jpeg, _ = tower_tokens(model, scenes_jpeg, augment=False, seed=seed + 500)
    tokens = torch.cat([tok_aug, tok_jpeg])
    scenes = scenes_aug + scenes_jpeg
    torch.save({"pool": pool, "seed": seed, "tokens": tokens, "scenes": scenes}, path)
    say(f"cached tower tokens for {pool} scenes ({n_jpeg} JPEG-like) in {time.time() - started:.0f}s")
    return tokens, scenes


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    log = open(run / "log.txt", "a")

    def say(msg: str) -> None:
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    say("train " + json.dumps(vars(args)))
    model = load_pack(Path(args.checkpoint))
    kinds_list, bank = text_bank(model, args.tokenizer)
    kinds = torch.tensor(kinds_list)
    tokens, scenes = cache_pool(model, run, args.pool, args.jpeg_share, args.seed, say)
    for extra in args.extra_pool or []:
        cached = torch.load(extra, weights_only=False)
        if cached["seed"] == args.seed:
            raise SystemExit("an extra pool must come from another seed")
        tokens, scenes = torch.cat([tokens, cached["tokens"]]), scenes + cached["scenes"]
        say(f"added {len(cached['scenes'])} cached scenes of seed {cached['seed']}")
    grid = model.cfg.vision.image_size // model.cfg.vision.patch_size
    t_all = targets(scenes, grid)
    dev_scenes = scenes_from(DEV_SEED, args.dev)
    dev_tokens, _ = tower_tokens(model, dev_scenes, augment=False, seed=DEV_SEED)
    head = DetectionHead(model.cfg.vision.hidden_size, grid, dim=args.dim, blocks=args.blocks, attention=args.attention,
                         embed_dim=model.cfg.projection_dim, roi=args.roi, roi_dim=args.roi_dim, dropout=args.dropout)
    step, elapsed, best = 0, 0.0, -1.0
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.01)
    resume = run / "last.pt"
    if args.init and not resume.exists():
        # Warm start from another run's head: every weight whose name and shape fit.
        own = head.state_dict()
        loaded = {k: v for k, v in torch.load(args.init, weights_only=False)["head"].items() if k in own and own[k].shape == v.shape}
        head.load_state_dict(loaded, strict=False)
        say(f"initialized {len(loaded)} of {len(own)} tensors from {Path(args.init).name}")
    if resume.exists() and not args.fresh:
        state = torch.load(resume, weights_only=False)
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, best = state["step"], state["seconds"], state["best"]
        say(f"resumed at step {step} ({elapsed:.0f}s)")
    say(f"head: {sum(p.numel() for p in head.parameters())} parameters")
    rng = random.Random(args.seed + step)
    weights = {"heat": 1.0, "offset": 1.0, "radius": 0.5, "class": 1.0, "color": 1.0, "size": 1.0, "embed": args.embed_weight}
    total = args.minutes * 60
    loop_start = time.time() - elapsed

    def save(path: Path) -> None:
        torch.save({"head": head.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "seconds": time.time() - loop_start,
                    "best": best, "args": vars(args), "head_config": head_config(head, args)}, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    last_save = time.time()
    head.train()
    while time.time() - loop_start < total:
        progress = (time.time() - loop_start) / total
        warm = min(1.0, (step + 1) / 50)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        idx = torch.tensor([rng.randrange(len(scenes)) for _ in range(args.batch)])
        t = {k: v[idx] for k, v in t_all.items()}
        parts = head_losses(head, tokens[idx].float(), t, kinds, bank, rng, weights)
        optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 2.0)
        optimizer.step()
        step += 1
        if step % args.log_every == 0:
            say(f"step {step} t {time.time() - loop_start:.0f}s " + " ".join(f"{k} {v.item():.3f}" for k, v in parts.items()))
        if step % args.eval_every == 0:
            head.eval()
            figures = evaluate_head(head, dev_tokens, dev_scenes, kinds_list, bank[:, 0], quick=True)
            head.train()
            say(f"dev step {step}: " + json.dumps(figures))
            score = figures["ap50"] + figures["color_acc"] + figures["size_acc"] + figures["count_acc"] + figures["r1"]
            if score > best:
                best = score
                save(run / "checkpoint.pt")
                say(f"saved checkpoint.pt (dev score {best:.4f})")
        if time.time() - last_save > 120:
            save(resume)
            last_save = time.time()
    head.eval()
    figures = evaluate_head(head, dev_tokens, dev_scenes, kinds_list, bank[:, 0], quick=True)
    say(f"dev final step {step}: " + json.dumps(figures))
    score = figures["ap50"] + figures["color_acc"] + figures["size_acc"] + figures["count_acc"] + figures["r1"]
    if score > best:
        best = score
        save(run / "checkpoint.pt")
        say(f"saved checkpoint.pt (dev score {best:.4f})")
    save(resume)
    say(f"done: {step} steps in {time.time() - loop_start:.0f}s")


def head_config(head: DetectionHead, args) -> dict:
    return {"width": head.inp[1].in_features, "grid": head.grid, "dim": args.dim, "blocks": args.blocks, "attention": args.attention,
            "embed_dim": head.embed[2].out_features, "max_detections": head.k, "roi": args.roi, "roi_dim": args.roi_dim}


# ---------------------------------------------------------------- evaluation


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [N, 4], b [M, 4] -> [N, M]."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-12)


def average_precision(dets: list[tuple[float, int, np.ndarray]], gts: dict[int, np.ndarray], threshold: float) -> float:
    """COCO-style AP for one class: greedy matching by score, 101-point interpolated precision.
    dets: (score, image, box); gts: image -> [G, 4]."""
    n_gt = sum(len(g) for g in gts.values())
    if n_gt == 0:
        return float("nan")
    used = {i: np.zeros(len(g), dtype=bool) for i, g in gts.items()}
    tp = []
    for score, image, box in sorted(dets, key=lambda d: -d[0]):
        g = gts.get(image)
        hit = False
        if g is not None and len(g):
            overlaps = iou(box[None], g)[0]
            overlaps[used[image]] = -1
            j = int(overlaps.argmax())
            if overlaps[j] >= threshold:
                used[image][j] = True
                hit = True
        tp.append(hit)
    tp = np.array(tp, dtype=float)
    if not len(tp):
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


@torch.no_grad()
def run_head(head: DetectionHead, tokens: torch.Tensor, chunk: int = 128) -> list[np.ndarray]:
    outs = [head(tokens[i : i + chunk].float()) for i in range(0, len(tokens), chunk)]
    return [torch.cat([o[j] for o in outs]).numpy() for j in range(6)]


def evaluate_head(head, tokens, scenes, kinds, bare_bank, quick: bool = False, threshold: float = SCORE_THRESHOLD,
                  crop_embeds: list[np.ndarray] | None = None, rng_seed: int = 99) -> dict:
    scores, boxes, cls, col, siz, emb = run_head(head, tokens)
    n = len(scenes)
    gt_boxes = [np.array([[o.x - o.r, o.y - o.r, o.x + o.r, o.y + o.r] for o in objs]) for _, objs in scenes]
    # AP per class over every output slot (scores above 0.01).
    per_class: dict[str, dict[str, float]] = {}
    ths = [0.5] if quick else [round(0.5 + 0.05 * i, 2) for i in range(10)]
    for c, name in enumerate(sw.SHAPES):
        dets = [(float(scores[i, k]), i, boxes[i, k]) for i in range(n) for k in range(scores.shape[1]) if scores[i, k] > 0.01 and cls[i, k].argmax() == c]
        gts = {i: gt_boxes[i][[o.shape == c for o in objs]] for i, (_, objs) in enumerate(scenes)}
        per_class[name] = {f"{t:.2f}": average_precision(dets, gts, t) for t in ths}
    ap50 = float(np.mean([v["0.50"] for v in per_class.values()]))
    result = {"ap50": round(ap50, 4)}
    if not quick:
        # The same AP with each detection ranked by its score times its label's probability.
        ap_weighted = []
        for c in range(len(sw.SHAPES)):
            dets = [(float(scores[i, k] * cls[i, k, c]), i, boxes[i, k]) for i in range(n) for k in range(scores.shape[1]) if scores[i, k] > 0.01 and cls[i, k].argmax() == c]
            gts = {i: gt_boxes[i][[o.shape == c for o in objs]] for i, (_, objs) in enumerate(scenes)}
            ap_weighted.append(average_precision(dets, gts, 0.5))
        result["ap50_score_times_label"] = round(float(np.mean(ap_weighted)), 4)
        confusion = np.zeros((5, 5), dtype=int)
        result["_confusion"] = confusion
        result["ap50_95"] = round(float(np.mean([np.mean(list(v.values())) for v in per_class.values()])), 4)
        result["ap75"] = round(float(np.mean([v["0.75"] for v in per_class.values()])), 4)
        result["per_class_ap50"] = {k: round(v["0.50"], 4) for k, v in per_class.items()}
        result["per_class_ap50_95"] = {k: round(float(np.mean(list(v.values()))), 4) for k, v in per_class.items()}
    # Attributes over true positives (class-agnostic greedy matching at IoU 0.5, detections above threshold).
    tp = correct_cls = correct_col = correct_siz = fp = fn = 0
    kept = scores >= threshold
    for i, (_, objs) in enumerate(scenes):
        ks = np.nonzero(kept[i])[0]
        used = np.zeros(len(objs), dtype=bool)
        for k in ks:
            ov = iou(boxes[i, k][None], gt_boxes[i])[0]
            ov[used] = -1
            j = int(ov.argmax())
            if ov[j] >= 0.5:
                used[j] = True
                tp += 1
                correct_cls += int(cls[i, k].argmax() == objs[j].shape)
                if "_confusion" in result:
                    result["_confusion"][objs[j].shape, int(cls[i, k].argmax())] += 1
                correct_col += int(col[i, k].argmax() == objs[j].color)
                correct_siz += int(siz[i, k].argmax() == objs[j].size)
            else:
                fp += 1
        fn += int((~used).sum())
    result.update({"tp": tp, "fp": fp, "fn": fn, "class_acc": round(correct_cls / max(tp, 1), 4),
                   "color_acc": round(correct_col / max(tp, 1), 4), "size_acc": round(correct_siz / max(tp, 1), 4)})
    # Counting from detections: "how many {shape}s" (a shape of the scene 60%, any 40%), "how many {color}
    # objects" (likewise), "how many objects"; a detection counts when its argmax label matches.
    rng = random.Random(rng_seed)
    right = {"shape": 0, "color": 0, "all": 0}
    for i, (_, objs) in enumerate(scenes):
        ks = np.nonzero(kept[i])[0]
        shape = rng.randrange(5) if rng.random() < 0.4 else rng.choice(objs).shape
        color = rng.randrange(6) if rng.random() < 0.4 else rng.choice(objs).color
        right["shape"] += int(sum(cls[i, k].argmax() == shape for k in ks) == sum(o.shape == shape for o in objs))
        right["color"] += int(sum(col[i, k].argmax() == color for k in ks) == sum(o.color == color for o in objs))
        right["all"] += int(len(ks) == len(objs))
    result["count_acc"] = round(sum(right.values()) / (3 * n), 4)
    if not quick:
        result["count_acc_by_type"] = {k: round(v / n, 4) for k, v in right.items()}
    # Text -> region R@1 over all regions (detections above threshold) of the eval images.
    region_img, region_box, region_emb = [], [], []
    for i in range(n):
        for k in np.nonzero(kept[i])[0]:
            region_img.append(i)
            region_box.append(boxes[i, k])
            region_emb.append(emb[i, k])
    region_img = np.array(region_img)
    region_box = np.array(region_box).reshape(-1, 4)
    embeddings = {"pooled": np.array(region_emb).reshape(len(region_img), emb.shape[-1])}
    if crop_embeds is not None:
        embeddings["crop"] = np.array(crop_embeds)
    kind_index = {k: j for j, k in enumerate(kinds)}
    queries = []  # (kind, kind name)
    for i, (_, objs) in enumerate(scenes):
        o = rng.choice(objs)
        queries.append(((o.size, o.color, o.shape), "full"))
        if not quick:
            queries.append(((-1, o.color, o.shape), "color_shape"))
            queries.append(((-1, -1, o.shape), "shape"))
    # For each region: the ground-truth object it covers (IoU >= 0.5), if any.
    region_obj = []
    for r in range(len(region_img)):
        objs = scenes[region_img[r]][1]
        ov = iou(region_box[r][None], gt_boxes[region_img[r]])[0]
        j = int(ov.argmax())
        region_obj.append(objs[j] if ov[j] >= 0.5 else None)
    text = F.normalize(bare_bank, dim=-1).numpy()
    for name, e in embeddings.items():
        e = e.reshape(len(region_img), -1 if len(region_img) else bare_bank.shape[-1])
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        sims = text @ e.T  # [kinds, regions]
        top = sims.argmax(1) if len(region_img) else np.zeros(len(text), dtype=int)
        hits: dict[str, list[int]] = {}
        for kind, label in queries:
            o = region_obj[top[kind_index[kind]]] if len(region_img) else None
            s, c, h = kind
            ok = o is not None and (s < 0 or o.size == s) and (c < 0 or o.color == c) and (h < 0 or o.shape == h)
            hits.setdefault(label, []).append(int(ok))
        key = "r1" if name == "pooled" else f"r1_{name}"
        result[key] = round(float(np.mean(hits["full"])), 4)
        if not quick:
            result[f"{key}_by_query"] = {k: round(float(np.mean(v)), 4) for k, v in hits.items()}
    result["regions"] = int(len(region_img))
    if "_confusion" in result:
        confusion = result.pop("_confusion")
        result["class_confusion"] = {sw.SHAPES[a]: {sw.SHAPES[b]: int(confusion[a, b]) for b in range(5) if confusion[a, b]} for a in range(5)}
    return result


@torch.no_grad()
def crop_embeddings(model: LoupePack, images: torch.Tensor, tokens: torch.Tensor, head: DetectionHead, threshold: float) -> list[np.ndarray]:
    """image_embeds of each detection's crop (box enlarged by 20 %, resized to the tower's input)."""
    size = model.cfg.vision.image_size
    scores, boxes, *_ = run_head(head, tokens)
    crops = []
    for i in range(len(images)):
        img = images[i].float() / 255
        h, w = img.shape[-2:]
        for k in np.nonzero(scores[i] >= threshold)[0]:
            x0, y0, x1, y1 = boxes[i, k]
            cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.6, (y1 - y0) * 0.6
            a0, b0 = max(0, int(math.floor((cx - hw) * w))), max(0, int(math.floor((cy - hh) * h)))
            a1, b1 = min(w, int(math.ceil((cx + hw) * w))), min(h, int(math.ceil((cy + hh) * h)))
            crop = img[:, b0 : max(b1, b0 + 1), a0 : max(a1, a0 + 1)]
            crops.append(F.interpolate(crop[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)[0])
    out = []
    for i in range(0, len(crops), 64):
        emb, _ = model.vision(normalize(torch.stack(crops[i : i + 64])))
        out.append(emb.numpy())
    return list(np.concatenate(out)) if out else []


def load_head(path: Path) -> tuple[DetectionHead, dict]:
    state = torch.load(path, weights_only=False)
    cfg = state["head_config"]
    head = DetectionHead(cfg["width"], cfg["grid"], dim=cfg["dim"], blocks=cfg["blocks"], attention=cfg["attention"],
                         embed_dim=cfg["embed_dim"], max_detections=cfg["max_detections"], roi=cfg.get("roi", 0), roi_dim=cfg.get("roi_dim", 48))
    head.load_state_dict(state["head"])
    head.eval()
    return head, state


def evaluate(args) -> None:
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    model = load_pack(Path(args.checkpoint))
    head, state = load_head(run / "checkpoint.pt")
    kinds, bank = text_bank(model, args.tokenizer)
    started = time.time()
    scenes = scenes_from(EVAL_SEED, args.scenes)
    cache = HERE / "runs" / f"eval-{EVAL_SEED}-{args.scenes}.pt"
    if cache.exists():
        tokens, images = torch.load(cache, weights_only=False)
    else:
        tokens, images = tower_tokens(model, scenes, augment=False, seed=EVAL_SEED, keep_images=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save((tokens, images), cache)
    crops = crop_embeddings(model, images, tokens, head, SCORE_THRESHOLD) if args.crops else None
    result = evaluate_head(head, tokens, scenes, kinds, bank[:, 0], quick=False, crop_embeds=crops)
    result = {"scenes": args.scenes, "seed": EVAL_SEED, "rendering": "256 px, JPEG-like quality 85, noise 4, bicubic to 128",
              "threshold": SCORE_THRESHOLD, "step": state["step"], **result, "seconds": round(time.time() - started)}
    (run / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


# ---------------------------------------------------------------- export


def detection_block(training: dict | None) -> dict:
    block = {
        "classes": list(sw.SHAPES),
        "attributes": {"color": list(sw.COLORS), "size": list(sw.SIZES)},
        "input": "last_hidden_state",
        "outputs": {"scores": "scores", "boxes": "boxes", "classes": "class_probs",
                    "attributes": {"color": "color_probs", "size": "size_probs"}, "embeddings": "region_embeds"},
        "max_detections": MAX_DETECTIONS,
        "score_threshold": SCORE_THRESHOLD,
    }
    if training is not None:
        block["training"] = training
    return block


def write_config(pack: Path, block: dict) -> None:
    path = pack / "config.json"
    config = json.loads(path.read_text())
    loupe = config["loupe"]
    ordered = {}
    for k, v in loupe.items():
        if k == "detection":
            continue
        if k == "training":
            ordered["detection"] = block
        ordered[k] = v
    if "detection" not in ordered:
        ordered["detection"] = block
    config["loupe"] = ordered
    path.write_text(json.dumps(config, indent=2) + "\n")


def export_onnx(head: DetectionHead, path: Path, width: int, tokens: int) -> None:
    head.eval()
    head.set_exportable(True)
    dummy = torch.randn(2, tokens, width)
    torch.onnx.export(head, (dummy,), str(path), input_names=["last_hidden_state"], output_names=OUTPUT_NAMES,
                      dynamic_axes={"last_hidden_state": {0: "batch"}, **{o: {0: "batch"} for o in OUTPUT_NAMES}},
                      opset_version=OPSET, dynamo=False, do_constant_folding=True)
    head.set_exportable(False)
    import onnx

    # The exporter names the label axes symbolically; they are fixed by the config's label lists.
    model = onnx.load(str(path))
    fixed = {"scores": [head.k], "boxes": [head.k, 4], "class_probs": [head.k, head.sizes[0]], "color_probs": [head.k, head.sizes[1]],
             "size_probs": [head.k, head.sizes[2]], "region_embeds": [head.k, head.embed[2].out_features]}
    for output in model.graph.output:
        for dim, value in zip(output.type.tensor_type.shape.dim[1:], fixed[output.name]):
            dim.ClearField("dim_param")
            dim.dim_value = value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def check_parity(head: DetectionHead, path: Path, token_sets: list[torch.Tensor]) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for tokens in token_sets:
            ref = head(tokens)
            got = session.run(OUTPUT_NAMES, {"last_hidden_state": tokens.numpy()})
            # Slots whose score ties a neighbour's (within 1e-5) may come in either order; their sorted scores
            # are compared, their boxes and probabilities not.
            s = ref[0].numpy()
            gap = np.full(s.shape, np.inf)
            gap[:, 1:] = np.minimum(gap[:, 1:], np.abs(np.diff(s, axis=1)))
            gap[:, :-1] = np.minimum(gap[:, :-1], np.abs(np.diff(s, axis=1)))
            clear = gap > 1e-5
            for name, r, g in zip(OUTPUT_NAMES, ref, got):
                if name == "scores":
                    worst = max(worst, float(np.abs(r.numpy() - g).max()))
                elif name != "region_embeds":
                    worst = max(worst, float(np.abs(r.numpy() - g)[clear].max()))
    return worst


def pil_tokens(model: LoupePack, png: Path) -> torch.Tensor:
    from export import pil_pixel_values

    pixel_values = torch.from_numpy(pil_pixel_values(png, model.cfg.vision.image_size))
    with torch.no_grad():
        return model.vision(pixel_values)[1]


def parity_fixture(head: DetectionHead, model: LoupePack, pack: Path) -> dict:
    parity = json.loads((pack / "fixtures" / "parity.json").read_text())
    records = []
    with torch.no_grad():
        for rec in parity["images"]:
            tokens = pil_tokens(model, pack / "fixtures" / rec["file"])
            scores, boxes, cls, col, siz, emb = [x[0] for x in head(tokens)]
            dets = []
            for k in range(len(scores)):
                if scores[k] < SCORE_THRESHOLD:
                    continue
                e = F.normalize(emb[k], dim=-1)
                dets.append({
                    "score": float(scores[k]),
                    "box": {n: float(v) for n, v in zip(("x0", "y0", "x1", "y1"), boxes[k])},
                    "label": sw.SHAPES[int(cls[k].argmax())], "labelScore": float(cls[k].max()),
                    "attributes": {"color": {"value": sw.COLORS[int(col[k].argmax())], "score": float(col[k].max())},
                                   "size": {"value": sw.SIZES[int(siz[k].argmax())], "score": float(siz[k].max())}},
                    "embedding_head": [float(v) for v in e[:8]],
                })
            records.append({"file": rec["file"], "width": 128, "height": 128, "scene": rec["scene"],
                            "top_scores": [float(s) for s in scores[:4]], "detections": dets})
    return {"model": "onnx/detection_model.onnx", "threshold": SCORE_THRESHOLD,
            "note": "PyTorch reference: the image processor, the vision tower, then the head; boxes are normalized to the image (these fixtures are square, so the crop is the whole image)",
            "images": records}


def write_manifest(pack: Path) -> None:
    from export import write_manifest as write

    write(pack, json.loads((pack / "manifest.json").read_text())["model_id"])


def export(args) -> None:
    torch.set_num_threads(args.threads)
    pack = Path(args.pack)
    model = load_pack(Path(args.checkpoint))
    width = model.cfg.vision.hidden_size
    grid = model.cfg.vision.image_size // model.cfg.vision.patch_size
    if args.untrained:
        torch.manual_seed(0)
        head = DetectionHead(width, grid, embed_dim=model.cfg.projection_dim)
        head.eval()
        training = {"steps": 0, "seconds": 0, "note": "untrained"}
    else:
        head, state = load_head(Path(args.run) / "checkpoint.pt")
        eval_path = Path(args.run) / "eval.json"
        # The runs this head went through, first to last (a run started with --init continues another's head).
        phases, current = [], state
        while not state.get("joint"):
            run_args = current["args"]
            phases.insert(0, {"steps": current["step"], "seconds": round(current["seconds"]),
                              "pool_scenes": run_args["pool"] + sum(len(torch.load(Path(HERE / p), weights_only=False)["scenes"]) for p in run_args.get("extra_pool") or []),
                              "args": {k: v for k, v in run_args.items() if k not in ("command", "run", "checkpoint", "tokenizer", "fresh", "log_every", "eval_every", "init", "extra_pool")}})
            if not run_args.get("init"):
                break
            current = torch.load(HERE / run_args["init"], weights_only=False)
        if state.get("joint"):
            # Trained with the towers by train.py (--detection-weight), after the phases it started from.
            phases = [*state.get("prior_phases", []), {"steps": state["step"], "seconds": round(state["seconds"]), "joint": True, "args": state["args"]}]
        training = {"steps": sum(p["steps"] for p in phases), "seconds": sum(p["seconds"] for p in phases), "head": state["head_config"], "phases": phases}
        if eval_path.exists():
            figures = json.loads(eval_path.read_text())
            keep = ("scenes", "rendering", "threshold", "ap50", "ap50_95", "per_class_ap50", "class_acc", "color_acc", "size_acc", "count_acc", "r1", "r1_crop")
            training["eval"] = {k: figures[k] for k in keep if k in figures}
    path = pack / "onnx" / "detection_model.onnx"
    export_onnx(head, path, width, grid * grid + 1)
    token_sets = [pil_tokens(model, pack / "fixtures" / f"image-{i}.png") for i in range(4)]
    token_sets.append(tower_tokens(model, scenes_from(EVAL_SEED + 7, 8), augment=False, seed=5)[0].float())
    worst = check_parity(head, path, token_sets)
    print(f"onnxruntime vs PyTorch: max abs diff {worst:.2e} on scores, boxes and probabilities")
    if worst >= 1e-4:
        raise SystemExit("the ONNX detection head does not match the PyTorch reference")
    training["parity_max_abs_diff"] = float(f"{worst:.2e}")
    write_config(pack, detection_block(training))
    if not args.untrained:
        (pack / "fixtures" / "detection-parity.json").write_text(json.dumps(parity_fixture(head, model, pack), indent=1) + "\n")
    write_manifest(pack)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), config.json loupe.detection, manifest.json")


# ---------------------------------------------------------------- entry


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    common.add_argument("--tokenizer", default=str(DEFAULT_PACK / "tokenizer.json"))
    common.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("train", parents=[common])
    p.add_argument("--run", required=True)
    p.add_argument("--minutes", type=float, default=35)
    p.add_argument("--pool", type=int, default=3000)
    p.add_argument("--jpeg-share", type=float, default=0.25)
    p.add_argument("--dev", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--attention", type=int, default=1)
    p.add_argument("--embed-weight", type=float, default=0.5)
    p.add_argument("--roi", type=int, default=0, help="window (cells) of tower tokens the region branch reads; 0: none")
    p.add_argument("--roi-dim", type=int, default=48)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--init", help="a head checkpoint to start from (weights that fit)")
    p.add_argument("--extra-pool", action="append", help="another run's pool.pt (another seed) to train on as well")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on the head's input features")
    p = sub.add_parser("evaluate", parents=[common])
    p.add_argument("--run", required=True)
    p.add_argument("--scenes", type=int, default=1000)
    p.add_argument("--crops", action="store_true", help="also measure crop embeddings through the vision tower")
    p = sub.add_parser("export", parents=[common])
    p.add_argument("--run")
    p.add_argument("--pack", default=str(DEFAULT_PACK))
    p.add_argument("--untrained", action="store_true")
    args = parser.parse_args()
    {"train": train, "evaluate": evaluate, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
