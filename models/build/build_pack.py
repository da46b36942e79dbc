"""Writes a CLIP pack of production size with random weights, in the Hugging Face CLIP ONNX layout Loupe reads.

It exists to measure cost and to exercise the real-size code path: with random weights its retrieval means
nothing. The architecture is OpenAI CLIP's (pre-norm transformer blocks with QuickGELU; the vision tower's
class token through a final LayerNorm and a projection; the text tower causal, pooled at the end-of-text
token, the highest id of its sequence), so its cost is that of the real model of the same arch.

The tokenizer is CLIP's byte-pair vocabulary (`bpe_simple_vocab_16e6.txt.gz`, as open_clip ships it) turned into
a `tokenizer.json` the way Hugging Face's CLIP converter does; before writing, its encodings are compared with
a direct implementation of CLIP's own tokenizer on a set of texts.

    python build_pack.py --bpe <bpe.txt.gz> --arch vit-b-32 --random [--out <dir>] [--seed 0]
    python build_pack.py --bpe <bpe.txt.gz> --tokenizer-only --out <dir>    (tokenizer.json alone)
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import math
import shutil
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ARCHES = {
    # name: (image size, patch, vision width, vision layers, vision heads, text width, text layers, text heads, dim)
    "vit-b-32": (224, 32, 768, 12, 12, 512, 12, 8, 512),
    "vit-b-16": (224, 16, 768, 12, 12, 512, 12, 8, 512),
    "vit-l-14": (224, 14, 1024, 24, 16, 768, 12, 12, 768),
}
CONTEXT = 77
VOCAB_SIZE = 49408
OPSET = 17
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHES), default="vit-b-32")
    parser.add_argument("--random", action="store_true", help="random weights (the only kind this script makes)")
    parser.add_argument("--out", help="pack directory (default .tmp/packs/clip-<arch>-random)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bpe", help="CLIP's bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--root", default=".", help="repository root (for the default --out)")
    parser.add_argument("--force", action="store_true", help="replace an existing pack directory")
    parser.add_argument("--print-out", action="store_true", help="print the pack directory and exit")
    parser.add_argument("--tokenizer-only", action="store_true", help="write tokenizer.json into --out and stop")
    args = parser.parse_args()
    if not args.print_out and not args.tokenizer_only and not args.random:
        parser.error("only random weights can be built here (pass --random); trained packs come from the hub")
    return args


def out_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else Path(args.root) / ".tmp" / "packs" / f"clip-{args.arch}-random"


# --- Tokenizer -----------------------------------------------------------------------------------------------


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_bpe(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merges exactly as CLIP's SimpleTokenizer builds them from the file."""
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [token + "</w>" for token in vocab]
    vocab += ["".join(merge) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != VOCAB_SIZE:
        raise SystemExit(f"{path} gives {len(vocab)} tokens, not CLIP's {VOCAB_SIZE}; is it the CLIP BPE file?")
    return {token: index for index, token in enumerate(vocab)}, merges  # type: ignore[return-value]


def build_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A `tokenizers` Tokenizer equal to CLIP's: Hugging Face's CLIP converter, built from the BPE file."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token="<|endoftext|>",
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.RobertaProcessing(
        ("<|endoftext|>", vocab["<|endoftext|>"]),
        ("<|startoftext|>", vocab["<|startoftext|>"]),
        trim_offsets=False,
        add_prefix_space=False,
    )
    tokenizer.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    return tokenizer


class ClipReferenceTokenizer:
    """CLIP's own tokenizer (open_clip's SimpleTokenizer without ftfy), to check the converted one against."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        import regex

        self.encoder = vocab
        self.byte_encoder = bytes_to_unicode()
        self.ranks = {merge: index for index, merge in enumerate(merges)}
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.cache: dict[str, str] = {}

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, math.inf))
            if best not in self.ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        import regex

        text = html.unescape(html.unescape(text))
        text = regex.sub(r"\s+", " ", text).strip().lower()
        ids = [self.encoder["<|startoftext|>"]]
        for token in self.pattern.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return ids + [self.encoder["<|endoftext|>"]]


CHECK_TEXTS = [
    "a photo of a cat",
    "A large RED circle to the left of two small blue squares.",
    "Error E1234: connection refused (port 8080)",
    "naïve café — résumé, 東京タワー, emoji 🙂!",
    "it's what they'd've done, isn't it?",
    "   spaces\tand\nnewlines   ",
    "ERR_HEAP_EXHAUSTED_22 0x8007000e",
    "Привет, мир. 12345 + 678 = 13023",
    "",
]


def check_tokenizer(tokenizer, reference: ClipReferenceTokenizer) -> None:
    for text in CHECK_TEXTS:
        ours = tokenizer.encode(text).ids
        theirs = reference.encode(text)
        if ours != theirs:
            raise SystemExit(f"tokenizer.json encodes {text!r} as {ours}, CLIP's tokenizer as {theirs}")


def write_tokenizer(bpe: Path, out: Path):
    """Writes tokenizer.json and tokenizer_config.json into `out` after the check; returns (tokenizer, vocab)."""
    vocab, merges = read_bpe(bpe)
    tokenizer = build_tokenizer(vocab, merges)
    check_tokenizer(tokenizer, ClipReferenceTokenizer(vocab, merges))
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    write_json(
        out / "tokenizer_config.json",
        {
            "model_max_length": CONTEXT,
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "do_lower_case": True,
            "tokenizer_class": "CLIPTokenizer",
        },
    )
    return tokenizer, vocab


# --- Model -----------------------------------------------------------------------------------------------------


@dataclass
class Arch:
    image_size: int
    patch: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    dim: int


def build_modules(arch: Arch):
    import torch
    from torch import nn

    class QuickGELU(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    class Attention(nn.Module):
        def __init__(self, width: int, heads: int):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(width, 3 * width)
            self.out = nn.Linear(width, width)

        def forward(self, x, mask=None):
            b, n, w = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(w // self.heads))
            if mask is not None:
                scores = scores + mask
            out = torch.softmax(scores, dim=-1) @ v
            return self.out(out.transpose(1, 2).reshape(b, n, w))

    class Block(nn.Module):
        def __init__(self, width: int, heads: int):
            super().__init__()
            self.ln_1 = nn.LayerNorm(width)
            self.attn = Attention(width, heads)
            self.ln_2 = nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width))

        def forward(self, x, mask=None):
            x = x + self.attn(self.ln_1(x), mask)
            return x + self.mlp(self.ln_2(x))

    class Vision(nn.Module):
        def __init__(self):
            super().__init__()
            grid = arch.image_size // arch.patch
            w = arch.vision_width
            self.conv = nn.Conv2d(3, w, arch.patch, arch.patch, bias=False)
            self.cls = nn.Parameter(torch.randn(w) * w**-0.5)
            self.pos = nn.Parameter(torch.randn(grid * grid + 1, w) * w**-0.5)
            self.ln_pre = nn.LayerNorm(w)
            self.blocks = nn.ModuleList([Block(w, arch.vision_heads) for _ in range(arch.vision_layers)])
            self.ln_post = nn.LayerNorm(w)
            self.proj = nn.Linear(w, arch.dim, bias=False)

        def forward(self, pixel_values):
            x = self.conv(pixel_values).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], 1) + self.pos
            x = self.ln_pre(x)
            for block in self.blocks:
                x = block(x)
            return self.proj(self.ln_post(x[:, 0])), x

    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            w = arch.text_width
            self.token = nn.Embedding(VOCAB_SIZE, w)
            self.pos = nn.Parameter(torch.randn(CONTEXT, w) * 0.01)
            self.blocks = nn.ModuleList([Block(w, arch.text_heads) for _ in range(arch.text_layers)])
            self.ln_final = nn.LayerNorm(w)
            self.proj = nn.Linear(w, arch.dim, bias=False)

        def forward(self, input_ids):
            n = input_ids.shape[1]
            x = self.token(input_ids) + self.pos[:n]
            causal = torch.full((n, n), float("-inf")).triu(1)
            for block in self.blocks:
                x = block(x, causal)
            x = self.ln_final(x)
            # The end-of-text token has the highest id; the first one ends the text (padding repeats it).
            eot = input_ids.argmax(dim=-1)
            pooled = x[torch.arange(x.shape[0]), eot]
            return self.proj(pooled), x

    return Vision(), Text()


def export(module, args, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad():
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


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    args = parse_args()
    out = out_dir(args)
    if args.print_out:
        print(out.resolve())
        return
    if not args.bpe:
        raise SystemExit("--bpe <bpe_simple_vocab_16e6.txt.gz> is required")
    if args.tokenizer_only:
        write_tokenizer(Path(args.bpe), out)
        return
    if out.exists():
        if not args.force and (out / "manifest.json").exists():
            print(f"{out} exists (pass --force to rebuild)", file=sys.stderr)
            return
        shutil.rmtree(out)
    import torch

    arch = Arch(*ARCHES[args.arch])
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "onnx").mkdir(parents=True)
    tokenizer, vocab = write_tokenizer(Path(args.bpe), staging)

    torch.manual_seed(args.seed)
    vision, text = build_modules(arch)
    export(
        vision,
        (torch.randn(1, 3, arch.image_size, arch.image_size),),
        staging / "onnx" / "vision_model.onnx",
        ["pixel_values"],
        ["image_embeds", "last_hidden_state"],
        {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}, "last_hidden_state": {0: "batch"}},
    )
    ids = torch.tensor([tokenizer.encode("a photo of a cat").ids + [vocab["<|endoftext|>"]] * 3])
    export(
        text,
        (ids,),
        staging / "onnx" / "text_model.onnx",
        ["input_ids"],
        ["text_embeds", "last_hidden_state"],
        {
            "input_ids": {0: "batch", 1: "sequence"},
            "text_embeds": {0: "batch"},
            "last_hidden_state": {0: "batch", 1: "sequence"},
        },
    )
    parameters = sum(p.numel() for p in vision.parameters()) + sum(p.numel() for p in text.parameters())
    vision_parameters = sum(p.numel() for p in vision.parameters())

    write_json(
        staging / "config.json",
        {
            "model_type": "clip",
            "architectures": ["CLIPModel"],
            "projection_dim": arch.dim,
            "logit_scale_init_value": 2.6592,
            "text_config": {
                "model_type": "clip_text_model",
                "hidden_size": arch.text_width,
                "intermediate_size": 4 * arch.text_width,
                "num_hidden_layers": arch.text_layers,
                "num_attention_heads": arch.text_heads,
                "max_position_embeddings": CONTEXT,
                "vocab_size": VOCAB_SIZE,
                "hidden_act": "quick_gelu",
            },
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": arch.vision_width,
                "intermediate_size": 4 * arch.vision_width,
                "num_hidden_layers": arch.vision_layers,
                "num_attention_heads": arch.vision_heads,
                "image_size": arch.image_size,
                "patch_size": arch.patch,
                "hidden_act": "quick_gelu",
            },
            "loupe": {
                "model_id": f"clip-{args.arch}-random@seed{args.seed}",
                "random_weights": True,
                "parameters": parameters,
            },
        },
    )
    write_json(
        staging / "preprocessor_config.json",
        {
            "do_resize": True,
            "size": {"shortest_edge": arch.image_size},
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": arch.image_size, "width": arch.image_size},
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": MEAN,
            "image_std": STD,
            "do_convert_rgb": True,
            "image_processor_type": "CLIPImageProcessor",
        },
    )
    (staging / "MODEL_CARD.md").write_text(
        f"# clip-{args.arch}-random\n\n"
        f"A CLIP {args.arch} pack with **random weights** (seed {args.seed}; {parameters / 1e6:.1f}M parameters, "
        f"{vision_parameters / 1e6:.1f}M of them in the vision tower), written by `npm run models:build`. Its "
        "retrieval means nothing: it exists to measure cost and to exercise the real-size code path. Architecture: "
        "OpenAI CLIP (pre-norm blocks, QuickGELU, causal text tower pooled at the end-of-text token); tokenizer: "
        "CLIP's byte-pair vocabulary.\n"
    )
    staging.rename(out)
    print(f"wrote {out} ({parameters / 1e6:.1f}M parameters)", file=sys.stderr)


if __name__ == "__main__":
    main()
