"""Trains Loupe's shapes-world-tiny pack: contrastive retrieval, VQA and video retrieval, jointly.

One vision tower serves all three objectives (Florence's multi-task idea): the VQA head needs
shape and position in the tokens, the video head needs position and size in the embeddings, and
retrieval must bind attributes to objects and understand counts (hard negatives from swapped
bindings, changed attributes and changed counts).

The schedule is time-based (--minutes), so a run ends on time on any hardware; a checkpoint is
written every --checkpoint-every seconds and at the end.

    python train.py --out runs/main --minutes 7 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import shapes_world as sw
from data import Batches, load_tokenizer, objects_from, scene_batch, clip_batch
from model import LoupePack, PackConfig, float_weights, grid_tokens
from render import render_augmented

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images - MEAN.to(images.device)) / STD.to(images.device)


def full_relevance(text_hist: torch.Tensor, text_sized: torch.Tensor, image_hist: torch.Tensor) -> torch.Tensor:
    """[T, I] bool: the full description states exactly the image's objects (sizes optional)."""
    sized = (text_hist[:, None, :] == image_hist[None, :, :]).all(-1)
    t30 = text_hist.view(-1, 2, 30).sum(1)
    i30 = image_hist.view(-1, 2, 30).sum(1)
    unsized = (t30[:, None, :] == i30[None, :, :]).all(-1)
    return torch.where(text_sized[:, None], sized, unsized)


