"""Training batches: scenes, clips and their texts, sampled in DataLoader workers and tokenized there.

Scenes travel as small tensors (object parameters); images are drawn on the training device by
render.py. Every text carries a structured meaning (a histogram, or attribute masks and a count) so
that the loss can tell which images in a batch a text is true of.
"""

from __future__ import annotations

import random

import torch
from tokenizers import Tokenizer

import shapes_world as sw

MAX_LEN = 32


def load_tokenizer(path: str) -> Tokenizer:
    tok = Tokenizer.from_file(path)
    pad_id = tok.token_to_id("<|endoftext|>")
    tok.enable_truncation(MAX_LEN)
    tok.enable_padding(length=MAX_LEN, pad_id=pad_id, pad_token="<|endoftext|>")
    return tok


def encode(tok: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
    return ids, mask


def pack_objects(scenes: list[tuple[int, list[sw.Obj]]]) -> dict[str, torch.Tensor]:
    n, k = len(scenes), sw.MAX_OBJECTS
    out = {
        "shape": torch.zeros(n, k, dtype=torch.long),
        "color": torch.zeros(n, k, dtype=torch.long),
        "size": torch.zeros(n, k, dtype=torch.long),
        "x": torch.zeros(n, k),
        "y": torch.zeros(n, k),
        "r": torch.zeros(n, k),
        "rotation": torch.zeros(n, k),
        "valid": torch.zeros(n, k, dtype=torch.bool),
        "background": torch.zeros(n, dtype=torch.long),
    }
    for i, (bg, objects) in enumerate(scenes):
        out["background"][i] = bg
        for j, o in enumerate(objects):
            out["shape"][i, j] = o.shape
            out["color"][i, j] = o.color
            out["size"][i, j] = o.size
            out["x"][i, j] = o.x
            out["y"][i, j] = o.y
            out["r"][i, j] = o.r
            out["rotation"][i, j] = o.rotation
            out["valid"][i, j] = True
    return out


def scene_batch(rng: random.Random, tok: Tokenizer, n: int, extra_question_weights: list[float] | None = None) -> dict[str, torch.Tensor]:
    """n scenes with a description, a hard negative, a partial query and a question each; with
    extra_question_weights (one weight per question type) a second question per scene whose type is
    drawn with those weights, so that the types the head finds hardest can be asked more often."""
    scenes = [sw.sample_scene(rng) for _ in range(n)]
    batch: dict[str, torch.Tensor] = {f"obj_{k}": v for k, v in pack_objects(scenes).items()}
    batch["hist"] = torch.tensor([sw.histogram(objs) for _, objs in scenes], dtype=torch.long)

    descs = [sw.describe_scene(rng, objs) for _, objs in scenes]
    batch["desc_ids"], batch["desc_mask"] = encode(tok, [d[0] for d in descs])
    batch["desc_sized"] = torch.tensor([d[1] for d in descs], dtype=torch.bool)
    batch["desc_hist"] = torch.tensor([d[2] for d in descs], dtype=torch.long)

    negs = [sw.hard_negative(rng, objs) for _, objs in scenes]
    batch["neg_valid"] = torch.tensor([x is not None for x in negs], dtype=torch.bool)
    negs = [x if x is not None else descs[i] for i, x in enumerate(negs)]
    batch["neg_ids"], batch["neg_mask"] = encode(tok, [d[0] for d in negs])
    batch["neg_sized"] = torch.tensor([d[1] for d in negs], dtype=torch.bool)
    batch["neg_hist"] = torch.tensor([d[2] for d in negs], dtype=torch.long)

    parts = [sw.partial_query(rng, objs, relevant=rng.random() < 0.8) for _, objs in scenes]
    batch["part_ids"], batch["part_mask"] = encode(tok, [p[0] for p in parts])
    batch["part_size"] = torch.tensor([p[1] for p in parts], dtype=torch.float32)
    batch["part_color"] = torch.tensor([p[2] for p in parts], dtype=torch.float32)
    batch["part_shape"] = torch.tensor([p[3] for p in parts], dtype=torch.float32)
    batch["part_count"] = torch.tensor([p[4] for p in parts], dtype=torch.long)

    questions = [sw.question(rng, objs, rng.choice(sw.QUESTION_TYPES)) for _, objs in scenes]
    batch["q_ids"], batch["q_mask"] = encode(tok, [q[0] for q in questions])
    batch["q_answer"] = torch.tensor([q[1] for q in questions], dtype=torch.long)
    batch["q_type"] = torch.tensor([q[2] for q in questions], dtype=torch.long)
    if extra_question_weights:
        extra = [sw.question(rng, objs, rng.choices(sw.QUESTION_TYPES, extra_question_weights)[0]) for _, objs in scenes]
        batch["q2_ids"], batch["q2_mask"] = encode(tok, [q[0] for q in extra])
        batch["q2_answer"] = torch.tensor([q[1] for q in extra], dtype=torch.long)
    return batch


def clip_batch(rng: random.Random, tok: Tokenizer, n: int, negatives: bool = False) -> dict[str, torch.Tensor]:
    """n clips with a description each; with negatives, also a description false of each clip (the
    opposite action half the time) with its meaning, as extra texts for the video contrastive loss."""
    clips = [sw.sample_clip(rng) for _ in range(n)]
    frames = [(bg, objs) for bg, fr, _, _ in clips for objs in fr]
    batch: dict[str, torch.Tensor] = {f"vobj_{k}": v for k, v in pack_objects(frames).items()}
    descs = [sw.describe_clip(rng, fr[0][actor], action) for _, fr, actor, action in clips]
    batch["v_ids"], batch["v_mask"] = encode(tok, [d[0] for d in descs])
    batch["v_sizeword"] = torch.tensor([d[1] for d in descs], dtype=torch.long)
    batch["v_color"] = torch.tensor([fr[0][a].color for _, fr, a, _ in clips], dtype=torch.long)
    batch["v_shape"] = torch.tensor([fr[0][a].shape for _, fr, a, _ in clips], dtype=torch.long)
    batch["v_size"] = torch.tensor([fr[0][a].size for _, fr, a, _ in clips], dtype=torch.long)
    batch["v_action"] = torch.tensor([action for _, _, _, action in clips], dtype=torch.long)
    if negatives:
        negs = [sw.clip_negative(rng, fr[0][actor], action) for _, fr, actor, action in clips]
        batch["vn_ids"], batch["vn_mask"] = encode(tok, [x[0] for x in negs])
        batch["vn_sizeword"] = torch.tensor([x[1] for x in negs], dtype=torch.long)
        batch["vn_color"] = torch.tensor([x[2] for x in negs], dtype=torch.long)
        batch["vn_shape"] = torch.tensor([x[3] for x in negs], dtype=torch.long)
        batch["vn_action"] = torch.tensor([x[4] for x in negs], dtype=torch.long)
    return batch


class Batches(torch.utils.data.IterableDataset):
    def __init__(
        self,
        tokenizer_path: str,
        seed: int,
        scenes: int,
        clips: int,
        extra_question_weights: list[float] | None = None,
        clip_negatives: bool = False,
    ):
        self.tokenizer_path, self.seed, self.scenes, self.clips = tokenizer_path, seed, scenes, clips
        self.extra_question_weights, self.clip_negatives = extra_question_weights, clip_negatives

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        rng = random.Random(self.seed * 1000 + worker)
        tok = load_tokenizer(self.tokenizer_path)
        while True:
            batch = scene_batch(rng, tok, self.scenes, self.extra_question_weights)
            if self.clips:
                batch.update(clip_batch(rng, tok, self.clips, self.clip_negatives))
            yield batch


def objects_from(batch: dict[str, torch.Tensor], prefix: str, device: torch.device) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v.to(device, non_blocking=True) for k, v in batch.items() if k.startswith(prefix)}
