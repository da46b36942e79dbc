"""Trains the pack's byte-level BPE tokenizer on Shapes World texts and writes tokenizer.json.

Byte-level BPE means no word is ever out of vocabulary; the normalizer lowercases like CLIP's.
"""

from __future__ import annotations

import argparse
import random

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import shapes_world as sw

SPECIAL = ["<|startoftext|>", "<|endoftext|>"]


def corpus(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        _, objs = sw.sample_scene(rng)
        yield sw.describe_scene(rng, objs)[0]
        yield sw.partial_query(rng, objs)[0]
        yield sw.question(rng, objs)[0]
    for _ in range(n // 10):
        _, frames, actor, action = sw.sample_clip(rng)
        yield sw.describe_clip(rng, frames[0][actor], action)[0]


def build(vocab_size: int, seed: int, n: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed, n), trainer=trainer)
    bos, eos = tok.token_to_id(SPECIAL[0]), tok.token_to_id(SPECIAL[1])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL[0]} $A {SPECIAL[1]}", special_tokens=[(SPECIAL[0], bos), (SPECIAL[1], eos)]
    )
    return tok


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--vocab-size", type=int, default=640)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--texts", type=int, default=20000)
    args = parser.parse_args()
    tokenizer = build(args.vocab_size, args.seed, args.texts)
    tokenizer.save(args.out)
    print(f"wrote {args.out}: {tokenizer.get_vocab_size()} tokens")