def partial_relevance(size_m, color_m, shape_m, count, image_hist) -> torch.Tensor:
    h = image_hist.view(-1, 2, 6, 5).float()
    n = torch.einsum("isch,ts,tc,th->ti", h, size_m, color_m, shape_m)
    return torch.where(count[:, None] == 0, n >= 1, n == count[:, None].float())


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor, valid_cols: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows with a positive of -log(sum of softmax mass on the positives)."""
    if valid_cols is not None:
        logits = logits.masked_fill(~valid_cols[None, :], -1e4)
        positives = positives & valid_cols[None, :]
    rows = positives.any(1)
    if not rows.any():
        return logits.sum() * 0
    pos = torch.logsumexp(logits.masked_fill(~positives, -1e4), 1)
    return (torch.logsumexp(logits, 1) - pos)[rows].mean()


def video_relevance(texts: dict[str, torch.Tensor], clips: dict[str, torch.Tensor]) -> torch.Tensor:
    """[T, C] bool: clip c's acting object and action match text t (size word optional).

    texts: color, shape, action, sizeword (-1 when the text names no size); clips: color, shape, action, size."""
    same = (
        (texts["color"][:, None] == clips["color"][None, :])
        & (texts["shape"][:, None] == clips["shape"][None, :])
        & (texts["action"][:, None] == clips["action"][None, :])
    )
    size_ok = (texts["sizeword"][:, None] < 0) | (texts["sizeword"][:, None] == clips["size"][None, :])
    return same & size_ok


def _fields(batch: dict[str, torch.Tensor], prefix: str, device: torch.device) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v.to(device) for k, v in batch.items() if k.startswith(prefix)}


def frame_features_of(model: LoupePack, image_embeds: torch.Tensor, image_tokens: torch.Tensor, clips: int) -> torch.Tensor:
    """What the video head reads of `clips` clips' frames (in order): per-frame image embeddings, or grids
    of tower tokens for a token-grid head."""
    grid = model.cfg.video.token_grid
    features = grid_tokens(image_tokens, grid) if grid else image_embeds
    return features.view(clips, -1, *features.shape[1:])


class Extras:
    """Optional objectives of a continued run: the detection head trained jointly with the tower, a keep-meaning
    loss that holds video embeddings to a frozen copy of the starting model, and extra weight on partial queries."""

    def __init__(self, head=None, kinds=None, bank=None, rng=None, teacher=None, partial_weight: float = 0.0):
        self.head, self.kinds, self.bank, self.rng = head, kinds, bank, rng
        self.teacher, self.partial_weight = teacher, partial_weight


DETECTION_WEIGHTS = {"heat": 1.0, "offset": 1.0, "radius": 0.5, "class": 1.0, "color": 1.0, "size": 1.0, "embed": 0.5}


def losses(model: LoupePack, batch: dict[str, torch.Tensor], device: torch.device, image_size: int, augment: bool = True, max_render: int = 384,
           extras: Extras | None = None):
    objects = objects_from(batch, "obj_", device)
    images = render_augmented(objects, image_size, augment=augment, max_render=max_render)
    pixel_values = normalize(images)
    b = pixel_values.shape[0]
    video = "v_ids" in batch
    if video:
        frames = render_augmented(objects_from(batch, "vobj_", device), image_size, augment=augment, max_render=max_render)
        pixel_values = torch.cat([pixel_values, normalize(frames)], 0)

    # Every text of the step goes through the text tower in one batch; spans name each group's rows.
    groups = ["desc", "neg", "part", "q"] + (["q2"] if "q2_ids" in batch else []) + (["v"] if video else []) + (["vn"] if "vn_ids" in batch else [])
    spans: dict[str, slice] = {}
    start = 0
    for g in groups:
        spans[g] = slice(start, start + batch[f"{g}_ids"].shape[0])
        start = spans[g].stop
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        image_embeds, image_tokens = model.vision(pixel_values)
        text_ids = torch.cat([batch[f"{g}_ids"] for g in groups], 0).to(device)
        text_mask = torch.cat([batch[f"{g}_mask"] for g in groups], 0).to(device)
        text_embeds, text_tokens = model.text(text_ids, text_mask)
        q_groups = ["q"] + (["q2"] if "q2" in spans else [])
        q_tokens = torch.cat([text_tokens[spans[g]] for g in q_groups], 0)
        q_mask = torch.cat([batch[f"{g}_mask"] for g in q_groups], 0).to(device)
        q_images = image_tokens[:b].repeat(len(q_groups), 1, 1)
        logits_vqa = model.meter(q_images, q_tokens, q_mask)
        video_embeds = None
        if video:
            c = batch["v_ids"].shape[0]
            video_embeds = model.video(frame_features_of(model, image_embeds[b:], image_tokens[b:], c))

    scale = model.logit_scale.exp().clamp(max=100)
    img = F.normalize(image_embeds[:b].float(), dim=-1)
    txt = F.normalize(text_embeds[: spans["part"].stop].float(), dim=-1)
    hist = batch["hist"].to(device)
    rel = torch.cat(
        [
            full_relevance(batch["desc_hist"].to(device), batch["desc_sized"].to(device), hist),
            full_relevance(batch["neg_hist"].to(device), batch["neg_sized"].to(device), hist),
            partial_relevance(
                batch["part_size"].to(device),
                batch["part_color"].to(device),
                batch["part_shape"].to(device),
                batch["part_count"].to(device),
                hist,
            ),
        ],
        0,
    )  # [3B, B]
    valid_texts = torch.cat([torch.ones(b, dtype=torch.bool), batch["neg_valid"], torch.ones(b, dtype=torch.bool)]).to(device)
    logits = scale * img @ txt.T  # [B, 3B]
    loss_i2t = multi_positive_nce(logits, rel.T, valid_texts)
    loss_t2i = multi_positive_nce(logits.T[valid_texts], rel[valid_texts])
    loss_clip = 0.5 * (loss_i2t + loss_t2i)
    answers = torch.cat([batch[f"{g}_answer"] for g in q_groups], 0).to(device)
    loss_vqa = F.cross_entropy(logits_vqa.float(), answers, label_smoothing=0.05)
    out = {"clip": loss_clip, "vqa": loss_vqa}
    if extras is not None and extras.partial_weight:
        # Partial queries ranking the batch's images (t2i) and images their partial queries (i2t), alone.
        part = slice(2 * b, 3 * b)
        out["partial"] = 0.5 * (multi_positive_nce(logits[:, part].T, rel[part]) + multi_positive_nce(logits[:, part], rel[part].T))
    if extras is not None and extras.head is not None:
        import detection

        grid = model.cfg.vision.image_size // model.cfg.vision.patch_size
        t = detection.targets_from_objects(objects, grid)
        det = detection.head_losses(extras.head, image_tokens[:b].float(), t, extras.kinds, extras.bank, extras.rng, DETECTION_WEIGHTS)
        out["detect"] = det["total"]
        out["detect_class"] = det["class"].detach()
    if video_embeds is not None and extras is not None and extras.teacher is not None:
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            c = batch["v_ids"].shape[0]
            t_embeds, t_tokens = extras.teacher.vision(pixel_values[b:])
            teacher_video = extras.teacher.video(frame_features_of(extras.teacher, t_embeds, t_tokens, c))
        out["keep_video"] = (1 - F.cosine_similarity(video_embeds.float(), teacher_video.float(), dim=-1)).mean()
    if video_embeds is not None:
        clips = _fields(batch, "v_", device)
        v = F.normalize(video_embeds.float(), dim=-1)
        vt = F.normalize(text_embeds[spans["v"]].float(), dim=-1)
        vrel = video_relevance(clips, clips)
        vlogits = scale * v @ vt.T  # [C, T]
        loss_c2t = multi_positive_nce(vlogits, vrel.T)
        if "vn" in spans:
            # Descriptions false of their own clip (the opposite action, most often) are extra texts a
            # clip must rank below its own; they may still be true of another clip in the batch.
            vn = F.normalize(text_embeds[spans["vn"]].float(), dim=-1)
            nrel = video_relevance(_fields(batch, "vn_", device), clips)
            loss_c2t = multi_positive_nce(scale * v @ torch.cat([vt, vn]).T, torch.cat([vrel, nrel]).T)
        out["video"] = 0.5 * (loss_c2t + multi_positive_nce(vlogits.T, vrel))
    return out


@torch.no_grad()
def evaluate(model: LoupePack, tokenizer_path: str, device: torch.device, image_size: int, n: int = 500, clips: int = 200, render_size: int = 256) -> dict:
    """Quick held-out figures on the training renderer (seed never used for training batches)."""
    model.eval()
    rng = random.Random(424242)
    tok = load_tokenizer(tokenizer_path)
    batch = scene_batch(rng, tok, n)
    objects = objects_from(batch, "obj_", device)
    images = render_augmented(objects, image_size, augment=False, render_size=render_size, codec="jpeg", quality=85, noise=4)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        image_embeds, image_tokens = model.vision(normalize(images))
        d_emb, _ = model.text(batch["desc_ids"].to(device), batch["desc_mask"].to(device))
        p_emb, _ = model.text(batch["part_ids"].to(device), batch["part_mask"].to(device))
        _, q_tok = model.text(batch["q_ids"].to(device), batch["q_mask"].to(device))
        vqa = model.meter(image_tokens, q_tok, batch["q_mask"].to(device)).argmax(-1)
    img = F.normalize(image_embeds.float(), dim=-1)
    hist = batch["hist"].to(device)
    rel = full_relevance(batch["desc_hist"].to(device), batch["desc_sized"].to(device), hist)
    order = (F.normalize(d_emb.float(), dim=-1) @ img.T).argsort(1, descending=True)
    hits = torch.gather(rel, 1, order[:, :10])
    prel = partial_relevance(
        batch["part_size"].to(device), batch["part_color"].to(device), batch["part_shape"].to(device), batch["part_count"].to(device), hist
    )
    porder = (F.normalize(p_emb.float(), dim=-1) @ img.T).argsort(1, descending=True)
    p_at_10 = torch.gather(prel, 1, porder[:, :10]).float().mean(1)
    has = prel.sum(1) >= 10
    correct = (vqa.cpu() == batch["q_answer"]).float()
    out = {
        "r@1": hits[:, 0].float().mean().item(),
        "r@10": hits.any(1).float().mean().item(),
        "partial_p@10": p_at_10[has].mean().item() if has.any() else float("nan"),
        "vqa": correct.mean().item(),
    }
    for t, name in enumerate(sw.QUESTION_TYPES):
        m = batch["q_type"] == t
        out[f"vqa_{name}"] = correct[m].mean().item() if m.any() else float("nan")
    if clips:
        vb = clip_batch(rng, tok, clips)
        frames = render_augmented(objects_from(vb, "vobj_", device), image_size, augment=False, render_size=128, codec="jpeg", quality=85, noise=4)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            fe, ft = model.vision(normalize(frames))
            ve = model.video(frame_features_of(model, fe, ft, clips))
            te, _ = model.text(vb["v_ids"].to(device), vb["v_mask"].to(device))
        clips_truth = _fields(vb, "v_", device)
        vrel = video_relevance(clips_truth, clips_truth)
        top = (F.normalize(te.float(), dim=-1) @ F.normalize(ve.float(), dim=-1).T).argmax(1)
        out["video_r@1"] = vrel[torch.arange(clips, device=device), top].float().mean().item()
    model.train()
    return out


@torch.no_grad()
def detection_dev(model: LoupePack, head, extras: Extras, device: torch.device, n: int = 500) -> dict:
    """The detection head's quick figures on detection.py's dev scenes (256 px JPEG-like renders)."""
    import detection

    model.eval()
    head.eval()
    scenes = detection.scenes_from(detection.DEV_SEED, n)
    images = detection.render_scenes(scenes, 256, False, 256, detection.DEV_SEED).to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        _, tokens = model.vision(detection.to_tower(images, model.cfg.vision.image_size))
    figures = detection.evaluate_head(head.cpu(), tokens.float().cpu(), scenes, [tuple(k) for k in extras.kinds.cpu().tolist()], extras.bank[:, 0].cpu(), quick=True)
    head.to(device).train()
    model.train()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", default=str(Path(__file__).resolve().parents[1] / "shapes-world-tiny" / "tokenizer.json"))
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpoint-every", type=float, default=60)
    parser.add_argument("--eval-every", type=float, default=60)
    parser.add_argument("--max-render", type=int, default=384, help="largest source resolution drawn before resizing")
    parser.add_argument("--init", default=None, help="start from this checkpoint's weights")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--small", action="store_true", help="a tiny configuration for smoke tests")
    parser.add_argument(
        "--extra-questions",
        default="shape=5,position=2,color=2,count=2,exist=1",
        help="a second VQA question per scene, its type drawn with these weights ('' for none)",
    )
    parser.add_argument(
        "--video-token-grid",
        type=int,
        default=4,
        help="from scratch: the video head reads per-frame tower tokens pooled over this grid (0: image_embeds)",
    )
    parser.add_argument("--video-weight", type=float, default=1.0, help="weight of the video contrastive loss")
    parser.add_argument(
        "--clip-negatives",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a false description per clip (the opposite action most often) as an extra video text",
    )
    parser.add_argument("--detection-weight", type=float, default=0.0, help="train the detection head jointly with this loss weight (0: off)")
    parser.add_argument(
        "--detection-init",
        default=str(Path(__file__).resolve().parents[1] / "shapes-world-tiny" / "onnx" / "detection_model.onnx"),
        help="the detection head to start from: an exported detection_model.onnx or a head checkpoint ('' for a fresh head)",
    )
    parser.add_argument("--detection-lr-scale", type=float, default=3.0, help="the detection head's learning rate as a multiple of --lr")
    parser.add_argument("--freeze", default="", help="parts that keep their weights: any of text, video, meter (comma-separated)")
    parser.add_argument("--keep-video", type=float, default=0.0, help="weight of 1 - cosine between video embeddings and the starting model's")
    parser.add_argument("--partial-weight", type=float, default=0.0, help="weight of an extra contrastive loss over partial queries alone")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    random.seed(args.seed)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(args.tokenizer)
    init = torch.load(args.init, map_location="cpu", weights_only=False) if args.init else None
    if init is not None:
        # A checkpoint keeps its own architecture (its video head may read token grids or embeddings).
        cfg = PackConfig.from_dict(init["config"])
    else:
        cfg = PackConfig()
        cfg.video.token_grid = args.video_token_grid
        if args.small:
            cfg.vision.num_hidden_layers, cfg.text.num_hidden_layers, cfg.meter.num_layers, cfg.video.num_layers = 1, 1, 1, 1
    cfg.text.vocab_size = tok.get_vocab_size()
    model = LoupePack(cfg)
    model.meter.init_image_pos()
    phases: list[dict] = []  # the training history this run continues, kept in every checkpoint
    if init is not None:
        phases = list(init.get("phases", []))
        missing, unexpected = model.load_state_dict(
            float_weights(init["model"]), strict=False
        )
        if unexpected or any(not k.endswith("image_pos") for k in missing):
            raise SystemExit(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    model = model.to(device)
    teacher = None
    if args.keep_video:
        teacher = LoupePack(cfg).to(device)
        teacher.load_state_dict(model.state_dict())
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    frozen = {part for part in args.freeze.split(",") if part}
    if frozen - {"text", "video", "meter"}:
        raise SystemExit(f"--freeze: unknown parts {sorted(frozen - {'text', 'video', 'meter'})}; use text, video, meter")
    for part in frozen:
        for p in getattr(model, part).parameters():
            p.requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2 and "pos" not in n]
    no_decay = [p for n, p in trainable if not (p.dim() >= 2 and "pos" not in n)]
    groups = [{"params": decay, "weight_decay": 0.05, "scale": 1.0}, {"params": no_decay, "weight_decay": 0.0, "scale": 1.0}]
    extras = None
    head = None
    prior_phases = []
    if args.detection_weight or args.keep_video or args.partial_weight:
        extras = Extras(teacher=teacher, partial_weight=args.partial_weight, rng=random.Random(args.seed + 17))
    if args.detection_weight:
        import detection

        grid = cfg.vision.image_size // cfg.vision.patch_size
        head = detection.DetectionHead(cfg.vision.hidden_size, grid, embed_dim=cfg.projection_dim, dropout=0.1)
        if args.detection_init.endswith(".onnx"):
            loaded = detection.head_from_onnx(head, Path(args.detection_init))
            pack_config = Path(args.detection_init).parents[1] / "config.json"
            if pack_config.exists():
                prior = json.loads(pack_config.read_text())["loupe"].get("detection", {}).get("training", {})
                prior_phases = list(prior.get("phases", []))
        elif args.detection_init:
            own = head.state_dict()
            state = torch.load(args.detection_init, map_location="cpu", weights_only=False)["head"]
            fit = {k: v.float() for k, v in state.items() if k in own and own[k].shape == v.shape}
            head.load_state_dict(fit, strict=False)
            loaded = len(fit)
            prior_phases = list(torch.load(args.detection_init, map_location="cpu", weights_only=False).get("prior_phases", []))
        else:
            loaded = 0
        print(f"detection head: {loaded} of {len(head.state_dict())} tensors from {args.detection_init or 'nothing'}", flush=True)
        head = head.to(device)
        head.train()
        model.eval()  # the bank is embedded without dropout
        with torch.no_grad():
            kinds_list, bank = detection.text_bank(model.cpu(), args.tokenizer)
        model.to(device).train()
        extras.head, extras.kinds, extras.bank = head, torch.tensor(kinds_list, device=device), bank.to(device)
        groups.append({"params": list(head.parameters()), "weight_decay": 0.01, "scale": args.detection_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98))
    extra_weights = None
    if args.extra_questions:
        given = dict(item.split("=") for item in args.extra_questions.split(","))
        unknown = set(given) - set(sw.QUESTION_TYPES)
        if unknown:
            raise SystemExit(f"--extra-questions: unknown question types {sorted(unknown)}; use {sw.QUESTION_TYPES}")
        extra_weights = [float(given.get(t, 0)) for t in sw.QUESTION_TYPES]
    loader = torch.utils.data.DataLoader(
        Batches(args.tokenizer, args.seed, args.batch, args.clips, extra_weights, args.clip_negatives),
        batch_size=None,
        num_workers=args.workers,
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
        pin_memory=device.type == "cuda",
    )
    log = open(out / "log.txt", "a")

    def say(msg: str) -> None:
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    say(f"params {params / 1e6:.2f}M device {device} batch {args.batch} clips {args.clips} minutes {args.minutes}")
    total = args.minutes * 60
    start = time.time()
    last_ckpt = last_eval = start
    step = 0
    waited = 0.0  # seconds spent waiting for batches from the loader since the last log line
    fetch_start = time.time()

    def save(tag: str) -> None:
        # float16 keeps the checkpoint small; the pack stores float16 weights anyway.
        weights = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        seconds = time.time() - start
        phase = {"from": "checkpoint" if args.init else "scratch", "steps": step, "seconds": round(seconds), "args": vars(args)}
        state = {"config": cfg.to_dict(), "model": weights, "step": step, "elapsed_s": seconds, "args": vars(args), "phases": [*phases, phase]}
        torch.save(state, out / "checkpoint.pt.tmp")
        (out / "checkpoint.pt.tmp").replace(out / "checkpoint.pt")
        if head is not None:
            # In detection.py's head-checkpoint form, so that `detection.py evaluate|export --run` read it.
            head_state = {
                "head": {k: v.detach().float().cpu() for k, v in head.state_dict().items()},
                "head_config": {"width": cfg.vision.hidden_size, "grid": head.grid, "dim": 128, "blocks": 2, "attention": 1,
                                "embed_dim": cfg.projection_dim, "max_detections": head.k, "roi": 0, "roi_dim": 48},
                "joint": True, "step": step, "seconds": seconds, "prior_phases": prior_phases,
                "args": {k: v for k, v in vars(args).items() if k in ("minutes", "batch", "lr", "detection_weight", "detection_lr_scale", "freeze", "keep_video", "partial_weight", "seed", "extra_questions")},
            }
            torch.save(head_state, out / "detection-head.pt.tmp")
            (out / "detection-head.pt.tmp").replace(out / "detection-head.pt")
        say(f"checkpoint ({tag}) at step {step}")

    for batch in loader:
        waited += time.time() - fetch_start
        elapsed = time.time() - start
        if elapsed >= total:
            break
        progress = elapsed / total
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("scale", 1.0)
        parts = losses(model, batch, device, cfg.vision.image_size, max_render=args.max_render, extras=extras)
        loss = parts["clip"] + parts["vqa"] + args.video_weight * parts.get("video", 0.0)
        loss = loss + args.partial_weight * parts.get("partial", 0.0) + args.detection_weight * parts.get("detect", 0.0)
        loss = loss + args.keep_video * parts.get("keep_video", 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        if head is not None:
            torch.nn.utils.clip_grad_norm_(head.parameters(), 2.0)
        optimizer.step()
        step += 1
        if step % args.log_every == 0:
            detail = " ".join(f"{k} {v.item():.3f}" for k, v in parts.items())
            say(
                f"step {step} t {elapsed:.0f}s lr {lr:.2e} loss {loss.item():.3f} {detail} "
                f"scale {model.logit_scale.exp().item():.1f} data-wait {waited / args.log_every * 1000:.0f}ms/step"
            )
            waited = 0.0
        now = time.time()
        if now - last_eval >= args.eval_every:
            say("eval " + json.dumps({k: round(v, 4) for k, v in evaluate(model, args.tokenizer, device, cfg.vision.image_size, n=args.eval_size, clips=args.eval_size // 3, render_size=min(256, args.max_render)).items()}))
            last_eval = time.time()
        if now - last_ckpt >= args.checkpoint_every:
            save("periodic")
            last_ckpt = time.time()
        fetch_start = time.time()
    save("final")
    if head is not None:
        say("final detection dev " + json.dumps(detection_dev(model, head, extras, device)))
    say("final eval " + json.dumps({k: round(v, 4) for k, v in evaluate(model, args.tokenizer, device, cfg.vision.image_size, n=args.eval_size, clips=args.eval_size // 3, render_size=min(256, args.max_render)).items()}))
    say(f"done: {step} steps in {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
